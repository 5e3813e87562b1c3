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

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Masks every word that looks like a provider key: `sk-` or `AIza` at the start of a word
/// followed by at least 16 key characters (`A-Z a-z 0-9 - _`). `sk-ant-api03-AbC...`
/// becomes `sk-***`. Meant for error messages quoted from a provider.
pub fn redact_key_like(text: &str) -> Cow<'_, str> {
    if !text.contains("sk-") && !text.contains("AIza") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_word_start = !prev.is_some_and(is_key_char);
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
                prev = Some('*');
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
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
