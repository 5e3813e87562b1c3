//! Anthropic stream events → OpenAI `chat.completion.chunk` events, incrementally.
//!
//! Every upstream event is translated as soon as its blank line arrives: text, reasoning
//! and tool-call argument pieces are never held back. The only state that grows is the
//! open thinking block's text and signature, which the client needs whole (to send the
//! signed block back next turn) and which is bounded by that block.
//!
//! Every stream ends with exactly one `data: [DONE]`: after `message_stop` (preceded by the
//! usage chunk when the client asked), or after an OpenAI-style error event when the
//! provider reported an error, sent something malformed, or stopped early.

use std::ops::ControlFlow;

use super::events::{BlockDelta, ContentBlockStart, StreamError, StreamEvent};
use super::response::{finish_reason, usage_from_anthropic};
use super::schema::AnthropicUsage;
use crate::error::{ErrorKind, GatewayError};
use crate::openai::{
    write_error_event, ChunkHead, DeltaRef, FunctionDeltaRef, ThinkingBlockRef, ToolCallDeltaRef,
    DONE_EVENT,
};
use crate::provider::common::{stream_error, unfinished_stream_error};
use crate::provider::native::NativeStream;
use crate::provider::{StreamPreamble, TranslatedResponse};
use crate::sse::{scan_first_event, SseDecoder, SseEventRef, PREAMBLE_SCAN_LIMIT};
use crate::usage::Usage;

/// Per-attempt stream translation state.
#[derive(Debug)]
pub struct AnthropicStream {
    decoder: SseDecoder,
    state: State,
}

/// Everything but the decoder, so that the decoder's callback can borrow it.
#[derive(Debug)]
struct State {
    client_wants_usage: bool,
    created: u64,
    /// `message_start` was seen: `id` and `model` are known.
    started: bool,
    /// `[DONE]` was written: everything after is ignored.
    done: bool,
    /// The finish-reason chunk was written (once per stream).
    finish_sent: bool,
    /// What every chunk starts with: id, created and model, fixed by `message_start`.
    head: ChunkHead,
    /// `message_start` usage, with `message_delta`'s cumulative counts laid over it.
    usage: Option<AnthropicUsage>,
    /// The content block being streamed (Anthropic sends them one after the other).
    block: Option<OpenBlock>,
    /// Tool calls started so far: the next call's OpenAI `index`.
    tool_calls: u32,
}

#[derive(Debug)]
enum OpenBlock {
    Text {
        index: u32,
    },
    Tool {
        index: u32,
        /// The OpenAI tool-call index.
        call: u32,
        /// Some argument text was sent.
        has_arguments: bool,
    },
    Thinking {
        index: u32,
        thinking: String,
        signature: String,
    },
    /// Redacted thinking (sent whole at its start), server tools and unknown blocks.
    Other {
        index: u32,
    },
}

impl OpenBlock {
    fn index(&self) -> u32 {
        match self {
            OpenBlock::Text { index }
            | OpenBlock::Tool { index, .. }
            | OpenBlock::Thinking { index, .. }
            | OpenBlock::Other { index } => *index,
        }
    }
}

impl AnthropicStream {
    /// A translator for one stream.
    pub fn new(client_wants_usage: bool, now_unix_secs: u64) -> Self {
        AnthropicStream {
            decoder: SseDecoder::default(),
            state: State {
                client_wants_usage,
                created: now_unix_secs,
                started: false,
                done: false,
                finish_sent: false,
                head: ChunkHead::default(),
                usage: None,
                block: None,
                tool_calls: 0,
            },
        }
    }
}

