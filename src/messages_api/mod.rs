//! Anthropic's Messages API as an inbound API (`POST /v1/messages`,
//! `POST /v1/messages/count_tokens`), for clients such as the `anthropic` SDK and Claude Code.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages>,
//! <https://docs.anthropic.com/en/api/messages-streaming>,
//! <https://docs.anthropic.com/en/api/errors>.
//!
//! To an Anthropic deployment the request is passed through with only `model` rewritten
//! ([`translator::Passthrough`]), so everything Anthropic-only (cache control, signed
//! thinking, server tools, `context_management`) survives; usage is read from the answer.
//! To any other provider the request becomes the OpenAI chat request every translator
//! already takes ([`request::to_chat`]), and that translator's OpenAI-shaped answer is
//! turned back into a Message ([`response`]) or Anthropic's event sequence ([`stream`])
//! by [`translator::Bridge`]. Errors take Anthropic's shape.

pub mod request;
pub mod response;
pub mod stream;
pub mod translator;

use crate::error::GatewayError;

/// The API a client spoke to the gateway; chosen by path in the downstream instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundApi {
    /// `POST /v1/chat/completions`.
    #[default]
    Chat,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses`.
    Responses,
}

impl InboundApi {
    /// The `operation` label of its stats and access log.
    pub fn operation(self) -> &'static str {
        match self {
            InboundApi::Chat => "chat",
            InboundApi::Messages => "messages",
            InboundApi::CountTokens => "count_tokens",
            InboundApi::Embeddings => "embeddings",
            InboundApi::Responses => "responses",
        }
    }

    /// Speaks Anthropic's shapes (errors included).
    pub fn is_anthropic(self) -> bool {
        matches!(self, InboundApi::Messages | InboundApi::CountTokens)
    }
}

/// Response header of a local `count_tokens` answer: the count is the gateway's estimate,
/// not the provider's tokenizer.
pub const TOKEN_COUNT_HEADER: &str = "x-llm-token-count";

/// Anthropic's error `type` for an HTTP status (what its SDKs and Claude Code expect).
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type":...,"message":...}}`.
pub fn error_json(status: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(br#"{"type":"error","error":{"type":""#);
    out.extend_from_slice(error_type(status).as_bytes());
    out.extend_from_slice(br#"","message":"#);
    let _ = serde_json::to_writer(&mut out, message);
    out.extend_from_slice(b"}}");
    out
}

/// A gateway error in Anthropic's shape; the field at fault is named in the message.
pub fn gateway_error_json(e: &GatewayError) -> Vec<u8> {
    match &e.param {
        Some(p) if !e.message.contains(p.as_str()) => {
            error_json(e.status, &format!("{}: {}", p, e.message))
        }
        _ => error_json(e.status, &e.message),
    }
}

/// An error answer (OpenAI-shaped from a translator, or already Anthropic's) in
/// Anthropic's shape.
pub fn error_body_to_anthropic(status: u16, body: &[u8]) -> Vec<u8> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error_json(
            status,
            &crate::provider::common::unparsed_error_message(status, body),
        );
    };
    if v.get("type").and_then(|t| t.as_str()) == Some("error") {
        return body.to_vec();
    }
    let message = v
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .or_else(|| v.get("message").and_then(|m| m.as_str()))
        .unwrap_or("the provider reported an error");
    error_json(status, message)
}

/// `GET /v1/models` as Anthropic's SDKs read it (a client that sends `anthropic-version`):
/// `{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more", ...}`.
pub fn models_list_json<'a>(aliases: impl Iterator<Item = &'a str>, created_secs: u64) -> Vec<u8> {
    let created = rfc3339(created_secs);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"data\":[");
    let (mut first, mut last) = (None, None);
    for (i, id) in aliases.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"type":"model","id":"#);
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(br#","display_name":"#);
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(br#","created_at":""#);
        out.extend_from_slice(created.as_bytes());
        out.extend_from_slice(b"\"}");
        first = first.or(Some(id));
        last = Some(id);
    }
    out.extend_from_slice(br#"],"has_more":false,"first_id":"#);
    let _ = serde_json::to_writer(&mut out, &first);
    out.extend_from_slice(br#","last_id":"#);
    let _ = serde_json::to_writer(&mut out, &last);
    out.push(b'}');
    out
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil date from days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_models_list() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let v: serde_json::Value =
            serde_json::from_slice(&models_list_json(["a", "b"].into_iter(), 0)).unwrap();
        assert_eq!(v["data"][1]["id"], "b");
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(
            (v["first_id"].as_str(), v["last_id"].as_str()),
            (Some("a"), Some("b"))
        );
        assert_eq!(v["has_more"], false);
    }

    #[test]
    fn errors_take_anthropic_shape() {
        let v: serde_json::Value = serde_json::from_slice(&error_json(429, "slow")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"rate_limit_error","message":"slow"}})
        );
        let openai = br#"{"error":{"message":"bad key","type":"authentication_error"}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&error_body_to_anthropic(401, openai)).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "bad key");
        let native = br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#;
        assert_eq!(error_body_to_anthropic(503, native), native.to_vec());
        let e = GatewayError::invalid_param("max_tokens", "required");
        let v: serde_json::Value = serde_json::from_slice(&gateway_error_json(&e)).unwrap();
        assert_eq!(v["error"]["message"], "max_tokens: required");
    }
}
