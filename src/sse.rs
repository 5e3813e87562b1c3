//! The one incremental Server-Sent Events decoder every provider stream goes through.
//!
//! Implements the WHATWG event-stream parsing rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! one leading UTF-8 BOM skipped; LF, CRLF and CR line ends; `data:` with or without one
//! leading space; several `data:` lines joined by `\n`; an event without `data` not
//! dispatched; comments (`:`) ignored; `event:` reset after each dispatch; `id:` sticky and
//! ignored when it contains NUL; `retry:` and unknown fields ignored; invalid UTF-8 replaced
//! by U+FFFD; an event not terminated by a blank line when the stream ends is discarded.
//!
//! Bytes may arrive split anywhere, even inside a UTF-8 character, a BOM or between CR and
//! LF. Complete lines are parsed straight from the input; only a line cut by a chunk
//! boundary is copied. Memory is bounded by the largest single event (see
//! [`SseDecoder::with_limit`]), and buffers grown by one large event are released after it.

use std::collections::VecDeque;
use std::ops::ControlFlow;

/// One dispatched event, owned (see [`SseEventRef`] for the borrowed form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, when the event had a non-empty one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen in the stream so far (ids are sticky), when non-empty.
    pub id: Option<String>,
}

/// One dispatched event, borrowed from the decoder: valid only inside the callback, so
/// decoding an event allocates nothing once the buffers have grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// The `event:` name, when the event had a non-empty one (the spec's `message` default
    /// is left to the caller).
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
    /// The last `id:` seen in the stream so far, when non-empty.
    pub id: Option<&'a str>,
}

impl SseEventRef<'_> {
    /// An owned copy.
    pub fn to_event(&self) -> SseEvent {
        SseEvent {
            event: self.event.map(str::to_string),
            data: self.data.to_string(),
            id: self.id.map(str::to_string),
        }
    }
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

/// How far a stream's first bytes matched a UTF-8 BOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// This many BOM bytes seen so far, nothing else yet.
    Matched(usize),
    /// Past the start of the stream.
    Done,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Buffers larger than this are released after the event that grew them, so one huge event
/// does not pin its memory for the rest of the stream.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// Incremental decoder.
///
/// Use [`feed`](Self::feed) with a callback (no queue, no per-event allocation), or the
/// queueing convenience [`push`](Self::push) + [`next_event`](Self::next_event).
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of a line cut by the end of the previous chunk.
    line: Vec<u8>,
    /// The cut line is a comment: its remaining bytes are dropped, not stored.
    in_comment: bool,
    /// A CR ended the last line; an LF right after it belongs to it.
    after_cr: bool,
    bom: Bom,
    /// Fields of the event being assembled (the spec's buffers).
    event: String,
    data: String,
    has_data: bool,
    /// Last event id; sticky across events as the spec says.
    id: String,
    /// Events for [`next_event`](Self::next_event), filled only by [`push`](Self::push).
    ready: VecDeque<SseEvent>,
    limit: usize,
    failed: Option<SseError>,
    /// A callback asked to stop, or the stream was finished: input is ignored.
    stopped: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::with_limit(Self::DEFAULT_LIMIT)
    }
}

impl SseDecoder {
    /// Largest event accepted by default (16 MiB: a big tool-call argument or image).
    pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

