//! Streams for the Messages API.
//!
//! [`ChatToMessages`]: a translator's OpenAI `chat.completion.chunk` stream → Anthropic's
//! event sequence (<https://docs.anthropic.com/en/api/messages-streaming>):
//! `message_start`, `ping`, then per block `content_block_start`, its deltas
//! (`thinking_delta`, `text_delta`, `input_json_delta`) and `content_block_stop`, then
//! `message_delta` (stop reason, usage) and `message_stop`; a failure is an `error` event.
//! Each piece is translated as soon as its event is complete, whatever the split.
//!
//! [`AnthropicUsageTracker`]: reads the usage of an Anthropic stream passed through as it
//! is (`message_start`'s, with `message_delta`'s cumulative counts laid over it).

use std::ops::ControlFlow;

use serde_json::Value;

use super::response::{message_id, stop_reason};
use crate::provider::anthropic::events::StreamEvent;
use crate::provider::anthropic::response::usage_from_anthropic;
use crate::provider::anthropic::schema::AnthropicUsage;
use crate::sse::{SseDecoder, SseEventRef};
use crate::usage::Usage;

/// The block being streamed: Anthropic sends blocks one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its OpenAI `index`.
    Tool(u64),
}

/// OpenAI chunk stream → Anthropic events, incrementally.
#[derive(Debug, Default)]
pub struct ChatToMessages {
    decoder: SseDecoder,
    state: State,
}

#[derive(Debug, Default)]
struct State {
    /// The client's model name, JSON-quoted.
    model: String,
    started: bool,
    done: bool,
    /// Index of the next block.
    next: u32,
    open: Option<Open>,
    /// OpenAI tool-call indices already given a block.
    tools: Vec<u64>,
    stop: Option<&'static str>,
}

/// Appends `s` as a JSON string.
fn quoted(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

impl ChatToMessages {
    /// A translation for one stream; `model` is the name the client asked for.
    pub fn new(model: &str) -> Self {
        let mut q = Vec::new();
        quoted(&mut q, model);
        ChatToMessages {
            decoder: SseDecoder::default(),
            state: State {
                model: String::from_utf8(q).unwrap_or_default(),
                ..State::default()
            },
        }
    }

    /// Translates the next piece into `out`; `usage` is the stream's usage so far, for
    /// `message_delta`. A stream that ends without `[DONE]` ends with an `error` event.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        usage: Option<Usage>,
        out: &mut Vec<u8>,
    ) {
        if self.state.done {
            return;
        }
        let state = &mut self.state;
        feed(&mut self.decoder, chunk, &mut |e| {
            state.on_event(e, usage, out)
        });
        if end_of_stream && !self.state.done {
            self.decoder.finish();
            self.state.fail(
                out,
                "api_error",
                "the provider's stream ended before completion",
            );
        }
    }

    /// The `message_stop` event was written.
    pub fn is_done(&self) -> bool {
        self.state.done
    }

    /// Bytes held between pieces.
    pub fn buffered_bytes(&self) -> usize {
        self.decoder.buffered_capacity()
    }
}

