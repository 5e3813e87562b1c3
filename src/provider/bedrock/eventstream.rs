//! AWS event-stream framing (`application/vnd.amazon.eventstream`), decoded incrementally.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html>
//! and <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html>
//! (the same framing carries Bedrock's ConverseStream). A message is
//!
//! ```text
//! total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (of the 8 bytes before)
//! headers | payload | message CRC32 (of everything before it)
//! ```
//!
//! and a header is `name length (u8) | name | type (u8) | value`. Bytes may arrive split
//! anywhere; only an unfinished message is held. A bad checksum, an impossible length or a
//! malformed header stops the decoder with an error (never a panic): after a corrupt
//! prelude nothing that follows can be trusted to be aligned.

/// The largest message accepted (AWS's own limit for one event-stream message).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Prelude (12 bytes) plus the message CRC (4 bytes).
const FRAME_OVERHEAD: usize = 16;

/// Why the decoder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The prelude's CRC32 does not match its lengths.
    PreludeChecksum,
    /// The message's CRC32 does not match its bytes.
    MessageChecksum,
    /// A length the framing cannot have (shorter than the frame, headers past the end, or
    /// past [`MAX_MESSAGE_BYTES`]).
    Length,
    /// A header that runs past its section or has an unknown value type.
    Header,
}

impl FrameError {
    /// What went wrong, for the client's error event.
    pub fn describe(self) -> &'static str {
        match self {
            FrameError::PreludeChecksum => "an event-stream frame with a bad prelude checksum",
            FrameError::MessageChecksum => "an event-stream frame with a bad message checksum",
            FrameError::Length => "an event-stream frame with an impossible length",
            FrameError::Header => "an event-stream frame with a malformed header",
        }
    }
}

/// The headers the gateway reads, borrowed from the frame; the others are skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// `:message-type`: `event`, `exception` or `error`.
    pub message_type: &'a str,
    /// `:event-type` (`messageStart`, `contentBlockDelta`, ...).
    pub event_type: &'a str,
    /// `:exception-type` (`throttlingException`, ...).
    pub exception_type: &'a str,
    /// `:error-code` of an `error` message.
    pub error_code: &'a str,
    /// `:error-message` of an `error` message.
    pub error_message: &'a str,
    /// The payload (JSON for Bedrock).
    pub payload: &'a [u8],
}

/// Incremental decoder: feed bytes, get whole messages.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as messages.
    start: usize,
    error: Option<FrameError>,
}

