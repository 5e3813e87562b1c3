//! OpenAI streamed chat completion chunks (`chat.completion.chunk`).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat-streaming>.

use serde::{Deserialize, Serialize};

use super::chat::{ThinkingBlock, UsageBody};

/// The line that ends every OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

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
