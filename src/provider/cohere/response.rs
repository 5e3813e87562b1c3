//! Cohere answers and errors → OpenAI chat completion and error envelope.
//!
//! Text blocks are concatenated into `content`, thinking blocks into `reasoning_content`,
//! and `tool_calls` keep Cohere's ids. Decisions that OpenAI's shape leaves open:
//!
//! - **Tool plan.** The text Cohere writes before its calls (`tool_plan`) is the
//!   message's `content` when there is no other text, as an OpenAI model's text next to
//!   its calls; `super::request` sends it back as `tool_plan`.
//! - **Citations** are dropped: the text they point into is kept whole, and OpenAI's
//!   message has no field a client would read them from.
//! - **Usage** is `usage.billed_units`, the tokens Cohere charges for, which the gateway
//!   also prices; `usage.tokens` (which adds the prompt template) only when nothing was
//!   billed.
//! - **Failed generations** (`ERROR`, `TIMEOUT`) with nothing usable are a 502 or 504
//!   error, so that Envoy can retry or fall back; with text or calls they keep them and
//!   finish with `stop`.

use super::schema::{ChatResponse as CohereResponse, CohereUsage, ErrorResponse};
use crate::error::{ErrorKind, GatewayError};
use crate::json::text::JsonText;
use crate::openai::{ChatResponse, Choice, FunctionCall, ResponseMessage, ToolCall};
use crate::provider::common::unparsed_error_message;
use crate::provider::TranslatedResponse;
use crate::usage::Usage;

/// How a generation ended, in OpenAI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An OpenAI `finish_reason` (before calls turn `stop` into `tool_calls`).
    Reason(&'static str),
    /// The generation failed: an error unless something usable was produced.
    Failed {
        /// Error class.
        kind: ErrorKind,
    },
}

/// Maps Cohere's `finish_reason`; shared by the complete and the streamed translation.
pub fn finish(reason: &str) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Reason("length"),
        "TOOL_CALL" => Finish::Reason("tool_calls"),
        "ERROR" => Finish::Failed {
            kind: ErrorKind::Api,
        },
        "TIMEOUT" => Finish::Failed {
            kind: ErrorKind::Timeout,
        },
        // COMPLETE, STOP_SEQUENCE and newer reasons.
        _ => Finish::Reason("stop"),
    }
}

/// The error for a failed generation that produced nothing usable.
pub fn failed_generation(kind: ErrorKind, reason: &str, detail: Option<&str>) -> GatewayError {
    let mut message = format!("Cohere ended the generation with {reason}");
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        message.push_str(": ");
        message.push_str(d);
    }
    let status = if kind == ErrorKind::Timeout { 504 } else { 502 };
    GatewayError::new(kind, message)
        .with_status(status)
        .with_code("generation_failed")
}

/// Cohere usage in OpenAI's terms: the billed counts, else the processed ones.
pub fn usage_from_cohere(u: &CohereUsage) -> Usage {
    let units = u
        .billed_units
        .filter(|b| b.input_tokens.is_some() || b.output_tokens.is_some())
        .or(u.tokens)
        .unwrap_or_default();
    Usage {
        prompt_tokens: units.input_tokens.unwrap_or(0),
        completion_tokens: units.output_tokens.unwrap_or(0),
        ..Usage::default()
    }
}

/// `chatcmpl-<id>`, or a fixed id when Cohere sent none.
pub fn completion_id(id: Option<&str>) -> String {
    crate::provider::common::completion_id(id, "chatcmpl-cohere")
}

/// A call's id, or `call_<n>` when Cohere sent none.
pub fn tool_call_id(id: Option<&str>, n: usize) -> String {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("call_{n}"),
    }
}

/// Translates a complete Cohere answer (success or error); `model` names the model, which
/// Cohere's answer does not.
pub fn translate_response(
    upstream_status: u16,
    status: u16,
    body: &[u8],
    now_unix_secs: u64,
    model: &str,
) -> TranslatedResponse {
    if !(200..300).contains(&upstream_status) {
        return TranslatedResponse::error(&provider_error(upstream_status, status, body));
    }
    let response = match serde_json::from_slice::<CohereResponse>(body) {
        Ok(r) => r,
        Err(e) => return TranslatedResponse::error(&bad_upstream(&e.to_string())),
    };
    let usage = response.usage.as_ref().map(usage_from_cohere);
    match chat_completion(response, now_unix_secs, model, usage) {
        Ok(c) => TranslatedResponse::completion(status, &c, usage, body.len()),
        Err(e) => TranslatedResponse::error(&e),
    }
}

