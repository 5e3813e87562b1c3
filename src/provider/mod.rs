//! Providers: one module per upstream API, all behind [`Translator`].
//!
//! A translator is created per attempt by the upstream filter instance, once it knows from
//! the endpoint metadata which deployment the attempt reached. It owns all per-attempt
//! state (stream decoder, tool-call indices, usage) and never talks to the host: it takes
//! bytes and returns bytes, headers and usage, which the shell applies.

pub mod anthropic;
pub mod bedrock;
pub mod cohere;
pub mod common;
pub mod gemini;
pub mod native;
pub mod openai_compatible;
pub mod openai_family;
pub mod placement;
pub mod registry;
pub mod vertex;

use crate::error::GatewayError;
use crate::openai::ChatRequest;
use crate::usage::Usage;

/// The providers the gateway speaks to; what each one is lives in [`registry::PROVIDERS`].
/// Its name in configs and metrics is [`ProviderKind::name`], never a derived one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI, and any OpenAI-compatible server named by its base.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API (AI Studio, `generativelanguage.googleapis.com`).
    Gemini,
    /// Cohere v2 Chat API (`api.cohere.com`).
    Cohere,
    /// AWS Bedrock's Converse API (`bedrock-runtime.<region>.amazonaws.com`).
    Bedrock,
    /// Azure OpenAI.
    Azure,
    /// Mistral AI.
    Mistral,
    /// Groq.
    Groq,
    /// DeepSeek.
    DeepSeek,
    /// xAI (Grok).
    Xai,
    /// OpenRouter.
    OpenRouter,
    /// Together AI.
    Together,
    /// Fireworks AI.
    Fireworks,
    /// Perplexity.
    Perplexity,
    /// Cerebras.
    Cerebras,
    /// DeepInfra.
    DeepInfra,
    /// Ollama (local, keyless).
    Ollama,
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// LM Studio (local, keyless).
    LmStudio,
    /// Gemini on Google Vertex AI.
    VertexGemini,
    /// Claude on Google Vertex AI.
    VertexAnthropic,
}

impl ProviderKind {
    /// Every provider, for listings, error messages and the test matrices.
    pub const ALL: &'static [ProviderKind] = &[
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Cohere,
        ProviderKind::Bedrock,
        ProviderKind::Azure,
        ProviderKind::Mistral,
        ProviderKind::Groq,
        ProviderKind::DeepSeek,
        ProviderKind::Xai,
        ProviderKind::OpenRouter,
        ProviderKind::Together,
        ProviderKind::Fireworks,
        ProviderKind::Perplexity,
        ProviderKind::Cerebras,
        ProviderKind::DeepInfra,
        ProviderKind::Ollama,
        ProviderKind::Vllm,
        ProviderKind::LmStudio,
        ProviderKind::VertexGemini,
        ProviderKind::VertexAnthropic,
    ];

    /// Its entry in the registry.
    pub fn spec(self) -> &'static registry::ProviderSpec {
        // The table is in the order of `ALL` (checked by a test); the search is the fallback.
        match registry::PROVIDERS.get(self as usize) {
            Some(spec) if spec.kind == self => spec,
            _ => registry::PROVIDERS
                .iter()
                .find(|s| s.kind == self)
                .unwrap_or(&registry::OPENAI),
        }
    }

    /// The name used in configs, metrics and headers.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses a provider name as written in configs (`openai/gpt-4o` prefixes included).
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        registry::by_prefix(name).map(|s| s.kind)
    }

    /// The API base used when a deployment names none; `None` when `api_base` is required.
    pub fn default_api_base(self) -> Option<&'static str> {
        self.spec().default_api_base
    }
}

/// Provider-specific settings of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    /// `anthropic-version` header value.
    pub anthropic_version: String,
    /// Output limit sent when the client gives none (Anthropic requires one).
    pub default_max_tokens: u64,
    /// `litellm_params.drop_params`: drop request parameters the provider cannot honour
    /// (reported in [`UpstreamRequest::dropped`]) instead of refusing them with a 400.
    /// Off by default, because a silently dropped parameter changes the answer.
    pub drop_params: bool,
    /// Azure: the `api-version` of the deployment path; `None` selects the v1 path
    /// (`/openai/v1/chat/completions`), which takes none.
    pub azure_api_version: Option<String>,
    /// The key is an OAuth bearer token (Azure's Entra ID), whatever the provider's own
    /// key header.
    pub bearer_token: bool,
    /// The Host the provider must receive, set by the module when something after it in
    /// the upstream chain signs it (Bedrock's SigV4): the router's host rewrite comes
    /// too late for the signature.
    pub host: Option<String>,
    /// Bedrock: the AWS region (`aws_region_name`), which the signer signs for.
    pub aws_region: Option<String>,
}

