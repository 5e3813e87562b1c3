//! OpenAI chat request → Anthropic Messages request.

use crate::error::GatewayError;
use crate::provider::Target;

/// The translated request and what the response side must remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedRequest {
    /// Anthropic JSON body.
    pub body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
}

/// Translates an OpenAI chat request body for Anthropic.
pub fn translate_request(
    _body: &[u8],
    _target: &Target<'_>,
) -> Result<TranslatedRequest, GatewayError> {
    Err(GatewayError::internal(
        "anthropic translation is not implemented yet",
    ))
}
