//! Cohere v2 Chat wire types (<https://docs.cohere.com/reference/chat>): the request the
//! gateway sends, the answer and the stream events it reads. Only the fields the gateway
//! uses are declared; unknown fields are ignored when reading.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::json::raw::RawJson;

/// `POST /v2/chat` body.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest<'a> {
    /// The Cohere model (`command-a-03-2025`).
    pub model: &'a str,
    /// The conversation, system messages included.
    pub messages: Vec<Message>,
    /// Function definitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    /// `REQUIRED` or `NONE`; absent means the model decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
    /// JSON output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Output limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling (OpenAI's `top_p`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Deterministic sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Penalty for frequent tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Penalty for tokens already present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Reasoning switch and budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// SSE answer; only sent when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// One message, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    /// Instructions.
    System {
        /// The instruction text.
        content: String,
    },
    /// The user's turn: text, or text and images.
    User {
        /// Text or parts.
        content: UserContent,
    },
    /// An earlier answer.
    Assistant {
        /// The answer's text.
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// The text that came with tool calls.
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_plan: Option<String>,
        /// The calls the model made.
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
    },
    /// The result of one call.
    Tool {
        /// The call it answers.
        tool_call_id: String,
        /// The result as text.
        content: String,
    },
}

/// A user message's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum UserContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<UserPart>),
}

/// One part of a user message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (`https:` or `data:`).
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// An image reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    /// `https:` or base64 `data:` URL.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A tool call, in a request or an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id.
    #[serde(default)]
    pub id: Option<String>,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// Name and JSON arguments.
    #[serde(default)]
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

/// Name and arguments of a call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    #[serde(default)]
    pub name: Option<String>,
    /// JSON arguments as a string.
    #[serde(default)]
    pub arguments: Option<String>,
}

/// A function definition.
#[derive(Debug, Clone, Serialize)]
pub struct Tool<'a> {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The definition.
    pub function: FunctionDef<'a>,
}

/// Name, description and JSON Schema parameters.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionDef<'a> {
    /// Function name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// JSON Schema of the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawJson>,
}

/// `response_format`: `json_object`, with a schema when the client gave one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat {
    /// Always `json_object`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The schema the JSON must follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
}

/// `thinking`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thinking {
    /// `enabled` or `disabled`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Most tokens to think with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u64>,
}

/// A complete `/v2/chat` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatResponse {
    /// Answer id.
    #[serde(default)]
    pub id: Option<String>,
    /// `COMPLETE`, `STOP_SEQUENCE`, `MAX_TOKENS`, `TOOL_CALL`, `ERROR`, `TIMEOUT`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The assistant message.
    #[serde(default)]
    pub message: AssistantMessage,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<CohereUsage>,
}

/// The answer's message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AssistantMessage {
    /// Text and thinking blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// The text that comes with tool calls.
    #[serde(default)]
    pub tool_plan: Option<String>,
    /// Calls.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
}

/// One content block of an answer, or of a `content-start`/`content-delta` event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentBlock {
    /// `text` or `thinking` (absent in deltas).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Answer text.
    #[serde(default)]
    pub text: Option<String>,
    /// Reasoning text.
    #[serde(default)]
    pub thinking: Option<String>,
}

/// `usage`: what was billed and what was processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct CohereUsage {
    /// The tokens Cohere charges for.
    #[serde(default)]
    pub billed_units: Option<Units>,
    /// Every token the model processed (the prompt template included).
    #[serde(default)]
    pub tokens: Option<Units>,
}

/// Input and output counts (Cohere documents them as numbers, not integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Units {
    /// Input tokens.
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: Option<u64>,
}

/// A token count written as an integer or a float (`12` or `12.0`).
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let n = Option::<f64>::deserialize(deserializer)?;
    // Negative, NaN and fractional counts are clamped and rounded rather than refused.
    Ok(n.map(|n| {
        if n.is_finite() && n > 0.0 {
            n.round() as u64
        } else {
            0
        }
    }))
}

/// An error body: `{"id": ..., "message": ...}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub message: String,
}

