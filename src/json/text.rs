//! Strings of the client's request kept as the client escaped them.
//!
//! A prompt would otherwise be unescaped when the request is read and escaped again when
//! the provider's request is written, most of the translation's cost for large prompts. A
//! string whose escapes are all ones serde_json writes itself is kept as its JSON literal
//! and copied out verbatim, which is byte for byte what serde_json would write for it; any
//! other string (`\/`, `\u00e9`, surrogate pairs, ...) is unescaped as before.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A text field of the request: its JSON literal when that can be written back as is, the
/// text otherwise.
#[derive(Clone)]
pub struct JsonText(Repr);

#[derive(Clone)]
enum Repr {
    /// The literal, quotes included, and the length in bytes of the text it stands for;
    /// shared, as translations copy texts into the provider's request.
    Literal(Arc<RawValue>, usize),
    Text(String),
}

impl JsonText {
    /// Length of the text in bytes (unescaped).
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Literal(_, len) => *len,
            Repr::Text(s) => s.len(),
        }
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, unescaped (borrowed when the literal has no escapes).
    pub fn text(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Text(s) => Cow::Borrowed(s),
            Repr::Literal(raw, len) => {
                let inner = literal_content(raw.get());
                if inner.len() == *len {
                    Cow::Borrowed(inner)
                } else {
                    // The literal was checked when it was read: this parse cannot fail.
                    Cow::Owned(serde_json::from_slice(raw.get().as_bytes()).unwrap_or_default())
                }
            }
        }
    }

    /// The text, unescaped.
    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Text(s) => s,
            Repr::Literal(..) => self.text().into_owned(),
        }
    }

    /// The escaped content of the literal (no quotes), if this is one.
    fn literal(&self) -> Option<&str> {
        match &self.0 {
            Repr::Literal(raw, _) => Some(literal_content(raw.get())),
            Repr::Text(_) => None,
        }
    }

    /// `parts` joined by `separator`, kept as a literal when every part is one.
    pub fn join(parts: &[JsonText], separator: &str) -> JsonText {
        if let [one] = parts {
            return one.clone();
        }
        let literals: Option<Vec<&str>> = parts.iter().map(JsonText::literal).collect();
        // Line breaks are the only characters of a separator that need escaping here.
        let escapes = |c: char| c == '"' || c == '\\' || (c < ' ' && c != '\n');
        if let Some(literals) = literals.filter(|_| !separator.contains(escapes)) {
            let mut joined = String::with_capacity(
                literals
                    .iter()
                    .map(|l| l.len() + separator.len())
                    .sum::<usize>()
                    + 2,
            );
            joined.push('"');
            for (i, l) in literals.iter().enumerate() {
                if i > 0 {
                    joined.push_str(&separator.replace('\n', "\\n"));
                }
                joined.push_str(l);
            }
            joined.push('"');
            let len = parts.iter().map(JsonText::len).sum::<usize>()
                + separator.len() * parts.len().saturating_sub(1);
            // Built from checked literals: cannot fail, but fall back to the text if it did.
            if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(joined.as_bytes()) {
                return JsonText(Repr::Literal(raw.into(), len));
            }
        }
        let texts: Vec<Cow<'_, str>> = parts.iter().map(JsonText::text).collect();
        JsonText(Repr::Text(texts.join(separator)))
    }

    /// Keeps `raw` (a literal read from the request) when its escapes are serde_json's own.
    fn from_raw(raw: Box<RawValue>) -> Result<JsonText, serde_json::Error> {
        let json = raw.get();
        if !json.starts_with('"') {
            // Not a string: let serde say so, in the words it uses for a `String` field.
            let value: serde_json::Value = serde_json::from_slice(json.as_bytes())?;
            return String::deserialize(value).map(JsonText::from);
        }
        match canonical_len(literal_content(json).as_bytes()) {
            Some(len) => Ok(JsonText(Repr::Literal(raw.into(), len))),
            // serde_json's own unescaping, with its checks (lone surrogates, ...).
            None => serde_json::from_slice::<String>(json.as_bytes()).map(JsonText::from),
        }
    }
}

/// A literal without its quotes.
fn literal_content(json: &str) -> &str {
    json.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(json)
}

/// The unescaped length of `content` (the inside of a literal serde_json has checked), or
/// `None` if some escape in it is not the one serde_json would write for that character.
fn canonical_len(content: &[u8]) -> Option<usize> {
    let mut len = content.len();
    let mut from = 0;
    while let Some(at) = find_backslash(content, from) {
        let size = canonical_escape(content, at)?;
        len -= size - 1;
        from = at + size;
    }
    Some(len)
}

