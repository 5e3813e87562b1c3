//! Gemini answers and errors → OpenAI chat completion and error envelope.
//!
//! Per candidate (one OpenAI choice each): text parts are concatenated into `content`,
//! `thought: true` parts into `reasoning_content` (never `content`), and `functionCall`
//! parts become `tool_calls` with `finish_reason: tool_calls`.
//!
//! Decisions that OpenAI's shape leaves open:
//!
//! - **Tool-call ids.** Gemini does not id its calls (when it does, that id is kept).
//!   The gateway makes them up deterministically from the response id and the call's
//!   position (`call_<responseId>_<n>`), so two calls of one function differ and the stream
//!   and the complete answer agree.
//! - **Thought signatures** travel in the tool-call id, as `<id>__thought__<signature>`
//!   (LiteLLM's convention): the id is the one field every OpenAI SDK and agent framework
//!   sends back unchanged, on the assistant message and on the tool result alike. The next
//!   request puts the signature back on its `functionCall` part (see `super::request`).
//!   Signatures on text parts are not carried (Gemini does not require them back).
//! - **Blocked prompts** (no candidates, `promptFeedback.blockReason`) are a 400
//!   `invalid_request_error` with code `content_filter`, as Azure OpenAI answers a filtered
//!   prompt. A candidate blocked while answering keeps what it produced and finishes with
//!   `content_filter`.
//! - **Failed generations** (`MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`,
//!   `TOO_MANY_TOOL_CALLS`, `MALFORMED_RESPONSE`) with nothing usable in the candidate are
//!   a 502 `api_error` carrying Gemini's `finishMessage`: an empty `stop` would end the
//!   client's agent loop with no answer and no hint, and a 5xx lets Envoy retry or fall
//!   back (the same request often succeeds). `MISSING_THOUGHT_SIGNATURE` is a 400: the
//!   client dropped the signature from a tool-call id. A failed candidate that did produce
//!   text or calls keeps them and finishes with `stop`.
//! - **Usage**: completion tokens are candidates plus thoughts, reasoning tokens the
//!   thoughts, cached tokens `cachedContentTokenCount`.

use super::schema::{Candidate, ErrorResponse, GenerateContentResponse, Part, UsageMetadata};
use crate::error::{ErrorKind, GatewayError};
use crate::json::text::JsonText;
use crate::openai::{ChatResponse, Choice, FunctionCall, ResponseMessage, ToolCall};
use crate::provider::common::THOUGHT_SIGNATURE_SEPARATOR;
use crate::provider::TranslatedResponse;
use crate::usage::Usage;
use serde_json::Value;

/// How a candidate ended, in OpenAI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An OpenAI `finish_reason` (before `tool_calls` replaces `stop`).
    Reason(&'static str),
    /// The generation failed; an error is answered unless the candidate has content.
    Failed {
        /// Error class.
        kind: ErrorKind,
        /// Status of the error.
        status: u16,
        /// `error.code`.
        code: &'static str,
    },
}

/// Maps Gemini's `finishReason`; shared by the complete and the streamed translation.
pub fn finish(reason: &str) -> Finish {
    let failed = |code| Finish::Failed {
        kind: ErrorKind::Api,
        status: 502,
        code,
    };
    match reason {
        "MAX_TOKENS" => Finish::Reason("length"),
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => Finish::Reason("content_filter"),
        "MALFORMED_FUNCTION_CALL" => failed("malformed_function_call"),
        "UNEXPECTED_TOOL_CALL" => failed("unexpected_tool_call"),
        "TOO_MANY_TOOL_CALLS" => failed("too_many_tool_calls"),
        "MALFORMED_RESPONSE" => failed("malformed_response"),
        "MISSING_THOUGHT_SIGNATURE" => Finish::Failed {
            kind: ErrorKind::InvalidRequest,
            status: 400,
            code: "missing_thought_signature",
        },
        // STOP, OTHER, LANGUAGE, NO_IMAGE, FINISH_REASON_UNSPECIFIED and newer reasons.
        _ => Finish::Reason("stop"),
    }
}

