//! Google Vertex AI: Gemini and Claude through a Google Cloud project, with OAuth2 access
//! tokens instead of API keys.
//!
//! The bodies are the publishers' own, so the Gemini and Anthropic translators do the
//! work; this module only places them:
//!
//! * Gemini: `POST {base}/publishers/google/models/{model}:generateContent`, and
//!   `:streamGenerateContent?alt=sse` for streams
//!   (<https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference>);
//! * Claude: `POST {base}/publishers/anthropic/models/{model}:rawPredict`, and
//!   `:streamRawPredict` for streams, with `anthropic_version: vertex-2023-10-16` in the
//!   body and no `model` field
//!   (<https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude>).
//!
//! `{base}` is the deployment's base path, which the config ends with
//! `/v1/projects/{vertex_project}/locations/{vertex_location}`. The credential is
//! `authorization: Bearer <access token>`, the token the shell keeps fresh (`token`). An
//! attempt made while no token can be had is answered 503 whatever Vertex says, so Envoy
//! falls back to the next deployment.

pub mod token;

use super::anthropic::AnthropicTranslator;
use super::gemini::GeminiTranslator;
use super::placement::{inner_request, push_encoded_segment};
use super::{
    join_path, ClientRequest, StreamPreamble, Target, TranslatedResponse, Translator,
    UpstreamRequest,
};
use crate::error::{ErrorKind, GatewayError};
use crate::usage::Usage;

/// The `anthropic_version` Claude on Vertex AI takes, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The default `vertex_location` (LiteLLM's).
pub const DEFAULT_LOCATION: &str = "us-central1";

/// The API host of a Vertex AI location: `global` has no regional prefix.
pub fn host_for(location: &str) -> String {
    if location == "global" {
        "aiplatform.googleapis.com".to_string()
    } else {
        format!("{location}-aiplatform.googleapis.com")
    }
}

/// Whether a `vertex_ai/` model is Claude, published by Anthropic.
pub fn is_anthropic_model(model: &str) -> bool {
    model.starts_with("claude-")
}

/// `{base}/publishers/{publisher}/models/{model}:{method}`, the model percent-encoded.
pub fn model_path(base_path: &str, publisher: &str, model: &str, method: &str) -> String {
    let mut path = join_path(base_path, "/publishers/");
    path.push_str(publisher);
    path.push_str("/models/");
    // Model versions (`claude-sonnet-4-5@20250929`) keep their `@`.
    push_encoded_segment(&mut path, model, b"-._~@");
    path.push(':');
    path.push_str(method);
    path
}

/// Translator for Vertex AI deployments of either publisher.
pub struct VertexTranslator {
    inner: Box<dyn Translator>,
    publisher: &'static str,
    /// The attempt had no access token: whatever the answer, it is a 503.
    no_token: bool,
}

impl VertexTranslator {
    /// Gemini on Vertex AI.
    pub fn gemini() -> Self {
        VertexTranslator {
            inner: Box::new(GeminiTranslator::default()),
            publisher: "google",
            no_token: false,
        }
    }

    /// Claude on Vertex AI.
    pub fn anthropic() -> Self {
        VertexTranslator {
            inner: Box::new(AnthropicTranslator::with_body_version(ANTHROPIC_VERSION)),
            publisher: "anthropic",
            no_token: false,
        }
    }

    /// Claude on Vertex AI around another Anthropic-bodied translator (the Messages API's
    /// passthrough), which sends no credential of its own.
    pub fn claude(inner: Box<dyn Translator>) -> Self {
        VertexTranslator {
            inner,
            publisher: "anthropic",
            no_token: false,
        }
    }

    /// The publisher's method path for `model`.
    fn path(&self, base_path: &str, model: &str, stream: bool) -> String {
        let method = match (self.publisher, stream) {
            ("anthropic", false) => "rawPredict",
            ("anthropic", true) => "streamRawPredict",
            (_, false) => "generateContent",
            (_, true) => "streamGenerateContent?alt=sse",
        };
        model_path(base_path, self.publisher, model, method)
    }

    /// The answer to an attempt made without an access token.
    pub fn no_token_error() -> GatewayError {
        GatewayError::new(
            ErrorKind::Overloaded,
            "The gateway has no Google Cloud access token for Vertex AI yet (it fetches one from general_settings.gcp_token_url; the Envoy log says why it failed).",
        )
        .with_status(503)
        .with_code("gcp_token_unavailable")
    }
}

