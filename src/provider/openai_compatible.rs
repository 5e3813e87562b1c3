//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, Groq, Together, ...).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat>. The body is forwarded
//! as the client wrote it, with `model` set to the deployment's model and the gateway-only
//! message fields removed. Streams always ask for usage upstream, so the gateway learns the
//! tokens of every stream; the usage chunk reaches the client only when it asked for it.

use std::ops::ControlFlow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::openai_family;
use super::registry::{Prices, ProviderSpec, WireApi, OPENAI};
use super::{
    ClientRequest, StreamPreamble, Target, TranslatedResponse, Translator, UpstreamRequest,
};
use crate::error::{ErrorKind, GatewayError};
use crate::json::scan::Scan;
use crate::openai::{write_error_event, UsageBody, DONE_EVENT};
use crate::secrets::redact_key_like;
use crate::sse::{scan_first_event, SseDecoder, SseError, PREAMBLE_SCAN_LIMIT};
use crate::usage::Usage;

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

/// What the gateway reads of a 2xx answer it passes through: whether it is a chat
/// completion, its usage, and whether it carries an error. One pass that checks the whole
/// body is valid JSON (as a generic parse would) but builds nothing else.
struct AnswerShape {
    choices_is_array: bool,
    usage: Option<Value>,
    has_error: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum AnswerField {
    Choices,
    Usage,
    Error,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for AnswerShape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = AnswerShape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnswerShape, A::Error> {
                let mut shape = AnswerShape {
                    choices_is_array: false,
                    usage: None,
                    has_error: false,
                };
                while let Some(field) = map.next_key::<AnswerField>()? {
                    match field {
                        AnswerField::Choices => {
                            shape.choices_is_array = map.next_value::<Checked>()?.0 == Kind::Array
                        }
                        AnswerField::Usage => shape.usage = Some(map.next_value()?),
                        AnswerField::Error => {
                            shape.has_error = map.next_value::<Checked>()?.0 != Kind::Null
                        }
                        AnswerField::Other => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(shape)
            }
        }
        d.deserialize_map(Fields)
    }
}

#[derive(PartialEq, Eq)]
enum Kind {
    Null,
    Array,
    Other,
}

/// Any JSON value, checked as strictly as `serde_json::Value` would be (string escapes,
/// number ranges) and then dropped; only its kind is kept.
struct Checked(Kind);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Checked, A::Error> {
                while a.next_element::<Checked>()?.is_some() {}
                Ok(Checked(Kind::Array))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Checked, A::Error> {
                while a.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked(Kind::Other))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked(Kind::Null))
            }
        }
        d.deserialize_any(Any)
    }
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

/// The client's body as it goes upstream, and what the translator learnt from it.
#[derive(Debug, PartialEq)]
struct Forwarded {
    body: Vec<u8>,
    stream: bool,
    client_wants_usage: bool,
}

