//! OpenAI streamed chat completion chunks (`chat.completion.chunk`).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat-streaming>.

use serde::{Deserialize, Serialize};

use super::chat::{ThinkingBlock, UsageBody};
use crate::error::GatewayError;

/// The line that ends every OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The `object` of every chunk.
pub const CHUNK_OBJECT: &str = "chat.completion.chunk";

/// One `data:` payload of an OpenAI stream.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChatChunk {
    /// Completion id, the same in every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// Deltas; empty in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the usage chunk (`null` elsewhere is omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
}

/// One choice delta.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChunkChoice {
    /// Position.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta,
    /// Set exactly once, in the last content chunk.
    pub finish_reason: Option<String>,
}

/// The incremental part of a chunk.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Delta {
    /// `assistant`, first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Refusal fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning fragment, never mixed into `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Signed reasoning blocks, sent once each block is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A fragment of one tool call; `id`, `type` and `name` come only in its first fragment.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ToolCallDelta {
    /// Which call of this turn (0, 1, ...).
    pub index: u32,
    /// Call id, first fragment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, first fragment only.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first fragment) and argument text.
    pub function: FunctionDelta,
}

/// Function part of a tool-call fragment.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct FunctionDelta {
    /// Function name, first fragment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON argument string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Appends `data: <json>\n\n` for `chunk` to `out`.
pub fn write_chunk(out: &mut Vec<u8>, chunk: &ChatChunk) {
    out.extend_from_slice(b"data: ");
    // Writing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, chunk);
    out.extend_from_slice(b"\n\n");
}

/// Borrowed twin of [`ChatChunk`] for writing: translators emit one per upstream event from
/// their own state and the event's strings, so nothing is copied just to be serialized.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChunkRef<'a> {
    /// Completion id.
    pub id: &'a str,
    /// Always [`CHUNK_OBJECT`].
    pub object: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: &'a str,
    /// Deltas; empty in the usage chunk.
    pub choices: &'a [ChoiceRef<'a>],
    /// Only in the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'a UsageBody>,
}

/// Borrowed twin of [`ChunkChoice`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChoiceRef<'a> {
    /// Position.
    pub index: u32,
    /// What this chunk adds.
    pub delta: DeltaRef<'a>,
    /// Set exactly once, in the last content chunk; `null` before.
    pub finish_reason: Option<&'a str>,
}

/// Borrowed twin of [`Delta`]; the default is the empty delta `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DeltaRef<'a> {
    /// `assistant`, first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// Text fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Reasoning fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// Complete signed reasoning blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<&'a [ThinkingBlockRef<'a>]>,
    /// Tool-call fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<&'a [ToolCallDeltaRef<'a>]>,
}

/// Borrowed twin of [`ThinkingBlock`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThinkingBlockRef<'a> {
    /// `thinking` or `redacted_thinking`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The full reasoning text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a str>,
    /// The provider's signature over the block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'a str>,
    /// Encrypted payload of a redacted block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a str>,
}

/// Borrowed twin of [`ToolCallDelta`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ToolCallDeltaRef<'a> {
    /// Which call of this turn (0, 1, ...).
    pub index: u32,
    /// Call id, first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// `function`, first fragment only.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    /// Name (first fragment) and argument text.
    pub function: FunctionDeltaRef<'a>,
}

/// Borrowed twin of [`FunctionDelta`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FunctionDeltaRef<'a> {
    /// Function name, first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// A piece of the JSON argument string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
}

/// Appends `data: <json>\n\n` for a borrowed chunk to `out`.
pub fn write_chunk_ref(out: &mut Vec<u8>, chunk: &ChunkRef<'_>) {
    out.extend_from_slice(b"data: ");
    // Writing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, chunk);
    out.extend_from_slice(b"\n\n");
}

/// Appends an in-stream error event `data: {"error": {...}}\n\n`: once the 200 and its
/// headers are sent this is the only way to report a failure, and the OpenAI SDKs raise on
/// a data payload with an `error` key.
pub fn write_error_event(out: &mut Vec<u8>, error: &GatewayError) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error.to_json());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed chunk serializes exactly like the owned one.
    #[test]
    fn chunk_ref_matches_owned() {
        let calls = [ToolCallDeltaRef {
            index: 1,
            id: Some("toolu_1"),
            kind: Some("function"),
            function: FunctionDeltaRef {
                name: Some("f"),
                arguments: Some(""),
            },
        }];
        let blocks = [ThinkingBlockRef {
            kind: "thinking",
            thinking: Some("t"),
            signature: Some("s"),
            data: None,
        }];
        let choices = [ChoiceRef {
            index: 0,
            delta: DeltaRef {
                role: Some("assistant"),
                content: Some("c\"\n"),
                reasoning_content: Some("r"),
                thinking_blocks: Some(&blocks),
                tool_calls: Some(&calls),
            },
            finish_reason: Some("stop"),
        }];
        let mut out = Vec::new();
        write_chunk_ref(
            &mut out,
            &ChunkRef {
                id: "chatcmpl-1",
                object: CHUNK_OBJECT,
                created: 7,
                model: "m",
                choices: &choices,
                usage: None,
            },
        );
        let json = out
            .strip_prefix(b"data: ")
            .and_then(|r| r.strip_suffix(b"\n\n"))
            .unwrap();
        let owned: ChatChunk = serde_json::from_slice(json).unwrap();
        let expected = ChatChunk {
            id: "chatcmpl-1".into(),
            object: CHUNK_OBJECT.into(),
            created: 7,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant".into()),
                    content: Some("c\"\n".into()),
                    refusal: None,
                    reasoning_content: Some("r".into()),
                    thinking_blocks: Some(vec![ThinkingBlock {
                        kind: "thinking".into(),
                        thinking: Some("t".into()),
                        signature: Some("s".into()),
                        data: None,
                    }]),
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 1,
                        id: Some("toolu_1".into()),
                        kind: Some("function".into()),
                        function: FunctionDelta {
                            name: Some("f".into()),
                            arguments: Some(String::new()),
                        },
                    }]),
                },
                finish_reason: Some("stop".into()),
            }],
            usage: None,
        };
        assert_eq!(owned, expected);
        let mut again = Vec::new();
        write_chunk(&mut again, &expected);
        assert_eq!(again, out);
        // The empty delta is `{}`.
        assert_eq!(serde_json::to_string(&DeltaRef::default()).unwrap(), "{}");
    }
}
