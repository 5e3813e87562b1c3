//! Token usage as providers report it, normalised to OpenAI's meaning.

use crate::openai::{CompletionTokensDetails, PromptTokensDetails, UsageBody};

/// Token counts of one answer.
///
/// `prompt_tokens` follows OpenAI: it *includes* tokens read from and written to the prompt
/// cache, which are also reported apart so that cost can price them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// All output tokens, reasoning included.
    pub completion_tokens: u64,
    /// Input tokens served from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those kept for an hour (Anthropic's 1-hour cache), which
    /// cost more than the default 5-minute writes.
    pub cache_write_1h_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input plus output.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// The OpenAI `usage` object.
    pub fn to_body(&self) -> UsageBody {
        UsageBody {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens(),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: self.cache_read_tokens,
                cache_creation_tokens: (self.cache_write_tokens > 0)
                    .then_some(self.cache_write_tokens),
            }),
            completion_tokens_details: (self.reasoning_tokens > 0).then_some(
                CompletionTokensDetails {
                    reasoning_tokens: self.reasoning_tokens,
                },
            ),
        }
    }

    /// Reads an OpenAI `usage` object (from an OpenAI-compatible provider).
    pub fn from_body(body: &UsageBody) -> Usage {
        let details = body.prompt_tokens_details.as_ref();
        Usage {
            prompt_tokens: body.prompt_tokens,
            completion_tokens: body.completion_tokens,
            cache_read_tokens: details.map(|d| d.cached_tokens).unwrap_or(0),
            cache_write_tokens: details.and_then(|d| d.cache_creation_tokens).unwrap_or(0),
            cache_write_1h_tokens: 0,
            reasoning_tokens: body
                .completion_tokens_details
                .as_ref()
                .map(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}
