//! ConverseStream events (AWS event-stream frames) → OpenAI `chat.completion.chunk` events,
//! incrementally.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>.
//! Each frame is decoded as soon as its last byte arrives ([`EventStreamDecoder`]) and
//! re-told as the Claude Messages stream event it mirrors, which the Anthropic stream
//! translator turns into OpenAI chunks, so both providers stream alike:
//!
//! | ConverseStream | Messages stream |
//! | --- | --- |
//! | `messageStart` | `message_start` |
//! | `contentBlockStart` (`toolUse`) | `content_block_start` (`tool_use`) |
//! | first `contentBlockDelta` of a text / reasoning block (Converse sends no start for them) | `content_block_start` (`text` / `thinking`) |
//! | `contentBlockDelta` `text` / `reasoningContent` / `toolUse.input` | `text_delta` / `thinking_delta`, `signature_delta` / `input_json_delta` |
//! | `contentBlockStop` | `content_block_stop` |
//! | `messageStop` (held) + `metadata` (usage) | `message_delta` (stop reason, usage) + `message_stop` |
//! | an `exception` frame | `error` |
//!
//! A corrupt frame (checksum, length) ends the stream with an error event.

use std::ops::ControlFlow;

use serde_json::Value;

use super::eventstream::{EventStreamDecoder, Message};
use super::response::{exception_status, stop_reason, usage};
use super::{push_json, push_str};
use crate::error::ErrorKind;
use crate::provider::anthropic::stream::AnthropicStream;
use crate::provider::native::NativeStream;
use crate::provider::{StreamPreamble, TranslatedResponse};
use crate::usage::Usage;

/// Per-attempt stream translation state.
#[derive(Debug)]
pub struct ConverseStream {
    decoder: EventStreamDecoder,
    inner: AnthropicStream,
    model: String,
    created: u64,
    /// Content block indices that got their start event.
    started: Vec<u64>,
    /// `messageStop`'s reason, told with the usage of the `metadata` that follows it.
    stop: Option<String>,
    /// `message_stop` was told.
    finished: bool,
    /// The decoder's error was told: nothing more is.
    failed: bool,
    /// The Messages events of the current piece.
    sse: Vec<u8>,
}

impl ConverseStream {
    /// A translator for one stream of `model`.
    pub fn new(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self {
        ConverseStream {
            decoder: EventStreamDecoder::default(),
            inner: AnthropicStream::new(client_wants_usage, now_unix_secs),
            model: model.to_string(),
            created: now_unix_secs,
            started: Vec::new(),
            stop: None,
            finished: false,
            failed: false,
            sse: Vec::new(),
        }
    }

    fn on_message(&mut self, m: Message<'_>, sse: &mut Vec<u8>) {
        if m.message_type != "event" {
            let (kind, message) = exception(&m);
            error_event(sse, kind, &message);
            return;
        }
        let Ok(p) = serde_json::from_slice::<Value>(m.payload) else {
            error_event(
                sse,
                "api_error",
                "the provider sent a malformed stream event",
            );
            return;
        };
        let index = p
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match m.event_type {
            "messageStart" => {
                open(sse, "message_start");
                sse.extend_from_slice(b"\"message\":{\"id\":");
                push_str(sse, &format!("bedrock-{:x}", self.created));
                sse.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
                push_str(sse, &self.model);
                sse.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}");
                close(sse);
            }
            "contentBlockStart" => {
                let tool = p.pointer("/start/toolUse");
                let s = |k: &str| {
                    tool.and_then(|t| t.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                let mut block = b"{\"type\":\"tool_use\",\"id\":".to_vec();
                push_str(&mut block, s("toolUseId"));
                block.extend_from_slice(b",\"name\":");
                push_str(&mut block, s("name"));
                block.extend_from_slice(b",\"input\":{}}");
                self.start(sse, index, &block);
            }
            "contentBlockDelta" => {
                let Some(delta) = p.get("delta") else { return };
                if let Some(text) = delta.get("text") {
                    self.start(sse, index, b"{\"type\":\"text\",\"text\":\"\"}");
                    block_delta(sse, index, "text_delta", "text", text);
                } else if let Some(r) = delta.get("reasoningContent") {
                    self.start(
                        sse,
                        index,
                        b"{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}",
                    );
                    if let Some(text) = r.get("text") {
                        block_delta(sse, index, "thinking_delta", "thinking", text);
                    }
                    if let Some(sig) = r.get("signature") {
                        block_delta(sse, index, "signature_delta", "signature", sig);
                    }
                } else if let Some(input) = delta.pointer("/toolUse/input") {
                    block_delta(sse, index, "input_json_delta", "partial_json", input);
                }
            }
            "contentBlockStop" => {
                open(sse, "content_block_stop");
                sse.extend_from_slice(format!("\"index\":{index}").as_bytes());
                close(sse);
            }
            "messageStop" => {
                let reason = p
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.stop = Some(stop_reason(reason).to_string());
            }
            "metadata" => {
                if let Some(reason) = self.stop.take() {
                    finish(sse, &reason, p.get("usage"));
                    self.finished = true;
                }
            }
            // Unknown events newer than this gateway are skipped.
            _ => {}
        }
    }

    /// `content_block_start` once per index; `block` is its JSON.
    fn start(&mut self, sse: &mut Vec<u8>, index: u64, block: &[u8]) {
        if self.started.contains(&index) {
            return;
        }
        self.started.push(index);
        open(sse, "content_block_start");
        sse.extend_from_slice(format!("\"index\":{index},\"content_block\":").as_bytes());
        sse.extend_from_slice(block);
        close(sse);
    }
}

impl NativeStream for ConverseStream {
    /// Translates the next piece of the stream into `out`.
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        if self.failed {
            self.inner.push(b"", end_of_stream, out);
            return;
        }
        let mut sse = std::mem::take(&mut self.sse);
        sse.clear();
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.feed(chunk, |m| {
            self.on_message(m, &mut sse);
            ControlFlow::Continue(())
        });
        if let Some(e) = decoder.error() {
            self.failed = true;
            error_event(
                &mut sse,
                "api_error",
                &format!("the provider sent {}", e.describe()),
            );
        } else if end_of_stream && !self.finished {
            if let Some(reason) = self.stop.take() {
                // No `metadata` after `messageStop`: finish without usage.
                finish(&mut sse, &reason, None);
                self.finished = true;
            }
        }
        self.decoder = decoder;
        self.inner.push(&sse, end_of_stream, out);
        self.sse = sse;
    }

    /// Usage seen so far.
    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    /// Bytes held between pieces.
    fn buffered_capacity(&self) -> usize {
        self.decoder.buffered_capacity() + self.inner.buffered_capacity() + self.sse.capacity()
    }

    fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble(buffered, end_of_stream)
    }
}