/// The length of the escape at `at` if it is the one serde_json writes for its character.
#[inline]
fn canonical_escape(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at + 1)? {
        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        // serde_json writes `\u00xx` (lowercase hex) for the other control characters.
        b'u' => match bytes.get(at + 2..at + 6)? {
            [b'0', b'0', high @ (b'0' | b'1'), low @ (b'0'..=b'9' | b'a'..=b'f')] => {
                let low = if low.is_ascii_digit() {
                    low - b'0'
                } else {
                    low - b'a' + 10
                };
                let short = *high == b'0' && matches!(low, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                (!short).then_some(6)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Index of the first `\\` at or after `from`.
fn find_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    crate::bytes::find_byte(bytes.get(from..)?, b'\\').map(|i| from + i)
}

impl From<String> for JsonText {
    fn from(s: String) -> JsonText {
        JsonText(Repr::Text(s))
    }
}

impl From<&str> for JsonText {
    fn from(s: &str) -> JsonText {
        JsonText(Repr::Text(s.to_string()))
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.text() == other.text()
    }
}

impl Eq for JsonText {}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Literal(raw, _) => (**raw).serialize(serializer),
            Repr::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonText, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        JsonText::from_raw(raw).map_err(de::Error::custom)
    }
}

/// Reads a request field that is a string or something else: the string as a [`JsonText`]
/// (`Ok`), anything else as its literal (`Err`), for the caller to parse.
pub(crate) fn text_or_raw<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Result<JsonText, Box<RawValue>>, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    if raw.get().starts_with('"') {
        JsonText::from_raw(raw).map(Ok).map_err(de::Error::custom)
    } else {
        Ok(Err(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every escape serde_json writes, and the characters it leaves alone.
    const TRICKY: &[&str] = &[
        "",
        "plain",
        "a \"quoted\" word",
        "back\\slash\\",
        "\\\"",
        "line\nbreak\r\ttab\u{8}\u{c}",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "naïve café 日本語 🦀",
        "slash / and </script>",
        "\u{2028}\u{2029}",
        "0123456\\89abcdef\\0123456789abcde\"",
    ];

    fn read(json: &str) -> JsonText {
        crate::json::path::from_str(json).unwrap()
    }

    fn is_literal(t: &JsonText) -> bool {
        matches!(t.0, Repr::Literal(..))
    }

    /// A string as serde_json writes it is kept as a literal, reads back as serde_json reads
    /// it, and writes out as serde_json writes it.
    #[test]
    fn canonical_strings_round_trip_verbatim() {
        for s in TRICKY {
            let json = serde_json::to_string(s).unwrap();
            let t = read(&json);
            assert!(is_literal(&t), "{json}");
            assert_eq!(t.text(), *s, "{json}");
            assert_eq!(t.len(), s.len(), "{json}");
            assert_eq!(serde_json::to_string(&t).unwrap(), json);
        }
    }

    /// Other escapes are unescaped; the output is what serde_json writes for the text.
    #[test]
    fn other_escapes_match_serde_json() {
        for json in [
            r#""\/""#,
            r#""\u00e9t\u00E9""#,
            r#""\u0041""#,
            r#""\u000a""#,
            r#""\u001F""#,
            r#""\u0008""#,
            r#""\ud83e\udd80 crab""#,
            r#""tab\u0009""#,
        ] {
            let expected: String = crate::json::path::from_str(json).unwrap();
            let t = read(json);
            assert!(!is_literal(&t), "{json}");
            assert_eq!(t.text(), expected);
            assert_eq!(t.len(), expected.len());
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
        assert!(is_literal(&read(r#""\u001f\u0000\u000b""#)));
    }

    /// Whatever a `String` refuses is refused.
    #[test]
    fn refuses_what_string_refuses() {
        for json in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
            r#""\x""#,
            r#""\u12""#,
            "\"ctrl\u{1}\"",
            r#""open"#,
            "5",
            "null",
            "[\"a\"]",
        ] {
            assert!(
                crate::json::path::from_str::<String>(json).is_err(),
                "{json}"
            );
            assert!(
                crate::json::path::from_str::<JsonText>(json).is_err(),
                "{json}"
            );
        }
        assert!(serde_json::from_slice::<JsonText>(b"\"\xff\"").is_err());
        let e = serde_json::from_value::<JsonText>(serde_json::json!(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid type: integer `5`, expected a string"
        );
    }

    /// The backslash finder agrees with a plain search at every offset and alignment.
    #[test]
    fn finds_backslashes() {
        let bytes = b"abc\\defghijklmnop\\\\qrstuvwxyz0123456789\\";
        for from in 0..=bytes.len() + 1 {
            let expected = bytes
                .get(from..)
                .and_then(|r| r.iter().position(|&b| b == b'\\'))
                .map(|p| p + from);
            assert_eq!(find_backslash(bytes, from), expected, "{from}");
        }
        let high: Vec<u8> = "ééé\\€€".bytes().collect();
        assert_eq!(find_backslash(&high, 0), Some(6));
    }

    /// Joining literals gives what joining the texts gives.
    #[test]
    fn join_matches_text_join() {
        let parts = vec![read(r#""a \"b\"""#), read(r#""c\nd""#)];
        let joined = JsonText::join(&parts, "\n\n");
        assert!(is_literal(&joined));
        assert_eq!(joined.text(), "a \"b\"\n\nc\nd");
        assert_eq!(joined.len(), joined.text().len());
        assert_eq!(
            serde_json::to_string(&joined).unwrap(),
            serde_json::to_string("a \"b\"\n\nc\nd").unwrap()
        );
        let mixed = JsonText::join(&[read(r#""\/""#), JsonText::from("x")], "\n\n");
        assert_eq!(serde_json::to_string(&mixed).unwrap(), r#""/\n\nx""#);
    }
}
