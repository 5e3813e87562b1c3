//! Gemini stream (`:streamGenerateContent?alt=sse`) → OpenAI `chat.completion.chunk`
//! events, incrementally.
//!
//! Every Gemini event is a whole `GenerateContentResponse` with the parts produced since
//! the last one, and is translated as soon as its blank line arrives: a role chunk when a
//! candidate first appears, then one chunk per part (text → `content`, thoughts →
//! `reasoning_content`, a `functionCall` → one tool-call delta with id, name and the full
//! arguments, as Gemini sends calls whole), and one `finish_reason` chunk per candidate.
//!
//! Gemini has no end event: the stream is complete when the body ends after every
//! candidate finished. Then come the usage chunk (when the client asked) and exactly one
//! `data: [DONE]`. `usageMetadata` repeats the running totals in several events, so the
//! last one is taken, never a sum. An `error` event, a malformed event, a blocked prompt, a
//! failed generation (see `super::response`) or a body that ends early ends the stream with
//! an OpenAI-style error event and `[DONE]`.

use super::response::{
    arguments, blocked_prompt, completion_id, failed_generation, finish, google_error, parse_error,
    tool_call_id, usage_from_gemini, Finish,
};
use super::schema::{Candidate, ErrorResponse, GenerateContentResponse, UsageMetadata};
use crate::error::GatewayError;
use crate::json;
use std::ops::ControlFlow;

use crate::openai::{
    write_error_event, ChunkHead, DeltaRef, FunctionDeltaRef, ToolCallDeltaRef, DONE_EVENT,
};
use crate::provider::common::{oversized_event_error, stream_error};
use crate::provider::native::NativeStream;
use crate::provider::{StreamPreamble, TranslatedResponse};
use crate::sse::{scan_first_event, SseDecoder, PREAMBLE_SCAN_LIMIT};
use crate::usage::Usage;
use serde_json::Value;

/// Per-attempt stream translation state.
#[derive(Debug)]
pub struct GeminiStream {
    decoder: SseDecoder,
    state: State,
}

/// Everything but the decoder, so that the decoder's callback can borrow it.
#[derive(Debug)]
struct State {
    client_wants_usage: bool,
    created: u64,
    /// The deployment's model until Gemini names its `modelVersion`.
    model: String,
    /// `chatcmpl-<responseId>`, fixed by the first event.
    id: Option<String>,
    /// What every chunk starts with, rewritten when the id or the model changes.
    head: ChunkHead,
    response_id: Option<String>,
    /// Candidates seen so far, by first appearance.
    candidates: Vec<CandidateState>,
    /// Tool calls so far over all candidates, for their ids.
    calls: usize,
    /// The latest (cumulative) usage.
    usage: Option<UsageMetadata>,
    /// `[DONE]` was written: everything after is ignored.
    done: bool,
}

#[derive(Debug)]
struct CandidateState {
    index: u32,
    /// The chunk with `role: assistant` was sent.
    role_sent: bool,
    /// Tool calls of this choice so far: the next call's OpenAI `index`.
    tool_calls: u32,
    /// Some text or call was sent for it.
    produced: bool,
    finished: bool,
}

/// What a decoded event asks of the stream.
#[cfg_attr(test, derive(Debug))]
enum Event {
    Error(GatewayError),
    Chunk(GenerateContentResponse),
}

/// Reads one event's data: Gemini's answer chunk, or an error (Google's own, or a
/// malformed event).
fn parse_event(data: &str) -> Option<Event> {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return None;
    }
    // A chunk, nearly every event, parses straight into its type; an event that does not
    // is parsed as a generic value first, which words its error as before.
    if !may_have_top_level_key(data.as_bytes(), b"error") {
        if let Ok(chunk) = serde_json::from_slice::<GenerateContentResponse>(data.as_bytes()) {
            return Some(Event::Chunk(chunk));
        }
    }
    let value = match crate::json::path::from_str::<Value>(data) {
        Ok(v) => v,
        Err(e) => {
            return Some(Event::Error(stream_error(&format!(
                "the provider sent a malformed stream event: {e}"
            ))))
        }
    };
    if value.get("error").is_some() {
        return Some(Event::Error(
            match serde_json::from_value::<ErrorResponse>(value) {
                Ok(e) => google_error(&e, e.error.code.unwrap_or(500)),
                Err(e) => stream_error(&format!("the provider sent a malformed error event: {e}")),
            },
        ));
    }
    Some(
        match json::path::from_value::<GenerateContentResponse>(&value) {
            Ok(chunk) => Event::Chunk(chunk),
            Err(e) => Event::Error(stream_error(&format!(
                "the provider sent a malformed stream event: {}",
                e.message
            ))),
        },
    )
}