/// The Azure OpenAI `api-version` used when a deployment names none: the latest GA
/// version of the classic data-plane inference API.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            anthropic_version: "2023-06-01".to_string(),
            default_max_tokens: 4096,
            drop_params: false,
            azure_api_version: Some(AZURE_DEFAULT_API_VERSION.to_string()),
            bearer_token: false,
            host: None,
            aws_region: None,
        }
    }
}

/// What a translator needs to know about the deployment an attempt reached.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The provider's own model name.
    pub upstream_model: &'a str,
    /// Path prefix from the deployment's `api_base` (`/v1` for OpenAI, empty for Anthropic).
    pub base_path: &'a str,
    /// The provider key, when the deployment has one.
    pub api_key: Option<&'a str>,
    /// Current time, for the `created` field of translated answers.
    pub now_unix_secs: u64,
    /// Provider-specific settings.
    pub options: &'a ProviderOptions,
}

/// The request one attempt sends upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// `:path`, query included.
    pub path: String,
    /// The provider's own headers (credentials, versions): with the client headers of
    /// [`crate::header_policy::FORWARDED_REQUEST_HEADERS`], all the provider receives.
    pub headers: Vec<(&'static str, String)>,
    /// The translated body.
    pub body: Vec<u8>,
    /// Client parameters left out because the provider cannot honour them and the
    /// deployment allows dropping (`drop_params`); the shell logs them as a warning.
    pub dropped: Vec<String>,
}

impl UpstreamRequest {
    /// The request headers the gateway sets on this attempt: `:path`, the body's type and
    /// length, and the provider's own. With [`crate::header_policy::request_changes`],
    /// everything else is removed: Envoy shares one request header map across retry
    /// attempts, so nothing an earlier attempt set (another provider's credentials)
    /// reaches this one.
    pub fn gateway_headers(&self) -> Vec<(&str, std::borrow::Cow<'_, str>)> {
        let mut set: Vec<(&str, std::borrow::Cow<'_, str>)> =
            Vec::with_capacity(self.headers.len() + 3);
        set.push((":path", self.path.as_str().into()));
        set.push(("content-type", "application/json".into()));
        for (name, value) in &self.headers {
            set.push((name, value.as_str().into()));
        }
        set.push(("content-length", self.body.len().to_string().into()));
        set
    }
}

/// A complete (non-streamed) answer translated to OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedResponse {
    /// Status for the client (and Envoy's retry policy).
    pub status: u16,
    /// OpenAI-shaped body: a `chat.completion` or an error envelope.
    pub body: Vec<u8>,
    /// Token usage, when the provider reported it.
    pub usage: Option<Usage>,
}

impl TranslatedResponse {
    /// A translated error.
    pub fn error(error: &GatewayError) -> Self {
        TranslatedResponse {
            status: error.status,
            body: error.to_json(),
            usage: None,
        }
    }

    /// A translated answer: `completion` encoded into a buffer sized from the provider's
    /// answer (`answer_len` bytes), which it resembles in length, so that it is allocated
    /// once rather than grown by doubling.
    pub fn completion(
        status: u16,
        completion: &crate::openai::ChatResponse,
        usage: Option<Usage>,
        answer_len: usize,
    ) -> Self {
        let mut body = Vec::with_capacity(answer_len.saturating_add(512));
        match serde_json::to_writer(&mut body, completion) {
            Ok(()) => TranslatedResponse {
                status,
                body,
                usage,
            },
            Err(e) => TranslatedResponse::error(&GatewayError::internal(format!(
                "could not encode the chat completion: {e}"
            ))),
        }
    }
}

