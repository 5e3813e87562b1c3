//! Anthropic Messages API wire types (request, response, errors).
//!
//! Reference: <https://docs.anthropic.com/en/api/messages>. Only what the gateway sends or
//! reads is modelled; request fields are skipped when unset so the body carries nothing
//! Anthropic did not ask for. Stream event types live in `events`.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::raw::RawJson;
use crate::json::text::JsonText;

/// `POST /v1/messages` request body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Vertex AI's `anthropic_version` (`vertex-2023-10-16`), which travels in the body
    /// there instead of a header; absent on Anthropic's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<String>,
    /// The provider's model name; empty on Vertex AI, where the path names the model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Output limit, thinking included; required by Anthropic.
    pub max_tokens: u64,
    /// The conversation, strictly alternating user and assistant turns.
    pub messages: Vec<MessageParam>,
    /// System prompt: a string, or text blocks when some carry `cache_control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Sampling temperature (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Whether the answer is streamed as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// End-user identifier for abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolParam>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceParam>,
    /// Extended thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
}

/// `system`: plain text, or blocks so that `cache_control` can mark a prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(JsonText),
    /// Text blocks.
    Blocks(Vec<TextBlockParam>),
}

/// A `{"type":"text"}` block of the system prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "text")]
pub struct TextBlockParam {
    /// The text; never empty (Anthropic rejects empty text blocks).
    pub text: JsonText,
    /// Prompt-caching breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    pub user_id: String,
}

/// Message roles; system instructions are not a role in the Messages API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// The user, tool results included.
    User,
    /// The model.
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParam {
    /// Who speaks.
    pub role: MessageRole,
    /// Content blocks; never empty.
    pub content: Vec<ContentBlockParam>,
}

/// A request content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlockParam {
    /// Text.
    Text {
        /// The text; never empty.
        text: JsonText,
        /// Prompt-caching breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// An image (user messages and tool results).
    Image {
        /// Inline bytes or a URL.
        source: MediaSource,
        /// Prompt-caching breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// A PDF document.
    Document {
        /// Inline bytes or a URL.
        source: MediaSource,
        /// Prompt-caching breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// A tool call the assistant made in an earlier turn.
    ToolUse {
        /// Call id, echoed by the result.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments; always a JSON object.
        input: Value,
    },
    /// The result of a tool call.
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// Text or blocks; omitted when the tool returned nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
    },
    /// Signed reasoning from an earlier assistant turn, sent back verbatim.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Anthropic's signature over it.
        signature: String,
    },
    /// Encrypted reasoning from an earlier assistant turn, sent back verbatim.
    RedactedThinking {
        /// The encrypted payload.
        data: String,
    },
}

/// `tool_result.content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(JsonText),
    /// Text, image and document blocks.
    Blocks(Vec<ContentBlockParam>),
}

/// Where an image's or document's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaSource {
    /// Inline base64 bytes.
    Base64 {
        /// `image/png`, `application/pdf`, ...
        media_type: String,
        /// Base64 data, without the `data:` prefix.
        data: String,
    },
    /// A URL Anthropic fetches itself.
    Url {
        /// `https://...`.
        url: String,
    },
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolParam {
    /// Tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input; Anthropic requires one.
    pub input_schema: RawJson,
    /// Prompt-caching breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoiceParam {
    /// The model decides.
    Auto {
        /// At most one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call some tool.
    Any {
        /// Exactly one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call this tool.
    Tool {
        /// The tool.
        name: String,
        /// Exactly one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must not call tools.
    None,
}

/// `thinking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingConfig {
    /// Extended thinking with a token budget (at least 1024, below `max_tokens`).
    Enabled {
        /// Tokens the model may spend thinking.
        budget_tokens: u64,
    },
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MessagesResponse {
    /// `msg_...`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The model that answered.
    pub model: String,
    /// Answer blocks in order.
    pub content: Vec<ResponseBlock>,
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<AnthropicUsage>,
}

/// An answer content block; kinds the gateway does not map are kept as [`ResponseBlock::Other`].
///
/// Read by [`ResponseBlock`]'s own `Deserialize` rather than serde's tagged-enum derive,
/// which buffers every block before reading it and cannot keep the text as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// Text, kept as Anthropic escaped it (see [`JsonText`]).
    Text {
        /// The text.
        text: JsonText,
    },
    /// Visible reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Signature the next turn must send back.
        #[serde(default)]
        signature: Option<String>,
    },
    /// Reasoning Anthropic encrypted.
    RedactedThinking {
        /// The encrypted payload.
        data: String,
    },
    /// A tool call.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as Anthropic wrote them (`None` when absent or null).
        input: Option<RawJson>,
    },
    /// Server tool blocks and kinds newer than this gateway.
    #[serde(other)]
    Other,
}

/// The members of an answer block the gateway reads.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BlockField {
    Type,
    Text,
    Thinking,
    Signature,
    Data,
    Id,
    Name,
    Input,
    #[serde(other)]
    Other,
}

/// Block kinds with fields to read; the members of any other kind are skipped.
const MAPPED_BLOCKS: &[&str] = &["text", "thinking", "redacted_thinking", "tool_use"];

impl<'de> Deserialize<'de> for ResponseBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(BlockVisitor)
    }
}

struct BlockVisitor;

