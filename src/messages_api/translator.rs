//! The per-attempt translators of a Messages request: [`Passthrough`] to Anthropic (and
//! Claude on Vertex AI and Bedrock), and [`Bridge`] to every other provider through its
//! chat translator.

use serde_json::Value;

use super::{error_body_to_anthropic, request, response, stream, InboundApi};
use crate::error::GatewayError;
use crate::provider::anthropic::schema::MessagesResponse;
use crate::provider::bedrock::invoke::{self, ClaudeInvoke};
use crate::provider::registry::WireApi;
use crate::provider::vertex::{self, VertexTranslator};
use crate::provider::{
    join_path, translator_for, ClientRequest, Guarded, ProviderKind, StreamPreamble, Target,
    TranslatedResponse, Translator, UpstreamRequest,
};
use crate::usage::Usage;

/// The translator of one attempt of a Messages (or `count_tokens`) request to `kind`'s
/// `upstream_model`.
pub fn translator(
    kind: ProviderKind,
    api: InboundApi,
    upstream_model: &str,
) -> Box<dyn Translator> {
    match kind.spec().wire {
        WireApi::AnthropicMessages => {
            return Box::new(Guarded::new(Box::new(Passthrough {
                api,
                ..Passthrough::default()
            })));
        }
        // Claude on Vertex AI takes Anthropic's own body: passed through like Anthropic's,
        // with the version in the body instead of `model` (Vertex AI places path and token).
        WireApi::VertexAnthropic => {
            return Box::new(Guarded::new(Box::new(VertexTranslator::claude(Box::new(
                Passthrough {
                    api,
                    body_version: Some(vertex::ANTHROPIC_VERSION),
                    ..Passthrough::default()
                },
            )))));
        }
        // Claude on Bedrock takes Anthropic's body too, through InvokeModel (the version in
        // the body, no `model` or `stream`); other models (and ARNs) go through Converse.
        WireApi::BedrockConverse
            if api == InboundApi::Messages && bedrock_invoke(upstream_model) =>
        {
            return Box::new(Guarded::new(Box::new(ClaudeInvoke::new(Box::new(
                Passthrough {
                    api,
                    body_version: Some(invoke::ANTHROPIC_VERSION),
                    body_drop: &["stream"],
                    ..Passthrough::default()
                },
            )))));
        }
        _ => {}
    }
    Box::new(Bridge {
        inner: translator_for(kind),
        model: String::new(),
        stream: None,
    })
}

/// The client's headers an Anthropic deployment receives as sent.
pub const FORWARDED_HEADERS: &[&str] = &["anthropic-beta", "anthropic-version"];

/// The client's headers Claude on Vertex AI receives as sent (its version is in the body).
pub const VERTEX_FORWARDED_HEADERS: &[&str] = &["anthropic-beta"];

/// Whether a Messages request to a Bedrock deployment of `upstream_model` is passed
/// through InvokeModel (Claude) rather than bridged to Converse.
pub fn bedrock_invoke(upstream_model: &str) -> bool {
    invoke::is_claude(upstream_model)
}

/// An error answer turned into Anthropic's shape, status kept.
fn anthropic_error(mut answer: TranslatedResponse) -> TranslatedResponse {
    answer.body = error_body_to_anthropic(answer.status, &answer.body);
    answer.usage = None;
    answer
}

/// A failed stream start in Anthropic's error shape.
pub fn preamble_in_anthropic_shape(p: StreamPreamble) -> StreamPreamble {
    match p {
        StreamPreamble::Fail(answer) => StreamPreamble::Fail(anthropic_error(answer)),
        other => other,
    }
}

/// To Anthropic: the client's body with `model` rewritten; the answer passed on as it
/// came, its usage read on the way.
#[derive(Debug, Default)]
pub struct Passthrough {
    api: InboundApi,
    /// Where the platform takes `anthropic_version` in the body instead of `model` (Claude
    /// on Vertex AI); `None` for Anthropic's API, which takes `model` and a header.
    body_version: Option<&'static str>,
    /// Members the platform refuses in the body besides `model` (Bedrock's `stream`: the
    /// path says it).
    body_drop: &'static [&'static str],
    stream: Option<stream::AnthropicUsageTracker>,
}

