//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, Groq, Together, ...).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat>. The body is forwarded
//! as the client wrote it, with `model` set to the deployment's model and the gateway-only
//! message fields removed. Streams always ask for usage upstream, so the gateway learns the
//! tokens of every stream; the usage chunk reaches the client only when it asked for it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{join_path, Target, TranslatedResponse, Translator, UpstreamRequest};
use crate::error::{ErrorKind, GatewayError};
use crate::openai::{UsageBody, DONE_EVENT};
use crate::sse::SseDecoder;
use crate::usage::Usage;

/// Translator for OpenAI-compatible upstreams.
#[derive(Debug, Default)]
pub struct OpenAiTranslator {
    stream: bool,
    client_wants_usage: bool,
    decoder: SseDecoder,
    usage: Option<Usage>,
    done_sent: bool,
    finished: bool,
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<UsageBody>,
}

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

/// Message fields other gateways invented for reasoning round trips; OpenAI-compatible
/// servers reject or ignore them, so they are removed before forwarding.
const GATEWAY_ONLY_MESSAGE_FIELDS: &[&str] = &["thinking_blocks", "reasoning_content"];

impl Translator for OpenAiTranslator {
    fn request(
        &mut self,
        body: &[u8],
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut value: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
        })?;
        value.insert(
            "model".into(),
            Value::String(target.upstream_model.to_string()),
        );
        if let Some(Value::Array(messages)) = value.get_mut("messages") {
            for m in messages.iter_mut() {
                if let Value::Object(m) = m {
                    for f in GATEWAY_ONLY_MESSAGE_FIELDS {
                        m.remove(*f);
                    }
                }
            }
        }
        self.stream = matches!(value.get("stream"), Some(Value::Bool(true)));
        if self.stream {
            let options = value
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(o) = options {
                self.client_wants_usage = matches!(o.get("include_usage"), Some(Value::Bool(true)));
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let body = serde_json::to_vec(&value)
            .map_err(|e| GatewayError::internal(format!("could not encode request: {e}")))?;
        let mut headers = Vec::new();
        if let Some(key) = target.api_key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            path: join_path(target.base_path, "/chat/completions"),
            headers,
            body,
            dropped: Vec::new(),
        })
    }

    fn is_stream(&self) -> bool {
        self.stream
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        if (200..300).contains(&upstream_status) {
            let usage = serde_json::from_slice::<UsageOnly>(body)
                .ok()
                .and_then(|u| u.usage)
                .map(|u| Usage::from_body(&u));
            if serde_json::from_slice::<Value>(body)
                .map(|v| v.is_object())
                .unwrap_or(false)
            {
                return TranslatedResponse {
                    status,
                    body: body.to_vec(),
                    usage,
                };
            }
            let e = GatewayError::new(
                ErrorKind::Api,
                "the provider returned a body that is not JSON",
            )
            .with_status(502)
            .with_code("bad_upstream_response");
            return TranslatedResponse::error(&e);
        }
        TranslatedResponse::error(&openai_error(status, body))
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.decoder.push(chunk);
        if end_of_stream {
            self.decoder.finish();
        }
        while let Some(event) = self.decoder.next_event() {
            self.on_event(&event.data, out);
        }
        if self.decoder.error().is_some() {
            write_stream_error(
                out,
                "the provider sent a stream event larger than the gateway accepts",
            );
            out.extend_from_slice(DONE_EVENT);
            self.done_sent = true;
            self.finished = true;
            return;
        }
        if end_of_stream {
            if !self.done_sent {
                write_stream_error(out, "the provider's stream ended before it was complete");
                out.extend_from_slice(DONE_EVENT);
                self.done_sent = true;
            }
            self.finished = true;
        }
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.usage
    }
}

impl OpenAiTranslator {
    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done_sent {
            return;
        }
        if data.trim() == "[DONE]" {
            out.extend_from_slice(DONE_EVENT);
            self.done_sent = true;
            return;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            // Not JSON: forward as is, the client decides.
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(data.as_bytes());
            out.extend_from_slice(b"\n\n");
            return;
        };
        let usage = chunk
            .get("usage")
            .filter(|u| !u.is_null())
            .and_then(|u| serde_json::from_value::<UsageBody>(u.clone()).ok());
        if let Some(u) = usage {
            self.usage = Some(Usage::from_body(&u));
            if !self.client_wants_usage {
                let empty_choices = chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .map(|c| c.is_empty())
                    .unwrap_or(true);
                if empty_choices {
                    return; // the usage-only chunk the client did not ask for
                }
                chunk.remove("usage");
                write_data(out, &Value::Object(chunk));
                return;
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

fn write_data(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Writes an OpenAI-style in-stream error event, which the OpenAI SDK raises as an error.
pub fn write_stream_error(out: &mut Vec<u8>, message: &str) {
    let e = GatewayError::new(ErrorKind::Api, message).with_code("stream_error");
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&e.to_json());
    out.extend_from_slice(b"\n\n");
}

/// Reads an OpenAI-shaped error body, or wraps whatever the provider sent.
fn openai_error(status: u16, body: &[u8]) -> GatewayError {
    let kind = ErrorKind::from_status(status);
    match serde_json::from_slice::<ErrorOnly>(body) {
        Ok(e) => {
            let mut g = GatewayError::new(
                kind,
                e.error
                    .message
                    .unwrap_or_else(|| format!("the provider answered {status}")),
            )
            .with_status(status);
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
            GatewayError::new(kind, message).with_status(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderOptions;

    fn target<'a>(options: &'a ProviderOptions) -> Target<'a> {
        Target {
            upstream_model: "gpt-4o-2024",
            base_path: "/v1",
            api_key: Some("sk-prov"),
            now_unix_secs: 1,
            options,
        }
    }

    /// The model is rewritten, unknown fields kept, gateway-only fields removed.
    #[test]
    fn request_rewrites_model() {
        let o = ProviderOptions::default();
        let mut t = OpenAiTranslator::default();
        let r = t
            .request(
                br#"{"model":"alias","messages":[{"role":"assistant","content":"x","thinking_blocks":[],"reasoning_content":"r"}],"top_k":3}"#,
                &target(&o),
            )
            .unwrap();
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.headers,
            vec![("authorization", "Bearer sk-prov".to_string())]
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["model"], "gpt-4o-2024");
        assert_eq!(v["top_k"], 3);
        assert!(v["messages"][0].get("thinking_blocks").is_none());
        assert!(v["messages"][0].get("reasoning_content").is_none());
        assert!(!t.is_stream());
    }

    /// Streams always ask for usage; the usage chunk is dropped unless the client asked.
    #[test]
    fn stream_usage_only_when_asked() {
        let o = ProviderOptions::default();
        let sse = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        for wants in [false, true] {
            let mut t = OpenAiTranslator::default();
            let body = if wants {
                br#"{"model":"a","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#.to_vec()
            } else {
                br#"{"model":"a","messages":[],"stream":true}"#.to_vec()
            };
            let r = t.request(&body, &target(&o)).unwrap();
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true);
            let mut out = Vec::new();
            t.stream(sse, true, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.contains("\"usage\""), wants, "{text}");
            assert_eq!(text.matches("[DONE]").count(), 1);
            assert_eq!(t.stream_usage().unwrap().prompt_tokens, 3);
        }
    }

    /// Provider errors keep their message and status; non-JSON errors are wrapped.
    #[test]
    fn errors() {
        let mut t = OpenAiTranslator::default();
        let r = t.response(
            429,
            br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(r.status, 429);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        let r = t.response(502, b"<html>bad gateway</html>");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.status, 502);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad gateway"));
    }
}
