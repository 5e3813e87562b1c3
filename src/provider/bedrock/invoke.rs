//! Claude on Bedrock through InvokeModel, for Anthropic's Messages API: the client's body
//! passed through (`POST /model/{modelId}/invoke`, streamed by
//! `POST /model/{modelId}/invoke-with-response-stream`), so that thinking signatures,
//! cache marks and everything else Converse has no field for arrive as sent.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html>
//! (the body is Anthropic's, without `model`, with `anthropic_version: bedrock-2023-05-31`
//! and the beta features as an `anthropic_beta` array) and
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html>
//! (each `chunk` event's payload is `{"bytes": <base64 of one Anthropic stream event>}`;
//! errors are exception messages). The answer is Anthropic's Message; the stream is
//! re-told as Anthropic's SSE, which the inner translator (the Messages passthrough) reads
//! its usage from and passes on.

use std::ops::ControlFlow;

use serde_json::Value;

use super::eventstream::EventStreamDecoder;
use super::stream::{error_event, exception};
use super::{model_path, EVENT_STREAM_MEDIA_TYPE};
use crate::error::GatewayError;
use crate::provider::placement::inner_request;
use crate::provider::{
    ClientRequest, StreamPreamble, Target, TranslatedResponse, Translator, UpstreamRequest,
};
use crate::usage::Usage;

/// The `anthropic_version` InvokeModel takes for Claude's Messages API.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Whether a Bedrock model id is Claude's (`anthropic.claude-…`, or an inference profile
/// `us.` / `eu.` / `apac.` / `global.anthropic.claude-…`), which InvokeModel serves with
/// Anthropic's own body. ARNs do not say the model; `converse/` asks for Converse.
pub fn is_claude(model: &str) -> bool {
    let model = model.strip_prefix("invoke/").unwrap_or(model);
    let model = match model.split_once('.') {
        Some((geo, rest)) if !geo.is_empty() && geo.bytes().all(|b| b.is_ascii_lowercase()) => {
            match rest.strip_prefix("anthropic.") {
                Some(_) => rest,
                None => model,
            }
        }
        _ => model,
    };
    model.starts_with("anthropic.claude-")
}

/// `s` decoded from standard base64 (padding optional); `None` when it is not base64.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s.strip_suffix(b"==").or(s.strip_suffix(b"=")).unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone sextet cannot end a base64 text.
    (bits < 6).then_some(out)
}

/// Adds the client's `anthropic-beta` header (comma-separated names) to an InvokeModel
/// body as its `anthropic_beta` array, where Bedrock takes the beta features; a body that
/// names its own `anthropic_beta` keeps it.
pub fn add_betas(body: &mut Vec<u8>, header: &str) {
    let mut names = header.split(',').map(str::trim).filter(|n| !n.is_empty());
    let Some(first) = names.next() else { return };
    if body.first() != Some(&b'{') || body.windows(17).any(|w| w == b"\"anthropic_beta\":") {
        return;
    }
    let mut member = b"\"anthropic_beta\":[".to_vec();
    super::push_str(&mut member, first);
    for name in names {
        member.push(b',');
        super::push_str(&mut member, name);
    }
    member.push(b']');
    if body.get(1) != Some(&b'}') {
        member.push(b',');
    }
    body.splice(1..1, member);
}

/// Messages to Claude on Bedrock: `inner` builds the body (the Messages passthrough with
/// Bedrock's `anthropic_version`), this places it on InvokeModel and reads Bedrock's
/// errors and event stream.
pub struct ClaudeInvoke {
    inner: Box<dyn Translator>,
    decoder: EventStreamDecoder,
    /// The `x-amzn-errortype` of the answer.
    error_type: String,
    /// The stream ended with an error event; nothing follows it.
    failed: bool,
}

impl ClaudeInvoke {
    /// Claude on Bedrock around the Messages passthrough.
    pub fn new(inner: Box<dyn Translator>) -> Self {
        ClaudeInvoke {
            inner,
            decoder: EventStreamDecoder::default(),
            error_type: String::new(),
            failed: false,
        }
    }

    /// Puts the body on InvokeModel with Bedrock's headers only: the passthrough's Anthropic
    /// headers have no place here, the version is in the body.
    fn place(&self, mut up: UpstreamRequest, target: &Target<'_>) -> UpstreamRequest {
        let stream = self.inner.is_stream();
        let model = target.upstream_model;
        let model = model.strip_prefix("invoke/").unwrap_or(model);
        up.path = model_path(
            target.base_path,
            model,
            if stream {
                "invoke-with-response-stream"
            } else {
                "invoke"
            },
        );
        if let Some(host) = target.options.host.as_deref() {
            up.headers.push((":authority", host.to_string()));
        }
        if let Some(key) = target.api_key {
            up.headers.push(("authorization", format!("Bearer {key}")));
        }
        if stream {
            up.headers
                .push(("accept", EVENT_STREAM_MEDIA_TYPE.to_string()));
        }
        up
    }