    /// A decoder refusing events larger than `limit` bytes (name, data and the line being
    /// read together).
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            in_comment: false,
            after_cr: false,
            bom: Bom::Matched(0),
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: String::new(),
            ready: VecDeque::new(),
            limit,
            failed: None,
            stopped: false,
        }
    }

    /// Decodes `bytes`, calling `on_event` for each event completed by them, in order.
    ///
    /// When `on_event` returns `Break` the decoder stops for good: the rest of `bytes` and
    /// every later input are ignored (the caller has finished with the stream). After an
    /// [`error`](Self::error) input is ignored too.
    pub fn feed<F>(&mut self, bytes: &[u8], mut on_event: F)
    where
        F: FnMut(SseEventRef<'_>) -> ControlFlow<()>,
    {
        if self.stopped || self.failed.is_some() {
            return;
        }
        let mut rest = self.skip_bom(bytes);
        loop {
            if self.after_cr {
                match rest.split_first() {
                    None => break,
                    Some((b'\n', tail)) => rest = tail,
                    Some(_) => {}
                }
                self.after_cr = false;
            }
            let Some(end) = find_line_end(rest) else {
                break;
            };
            let Some((line, tail)) = rest.split_at_checked(end) else {
                break;
            };
            let Some((&terminator, tail)) = tail.split_first() else {
                break;
            };
            self.after_cr = terminator == b'\r';
            rest = tail;
            let flow = if self.in_comment {
                self.in_comment = false;
                ControlFlow::Continue(())
            } else if self.line.is_empty() {
                self.on_line(line, &mut on_event)
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                let flow = self.on_line(&whole, &mut on_event);
                whole.clear();
                if whole.capacity() <= RETAINED_CAPACITY {
                    self.line = whole;
                }
                flow
            };
            if flow.is_break() {
                self.stop();
                return;
            }
            if self.failed.is_some() {
                return;
            }
        }
        if !rest.is_empty() && !self.in_comment {
            if self.line.is_empty() && rest.first() == Some(&b':') {
                // A comment cut by the chunk end: drop it instead of holding it.
                self.in_comment = true;
            } else {
                self.line.extend_from_slice(rest);
                self.check_limit();
            }
        }
    }

    /// Queues the events completed by `bytes` for [`next_event`](Self::next_event).
    pub fn push(&mut self, bytes: &[u8]) {
        let mut ready = std::mem::take(&mut self.ready);
        self.feed(bytes, |e| {
            ready.push_back(e.to_event());
            ControlFlow::Continue(())
        });
        self.ready = ready;
    }

    /// The next complete event queued by [`push`](Self::push), if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Ends the stream. As the spec says, an event not yet terminated by a blank line is
    /// discarded, never dispatched half-read. Later input is ignored.
    pub fn finish(&mut self) {
        self.stop();
    }

    /// Set once an event exceeded the limit; the decoder then ignores further input.
    pub fn error(&self) -> Option<&SseError> {
        self.failed.as_ref()
    }

    /// Bytes currently reserved by the decoder's buffers, for tests and monitoring.
    pub fn buffered_capacity(&self) -> usize {
        self.line.capacity() + self.event.capacity() + self.data.capacity() + self.id.capacity()
    }

    /// Skips a BOM at the very start of the stream, even when it is split across chunks.
    fn skip_bom<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let mut rest = bytes;
        while let Bom::Matched(seen) = self.bom {
            if seen == BOM.len() {
                self.bom = Bom::Done;
                break;
            }
            match rest.split_first() {
                None => break,
                Some((b, tail)) if BOM.get(seen) == Some(b) => {
                    self.bom = Bom::Matched(seen + 1);
                    rest = tail;
                }
                Some(_) => {
                    // Not a BOM: bytes held from earlier chunks start the first line.
                    self.line
                        .extend_from_slice(BOM.get(..seen).unwrap_or_default());
                    self.bom = Bom::Done;
                }
            }
        }
        rest
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.line = Vec::new();
        self.event = String::new();
        self.data = String::new();
        self.has_data = false;
    }

    fn check_limit(&mut self) {
        if self.line.len() + self.data.len() + self.event.len() > self.limit {
            self.stop();
            self.failed = Some(SseError::EventTooLarge { limit: self.limit });
        }
    }

    fn on_line<F>(&mut self, line: &[u8], on_event: &mut F) -> ControlFlow<()>
    where
        F: FnMut(SseEventRef<'_>) -> ControlFlow<()>,
    {
        let Some((&first, _)) = line.split_first() else {
            return self.dispatch(on_event);
        };
        if first == b':' {
            return ControlFlow::Continue(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (field, value) = line.split_at_checked(colon).unwrap_or((line, &[]));
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                push_lossy(&mut self.data, value);
                self.has_data = true;
                self.check_limit();
            }
            b"event" => {
                self.event.clear();
                push_lossy(&mut self.event, value);
                self.check_limit();
            }
            // An id containing NUL is ignored, as the spec says.
            b"id" if !value.contains(&0) => {
                self.id.clear();
                push_lossy(&mut self.id, value);
            }
            _ => {} // `retry` only matters to browsers reconnecting; unknown fields ignored
        }
        ControlFlow::Continue(())
    }

    fn dispatch<F>(&mut self, on_event: &mut F) -> ControlFlow<()>
    where
        F: FnMut(SseEventRef<'_>) -> ControlFlow<()>,
    {
        let flow = if self.has_data {
            on_event(SseEventRef {
                event: (!self.event.is_empty()).then_some(self.event.as_str()),
                data: &self.data,
                id: (!self.id.is_empty()).then_some(self.id.as_str()),
            })
        } else {
            ControlFlow::Continue(())
        };
        // Both buffers reset whether or not an event was dispatched.
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        if self.data.capacity() > RETAINED_CAPACITY {
            self.data = String::new();
        }
        if self.event.capacity() > RETAINED_CAPACITY {
            self.event = String::new();
        }
        flow
    }
}

/// Appends `bytes` with invalid UTF-8 replaced by U+FFFD. Checking first keeps the usual
/// valid case a plain copy (`from_utf8_lossy` walks the bytes chunk by chunk).
fn push_lossy(buf: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => buf.push_str(text),
        Err(_) => buf.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Position of the first LF or CR in `bytes`, eight bytes per step: a line end is looked
/// for in every byte of every event, so a byte-at-a-time loop was a good part of the
/// decoder's cost.
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = ONES * b'\n' as u64;
    const CR: u64 = ONES * b'\r' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        let (lf, cr) = (word ^ LF, word ^ CR);
        // High bit set in each byte that is zero in `lf` or `cr`; a false hit can only
        // sit above a true one, so the lowest hit is exact.
        let hits = ((lf.wrapping_sub(ONES) & !lf) | (cr.wrapping_sub(ONES) & !cr)) & HIGH;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|i| at + i)
}

