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

use crate::bytes::find;

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

/// Replaces every occurrence of `key` in `bytes[from..]` by [`mask`]`(key)`; returns
/// whether anything was replaced. Keys shorter than [`MIN_SCRUBBED_KEY_LEN`] are left
/// alone. The mask is plain ASCII without quotes or backslashes, so JSON and SSE stay
/// well-formed.
pub fn scrub_key(bytes: &mut Vec<u8>, from: usize, key: &str) -> bool {
    let needle = key.as_bytes();
    if needle.len() < MIN_SCRUBBED_KEY_LEN {
        return false;
    }
    let replacement = mask(key).as_bytes();
    let mut at = from;
    let mut changed = false;
    while let Some(found) = bytes.get(at..).and_then(|tail| find(tail, needle)) {
        let start = at + found;
        bytes.splice(start..start + needle.len(), replacement.iter().copied());
        at = start + replacement.len();
        changed = true;
    }
    changed
}

/// [`scrub_key`] for text.
pub fn scrub_key_str<'a>(text: &'a str, key: &str) -> Cow<'a, str> {
    if key.len() < MIN_SCRUBBED_KEY_LEN || !text.contains(key) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace(key, mask(key)))
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
        let mut b = b"k=abc".to_vec();
        assert!(!scrub_key(&mut b, 0, "abc"));
        // Only from `from` on.
        let mut b = b"AIzaSyKEY123456 AIzaSyKEY123456".to_vec();
        assert!(scrub_key(&mut b, 3, "AIzaSyKEY123456"));
        assert_eq!(b, b"AIzaSyKEY123456 AIza***");
        assert_eq!(scrub_key_str("x key-12345678 y", "key-12345678"), "x *** y");
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"aa", b"ab"), None);
        assert_eq!(find(b"", b""), None);
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
