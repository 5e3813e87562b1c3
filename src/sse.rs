//! The one incremental Server-Sent Events decoder every provider stream goes through.
//!
//! Implements the WHATWG event-stream parsing rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! LF, CRLF and CR line ends; `data:` with or without one leading space; several `data:`
//! lines joined by `\n`; comments (`:`) ignored; `event:` and `id:` kept. Bytes may arrive
//! split anywhere, even inside a UTF-8 character or between CR and LF. Memory is bounded by
//! the largest single event (see [`SseDecoder::with_limit`]).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, when the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, when present.
    pub id: Option<String>,
}

/// Why the decoder gave up on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A single event grew past the decoder's limit.
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Incremental decoder: [`push`](Self::push) bytes, then drain [`next_event`](Self::next_event).
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// A CR ended the last line; a following LF belongs to it.
    after_cr: bool,
    /// Fields of the event being assembled.
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// Events ready to hand out.
    ready: std::collections::VecDeque<SseEvent>,
    /// Bytes held for the event being assembled (line + data), checked against `limit`.
    limit: usize,
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::with_limit(Self::DEFAULT_LIMIT)
    }
}

impl SseDecoder {
    /// Largest event accepted by default (16 MiB: a big tool-call argument or image).
    pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

    /// A decoder refusing events larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            ready: std::collections::VecDeque::new(),
            limit,
            failed: None,
        }
    }

    /// Feeds bytes. Complete events become available from [`next_event`](Self::next_event).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.after_cr => {
                    // Second half of a CRLF whose CR ended the line already.
                    self.after_cr = false;
                    start = i + 1;
                }
                b'\n' | b'\r' => {
                    self.line.extend_from_slice(&bytes[start..i]);
                    self.after_cr = b == b'\r';
                    self.end_line();
                    start = i + 1;
                }
                _ => {
                    self.after_cr = false;
                }
            }
        }
        self.line.extend_from_slice(&bytes[start..]);
        if self.line.len() + self.data.len() > self.limit {
            self.fail();
        }
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Ends the stream: a final event without its blank line is dispatched.
    pub fn finish(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if !self.line.is_empty() {
            self.end_line();
        }
        self.dispatch();
    }

    /// Set once an event exceeded the limit; the decoder then ignores further input.
    pub fn error(&self) -> Option<&SseError> {
        self.failed.as_ref()
    }

    fn fail(&mut self) {
        self.failed = Some(SseError::EventTooLarge { limit: self.limit });
        self.line = Vec::new();
        self.data = String::new();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
                if self.data.len() > self.limit {
                    self.fail();
                }
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" => {
                if !value.contains('\0') {
                    self.id = Some(value.into_owned());
                }
            }
            _ => {} // `retry` and unknown fields are ignored
        }
    }

    fn dispatch(&mut self) {
        if !self.has_data {
            // An event with no data is not dispatched, but its name is reset.
            self.event = None;
            return;
        }
        self.ready.push_back(SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        });
        self.has_data = false;
    }
}

/// Appends one event in wire form (`event: name\ndata: ...\n\n`) to `out`.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        d.finish();
        while let Some(e) = d.next_event() {
            out.push(e);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
            id: None,
        }
    }

    /// LF, CRLF and CR line ends, comments, multi-line data and a final unterminated event.
    #[test]
    fn line_ends_comments_multiline() {
        let input =
            b": hello\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\ndata: x\rdata: y\r\rdata: last";
        let expected = vec![ev(Some("a"), "1\n2"), ev(None, "x\ny"), ev(None, "last")];
        assert_eq!(decode_all(&[input]), expected);
    }

    /// Every split point of a stream gives the same events as the unsplit stream.
    #[test]
    fn every_split_point() {
        let input =
            "event: message_start\r\ndata: {\"a\":\"h\u{e9}llo \u{1F600}\"}\r\n\r\ndata: b\n\n"
                .as_bytes();
        let whole = decode_all(&[input]);
        assert_eq!(whole.len(), 2);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = decode_all(&[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    /// An event larger than the limit stops the decoder instead of growing without bound.
    #[test]
    fn bounded_memory() {
        let mut d = SseDecoder::with_limit(8);
        d.push(b"data: 0123456789");
        assert_eq!(d.error(), Some(&SseError::EventTooLarge { limit: 8 }));
        d.push(b"\n\n");
        assert_eq!(d.next_event(), None);
    }
}