/// What the shell does with a streamed 200 while it holds the response headers back.
///
/// A provider that fails before its first token (overloaded, rate limited) still answers
/// 200 and reports the failure as the stream's first event. Deciding on that event before
/// the headers go out lets the shell turn it into a real status, which Envoy's retry policy
/// can act on (fall back to the next deployment) instead of a 200 the client must parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPreamble {
    /// No decisive event yet: keep the headers and the bytes, ask again with more.
    NeedMore,
    /// The stream started well (or could not be judged within a bounded prefix): send the
    /// headers and feed the same bytes to [`Translator::stream`].
    Proceed,
    /// The stream opened with an error: answer this instead of the stream.
    Fail(TranslatedResponse),
}

/// Judges a streamed request's 2xx answer by its content type, before any byte of it is
/// read: every provider streams `text/event-stream`, so anything else (an HTML page from a
/// proxy in front of the provider, a JSON body) is a failed attempt, answered as a 502
/// through the same path as a stream that opens with an error event
/// ([`StreamPreamble::Fail`]), so that Envoy falls back as it does for the same answer to
/// a non-streamed request. An answer without a content type is judged by its events.
pub fn stream_content_type_preamble(content_type: Option<&[u8]>, expected: &str) -> StreamPreamble {
    let Some(value) = content_type else {
        return StreamPreamble::Proceed;
    };
    let media_type = value.split(|&b| b == b';').next().unwrap_or_default();
    if media_type
        .trim_ascii()
        .eq_ignore_ascii_case(expected.as_bytes())
    {
        return StreamPreamble::Proceed;
    }
    let shown = String::from_utf8_lossy(media_type.get(..64).unwrap_or(media_type));
    let e = GatewayError::new(
        crate::error::ErrorKind::Api,
        format!(
            "the provider answered a streamed request with `{}` instead of an event stream",
            shown.trim()
        ),
    )
    .with_status(502)
    .with_code("bad_upstream_response");
    StreamPreamble::Fail(TranslatedResponse::error(&e))
}

/// What validation made of the client's request: by the downstream instance (handed to
/// each attempt), or by the attempt itself with the same checks when nothing was handed
/// over. Translators start from it, never from a parse of their own that skips the checks.
#[derive(Debug, Clone, Copy)]
pub enum Validated<'a> {
    /// A chat request ([`crate::request::validate_chat`]): a `/v1/chat/completions` body,
    /// the chat form of a Responses request, or the routing form of a Messages request.
    Chat(&'a ChatRequest),
    /// A `/v1/embeddings` request ([`crate::embeddings::parse_request`]).
    Embeddings(&'a crate::embeddings::EmbeddingsRequest),
}

/// The client's request as one attempt receives it: the body as sent, for translators that
/// forward it, and the same request validated.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// The body as the client sent it.
    pub body: &'a [u8],
    /// The same request, validated.
    pub validated: Validated<'a>,
}

impl<'a> ClientRequest<'a> {
    /// A chat request and its body.
    pub fn chat(body: &'a [u8], chat: &'a ChatRequest) -> Self {
        ClientRequest {
            body,
            validated: Validated::Chat(chat),
        }
    }

    /// The validated chat request; an embeddings request reaching a chat translator is
    /// the gateway's own mistake.
    pub fn chat_request(&self) -> Result<&'a ChatRequest, GatewayError> {
        match self.validated {
            Validated::Chat(chat) => Ok(chat),
            Validated::Embeddings(_) => Err(GatewayError::internal(
                "an embeddings request reached a chat translator",
            )),
        }
    }
}

/// Validates `body` as the downstream instance does for a request of `api`, then
/// translates it: what an attempt without a hand-off does. The way in for tests and
/// benches, which have no downstream instance.
pub trait RequestFromBody {
    /// [`Translator::request`] from the body alone.
    fn request_from_body(
        &mut self,
        api: crate::messages_api::InboundApi,
        body: &[u8],
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError>;
}

impl<T: Translator + ?Sized> RequestFromBody for T {
    fn request_from_body(
        &mut self,
        api: crate::messages_api::InboundApi,
        body: &[u8],
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        if api == crate::messages_api::InboundApi::Embeddings {
            let embeddings = crate::embeddings::parse_request(body)?;
            return self.request(
                ClientRequest {
                    body,
                    validated: Validated::Embeddings(&embeddings),
                },
                target,
            );
        }
        let chat = crate::request::validate_chat(api, body, None)?;
        self.request(ClientRequest::chat(body, &chat), target)
    }
}

/// Per-attempt translation between OpenAI's Chat Completions API and one provider's API.
pub trait Translator {
    /// Translates the client's request for this provider. Remembers what the response side
    /// needs (streaming, whether the client wants a usage chunk, tool names).
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError>;