/// The error for a failed candidate that produced nothing usable.
pub fn failed_generation(
    kind: ErrorKind,
    status: u16,
    code: &str,
    reason: &str,
    finish_message: Option<&str>,
) -> GatewayError {
    let mut message = format!("Gemini ended the generation with {reason}");
    if let Some(m) = finish_message.filter(|m| !m.is_empty()) {
        message.push_str(": ");
        message.push_str(m);
    }
    if code == "missing_thought_signature" {
        message.push_str(
            "; send back the tool-call ids exactly as the gateway returned them (they carry Gemini's thought signatures)",
        );
    }
    GatewayError::new(kind, redact_secrets(&message))
        .with_status(status)
        .with_code(code)
}

/// The error for a prompt Gemini refused to answer.
pub fn blocked_prompt(block_reason: &str) -> GatewayError {
    GatewayError::invalid_request(format!(
        "Gemini blocked the prompt ({block_reason}); rephrase the request"
    ))
    .with_code("content_filter")
}

/// Normalises Gemini usage to OpenAI's meaning.
pub fn usage_from_gemini(u: &UsageMetadata) -> Usage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    Usage {
        prompt_tokens: u
            .prompt_token_count
            .unwrap_or(0)
            .saturating_add(u.tool_use_prompt_token_count.unwrap_or(0)),
        completion_tokens: u
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(thoughts),
        cache_read_tokens: u.cached_content_token_count.unwrap_or(0),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: thoughts,
        reported_cost_micro_usd: None,
    }
}

/// `chatcmpl-<responseId>`, or a fixed id when Gemini sent none.
pub fn completion_id(response_id: Option<&str>) -> String {
    crate::provider::common::completion_id(response_id, "chatcmpl-gemini")
}

/// The OpenAI id of the `n`-th call (0-based, counted over the whole response), with the
/// part's thought signature appended when it has one.
pub fn tool_call_id(response_id: Option<&str>, n: usize, part: &Part) -> String {
    let given = part
        .function_call
        .as_ref()
        .and_then(|c| c.id.as_deref())
        .filter(|id| !id.is_empty());
    let mut id = match (given, response_id.filter(|id| !id.is_empty())) {
        (Some(id), _) => id.to_string(),
        (None, Some(rid)) => format!("call_{rid}_{n}"),
        (None, None) => format!("call_{n}"),
    };
    if let Some(signature) = part.thought_signature.as_deref().filter(|s| !s.is_empty()) {
        id.push_str(THOUGHT_SIGNATURE_SEPARATOR);
        id.push_str(signature);
    }
    id
}

/// The arguments of a call as the JSON string OpenAI carries (`{}` when absent).
pub fn arguments(part: &Part) -> String {
    match part.function_call.as_ref().and_then(|c| c.args.as_ref()) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(args) => args.to_string(),
    }
}

/// Translates a complete Gemini answer (success or error). `model` names the model when
/// Gemini does not (`modelVersion`).
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
    // An error body under a 2xx status gets the status its own code names.
    if let Some(e) = parse_error(body) {
        return TranslatedResponse::error(&google_error(&e, e.error.code.unwrap_or(502)));
    }
    let response = match serde_json::from_slice::<GenerateContentResponse>(body) {
        Ok(r) => r,
        Err(e) => return bad_upstream(&e.to_string()),
    };
    let usage = response.usage_metadata.as_ref().map(usage_from_gemini);
    let completion = match chat_completion(response, now_unix_secs, model, usage) {
        Ok(c) => c,
        Err(e) => return TranslatedResponse::error(&e),
    };
    TranslatedResponse::completion(status, &completion, usage, body.len())
}