fn chat_completion(
    response: CohereResponse,
    now_unix_secs: u64,
    model: &str,
    usage: Option<Usage>,
) -> Result<ChatResponse, GatewayError> {
    let message = response.message;
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    for block in &message.content {
        match block.kind.as_deref() {
            Some("thinking") => {
                if let Some(t) = &block.thinking {
                    reasoning.get_or_insert_with(String::new).push_str(t);
                }
            }
            _ => {
                if let Some(t) = &block.text {
                    text.get_or_insert_with(String::new).push_str(t);
                }
            }
        }
    }
    let tool_calls: Vec<ToolCall> = message
        .tool_calls
        .iter()
        .enumerate()
        .map(|(n, call)| ToolCall {
            id: tool_call_id(call.id.as_deref(), n),
            kind: "function".to_string(),
            function: FunctionCall {
                name: call.function.name.clone().unwrap_or_default(),
                arguments: call
                    .function
                    .arguments
                    .clone()
                    .filter(|a| !a.trim().is_empty())
                    .unwrap_or_else(|| "{}".to_string()),
            },
        })
        .collect();
    if text.as_deref().is_none_or(str::is_empty) && !tool_calls.is_empty() {
        if let Some(plan) = message.tool_plan.filter(|p| !p.is_empty()) {
            text = Some(plan);
        }
    }
    let reason = response.finish_reason.as_deref().unwrap_or("COMPLETE");
    let has_answer = text.as_deref().is_some_and(|t| !t.is_empty()) || !tool_calls.is_empty();
    let finish_reason = match finish(reason) {
        Finish::Failed { kind } if !has_answer => {
            return Err(failed_generation(kind, reason, None));
        }
        Finish::Failed { .. } => "stop",
        Finish::Reason("stop") if !tool_calls.is_empty() => "tool_calls",
        Finish::Reason(r) => r,
    };
    Ok(ChatResponse {
        id: completion_id(response.id.as_deref()),
        object: "chat.completion".to_string(),
        created: now_unix_secs,
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: text.map(JsonText::from),
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content: reasoning,
                thinking_blocks: None,
            },
            finish_reason: Some(finish_reason.to_string()),
        }],
        usage: usage.map(|u| u.to_body()),
    })
}

/// A 2xx body that is not a Cohere answer.
pub fn bad_upstream(why: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Api,
        format!("the provider returned a body that is not a valid Cohere response: {why}"),
    )
    .with_status(502)
    .with_code("bad_upstream_response")
}

/// A Cohere error answer (`{"message": ...}`) in OpenAI's shape: the class follows the
/// HTTP status (402 is a billing problem: a permission error, as it is not the request's
/// fault), the message is Cohere's own.
pub fn provider_error(upstream_status: u16, status: u16, body: &[u8]) -> GatewayError {
    let kind = match upstream_status {
        402 => ErrorKind::PermissionDenied,
        // 498: Cohere's "invalid token" status for a key it does not know.
        498 => ErrorKind::Authentication,
        s => ErrorKind::from_status(s),
    };
    let message = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        Ok(_) => format!("the provider answered {upstream_status}"),
        Err(_) => unparsed_error_message(upstream_status, body),
    };
    let status = match upstream_status {
        498 => 401,
        _ => status,
    };
    GatewayError::new(kind, message).with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::cohere::schema::Units;

    /// Every documented finish reason has a deliberate mapping.
    #[test]
    fn finish_reasons() {
        assert_eq!(finish("COMPLETE"), Finish::Reason("stop"));
        assert_eq!(finish("STOP_SEQUENCE"), Finish::Reason("stop"));
        assert_eq!(finish("MAX_TOKENS"), Finish::Reason("length"));
        assert_eq!(finish("TOOL_CALL"), Finish::Reason("tool_calls"));
        assert_eq!(
            finish("ERROR"),
            Finish::Failed {
                kind: ErrorKind::Api
            }
        );
        assert_eq!(
            finish("TIMEOUT"),
            Finish::Failed {
                kind: ErrorKind::Timeout
            }
        );
        assert_eq!(finish("SOMETHING_NEW"), Finish::Reason("stop"));
    }

    /// Billed units are the usage; processed tokens only when nothing was billed.
    #[test]
    fn billed_units_are_the_usage() {
        let units = |i, o| Units {
            input_tokens: Some(i),
            output_tokens: Some(o),
        };
        let both = CohereUsage {
            billed_units: Some(units(5, 7)),
            tokens: Some(units(70, 7)),
        };
        assert_eq!(usage_from_cohere(&both).prompt_tokens, 5);
        let processed = CohereUsage {
            billed_units: None,
            tokens: Some(units(70, 7)),
        };
        assert_eq!(usage_from_cohere(&processed).prompt_tokens, 70);
        assert_eq!(usage_from_cohere(&CohereUsage::default()), Usage::default());
    }
}