/// The general way: the body parsed into values, edited, and written again.
fn forward_reparsed(
    body: &[u8],
    upstream_model: &str,
    edit: impl FnOnce(&mut Map<String, Value>) -> Result<(), GatewayError>,
) -> Result<Forwarded, GatewayError> {
    let mut value: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    edit(&mut value)?;
    // LiteLLM's per-request cache controls are the gateway's, not the provider's.
    value.remove("cache");
    value.insert("model".into(), Value::String(upstream_model.to_string()));
    if let Some(Value::Array(messages)) = value.get_mut("messages") {
        for m in messages.iter_mut() {
            if let Value::Object(m) = m {
                for f in GATEWAY_ONLY_MESSAGE_FIELDS {
                    m.remove(*f);
                }
            }
        }
    }
    let stream = matches!(value.get("stream"), Some(Value::Bool(true)));
    let mut client_wants_usage = false;
    if stream {
        let options = value
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(o) = options {
            client_wants_usage = matches!(o.get("include_usage"), Some(Value::Bool(true)));
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let body = serde_json::to_vec(&value)
        .map_err(|e| GatewayError::internal(format!("could not encode request: {e}")))?;
    Ok(Forwarded {
        body,
        stream,
        client_wants_usage,
    })
}

/// The client's body with `model` set to `upstream_model` and nothing else changed (an
/// embeddings request), the fast way when it can be taken.
pub(crate) fn with_model(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
    if let Some(f) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| forward_verbatim(text, upstream_model))
    {
        return Ok(f.body);
    }
    let mut value: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    value.insert("model".into(), Value::String(upstream_model.to_string()));
    serde_json::to_vec(&value)
        .map_err(|e| GatewayError::internal(format!("could not encode request: {e}")))
}

/// The fast way, for nearly every body: the client's bytes copied with the few edits
/// [`forward_reparsed`] makes (the model, gateway-only message fields, the stream's usage
/// request) spliced in, instead of building a value of every field and escaping every
/// string again (most of this translator's time). The result reads as the same JSON;
/// only key order and whitespace may differ. `None`, and the general way, whenever the two
/// could disagree: anything [`Scan`] refuses (it takes only what serde_json takes), a key
/// with escapes, a repeated top-level key, a repeated key the edits look at.
fn forward_verbatim(text: &str, upstream_model: &str) -> Option<Forwarded> {
    let bytes = text.as_bytes();
    let mut scan = Scan::new(bytes);
    // (start, end, replacement) in body order; an insertion has start == end.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut model = None;
    let mut stream = false;
    let mut options = None;
    let mut last_value_end = 0;
    scan.object(|scan, key| {
        // A repeated key, or the gateway's `cache` controls to remove: the general way.
        if keys.contains(&key) || key == b"cache" {
            return None;
        }
        keys.push(key);
        scan.space();
        let start = scan.at;
        match (key, scan.peek()?) {
            (b"messages", b'[') => strip_gateway_fields(scan, &mut edits)?,
            (b"stream_options", b'{') => options = Some(StreamOptions::object(scan)?),
            _ => scan.skip_value()?,
        }
        let end = scan.at;
        match key {
            b"model" => model = Some((start, end)),
            b"stream" => stream = bytes.get(start..end)? == b"true",
            b"stream_options" if options.is_none() => {
                options = Some(StreamOptions::Other { start, end })
            }
            _ => {}
        }
        last_value_end = end;
        Some(())
    })?;
    scan.space();
    if scan.at != bytes.len() || keys.is_empty() {
        return None;
    }
    let model_json = serde_json::to_vec(upstream_model).ok()?;
    match model {
        Some((start, end)) => edits.push((start, end, model_json)),
        None => {
            let mut member = b",\"model\":".to_vec();
            member.extend_from_slice(&model_json);
            edits.push((last_value_end, last_value_end, member));
        }
    }
    let mut client_wants_usage = false;
    if stream {
        const INCLUDE: &[u8] = b"\"include_usage\":true";
        match options {
            Some(StreamOptions::Object {
                include_usage: Some((start, end)),
                ..
            }) => {
                client_wants_usage = bytes.get(start..end)? == b"true";
                if !client_wants_usage {
                    edits.push((start, end, b"true".to_vec()));
                }
            }
            Some(StreamOptions::Object {
                close,
                empty,
                include_usage: None,
            }) => {
                let mut member = if empty { Vec::new() } else { b",".to_vec() };
                member.extend_from_slice(INCLUDE);
                edits.push((close, close, member));
            }
            Some(StreamOptions::Other { start, end }) => {
                edits.push((start, end, [b"{", INCLUDE, b"}"].concat()));
            }
            None => edits.push((
                last_value_end,
                last_value_end,
                [b",\"stream_options\":{", INCLUDE, b"}"].concat(),
            )),
        }
    }
    // Stable: two insertions at the end of the object keep the order they were made in.
    edits.sort_unstable_by_key(|(start, _, _)| *start);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.extend_from_slice(bytes.get(at..start)?);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(bytes.get(at..)?);
    Some(Forwarded {
        body: out,
        stream,
        client_wants_usage,
    })
}

/// Where `stream_options` is in the body.
enum StreamOptions {
    /// An object: the position of its closing brace, and of `include_usage`'s value.
    Object {
        close: usize,
        empty: bool,
        include_usage: Option<(usize, usize)>,
    },
    /// Any other value.
    Other { start: usize, end: usize },
}

impl StreamOptions {
    /// Reads the object at the scan; a repeated `include_usage` is refused.
    fn object(scan: &mut Scan<'_>) -> Option<StreamOptions> {
        let mut include_usage = None;
        let mut empty = true;
        scan.object(|scan, key| {
            empty = false;
            scan.space();
            let start = scan.at;
            scan.skip_value()?;
            if key == b"include_usage" {
                if include_usage.is_some() {
                    return None;
                }
                include_usage = Some((start, scan.at));
            }
            Some(())
        })?;
        Some(StreamOptions::Object {
            close: scan.at - 1,
            empty,
            include_usage,
        })
    }
}

/// Reads the `messages` array at the scan and records, for each message object with a
/// gateway-only field, the object written again without it.
fn strip_gateway_fields(
    scan: &mut Scan<'_>,
    edits: &mut Vec<(usize, usize, Vec<u8>)>,
) -> Option<()> {
    let bytes = scan.bytes;
    scan.at += 1;
    if scan.take(b']') {
        return Some(());
    }
    loop {
        scan.space();
        if scan.peek()? == b'{' {
            let start = scan.at;
            // Members as (start of key, end of value); whether one is dropped.
            let mut members: Vec<(usize, usize, bool)> = Vec::new();
            scan.object(|scan, key| {
                // The key is a slice of the body; its quote comes just before it.
                let key_start = (key.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)? - 1;
                let drop = GATEWAY_ONLY_MESSAGE_FIELDS
                    .iter()
                    .any(|f| f.as_bytes() == key);
                scan.skip_value()?;
                members.push((key_start, scan.at, drop));
                Some(())
            })?;
            if members.iter().any(|m| m.2) {
                let mut object = b"{".to_vec();
                for (i, (from, to, _)) in members.iter().filter(|m| !m.2).enumerate() {
                    if i > 0 {
                        object.push(b',');
                    }
                    object.extend_from_slice(bytes.get(*from..*to)?);
                }
                object.push(b'}');
                edits.push((start, scan.at, object));
            }
        } else {
            scan.skip_value()?;
        }
        if scan.take(b']') {
            return Some(());
        }
        if !scan.take(b',') {
            return None;
        }
    }
}

/// Message fields other gateways invented for reasoning round trips; OpenAI-compatible
/// servers reject or ignore them, so they are removed before forwarding.
const GATEWAY_ONLY_MESSAGE_FIELDS: &[&str] = &["thinking_blocks", "reasoning_content"];

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

/// Stream state apart from the decoder, so that the decoder's callback can borrow it.
#[derive(Debug, Default)]
struct StreamState {
    /// The provider's registry entry, for its stream quirks.
    provider: Option<&'static ProviderSpec>,
    client_wants_usage: bool,
    /// The last usage the provider reported (cumulative: replaced, never added).
    usage: Option<Usage>,
    /// A choice carried a `finish_reason`: the answer is complete.
    finished: bool,
    /// `[DONE]` was written: everything after is ignored.
    done: bool,
}

/// What the stream translation reads of a chunk; everything else is ignored unparsed and
/// the chunk is forwarded byte for byte.
#[derive(Deserialize)]
struct ChunkProbe {
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default)]
    usage: Option<LenientUsage>,
    #[serde(default)]
    choices: Option<ChoicesSummary>,
}