fn chat_completion(
    response: GenerateContentResponse,
    now_unix_secs: u64,
    model: &str,
    usage: Option<Usage>,
) -> Result<ChatResponse, GatewayError> {
    if response.candidates.is_empty() {
        return Err(
            match response
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                Some(reason) => blocked_prompt(reason),
                None => bad_upstream_error("it has no candidates"),
            },
        );
    }
    let response_id = response.response_id.as_deref();
    let mut calls_so_far = 0;
    let mut choices = Vec::with_capacity(response.candidates.len());
    for (position, candidate) in response.candidates.iter().enumerate() {
        choices.push(choice(position, candidate, response_id, &mut calls_so_far)?);
    }
    choices.sort_unstable_by_key(|c| c.index);
    Ok(ChatResponse {
        id: completion_id(response_id),
        object: "chat.completion".to_string(),
        created: now_unix_secs,
        model: response
            .model_version
            .clone()
            .unwrap_or_else(|| model.to_string()),
        choices,
        usage: usage.map(|u| u.to_body()),
    })
}

fn choice(
    position: usize,
    candidate: &Candidate,
    response_id: Option<&str>,
    calls_so_far: &mut usize,
) -> Result<Choice, GatewayError> {
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for part in candidate.content.iter().flat_map(|c| &c.parts) {
        if let Some(call) = &part.function_call {
            tool_calls.push(ToolCall {
                id: tool_call_id(response_id, *calls_so_far, part),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: arguments(part),
                },
            });
            *calls_so_far += 1;
        } else if let Some(t) = &part.text {
            let into = if part.thought == Some(true) {
                &mut reasoning
            } else {
                &mut text
            };
            into.get_or_insert_with(String::new).push_str(t);
        }
    }
    let reason = candidate.finish_reason.as_deref().unwrap_or("STOP");
    let has_answer = text.as_deref().is_some_and(|t| !t.is_empty()) || !tool_calls.is_empty();
    let finish_reason = match finish(reason) {
        Finish::Failed { kind, status, code } if !has_answer => {
            return Err(failed_generation(
                kind,
                status,
                code,
                reason,
                candidate.finish_message.as_deref(),
            ))
        }
        Finish::Failed { .. } => "stop",
        Finish::Reason("stop") if !tool_calls.is_empty() => "tool_calls",
        Finish::Reason(r) => r,
    };
    let index = candidate
        .index
        .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
    Ok(Choice {
        index,
        message: ResponseMessage {
            role: "assistant".to_string(),
            content: text.map(JsonText::from),
            refusal: None,
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            reasoning_content: reasoning,
            thinking_blocks: None,
        },
        finish_reason: Some(finish_reason.to_string()),
    })
}

fn bad_upstream_error(why: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Api,
        redact_secrets(&format!(
            "the provider returned a body that is not a valid Gemini response: {why}"
        )),
    )
    .with_status(502)
    .with_code("bad_upstream_response")
}

fn bad_upstream(why: &str) -> TranslatedResponse {
    TranslatedResponse::error(&bad_upstream_error(why))
}

/// Longest part of a non-JSON error body quoted back to the client.
const SNIPPET_CHARS: usize = 200;

/// Reads a Google error body: `{"error": {...}}`, or the same inside a one-element array
/// (what the non-SSE stream endpoint answers).
pub fn parse_error(body: &[u8]) -> Option<ErrorResponse> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => items
            .into_iter()
            .next()
            .and_then(|v| serde_json::from_value(v).ok()),
        v => serde_json::from_value(v).ok(),
    }
}

/// A Gemini error answer in OpenAI's shape, with the provider's message kept.
///
/// The status follows Google's canonical code when it has one (a bad key is reported as
/// 400 `INVALID_ARGUMENT` but is a 401 for OpenAI clients), else the HTTP status.
pub fn provider_error(upstream_status: u16, status: u16, body: &[u8]) -> GatewayError {
    match parse_error(body) {
        Some(e) => google_error(&e, status),
        None => {
            let text = String::from_utf8_lossy(body);
            let words: Vec<&str> = text.split_whitespace().collect();
            let snippet: String = words.join(" ").chars().take(SNIPPET_CHARS).collect();
            let message = if snippet.is_empty() {
                format!("the provider answered {upstream_status} with an empty body")
            } else {
                format!("the provider answered {upstream_status}: {snippet}")
            };
            GatewayError::new(
                ErrorKind::from_status(upstream_status),
                redact_secrets(&message),
            )
            .with_status(status)
        }
    }
}

