//! A stream's chunks read and forwarded: each chunk is probed for its error, usage and
//! choices (by a quick scan, or serde when the scan declines) and passed on byte for byte
//! where it can be; the usage the client did not ask for is dropped, and a malformed or
//! truncated stream ends with one error event and `[DONE]`.

use std::ops::ControlFlow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::errors::write_stream_error;
use crate::json::scan::Scan;
use crate::openai::{UsageBody, DONE_EVENT};
use crate::provider::openai_family;
use crate::provider::registry::{Prices, ProviderSpec, WireApi};
use crate::usage::Usage;

/// Stream state apart from the decoder, so that the decoder's callback can borrow it.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The provider's registry entry, for its stream quirks.
    pub(super) provider: Option<&'static ProviderSpec>,
    pub(super) client_wants_usage: bool,
    /// The last usage the provider reported (cumulative: replaced, never added).
    pub(super) usage: Option<Usage>,
    /// A choice carried a `finish_reason`: the answer is complete.
    pub(super) finished: bool,
    /// `[DONE]` was written: everything after is ignored.
    pub(super) done: bool,
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
pub(super) struct ErrorProbe {
    #[serde(default)]
    pub(super) error: Option<Value>,
}

impl StreamState {
    pub(super) fn on_event(&mut self, data: &str, out: &mut Vec<u8>) -> ControlFlow<()> {
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
    pub(super) fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        write_stream_error(out, message);
        out.extend_from_slice(DONE_EVENT);
        self.done = true;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
