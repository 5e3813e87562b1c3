//! What the translators of providers with a stream format of their own (Anthropic, Gemini,
//! Cohere, Bedrock's Converse) share: a per-attempt stream type behind [`NativeStream`],
//! held as `Option<S>` (`Some` when the request asked for a stream), and the
//! [`Translator`](super::Translator) stream methods over it, written once by
//! [`stream_methods!`].

use super::StreamPreamble;
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
/// `Option<impl NativeStream>` field `$field`.
macro_rules! stream_methods {
    ($field:ident) => {
        fn is_stream(&self) -> bool {
            self.$field.is_some()
        }

        fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
            if let Some(s) = self.$field.as_mut() {
                $crate::provider::native::NativeStream::push(s, chunk, end_of_stream, out);
            }
        }

        fn stream_usage(&self) -> Option<$crate::usage::Usage> {
            self.$field
                .as_ref()
                .and_then($crate::provider::native::NativeStream::usage)
        }

        fn stream_buffered_bytes(&self) -> usize {
            self.$field
                .as_ref()
                .map_or(0, $crate::provider::native::NativeStream::buffered_capacity)
        }

        fn stream_preamble(
            &mut self,
            buffered: &[u8],
            end_of_stream: bool,
        ) -> $crate::provider::StreamPreamble {
            $crate::provider::native::NativeStream::translator_preamble(
                self.$field.as_ref(),
                buffered,
                end_of_stream,
            )
        }
    };
}

pub(crate) use stream_methods;