impl NativeStream for AnthropicStream {
    /// Translates the next piece of the stream into `out`. At `end_of_stream` a stream that
    /// did not reach `message_stop` ends with an error event and `[DONE]`.
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        if self.state.done {
            return;
        }
        let state = &mut self.state;
        self.decoder.feed(chunk, |event| state.on_event(event, out));
        if state.done {
            return;
        }
        if let Some(e) = unfinished_stream_error(&mut self.decoder, end_of_stream) {
            state.fail(out, &e);
        }
    }

    /// Usage seen so far; complete once the stream has ended. `None` before
    /// `message_start`.
    fn usage(&self) -> Option<Usage> {
        self.state.usage.as_ref().map(usage_from_anthropic)
    }

    /// Bytes reserved by the stream's buffers, for tests and monitoring.
    fn buffered_capacity(&self) -> usize {
        let block = match &self.state.block {
            Some(OpenBlock::Thinking {
                thinking,
                signature,
                ..
            }) => thinking.capacity() + signature.capacity(),
            _ => 0,
        };
        self.decoder.buffered_capacity() + block
    }

    fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble(buffered, end_of_stream)
    }
}

/// Judges the start of a streamed 200: `Fail` when its first event (pings aside) is an
/// `error`, with a status Envoy can retry on; `Proceed` on any other event.
pub fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
    let verdict = scan_first_event(buffered, |event| {
        if event.event == Some("ping") {
            return None;
        }
        match StreamEvent::parse(event.data) {
            Ok(StreamEvent::Ping) => None,
            Ok(StreamEvent::Error { error }) => {
                let kind = error.error_kind();
                let status = match kind {
                    // An error inside a 200 is transient on the provider's side.
                    ErrorKind::Overloaded | ErrorKind::Api => 503,
                    other => other.default_status(),
                };
                let e = provider_error(&error).with_status(status);
                Some(StreamPreamble::Fail(TranslatedResponse::error(&e)))
            }
            // Anything else, malformed included, is for `push` to translate.
            _ => Some(StreamPreamble::Proceed),
        }
    });
    match verdict {
        Some(v) => v,
        None if end_of_stream || buffered.len() >= PREAMBLE_SCAN_LIMIT => StreamPreamble::Proceed,
        None => StreamPreamble::NeedMore,
    }
}

/// The provider's own error, keeping its type as `code`.
fn provider_error(error: &StreamError<'_>) -> GatewayError {
    let message = if error.message.is_empty() {
        "the provider reported an error"
    } else {
        error.message.as_ref()
    };
    let mut e = GatewayError::new(error.error_kind(), super::response::redact_secrets(message));
    if !error.kind.is_empty() {
        e = e.with_code(error.kind.as_ref());
    }
    e
}