    /// The Anthropic SSE of one frame's `chunk` payload, or an error event.
    fn chunk_event(payload: &[u8], sse: &mut Vec<u8>) -> bool {
        let event = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|p| {
                p.get("bytes")?
                    .as_str()
                    .and_then(|b| base64_decode(b.as_bytes()))
            })
            .and_then(|json| {
                let v = serde_json::from_slice::<Value>(&json).ok()?;
                let kind = v.get("type")?.as_str()?.to_string();
                Some((kind, json))
            });
        let Some((kind, json)) = event else {
            error_event(
                sse,
                "api_error",
                "the provider sent a malformed stream event",
            );
            return false;
        };
        sse.extend_from_slice(b"event: ");
        sse.extend_from_slice(kind.as_bytes());
        sse.extend_from_slice(b"\ndata: ");
        // One event a line: the JSON the provider encoded is compact, but need not be.
        for &b in &json {
            if b != b'\n' && b != b'\r' {
                sse.push(b);
            }
        }
        sse.extend_from_slice(b"\n\n");
        true
    }
}

impl Translator for ClaudeInvoke {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let up = inner_request(self.inner.as_mut(), request, target)?;
        Ok(self.place(up, target))
    }

    fn is_stream(&self) -> bool {
        self.inner.is_stream()
    }

    fn response_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        self.error_type = super::error_type_header(headers);
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        super::status_for(&self.error_type, upstream_status)
    }

    fn stream_media_type(&self) -> &'static str {
        EVENT_STREAM_MEDIA_TYPE
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        // Bedrock's `{"message"}` errors take Anthropic's shape there, at the mapped status.
        let status = self.response_status(upstream_status);
        self.inner.response(status, body)
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        let mut sse = Vec::with_capacity(chunk.len() + 64);
        if !self.failed {
            let failed = &mut self.failed;
            self.decoder.feed(chunk, |m| {
                let ok = if m.message_type != "event" {
                    let (kind, message) = exception(&m);
                    error_event(&mut sse, kind, &message);
                    false
                } else if m.event_type == "chunk" {
                    Self::chunk_event(m.payload, &mut sse)
                } else {
                    true // other events carry no Messages event
                };
                if ok {
                    ControlFlow::Continue(())
                } else {
                    *failed = true;
                    ControlFlow::Break(())
                }
            });
            if !self.failed {
                let why = match self.decoder.error() {
                    Some(e) => Some(e.describe()),
                    None if end_of_stream && self.decoder.has_partial() => {
                        Some("a stream that ended inside an event-stream frame")
                    }
                    None => None,
                };
                if let Some(why) = why {
                    error_event(&mut sse, "api_error", &format!("the provider sent {why}"));
                    self.failed = true;
                }
            }
        }
        self.inner.stream(&sse, end_of_stream, out);
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.inner.stream_usage()
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.decoder.buffered_capacity() + self.inner.stream_buffered_bytes()
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        match super::stream::preamble(buffered, end_of_stream) {
            // The inner translator gives the error Anthropic's shape.
            StreamPreamble::Fail(a) => StreamPreamble::Fail(self.inner.response(a.status, &a.body)),
            p => p,
        }
    }

    fn stream_complete(&self, out: &[u8]) -> bool {
        self.inner.stream_complete(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_model_ids() {
        for m in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            "invoke/anthropic.claude-opus-4-1-20250805-v1:0",
        ] {
            assert!(is_claude(m), "{m}");
        }
        for m in [
            "amazon.nova-pro-v1:0",
            "us.meta.llama3-3-70b-instruct-v1:0",
            "converse/anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x",
            "anthropic.claude",
            "us.amazon.nova-lite-v1:0",
            ".anthropic.claude-x",
        ] {
            assert!(!is_claude(m), "{m}");
        }
    }

    #[test]
    fn betas_in_the_body() {
        let mut body = br#"{"max_tokens":1}"#.to_vec();
        add_betas(
            &mut body,
            "context-1m-2025-08-07, interleaved-thinking-2025-05-14",
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"anthropic_beta":["context-1m-2025-08-07","interleaved-thinking-2025-05-14"],"max_tokens":1}"#
        );
        let mut body = b"{}".to_vec();
        add_betas(&mut body, "a");
        assert_eq!(body, br#"{"anthropic_beta":["a"]}"#);
        for header in ["", " , "] {
            let mut body = b"{}".to_vec();
            add_betas(&mut body, header);
            assert_eq!(body, b"{}");
        }
        let own = br#"{"anthropic_beta":["x"],"max_tokens":1}"#;
        let mut body = own.to_vec();
        add_betas(&mut body, "a");
        assert_eq!(body, own.to_vec(), "the body's own list is kept");
    }

    #[test]
    fn base64() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg", b"foob"),
            ("eyJ0eXBlIjoicGluZyJ9", br#"{"type":"ping"}"#),
            ("+/8=", &[0xfb, 0xff]),
        ] {
            assert_eq!(
                base64_decode(text.as_bytes()).as_deref(),
                Some(bytes),
                "{text}"
            );
        }
        for bad in ["Z", "Zm9vY", "Zm 9v", "Zm9v!", "Zg===", "\u{e9}"] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
