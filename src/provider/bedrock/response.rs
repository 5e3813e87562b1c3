//! Bedrock Converse answers and errors → OpenAI chat completion and error envelope.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//! (response, errors) and <https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html>.
//! The answer is read into the Claude Messages answer it mirrors and translated by the
//! Anthropic translator, so both providers answer alike: `text`, `toolUse`,
//! `reasoningContent` blocks; `stopReason`; `usage` with the cache reads and writes.
//!
//! Errors carry their type in the `x-amzn-errortype` header (`ThrottlingException:...`)
//! and `{"message": ...}` in the body. The type decides the status the client and Envoy's
//! retry policy see: `ServiceUnavailableException` and `ModelNotReadyException` become 503
//! (Envoy falls back), `ThrottlingException` 429, `ValidationException` 400,
//! `AccessDeniedException` 403, `ResourceNotFoundException` 404, `ModelTimeoutException`
//! 504, `InternalServerException` 500.

use serde_json::Value;

use crate::error::{ErrorKind, GatewayError};
use crate::json::raw::RawJson;
use crate::json::text::JsonText;
use crate::provider::anthropic::response::translate_message;
use crate::provider::anthropic::schema::{AnthropicUsage, MessagesResponse, ResponseBlock};
use crate::provider::common::unparsed_error_message;
use crate::provider::TranslatedResponse;

/// The status and error kind of a Bedrock exception name (`ThrottlingException`, or the
/// stream's `throttlingException`), `None` for names the gateway does not know.
pub fn exception_status(name: &str) -> Option<(u16, ErrorKind)> {
    // The header may carry `:<namespace>` after the name; streams use lower camel case.
    let name = name.split(':').next().unwrap_or_default().trim();
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    Some(if is("ThrottlingException") {
        (429, ErrorKind::RateLimit)
    } else if is("ServiceUnavailableException") || is("ModelNotReadyException") {
        (503, ErrorKind::Overloaded)
    } else if is("ValidationException") {
        (400, ErrorKind::InvalidRequest)
    } else if is("AccessDeniedException") || is("UnrecognizedClientException") {
        (403, ErrorKind::PermissionDenied)
    } else if is("ResourceNotFoundException") {
        (404, ErrorKind::NotFound)
    } else if is("ModelTimeoutException") {
        (504, ErrorKind::Timeout)
    } else if is("ServiceQuotaExceededException") {
        (429, ErrorKind::RateLimit)
    } else if is("InternalServerException") || is("ModelStreamErrorException") {
        (500, ErrorKind::Api)
    } else if is("ModelErrorException") {
        (502, ErrorKind::Api)
    } else {
        return None;
    })
}

/// A Bedrock error answer in OpenAI's shape; `error_type` is the `x-amzn-errortype`
/// header (or the body's `__type`), `status` what the client gets.
pub fn provider_error(
    upstream_status: u16,
    status: u16,
    error_type: &str,
    body: &[u8],
) -> GatewayError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let error_type = if error_type.is_empty() {
        field("__type").unwrap_or_default()
    } else {
        error_type.to_string()
    };
    let name = error_type.split(':').next().unwrap_or_default().trim();
    let (status, kind) =
        exception_status(name).unwrap_or((status, ErrorKind::from_status(upstream_status)));
    let message = field("message")
        .or_else(|| field("Message"))
        .unwrap_or_else(|| unparsed_error_message(upstream_status, body));
    let mut e = GatewayError::new(kind, message).with_status(status);
    if !name.is_empty() {
        e = e.with_code(name);
    }
    e
}

/// Maps Converse's `stopReason` to the Messages one the Anthropic translator knows.
pub fn stop_reason(reason: &str) -> &str {
    match reason {
        "guardrail_intervened" | "content_filtered" => "refusal",
        other => other,
    }
}

/// Converse `usage` → Messages usage (`inputTokens` counts the uncached input, as
/// Anthropic's `input_tokens` does).
pub fn usage(u: &Value) -> AnthropicUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    AnthropicUsage {
        input_tokens: n("inputTokens"),
        output_tokens: n("outputTokens"),
        cache_read_input_tokens: n("cacheReadInputTokens"),
        cache_creation_input_tokens: n("cacheWriteInputTokens"),
        cache_creation: None,
    }
}

/// Translates a complete Converse answer (success or error).
pub fn translate_response(
    upstream_status: u16,
    status: u16,
    error_type: &str,
    body: &[u8],
    answer: &AnswerContext<'_>,
) -> TranslatedResponse {
    if !(200..300).contains(&upstream_status) {
        return TranslatedResponse::error(&provider_error(
            upstream_status,
            status,
            error_type,
            body,
        ));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad_upstream("it is not JSON");
    };
    let Some(blocks) = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
    else {
        return bad_upstream("it has no `output.message.content`");
    };
    let content = blocks.iter().map(response_block).collect();
    let message = MessagesResponse {
        id: format!("bedrock-{:08x}", super::eventstream::crc32(body)),
        kind: "message".to_string(),
        model: answer.model.to_string(),
        content,
        stop_reason: v
            .get("stopReason")
            .and_then(Value::as_str)
            .map(|r| stop_reason(r).to_string()),
        usage: v.get("usage").map(usage),
    };
    translate_message(
        message,
        status,
        answer.now_unix_secs,
        answer.json_response_tool,
        body.len(),
    )
}

/// What the answer translation needs from the request.
#[derive(Debug, Clone, Copy)]
pub struct AnswerContext<'a> {
    /// The Bedrock model id, reported as the answer's model.
    pub model: &'a str,
    /// `created`.
    pub now_unix_secs: u64,
    /// The tool standing in for `response_format: json_schema`.
    pub json_response_tool: Option<&'a str>,
}

fn response_block(b: &Value) -> ResponseBlock {
    if let Some(text) = b.get("text").and_then(Value::as_str) {
        return ResponseBlock::Text {
            text: JsonText::from(text),
        };
    }
    if let Some(t) = b.get("toolUse") {
        let s = |k: &str| {
            t.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        return ResponseBlock::ToolUse {
            id: s("toolUseId"),
            name: s("name"),
            input: t
                .get("input")
                .filter(|i| !i.is_null())
                .and_then(|i| RawJson::parse(&i.to_string())),
        };
    }
    if let Some(r) = b.get("reasoningContent") {
        if let Some(data) = r.get("redactedContent").and_then(Value::as_str) {
            return ResponseBlock::RedactedThinking {
                data: data.to_string(),
            };
        }
        let text = r.get("reasoningText");
        let s = |k: &str| text.and_then(|t| t.get(k)).and_then(Value::as_str);
        return ResponseBlock::Thinking {
            thinking: s("text").unwrap_or_default().to_string(),
            signature: s("signature").map(str::to_string),
        };
    }
    ResponseBlock::Other
}

fn bad_upstream(why: &str) -> TranslatedResponse {
    let e = GatewayError::new(
        ErrorKind::Api,
        format!("the provider returned a body that is not a valid Converse answer: {why}"),
    )
    .with_status(502)
    .with_code("bad_upstream_response");
    TranslatedResponse::error(&e)
}