impl Translator for Passthrough {
    fn request(
        &mut self,
        client: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let chat = client.chat_request()?;
        let body = match self.body_version {
            Some(version) => request::model_to_version(client.body, version, self.body_drop),
            None => request::rewrite_model(client.body, target.upstream_model),
        }
        .ok_or_else(|| {
            GatewayError::invalid_request("request body must be a JSON object with `model`")
        })?;
        let endpoint = match self.api {
            InboundApi::CountTokens => "/v1/messages/count_tokens",
            _ => "/v1/messages",
        };
        if self.api == InboundApi::Messages && chat.is_stream() {
            self.stream = Some(stream::AnthropicUsageTracker::default());
        }
        let mut headers = vec![(
            "anthropic-version",
            target.options.anthropic_version.clone(),
        )];
        if let Some(key) = target.api_key {
            headers.push(("x-api-key", key.to_string()));
        }
        Ok(UpstreamRequest {
            path: join_path(target.base_path, endpoint),
            headers,
            body,
            dropped: Vec::new(),
        })
    }

    fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        if !(200..300).contains(&upstream_status) {
            return anthropic_error(TranslatedResponse {
                status,
                body: body.to_vec(),
                usage: None,
            });
        }
        // The type the chat translation reads the same answers with (no second parser).
        let usage = match self.api {
            InboundApi::Messages => serde_json::from_slice::<MessagesResponse>(body)
                .ok()
                .and_then(|m| m.usage)
                .map(|u| crate::provider::anthropic::response::usage_from_anthropic(&u)),
            _ => None,
        };
        TranslatedResponse {
            status,
            body: body.to_vec(),
            usage,
        }
    }

    fn stream(&mut self, chunk: &[u8], _end_of_stream: bool, out: &mut Vec<u8>) {
        if let Some(t) = self.stream.as_mut() {
            t.push(chunk);
        }
        out.extend_from_slice(chunk);
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.stream.as_ref().and_then(|t| t.usage())
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.stream.as_ref().map_or(0, |t| t.buffered_bytes())
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble_in_anthropic_shape(crate::provider::anthropic::stream::preamble(
            buffered,
            end_of_stream,
        ))
    }

    fn stream_complete(&self, _out: &[u8]) -> bool {
        self.stream.as_ref().is_some_and(|t| t.is_done())
    }
}

/// To any other provider: the request as an OpenAI chat request through the provider's
/// translator, its answer back in Anthropic's shape.
pub struct Bridge {
    inner: Box<dyn Translator>,
    /// The model the client asked for, named in the answer.
    model: String,
    stream: Option<stream::ChatToMessages>,
}

impl Translator for Bridge {
    /// The validated request is the lenient form (for routing); the provider's must be
    /// strict: the body is converted again, refusing what the provider cannot honour, and
    /// the chat body written is validated as a client's would be.
    fn request(
        &mut self,
        client: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let v = request::parse(client.body, false)?;
        self.model = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let chat_body = request::to_chat(&v, true)?;
        let chat = crate::request::parse_chat_request(&chat_body)?;
        let upstream = self
            .inner
            .request(ClientRequest::chat(&chat_body, &chat), target)?;
        if request::is_stream(&v) {
            self.stream = Some(stream::ChatToMessages::new(&self.model));
        }
        Ok(upstream)
    }

    fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        self.inner.response_status(upstream_status)
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let answer = self.inner.response(upstream_status, body);
        if !(200..300).contains(&answer.status) {
            return anthropic_error(answer);
        }
        match response::to_message(&answer.body, &self.model, answer.usage.as_ref()) {
            Some(body) => TranslatedResponse { body, ..answer },
            None => anthropic_error(TranslatedResponse::error(
                &GatewayError::internal("the provider's answer could not be read").with_status(502),
            )),
        }
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        let mut chat = Vec::with_capacity(chunk.len() + 256);
        self.inner.stream(chunk, end_of_stream, &mut chat);
        let usage = self.inner.stream_usage();
        if let Some(s) = self.stream.as_mut() {
            s.push(&chat, end_of_stream, usage, out);
        }
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.inner.stream_usage()
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.inner.stream_buffered_bytes() + self.stream.as_ref().map_or(0, |s| s.buffered_bytes())
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        preamble_in_anthropic_shape(self.inner.stream_preamble(buffered, end_of_stream))
    }

    fn key_scrubber(&self) -> Option<&crate::secrets::KeyScrubber> {
        self.inner.key_scrubber()
    }

    fn stream_complete(&self, _out: &[u8]) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_done())
    }
}
