//! A chat completion stream (as the chat translators write it) as the Responses event
//! sequence (<https://platform.openai.com/docs/api-reference/responses-streaming>):
//! `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its deltas (`response.content_part.added` and
//! `response.output_text.delta` for text, `response.function_call_arguments.delta` for a
//! call, `response.reasoning_text.delta` for reasoning) and their `.done` events, and
//! `response.completed` (or `response.incomplete`) with usage; `error` and
//! `response.failed` when the stream fails. Every event carries `sequence_number`.
//!
//! The chat side is decoded with the one SSE decoder, so the chat bytes may be split
//! anywhere.

use std::rc::Rc;

use serde_json::Value;

use super::response::{
    self, write_call_item, write_message_item, write_reasoning_item, write_text_part, Head,
};
use super::write::{key, num_field, str_field};
use super::ResponsesCall;
use crate::sse::SseDecoder;
use crate::usage::Usage;

/// The item being streamed.
#[derive(Debug)]
enum Open {
    Text {
        index: usize,
        id: String,
        text: String,
    },
    Reasoning {
        index: usize,
        id: String,
        text: String,
    },
}

/// A function call being streamed (calls stay open until the answer ends: a provider may
/// interleave their arguments).
#[derive(Debug)]
struct Call {
    chat_index: u64,
    index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Per-stream state of the translation.
pub struct EventWriter {
    call: Rc<ResponsesCall>,
    decoder: SseDecoder,
    sequence: u64,
    head: Option<Head>,
    /// Output items finished so far (JSON text, in order); an open item's place is empty.
    output: Vec<Vec<u8>>,
    open: Option<Open>,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// `response.completed` (or the failure) went out: nothing follows.
    done: bool,
}

impl EventWriter {
    /// A translation for the stream of `call`.
    pub fn new(call: Rc<ResponsesCall>) -> EventWriter {
        EventWriter {
            call,
            decoder: SseDecoder::default(),
            sequence: 0,
            head: None,
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            done: false,
        }
    }

    /// Bytes held between pieces: the decoder's, the open items' and the finished items'.
    pub fn buffered_bytes(&self) -> usize {
        let open = match &self.open {
            Some(Open::Text { text, .. } | Open::Reasoning { text, .. }) => text.len(),
            None => 0,
        };
        self.decoder.buffered_capacity()
            + open
            + self.calls.iter().map(|c| c.arguments.len()).sum::<usize>()
            + self.output.iter().map(Vec::len).sum::<usize>()
    }

    /// Translates the next piece of chat SSE; at `end` finishes the response. Usage comes
    /// from the chat stream's usage chunk, so it is the same however the stream was split.
    pub fn write(&mut self, chat_sse: &[u8], end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        for (_, data) in super::complete_events(&mut self.decoder, chat_sse) {
            if self.done {
                return;
            }
            self.on_chat_event(&data, out);
        }
        if end && !self.done {
            self.finish(out);
        }
    }