/// Whether `json` can be an object with the top-level key `key`: false only when it
/// surely is not (a key with escapes counts as a match).
fn may_have_top_level_key(json: &[u8], key: &[u8]) -> bool {
    let start = json.iter().position(|c| !c.is_ascii_whitespace());
    if start.is_none_or(|i| json.get(i) != Some(&b'{')) {
        return false;
    }
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut i = start.unwrap_or_default();
    while let Some(&c) = json.get(i) {
        i += 1;
        match c {
            b'"' => {
                let from = i;
                let mut escaped = false;
                loop {
                    match json.get(i) {
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            i += 2;
                        }
                        Some(_) => i += 1,
                        None => return true,
                    }
                }
                if depth == 1 && expect_key && (escaped || json.get(from..i) == Some(key)) {
                    return true;
                }
                expect_key = false;
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expect_key = depth == 1,
            _ => {}
        }
    }
    false
}

/// The error a candidate's finish stands for, when it failed without producing anything.
fn candidate_failure(candidate: &Candidate, produced: bool) -> Option<GatewayError> {
    let reason = candidate.finish_reason.as_deref()?;
    match finish(reason) {
        Finish::Failed { kind, status, code } if !produced => Some(failed_generation(
            kind,
            status,
            code,
            reason,
            candidate.finish_message.as_deref(),
        )),
        _ => None,
    }
}

/// True when a candidate in this event carries text or a call.
fn has_output(candidate: &Candidate) -> bool {
    candidate.content.iter().flat_map(|c| &c.parts).any(|p| {
        p.function_call.is_some()
            || (p.thought != Some(true) && p.text.as_deref().is_some_and(|t| !t.is_empty()))
    })
}

/// Judges the start of a streamed 200: `Fail` when the first event is an error, a blocked
/// prompt or a generation that failed before producing anything, with the status the
/// complete answer would have had (429 and 5xx let Envoy retry or fall back).
pub fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
    // A plain JSON error body instead of SSE (what a proxy or an old endpoint may send).
    if buffered.trim_ascii_start().starts_with(b"{")
        || buffered.trim_ascii_start().starts_with(b"[")
    {
        return match parse_error(buffered) {
            Some(e) => StreamPreamble::Fail(TranslatedResponse::error(&google_error(
                &e,
                e.error.code.unwrap_or(502),
            ))),
            None if end_of_stream || buffered.len() >= PREAMBLE_SCAN_LIMIT => {
                StreamPreamble::Proceed
            }
            None => StreamPreamble::NeedMore,
        };
    }
    let verdict = scan_first_event(buffered, |event| match parse_event(event.data)? {
        Event::Error(e) => Some(StreamPreamble::Fail(TranslatedResponse::error(&e))),
        Event::Chunk(chunk) => {
            let blocked = chunk
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
                .filter(|_| chunk.candidates.is_empty());
            let failed = chunk
                .candidates
                .iter()
                .find_map(|c| candidate_failure(c, has_output(c)));
            Some(match (blocked, failed) {
                (Some(reason), _) => {
                    StreamPreamble::Fail(TranslatedResponse::error(&blocked_prompt(reason)))
                }
                (None, Some(e)) => StreamPreamble::Fail(TranslatedResponse::error(&e)),
                (None, None) => StreamPreamble::Proceed,
            })
        }
    });
    match verdict {
        Some(v) => v,
        None if end_of_stream || buffered.len() >= PREAMBLE_SCAN_LIMIT => StreamPreamble::Proceed,
        None => StreamPreamble::NeedMore,
    }
}

