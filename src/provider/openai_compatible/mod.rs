//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, Groq, Together, ...).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat>. The body is forwarded
//! as the client wrote it, with `model` set to the deployment's model and the gateway-only
//! message fields removed. Streams always ask for usage upstream, so the gateway learns the
//! tokens of every stream; the usage chunk reaches the client only when it asked for it.
//!
//! The translator is here; the body it forwards is made in `request.rs`, a complete answer
//! is read in `answer.rs`, a stream in `stream.rs`, and the provider's errors in `errors.rs`.

mod answer;
mod errors;
mod request;
mod stream;

use serde::Deserialize;
use serde_json::Value;

use super::openai_family;
use super::registry::{Prices, ProviderSpec, WireApi, OPENAI};
use super::{
    ClientRequest, StreamPreamble, Target, TranslatedResponse, Translator, UpstreamRequest,
};
use crate::error::{ErrorKind, GatewayError};
use crate::openai::{UsageBody, DONE_EVENT};
use crate::sse::{scan_first_event, SseDecoder, SseError, PREAMBLE_SCAN_LIMIT};
use crate::usage::Usage;
use answer::AnswerShape;
pub(crate) use errors::openai_error;
use errors::stream_error_status;
pub use errors::write_stream_error;
pub(crate) use request::with_model;
use request::{forward_reparsed, forward_verbatim};
use stream::{ErrorProbe, StreamState};

/// Translator for OpenAI-compatible upstreams.
#[derive(Debug)]
pub struct OpenAiTranslator {
    /// The provider's registry entry: paths, credential header, quirks.
    provider: &'static ProviderSpec,
    stream: bool,
    decoder: SseDecoder,
    state: StreamState,
}

impl Default for OpenAiTranslator {
    fn default() -> Self {
        OpenAiTranslator::for_provider(&OPENAI)
    }
}

impl OpenAiTranslator {
    /// The usage of a complete answer, with its reported cost where the provider's
    /// answers report one.
    fn answer_usage(&self, usage: Option<&Value>) -> Option<Usage> {
        let value = usage?;
        let mut u = Usage::from_body(&UsageBody::deserialize(value).ok()?);
        if self.provider.prices == Prices::Reported {
            u.reported_cost_micro_usd = value
                .get("cost")
                .and_then(Value::as_f64)
                .and_then(crate::pricing::micro_usd);
        }
        Some(u)
    }

    /// The translator for one attempt to `provider`, an OpenAI-compatible one.
    pub fn for_provider(provider: &'static ProviderSpec) -> Self {
        OpenAiTranslator {
            provider,
            stream: false,
            decoder: SseDecoder::default(),
            state: StreamState {
                provider: Some(provider),
                ..StreamState::default()
            },
        }
    }
}