impl State {
    fn on_event(&mut self, event: SseEventRef<'_>, out: &mut Vec<u8>) -> ControlFlow<()> {
        if event.event == Some("ping") {
            return ControlFlow::Continue(());
        }
        match StreamEvent::parse(event.data) {
            Ok(parsed) => self.on_parsed(parsed, out),
            Err(_) => self.fail(
                out,
                &stream_error("the provider sent a malformed stream event"),
            ),
        }
        if self.done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn on_parsed(&mut self, event: StreamEvent<'_>, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::Error { error } => self.fail(out, &provider_error(&error)),
            StreamEvent::MessageStart { message } => {
                if self.started {
                    return; // a repeated start adds nothing
                }
                self.started = true;
                let id = format!("chatcmpl-{}", message.id);
                self.head = ChunkHead::new(&id, self.created, &message.model);
                self.usage = Some(message.usage.unwrap_or_default());
                self.write(
                    out,
                    DeltaRef {
                        role: Some("assistant"),
                        content: Some(""),
                        ..DeltaRef::default()
                    },
                    None,
                );
            }
            _ if !self.started => self.fail(
                out,
                &stream_error("the provider's stream did not begin with message_start"),
            ),
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.close_block(out);
                self.open_block(index, content_block, out);
            }
            StreamEvent::ContentBlockDelta { index, delta } => self.on_delta(index, delta, out),
            StreamEvent::ContentBlockStop { index } => {
                if self.block.as_ref().map(OpenBlock::index) == Some(index) {
                    self.close_block(out);
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(&u);
                }
                if !self.finish_sent {
                    let reason = finish_reason(delta.stop_reason.as_deref().unwrap_or("end_turn"));
                    self.finish(out, reason);
                }
            }
            StreamEvent::MessageStop => {
                self.close_block(out);
                if !self.finish_sent {
                    self.finish(out, "stop");
                }
                if self.client_wants_usage {
                    let body = self
                        .usage
                        .as_ref()
                        .map(usage_from_anthropic)
                        .unwrap_or_default()
                        .to_body();
                    self.head.write_usage(out, &body);
                }
                out.extend_from_slice(DONE_EVENT);
                self.done = true;
            }
        }
    }

    fn open_block(&mut self, index: u32, block: ContentBlockStart<'_>, out: &mut Vec<u8>) {
        self.block = Some(match block {
            ContentBlockStart::Text { text } => {
                if !text.is_empty() {
                    self.write_content(out, &text);
                }
                OpenBlock::Text { index }
            }
            ContentBlockStart::ToolUse { id, name } => {
                let call = self.tool_calls;
                self.tool_calls = self.tool_calls.saturating_add(1);
                self.write_tool_call(
                    out,
                    ToolCallDeltaRef {
                        index: call,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDeltaRef {
                            name: Some(&name),
                            arguments: Some(""),
                        },
                    },
                );
                OpenBlock::Tool {
                    index,
                    call,
                    has_arguments: false,
                }
            }
            ContentBlockStart::Thinking {
                thinking,
                signature,
            } => {
                if !thinking.is_empty() {
                    self.write_reasoning(out, &thinking);
                }
                OpenBlock::Thinking {
                    index,
                    thinking: thinking.into_owned(),
                    signature: signature.into_owned(),
                }
            }
            ContentBlockStart::RedactedThinking { data } => {
                let block = [ThinkingBlockRef {
                    kind: "redacted_thinking",
                    thinking: None,
                    signature: None,
                    data: Some(&data),
                }];
                self.write(
                    out,
                    DeltaRef {
                        thinking_blocks: Some(&block),
                        ..DeltaRef::default()
                    },
                    None,
                );
                OpenBlock::Other { index }
            }
            ContentBlockStart::Other => OpenBlock::Other { index },
        });
    }

    fn on_delta(&mut self, index: u32, delta: BlockDelta<'_>, out: &mut Vec<u8>) {
        let open = self.block.as_mut().filter(|b| b.index() == index);
        match delta {
            // Text is shown wherever it comes from: losing it would be worse.
            BlockDelta::TextDelta { text } => {
                if !text.is_empty() {
                    self.write_content(out, &text);
                }
            }
            BlockDelta::ThinkingDelta { thinking } => {
                if thinking.is_empty() {
                    return;
                }
                if let Some(OpenBlock::Thinking { thinking: all, .. }) = open {
                    all.push_str(&thinking);
                }
                self.write_reasoning(out, &thinking);
            }
            BlockDelta::SignatureDelta { signature } => {
                if let Some(OpenBlock::Thinking { signature: all, .. }) = open {
                    all.push_str(&signature);
                }
            }
            BlockDelta::InputJsonDelta { partial_json } => {
                // Server-tool input (an `Other` block) is not the client's business.
                let Some(OpenBlock::Tool {
                    call,
                    has_arguments,
                    ..
                }) = open
                else {
                    return;
                };
                if partial_json.is_empty() {
                    return;
                }
                *has_arguments = true;
                let call = *call;
                self.write_tool_call(out, arguments(call, &partial_json));
            }
            BlockDelta::Other => {}
        }
    }

    /// Ends the open block: a thinking block is sent whole with its signature; a tool call
    /// that got no argument text gets `{}`, as the non-streamed answer would have it.
    fn close_block(&mut self, out: &mut Vec<u8>) {
        match self.block.take() {
            Some(OpenBlock::Thinking {
                thinking,
                signature,
                ..
            }) => {
                let block = [ThinkingBlockRef {
                    kind: "thinking",
                    thinking: Some(&thinking),
                    signature: (!signature.is_empty()).then_some(signature.as_str()),
                    data: None,
                }];
                self.write(
                    out,
                    DeltaRef {
                        thinking_blocks: Some(&block),
                        ..DeltaRef::default()
                    },
                    None,
                );
            }
            Some(OpenBlock::Tool {
                call,
                has_arguments: false,
                ..
            }) => self.write_tool_call(out, arguments(call, "{}")),
            _ => {}
        }
    }

    /// `message_delta` counts are cumulative: each one present replaces the earlier value.
    fn merge_usage(&mut self, later: &AnthropicUsage) {
        let u = self.usage.get_or_insert_with(AnthropicUsage::default);
        let replace = |old: &mut Option<u64>, new: Option<u64>| {
            if new.is_some() {
                *old = new;
            }
        };
        replace(&mut u.input_tokens, later.input_tokens);
        replace(&mut u.output_tokens, later.output_tokens);
        replace(
            &mut u.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        replace(
            &mut u.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        if later.cache_creation.is_some() {
            u.cache_creation = later.cache_creation;
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>, reason: &str) {
        self.write(out, DeltaRef::default(), Some(reason));
        self.finish_sent = true;
    }

    /// Ends the stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, error: &GatewayError) {
        write_error_event(out, error);
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
        self.block = None;
    }

    fn write_content(&self, out: &mut Vec<u8>, text: &str) {
        let delta = DeltaRef {
            content: Some(text),
            ..DeltaRef::default()
        };
        self.write(out, delta, None);
    }

    fn write_reasoning(&self, out: &mut Vec<u8>, text: &str) {
        let delta = DeltaRef {
            reasoning_content: Some(text),
            ..DeltaRef::default()
        };
        self.write(out, delta, None);
    }

    fn write_tool_call(&self, out: &mut Vec<u8>, call: ToolCallDeltaRef<'_>) {
        let calls = [call];
        let delta = DeltaRef {
            tool_calls: Some(&calls),
            ..DeltaRef::default()
        };
        self.write(out, delta, None);
    }

    fn write(&self, out: &mut Vec<u8>, delta: DeltaRef<'_>, finish_reason: Option<&str>) {
        self.head.write_choice(out, 0, &delta, finish_reason);
    }
}

/// An argument piece of tool call `call`.
fn arguments(call: u32, piece: &str) -> ToolCallDeltaRef<'_> {
    ToolCallDeltaRef {
        index: call,
        id: None,
        kind: None,
        function: FunctionDeltaRef {
            name: None,
            arguments: Some(piece),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run(stream: &mut AnthropicStream, input: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        stream.push(input, true, &mut out);
        parse_output(&out)
    }

    fn parse_output(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"), "{text}");
        text.trim_end_matches("\n\n")
            .split("\n\n")
            .map(|e| {
                let payload = e.strip_prefix("data: ").unwrap();
                if payload == "[DONE]" {
                    json!("[DONE]")
                } else {
                    crate::json::path::from_str(payload).unwrap()
                }
            })
            .collect()
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n";

    /// Output tokens come from `message_delta` in place of `message_start`'s, never added.
    #[test]
    fn usage_is_replaced_not_summed() {
        let mut s = AnthropicStream::new(true, 1);
        let input = format!(
            "{START}event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":7}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let events = run(&mut s, input.as_bytes());
        let usage = s.usage().unwrap();
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(usage.prompt_tokens, 15);
        assert_eq!(usage.cache_read_tokens, 5);
        let chunk = &events[events.len() - 2];
        assert_eq!(chunk["choices"], json!([]));
        assert_eq!(chunk["usage"]["total_tokens"], 22);
    }

    /// Content before `message_start` is a protocol error, reported and ended.
    #[test]
    fn content_before_start_fails() {
        let mut s = AnthropicStream::new(false, 1);
        let events = run(
            &mut s,
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        );
        assert_eq!(events.len(), 2);
        assert!(events[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("message_start"));
        assert_eq!(events[1], "[DONE]");
    }

    /// Nothing is written after `[DONE]`, whatever arrives.
    #[test]
    fn nothing_after_done() {
        let mut s = AnthropicStream::new(false, 1);
        let mut out = Vec::new();
        s.push(b"data: not json\n\n", false, &mut out);
        let len = out.len();
        s.push(START.as_bytes(), false, &mut out);
        s.push(b"", true, &mut out);
        assert_eq!(out.len(), len);
        assert_eq!(parse_output(&out).len(), 2);
    }

    /// An event over the decoder's limit ends the stream with an error, not unbounded memory.
    #[test]
    fn oversized_event_fails() {
        let mut s = AnthropicStream::new(false, 1);
        let mut out = Vec::new();
        s.push(START.as_bytes(), false, &mut out);
        let big = vec![b'x'; SseDecoder::DEFAULT_LIMIT + 1];
        s.push(b"data: ", false, &mut out);
        s.push(&big, false, &mut out);
        let events = parse_output(&out);
        assert!(events[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"));
        assert_eq!(events.last().unwrap(), "[DONE]");
        assert!(s.buffered_capacity() < 1024);
    }

    /// A 10,000-event stream keeps every buffer at the size of one event.
    #[test]
    fn buffers_stay_bounded() {
        let mut s = AnthropicStream::new(false, 1);
        let mut out = Vec::new();
        s.push(START.as_bytes(), false, &mut out);
        s.push(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n", false, &mut out);
        let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello \\\"world\\\"\"}}\n\n";
        let mut max_capacity = 0;
        for i in 0..10_000 {
            out.clear();
            // Cut each event at a different place so the carry-over buffer is exercised.
            let cut = i % delta.len();
            s.push(&delta[..cut], false, &mut out);
            s.push(&delta[cut..], false, &mut out);
            assert_eq!(
                parse_output(&out)[0]["choices"][0]["delta"]["content"],
                "hello \"world\""
            );
            max_capacity = max_capacity.max(s.buffered_capacity());
        }
        assert!(max_capacity < 512, "{max_capacity}");
    }

    /// The preamble only fails on an error first event, and maps its status.
    #[test]
    fn preamble_statuses() {
        let err = |t: &str| {
            format!(": c\n\nevent: ping\ndata: {{\"type\":\"ping\"}}\n\nevent: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{t}\",\"message\":\"m\"}}}}\n\n")
        };
        for (t, status) in [
            ("overloaded_error", 503),
            ("api_error", 503),
            ("rate_limit_error", 429),
            ("invalid_request_error", 400),
        ] {
            match preamble(err(t).as_bytes(), false) {
                StreamPreamble::Fail(r) => {
                    assert_eq!(r.status, status);
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(v["error"]["message"], "m");
                    assert_eq!(v["error"]["code"], t);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(preamble(START.as_bytes(), false), StreamPreamble::Proceed);
        assert_eq!(
            preamble(b"event: ping\ndata: {\"type\":\"ping\"}\n\n", false),
            StreamPreamble::NeedMore
        );
        assert_eq!(
            preamble(&START.as_bytes()[..40], false),
            StreamPreamble::NeedMore
        );
        assert_eq!(preamble(b"", true), StreamPreamble::Proceed);
        let pings = b": keepalive\n\n".repeat(PREAMBLE_SCAN_LIMIT / 13 + 1);
        assert_eq!(preamble(&pings, false), StreamPreamble::Proceed);
    }

    /// Translation speed, `cargo test --release -- --ignored --nocapture per_event_cost`.
    #[test]
    #[ignore]
    fn per_event_cost() {
        let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, this is a typical \\\"token\\\" run\\n\"}}\n\n";
        let tool = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n\n";
        let n = 200_000;
        for (name, ev) in [("text_delta", &delta[..]), ("input_json_delta", &tool[..])] {
            let mut s = AnthropicStream::new(false, 1);
            let mut out = Vec::with_capacity(1024);
            s.push(START.as_bytes(), false, &mut out);
            s.push(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n", false, &mut out);
            let t = std::time::Instant::now();
            for _ in 0..n {
                out.clear();
                s.push(ev, false, &mut out);
            }
            let per = t.elapsed() / n;
            println!("{name}: {per:?} per event");
        }
    }
}
