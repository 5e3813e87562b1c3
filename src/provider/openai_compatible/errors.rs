//! The provider's errors read into the gateway's: an OpenAI-shaped error body (or whatever
//! the provider sent) as a [`GatewayError`], the status an error inside a 200 or a stream
//! stands for, and the in-stream error event the gateway writes itself.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ErrorKind, GatewayError};
use crate::openai::write_error_event;
use crate::secrets::redact_key_like;

#[derive(Deserialize)]
struct ErrorOnly {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    param: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
}

/// The status a stream's opening error stands for: the provider's numeric code when it
/// gives one, else its type or code, else 503 (a failure inside a 200 is transient).
pub(super) fn stream_error_status(error: &Value) -> u16 {
    let code = error.get("code");
    if let Some(status) = code
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| (400..600).contains(s))
        .and_then(|s| u16::try_from(s).ok())
    {
        return match status {
            529 => 503,
            s => s,
        };
    }
    let names = [
        code.and_then(Value::as_str),
        error.get("type").and_then(Value::as_str),
    ];
    for name in names.into_iter().flatten() {
        let status = match name {
            "rate_limit_exceeded"
            | "rate_limit_error"
            | "insufficient_quota"
            | "requests"
            | "tokens"
            | "RateLimitError" => 429,
            "invalid_request_error" | "BadRequestError" | "context_length_exceeded" => 400,
            "authentication_error" | "invalid_api_key" | "AuthenticationError" => 401,
            "permission_error" | "PermissionDeniedError" => 403,
            "not_found_error" | "model_not_found" | "NotFoundError" => 404,
            "timeout" | "timeout_error" => 504,
            _ => continue,
        };
        return status;
    }
    503
}

/// Writes an OpenAI-style in-stream error event, which the OpenAI SDK raises as an error.
pub fn write_stream_error(out: &mut Vec<u8>, message: &str) {
    let e = GatewayError::new(ErrorKind::Api, message)
        .with_status(502)
        .with_code("stream_error");
    write_error_event(out, &e);
}

/// Reads an OpenAI-shaped error body, or wraps whatever the provider sent.
pub(crate) fn openai_error(status: u16, body: &[u8]) -> GatewayError {
    let kind = ErrorKind::from_status(status);
    match serde_json::from_slice::<ErrorOnly>(body) {
        Ok(e) => {
            let message = e
                .error
                .message
                .unwrap_or_else(|| format!("the provider answered {status}"));
            let mut g = GatewayError::new(kind, redact_key_like(&message)).with_status(status);
            if let Some(Value::String(p)) = e.error.param {
                g = g.with_param(p);
            }
            match e.error.code {
                Some(Value::String(c)) => g = g.with_code(c),
                Some(Value::Number(n)) => g = g.with_code(n.to_string()),
                _ => {}
            }
            // Keep the provider's own type when it is a known OpenAI type.
            let _ = e.error.kind;
            g
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.trim().chars().take(500).collect();
            let message = if snippet.is_empty() {
                format!("the provider answered {status}")
            } else {
                format!("the provider answered {status}: {snippet}")
            };
            GatewayError::new(kind, redact_key_like(&message)).with_status(status)
        }
    }
}