impl Translator for VertexTranslator {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut up = inner_request(self.inner.as_mut(), request, target)?;
        up.path = self.path(
            target.base_path,
            target.upstream_model,
            self.inner.is_stream(),
        );
        self.no_token = target.api_key.is_none();
        if let Some(token) = target.api_key {
            up.headers
                .push(("authorization", format!("Bearer {token}")));
        }
        Ok(up)
    }

    fn is_stream(&self) -> bool {
        self.inner.is_stream()
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        if self.no_token {
            return 503;
        }
        self.inner.response_status(upstream_status)
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        if self.no_token {
            return TranslatedResponse::error(&Self::no_token_error());
        }
        self.inner.response(upstream_status, body)
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        self.inner.stream(chunk, end_of_stream, out);
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.inner.stream_usage()
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.inner.stream_buffered_bytes()
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        if self.no_token {
            return StreamPreamble::Fail(TranslatedResponse::error(&Self::no_token_error()));
        }
        self.inner.stream_preamble(buffered, end_of_stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages_api::InboundApi;
    use crate::provider::ProviderOptions;
    use crate::provider::RequestFromBody;

    const BASE: &str = "/v1/projects/p-1/locations/us-east5";

    fn target<'a>(model: &'a str, token: Option<&'a str>, o: &'a ProviderOptions) -> Target<'a> {
        Target {
            upstream_model: model,
            base_path: BASE,
            api_key: token,
            now_unix_secs: 1,
            options: o,
        }
    }

    #[test]
    fn publishers_paths_and_token() {
        let o = ProviderOptions::default();
        let req = br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#;
        let stream = br#"{"model":"a","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
        let mut t = VertexTranslator::gemini();
        let up = t
            .request_from_body(
                InboundApi::Chat,
                req,
                &target("gemini-2.5-flash", Some("ya29.t"), &o),
            )
            .unwrap();
        assert_eq!(
            up.path,
            "/v1/projects/p-1/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(up.headers, [("authorization", "Bearer ya29.t".to_string())]);
        let up = t
            .request_from_body(
                InboundApi::Chat,
                stream,
                &target("gemini-2.5-flash", Some("ya29.t"), &o),
            )
            .unwrap();
        assert!(
            up.path.ends_with(":streamGenerateContent?alt=sse"),
            "{}",
            up.path
        );

        let mut t = VertexTranslator::anthropic();
        let m = "claude-sonnet-4-5@20250929";
        let up = t
            .request_from_body(InboundApi::Chat, req, &target(m, Some("ya29.t"), &o))
            .unwrap();
        assert_eq!(
            up.path,
            format!("{BASE}/publishers/anthropic/models/{m}:rawPredict")
        );
        let body: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["anthropic_version"], ANTHROPIC_VERSION);
        assert!(body.get("model").is_none());
        assert_eq!(up.headers.len(), 1);
        let up = t
            .request_from_body(InboundApi::Chat, stream, &target(m, Some("ya29.t"), &o))
            .unwrap();
        assert!(up.path.ends_with(":streamRawPredict"), "{}", up.path);
    }

    /// Without a token the attempt is a 503 whatever Vertex answers, so Envoy falls back.
    #[test]
    fn no_token_is_a_503() {
        let o = ProviderOptions::default();
        let mut t = VertexTranslator::gemini();
        let req = br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#;
        let up = t
            .request_from_body(InboundApi::Chat, req, &target("gemini-2.5-flash", None, &o))
            .unwrap();
        assert!(up.headers.is_empty());
        assert_eq!(t.response_status(401), 503);
        let r = t.response(401, br#"{"error":{"code":401}}"#);
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("gcp_token_unavailable"));
    }

    /// Vertex AI's own errors are Google-shaped for both publishers: Claude's keep their
    /// status and message.
    #[test]
    fn google_errors_for_claude() {
        let o = ProviderOptions::default();
        let mut t = VertexTranslator::anthropic();
        let req = br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#;
        t.request_from_body(
            InboundApi::Chat,
            req,
            &target("claude-opus-4-1", Some("ya29.t"), &o),
        )
        .unwrap();
        let r = t.response(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded for online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(r.status, 429);
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains("Quota exceeded"), "{text}");
    }

    #[test]
    fn odd_model_names_are_encoded() {
        let t = VertexTranslator::gemini();
        assert_eq!(
            t.path("", "a b/c", false),
            "/publishers/google/models/a%20b%2Fc:generateContent"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(host_for("global"), "aiplatform.googleapis.com");
        assert_eq!(
            host_for("europe-west4"),
            "europe-west4-aiplatform.googleapis.com"
        );
        assert!(is_anthropic_model("claude-opus-4-1@20250805"));
        assert!(!is_anthropic_model("gemini-2.5-pro"));
    }
}