impl EventStreamDecoder {
    /// Appends bytes and calls `on_message` for every message they complete, stopping at
    /// the first error (kept in [`error`](Self::error)) or when `on_message` says so.
    pub fn feed<F>(&mut self, bytes: &[u8], mut on_message: F)
    where
        F: FnMut(Message<'_>) -> std::ops::ControlFlow<()>,
    {
        if self.error.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let rest = self.buf.get(self.start..).unwrap_or_default();
            match next_frame(rest) {
                Ok(None) => break,
                Ok(Some((len, message))) => {
                    self.start += len;
                    if on_message(message).is_break() {
                        break;
                    }
                }
                Err(e) => {
                    self.error = Some(e);
                    self.buf = Vec::new();
                    self.start = 0;
                    return;
                }
            }
        }
        // Keep only the unfinished message; release a buffer grown by a large one.
        self.buf.drain(..self.start.min(self.buf.len()));
        self.start = 0;
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    /// Why the decoder stopped, if it did.
    pub fn error(&self) -> Option<FrameError> {
        self.error
    }

    /// True when bytes of an unfinished message are held.
    pub fn has_partial(&self) -> bool {
        self.buf.len() > self.start
    }

    /// Bytes reserved for the unfinished message.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The first whole message of `bytes` and its length; `None` when it is not complete yet.
/// The prelude is checked as soon as its 12 bytes are there, so a corrupt length never
/// makes the decoder wait for bytes that will not come.
fn next_frame(bytes: &[u8]) -> Result<Option<(usize, Message<'_>)>, FrameError> {
    let (Some(total), Some(headers_len), Some(prelude_crc)) =
        (be32(bytes, 0), be32(bytes, 4), be32(bytes, 8))
    else {
        return Ok(None);
    };
    if crc32(bytes.get(..8).unwrap_or_default()) != prelude_crc {
        return Err(FrameError::PreludeChecksum);
    }
    let (total, headers_len) = (total as usize, headers_len as usize);
    if !(FRAME_OVERHEAD..=MAX_MESSAGE_BYTES).contains(&total)
        || headers_len > total - FRAME_OVERHEAD
    {
        return Err(FrameError::Length);
    }
    let Some(frame) = bytes.get(..total) else {
        return Ok(None);
    };
    let body_end = total - 4;
    let (Some(body), Some(crc)) = (frame.get(..body_end), be32(frame, body_end)) else {
        return Err(FrameError::Length);
    };
    if crc32(body) != crc {
        return Err(FrameError::MessageChecksum);
    }
    let headers = frame.get(12..12 + headers_len).ok_or(FrameError::Length)?;
    let payload = frame
        .get(12 + headers_len..body_end)
        .ok_or(FrameError::Length)?;
    let mut message = parse_headers(headers)?;
    message.payload = payload;
    Ok(Some((total, message)))
}

fn parse_headers(mut h: &[u8]) -> Result<Message<'_>, FrameError> {
    let mut m = Message::default();
    while let Some((&name_len, rest)) = h.split_first() {
        let (name, rest) = rest
            .split_at_checked(name_len as usize)
            .ok_or(FrameError::Header)?;
        let (&kind, rest) = rest.split_first().ok_or(FrameError::Header)?;
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(FrameError::Header),
        };
        let (value, rest) = match fixed {
            Some(n) => rest.split_at_checked(n).ok_or(FrameError::Header)?,
            None => {
                let (len, rest) = rest.split_at_checked(2).ok_or(FrameError::Header)?;
                let len =
                    u16::from_be_bytes(len.try_into().map_err(|_| FrameError::Header)?) as usize;
                rest.split_at_checked(len).ok_or(FrameError::Header)?
            }
        };
        if kind == 7 {
            let text = std::str::from_utf8(value).unwrap_or_default();
            match name {
                b":message-type" => m.message_type = text,
                b":event-type" => m.event_type = text,
                b":exception-type" => m.exception_type = text,
                b":error-code" => m.error_code = text,
                b":error-message" => m.error_message = text,
                _ => {}
            }
        }
        h = rest;
    }
    Ok(m)
}

/// CRC32 (IEEE 802.3, the zlib polynomial) table, built at compile time (the index is
/// below 256 by the loop's bound).
#[allow(clippy::indexing_slicing)]
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC32 of `bytes`, as the event-stream framing computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        let i = ((c ^ b as u32) & 0xFF) as usize;
        c = CRC_TABLE.get(i).copied().unwrap_or_default() ^ (c >> 8);
    }
    !c
}

/// Encodes one message with string headers (fixtures, tests and the fuzzer's seeds).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (FRAME_OVERHEAD + h.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` message of `event_type` carrying a JSON payload, as Bedrock sends them.
pub fn encode_event(event_type: &str, payload: &str) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    fn decode_all(bytes: &[u8], piece: usize) -> (Vec<(String, Vec<u8>)>, Option<FrameError>) {
        let mut d = EventStreamDecoder::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            d.feed(chunk, |m| {
                out.push((m.event_type.to_string(), m.payload.to_vec()));
                ControlFlow::Continue(())
            });
        }
        (out, d.error())
    }

    /// The check value of the IEEE CRC32.
    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// Whole messages come out whatever the pieces; nothing is held afterwards.
    #[test]
    fn split_anywhere() {
        let mut bytes = encode_event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(encode_event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ));
        for piece in 1..bytes.len() {
            let (out, err) = decode_all(&bytes, piece);
            assert_eq!(err, None);
            assert_eq!(out.len(), 2, "piece {piece}");
            assert_eq!(out[0].0, "messageStart");
            assert_eq!(
                out[1].1,
                br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#
            );
        }
    }

    /// Every single-bit flip is caught by a checksum or a length check.
    #[test]
    fn corruption_is_an_error() {
        let good = encode_event("messageStop", r#"{"stopReason":"end_turn"}"#);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            let (out, err) = decode_all(&bad, bad.len());
            assert!(out.is_empty(), "byte {i}");
            // A flipped length may leave the decoder waiting for more; never a message.
            if i >= 8 {
                assert!(err.is_some(), "byte {i}");
            }
        }
    }

    /// Lengths the framing cannot have.
    #[test]
    fn impossible_lengths() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&8u32.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_all(&prelude, 12).1, Some(FrameError::Length));
    }
}
