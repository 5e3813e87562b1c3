//! Cohere v2 stream events → OpenAI `chat.completion.chunk` events, incrementally.
//!
//! Reference: <https://docs.cohere.com/reference/chat-stream>. Each event is translated as
//! soon as its blank line arrives: `message-start` gives the role chunk, `content-delta`
//! text (or thinking, as `reasoning_content`) and `tool-plan-delta` (as `content`, see
//! `super::response`) give deltas, `tool-call-start` opens a call with its id and name and
//! `tool-call-delta` streams its arguments. `message-end` carries the finish reason and the
//! usage: then come the finish chunk, the usage chunk when the client asked, and exactly
//! one `data: [DONE]`. Citation and unknown events are skipped.
//!
//! A generation that ends with `ERROR`/`TIMEOUT` and produced nothing, an error event
//! (`{"message": ...}` without a `type`), a malformed event or a body that ends before
//! `message-end` ends the stream with an OpenAI-style error event and `[DONE]`. Nothing is
//! held between events but the decoder's unfinished event.

use std::ops::ControlFlow;

use super::response::{
    completion_id, failed_generation, finish, tool_call_id, usage_from_cohere, Finish,
};
use super::schema::{CohereUsage, ErrorResponse, StreamEvent};
use crate::error::{ErrorKind, GatewayError};
use crate::openai::{
    write_error_event, ChunkHead, DeltaRef, FunctionDeltaRef, ToolCallDeltaRef, DONE_EVENT,
};
use crate::provider::common::{stream_error, unfinished_stream_error};
use crate::provider::native::NativeStream;
use crate::provider::{StreamPreamble, TranslatedResponse};
use crate::sse::{scan_first_event, SseDecoder, PREAMBLE_SCAN_LIMIT};
use crate::usage::Usage;

/// Per-attempt stream translation state.
#[derive(Debug)]
pub struct CohereStream {
    decoder: SseDecoder,
    state: State,
}

/// Everything but the decoder, so that the decoder's callback can borrow it.
#[derive(Debug)]
struct State {
    client_wants_usage: bool,
    created: u64,
    model: String,
    /// `message-start` was seen and the role chunk sent.
    started: bool,
    /// `[DONE]` was written: everything after is ignored.
    done: bool,
    head: ChunkHead,
    usage: Option<CohereUsage>,
    /// Text or calls were sent.
    produced: bool,
    /// Calls opened so far: the next call's OpenAI `index`.
    tool_calls: u32,
    /// The open call: Cohere's index, the OpenAI index, and whether arguments came.
    open_call: Option<(u32, u32, bool)>,
}

/// What one event's data is.
enum Event {
    Stream(StreamEvent),
    /// Cohere's own error body.
    ProviderError(GatewayError),
    /// Data that is neither an event nor an error.
    Malformed(GatewayError),
    /// No data, or the `[DONE]` some proxies add.
    Nothing,
}

/// Reads one event: a typed stream event, Cohere's error body, or a malformed event.
fn parse_event(data: &str) -> Event {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return Event::Nothing;
    }
    match StreamEvent::parse(data) {
        Ok(e) => Event::Stream(e),
        Err(parse) => match crate::json::path::from_str::<ErrorResponse>(data) {
            Ok(e) => Event::ProviderError(provider_stream_error(&e.message)),
            Err(_) => Event::Malformed(stream_error(&format!(
                "the provider sent a malformed stream event: {parse}"
            ))),
        },
    }
}

/// Cohere's own error reported inside a 200 stream: transient on its side.
fn provider_stream_error(message: &str) -> GatewayError {
    let message = if message.is_empty() {
        "the provider reported an error"
    } else {
        message
    };
    GatewayError::new(ErrorKind::Overloaded, message).with_status(503)
}

/// Judges the start of a streamed 200: `Fail` when its first event is Cohere's error, or a
/// `message-end` that failed with nothing produced, with a status Envoy can retry on;
/// `Proceed` on anything else (a malformed event included: `push` reports it).
pub fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
    let verdict = scan_first_event(buffered, |event| match parse_event(event.data) {
        Event::Nothing => None,
        Event::ProviderError(e) => Some(StreamPreamble::Fail(TranslatedResponse::error(&e))),
        Event::Stream(StreamEvent::MessageStart { .. }) => None,
        Event::Stream(StreamEvent::MessageEnd { delta }) => {
            let reason = delta.finish_reason.as_deref().unwrap_or("COMPLETE");
            Some(match finish(reason) {
                Finish::Failed { kind } => StreamPreamble::Fail(TranslatedResponse::error(
                    &failed_generation(kind, reason, delta.error.as_deref()),
                )),
                Finish::Reason(_) => StreamPreamble::Proceed,
            })
        }
        _ => Some(StreamPreamble::Proceed),
    });
    match verdict {
        Some(v) => v,
        None if end_of_stream || buffered.len() >= PREAMBLE_SCAN_LIMIT => StreamPreamble::Proceed,
        None => StreamPreamble::NeedMore,
    }
}