    /// True when the translated request asked for a streamed answer.
    fn is_stream(&self) -> bool;

    /// Shows the translator the answer's headers before anything else is asked of it
    /// (Bedrock reads its error type from one).
    fn response_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        let _ = headers;
    }

    /// The media type a streamed answer must have ([`stream_content_type_preamble`]).
    fn stream_media_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// The status the client and Envoy's retry policy see for an upstream status; overloaded
    /// answers become 503 so that Envoy falls back to the next deployment.
    fn response_status(&self, upstream_status: u16) -> u16 {
        match upstream_status {
            529 => 503,
            s => s,
        }
    }

    /// Translates a complete non-streamed body, success or error, into OpenAI's shape.
    /// Called for every non-2xx answer too, streamed requests included.
    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse;

    /// Translates the next piece of a streamed (SSE) answer. Appends OpenAI SSE bytes to
    /// `out` (possibly nothing while an event is incomplete). At `end_of_stream` it flushes,
    /// writes the usage chunk when the client asked for one, and `data: [DONE]`.
    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>);

    /// Usage learned from the stream so far (complete once the stream has ended).
    fn stream_usage(&self) -> Option<Usage>;

    /// Bytes the stream translation holds between pieces (an unfinished event, a block
    /// being assembled), counted against the worker's limit.
    fn stream_buffered_bytes(&self) -> usize {
        0
    }

    /// Judges the start of a streamed 200 answer. `buffered` is every body byte received so
    /// far (not just the newest piece). Consumes no stream state: after `Proceed` the shell
    /// passes the same bytes to [`stream`](Self::stream). Translators that cannot tell
    /// proceed at once.
    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        let _ = (buffered, end_of_stream);
        StreamPreamble::Proceed
    }

    /// The attempt's provider key, ready to be scrubbed from what the shell passes on
    /// itself (response headers); `None` when there is none.
    fn key_scrubber(&self) -> Option<&crate::secrets::KeyScrubber> {
        None
    }

    /// The usage of the answer is the gateway's estimate: the provider reports none.
    fn usage_estimated(&self) -> bool {
        false
    }

    /// Whether the stream's last event was written, `out` being the newest piece: for the
    /// chat translators, the piece ends with `[DONE]`.
    fn stream_complete(&self, out: &[u8]) -> bool {
        out.ends_with(crate::openai::DONE_EVENT)
    }
}

/// The translator for one attempt to a deployment of `kind`, wrapped in [`Guarded`].
pub fn translator_for(kind: ProviderKind) -> Box<dyn Translator> {
    Box::new(Guarded::new(provider_translator(kind)))
}

/// The provider's own translator, unguarded.
pub(crate) fn provider_translator(kind: ProviderKind) -> Box<dyn Translator> {
    let spec = kind.spec();
    match spec.wire {
        registry::WireApi::OpenAiChat | registry::WireApi::AzureOpenAi => {
            Box::new(openai_compatible::OpenAiTranslator::for_provider(spec))
        }
        registry::WireApi::AnthropicMessages => Box::new(anthropic::AnthropicTranslator::default()),
        registry::WireApi::GeminiGenerate => Box::new(gemini::GeminiTranslator::default()),
        registry::WireApi::CohereChat => Box::new(cohere::CohereTranslator::default()),
        registry::WireApi::BedrockConverse => Box::new(bedrock::BedrockTranslator::default()),
        registry::WireApi::VertexGemini => Box::new(vertex::VertexTranslator::gemini()),
        registry::WireApi::VertexAnthropic => Box::new(vertex::VertexTranslator::anthropic()),
    }
}

/// Joins an API base path and an endpoint path without doubling or losing the slash.
pub fn join_path(base_path: &str, endpoint: &str) -> String {
    let base = base_path.trim_end_matches('/');
    if endpoint.starts_with('/') {
        format!("{base}{endpoint}")
    } else {
        format!("{base}/{endpoint}")
    }
}