/// One stream event, by its `type`.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// First event: the answer's id.
    MessageStart {
        /// Answer id.
        id: Option<String>,
    },
    /// A content block opens (its first text may be in it).
    ContentStart {
        /// What the block holds.
        delta: ContentDelta,
    },
    /// More text or thinking of the open block.
    ContentDelta {
        /// The piece.
        delta: ContentDelta,
    },
    /// A piece of the tool plan.
    ToolPlanDelta {
        /// The piece.
        delta: ToolPlanDelta,
    },
    /// A call opens: id and name.
    ToolCallStart {
        /// Cohere's call index.
        index: u32,
        /// The call.
        delta: ToolCallDelta,
    },
    /// A piece of a call's arguments.
    ToolCallDelta {
        /// Cohere's call index.
        index: u32,
        /// The piece.
        delta: ToolCallDelta,
    },
    /// A call is complete.
    ToolCallEnd {
        /// Cohere's call index.
        index: u32,
    },
    /// Last event: finish reason and usage.
    MessageEnd {
        /// Why and how much.
        delta: MessageEndDelta,
    },
    /// `content-end`, citations, debug and newer events: nothing to translate.
    Other,
}

/// Every event's fields in one flat shape. Read this way rather than by serde's
/// internally tagged enum, which buffers each event into an intermediate tree first and
/// costs the module about 60 KB of code.
#[derive(Deserialize)]
struct RawStreamEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<RawDelta>,
}

/// `delta` of any event: the union of what the events put there.
#[derive(Default, Deserialize)]
struct RawDelta {
    #[serde(default)]
    message: Option<RawDeltaMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    usage: Option<CohereUsage>,
}

/// `delta.message` of any event.
#[derive(Default, Deserialize)]
struct RawDeltaMessage {
    #[serde(default)]
    content: Option<ContentBlock>,
    #[serde(default)]
    tool_plan: Option<String>,
    #[serde(default)]
    tool_calls: Option<ToolCall>,
}

impl StreamEvent {
    /// Reads one event's JSON data.
    pub fn parse(data: &str) -> Result<StreamEvent, serde_json::Error> {
        let raw: RawStreamEvent = crate::json::path::from_str(data)?;
        let index = raw.index.unwrap_or(0);
        let delta = raw.delta.unwrap_or_default();
        let RawDeltaMessage {
            content,
            tool_plan,
            tool_calls,
        } = delta.message.unwrap_or_default();
        let content = ContentDelta {
            message: Some(ContentDeltaMessage { content }),
        };
        let call = ToolCallDelta {
            message: Some(ToolCallDeltaMessage { tool_calls }),
        };
        Ok(match raw.kind.as_str() {
            "message-start" => StreamEvent::MessageStart { id: raw.id },
            "content-start" => StreamEvent::ContentStart { delta: content },
            "content-delta" => StreamEvent::ContentDelta { delta: content },
            "tool-plan-delta" => StreamEvent::ToolPlanDelta {
                delta: ToolPlanDelta {
                    message: Some(ToolPlanMessage { tool_plan }),
                },
            },
            "tool-call-start" => StreamEvent::ToolCallStart { index, delta: call },
            "tool-call-delta" => StreamEvent::ToolCallDelta { index, delta: call },
            "tool-call-end" => StreamEvent::ToolCallEnd { index },
            "message-end" => StreamEvent::MessageEnd {
                delta: MessageEndDelta {
                    finish_reason: delta.finish_reason,
                    error: delta.error,
                    usage: delta.usage,
                },
            },
            _ => StreamEvent::Other,
        })
    }
}

/// `delta` of content events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentDelta {
    /// `{"content": {...}}`.
    #[serde(default)]
    pub message: Option<ContentDeltaMessage>,
}

/// `delta.message` of content events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentDeltaMessage {
    /// The block or its piece.
    #[serde(default)]
    pub content: Option<ContentBlock>,
}

/// `delta` of `tool-plan-delta`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolPlanDelta {
    /// `{"tool_plan": "..."}`.
    #[serde(default)]
    pub message: Option<ToolPlanMessage>,
}

/// `delta.message` of `tool-plan-delta`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolPlanMessage {
    /// The piece of the plan.
    #[serde(default)]
    pub tool_plan: Option<String>,
}

/// `delta` of tool-call events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallDelta {
    /// `{"tool_calls": {...}}`.
    #[serde(default)]
    pub message: Option<ToolCallDeltaMessage>,
}

/// `delta.message` of tool-call events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallDeltaMessage {
    /// One call (not a list) in stream events.
    #[serde(default)]
    pub tool_calls: Option<ToolCall>,
}

/// `delta` of `message-end`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageEndDelta {
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// What went wrong, with `ERROR`.
    #[serde(default)]
    pub error: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<CohereUsage>,
}
