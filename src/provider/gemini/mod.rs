//! Google Gemini API (AI Studio): `POST /v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams.
//!
//! Reference: <https://ai.google.dev/api/generate-content>. Wire types live in `schema`,
//! the OpenAI → Gemini request mapping in `request`, the answer mapping (and the decisions
//! it takes: tool-call ids, thought signatures, blocked prompts, failed generations) in
//! `response`, and the incremental stream translation in `stream`. The key travels in
//! `x-goog-api-key`, never in the URL, so it cannot end up in access logs.

pub mod request;
pub mod response;
pub mod schema;
pub mod stream;

use super::{join_path, ClientRequest, Target, TranslatedResponse, Translator, UpstreamRequest};
use crate::error::GatewayError;

/// Translator for Gemini deployments.
#[derive(Debug, Default)]
pub struct GeminiTranslator {
    stream: Option<stream::GeminiStream>,
    now_unix_secs: u64,
    model: String,
}

/// The endpoint for `model` under the deployment's base path. A base path that already
/// ends with an API version (`.../v1beta`) is used as is.
pub fn endpoint_path(base_path: &str, model: &str, stream: bool) -> String {
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    method_path(base_path, model, method)
}

/// The path of `model`'s `method` (`generateContent`, `batchEmbedContents`, ...).
pub fn method_path(base_path: &str, model: &str, method: &str) -> String {
    let base = base_path.trim_end_matches('/');
    let versioned = base.ends_with("/v1beta") || base.ends_with("/v1");
    // Tuned models live under their own collection.
    let (collection, name) = match model.strip_prefix("tunedModels/") {
        Some(name) => ("tunedModels", name),
        None => ("models", model.strip_prefix("models/").unwrap_or(model)),
    };
    let endpoint = format!(
        "{}/{collection}/{}:{method}",
        if versioned { "" } else { "/v1beta" },
        encode_segment(name)
    );
    join_path(base, &endpoint)
}

/// Percent-encodes what may not stand in a path segment (model names are plain today).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl GeminiTranslator {
    /// Remembers what the answer needs and builds the attempt's request.
    fn prepare(
        &mut self,
        translated: request::TranslatedRequest,
        target: &Target<'_>,
    ) -> UpstreamRequest {
        self.now_unix_secs = target.now_unix_secs;
        self.model = target.upstream_model.to_string();
        self.stream = translated.stream.then(|| {
            stream::GeminiStream::new(
                translated.client_wants_usage,
                target.now_unix_secs,
                target.upstream_model,
            )
        });
        let headers = target
            .api_key
            .map(|key| vec![("x-goog-api-key", key.to_string())])
            .unwrap_or_default();
        UpstreamRequest {
            path: endpoint_path(target.base_path, target.upstream_model, translated.stream),
            headers,
            body: translated.body,
            dropped: translated.dropped,
        }
    }
}

impl Translator for GeminiTranslator {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let chat = request.chat_request()?;
        let translated = request::translate_chat(chat, target)?;
        Ok(self.prepare(translated, target))
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

    /// Version prefix added once; `models/` not doubled; tuned models; odd characters encoded.
    #[test]
    fn paths() {
        assert_eq!(
            endpoint_path("", "gemini-2.5-flash", false),
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint_path("/", "models/gemini-2.5-pro", true),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            endpoint_path("/proxy/v1beta", "gemini-2.5-flash", false),
            "/proxy/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint_path("", "tunedModels/my-model", false),
            "/v1beta/tunedModels/my-model:generateContent"
        );
        assert_eq!(
            endpoint_path("", "odd/a b", false),
            "/v1beta/models/odd%2Fa%20b:generateContent"
        );
    }
}
