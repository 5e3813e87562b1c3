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

use super::{join_path, ClientRequest, Target, TranslatedResponse, Translator, UpstreamRequest};
use crate::error::GatewayError;

/// Translator for Cohere deployments.
#[derive(Debug, Default)]
pub struct CohereTranslator {
    stream: Option<stream::CohereStream>,
    now_unix_secs: u64,
    model: String,
}

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

impl Translator for CohereTranslator {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let chat = request.chat_request()?;
        let translated = request::translate_chat(chat, target)?;
        self.now_unix_secs = target.now_unix_secs;
        self.model = target.upstream_model.to_string();
        self.stream = translated.stream.then(|| {
            stream::CohereStream::new(
                translated.client_wants_usage,
                target.now_unix_secs,
                target.upstream_model,
            )
        });
        let headers = target
            .api_key
            .map(|key| vec![("authorization", format!("Bearer {key}"))])
            .unwrap_or_default();
        Ok(UpstreamRequest {
            path: endpoint_path(target.base_path),
            headers,
            body: translated.body,
            dropped: translated.dropped,
        })
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        response::translate_response(
            upstream_status,
            status,
            body,
            self.now_unix_secs,
            &self.model,
        )
    }

    super::native::stream_methods!(stream);
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
