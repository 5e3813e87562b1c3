//! The one error type the gateway answers with, rendered in OpenAI's error shape.
//!
//! Every refusal the gateway makes itself (bad input, unknown model, wrong key) and every
//! provider error it translates ends up as a [`GatewayError`], so clients written against
//! the OpenAI SDK see the status codes and `error.type` values they already handle.

use std::fmt;

use serde::Serialize;

/// The `error.type` values OpenAI-compatible clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or asks for something the model cannot do.
    InvalidRequest,
    /// 401: no key, or a wrong one.
    Authentication,
    /// 403: the key is valid but not allowed to do this.
    PermissionDenied,
    /// 404: unknown model alias or path.
    NotFound,
    /// 413: the request is larger than the gateway or provider accepts.
    RequestTooLarge,
    /// 429: a rate limit or budget was hit.
    RateLimit,
    /// 500/502: the gateway or the provider failed.
    Api,
    /// 503: the provider is overloaded or unavailable; worth retrying elsewhere.
    Overloaded,
    /// 504: the provider did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// The `error.type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }

    /// The status a gateway-made error of this kind is sent with.
    pub fn default_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Api => 500,
            ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// The kind an upstream status maps to when the body says nothing better.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            504 | 408 => ErrorKind::Timeout,
            s if (400..500).contains(&s) => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }
}

/// An error answered to the client as `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status of the reply.
    pub status: u16,
    /// The error class (`error.type`).
    pub kind: ErrorKind,
    /// Human-readable message; never contains a secret.
    pub message: String,
    /// The request field at fault, when there is one (`error.param`).
    pub param: Option<String>,
    /// A stable machine-readable code (`error.code`).
    pub code: Option<String>,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl GatewayError {
    /// An error of `kind` with its default status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            status: kind.default_status(),
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 about the request field `param`.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// A 400 without a specific field.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        GatewayError::new(ErrorKind::InvalidRequest, message)
    }

    /// A 500 for a gateway fault (configuration or an unexpected provider answer).
    pub fn internal(message: impl Into<String>) -> Self {
        GatewayError::new(ErrorKind::Api, message)
    }

    /// Sets `error.param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Overrides the status (for translated provider errors).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The OpenAI-shaped JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                message: &self.message,
                kind: self.kind.as_str(),
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        // Serializing plain strings cannot fail; fall back to a fixed body rather than panic.
        serde_json::to_vec(&envelope).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.kind.as_str(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is the exact envelope the OpenAI SDK parses.
    #[test]
    fn renders_openai_envelope() {
        let e = GatewayError::invalid_param("messages", "`messages` must be an array");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "`messages` must be an array",
                "type": "invalid_request_error", "param": "messages", "code": null}})
        );
        assert_eq!(e.status, 400);
    }

    /// Overloaded providers become a retryable 503.
    #[test]
    fn status_mapping() {
        assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
        assert_eq!(ErrorKind::from_status(429), ErrorKind::RateLimit);
        assert_eq!(ErrorKind::from_status(418), ErrorKind::InvalidRequest);
        assert_eq!(ErrorKind::from_status(502), ErrorKind::Api);
    }
}