/// `usage` with every field optional: OpenAI-compatible servers differ in what they send.
#[derive(Deserialize)]
struct LenientUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<LenientPromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<LenientCompletionDetails>,
    /// DeepSeek's cache hits, where others send `prompt_tokens_details.cached_tokens`.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct LenientPromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct LenientCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl LenientUsage {
    fn to_usage(&self) -> Usage {
        let prompt = self.prompt_tokens_details.as_ref();
        Usage {
            reported_cost_micro_usd: None,
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens.unwrap_or(0),
            cache_read_tokens: prompt
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: prompt.and_then(|d| d.cache_creation_tokens).unwrap_or(0),
            cache_write_1h_tokens: 0,
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// How many choices a chunk has and whether one of them finished, read without allocating.
struct ChoicesSummary {
    count: usize,
    finished: bool,
}

#[derive(Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for ChoicesSummary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ChoicesSummary;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ChoicesSummary, A::Error> {
                let mut summary = ChoicesSummary {
                    count: 0,
                    finished: false,
                };
                while let Some(choice) = seq.next_element::<ChoiceProbe>()? {
                    summary.count += 1;
                    summary.finished |= choice.finish_reason.is_some();
                }
                Ok(summary)
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// [`ChunkProbe`] for the common chunk, read by [`Scan`] instead of serde: `None` when the
/// payload needs the serde probe, i.e. whenever the two could disagree: an `error` or
/// `usage` key, a key of the chunk or of a choice with an escape, a repeated `choices` or
/// `finish_reason`, a choice that is not an object, or anything serde_json would refuse.
fn quick_probe(payload: &str) -> Option<ChoicesSummary> {
    let mut scan = Scan::new(payload.as_bytes());
    let mut choices: Option<ChoicesSummary> = None;
    scan.object(|scan, key| match key {
        b"error" | b"usage" => None,
        b"choices" if choices.is_none() => {
            choices = Some(scan.choices()?);
            Some(())
        }
        b"choices" => None,
        _ => scan.skip_value(),
    })?;
    scan.space();
    (scan.at == scan.bytes.len()).then_some(choices.unwrap_or(ChoicesSummary {
        count: 0,
        finished: false,
    }))
}

impl Scan<'_> {
    /// `choices`: `null` or an array of objects.
    fn choices(&mut self) -> Option<ChoicesSummary> {
        let mut summary = ChoicesSummary {
            count: 0,
            finished: false,
        };
        self.space();
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(summary);
        }
        if !self.take(b'[') {
            return None;
        }
        if self.take(b']') {
            return Some(summary);
        }
        loop {
            let mut reason_seen = false;
            self.object(|scan, key| {
                if key != b"finish_reason" {
                    return scan.skip_value();
                }
                if reason_seen {
                    return None;
                }
                reason_seen = true;
                scan.space();
                if scan.peek()? == b'n' {
                    scan.literal(b"null")
                } else {
                    summary.finished = true;
                    scan.skip_value()
                }
            })?;
            summary.count += 1;
            if self.take(b']') {
                return Some(summary);
            }
            if !self.take(b',') {
                return None;
            }
        }
    }
}

