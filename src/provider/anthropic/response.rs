//! Anthropic Messages response and errors → OpenAI chat completion and error envelope.

use crate::error::GatewayError;
use crate::provider::TranslatedResponse;

/// Translates a complete Anthropic answer (success or error).
pub fn translate_response(_upstream_status: u16, _status: u16, _body: &[u8], _now_unix_secs: u64) -> TranslatedResponse {
    TranslatedResponse::error(&GatewayError::internal("anthropic translation is not implemented yet"))
}