/// Translates a parsed Google error; `status` is used when Google's code says nothing.
pub fn google_error(e: &ErrorResponse, status: u16) -> GatewayError {
    let canonical = e.error.status.as_deref().unwrap_or_default();
    let bad_key = e
        .error
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
    let (kind, status) = if bad_key {
        (ErrorKind::Authentication, 401)
    } else {
        match canonical_kind(canonical) {
            Some(kind) => (kind, canonical_status(kind, status)),
            None => (ErrorKind::from_status(status), status),
        }
    };
    let message = e
        .error
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("the provider answered {status} ({canonical})"));
    let mut g = GatewayError::new(kind, redact_secrets(&message)).with_status(status);
    if bad_key {
        g = g.with_code("invalid_api_key");
    } else if !canonical.is_empty() {
        g = g.with_code(canonical.to_ascii_lowercase());
    }
    g
}

/// Google canonical code → OpenAI error class; `None` for codes newer than this gateway.
fn canonical_kind(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimit,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNKNOWN" | "CANCELLED" | "ABORTED" | "DATA_LOSS" | "UNIMPLEMENTED" => {
            ErrorKind::Api
        }
        _ => return None,
    })
}

/// The status for a canonical class: the HTTP status when it already agrees (500 vs 501
/// for an API error), else the class's own status.
fn canonical_status(kind: ErrorKind, http_status: u16) -> u16 {
    if ErrorKind::from_status(http_status) == kind {
        http_status
    } else {
        kind.default_status()
    }
}

/// Prefix of Google API keys.
const KEY_PREFIX: &str = "AIza";

/// Replaces anything that looks like a Google API key with `AIza***`, so that a provider
/// message quoting a key never reaches the client.
pub fn redact_secrets(message: &str) -> String {
    crate::secrets::redact_after_prefix(message, KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are cut at their last key character, the rest of the message stays.
    #[test]
    fn redacts_keys() {
        assert_eq!(
            redact_secrets("key AIzaSyA-b_c9 is invalid (AIza)."),
            "key AIza*** is invalid (AIza***)."
        );
        assert_eq!(redact_secrets("no key here"), "no key here");
    }

    /// Every documented finish reason has a deliberate mapping.
    #[test]
    fn finish_reasons() {
        assert_eq!(finish("STOP"), Finish::Reason("stop"));
        assert_eq!(finish("MAX_TOKENS"), Finish::Reason("length"));
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
        ] {
            assert_eq!(finish(r), Finish::Reason("content_filter"), "{r}");
        }
        for r in [
            "OTHER",
            "LANGUAGE",
            "FINISH_REASON_UNSPECIFIED",
            "SOMETHING_NEW",
        ] {
            assert_eq!(finish(r), Finish::Reason("stop"), "{r}");
        }
        assert!(matches!(
            finish("MALFORMED_FUNCTION_CALL"),
            Finish::Failed { status: 502, .. }
        ));
        assert!(matches!(
            finish("MISSING_THOUGHT_SIGNATURE"),
            Finish::Failed { status: 400, .. }
        ));
    }

    /// Ids are distinct per position, keep Gemini's own id, and carry the signature.
    #[test]
    fn tool_call_ids() {
        let call = |id: Option<&str>, sig: Option<&str>| Part {
            function_call: Some(super::super::schema::FunctionCall {
                id: id.map(str::to_string),
                name: "f".to_string(),
                args: None,
            }),
            thought_signature: sig.map(str::to_string),
            ..Part::default()
        };
        assert_eq!(tool_call_id(Some("r1"), 0, &call(None, None)), "call_r1_0");
        assert_eq!(tool_call_id(None, 3, &call(None, None)), "call_3");
        assert_eq!(tool_call_id(Some("r1"), 0, &call(Some("g7"), None)), "g7");
        assert_eq!(
            tool_call_id(Some("r1"), 1, &call(None, Some("c2ln"))),
            "call_r1_1__thought__c2ln"
        );
        assert_eq!(arguments(&call(None, None)), "{}");
    }
}
