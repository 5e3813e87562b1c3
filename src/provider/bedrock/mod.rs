//! AWS Bedrock's Converse API: `POST /model/{modelId}/converse`, streamed by
//! `POST /model/{modelId}/converse-stream` in AWS's binary event-stream framing.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//! and <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>.
//! Converse speaks one conversation shape for every model family (Claude, Nova, Llama,
//! Mistral, ...), the shape of Claude's Messages API in another envelope: `request` and
//! `response` re-write what the Anthropic translator builds and reads; `stream` decodes
//! the frames (`eventstream`) and re-tells them as Messages stream events.
//!
//! The module never signs: Envoy's `aws_request_signing` filter runs after it in the
//! upstream chain and signs the translated body (SigV4) with credentials from Envoy's AWS
//! chain. The module sets the final `Host` (the signature covers it) and leaves
//! `authorization` unset; a Bedrock API key, when the deployment has one, travels as a
//! bearer token instead and the signer stands aside.

pub mod eventstream;
pub mod invoke;
pub mod request;
pub mod response;
pub mod stream;

use super::native::Attempt;
use super::placement::push_encoded_segment;
use super::{join_path, ClientRequest, Target, TranslatedResponse, Translator, UpstreamRequest};
use crate::error::GatewayError;

/// Appends `s` as a JSON string.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    push_json(out, s);
}

/// Appends `v` as JSON (the values written here always encode).
pub(crate) fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// The media type of ConverseStream answers.
pub const EVENT_STREAM_MEDIA_TYPE: &str = "application/vnd.amazon.eventstream";

/// Translator for Bedrock deployments.
#[derive(Debug, Default)]
pub struct BedrockTranslator {
    attempt: Attempt<stream::ConverseStream>,
    json_response_tool: Option<String>,
    /// The `x-amzn-errortype` of the answer.
    error_type: String,
}

/// `/model/{modelId}/converse[-stream]` under the base path; the model id is
/// percent-encoded (`:` in `...-v1:0`, `/` in ARNs). LiteLLM's `converse/` route prefix
/// is dropped.
pub fn endpoint_path(base_path: &str, model: &str, stream: bool) -> String {
    model_path(
        base_path,
        model,
        if stream {
            "converse-stream"
        } else {
            "converse"
        },
    )
}

/// `/model/{modelId}/{method}` under the base path (`invoke` for the embedding models).
pub fn model_path(base_path: &str, model: &str, method: &str) -> String {
    let model = model.strip_prefix("converse/").unwrap_or(model);
    let mut path = String::with_capacity(model.len() + 32);
    path.push_str("/model/");
    push_encoded_segment(&mut path, model, b"-._~");
    path.push('/');
    path.push_str(method);
    join_path(base_path, &path)
}

/// The answer's `x-amzn-errortype` (empty without one).
fn error_type_header(headers: &[(&[u8], &[u8])]) -> String {
    crate::header_map::find(headers, "x-amzn-errortype")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The status the client and Envoy's retry policy see: the exception type's, else the
/// upstream's (an overloaded 529 as 503).
fn status_for(error_type: &str, upstream_status: u16) -> u16 {
    match response::exception_status(error_type) {
        Some((status, _)) if upstream_status >= 400 => status,
        _ => match upstream_status {
            529 => 503,
            s => s,
        },
    }
}

impl Translator for BedrockTranslator {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let chat = request.chat_request()?;
        let converse = request::translate_chat(chat, target)?;
        let translated = converse.translated;
        self.attempt
            .start(&translated, target, stream::ConverseStream::new);
        self.json_response_tool = converse.json_response_tool;
        let mut headers = Vec::with_capacity(3);
        // The signature covers the Host, and the router's host rewrite comes after the
        // signer: the final Host is set here.
        if let Some(host) = target.options.host.as_deref() {
            headers.push((":authority", host.to_string()));
        }
        if let Some(key) = target.api_key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        if translated.stream {
            headers.push(("accept", EVENT_STREAM_MEDIA_TYPE.to_string()));
        }
        Ok(UpstreamRequest {
            path: endpoint_path(target.base_path, target.upstream_model, translated.stream),
            headers,
            body: translated.body,
            dropped: translated.dropped,
        })
    }

    fn response_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        self.error_type = error_type_header(headers);
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        status_for(&self.error_type, upstream_status)
    }

    fn stream_media_type(&self) -> &'static str {
        EVENT_STREAM_MEDIA_TYPE
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        response::translate_response(
            upstream_status,
            status,
            &self.error_type,
            body,
            &response::AnswerContext {
                model: &self.attempt.model,
                now_unix_secs: self.attempt.now_unix_secs,
                json_response_tool: self.json_response_tool.as_deref(),
            },
        )
    }

    super::native::stream_methods!(attempt.stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Model ids are percent-encoded in the path; inference profiles and ARNs too.
    #[test]
    fn paths() {
        assert_eq!(
            endpoint_path("", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", false),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
        );
        assert_eq!(
            endpoint_path("/", "converse/amazon.nova-pro-v1:0", true),
            "/model/amazon.nova-pro-v1%3A0/converse-stream"
        );
        assert_eq!(
            endpoint_path(
                "",
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x",
                false
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fx/converse"
        );
    }

    /// The exception type decides the status; without one the status stands.
    #[test]
    fn statuses() {
        let mut t = BedrockTranslator::default();
        for (name, upstream, client) in [
            ("ThrottlingException", 429, 429),
            ("ModelNotReadyException", 429, 503),
            (
                "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                503,
                503,
            ),
            ("ValidationException", 400, 400),
            ("AccessDeniedException", 403, 403),
            ("", 500, 500),
        ] {
            let headers: Vec<(&[u8], &[u8])> = if name.is_empty() {
                Vec::new()
            } else {
                vec![(b"x-amzn-errortype", name.as_bytes())]
            };
            t.response_headers(&headers);
            assert_eq!(t.response_status(upstream), client, "{name}");
        }
    }
}
