//! Cohere v2 Chat API: `POST /v2/chat`, streamed with `"stream": true`.
//!
//! Reference: <https://docs.cohere.com/reference/chat> and
//! <https://docs.cohere.com/reference/chat-stream>. Wire types live in `schema`, the
//! OpenAI → Cohere request mapping in `request`, the answer mapping (tool plans,
//! citations, billed usage, failed generations) in `response`, and the incremental stream
//! translation in `stream`. The key travels as `Authorization: Bearer`.

pub mod request;
pub mod response;
pub mod schema;
pub mod stream;

use super::common::TranslatedRequest;
use super::native::{NativeApi, NativeTranslator};
use super::{join_path, Target, TranslatedResponse};
use crate::error::GatewayError;
use crate::openai::ChatRequest;

/// Cohere's v2 Chat API.
#[derive(Debug)]
pub struct Cohere;

/// Translator for Cohere deployments.
pub type CohereTranslator = NativeTranslator<Cohere>;

/// The chat endpoint under the deployment's base path; a base that already ends with
/// `/v2` is used as is.
pub fn endpoint_path(base_path: &str) -> String {
    let base = base_path.trim_end_matches('/');
    if base.ends_with("/v2") {
        join_path(base, "/chat")
    } else {
        join_path(base, "/v2/chat")
    }
}

impl NativeApi for Cohere {
    type Stream = stream::CohereStream;
    const KIND: super::ProviderKind = super::ProviderKind::Cohere;

    fn translate_chat(
        chat: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<TranslatedRequest, GatewayError> {
        request::translate_chat(chat, target)
    }

    fn open_stream(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self::Stream {
        stream::CohereStream::new(client_wants_usage, now_unix_secs, model)
    }

    fn path(base_path: &str, _model: &str, _stream: bool) -> String {
        endpoint_path(base_path)
    }

    fn translate_response(
        upstream_status: u16,
        status: u16,
        body: &[u8],
        now_unix_secs: u64,
        model: &str,
    ) -> TranslatedResponse {
        response::translate_response(upstream_status, status, body, now_unix_secs, model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/v2/chat` added once, whatever the base.
    #[test]
    fn paths() {
        assert_eq!(endpoint_path(""), "/v2/chat");
        assert_eq!(endpoint_path("/"), "/v2/chat");
        assert_eq!(endpoint_path("/v2"), "/v2/chat");
        assert_eq!(endpoint_path("/proxy/v2/"), "/proxy/v2/chat");
    }
}