/// The decoder driven through one callback type, so that both streams here share one copy
/// of its code in the module (each closure type would be another).
fn feed(
    decoder: &mut SseDecoder,
    chunk: &[u8],
    on_event: &mut dyn FnMut(SseEventRef<'_>) -> ControlFlow<()>,
) {
    decoder.feed(chunk, on_event);
}

/// `event: <name>\ndata: {"type":"<name>"` — the caller closes the object and the event.
fn open_event(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

impl State {
    fn on_event(
        &mut self,
        e: SseEventRef<'_>,
        usage: Option<Usage>,
        out: &mut Vec<u8>,
    ) -> ControlFlow<()> {
        if e.data.trim() == "[DONE]" {
            self.finish(usage, out);
            return ControlFlow::Break(());
        }
        let Ok(v) = serde_json::from_str::<Value>(e.data) else {
            self.fail(
                out,
                "api_error",
                "the provider sent a malformed stream event",
            );
            return ControlFlow::Break(());
        };
        if let Some(err) = v.get("error") {
            let kind = err
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("api_error");
            let kind = match kind {
                "invalid_request_error"
                | "authentication_error"
                | "permission_error"
                | "not_found_error"
                | "rate_limit_error"
                | "overloaded_error"
                | "timeout_error"
                | "request_too_large" => kind,
                _ => "api_error",
            };
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error");
            self.fail(out, kind, message);
            return ControlFlow::Break(());
        }
        if !self.started {
            self.start(v.get("id").and_then(Value::as_str).unwrap_or(""), out);
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return ControlFlow::Continue(());
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(r) = delta
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                self.ensure(Open::Thinking, out, |o| {
                    o.extend_from_slice(br#"{"type":"thinking","thinking":"","signature":""}"#)
                });
                self.delta(out, "thinking_delta", "thinking", r);
            }
            if let Some(t) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.ensure(Open::Text, out, |o| {
                    o.extend_from_slice(br#"{"type":"text","text":""}"#)
                });
                self.delta(out, "text_delta", "text", t);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.tool_call(call, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(f));
        }
        ControlFlow::Continue(())
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        self.started = true;
        open_event(out, "message_start");
        out.extend_from_slice(br#","message":{"id":"#);
        quoted(out, &message_id(id));
        out.extend_from_slice(br#","type":"message","role":"assistant","model":"#);
        out.extend_from_slice(self.model.as_bytes());
        out.extend_from_slice(
            br#","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
        );
        out.extend_from_slice(b"\n\n");
        open_event(out, "ping");
        out.extend_from_slice(b"}\n\n");
    }

    /// Opens a block of `kind` unless it is the open one; `block` writes its JSON.
    fn ensure(&mut self, kind: Open, out: &mut Vec<u8>, block: impl FnOnce(&mut Vec<u8>)) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        self.open = Some(kind);
        open_event(out, "content_block_start");
        out.extend_from_slice(br#","index":"#);
        push_u64(out, u64::from(self.next));
        out.extend_from_slice(br#","content_block":"#);
        block(out);
        out.extend_from_slice(b"}\n\n");
    }

    /// A `content_block_delta` of `kind` whose `field` is `text`.
    fn delta(&self, out: &mut Vec<u8>, kind: &str, field: &str, text: &str) {
        open_event(out, "content_block_delta");
        out.extend_from_slice(br#","index":"#);
        push_u64(out, u64::from(self.next));
        out.extend_from_slice(br#","delta":{"type":""#);
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        quoted(out, text);
        out.extend_from_slice(b"}}\n\n");
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            open_event(out, "content_block_stop");
            out.extend_from_slice(br#","index":"#);
            push_u64(out, u64::from(self.next));
            out.extend_from_slice(b"}\n\n");
            self.next = self.next.saturating_add(1);
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = call.get("function");
        if self.open != Some(Open::Tool(index)) {
            if self.tools.contains(&index) {
                // A call whose block is closed cannot be reopened in Anthropic's sequence.
                return;
            }
            self.tools.push(index);
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            self.ensure(Open::Tool(index), out, |o| {
                o.extend_from_slice(br#"{"type":"tool_use","id":"#);
                quoted(o, id);
                o.extend_from_slice(br#","name":"#);
                quoted(o, name);
                o.extend_from_slice(br#","input":{}}"#);
            });
        }
        if let Some(a) = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            self.delta(out, "input_json_delta", "partial_json", a);
        }
    }

    fn finish(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        if !self.started {
            self.start("", out);
        }
        self.close(out);
        open_event(out, "message_delta");
        out.extend_from_slice(br#","delta":{"stop_reason":""#);
        out.extend_from_slice(self.stop.unwrap_or("end_turn").as_bytes());
        out.extend_from_slice(br#"","stop_sequence":null},"usage":"#);
        write_usage(out, &usage.unwrap_or_default());
        out.extend_from_slice(b"}\n\n");
        open_event(out, "message_stop");
        out.extend_from_slice(b"}\n\n");
        self.done = true;
    }

    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        open_event(out, "error");
        out.extend_from_slice(br#","error":{"type":""#);
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(br#"","message":"#);
        quoted(out, message);
        out.extend_from_slice(b"}}\n\n");
        self.done = true;
    }
}

/// Anthropic's `usage` object: `input_tokens` excludes the cache reads and writes
/// reported beside it.
pub fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    let cached = u.cache_read_tokens.saturating_add(u.cache_write_tokens);
    let fields = [
        ("{\"input_tokens\":", u.prompt_tokens.saturating_sub(cached)),
        (",\"output_tokens\":", u.completion_tokens),
        (",\"cache_read_input_tokens\":", u.cache_read_tokens),
        (",\"cache_creation_input_tokens\":", u.cache_write_tokens),
    ];
    for (name, n) in fields {
        out.extend_from_slice(name.as_bytes());
        push_u64(out, n);
    }
    out.push(b'}');
}

/// The usage of an Anthropic stream passed through unchanged.
#[derive(Debug, Default)]
pub struct AnthropicUsageTracker {
    decoder: SseDecoder,
    usage: Option<AnthropicUsage>,
    stopped: bool,
}

impl AnthropicUsageTracker {
    /// Reads the next piece.
    pub fn push(&mut self, chunk: &[u8]) {
        let (usage, stopped) = (&mut self.usage, &mut self.stopped);
        feed(&mut self.decoder, chunk, &mut |e| {
            // Only three event types carry what is needed; the deltas are skipped unparsed.
            let wanted = match e.event {
                Some(name) => name.starts_with("message_"),
                None => e.data.contains("\"message_"),
            };
            if !wanted {
                return ControlFlow::Continue(());
            }
            match StreamEvent::parse(e.data) {
                Ok(StreamEvent::MessageStart { message }) => {
                    *usage = Some(message.usage.unwrap_or_default());
                }
                Ok(StreamEvent::MessageDelta {
                    usage: Some(later), ..
                }) => {
                    let u = usage.get_or_insert_with(AnthropicUsage::default);
                    u.input_tokens = later.input_tokens.or(u.input_tokens);
                    u.output_tokens = later.output_tokens.or(u.output_tokens);
                    u.cache_read_input_tokens =
                        later.cache_read_input_tokens.or(u.cache_read_input_tokens);
                    u.cache_creation_input_tokens = later
                        .cache_creation_input_tokens
                        .or(u.cache_creation_input_tokens);
                    u.cache_creation = later.cache_creation.or(u.cache_creation);
                }
                Ok(StreamEvent::MessageStop) => *stopped = true,
                _ => {}
            }
            ControlFlow::Continue(())
        });
    }

    /// Usage so far (`None` before `message_start`).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage_from_anthropic)
    }

    /// `message_stop` was seen.
    pub fn is_done(&self) -> bool {
        self.stopped
    }

    /// Bytes held between pieces.
    pub fn buffered_bytes(&self) -> usize {
        self.decoder.buffered_capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn text_and_tool_call() {
        let input = concat!(
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut s = ChatToMessages::new("alias");
        let mut out = Vec::new();
        let u = Usage {
            prompt_tokens: 5,
            completion_tokens: 2,
            ..Usage::default()
        };
        s.push(input.as_bytes(), true, Some(u), &mut out);
        let types: Vec<String> = events(&out)
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let e = events(&out);
        assert_eq!(e[0]["message"]["id"], "msg_9");
        assert_eq!(e[5]["content_block"]["name"], "get");
        assert_eq!(e[6]["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(e[8]["delta"]["stop_reason"], "tool_use");
        assert_eq!(e[8]["usage"]["input_tokens"], 5);
        assert!(s.is_done());
    }

    #[test]
    fn errors_and_early_ends() {
        let mut s = ChatToMessages::new("m");
        let mut out = Vec::new();
        s.push(b"data: {\"error\":{\"message\":\"slow\",\"type\":\"rate_limit_error\"}}\n\ndata: [DONE]\n\n", false, None, &mut out);
        let e = events(&out);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["error"]["type"], "rate_limit_error");
        let mut s = ChatToMessages::new("m");
        let mut out = Vec::new();
        s.push(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n",
            true,
            None,
            &mut out,
        );
        assert_eq!(events(&out).last().unwrap()["type"], "error");
    }

    #[test]
    fn passthrough_usage() {
        let input = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut t = AnthropicUsageTracker::default();
        for b in input.as_bytes().chunks(7) {
            t.push(b);
        }
        let u = t.usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens),
            (15, 7, 5)
        );
        assert!(t.is_done());
    }
}
