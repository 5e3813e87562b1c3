//! Keeping credentials out of everything the gateway says: answers, stream events and
//! error messages.
//!
//! Two defences, both applied to every provider:
//!
//! * the exact key of the deployment an attempt used is scrubbed from everything that
//!   attempt sends back ([`scrub_key`]; [`crate::provider::translator_for`] wraps every
//!   translator with it), so a provider that quotes the key it was given ("Incorrect API
//!   key provided: sk-...") never shows it to the client;
//! * words shaped like a provider key (`sk-...`, `AIza...`) are masked in the messages the
//!   gateway quotes from a provider's error ([`redact_key_like`]), which also covers a key
//!   the provider made up or one from another deployment.

use std::borrow::Cow;

use serde_json::Value;

/// Shortest key scrubbed by exact match: a shorter "key" would mangle ordinary text.
pub const MIN_SCRUBBED_KEY_LEN: usize = 8;

/// Shortest run of key characters after `sk-` or `AIza` that counts as a key.
const MIN_KEY_LIKE_TAIL: usize = 16;

/// What a scrubbed key is replaced with: its well-known prefix, if any, and `***`.
pub fn mask(key: &str) -> &'static str {
    if key.starts_with("sk-ant-") {
        "sk-ant-***"
    } else if key.starts_with("sk-") {
        "sk-***"
    } else if key.starts_with("AIza") {
        "AIza***"
    } else {
        "***"
    }
}

/// The key of one attempt, ready to be found quickly in everything the attempt sends back.
///
/// Every stream event is searched, so the search skips ahead by a Boyer-Moore-Horspool
/// table built once per attempt: it looks at about one byte in every few (one in tens for
/// a long random key) instead of every byte.
pub struct KeyScrubber {
    key: String,
    /// How far the search may move when the byte under the key's last position is `b`.
    shift: [u8; 256],
}

impl KeyScrubber {
    /// `None` for a key shorter than [`MIN_SCRUBBED_KEY_LEN`]: a shorter "key" would
    /// mangle ordinary text.
    pub fn new(key: &str) -> Option<KeyScrubber> {
        let needle = key.as_bytes();
        if needle.len() < MIN_SCRUBBED_KEY_LEN {
            return None;
        }
        let capped = |n: usize| u8::try_from(n).unwrap_or(u8::MAX);
        let mut shift = [capped(needle.len()); 256];
        let before_last = needle.len() - 1;
        for (i, &b) in needle.iter().take(before_last).enumerate() {
            if let Some(s) = shift.get_mut(usize::from(b)) {
                *s = capped(before_last - i);
            }
        }
        Some(KeyScrubber {
            key: key.to_string(),
            shift,
        })
    }

    /// The first position of the key in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<usize> {
        let needle = self.key.as_bytes();
        let (&last, head) = needle.split_last()?;
        let mut at = 0usize;
        // Every step moves by at least one (no shift is 0), so this ends.
        while let Some(&b) = hay.get(at + head.len()) {
            if b == last && hay.get(at..at + head.len()) == Some(head) {
                return Some(at);
            }
            // A u8 always indexes the table: the fallback is never taken.
            at += usize::from(self.shift.get(usize::from(b)).copied().unwrap_or(1));
        }
        None
    }

    /// Replaces every occurrence of the key in `bytes[from..]` by [`mask`]`(key)`; returns
    /// whether anything was replaced. The mask is plain ASCII without quotes or
    /// backslashes, so JSON and SSE stay well-formed.
    pub fn scrub(&self, bytes: &mut Vec<u8>, from: usize) -> bool {
        let replacement = mask(&self.key).as_bytes();
        let mut at = from;
        let mut changed = false;
        while let Some(found) = bytes.get(at..).and_then(|tail| self.find(tail)) {
            let start = at + found;
            bytes.splice(start..start + self.key.len(), replacement.iter().copied());
            at = start + replacement.len();
            changed = true;
        }
        changed
    }

    /// [`KeyScrubber::scrub`] for bytes it does not own (header values): borrowed back
    /// when the key is not there.
    pub fn scrub_slice<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.find(bytes).is_none() {
            return Cow::Borrowed(bytes);
        }
        let mut owned = bytes.to_vec();
        self.scrub(&mut owned, 0);
        Cow::Owned(owned)
    }

    /// [`KeyScrubber::scrub`] for text.
    pub fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.find(text.as_bytes()).is_none() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(text.replace(&self.key, mask(&self.key)))
    }
}

