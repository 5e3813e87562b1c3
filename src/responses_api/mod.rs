//! `POST /v1/responses`, OpenAI's Responses API (what Codex and the Agents SDK speak).
//!
//! The downstream instance parses the request once ([`parse`]) into a [`ResponsesCall`]:
//! the client's body, and the same request as an OpenAI chat request, which routing,
//! admission, budgets and the usage bound use exactly as they use a chat request. Each
//! attempt then picks its translator by the deployment's provider ([`translator_for`]):
//!
//! * OpenAI and Azure OpenAI speak the Responses API themselves: the body is forwarded
//!   with the model rewritten (`store`, `previous_response_id`, `include` and everything
//!   else kept), and usage is read from the final object or the `response.completed`
//!   event ([`passthrough`]);
//! * every other provider is reached through a stateless bridge: the chat request goes
//!   through the provider's own chat translator, and its OpenAI-shaped answer, JSON or
//!   SSE, is turned into a Response object or the Responses event sequence ([`bridge`]).
//!
//! Nothing here runs for chat requests: the downstream instance branches off by path.

mod bridge;
mod events;
mod passthrough;
mod request;
mod response;
mod write;

use std::ops::ControlFlow;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::provider::registry::WireApi;
use crate::provider::{Guarded, ProviderKind, Translator};
use crate::sse::SseDecoder;

pub use request::parse;

/// The operation label of this endpoint in stats and the access log.
pub const OPERATION: &str = "responses";

/// A parsed `/v1/responses` request, shared by the attempts of one request.
#[derive(Debug)]
pub struct ResponsesCall {
    /// The same request as an OpenAI chat request body, for the bridge.
    pub chat_body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The request continues a conversation the provider stored (`previous_response_id`
    /// or `conversation`): only a provider that keeps state can answer it, and its usage
    /// is not bounded by the request's own size.
    pub continues_stored: Option<&'static str>,
    /// Why the bridge cannot take this request (a tool type it has no equivalent for), said
    /// as a 400 by a bridged attempt only: OpenAI takes it as it is.
    pub bridge_refusal: Option<GatewayError>,
    /// Request fields a Response object repeats (`instructions`, `tools`, `tool_choice`,
    /// `temperature`, ...).
    pub echo: Map<String, Value>,
}

/// The events `bytes` complete, as (event name, data): one decoding loop for the module's
/// two streams.
fn complete_events(decoder: &mut SseDecoder, bytes: &[u8]) -> Vec<(String, String)> {
    let mut events = Vec::new();
    decoder.feed(bytes, |e| {
        events.push((e.event.unwrap_or_default().to_string(), e.data.to_string()));
        ControlFlow::Continue(())
    });
    events
}

/// True when deployments of `kind` speak the Responses API themselves.
pub fn speaks_responses(kind: ProviderKind) -> bool {
    kind == ProviderKind::OpenAi || kind.spec().wire == WireApi::AzureOpenAi
}

/// The translator for one attempt of a Responses request to a deployment of `kind`.
pub fn translator_for(kind: ProviderKind, call: Rc<ResponsesCall>) -> Box<dyn Translator> {
    let inner: Box<dyn Translator> = if speaks_responses(kind) {
        Box::new(passthrough::Passthrough::new(kind.spec()))
    } else {
        Box::new(bridge::Bridge::new(
            crate::provider::provider_translator(kind),
            call,
        ))
    };
    Box::new(Guarded::new(inner))
}
