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

use super::common::TranslatedRequest;
use super::native::{NativeApi, NativeTranslator};
use super::placement::push_encoded_segment;
use super::{join_path, Target, TranslatedResponse};
use crate::error::GatewayError;
use crate::openai::ChatRequest;

/// Gemini's `generateContent` API.
#[derive(Debug)]
pub struct Gemini;

/// Translator for Gemini deployments.
pub type GeminiTranslator = NativeTranslator<Gemini>;

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
    push_encoded_segment(&mut out, segment, b"-._~");
    out
}

impl NativeApi for Gemini {
    type Stream = stream::GeminiStream;
    const KIND: super::ProviderKind = super::ProviderKind::Gemini;

    fn translate_chat(
        chat: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<TranslatedRequest, GatewayError> {
        request::translate_chat(chat, target)
    }

    fn open_stream(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self::Stream {
        stream::GeminiStream::new(client_wants_usage, now_unix_secs, model)
    }

    fn path(base_path: &str, model: &str, stream: bool) -> String {
        endpoint_path(base_path, model, stream)
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
