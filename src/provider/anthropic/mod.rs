//! Anthropic Messages API (`POST /v1/messages`).
//!
//! Reference: <https://docs.anthropic.com/en/api/messages>. Wire types live in `schema`,
//! the OpenAI → Anthropic request mapping in `request`, the answer mapping in `response`
//! and the incremental stream translation in `stream`.

pub mod events;
pub mod request;
pub mod response;
pub mod schema;
pub mod stream;

use super::{join_path, ClientRequest, Target, TranslatedResponse, Translator, UpstreamRequest};
use crate::error::GatewayError;

/// Translator for Anthropic deployments.
#[derive(Debug, Default)]
pub struct AnthropicTranslator {
    stream: Option<stream::AnthropicStream>,
    now_unix_secs: u64,
    json_response_tool: Option<String>,
    /// The API version sent in the body, with no `model` field (Vertex AI).
    body_version: Option<&'static str>,
}

impl AnthropicTranslator {
    /// A translator whose bodies carry `anthropic_version` and leave the model to the path
    /// (Vertex AI's `rawPredict`).
    pub fn with_body_version(version: &'static str) -> Self {
        AnthropicTranslator {
            body_version: Some(version),
            ..Self::default()
        }
    }

    /// Remembers what the answer needs and builds the attempt's request.
    fn prepare(
        &mut self,
        translated: request::TranslatedRequest,
        target: &Target<'_>,
    ) -> UpstreamRequest {
        self.now_unix_secs = target.now_unix_secs;
        self.json_response_tool = translated.json_response_tool;
        if translated.stream {
            self.stream = Some(stream::AnthropicStream::new(
                translated.client_wants_usage,
                target.now_unix_secs,
            ));
        }
        let mut headers = vec![(
            "anthropic-version",
            target.options.anthropic_version.clone(),
        )];
        if let Some(key) = target.api_key {
            headers.push(("x-api-key", key.to_string()));
        }
        UpstreamRequest {
            path: join_path(target.base_path, "/v1/messages"),
            headers,
            body: translated.body,
            dropped: translated.dropped,
        }
    }
}

impl Translator for AnthropicTranslator {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let chat = request.chat_request()?;
        let translated = request::translate_chat_as(chat, target, self.body_version)?;
        Ok(self.prepare(translated, target))
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        response::translate_response_with(
            upstream_status,
            status,
            body,
            self.now_unix_secs,
            self.json_response_tool.as_deref(),
        )
    }

    super::native::stream_methods!(stream);
}