    /// Opens an event of `kind` (its `type` and `sequence_number` written); the caller
    /// writes the other fields, then [`end`](Self::end).
    fn begin(&mut self, kind: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {");
        str_field(out, "type", kind);
        num_field(out, "sequence_number", self.sequence);
        self.sequence += 1;
    }

    fn end(out: &mut Vec<u8>) {
        out.extend_from_slice(b"}\n\n");
    }

    /// An event about item `index`: `output_index`, and `item_id` when given.
    fn begin_item(&mut self, kind: &str, index: usize, id: Option<&str>, out: &mut Vec<u8>) {
        self.begin(kind, out);
        if let Some(id) = id {
            str_field(out, "item_id", id);
        }
        num_field(out, "output_index", index as u64);
    }

    /// `response.created`-like events carrying the whole Response.
    fn response_event(
        &mut self,
        kind: &str,
        status: &str,
        error: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        let done: Vec<&[u8]> = self
            .output
            .iter()
            .filter(|i| !i.is_empty())
            .map(Vec::as_slice)
            .collect();
        let output = done.join(&b","[..]);
        self.begin(kind, out);
        key(out, "response");
        let usage = if status == "in_progress" {
            None
        } else {
            self.usage.as_ref()
        };
        self.head()
            .write_response(out, status, &output, usage, error, &self.call.echo);
        Self::end(out);
    }

    fn head(&self) -> Head {
        self.head.clone().unwrap_or_default()
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.head.is_some() {
            return;
        }
        self.head = Some(Head::of(chunk));
        self.response_event("response.created", "in_progress", None, out);
        self.response_event("response.in_progress", "in_progress", None, out);
    }

    fn on_chat_event(&mut self, data: &str, out: &mut Vec<u8>) {
        if data == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(chunk) = crate::json::path::from_str::<Value>(data) else {
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            self.fail(error, out);
            return;
        }
        self.start(&chunk, out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = chat_usage(u);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta");
        let text = |f: &str| {
            delta
                .and_then(|d| d.get(f))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let Some(r) = text("reasoning_content") {
            self.text_delta(true, r, out);
        }
        if let Some(t) = text("content") {
            self.text_delta(false, t, out);
        }
        if let Some(calls) = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
        {
            for c in calls {
                self.call_delta(c, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
    }

    /// Text (or reasoning text) for the open item, opening one first when needed.
    fn text_delta(&mut self, reasoning: bool, delta: &str, out: &mut Vec<u8>) {
        let same = match &self.open {
            Some(Open::Reasoning { .. }) => reasoning,
            Some(Open::Text { .. }) => !reasoning,
            None => false,
        };
        if !same {
            self.close_open(out);
            let index = self.output.len();
            let id = self
                .head()
                .item_id(if reasoning { "rs" } else { "msg" }, index);
            self.output.push(Vec::new());
            self.begin("response.output_item.added", out);
            num_field(out, "output_index", index as u64);
            key(out, "item");
            if reasoning {
                write_reasoning_item(out, &id, None);
            } else {
                write_message_item(out, &id, None);
            }
            Self::end(out);
            if reasoning {
                self.open = Some(Open::Reasoning {
                    index,
                    id,
                    text: String::new(),
                });
            } else {
                self.begin_item("response.content_part.added", index, Some(&id), out);
                num_field(out, "content_index", 0);
                key(out, "part");
                write_text_part(out, "");
                Self::end(out);
                self.open = Some(Open::Text {
                    index,
                    id,
                    text: String::new(),
                });
            }
        }
        let (kind, index, id) = match &mut self.open {
            Some(Open::Text { index, id, text }) => {
                text.push_str(delta);
                ("response.output_text.delta", *index, id.clone())
            }
            Some(Open::Reasoning { index, id, text }) => {
                text.push_str(delta);
                ("response.reasoning_text.delta", *index, id.clone())
            }
            None => return,
        };
        self.begin_item(kind, index, Some(&id), out);
        num_field(out, "content_index", 0);
        str_field(out, "delta", delta);
        if !reasoning {
            out.extend_from_slice(br#","logprobs":[]"#);
        }
        Self::end(out);
    }

    fn call_delta(&mut self, c: &Value, out: &mut Vec<u8>) {
        let chat_index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let text = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let position = match self.calls.iter().position(|k| k.chat_index == chat_index) {
            Some(p) => p,
            None => {
                self.close_open(out);
                let index = self.output.len();
                let id = self.head().item_id("fc", index);
                let (call_id, name) = (text("/id").to_string(), text("/function/name").to_string());
                self.output.push(Vec::new());
                self.begin("response.output_item.added", out);
                num_field(out, "output_index", index as u64);
                key(out, "item");
                write_call_item(out, &id, &call_id, &name, None);
                Self::end(out);
                self.calls.push(Call {
                    chat_index,
                    index,
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let arguments = text("/function/arguments");
        if arguments.is_empty() {
            return;
        }
        let Some(call) = self.calls.get_mut(position) else {
            return;
        };
        call.arguments.push_str(arguments);
        let (index, id) = (call.index, call.id.clone());
        self.begin_item(
            "response.function_call_arguments.delta",
            index,
            Some(&id),
            out,
        );
        str_field(out, "delta", arguments);
        Self::end(out);
    }

    /// `response.output_item.done` for item `index`, which is kept for the final Response.
    fn item_done(&mut self, index: usize, item: Vec<u8>, out: &mut Vec<u8>) {
        self.begin_item("response.output_item.done", index, None, out);
        key(out, "item");
        out.extend_from_slice(&item);
        Self::end(out);
        if let Some(slot) = self.output.get_mut(index) {
            *slot = item;
        }
    }

    /// Ends the open text or reasoning item.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        let mut item = Vec::new();
        match self.open.take() {
            Some(Open::Text { index, id, text }) => {
                self.begin_item("response.output_text.done", index, Some(&id), out);
                num_field(out, "content_index", 0);
                str_field(out, "text", &text);
                out.extend_from_slice(br#","logprobs":[]"#);
                Self::end(out);
                self.begin_item("response.content_part.done", index, Some(&id), out);
                num_field(out, "content_index", 0);
                key(out, "part");
                write_text_part(out, &text);
                Self::end(out);
                write_message_item(&mut item, &id, Some(&text));
                self.item_done(index, item, out);
            }
            Some(Open::Reasoning { index, id, text }) => {
                self.begin_item("response.reasoning_text.done", index, Some(&id), out);
                num_field(out, "content_index", 0);
                str_field(out, "text", &text);
                Self::end(out);
                write_reasoning_item(&mut item, &id, Some(&text));
                self.item_done(index, item, out);
            }
            None => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.head.is_none() {
            // A stream that ended before its first chunk.
            self.start(&Value::Null, out);
        }
        self.close_open(out);
        for call in std::mem::take(&mut self.calls) {
            let arguments = if call.arguments.is_empty() {
                "{}"
            } else {
                &call.arguments
            };
            self.begin_item(
                "response.function_call_arguments.done",
                call.index,
                Some(&call.id),
                out,
            );
            str_field(out, "arguments", arguments);
            Self::end(out);
            let mut item = Vec::new();
            write_call_item(
                &mut item,
                &call.id,
                &call.call_id,
                &call.name,
                Some(arguments),
            );
            self.item_done(call.index, item, out);
        }
        let status = response::status_of(self.finish_reason.as_deref());
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.response_event(kind, status, None, out);
        self.done = true;
    }

    /// The chat stream failed: an `error` event, then `response.failed`.
    fn fail(&mut self, error: &Value, out: &mut Vec<u8>) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider's stream failed");
        let code = error.get("code").and_then(Value::as_str);
        self.begin("error", out);
        key(out, "code");
        match code {
            Some(c) => super::write::string(out, c),
            None => out.extend_from_slice(b"null"),
        }
        str_field(out, "message", message);
        key(out, "param");
        match error.get("param").and_then(Value::as_str) {
            Some(p) => super::write::string(out, p),
            None => out.extend_from_slice(b"null"),
        }
        Self::end(out);
        if self.head.is_none() {
            self.start(&Value::Null, out);
        }
        let mut e = vec![b'{'];
        str_field(&mut e, "code", code.unwrap_or("server_error"));
        str_field(&mut e, "message", message);
        e.push(b'}');
        self.response_event("response.failed", "failed", Some(&e), out);
        self.done = true;
    }
}

/// The usage of a chat usage chunk.
fn chat_usage(u: &Value) -> Option<Usage> {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
        completion_tokens: n("/completion_tokens"),
        cache_read_tokens: n("/prompt_tokens_details/cached_tokens"),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: n("/completion_tokens_details/reasoning_tokens"),
        reported_cost_micro_usd: None,
    })
}