/// Only the `error` member of a payload (objects and plain strings alike).
#[derive(Deserialize)]
struct ErrorProbe {
    #[serde(default)]
    error: Option<Value>,
}

impl StreamState {
    fn on_event(&mut self, data: &str, out: &mut Vec<u8>) -> ControlFlow<()> {
        let payload = data.trim();
        if payload == "[DONE]" {
            out.extend_from_slice(DONE_EVENT);
            self.done = true;
            return ControlFlow::Break(());
        }
        // Chunks are objects; the probe alone would also take a JSON array.
        if !payload.starts_with('{') {
            self.fail(out, "the provider sent a malformed stream event");
            return ControlFlow::Break(());
        }
        let probe = match quick_probe(payload) {
            Some(choices) => Ok(ChunkProbe {
                error: None,
                usage: None,
                choices: Some(choices),
            }),
            None => crate::json::path::from_str::<ChunkProbe>(payload),
        };
        match probe {
            Ok(probe) => self.on_chunk(payload, probe, out),
            Err(_) => self.on_odd_payload(payload, out),
        }
        if self.done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn on_chunk(&mut self, payload: &str, probe: ChunkProbe, out: &mut Vec<u8>) {
        if probe.error.is_some() {
            // The provider's own error event: forwarded (the SDKs raise on it), and the
            // stream ends there.
            write_error_payload(out, payload);
            out.extend_from_slice(DONE_EVENT);
            self.done = true;
            return;
        }
        let choices = probe.choices.as_ref().map(|c| c.count).unwrap_or(0);
        let finishes = probe.choices.as_ref().is_some_and(|c| c.finished);
        self.finished |= finishes;
        let provider = self.provider;
        if choices == 0
            && probe.usage.is_none()
            && provider.is_some_and(|p| p.wire == WireApi::AzureOpenAi)
        {
            // Azure's prompt-filter results arrive in a chunk with no choices, which code
            // written for OpenAI indexes into (`chunk.choices[0]`): it is dropped.
            return;
        }
        let renamed =
            provider.and_then(|p| openai_family::chunk_with_reasoning_renamed(p, payload));
        // Groq's streams carry the usage in `x_groq.usage` on the chunk that finishes.
        let nested = if probe.usage.is_none() && (finishes || choices == 0) {
            provider
                .and_then(|p| p.quirks.stream_usage_in)
                .and_then(|field| openai_family::nested_stream_usage(payload, field))
        } else {
            None
        };
        if let Some(usage_chunk) = nested {
            if let Some(u) = usage_chunk
                .get("usage")
                .and_then(|u| UsageBody::deserialize(u).ok())
            {
                self.usage = Some(Usage::from_body(&u));
            }
            match renamed {
                Some(v) => write_value(out, &v),
                None => write_payload(out, payload),
            }
            if self.client_wants_usage {
                write_value(out, &usage_chunk);
            }
            return;
        }
        if let Some(u) = probe.usage {
            let mut usage = u.to_usage();
            if provider.is_some_and(|p| p.prices == Prices::Reported) {
                // OpenRouter's charge, in the usage chunk (once a stream).
                usage.reported_cost_micro_usd = crate::json::path::from_str::<Value>(payload)
                    .ok()
                    .and_then(|v| v.get("usage")?.get("cost")?.as_f64())
                    .and_then(crate::pricing::micro_usd);
            }
            self.usage = Some(usage);
            if !self.client_wants_usage {
                if choices == 0 {
                    return; // the usage-only chunk the client did not ask for
                }
                // Usage riding on a content chunk (some servers report it on every chunk).
                let chunk = match renamed {
                    Some(v) => Ok(v),
                    None => crate::json::path::from_str::<Value>(payload),
                };
                if let Ok(Value::Object(mut chunk)) = chunk {
                    chunk.remove("usage");
                    write_value(out, &Value::Object(chunk));
                    return;
                }
                return write_payload(out, payload);
            }
        }
        match renamed {
            Some(v) => write_value(out, &v),
            None => write_payload(out, payload),
        }
    }

    /// A payload the chunk probe could not read: a JSON object with unusual field types is
    /// still forwarded; anything else is malformed and ends the stream with an error.
    fn on_odd_payload(&mut self, payload: &str, out: &mut Vec<u8>) {
        match crate::json::path::from_str::<Value>(payload) {
            Ok(Value::Object(chunk)) => {
                if chunk.get("error").is_some_and(|e| !e.is_null()) {
                    write_error_payload(out, payload);
                    out.extend_from_slice(DONE_EVENT);
                    self.done = true;
                } else {
                    write_payload(out, payload);
                }
            }
            _ => self.fail(out, "the provider sent a malformed stream event"),
        }
    }

    /// Ends the stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        write_stream_error(out, message);
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
    }
}