/// Takes a member's value once; a second one is an error, as in serde's derive.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for BlockVisitor {
    type Value = ResponseBlock;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an answer content block")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResponseBlock, A::Error> {
        let mut kind: Option<String> = None;
        let mut text: Option<JsonText> = None;
        let mut thinking: Option<String> = None;
        let mut signature: Option<Option<String>> = None;
        let mut data: Option<String> = None;
        let mut id: Option<String> = None;
        let mut name: Option<String> = None;
        let mut input: Option<Option<RawJson>> = None;
        while let Some(field) = map.next_key::<BlockField>()? {
            // `type` comes first in Anthropic's answers; until it is known, fields are read.
            let mapped = kind.as_deref().is_none_or(|k| MAPPED_BLOCKS.contains(&k));
            match field {
                BlockField::Type => once(&mut map, &mut kind, "type")?,
                BlockField::Text if mapped => once(&mut map, &mut text, "text")?,
                BlockField::Thinking if mapped => once(&mut map, &mut thinking, "thinking")?,
                BlockField::Signature if mapped => once(&mut map, &mut signature, "signature")?,
                BlockField::Data if mapped => once(&mut map, &mut data, "data")?,
                BlockField::Id if mapped => once(&mut map, &mut id, "id")?,
                BlockField::Name if mapped => once(&mut map, &mut name, "name")?,
                BlockField::Input if mapped => once(&mut map, &mut input, "input")?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let required =
            |v: Option<String>, name: &'static str| v.ok_or_else(|| de::Error::missing_field(name));
        Ok(match kind.as_deref() {
            None => return Err(de::Error::missing_field("type")),
            Some("text") => ResponseBlock::Text {
                text: text.ok_or_else(|| de::Error::missing_field("text"))?,
            },
            Some("thinking") => ResponseBlock::Thinking {
                thinking: required(thinking, "thinking")?,
                signature: signature.flatten(),
            },
            Some("redacted_thinking") => ResponseBlock::RedactedThinking {
                data: required(data, "data")?,
            },
            Some("tool_use") => ResponseBlock::ToolUse {
                id: required(id, "id")?,
                name: required(name, "name")?,
                input: input.flatten(),
            },
            Some(_) => ResponseBlock::Other,
        })
    }
}

/// Anthropic `usage` object (response and `message_start`/`message_delta` events).
///
/// `input_tokens` excludes cache reads and writes, unlike OpenAI's `prompt_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct AnthropicUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens (thinking included).
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// The cache writes by retention (a 1-hour write costs more than a 5-minute one).
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
}

/// Anthropic's `usage.cache_creation`: cache writes by how long they are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct CacheCreation {
    /// Tokens written for 5 minutes.
    #[serde(default)]
    pub ephemeral_5m_input_tokens: Option<u64>,
    /// Tokens written for 1 hour.
    #[serde(default)]
    pub ephemeral_1h_input_tokens: Option<u64>,
}

/// Error body: `{"type":"error","error":{"type":"overloaded_error","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// `error` of an [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::ResponseBlock;

    fn block(json: &str) -> Result<ResponseBlock, String> {
        crate::json::path::from_str(json).map_err(|e| e.to_string())
    }

    /// The block reader reads the mapped kinds in any member order, keeps text and tool
    /// input as written, skips whatever other kinds carry, and refuses what serde's derive
    /// refused (missing or repeated members).
    #[test]
    fn answer_blocks_are_read_as_written() {
        let Ok(ResponseBlock::Text { text }) = block(r#"{"text":"a\nb \"q\"","type":"text"}"#)
        else {
            panic!("a text block");
        };
        assert_eq!(text.text(), "a\nb \"q\"");
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""a\nb \"q\"""#);

        let Ok(ResponseBlock::ToolUse { id, name, input }) =
            block(r#"{"type":"tool_use","id":"t1","name":"f","input":{"b": [1, 2], "a":null}}"#)
        else {
            panic!("a tool_use block");
        };
        assert_eq!((id.as_str(), name.as_str()), ("t1", "f"));
        assert_eq!(input.unwrap().get(), r#"{"b": [1, 2], "a":null}"#);
        for absent in [
            r#"{"type":"tool_use","id":"t","name":"f"}"#,
            r#"{"type":"tool_use","id":"t","name":"f","input":null}"#,
        ] {
            assert!(matches!(
                block(absent),
                Ok(ResponseBlock::ToolUse { input: None, .. })
            ));
        }

        assert_eq!(
            block(r#"{"type":"thinking","thinking":"hm","signature":null}"#),
            Ok(ResponseBlock::Thinking {
                thinking: "hm".into(),
                signature: None
            })
        );
        assert_eq!(
            block(r#"{"type":"redacted_thinking","data":"d"}"#),
            Ok(ResponseBlock::RedactedThinking { data: "d".into() })
        );
        // Members of kinds the gateway does not map are skipped, whatever their types.
        assert_eq!(
            block(r#"{"type":"server_tool_use","id":5,"text":[],"input":{"q":"x"}}"#),
            Ok(ResponseBlock::Other)
        );

        for (bad, says) in [
            (r#"{"type":"text"}"#, "missing field `text`"),
            (r#"{"text":"x"}"#, "missing field `type`"),
            (
                r#"{"type":"text","text":"a","text":"b"}"#,
                "duplicate field `text`",
            ),
            (r#"{"type":"tool_use","name":"f"}"#, "missing field `id`"),
            (r#"{"type":"text","text":1}"#, "invalid type"),
            (r#""text""#, "invalid type"),
        ] {
            let error = block(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