/// Ends of the JSON field names whose string values a client joins across stream events:
/// the text (`content`), the reasoning (`reasoning_content`) and tool-call arguments of
/// OpenAI chunks.
const JOINED_FIELD_ENDS: [&[u8]; 2] = [b"content\"", b"arguments\""];

/// Where, in `events` (OpenAI SSE chunks, raw JSON), the values of the joined fields lie:
/// byte ranges inside the quotes, in order. Runs over every streamed byte, so it jumps
/// from field name to field name and through string values a word at a time.
fn joined_text_ranges(events: &[u8]) -> Vec<std::ops::Range<usize>> {
    use crate::bytes::{find, find_string_special};
    let next_field = |from: usize, end: &[u8]| {
        events
            .get(from..)
            .and_then(|t| find(t, end))
            .map(|i| from + i + end.len())
    };
    let mut ranges = Vec::new();
    let mut next = JOINED_FIELD_ENDS.map(|end| next_field(0, end));
    // The nearer of the two field names each time; the other stays found.
    while let Some(after_name) = next.iter().flatten().copied().min() {
        // Blanks, `:`, blanks, then the opening quote; anything else is not a field.
        let mut i = after_name;
        let blanks = |i: &mut usize| {
            while events.get(*i).is_some_and(u8::is_ascii_whitespace) {
                *i += 1;
            }
        };
        blanks(&mut i);
        let mut resume = i;
        if events.get(i) == Some(&b':') {
            i += 1;
            blanks(&mut i);
            if events.get(i) == Some(&b'"') {
                let start = i + 1;
                let mut j = start;
                while let Some(k) = events.get(j..).and_then(find_string_special) {
                    j += k;
                    match events.get(j) {
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        _ => j += 1,
                    }
                }
                let end = j.min(events.len());
                ranges.push(start..end);
                resume = end + 1;
            }
        }
        let resume = resume.max(after_name);
        for (slot, end) in next.iter_mut().zip(JOINED_FIELD_ENDS) {
            if slot.is_some_and(|at| at <= resume) {
                *slot = next_field(resume, end);
            }
        }
    }
    ranges
}

/// True when `text` ends with the first one or more bytes of `needle` (not all of it).
fn ends_with_key_start(text: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return false;
    };
    let window = text.len().saturating_sub(needle.len().saturating_sub(1));
    let tail = text.get(window..).unwrap_or_default();
    tail.iter()
        .enumerate()
        .any(|(i, &b)| b == first && tail.get(i..).is_some_and(|t| needle.starts_with(t)))
}

/// Scrubs the attempt's key from a translated stream even when the provider split it
/// across events: a client joins the text of consecutive chunks, so a key sent as
/// `"sk-abc"` then `"def..."` must be masked too. [`KeyScrubber::scrub`] sees one piece at
/// a time; this joins the text fields of the events it holds, masks the key where the
/// joined text has it, and holds back the events from the one where the text ends with
/// the start of the key until the next piece shows whether the key follows. A held event
/// waits for the next one at most; everything is released when the stream ends.
#[derive(Debug, Default)]
pub struct StreamScrubber {
    held: Vec<u8>,
}