/// What every translator's output goes through, whichever provider it speaks:
///
/// * the attempt's provider key (from [`Target::api_key`]) is scrubbed from every answer,
///   stream event and refusal ([`crate::secrets::KeyScrubber`]): a provider that quotes the
///   key it was sent never shows it to the client;
/// * an answer's status is one a client and Envoy's retry policy can act on: an upstream
///   1xx or 3xx (a redirect the gateway does not follow) becomes a 502.
pub struct Guarded {
    inner: Box<dyn Translator>,
    key: Option<crate::secrets::KeyScrubber>,
    /// Holds back stream events that may end with the start of the key.
    stream_key: crate::secrets::StreamScrubber,
}

impl Guarded {
    /// Guards `inner`.
    pub fn new(inner: Box<dyn Translator>) -> Guarded {
        Guarded {
            inner,
            key: None,
            stream_key: crate::secrets::StreamScrubber::default(),
        }
    }

    fn scrub(&self, bytes: &mut Vec<u8>, from: usize) {
        if let Some(key) = &self.key {
            key.scrub(bytes, from);
        }
    }

    /// Remembers the attempt's key (to scrub it from everything that follows) and scrubs
    /// it from a refusal of the request.
    fn scrub_refusal(
        &mut self,
        target: &Target<'_>,
        result: Result<UpstreamRequest, GatewayError>,
    ) -> Result<UpstreamRequest, GatewayError> {
        self.key = target.api_key.and_then(crate::secrets::KeyScrubber::new);
        result.map_err(|mut e| {
            if let Some(key) = &self.key {
                e.message = key.scrub_str(&e.message).into_owned();
            }
            e
        })
    }

    fn guard(&self, mut answer: TranslatedResponse) -> TranslatedResponse {
        answer.status = answer_status(answer.status);
        self.scrub(&mut answer.body, 0);
        answer
    }
}

/// 2xx and 4xx/5xx pass; anything else the client cannot use becomes 502.
fn answer_status(status: u16) -> u16 {
    if (200..300).contains(&status) || (400..600).contains(&status) {
        status
    } else {
        502
    }
}

