//! A JSON reader that builds nothing: it checks a text as strictly as serde_json reads
//! it into values and tells where things are, so that the gateway can copy what it does
//! not change instead of parsing it into values and writing it again.

/// A JSON reader as strict as serde_json's: what it takes, serde_json takes too.
pub struct Scan<'a> {
    /// The text read.
    pub bytes: &'a [u8],
    /// Where the next byte is read.
    pub at: usize,
}

// The small steps are inlined by hand: the release profile optimizes for size and would
// otherwise make a call per byte.
impl<'a> Scan<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Scan { bytes, at: 0 }
    }

    /// The next byte, if any.
    #[inline(always)]
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips whitespace.
    #[inline(always)]
    pub fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips whitespace and takes `byte` if it comes next.
    #[inline(always)]
    pub fn take(&mut self, byte: u8) -> bool {
        self.space();
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// Takes `word` if it comes next.
    pub fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A string (opening quote next); returns its raw bytes and whether it has escapes.
    pub fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.at += 1;
        let start = self.at;
        let mut escaped = false;
        loop {
            let rest = self.bytes.get(self.at..)?;
            self.at += crate::bytes::find_string_special(rest)?;
            match self.peek()? {
                b'"' => {
                    let raw = self.bytes.get(start..self.at)?;
                    self.at += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let unit = self.hex_unit()?;
                            // As serde_json reads a string: a surrogate only in a pair.
                            if (0xDC00..0xE000).contains(&unit) {
                                return None;
                            }
                            if (0xD800..0xDC00).contains(&unit) {
                                if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                                    return None;
                                }
                                self.at += 1;
                                if !(0xDC00..0xE000).contains(&self.hex_unit()?) {
                                    return None;
                                }
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    /// The four hex digits after the `u` at the scan, taken; the scan then follows them.
    pub fn hex_unit(&mut self) -> Option<u16> {
        let hex = self.bytes.get(self.at + 1..self.at + 5)?;
        let text = std::str::from_utf8(hex).ok()?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.at += 5;
        u16::from_str_radix(text, 16).ok()
    }

    /// A number (its first byte next).
    pub fn number(&mut self) -> Option<()> {
        let digits = |scan: &mut Scan<'_>| {
            let start = scan.at;
            while scan.peek().is_some_and(|b| b.is_ascii_digit()) {
                scan.at += 1;
            }
            scan.at - start
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let integer_digits = match self.peek()? {
            b'0' => {
                self.at += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
                1
            }
            b'1'..=b'9' => digits(self),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        let mut magnitude = integer_digits;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            let negative = self.peek() == Some(b'-');
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            let start = self.at;
            let n = digits(self);
            if n == 0 {
                return None;
            }
            if !negative {
                let exponent = self.bytes.get(start..self.at)?.iter().fold(0usize, |e, d| {
                    e.saturating_mul(10).saturating_add(usize::from(d - b'0'))
                });
                magnitude = magnitude.saturating_add(exponent);
            }
        }
        // serde_json refuses a number beyond f64's range (about 1.8e308); refuse anything
        // near it too, so that what this takes serde_json takes.
        (magnitude <= 300).then_some(())
    }

    /// An object, calling `member` with the scan at each value; keys with escapes refused.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Scan<'a>, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        if !self.take(b'{') {
            return None;
        }
        if self.take(b'}') {
            return Some(());
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return None;
            }
            let (key, escaped) = self.string()?;
            if escaped || !self.take(b':') {
                return None;
            }
            member(self, key)?;
            if self.take(b'}') {
                return Some(());
            }
            if !self.take(b',') {
                return None;
            }
        }
    }

    /// Skips one value, without recursion. serde_json refuses nesting deeper than 128 in
    /// the whole document; the values skipped here sit at most three levels down, so
    /// deeper than 120 within the value is refused.
    pub fn skip_value(&mut self) -> Option<()> {
        // Open containers, innermost last: bit set for an object.
        let mut stack: u128 = 0;
        let mut depth = 0u32;
        loop {
            self.space();
            match self.peek()? {
                b'{' | b'[' => {
                    let object = self.peek() == Some(b'{');
                    self.at += 1;
                    if depth == 120 {
                        return None;
                    }
                    stack = (stack << 1) | u128::from(object);
                    depth += 1;
                    let close = if object { b'}' } else { b']' };
                    if self.take(close) {
                        stack >>= 1;
                        depth -= 1;
                    } else {
                        if object && !self.key()? {
                            return None;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = stack & 1 == 1;
                if self.take(b',') {
                    if object && !self.key()? {
                        return None;
                    }
                    break;
                }
                if !self.take(if object { b'}' } else { b']' }) {
                    return None;
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// A key and its colon inside a skipped object (escapes allowed, as serde_json skips
    /// them); `Some(false)` when something else comes.
    pub fn key(&mut self) -> Option<bool> {
        self.space();
        if self.peek()? != b'"' {
            return Some(false);
        }
        self.string()?;
        Some(self.take(b':'))
    }
}

/// `json` without the whitespace between its tokens (what serde_json writes), borrowed
/// when it has none. `json` must be valid JSON: only its strings are told apart.
pub fn compact(json: &str) -> std::borrow::Cow<'_, str> {
    // Allocated at the first whitespace outside a string; whitespace and quotes are
    // ASCII, so the runs copied are whole characters.
    let mut out: Option<String> = None;
    let mut run_start = 0;
    let (mut in_string, mut escaped) = (false, false);
    for (i, b) in json.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
            let out = out.get_or_insert_with(|| String::with_capacity(json.len()));
            out.push_str(json.get(run_start..i).unwrap_or(""));
            run_start = i + 1;
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(json.get(run_start..).unwrap_or(""));
            std::borrow::Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads as the same JSON and is written as serde_json writes it, strings untouched.
    #[test]
    fn compact_drops_only_the_space_between_tokens() {
        for (json, expected) in [
            (r#"{"a":1}"#, r#"{"a":1}"#),
            (
                "{\n  \"a b\": [1, 2],\t\"c\" : \"x \\\" y\"\r\n}",
                r#"{"a b":[1,2],"c":"x \" y"}"#,
            ),
            (r#" "caf\u00e9 \\" "#, r#""caf\u00e9 \\""#),
            ("[ ]", "[]"),
        ] {
            assert_eq!(compact(json), expected);
            let before: serde_json::Value = crate::json::path::from_str(json).unwrap();
            let after: serde_json::Value = crate::json::path::from_str(&compact(json)).unwrap();
            assert_eq!(before, after);
        }
        assert!(matches!(
            compact(r#"{"a":"b c"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
