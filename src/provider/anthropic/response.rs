//! Anthropic Messages response and errors → OpenAI chat completion and error envelope.
//!
//! Text blocks are concatenated into `content` and thinking blocks into
//! `reasoning_content`, as a client concatenating the streamed deltas would see them. The
//! signed thinking blocks are returned too (`thinking_blocks`) so that the client can send
//! them back on the next turn. Block kinds the gateway does not map (server tools) are
//! left out.

use super::schema::{AnthropicUsage, ErrorResponse, MessagesResponse, ResponseBlock};
use crate::error::{ErrorKind, GatewayError};
use crate::json::text::JsonText;
use crate::openai::{ChatResponse, Choice, FunctionCall, ResponseMessage, ThinkingBlock, ToolCall};
use crate::provider::TranslatedResponse;
use crate::usage::Usage;

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`; shared by the JSON and the
/// stream translation so both agree.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Normalises Anthropic usage to OpenAI's meaning: `prompt_tokens` includes cache reads
/// and cache writes, which are also reported apart (and the 1-hour writes among them).
pub fn usage_from_anthropic(u: &AnthropicUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        prompt_tokens: u
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(write),
        completion_tokens: u.output_tokens.unwrap_or(0),
        cache_read_tokens: read,
        cache_write_tokens: write,
        cache_write_1h_tokens: u
            .cache_creation
            .and_then(|c| c.ephemeral_1h_input_tokens)
            .unwrap_or(0)
            .min(write),
        reasoning_tokens: 0,
        reported_cost_micro_usd: None,
    }
}

/// Translates a complete Anthropic answer (success or error).
pub fn translate_response(
    upstream_status: u16,
    status: u16,
    body: &[u8],
    now_unix_secs: u64,
) -> TranslatedResponse {
    translate_response_with(upstream_status, status, body, now_unix_secs, None)
}

/// Like [`translate_response`], for a request that stood in `json_response_tool` for
/// `response_format: json_schema`: a call to that tool becomes the message content.
pub fn translate_response_with(
    upstream_status: u16,
    status: u16,
    body: &[u8],
    now_unix_secs: u64,
    json_response_tool: Option<&str>,
) -> TranslatedResponse {
    if !(200..300).contains(&upstream_status) {
        return TranslatedResponse::error(&provider_error(upstream_status, status, body));
    }
    let message = match serde_json::from_slice::<MessagesResponse>(body) {
        Ok(m) if m.kind == "message" => m,
        Ok(m) => return bad_upstream(&format!("its type is `{}`", m.kind)),
        Err(e) => return bad_upstream(&e.to_string()),
    };
    translate_message(
        message,
        status,
        now_unix_secs,
        json_response_tool,
        body.len(),
    )
}

/// A Messages answer already read (here, or from another envelope such as Bedrock's
/// Converse) as an OpenAI chat completion; `answer_len` sizes the buffer.
pub fn translate_message(
    message: MessagesResponse,
    status: u16,
    now_unix_secs: u64,
    json_response_tool: Option<&str>,
    answer_len: usize,
) -> TranslatedResponse {
    let usage = message.usage.as_ref().map(usage_from_anthropic);
    let response = chat_completion(message, now_unix_secs, json_response_tool, usage);
    TranslatedResponse::completion(status, &response, usage, answer_len)
}

fn chat_completion(
    message: MessagesResponse,
    now_unix_secs: u64,
    json_response_tool: Option<&str>,
    usage: Option<Usage>,
) -> ChatResponse {
    let mut texts: Vec<JsonText> = Vec::new();
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer: Option<String> = None;
    for block in message.content {
        match block {
            ResponseBlock::Text { text } => texts.push(text),
            ResponseBlock::Thinking {
                thinking,
                signature,
            } => {
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&thinking);
                thinking_blocks.push(ThinkingBlock {
                    kind: "thinking".to_string(),
                    thinking: Some(thinking),
                    signature,
                    data: None,
                });
            }
            ResponseBlock::RedactedThinking { data } => thinking_blocks.push(ThinkingBlock {
                kind: "redacted_thinking".to_string(),
                thinking: None,
                signature: None,
                data: Some(data),
            }),
            ResponseBlock::ToolUse { id, name, input } => {
                // As serde_json writes it: no space between tokens.
                let arguments = input.map_or_else(
                    || "null".to_string(),
                    |i| crate::json::scan::compact(i.get()).into_owned(),
                );
                if json_response_tool == Some(name.as_str()) {
                    json_answer = Some(arguments);
                } else {
                    tool_calls.push(ToolCall {
                        id,
                        kind: "function".to_string(),
                        function: FunctionCall { name, arguments },
                    });
                }
            }
            ResponseBlock::Other => {}
        }
    }
    let stop_reason = message.stop_reason.as_deref().unwrap_or("end_turn");
    let finish = match (&json_answer, stop_reason) {
        // The stand-in tool call is the answer, not a call the client must run.
        (Some(_), "tool_use") if tool_calls.is_empty() => "stop",
        _ => finish_reason(stop_reason),
    };
    ChatResponse {
        id: format!("chatcmpl-{}", message.id),
        object: "chat.completion".to_string(),
        created: now_unix_secs,
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                // Text the model wrote around the stand-in call is not part of the JSON answer.
                content: json_answer
                    .map(JsonText::from)
                    .or_else(|| (!texts.is_empty()).then(|| JsonText::join(&texts, ""))),
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content: reasoning,
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
            },
            finish_reason: Some(finish.to_string()),
        }],
        usage: usage.map(|u| u.to_body()),
    }
}

fn bad_upstream(why: &str) -> TranslatedResponse {
    let e = GatewayError::new(
        ErrorKind::Api,
        redact_secrets(&format!(
            "the provider returned a body that is not a valid Anthropic message: {why}"
        )),
    )
    .with_status(502)
    .with_code("bad_upstream_response");
    TranslatedResponse::error(&e)
}

/// Longest part of a non-JSON error body quoted back to the client.
const SNIPPET_CHARS: usize = 200;

/// An Anthropic error answer in OpenAI's shape, with the provider's message kept.
fn provider_error(upstream_status: u16, status: u16, body: &[u8]) -> GatewayError {
    let fallback_kind = ErrorKind::from_status(upstream_status);
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) => {
            let kind = error_kind(&e.error.kind).unwrap_or(fallback_kind);
            let message = e
                .error
                .message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    format!("the provider answered {upstream_status} ({})", e.error.kind)
                });
            GatewayError::new(kind, redact_secrets(&message)).with_status(status)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let words: Vec<&str> = text.split_whitespace().collect();
            let snippet: String = words.join(" ").chars().take(SNIPPET_CHARS).collect();
            let message = if snippet.is_empty() {
                format!("the provider answered {upstream_status} with an empty body")
            } else {
                format!("the provider answered {upstream_status}: {snippet}")
            };
            GatewayError::new(fallback_kind, redact_secrets(&message)).with_status(status)
        }
    }
}

/// Anthropic `error.type` → OpenAI `error.type`; `None` for types newer than this gateway.
fn error_kind(anthropic_type: &str) -> Option<ErrorKind> {
    Some(match anthropic_type {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimit,
        "api_error" => ErrorKind::Api,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        _ => return None,
    })
}

/// Prefix of Anthropic API keys.
const KEY_PREFIX: &str = "sk-ant-";

/// Replaces anything that looks like an Anthropic key with `sk-ant-***`, so that a provider
/// message quoting a key never reaches the client.
pub fn redact_secrets(message: &str) -> String {
    let out = crate::secrets::redact_after_prefix(message, KEY_PREFIX);
    crate::secrets::redact_key_like(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are cut at their last key character, the rest of the message stays.
    #[test]
    fn redacts_keys() {
        assert_eq!(
            redact_secrets("invalid x-api-key sk-ant-api03-AbC_d-9 (sk-ant-x)."),
            "invalid x-api-key sk-ant-*** (sk-ant-***)."
        );
        assert_eq!(redact_secrets("no key here"), "no key here");
        assert_eq!(redact_secrets("sk-ant-"), "sk-ant-***");
    }
}