impl CohereStream {
    /// A translator for one stream; `model` names the model (Cohere's events do not).
    pub fn new(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self {
        CohereStream {
            decoder: SseDecoder::default(),
            state: State {
                client_wants_usage,
                created: now_unix_secs,
                model: model.to_string(),
                started: false,
                done: false,
                head: ChunkHead::default(),
                usage: None,
                produced: false,
                tool_calls: 0,
                open_call: None,
            },
        }
    }
}

impl NativeStream for CohereStream {
    /// Translates the next piece of the stream into `out`. At `end_of_stream` a stream that
    /// did not reach `message-end` ends with an error event and `[DONE]`.
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        let state = &mut self.state;
        if state.done {
            return;
        }
        self.decoder.feed(chunk, |event| {
            match parse_event(event.data) {
                Event::Nothing => {}
                Event::ProviderError(e) | Event::Malformed(e) => state.fail(out, &e),
                Event::Stream(e) => state.on_event(e, out),
            }
            if state.done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if state.done {
            return;
        }
        if let Some(e) = unfinished_stream_error(&mut self.decoder, end_of_stream) {
            state.fail(out, &e);
        }
    }

    /// Usage seen so far; complete once the stream has ended.
    fn usage(&self) -> Option<Usage> {
        self.state.usage.as_ref().map(usage_from_cohere)
    }

    /// Bytes reserved by the stream's buffers.
    fn buffered_capacity(&self) -> usize {
        self.decoder.buffered_capacity()
    }

    fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble(buffered, end_of_stream)
    }
}

impl State {
    fn on_event(&mut self, event: StreamEvent, out: &mut Vec<u8>) {
        if !self.started {
            let id = match &event {
                StreamEvent::MessageStart { id } => id.as_deref(),
                _ => None,
            };
            self.start(id, out);
        }
        match event {
            StreamEvent::MessageStart { .. } | StreamEvent::Other => {}
            StreamEvent::ContentStart { delta } | StreamEvent::ContentDelta { delta } => {
                let Some(block) = delta.message.and_then(|m| m.content) else {
                    return;
                };
                if let Some(thinking) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.write_delta(
                        out,
                        DeltaRef {
                            reasoning_content: Some(thinking),
                            ..DeltaRef::default()
                        },
                    );
                }
                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.write_content(out, text);
                }
            }
            StreamEvent::ToolPlanDelta { delta } => {
                let plan = delta.message.and_then(|m| m.tool_plan);
                if let Some(text) = plan.as_deref().filter(|t| !t.is_empty()) {
                    self.write_content(out, text);
                }
            }
            StreamEvent::ToolCallStart { index, delta } => {
                self.close_call(out);
                let Some(call) = delta.message.and_then(|m| m.tool_calls) else {
                    return;
                };
                let n = self.tool_calls;
                self.tool_calls = n.saturating_add(1);
                let id = tool_call_id(call.id.as_deref(), n as usize);
                let arguments = call.function.arguments.unwrap_or_default();
                self.produced = true;
                self.write_call(
                    out,
                    ToolCallDeltaRef {
                        index: n,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDeltaRef {
                            name: Some(call.function.name.as_deref().unwrap_or_default()),
                            arguments: Some(&arguments),
                        },
                    },
                );
                self.open_call = Some((index, n, !arguments.is_empty()));
            }
            StreamEvent::ToolCallDelta { index, delta } => {
                let piece = delta
                    .message
                    .and_then(|m| m.tool_calls)
                    .and_then(|c| c.function.arguments)
                    .unwrap_or_default();
                let Some((open, n, has_arguments)) = self.open_call.as_mut() else {
                    return;
                };
                if *open != index || piece.is_empty() {
                    return;
                }
                *has_arguments = true;
                let n = *n;
                self.write_call(out, arguments(n, &piece));
            }
            StreamEvent::ToolCallEnd { index } => {
                if self.open_call.is_some_and(|(open, _, _)| open == index) {
                    self.close_call(out);
                }
            }
            StreamEvent::MessageEnd { delta } => {
                self.close_call(out);
                if let Some(u) = delta.usage {
                    self.usage = Some(u);
                }
                let reason = delta.finish_reason.as_deref().unwrap_or("COMPLETE");
                let finish_reason = match finish(reason) {
                    Finish::Failed { kind } if !self.produced => {
                        let e = failed_generation(kind, reason, delta.error.as_deref());
                        self.fail(out, &e);
                        return;
                    }
                    Finish::Failed { .. } => "stop",
                    Finish::Reason("stop") if self.tool_calls > 0 => "tool_calls",
                    Finish::Reason(r) => r,
                };
                self.head
                    .write_choice(out, 0, &DeltaRef::default(), Some(finish_reason));
                if self.client_wants_usage {
                    let body = self
                        .usage
                        .as_ref()
                        .map(usage_from_cohere)
                        .unwrap_or_default();
                    self.head.write_usage(out, &body.to_body());
                }
                out.extend_from_slice(DONE_EVENT);
                self.done = true;
            }
        }
    }

    /// The head of every chunk and the role chunk, once.
    fn start(&mut self, id: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        self.head = ChunkHead::new(&completion_id(id), self.created, &self.model);
        self.write_delta(
            out,
            DeltaRef {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaRef::default()
            },
        );
    }

    /// Ends the open call; one that got no argument text gets `{}`, as the complete answer
    /// would have it.
    fn close_call(&mut self, out: &mut Vec<u8>) {
        if let Some((_, n, false)) = self.open_call.take() {
            self.write_call(out, arguments(n, "{}"));
        }
    }

    fn write_content(&mut self, out: &mut Vec<u8>, text: &str) {
        self.produced = true;
        self.write_delta(
            out,
            DeltaRef {
                content: Some(text),
                ..DeltaRef::default()
            },
        );
    }

    fn write_call(&self, out: &mut Vec<u8>, call: ToolCallDeltaRef<'_>) {
        let calls = [call];
        self.write_delta(
            out,
            DeltaRef {
                tool_calls: Some(&calls),
                ..DeltaRef::default()
            },
        );
    }

    fn write_delta(&self, out: &mut Vec<u8>, delta: DeltaRef<'_>) {
        self.head.write_choice(out, 0, &delta, None);
    }

    /// Ends the stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, error: &GatewayError) {
        write_error_event(out, error);
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
        self.open_call = None;
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
