//! Anthropic Messages API wire types (request, response, errors).
//!
//! Stream event types live in `events`.

use serde::{Deserialize, Serialize};

/// Anthropic `usage` object (response and `message_start`/`message_delta` events).
///
/// `input_tokens` excludes cache reads and writes, unlike OpenAI's `prompt_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct AnthropicUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens (thinking included).
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}