impl Translator for Guarded {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let result = self.inner.request(request, target);
        self.scrub_refusal(target, result)
    }

    fn is_stream(&self) -> bool {
        self.inner.is_stream()
    }

    fn response_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        self.inner.response_headers(headers);
    }

    fn stream_media_type(&self) -> &'static str {
        self.inner.stream_media_type()
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        answer_status(self.inner.response_status(upstream_status))
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let answer = self.inner.response(upstream_status, body);
        self.guard(answer)
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        let from = out.len();
        self.inner.stream(chunk, end_of_stream, out);
        // Events are appended whole, but a provider can split the key across events.
        if let Some(key) = &self.key {
            let last = end_of_stream || self.inner.stream_complete(out);
            self.stream_key.scrub(key, out, from, last);
        }
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.inner.stream_usage()
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.inner.stream_buffered_bytes()
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        match self.inner.stream_preamble(buffered, end_of_stream) {
            StreamPreamble::Fail(answer) => StreamPreamble::Fail(self.guard(answer)),
            other => other,
        }
    }

    fn key_scrubber(&self) -> Option<&crate::secrets::KeyScrubber> {
        self.key.as_ref()
    }

    fn usage_estimated(&self) -> bool {
        self.inner.usage_estimated()
    }

    fn stream_complete(&self, out: &[u8]) -> bool {
        self.inner.stream_complete(out)
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;
    use crate::messages_api::InboundApi;
    use crate::provider::RequestFromBody;

    const KEY: &str = "sk-fake-openai-provider-key-0123456789";

    fn target(options: &ProviderOptions) -> Target<'_> {
        Target {
            upstream_model: "m",
            base_path: "/v1",
            api_key: Some(KEY),
            now_unix_secs: 1,
            options,
        }
    }

    /// A provider quoting the key it was sent never shows it to the client: not in an
    /// answer, not in a stream, not in a failed stream start.
    #[test]
    fn the_key_is_scrubbed_everywhere() {
        let o = ProviderOptions::default();
        let mut t = translator_for(ProviderKind::OpenAi);
        t.request_from_body(
            InboundApi::Chat,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#,
            &target(&o),
        )
        .unwrap();
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#);
        let r = t.response(401, body.as_bytes());
        let text = String::from_utf8(r.body).unwrap();
        assert!(!text.contains(KEY) && text.contains("sk-***"), "{text}");

        let mut t = translator_for(ProviderKind::OpenAi);
        t.request_from_body(
            InboundApi::Chat,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#,
            &target(&o),
        )
        .unwrap();
        let sse = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{KEY}\"}}}}]}}\n\n"
        );
        let mut out = Vec::new();
        t.stream(sse.as_bytes(), false, &mut out);
        assert!(!String::from_utf8_lossy(&out).contains(KEY));
        let first =
            format!("data: {{\"error\":{{\"message\":\"bad key {KEY}\",\"code\":401}}}}\n\n");
        match t.stream_preamble(first.as_bytes(), false) {
            StreamPreamble::Fail(a) => {
                assert_eq!(a.status, 401);
                assert!(!String::from_utf8_lossy(&a.body).contains(KEY));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Only an event stream (any parameters, any case) or no content type proceeds.
    #[test]
    fn a_stream_answer_must_be_an_event_stream() {
        for ok in [
            None,
            Some(&b"text/event-stream"[..]),
            Some(b"Text/Event-Stream; charset=utf-8"),
        ] {
            assert_eq!(
                stream_content_type_preamble(ok, "text/event-stream"),
                StreamPreamble::Proceed,
                "{ok:?}"
            );
        }
        for bad in [&b"text/html; charset=utf-8"[..], b"application/json", b""] {
            match stream_content_type_preamble(Some(bad), "text/event-stream") {
                StreamPreamble::Fail(a) => {
                    assert_eq!(a.status, 502);
                    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
                    assert_eq!(v["error"]["code"], "bad_upstream_response");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Redirects and other non-answers become 502s.
    #[test]
    fn statuses_a_client_can_use() {
        let o = ProviderOptions::default();
        for kind in ProviderKind::ALL {
            let mut t = translator_for(*kind);
            t.request_from_body(
                InboundApi::Chat,
                br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#,
                &target(&o),
            )
            .unwrap();
            for (upstream, client) in [(302, 502), (101, 502), (200, 200), (404, 404), (529, 503)] {
                assert_eq!(t.response_status(upstream), client, "{kind:?} {upstream}");
            }
            assert_eq!(t.response(301, b"<html>moved</html>").status, 502);
        }
    }
}

#[cfg(test)]
mod header_map_tests {
    use super::*;

    /// The attempt's changes: the client's headers outside the allow-list and what an
    /// earlier attempt set are removed, this provider's headers and the body's length set.
    #[test]
    fn an_attempt_clears_what_it_does_not_set() {
        let up = UpstreamRequest {
            path: "/v1/messages".into(),
            headers: vec![
                ("x-api-key", "sk-ant".into()),
                ("anthropic-version", "2023-06-01".into()),
            ],
            body: b"{\"model\":\"m\"}".to_vec(),
            dropped: Vec::new(),
        };
        // The client's headers plus what an earlier OpenAI attempt set.
        let present: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":path", b"/v1/chat/completions"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"120"),
            (b"authorization", b"Bearer sk-openai"),
            (b"x-api-key", b"sk-old"),
            (b"accept-encoding", b"gzip"),
            (b"cookie", b"a=b"),
            (b"x-llm-route", b"claude"),
            (b"accept", b"application/json"),
        ];
        let set = up.gateway_headers();
        let c = crate::header_policy::request_changes(&present, &set);
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        let removed: Vec<String> = c.remove.iter().map(|n| text(n)).collect();
        assert_eq!(
            removed,
            ["authorization", "accept-encoding", "cookie", "x-llm-route"]
        );
        let set: Vec<(String, String)> = c.set.iter().map(|(n, v)| (text(n), text(v))).collect();
        let expected = [
            (":path", "/v1/messages"),
            ("content-type", "application/json"),
            ("x-api-key", "sk-ant"),
            ("anthropic-version", "2023-06-01"),
            ("content-length", "13"),
        ];
        assert_eq!(set, expected.map(|(n, v)| (n.to_string(), v.to_string())));
    }
}