/// Starts a Messages event of type `name`: `event: <name>` and the data's first member.
fn open(sse: &mut Vec<u8>, name: &str) {
    sse.extend_from_slice(b"event: ");
    sse.extend_from_slice(name.as_bytes());
    sse.extend_from_slice(b"\ndata: {\"type\":\"");
    sse.extend_from_slice(name.as_bytes());
    sse.extend_from_slice(b"\",");
}

fn close(sse: &mut Vec<u8>) {
    sse.extend_from_slice(b"}\n\n");
}

/// `content_block_delta` carrying `{"type": kind, field: value}`.
fn block_delta(sse: &mut Vec<u8>, index: u64, kind: &str, field: &str, value: &Value) {
    open(sse, "content_block_delta");
    sse.extend_from_slice(
        format!("\"index\":{index},\"delta\":{{\"type\":\"{kind}\",\"{field}\":").as_bytes(),
    );
    push_json(sse, value);
    sse.push(b'}');
    close(sse);
}

/// `message_delta` with the stop reason and usage, then `message_stop`.
fn finish(sse: &mut Vec<u8>, reason: &str, u: Option<&Value>) {
    open(sse, "message_delta");
    sse.extend_from_slice(b"\"delta\":{\"stop_reason\":");
    push_str(sse, reason);
    sse.push(b'}');
    if let Some(u) = u {
        let u = usage(u);
        sse.extend_from_slice(b",\"usage\":{");
        let mut first = true;
        for (name, n) in [
            ("input_tokens", u.input_tokens),
            ("output_tokens", u.output_tokens),
            ("cache_read_input_tokens", u.cache_read_input_tokens),
            ("cache_creation_input_tokens", u.cache_creation_input_tokens),
        ] {
            if let Some(n) = n {
                if !first {
                    sse.push(b',');
                }
                first = false;
                push_str(sse, name);
                sse.push(b':');
                push_json(sse, &n);
            }
        }
        sse.push(b'}');
    }
    close(sse);
    open(sse, "message_stop");
    sse.pop();
    close(sse);
}

pub(super) fn error_event(sse: &mut Vec<u8>, kind: &str, message: &str) {
    open(sse, "error");
    sse.extend_from_slice(format!("\"error\":{{\"type\":\"{kind}\",\"message\":").as_bytes());
    push_str(sse, message);
    sse.push(b'}');
    close(sse);
}

/// The Messages error type and message of an `exception` (or `error`) frame.
pub(super) fn exception(m: &Message<'_>) -> (&'static str, String) {
    let name = if m.exception_type.is_empty() {
        m.error_code
    } else {
        m.exception_type
    };
    let message = serde_json::from_slice::<Value>(m.payload)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            if m.error_message.is_empty() {
                format!("the provider reported `{name}`")
            } else {
                m.error_message.to_string()
            }
        });
    let kind = match exception_status(name).map(|(_, k)| k) {
        Some(ErrorKind::RateLimit) => "rate_limit_error",
        Some(ErrorKind::Overloaded) => "overloaded_error",
        Some(ErrorKind::InvalidRequest) => "invalid_request_error",
        Some(ErrorKind::PermissionDenied) => "permission_error",
        Some(ErrorKind::NotFound) => "not_found_error",
        Some(ErrorKind::Timeout) => "timeout_error",
        _ => "api_error",
    };
    (kind, message)
}

/// Judges the start of a streamed 200: a first frame that is an exception answers its own
/// status (a throttled or unavailable model then falls back); anything else proceeds.
pub fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
    let mut decoder = EventStreamDecoder::default();
    let mut verdict = None;
    decoder.feed(buffered, |m| {
        verdict = Some(if m.message_type == "event" {
            StreamPreamble::Proceed
        } else {
            let name = if m.exception_type.is_empty() {
                m.error_code
            } else {
                m.exception_type
            };
            let status = exception_status(name).map_or(503, |(s, _)| match s {
                // An error inside a 200 is transient on the provider's side.
                500 | 502 => 503,
                s => s,
            });
            let (_, message) = exception(&m);
            let mut body = b"{\"message\":".to_vec();
            push_str(&mut body, &message);
            body.push(b'}');
            let e =
                super::response::provider_error(status, status, name, &body).with_status(status);
            StreamPreamble::Fail(TranslatedResponse::error(&e))
        });
        ControlFlow::Break(())
    });
    match verdict {
        Some(v) => v,
        None if decoder.error().is_some() || end_of_stream => StreamPreamble::Proceed,
        None if buffered.len() >= crate::sse::PREAMBLE_SCAN_LIMIT => StreamPreamble::Proceed,
        None => StreamPreamble::NeedMore,
    }
}