impl GeminiStream {
    /// A translator for one stream; `model` names the model until Gemini does.
    pub fn new(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self {
        GeminiStream {
            decoder: SseDecoder::default(),
            state: State {
                client_wants_usage,
                created: now_unix_secs,
                model: model.to_string(),
                id: None,
                head: ChunkHead::new(&completion_id(None), now_unix_secs, model),
                response_id: None,
                candidates: Vec::new(),
                calls: 0,
                usage: None,
                done: false,
            },
        }
    }
}

impl NativeStream for GeminiStream {
    /// Translates the next piece of the stream into `out`. At `end_of_stream` a complete
    /// stream gets its usage chunk and `[DONE]`; an incomplete one an error event and
    /// `[DONE]`.
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        let state = &mut self.state;
        if state.done {
            return;
        }
        self.decoder.feed(chunk, |event| {
            match parse_event(event.data) {
                None => {}
                Some(Event::Error(e)) => state.fail(out, &e),
                Some(Event::Chunk(c)) => state.on_chunk(c, out),
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
        if let Some(e) = oversized_event_error(&self.decoder) {
            state.fail(out, &e);
            return;
        }
        if end_of_stream {
            self.decoder.finish();
            let complete =
                !state.candidates.is_empty() && state.candidates.iter().all(|c| c.finished);
            if complete {
                state.end(out);
            } else {
                state.fail(
                    out,
                    &stream_error("the provider's stream ended before completion"),
                );
            }
        }
    }

    /// Usage seen so far (the latest cumulative counts); complete once the stream ended.
    fn usage(&self) -> Option<Usage> {
        self.state.usage.as_ref().map(usage_from_gemini)
    }

    /// Bytes reserved by the stream's buffers, for tests and monitoring.
    fn buffered_capacity(&self) -> usize {
        self.decoder.buffered_capacity()
    }

    fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble(buffered, end_of_stream)
    }

    /// Gemini's start is judged even without a stream: a JSON error body where an event
    /// stream was expected fails the attempt all the same.
    fn translator_preamble(
        _stream: Option<&Self>,
        buffered: &[u8],
        end_of_stream: bool,
    ) -> StreamPreamble {
        preamble(buffered, end_of_stream)
    }
}

impl State {
    fn on_chunk(&mut self, chunk: GenerateContentResponse, out: &mut Vec<u8>) {
        let mut changed = false;
        if self.id.is_none() {
            self.response_id = chunk.response_id.clone();
            self.id = Some(completion_id(chunk.response_id.as_deref()));
            changed = true;
        }
        if let Some(version) = chunk.model_version.as_deref().filter(|v| !v.is_empty()) {
            if version != self.model {
                self.model = version.to_string();
                changed = true;
            }
        }
        if changed {
            let id = self.id.as_deref().unwrap_or_default();
            self.head.set(id, self.created, &self.model);
        }
        if let Some(u) = chunk.usage_metadata {
            self.usage = Some(u);
        }
        if chunk.candidates.is_empty() {
            if let Some(reason) = chunk
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                self.fail(out, &blocked_prompt(reason));
            }
            return;
        }
        for (position, candidate) in chunk.candidates.iter().enumerate() {
            let index = candidate
                .index
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            self.on_candidate(index, candidate, out);
            if self.done {
                return;
            }
        }
    }