impl StreamScrubber {
    /// Scrubs `out[from..]` (whole SSE events just translated), after the events held back
    /// from earlier pieces; holds back again unless `last` (nothing more follows).
    pub fn scrub(&mut self, key: &KeyScrubber, out: &mut Vec<u8>, from: usize, last: bool) {
        if self.held.is_empty() && from >= out.len() && !last {
            return;
        }
        let mut events = std::mem::take(&mut self.held);
        let new_from = events.len();
        events.extend_from_slice(out.get(from..).unwrap_or_default());
        out.truncate(from);
        // What was held was scrubbed when it came.
        key.scrub(&mut events, new_from);
        let needle = key.key.as_bytes();
        let mut ranges = joined_text_ranges(&events);
        // The key can only span fields if one ends with the key's start: most pieces
        // need no joined search at all.
        let text = |r: &std::ops::Range<usize>| events.get(r.clone()).unwrap_or_default();
        let spans = ranges
            .iter()
            .rev()
            .skip(1)
            .any(|r| ends_with_key_start(text(r), needle));
        let mut found = Vec::new();
        if spans {
            let mut joined: Vec<u8> = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
            for r in &ranges {
                joined.extend_from_slice(text(r));
            }
            let mut at = 0;
            while let Some(i) = joined.get(at..).and_then(|t| key.find(t)) {
                found.push(at + i);
                at += i + needle.len();
            }
        }
        if !found.is_empty() {
            // Mask every occurrence: its first piece becomes the mask, the others empty.
            // Edits go from the end, so earlier offsets stay valid.
            let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = Vec::new();
            for start in found {
                let mut joined_at = 0;
                let mut first = true;
                for r in &ranges {
                    let (lo, hi) = (joined_at, joined_at + r.len());
                    joined_at = hi;
                    let (a, b) = (start.max(lo), (start + needle.len()).min(hi));
                    if a < b {
                        let piece = r.start + (a - lo)..r.start + (b - lo);
                        let with: &[u8] = if first {
                            mask(&key.key).as_bytes()
                        } else {
                            b""
                        };
                        edits.push((piece, with));
                        first = false;
                    }
                }
            }
            edits.sort_unstable_by_key(|(r, _)| std::cmp::Reverse(r.start));
            for (r, with) in edits {
                if r.end <= events.len() {
                    events.splice(r, with.iter().copied());
                }
            }
            ranges = joined_text_ranges(&events);
        }
        if !last {
            if let Some(hold_from) = Self::hold_point(&events, &ranges, needle) {
                self.held = events.split_off(hold_from);
            }
        }
        out.extend_from_slice(&events);
    }

    /// The start of the event from which the joined text ends with a proper prefix of the
    /// key, if it does.
    fn hold_point(
        events: &[u8],
        ranges: &[std::ops::Range<usize>],
        needle: &[u8],
    ) -> Option<usize> {
        let mut tail: Vec<u8> = Vec::with_capacity(needle.len());
        // The last `needle.len() - 1` joined bytes, with where each lies in `events`.
        let mut where_: Vec<usize> = Vec::with_capacity(needle.len());
        for r in ranges.iter().rev() {
            for i in r.clone().rev() {
                if tail.len() + 1 >= needle.len() {
                    break;
                }
                tail.push(*events.get(i)?);
                where_.push(i);
            }
        }
        tail.reverse();
        where_.reverse();
        let k = (1..=tail.len())
            .rev()
            .find(|&k| tail.get(tail.len() - k..) == needle.get(..k))?;
        let offset = *where_.get(where_.len() - k)?;
        let event_start = events
            .get(..offset)?
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .map_or(0, |i| i + 2);
        Some(event_start)
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Masks every word that looks like a provider key: `sk-` or `AIza` at the start of a word
/// followed by at least 16 key characters (`A-Z a-z 0-9 - _`). `sk-ant-api03-AbC...`
/// becomes `sk-***`. Meant for error messages quoted from a provider, and for prompts and
/// answers put on spans: a JSON escape (`\n`) ends a word too, so the text may be JSON.
pub fn redact_key_like(text: &str) -> Cow<'_, str> {
    if !text.contains("sk-") && !text.contains("AIza") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let (mut prev, mut before): (Option<char>, Option<char>) = (None, None);
    while let Some(c) = rest.chars().next() {
        let at_word_start = !prev.is_some_and(is_key_char) || before == Some('\\');
        let prefix = ["sk-", "AIza"]
            .into_iter()
            .find(|p| at_word_start && rest.starts_with(p));
        if let Some(p) = prefix {
            let after = rest.get(p.len()..).unwrap_or("");
            let tail = after
                .char_indices()
                .find(|&(_, c)| !is_key_char(c))
                .map_or(after.len(), |(i, _)| i);
            if tail >= MIN_KEY_LIKE_TAIL {
                out.push_str(p);
                out.push_str("***");
                rest = after.get(tail..).unwrap_or("");
                (before, prev) = (None, Some('*'));
                continue;
            }
        }
        out.push(c);
        (before, prev) = (prev, Some(c));
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
    Cow::Owned(out)
}

/// Applies [`redact_key_like`] to every string in `value` (keys of objects included).
pub fn redact_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact_key_like(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => {
            let redacted: serde_json::Map<String, Value> = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    redact_value(&mut v);
                    (redact_key_like(&k).into_owned(), v)
                })
                .collect();
            *map = redacted;
        }
        _ => {}
    }
}

