//! Anthropic Messages response and errors → OpenAI chat completion and error envelope.

use super::schema::AnthropicUsage;
use crate::error::GatewayError;
use crate::provider::TranslatedResponse;
use crate::usage::Usage;

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`; shared by the JSON and the
/// stream translation so both agree.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Normalises Anthropic usage to OpenAI's meaning: `prompt_tokens` includes cache reads
/// and cache writes, which are also reported apart.
pub fn usage_from_anthropic(u: &AnthropicUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        prompt_tokens: u.input_tokens.unwrap_or(0) + read + write,
        completion_tokens: u.output_tokens.unwrap_or(0),
        cache_read_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

/// Translates a complete Anthropic answer (success or error).
pub fn translate_response(
    _upstream_status: u16,
    _status: u16,
    _body: &[u8],
    _now_unix_secs: u64,
) -> TranslatedResponse {
    TranslatedResponse::error(&GatewayError::internal(
        "anthropic translation is not implemented yet",
    ))
}
