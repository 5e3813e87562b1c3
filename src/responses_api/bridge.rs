//! The stateless bridge: a Responses request answered by a chat-completions provider
//! through that provider's own chat translator, whose OpenAI-shaped answer is turned into
//! a Response object or the Responses event sequence.

use std::rc::Rc;

use serde_json::Value;

use super::events::EventWriter;
use super::response;
use super::ResponsesCall;
use crate::error::GatewayError;
use crate::provider::{
    ClientRequest, StreamPreamble, Target, TranslatedResponse, Translator, UpstreamRequest,
};
use crate::usage::Usage;

/// One attempt through the bridge.
pub struct Bridge {
    inner: Box<dyn Translator>,
    call: Rc<ResponsesCall>,
    events: EventWriter,
    /// The inner translator's chat SSE for the piece being translated (reused).
    chat_sse: Vec<u8>,
}

impl Bridge {
    /// Bridges `call` through `inner`, the provider's chat translator.
    pub fn new(inner: Box<dyn Translator>, call: Rc<ResponsesCall>) -> Bridge {
        Bridge {
            inner,
            events: EventWriter::new(Rc::clone(&call)),
            call,
            chat_sse: Vec::new(),
        }
    }
}

impl Translator for Bridge {
    /// `request` is the call's chat form, validated; the provider's translator gets it
    /// with the chat body it came from.
    fn request(
        &mut self,
        request: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        if let Some(field) = self.call.continues_stored {
            return Err(GatewayError::invalid_param(
                field,
                format!("`{field}` continues a conversation stored by the provider, but this model's provider keeps no state (the gateway reaches it through a stateless Responses bridge): send the whole conversation in `input`, or route the request to an OpenAI or Azure OpenAI deployment"),
            )
            .with_code("unsupported_by_provider"));
        }
        if let Some(refusal) = &self.call.bridge_refusal {
            return Err(refusal.clone());
        }
        self.inner.request(
            ClientRequest {
                body: &self.call.chat_body,
                validated: request.validated,
            },
            target,
        )
    }

    fn is_stream(&self) -> bool {
        self.inner.is_stream()
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        self.inner.response_status(upstream_status)
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let mut answer = self.inner.response(upstream_status, body);
        if !(200..300).contains(&answer.status) {
            return answer;
        }
        let Ok(chat) = serde_json::from_slice::<Value>(&answer.body) else {
            return answer;
        };
        answer.body = response::from_chat_completion(&chat, answer.usage.as_ref(), &self.call.echo);
        answer
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        self.chat_sse.clear();
        self.inner.stream(chunk, end_of_stream, &mut self.chat_sse);
        self.events.write(&self.chat_sse, end_of_stream, out);
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.inner.stream_usage()
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.inner.stream_buffered_bytes() + self.events.buffered_bytes()
    }

    fn stream_preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        self.inner.stream_preamble(buffered, end_of_stream)
    }
}