/// The status a stream's opening error stands for: the provider's numeric code when it
/// gives one, else its type or code, else 503 (a failure inside a 200 is transient).
fn stream_error_status(error: &Value) -> u16 {
    let code = error.get("code");
    if let Some(status) = code
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| (400..600).contains(s))
        .and_then(|s| u16::try_from(s).ok())
    {
        return match status {
            529 => 503,
            s => s,
        };
    }
    let names = [
        code.and_then(Value::as_str),
        error.get("type").and_then(Value::as_str),
    ];
    for name in names.into_iter().flatten() {
        let status = match name {
            "rate_limit_exceeded"
            | "rate_limit_error"
            | "insufficient_quota"
            | "requests"
            | "tokens"
            | "RateLimitError" => 429,
            "invalid_request_error" | "BadRequestError" | "context_length_exceeded" => 400,
            "authentication_error" | "invalid_api_key" | "AuthenticationError" => 401,
            "permission_error" | "PermissionDeniedError" => 403,
            "not_found_error" | "model_not_found" | "NotFoundError" => 404,
            "timeout" | "timeout_error" => 504,
            _ => continue,
        };
        return status;
    }
    503
}

/// Forwards a JSON payload as one `data:` line. A payload the provider spread over several
/// `data:` lines holds line feeds, which in valid JSON are whitespace between tokens (a
/// string cannot hold a raw one): they become spaces, so the client gets one complete
/// event instead of a line its parser drops.
fn write_payload(out: &mut Vec<u8>, payload: &str) {
    out.extend_from_slice(b"data: ");
    if payload.contains('\n') {
        out.extend(payload.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    } else {
        out.extend_from_slice(payload.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
}

/// Forwards the provider's error event with anything shaped like a key masked.
fn write_error_payload(out: &mut Vec<u8>, payload: &str) {
    match crate::json::path::from_str::<Value>(payload) {
        Ok(mut v) => {
            crate::secrets::redact_value(&mut v);
            write_value(out, &v);
        }
        Err(_) => write_payload(out, &crate::secrets::redact_key_like(payload)),
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Writes an OpenAI-style in-stream error event, which the OpenAI SDK raises as an error.
pub fn write_stream_error(out: &mut Vec<u8>, message: &str) {
    let e = GatewayError::new(ErrorKind::Api, message)
        .with_status(502)
        .with_code("stream_error");
    write_error_event(out, &e);
}

/// Reads an OpenAI-shaped error body, or wraps whatever the provider sent.
pub(crate) fn openai_error(status: u16, body: &[u8]) -> GatewayError {
    let kind = ErrorKind::from_status(status);
    match serde_json::from_slice::<ErrorOnly>(body) {
        Ok(e) => {
            let message = e
                .error
                .message
                .unwrap_or_else(|| format!("the provider answered {status}"));
            let mut g = GatewayError::new(kind, redact_key_like(&message)).with_status(status);
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
            GatewayError::new(kind, redact_key_like(&message)).with_status(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages_api::InboundApi;
    use crate::provider::ProviderOptions;
    use crate::provider::RequestFromBody;

    /// LiteLLM's `cache` controls never reach the provider.
    #[test]
    fn cache_controls_are_not_forwarded() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"cache":{"no-cache":true}}"#;
        assert!(forward_verbatim(std::str::from_utf8(body).unwrap(), "up").is_none());
        let out = forward_reparsed(body, "up", |_| Ok(())).unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(v.get("cache").is_none() && v["model"] == "up");
    }

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

    /// The two ways of forwarding a body: the fast one must agree with the general one
    /// (same JSON, same stream flags) on everything it takes.
    fn agree(body: &[u8]) -> Option<Forwarded> {
        let fast = std::str::from_utf8(body)
            .ok()
            .and_then(|t| forward_verbatim(t, "up-\"model\u{e9}"));
        let fast = fast?;
        let slow = forward_reparsed(body, "up-\"model\u{e9}", |_| Ok(())).unwrap_or_else(|e| {
            panic!(
                "only the fast way took {:?}: {e:?}",
                String::from_utf8_lossy(body)
            )
        });
        let read = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(
            read(&fast.body),
            read(&slow.body),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            (fast.stream, fast.client_wants_usage),
            (slow.stream, slow.client_wants_usage),
            "{}",
            String::from_utf8_lossy(body)
        );
        Some(fast)
    }

    /// Every edit the general way makes, made in place; the rest of the body byte for byte.
    #[test]
    fn verbatim_forwarding_agrees_with_reparsing() {
        let taken = [
            &br#"{"model":"alias","messages":[{"role":"user","content":"caf\u00e9 \"q\"\n"}],"top_k":3}"#[..],
            br#" { "messages" : [ ] , "model" : 7 } "#,
            br#"{"messages":[{"role":"assistant","content":"x","thinking_blocks":[{"a":1}],"reasoning_content":"r"}],"model":"a"}"#,
            br#"{"messages":[{"reasoning_content":"r","role":"assistant"},{"thinking_blocks":[]},"odd",3],"model":"a"}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"x":{"include_usage":true}}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{}}"#,
            br#"{"stream_options":null,"stream":true,"model":"a","messages":[]}"#,
            br#"{"model":"a","messages":[],"stream":false,"stream_options":{"include_usage":true}}"#,
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"\ud83d\ude00"}]}],"stream":true}"#,
            br#"{"model":"a","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"number","minimum":-1.5e3}}}}}]}"#,
        ];
        for body in taken {
            assert!(agree(body).is_some(), "{}", String::from_utf8_lossy(body));
        }
        // Untouched parts keep the client's bytes.
        let f = agree(
            br#"{"model":"alias","messages":[{"role":"user","content":"caf\u00e9"}], "n" : 1}"#,
        )
        .unwrap();
        assert_eq!(
            f.body,
            "{\"model\":\"up-\\\"model\u{e9}\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9\"}], \"n\" : 1}"
                .as_bytes()
        );
        // What the general way must decide.
        for body in [
            &br#"{"model":"a","model":"b","messages":[]}"#[..],
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
            br#"{"mod\u0065l":"a","messages":[]}"#,
            br#"{"model":"a","messages":[]} x"#,
            br#"{"model":"a","messages":[01]}"#,
            br#"{}"#,
            br#"[]"#,
            b"{\"model\":\"\xff\"}",
            br#"{"model":"a","messages":[{"role":"user","content":"\udfff\ud800"}]}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"\ud800x"}]}"#,
            format!("{{\"model\":\"a\",\"x\":{}1{}}}", "[".repeat(127), "]".repeat(127)).as_bytes(),
        ] {
            assert!(
                std::str::from_utf8(body)
                    .ok()
                    .and_then(|t| forward_verbatim(t, "m"))
                    .is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Mutations of the bodies above and of the golden requests: the fast way either
    /// declines or agrees with the general way.
    #[test]
    fn verbatim_forwarding_agrees_on_mutations() {
        let mut seeds: Vec<Vec<u8>> = vec![
            br#"{"model":"a","messages":[{"role":"assistant","content":"x","thinking_blocks":[],"reasoning_content":"r"}],"stream":true,"stream_options":{"include_usage":false}}"#.to_vec(),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if let Ok(b) = std::fs::read(entry.path().join("openai_request.json")) {
                seeds.push(b);
            }
        }
        assert!(seeds.len() >= 3);
        let tokens: &[&[u8]] = &[
            b"\"stream\":true,",
            b"\"stream_options\":",
            b"\"include_usage\":",
            b"true",
            b"null",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\"model\":",
            b"\"reasoning_content\":",
            b"\"thinking_blocks\":",
            b" ",
            b"1e999",
            b"-0",
            b"\\u00e9",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut taken = 0;
        for round in 0..20_000 {
            let mut body = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(3) {
                let at = next(body.len() + 1);
                match next(3) {
                    0 => {
                        let t = tokens[next(tokens.len())];
                        body.splice(at..at, t.iter().copied());
                    }
                    1 if at < body.len() => {
                        let end = (at + 1 + next(8)).min(body.len());
                        body.drain(at..end);
                    }
                    _ => {
                        let t = tokens[next(tokens.len())];
                        let end = (at + t.len()).min(body.len());
                        body.splice(at..end, t.iter().copied());
                    }
                }
            }
            let agreed = std::panic::catch_unwind(|| agree(&body));
            match agreed {
                Ok(Some(_)) => taken += 1,
                Ok(None) => {}
                Err(_) => panic!("disagreement on {}", String::from_utf8_lossy(&body)),
            }
        }
        // The mutations must reach the fast way often, or this tests nothing.
        assert!(
            taken > 2_000,
            "only {taken} mutated bodies took the fast way"
        );
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

    /// The quick probe reads what the serde probe reads, and leaves to it every payload
    /// it could judge differently.
    /// serde reads `payload` as the quick probe did: no error, no usage, same choices.
    fn assert_serde_agrees(payload: &str, quick: &ChoicesSummary) {
        let probe = crate::json::path::from_str::<ChunkProbe>(payload)
            .unwrap_or_else(|e| panic!("quick took what serde refuses: {payload}: {e}"));
        assert!(probe.error.is_none() && probe.usage.is_none(), "{payload}");
        let choices = probe.choices.unwrap_or(ChoicesSummary {
            count: 0,
            finished: false,
        });
        assert_eq!(
            (quick.count, quick.finished),
            (choices.count, choices.finished),
            "{payload}"
        );
    }

    #[test]
    fn quick_probe_agrees_with_serde() {
        let taken = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"a\"\u00e9\n"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{"x":[1,-2.5e+3,true,false,null,{},[],{"a":{"b":[]}}]},"finish_reason":null}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":null}"#,
            r#"{}"#,
            r#" { "choices" : [ { "finish_reason" : { } } ] , "x" : 0 } "#,
            r#"{"x":{"\u0041":1}}"#,
        ];
        let refused = [
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"error":null}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[{"finish_reason":null,"finish_reason":"stop"}]}"#,
            r#"{"choic\u0065s":[]}"#,
            r#"{"choices":[{"finish\u005freason":"stop"}]}"#,
            // serde_json would skip a lone surrogate, but refuses it in a string it reads.
            r#"{"x":"\ud800","choices":[{"finish_reason":0}]}"#,
            r#"{"x":"\udc00\ud800"}"#,
            r#"{"choices":[[null]]}"#,
            r#"{"choices":7}"#,
            r#"{"choices":[],}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":01}"#,
            r#"{"x":1.}"#,
            r#"{"x":1e}"#,
            r#"{"x":-}"#,
            r#"{"x":"\q"}"#,
            r#"{"x":"\u12g4"}"#,
            "{\"x\":\"a\u{1}\"}",
            r#"{"x":nul}"#,
            r#"{"x":nullx}"#,
            r#"{"x" 1}"#,
            r#"{"x":1} {}"#,
            r#"{"x":{"a"}}"#,
            r#"{"x":{1:2}}"#,
            r#"{"x":"#,
            r#"{"x":[{"a":[}]}"#,
        ];
        for p in taken {
            let quick = quick_probe(p).unwrap_or_else(|| panic!("{p}"));
            assert_serde_agrees(p, &quick);
        }
        for p in refused {
            assert!(quick_probe(p).is_none(), "{p}");
        }
        // Mutated payloads: whatever the quick probe takes, serde takes alike.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pieces = [
            "\"",
            "\\",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "0",
            "-",
            ".",
            "e",
            "null",
            "\"finish_reason\"",
            "\"choices\"",
            "\"usage\"",
            "\"error\"",
            " ",
            "\\u00",
            "\u{1}",
            "\u{e9}",
            "1",
        ];
        let mut quick_taken = 0;
        for round in 0..20_000 {
            let mut p = taken[round % taken.len()].to_string();
            for _ in 0..1 + next(3) {
                let at = (0..=p.len())
                    .filter(|&i| p.is_char_boundary(i))
                    .collect::<Vec<_>>();
                let i = at[next(at.len())];
                if next(2) == 0 {
                    p.insert_str(i, pieces[next(pieces.len())]);
                } else {
                    let j = at
                        .iter()
                        .copied()
                        .filter(|&j| j >= i)
                        .take(1 + next(3))
                        .last();
                    p.replace_range(i..j.unwrap_or(i), "");
                }
            }
            let Some(quick) = quick_probe(&p) else {
                continue;
            };
            quick_taken += 1;
            assert_serde_agrees(&p, &quick);
        }
        assert!(quick_taken > 1000, "{quick_taken}");
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(quick_probe(&deep).is_none());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(quick_probe(&deep).is_some());
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