/// Replaces the key material after every `prefix` (`sk-ant-`, `AIza`) with `***`, so a
/// provider message quoting a key of that provider never reaches the client.
pub fn redact_after_prefix(message: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((before, after)) = rest.split_once(prefix) {
        out.push_str(before);
        out.push_str(prefix);
        out.push_str("***");
        rest =
            after.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub_key(bytes: &mut Vec<u8>, from: usize, key: &str) -> bool {
        KeyScrubber::new(key).is_some_and(|k| k.scrub(bytes, from))
    }

    /// Every occurrence is replaced, the rest kept; short keys are never scrubbed.
    #[test]
    fn scrubs_exact_keys() {
        let key = "sk-fake-openai-provider-key-0123456789";
        let mut b = format!(r#"{{"m":"Incorrect API key provided: {key}. ({key})"}}"#).into_bytes();
        assert!(scrub_key(&mut b, 0, key));
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"m":"Incorrect API key provided: sk-***. (sk-***)"}"#
        );
        assert!(KeyScrubber::new("abc").is_none());
        // Only from `from` on.
        let mut b = b"AIzaSyKEY123456 AIzaSyKEY123456".to_vec();
        assert!(scrub_key(&mut b, 3, "AIzaSyKEY123456"));
        assert_eq!(b, b"AIzaSyKEY123456 AIza***");
        let k = KeyScrubber::new("key-12345678").unwrap();
        assert_eq!(k.scrub_str("x key-12345678 y"), "x *** y");
        assert_eq!(k.scrub_str("x key-1234567 y"), "x key-1234567 y");
    }

    /// The skipping search finds exactly what a plain search finds, at every offset, for
    /// keys with repeated bytes and hays made of the key's own pieces.
    #[test]
    fn skipping_search_agrees_with_a_plain_search() {
        let plain = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
        let keys = [
            "sk-aaaaaaaa",
            "abababab",
            "sk-ant-api03-xyzxyzxyz-0123456789_abc",
            "aaaaaaab",
            "baaaaaaa",
        ];
        let mut long = "k".repeat(300);
        long.push('z');
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for key in keys.iter().copied().chain([long.as_str()]) {
            let scrubber = KeyScrubber::new(key).unwrap();
            let alphabet: Vec<u8> = key.bytes().chain(*b" x\"\n").collect();
            for _ in 0..3_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = (seed % 400) as usize;
                let mut hay: Vec<u8> = (0..len)
                    .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()])
                    .collect();
                if seed % 3 == 0 && len >= key.len() {
                    let at = (seed as usize / 3) % (len - key.len() + 1);
                    hay[at..at + key.len()].copy_from_slice(key.as_bytes());
                }
                assert_eq!(
                    scrubber.find(&hay),
                    plain(&hay, key.as_bytes()),
                    "{key} in {hay:?}"
                );
            }
        }
    }

    fn event(text: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
    }

    fn joined_text(sse: &[u8]) -> String {
        let ranges = joined_text_ranges(sse);
        ranges
            .iter()
            .map(|r| String::from_utf8_lossy(&sse[r.clone()]).into_owned())
            .collect()
    }

    /// A key split across events, in any number of pieces and calls, never reaches the
    /// client whole or in part beyond its public prefix; other text passes unchanged, and
    /// an event waits at most for the next one.
    #[test]
    fn keys_split_across_stream_events_are_scrubbed() {
        let key = "sk-fake-openai-provider-key-0123456789";
        let scrubber = KeyScrubber::new(key).unwrap();
        for cut in [1, 3, 10, 20, 37] {
            let (a, b) = key.split_at(cut);
            for together in [false, true] {
                let mut s = StreamScrubber::default();
                let mut client = Vec::new();
                let pieces = [
                    event("before "),
                    event(&format!("x {a}")),
                    event(&format!("{b} after")),
                ];
                if together {
                    let mut out = pieces.concat().into_bytes();
                    s.scrub(&scrubber, &mut out, 0, false);
                    client.extend_from_slice(&out);
                } else {
                    for p in &pieces {
                        let mut out = p.clone().into_bytes();
                        s.scrub(&scrubber, &mut out, 0, false);
                        client.extend_from_slice(&out);
                    }
                }
                let mut out = Vec::new();
                s.scrub(&scrubber, &mut out, 0, true);
                client.extend_from_slice(&out);
                let text = joined_text(&client);
                assert_eq!(
                    text, "before x sk-*** after",
                    "cut {cut}, together {together}"
                );
            }
        }
        // Many tiny pieces, and the reasoning field.
        let mut s = StreamScrubber::default();
        let mut client = Vec::new();
        for piece in key.as_bytes().chunks(3) {
            let text = std::str::from_utf8(piece).unwrap();
            let mut out = format!("data: {{\"delta\":{{\"reasoning_content\": \"{text}\"}}}}\n\n")
                .into_bytes();
            s.scrub(&scrubber, &mut out, 0, false);
            client.extend_from_slice(&out);
        }
        let mut out = b"data: [DONE]\n\n".to_vec();
        s.scrub(&scrubber, &mut out, 0, true);
        client.extend_from_slice(&out);
        assert_eq!(joined_text(&client), "sk-***");
        assert!(client.ends_with(b"data: [DONE]\n\n"));
        // Text that only ends like the key's start waits one event, then goes unchanged.
        let mut s = StreamScrubber::default();
        let mut out = event("yes").into_bytes();
        s.scrub(&scrubber, &mut out, 0, false);
        assert!(out.is_empty());
        let mut out = event("no").into_bytes();
        s.scrub(&scrubber, &mut out, 0, false);
        assert_eq!(out, format!("{}{}", event("yes"), event("no")).into_bytes());
    }

    /// Key-shaped words are masked; ordinary words and short tails are not.
    #[test]
    fn redacts_key_like_words() {
        assert_eq!(
            redact_key_like("Incorrect API key provided: sk-proj-AbCdEf0123456789xyz. Fix it."),
            "Incorrect API key provided: sk-***. Fix it."
        );
        assert_eq!(
            redact_key_like("key AIzaSyA-b_c9012345678901234 is invalid"),
            "key AIza*** is invalid"
        );
        assert_eq!(redact_key_like("sk-ant-api03-0123456789abcdef"), "sk-***");
        // In JSON text, an escape ends the word before the key.
        assert_eq!(
            redact_key_like(
                r#"{"content":"mine:\nsk-0123456789abcdefghij\tAIza0123456789abcdefghij"}"#
            ),
            r#"{"content":"mine:\nsk-***\tAIza***"}"#
        );
        for kept in [
            "task-0123456789abcdefghij",
            "sk-short",
            "no key",
            "sk-learn",
            "é sk-",
        ] {
            assert_eq!(redact_key_like(kept), kept);
        }
        let mut v = serde_json::json!({"error": {"message": "bad sk-0123456789abcdefghij", "list": ["AIza0123456789abcdefghij"]}});
        redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "bad sk-***", "list": ["AIza***"]}})
        );
    }
}
