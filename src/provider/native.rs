//! What the translators of providers with a stream format of their own (Anthropic, Gemini,
//! Cohere, Bedrock's Converse) share: a per-attempt stream type behind [`NativeStream`],
//! held as `Option<S>` (`Some` when the request asked for a stream), and the
//! [`Translator`](super::Translator) stream methods over it, written once by
//! [`stream_methods!`]; what a translator keeps of its attempt ([`Attempt`]); and the whole
//! translator of a provider that needs nothing more ([`NativeTranslator`]).

use super::common::TranslatedRequest;
use super::{
    ClientRequest, ProviderKind, StreamPreamble, Target, TranslatedResponse, Translator,
    UpstreamRequest,
};
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use crate::usage::Usage;

/// One streamed answer's translation to OpenAI's chunks.
pub trait NativeStream: Sized {
    /// Translates the next piece of the stream into `out`; at `end_of_stream` it finishes
    /// the client's stream ([`Translator::stream`](super::Translator::stream)).
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>);

    /// Usage seen so far; complete once the stream has ended.
    fn usage(&self) -> Option<Usage>;

    /// Bytes reserved by the stream's buffers between pieces.
    fn buffered_capacity(&self) -> usize;

    /// Judges the start of a streamed 200 answer
    /// ([`Translator::stream_preamble`](super::Translator::stream_preamble)).
    fn preamble(buffered: &[u8], end_of_stream: bool) -> StreamPreamble;

    /// The translator's verdict on the start of an answer, `stream` being its stream
    /// (`None` for a request that asked for none): only a stream is judged.
    #[inline]
    fn translator_preamble(
        stream: Option<&Self>,
        buffered: &[u8],
        end_of_stream: bool,
    ) -> StreamPreamble {
        match stream {
            Some(_) => Self::preamble(buffered, end_of_stream),
            None => StreamPreamble::Proceed,
        }
    }
}

/// The stream methods of a [`Translator`](super::Translator) impl (`is_stream`, `stream`,
/// `stream_usage`, `stream_buffered_bytes`, `stream_preamble`) over its
/// `Option<impl NativeStream>` field `$field` (a path such as `attempt.stream`).
macro_rules! stream_methods {
    ($($field:ident).+) => {
        fn is_stream(&self) -> bool {
            self.$($field).+.is_some()
        }

        fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
            if let Some(s) = self.$($field).+.as_mut() {
                $crate::provider::native::NativeStream::push(s, chunk, end_of_stream, out);
            }
        }

        fn stream_usage(&self) -> Option<$crate::usage::Usage> {
            self.$($field).+
                .as_ref()
                .and_then($crate::provider::native::NativeStream::usage)
        }

        fn stream_buffered_bytes(&self) -> usize {
            self.$($field).+
                .as_ref()
                .map_or(0, $crate::provider::native::NativeStream::buffered_capacity)
        }

        fn stream_preamble(
            &mut self,
            buffered: &[u8],
            end_of_stream: bool,
        ) -> $crate::provider::StreamPreamble {
            $crate::provider::native::NativeStream::translator_preamble(
                self.$($field).+.as_ref(),
                buffered,
                end_of_stream,
            )
        }
    };
}

pub(crate) use stream_methods;

/// What a translator keeps of its attempt for the answer: the clock and the model (the
/// answers of Gemini, Cohere and Converse need not name it), and the stream when the client
/// asked for one.
#[derive(Debug)]
pub struct Attempt<S> {
    /// The answer's stream translation; `None` for a request that asked for none.
    pub stream: Option<S>,
    /// The attempt's time, for `created`.
    pub now_unix_secs: u64,
    /// The upstream model.
    pub model: String,
}

impl<S> Default for Attempt<S> {
    fn default() -> Self {
        Attempt {
            stream: None,
            now_unix_secs: 0,
            model: String::new(),
        }
    }
}

impl<S> Attempt<S> {
    /// Starts the attempt of `translated` to `target`; `open` makes the stream
    /// (`client_wants_usage`, time, model) when the request asked for one.
    pub fn start(
        &mut self,
        translated: &TranslatedRequest,
        target: &Target<'_>,
        open: impl FnOnce(bool, u64, &str) -> S,
    ) {
        self.now_unix_secs = target.now_unix_secs;
        self.model = target.upstream_model.to_string();
        self.stream = translated.stream.then(|| {
            open(
                translated.client_wants_usage,
                target.now_unix_secs,
                target.upstream_model,
            )
        });
    }
}

/// A provider's wire API whose translator keeps nothing but its [`Attempt`] (Gemini,
/// Cohere): its mappings and placement, which [`NativeTranslator`] runs. Static calls
/// throughout: each provider is its own monomorphised translator.
pub trait NativeApi {
    /// The answer's stream translation.
    type Stream: NativeStream;

    /// The provider's request for `chat`.
    fn translate_chat(
        chat: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<TranslatedRequest, GatewayError>;

    /// The stream translation of an attempt that asked for one.
    fn open_stream(client_wants_usage: bool, now_unix_secs: u64, model: &str) -> Self::Stream;

    /// The request's path under the deployment's `base_path`.
    fn path(base_path: &str, model: &str, stream: bool) -> String;

    /// Which provider it is: its registry entry says how the key travels.
    const KIND: ProviderKind;

    /// The client's answer to a complete upstream answer; `status` is the one the client
    /// sees.
    fn translate_response(
        upstream_status: u16,
        status: u16,
        body: &[u8],
        now_unix_secs: u64,
        model: &str,
    ) -> TranslatedResponse;
}

/// The translator of a [`NativeApi`] provider.
pub struct NativeTranslator<A: NativeApi> {
    attempt: Attempt<A::Stream>,
}

impl<A: NativeApi> Default for NativeTranslator<A> {
    fn default() -> Self {
        NativeTranslator {
            attempt: Attempt::default(),
        }
    }
}

impl<A: NativeApi> std::fmt::Debug for NativeTranslator<A>
where
    A::Stream: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTranslator")
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl<A: NativeApi> Translator for NativeTranslator<A> {
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let translated = A::translate_chat(request.chat_request()?, target)?;
        self.attempt.start(&translated, target, A::open_stream);
        Ok(UpstreamRequest {
            path: A::path(target.base_path, target.upstream_model, translated.stream),
            headers: target
                .api_key
                .and_then(|key| A::KIND.spec().credential.header(key))
                .into_iter()
                .collect(),
            body: translated.body,
            dropped: translated.dropped,
        })
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        A::translate_response(
            upstream_status,
            status,
            body,
            self.attempt.now_unix_secs,
            &self.attempt.model,
        )
    }

    stream_methods!(attempt.stream);
}
