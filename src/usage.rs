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
    /// What the provider says it charged for the answer, in micro-USD, where its
    /// registry entry reads one (OpenRouter's `usage.cost`): the answer's cost when the
    /// deployment has no price.
    pub reported_cost_micro_usd: Option<u64>,
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
            prompt_cache_hit_tokens: None,
        }
    }

    /// Reads an OpenAI `usage` object (from an OpenAI-compatible provider).
    pub fn from_body(body: &UsageBody) -> Usage {
        let details = body.prompt_tokens_details.as_ref();
        Usage {
            prompt_tokens: body.prompt_tokens,
            completion_tokens: body.completion_tokens,
            cache_read_tokens: details
                .map(|d| d.cached_tokens)
                .or(body.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: details.and_then(|d| d.cache_creation_tokens).unwrap_or(0),
            cache_write_1h_tokens: 0,
            reported_cost_micro_usd: None,
            reasoning_tokens: body
                .completion_tokens_details
                .as_ref()
                .map(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// The most usage one request can truly cause: a provider reporting more is wrong (or
/// hostile), and its figure must not reach budgets, rate limits or stats.
///
/// Generous on purpose, since only impossible figures should trip it: every byte of the
/// request body may be a token (a tokenizer never makes more tokens than bytes of text,
/// and JSON text is never shorter than the text it holds), each message adds its template,
/// each image, audio or file part up to a million tokens, and the provider's own scaffolding
/// (tool prompts) a fixed allowance. Output is the request's limit per choice (`n`), with
/// room for reasoning a provider may add to it (a thinking budget raised above a small
/// `max_tokens`, or thinking a model does on its own and counts apart); without a limit,
/// a million tokens per choice, more than any model writes in one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBound {
    /// Input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
}

impl UsageBound {
    const MEDIA_PART_TOKENS: u64 = 1 << 20;
    const MESSAGE_TOKENS: u64 = 64;
    const SCAFFOLDING_TOKENS: u64 = 1 << 16;
    const UNLIMITED_OUTPUT_TOKENS: u64 = 1 << 20;
    const REASONING_TOKENS: u64 = 1 << 17;
    const MAX_CHOICES: u64 = 128;
    /// A reported cost above $0.01 per token of the bound is not a price any model has
    /// (the most a price override may say, too).
    const MAX_MICRO_USD_PER_TOKEN: u64 = 10_000;

    /// The bound of `request`, whose body is `body_len` bytes.
    pub fn for_request(request: &crate::openai::ChatRequest, body_len: u64) -> UsageBound {
        let mut media = 0u64;
        for m in &request.messages {
            if let Some(crate::openai::Content::Parts(parts)) = &m.content {
                for p in parts {
                    if p.image_url.is_some() || p.input_audio.is_some() || p.file.is_some() {
                        media += 1;
                    }
                }
            }
        }
        let messages = request.messages.len() as u64;
        let choices = u64::from(request.n.unwrap_or(1).max(1));
        let per_choice = request
            .output_limit()
            .unwrap_or(Self::UNLIMITED_OUTPUT_TOKENS)
            .saturating_add(Self::REASONING_TOKENS);
        UsageBound {
            prompt_tokens: body_len
                .saturating_add(messages.saturating_mul(Self::MESSAGE_TOKENS))
                .saturating_add(media.saturating_mul(Self::MEDIA_PART_TOKENS))
                .saturating_add(Self::SCAFFOLDING_TOKENS),
            output_tokens: per_choice.saturating_mul(choices),
        }
    }

    /// The bound when only the body's length is known (the parsed request was not handed
    /// over): as if it held a message per 8 bytes, a media part per 64 bytes and the most
    /// choices OpenAI allows.
    pub fn for_body(body_len: u64) -> UsageBound {
        UsageBound {
            prompt_tokens: body_len
                .saturating_add((body_len / 8).saturating_mul(Self::MESSAGE_TOKENS))
                .saturating_add((body_len / 64).saturating_mul(Self::MEDIA_PART_TOKENS))
                .saturating_add(Self::SCAFFOLDING_TOKENS),
            output_tokens: (Self::UNLIMITED_OUTPUT_TOKENS + Self::REASONING_TOKENS)
                .saturating_mul(Self::MAX_CHOICES),
        }
    }

    /// Whether every figure of `usage` is within the bound.
    pub fn admits(&self, usage: &Usage) -> bool {
        [
            usage.prompt_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.cache_write_1h_tokens,
        ]
        .iter()
        .all(|&t| t <= self.prompt_tokens)
            && usage.completion_tokens <= self.output_tokens
            && usage.reasoning_tokens <= self.output_tokens
            && usage.reported_cost_micro_usd.is_none_or(|c| {
                c <= self
                    .prompt_tokens
                    .saturating_add(self.output_tokens)
                    .saturating_mul(Self::MAX_MICRO_USD_PER_TOKEN)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> (crate::openai::ChatRequest, u64) {
        (
            crate::request::parse_chat_request(body.as_bytes()).unwrap(),
            body.len() as u64,
        )
    }

    #[test]
    fn impossible_usage_is_out_of_bounds() {
        let (r, len) = request(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"n":2}"#,
        );
        let bound = UsageBound::for_request(&r, len);
        assert_eq!(
            bound.output_tokens,
            2 * (100 + UsageBound::REASONING_TOKENS)
        );
        let ok = Usage {
            prompt_tokens: 12,
            completion_tokens: 200,
            ..Usage::default()
        };
        assert!(bound.admits(&ok));
        assert!(bound.admits(&Usage {
            reported_cost_micro_usd: Some(12_000),
            ..ok
        }));
        for bad in [
            Usage {
                completion_tokens: bound.output_tokens + 1,
                ..ok
            },
            Usage {
                prompt_tokens: u64::MAX,
                ..ok
            },
            Usage {
                cache_read_tokens: 1 << 40,
                ..ok
            },
            Usage {
                reasoning_tokens: u64::MAX,
                ..ok
            },
            Usage {
                reported_cost_micro_usd: Some(u64::MAX),
                ..ok
            },
        ] {
            assert!(!bound.admits(&bad), "{bad:?}");
        }
    }

    #[test]
    fn images_and_missing_limits_leave_room() {
        let (r, len) = request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        );
        let bound = UsageBound::for_request(&r, len);
        assert!(bound.prompt_tokens > UsageBound::MEDIA_PART_TOKENS);
        assert!(bound.output_tokens >= UsageBound::UNLIMITED_OUTPUT_TOKENS);
        assert!(UsageBound::for_body(len).prompt_tokens >= bound.prompt_tokens);
    }
}