    fn on_candidate(&mut self, index: u32, candidate: &Candidate, out: &mut Vec<u8>) {
        let slot = match self.candidates.iter().position(|c| c.index == index) {
            Some(slot) => slot,
            None => {
                self.candidates.push(CandidateState {
                    index,
                    role_sent: false,
                    tool_calls: 0,
                    produced: false,
                    finished: false,
                });
                self.candidates.len() - 1
            }
        };
        if self.candidates.get(slot).is_none_or(|c| c.finished) {
            return;
        }
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            let (call_id, args, calls);
            let delta = if let Some(call) = &part.function_call {
                call_id = tool_call_id(self.response_id.as_deref(), self.calls, part);
                self.calls += 1;
                let Some(state) = self.candidates.get_mut(slot) else {
                    return;
                };
                let call_index = state.tool_calls;
                state.tool_calls = state.tool_calls.saturating_add(1);
                state.produced = true;
                args = arguments(part);
                calls = [ToolCallDeltaRef {
                    index: call_index,
                    id: Some(&call_id),
                    kind: Some("function"),
                    function: FunctionDeltaRef {
                        name: Some(&call.name),
                        arguments: Some(&args),
                    },
                }];
                DeltaRef {
                    tool_calls: Some(&calls),
                    ..DeltaRef::default()
                }
            } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                if part.thought == Some(true) {
                    DeltaRef {
                        reasoning_content: Some(text),
                        ..DeltaRef::default()
                    }
                } else {
                    if let Some(state) = self.candidates.get_mut(slot) {
                        state.produced = true;
                    }
                    DeltaRef {
                        content: Some(text),
                        ..DeltaRef::default()
                    }
                }
            } else {
                continue;
            };
            self.write(out, slot, &delta, None);
        }
        let Some(reason) = candidate.finish_reason.as_deref() else {
            return;
        };
        let (produced, calls) = self
            .candidates
            .get(slot)
            .map(|c| (c.produced, c.tool_calls))
            .unwrap_or_default();
        if let Some(e) = candidate_failure(candidate, produced) {
            self.fail(out, &e);
            return;
        }
        let finish_reason = match finish(reason) {
            Finish::Failed { .. } => "stop",
            Finish::Reason("stop") if calls > 0 => "tool_calls",
            Finish::Reason(r) => r,
        };
        if let Some(state) = self.candidates.get_mut(slot) {
            state.finished = true;
        }
        self.write(out, slot, &DeltaRef::default(), Some(finish_reason));
    }

    /// Writes one chunk for the candidate in `slot`, preceded by its role chunk the first
    /// time (so a candidate that fails before producing anything sends no chunk at all).
    fn write(
        &mut self,
        out: &mut Vec<u8>,
        slot: usize,
        delta: &DeltaRef<'_>,
        finish_reason: Option<&str>,
    ) {
        let Some(state) = self.candidates.get_mut(slot) else {
            return;
        };
        let index = state.index;
        if !state.role_sent {
            state.role_sent = true;
            let role = DeltaRef {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaRef::default()
            };
            self.head.write_choice(out, index, &role, None);
        }
        self.head.write_choice(out, index, delta, finish_reason);
    }

    /// The usage chunk when asked for, then `[DONE]`.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.client_wants_usage {
            let usage = self
                .usage
                .as_ref()
                .map(usage_from_gemini)
                .unwrap_or_default()
                .to_body();
            self.head.write_usage(out, &usage);
        }
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
    }

    /// Ends the stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, error: &GatewayError) {
        write_error_event(out, error);
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse before the direct way: a generic value first, then the type.
    fn by_value(data: &str) -> Option<Event> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return None;
        }
        let value = match crate::json::path::from_str::<Value>(data) {
            Ok(v) => v,
            Err(e) => {
                return Some(Event::Error(stream_error(&format!(
                    "the provider sent a malformed stream event: {e}"
                ))))
            }
        };
        if value.get("error").is_some() {
            return Some(Event::Error(
                match serde_json::from_value::<ErrorResponse>(value) {
                    Ok(e) => google_error(&e, e.error.code.unwrap_or(500)),
                    Err(e) => {
                        stream_error(&format!("the provider sent a malformed error event: {e}"))
                    }
                },
            ));
        }
        Some(
            match serde_json::from_value::<GenerateContentResponse>(value) {
                Ok(chunk) => Event::Chunk(chunk),
                Err(e) => Event::Error(stream_error(&format!(
                    "the provider sent a malformed stream event: {e}"
                ))),
            },
        )
    }

    /// Every event parses to what the generic way made of it: recorded streams, errors
    /// (also with escaped or nested keys), duplicates, wrong types, broken JSON.
    #[test]
    fn direct_parse_agrees_with_value_parse() {
        let mut cases: Vec<String> = Vec::new();
        for dir in std::fs::read_dir("tests/fixtures/gemini").unwrap() {
            let path = dir.unwrap().path().join("upstream.sse");
            if let Ok(text) = std::fs::read_to_string(path) {
                cases.extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::to_string),
                );
            }
        }
        assert!(cases.len() > 10);
        for s in [
            r#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED"}}"#,
            r#"{"error":null}"#,
            r#"{"\u0065rror":{"code":500,"message":"m"}}"#,
            r#"{"candidates":[{"error":1}],"responseId":"a\"{,\"error\":1"}"#,
            r#"{"candidates":[],"candidates":[]}"#,
            r#"{"candidates":5}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":1}]}}]}"#,
            r#"{"usageMetadata":{"promptTokenCount":-1}}"#,
            r#"{"candidates":[{"index":0}],"modelVersion":"v","modelVersion":"w"}"#,
            r#"[]"#,
            r#"[{"error":{}}]"#,
            r#"{}"#,
            r#"{"candidates":[}"#,
            r#"{"candidates":[]} x"#,
            r#"  {"responseId":"r"}  "#,
            "[DONE]",
            "",
        ] {
            cases.push(s.to_string());
        }
        for s in &cases {
            assert_eq!(
                format!("{:?}", parse_event(s)),
                format!("{:?}", by_value(s)),
                "{s}"
            );
        }
    }

    /// Only a top-level key counts; one with escapes might be it.
    #[test]
    fn finds_top_level_keys() {
        let has = |s: &str| may_have_top_level_key(s.as_bytes(), b"error");
        assert!(has(r#"{"error":{}}"#));
        assert!(has(r#" {"a":[1,{"error":2}],"error":1}"#));
        assert!(has(r#"{"\u0065rror":1}"#));
        assert!(!has(r#"{"a":{"error":1},"b":"error","c":["error"]}"#));
        assert!(!has(r#"["error"]"#));
        assert!(!has(r#"{"a":"\"error\""}"#));
    }
}