/// The last `n` events of well-formed SSE output (each ending in a blank line), or all of
/// it when it has fewer. Where only the end of a translated piece matters (its usage chunk
/// is its last event or the one before `[DONE]`), this spares scanning a long stream's text.
pub fn last_events(out: &[u8], n: usize) -> &[u8] {
    let body = out.strip_suffix(b"\n\n").unwrap_or(out);
    let (mut start, mut end) = (0, body.len());
    for _ in 0..n {
        match body
            .get(..end)
            .and_then(|b| b.windows(2).rposition(|w| w == b"\n\n"))
        {
            Some(i) => (start, end) = (i + 2, i),
            None => return out,
        }
    }
    out.get(start..).unwrap_or(out)
}

/// Largest prefix of a stream scanned to decide a [`crate::provider::StreamPreamble`];
/// past it the stream proceeds so that headers are never held without bound.
pub const PREAMBLE_SCAN_LIMIT: usize = 64 * 1024;

/// Decodes the start of a stream with a throwaway decoder (the caller's own decoder is
/// untouched, so the same bytes can be fed to it later) and returns the first `Some` that
/// `classify` gives, scanning at most [`PREAMBLE_SCAN_LIMIT`] bytes.
pub fn scan_first_event<T>(
    buffered: &[u8],
    mut classify: impl FnMut(SseEventRef<'_>) -> Option<T>,
) -> Option<T> {
    let window = buffered.get(..PREAMBLE_SCAN_LIMIT).unwrap_or(buffered);
    let mut decoder = SseDecoder::with_limit(PREAMBLE_SCAN_LIMIT);
    let mut found = None;
    decoder.feed(window, |e| match classify(e) {
        Some(v) => {
            found = Some(v);
            ControlFlow::Break(())
        }
        None => ControlFlow::Continue(()),
    });
    found
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

    /// LF, CRLF and CR line ends, comments, multi-line data; an unterminated final event is
    /// discarded as the spec requires.
    #[test]
    fn line_ends_comments_multiline() {
        let input =
            b": hello\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\ndata: x\rdata: y\r\rdata: last";
        let expected = vec![ev(Some("a"), "1\n2"), ev(None, "x\ny")];
        assert_eq!(decode_all(&[input]), expected);
        // Terminated by a line end but no blank line: still incomplete, still discarded.
        assert_eq!(decode_all(&[b"data: a\n\ndata: b\n"]), vec![ev(None, "a")]);
    }

    /// Field parsing details from the spec's own examples.
    #[test]
    fn field_rules() {
        // `data` without colon is an empty data line; two of them give "\n".
        assert_eq!(decode_all(&[b"data\ndata\n\n"]), vec![ev(None, "\n")]);
        // A single `data:` dispatches an empty string.
        assert_eq!(decode_all(&[b"data:\n\n"]), vec![ev(None, "")]);
        // Only one leading space is removed.
        assert_eq!(decode_all(&[b"data:  two\n\n"]), vec![ev(None, " two")]);
        // No data: no event, and the name does not leak into the next event.
        assert_eq!(
            decode_all(&[b"event: x\n\ndata: y\n\n"]),
            vec![ev(None, "y")]
        );
        // Empty event name means the default type.
        assert_eq!(decode_all(&[b"event:\ndata: y\n\n"]), vec![ev(None, "y")]);
        // Unknown fields, retry and field names with different case are ignored.
        assert_eq!(
            decode_all(&[b"retry: 10\nfoo: bar\nData: no\ndata: ok\n\n"]),
            vec![ev(None, "ok")]
        );
        // A colon in the value is kept.
        assert_eq!(decode_all(&[b"data: a:b\n\n"]), vec![ev(None, "a:b")]);
    }

    /// `id` is sticky, can be reset to empty, and is ignored when it contains NUL.
    #[test]
    fn ids() {
        let got =
            decode_all(&[b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n"]);
        let ids: Vec<_> = got.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("1"), Some("1"), Some("1"), None]);
    }

    /// One leading BOM is skipped, even split; a second one or a partial one is content.
    #[test]
    fn bom() {
        let input = b"\xEF\xBB\xBFdata: a\n\n";
        for i in 0..=input.len() {
            assert_eq!(
                decode_all(&[&input[..i], &input[i..]]),
                vec![ev(None, "a")],
                "{i}"
            );
        }
        // A second BOM makes the first field name unknown, so no event.
        assert_eq!(
            decode_all(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"]),
            vec![]
        );
        // A BOM prefix that is not a BOM stays in the line.
        assert_eq!(
            decode_all(&[b"\xEF", b"\xBBXdata: a\n\ndata: b\n\n"]),
            vec![ev(None, "b")]
        );
    }

    /// Invalid UTF-8 is replaced, not fatal; split characters are reassembled.
    #[test]
    fn utf8() {
        assert_eq!(
            decode_all(&[b"data: a\xFFb\n\n"]),
            vec![ev(None, "a\u{FFFD}b")]
        );
        let input = "data: h\u{e9}\u{1F600}\n\n".as_bytes();
        for i in 0..=input.len() {
            assert_eq!(
                decode_all(&[&input[..i], &input[i..]]),
                vec![ev(None, "h\u{e9}\u{1F600}")]
            );
        }
    }

    #[test]
    fn last_events_are_the_tail() {
        let out = b"data: 1\n\ndata: 2\n\ndata: 3\n\n";
        assert_eq!(last_events(out, 1), b"data: 3\n\n");
        assert_eq!(last_events(out, 2), b"data: 2\n\ndata: 3\n\n");
        assert_eq!(last_events(out, 3), &out[..]);
        assert_eq!(last_events(out, 9), &out[..]);
        assert_eq!(last_events(b"", 2), b"");
        assert_eq!(last_events(b"data: x\n\n", 1), b"data: x\n\n");
    }

    /// Every split point of a stream gives the same events as the unsplit stream.
    #[test]
    fn every_split_point() {
        let input = "\u{FEFF}: c\r\nevent: message_start\r\ndata: {\"a\":\"h\u{e9}llo \u{1F600}\"}\r\n\r\n: long comment\rdata: b\r\rdata\n\n"
            .as_bytes();
        let whole = decode_all(&[input]);
        assert_eq!(whole.len(), 3);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = decode_all(&[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_all(&bytes), whole);
    }

    /// An event larger than the limit stops the decoder instead of growing without bound.
    #[test]
    fn bounded_memory() {
        let mut d = SseDecoder::with_limit(8);
        d.push(b"data: 0123456789");
        assert_eq!(d.error(), Some(&SseError::EventTooLarge { limit: 8 }));
        d.push(b"\n\n");
        assert_eq!(d.next_event(), None);
        // Complete lines in one chunk are checked too.
        let mut d = SseDecoder::with_limit(8);
        d.push(b"data: 0123\ndata: 45678\n\n");
        assert!(d.error().is_some());
        assert_eq!(d.next_event(), None);
        // Comments are never held, however long.
        let mut d = SseDecoder::with_limit(8);
        d.push(b": a very long comment");
        d.push(b" goes on and on");
        d.push(b"\ndata: ok\n\n");
        assert_eq!(d.error(), None);
        assert_eq!(d.next_event(), Some(ev(None, "ok")));
    }

    /// Buffers grown by one big event are released; small events reuse them.
    #[test]
    fn buffers_released_and_reused() {
        let mut d = SseDecoder::default();
        let big = format!("data: {}\n\n", "x".repeat(1024 * 1024));
        let mut n = 0;
        d.feed(big.as_bytes(), |_| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(n, 1);
        assert!(
            d.buffered_capacity() <= RETAINED_CAPACITY,
            "{}",
            d.buffered_capacity()
        );
        for _ in 0..10_000 {
            d.feed(b"event: e\ndata: {\"x\":", |_| ControlFlow::Continue(()));
            d.feed(b"1}\n\n", |_| {
                n += 1;
                ControlFlow::Continue(())
            });
        }
        assert_eq!(n, 10_001);
        assert!(d.buffered_capacity() < 256, "{}", d.buffered_capacity());
    }

    /// `Break` stops the decoder for good.
    #[test]
    fn break_stops() {
        let mut d = SseDecoder::default();
        let mut seen = Vec::new();
        d.feed(b"data: 1\n\ndata: 2\n\n", |e| {
            seen.push(e.data.to_string());
            ControlFlow::Break(())
        });
        d.feed(b"data: 3\n\n", |e| {
            seen.push(e.data.to_string());
            ControlFlow::Continue(())
        });
        assert_eq!(seen, vec!["1"]);
    }

    /// The preamble scan finds the first classified event and leaves no state behind.
    #[test]
    fn scan_first() {
        let input = b": keepalive\n\nevent: ping\ndata: {}\n\ndata: two\n\n";
        let got = scan_first_event(input, |e| {
            (e.event != Some("ping")).then(|| e.data.to_string())
        });
        assert_eq!(got.as_deref(), Some("two"));
        assert_eq!(scan_first_event(b"data: x", |_| Some(())), None);
    }

    /// The word-wise line-end scan agrees with a plain scan at every position and length.
    #[test]
    fn line_end_scan() {
        let mut bytes: Vec<u8> = (0u8..=255).collect();
        bytes.extend_from_slice(b"abcdefghijklmnopq\r\n\x0b\x0c\x8a\x8d");
        for start in 0..bytes.len() {
            for end in start..=bytes.len().min(start + 40) {
                let s = &bytes[start..end];
                let plain = s.iter().position(|&b| b == b'\n' || b == b'\r');
                assert_eq!(find_line_end(s), plain, "{start}..{end}");
            }
        }
        for n in 0..40 {
            let mut s = vec![b'x'; n];
            assert_eq!(find_line_end(&s), None);
            s.push(b'\r');
            s.push(b'\n');
            assert_eq!(find_line_end(&s), Some(n));
        }
    }

    /// What `write_event` writes decodes to the same event.
    #[test]
    fn write_roundtrip() {
        let mut out = Vec::new();
        write_event(&mut out, Some("x"), "a\nb");
        assert_eq!(decode_all(&[&out]), vec![ev(Some("x"), "a\nb")]);
    }
}