impl Translator for OpenAiTranslator {
    /// OpenAI-compatible servers get the client's own body (every field they may support),
    /// so the validated request is not needed.
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = request.body;
        let provider = self.provider;
        // A body the provider's quirks may change takes the general way, which applies them.
        let fast = !openai_family::may_need_request_quirks(provider, body);
        let mut dropped = Vec::new();
        let forwarded = match std::str::from_utf8(body)
            .ok()
            .filter(|_| fast)
            .and_then(|text| forward_verbatim(text, target.upstream_model))
        {
            Some(f) => f,
            None => forward_reparsed(body, target.upstream_model, |request| {
                dropped = openai_family::apply_request_quirks(provider, target, request)?;
                Ok(())
            })?,
        };
        self.stream = forwarded.stream;
        self.state.client_wants_usage = forwarded.client_wants_usage;
        Ok(UpstreamRequest {
            path: openai_family::chat_path(provider, target),
            headers: openai_family::credential_header(provider, target)
                .into_iter()
                .collect(),
            body: forwarded.body,
            dropped,
        })
    }

    fn is_stream(&self) -> bool {
        self.stream
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        if (200..300).contains(&upstream_status) {
            // One pass that builds nothing but the usage; the generic parse below only runs
            // for answers that are not a plain chat completion.
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') {
                if let Ok(shape) = serde_json::from_slice::<AnswerShape>(body) {
                    if shape.choices_is_array && !shape.has_error {
                        return TranslatedResponse {
                            status,
                            body: openai_family::answer_with_reasoning_renamed(self.provider, body)
                                .unwrap_or_else(|| body.to_vec()),
                            usage: self.answer_usage(shape.usage.as_ref()),
                        };
                    }
                }
            }
            let why = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(o)) if o.get("choices").is_some_and(Value::is_array) => {
                    let usage = self.answer_usage(o.get("usage"));
                    return TranslatedResponse {
                        status,
                        body: openai_family::answer_with_reasoning_renamed(self.provider, body)
                            .unwrap_or_else(|| body.to_vec()),
                        usage,
                    };
                }
                // Some servers report a failure in a 200: it is an error all the same, with
                // the status its code or type stands for (so Envoy can fall back on it).
                Ok(Value::Object(o)) if o.get("error").is_some_and(|e| !e.is_null()) => {
                    let status = o.get("error").map_or(503, stream_error_status);
                    return TranslatedResponse::error(&openai_error(status, body));
                }
                Ok(_) => "the provider returned a 2xx body that is not a chat completion",
                Err(_) => "the provider returned a body that is not JSON",
            };
            let e = GatewayError::new(ErrorKind::Api, why)
                .with_status(502)
                .with_code("bad_upstream_response");
            return TranslatedResponse::error(&e);
        }
        let error = openai_error(status, body);
        if self.provider.wire == WireApi::AzureOpenAi {
            return TranslatedResponse {
                status: error.status,
                body: openai_family::keep_inner_error(&error, body),
                usage: None,
            };
        }
        TranslatedResponse::error(&error)
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        if self.state.done {
            return;
        }
        let state = &mut self.state;
        self.decoder
            .feed(chunk, |event| state.on_event(event.data, out));
        if state.done {
            return;
        }
        if let Some(SseError::EventTooLarge { limit }) = self.decoder.error() {
            let message = format!("the provider sent a stream event larger than {limit} bytes");
            state.fail(out, &message);
            return;
        }
        if end_of_stream {
            self.decoder.finish();
            if state.finished {
                // Some servers close after the last choice without `[DONE]`; the answer
                // is complete, so it is not reported as an error.
                out.extend_from_slice(DONE_EVENT);
                state.done = true;
            } else {
                state.fail(out, "the provider's stream ended before completion");
            }
        }
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.state.usage
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.decoder.buffered_capacity()
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        if !self.stream {
            return StreamPreamble::Proceed;
        }
        let verdict = scan_first_event(buffered, |event| {
            let payload = event.data.trim();
            let error = crate::json::path::from_str::<ErrorProbe>(payload)
                .ok()
                .and_then(|p| p.error);
            Some(match error {
                Some(error) => {
                    let status = stream_error_status(&error);
                    let e = openai_error(status, payload.as_bytes());
                    StreamPreamble::Fail(TranslatedResponse::error(&e))
                }
                None => StreamPreamble::Proceed,
            })
        });
        match verdict {
            Some(v) => v,
            None if end_of_stream || buffered.len() >= PREAMBLE_SCAN_LIMIT => {
                StreamPreamble::Proceed
            }
            None => StreamPreamble::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages_api::InboundApi;
    use crate::provider::ProviderOptions;
    use crate::provider::RequestFromBody;

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
            .request_from_body(InboundApi::Chat,
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
                br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#.to_vec()
            } else {
                br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#
                    .to_vec()
            };
            let r = t
                .request_from_body(InboundApi::Chat, &body, &target(&o))
                .unwrap();
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

    fn streaming(wants_usage: bool) -> OpenAiTranslator {
        let o = ProviderOptions::default();
        let mut t = OpenAiTranslator::default();
        let body = if wants_usage {
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#
                .to_vec()
        } else {
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#.to_vec()
        };
        t.request_from_body(InboundApi::Chat, &body, &target(&o))
            .unwrap();
        t
    }

    /// Usage riding on every content chunk (vLLM's continuous usage) is taken from the last
    /// chunk, not summed, and removed from chunks when the client did not ask.
    #[test]
    fn usage_on_content_chunks() {
        let sse = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
        for wants in [false, true] {
            let mut t = streaming(wants);
            let mut out = Vec::new();
            t.stream(sse, true, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.contains("usage"), wants, "{text}");
            // Finished before the stream closed: no error, one [DONE].
            assert!(!text.contains("error"), "{text}");
            assert_eq!(text.matches("[DONE]").count(), 1);
            let u = t.stream_usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (3, 2));
        }
    }

    /// Payloads that are not JSON objects end the stream with an error event.
    #[test]
    fn malformed_payloads() {
        for bad in ["[1,2,3]", "not json", "{\"id\":", "42"] {
            let mut t = streaming(false);
            let mut out = Vec::new();
            t.stream(
                format!("data: {bad}\n\ndata: [DONE]\n\n").as_bytes(),
                true,
                &mut out,
            );
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("data: {\"error\""), "{bad}: {text}");
            assert_eq!(text.matches("[DONE]").count(), 1);
        }
        // Odd field types in an object are forwarded, not refused.
        let mut t = streaming(false);
        let mut out = Vec::new();
        t.stream(b"data: {\"choices\":7}\n\ndata: [DONE]\n\n", true, &mut out);
        assert_eq!(out, b"data: {\"choices\":7}\n\ndata: [DONE]\n\n");
    }
    /// A 10,000-event stream keeps the decoder's buffers at the size of one event.
    #[test]
    fn buffers_stay_bounded() {
        let mut t = streaming(false);
        let event = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
        let mut max_capacity = 0;
        for i in 0..10_000 {
            let mut out = Vec::new();
            let cut = i % event.len();
            t.stream(&event[..cut], false, &mut out);
            t.stream(&event[cut..], false, &mut out);
            assert_eq!(out.len(), event.len());
            max_capacity = max_capacity.max(t.decoder.buffered_capacity());
        }
        assert!(max_capacity < 512, "{max_capacity}");
    }
}
