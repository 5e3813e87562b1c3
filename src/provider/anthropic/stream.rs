//! Anthropic stream events → OpenAI `chat.completion.chunk` events, incrementally.

use crate::usage::Usage;

/// Per-attempt stream translation state.
#[derive(Debug)]
pub struct AnthropicStream {
    client_wants_usage: bool,
    now_unix_secs: u64,
}

impl AnthropicStream {
    /// A translator for one stream.
    pub fn new(client_wants_usage: bool, now_unix_secs: u64) -> Self {
        AnthropicStream {
            client_wants_usage,
            now_unix_secs,
        }
    }

    /// Translates the next piece of the stream into `out`.
    pub fn push(&mut self, _chunk: &[u8], _end_of_stream: bool, _out: &mut Vec<u8>) {
        let _ = (self.client_wants_usage, self.now_unix_secs);
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
