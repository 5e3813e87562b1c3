//! OpenAI and Azure OpenAI answer the Responses API themselves: the client's body goes
//! upstream with only `model` rewritten, the answer comes back byte for byte, and usage is
//! read from the final Response object or the `response.completed` event (or
//! `response.incomplete` / `response.failed`, which also end a stream).

use serde_json::{Map, Value};

use super::response::usage_of;
use crate::error::{ErrorKind, GatewayError};
use crate::provider::registry::{ProviderSpec, WireApi};
use crate::provider::{
    join_path, openai_family, ClientRequest, Target, TranslatedResponse, Translator,
    UpstreamRequest,
};
use crate::sse::SseDecoder;
use crate::usage::Usage;

/// Events that end a Responses stream and carry the final Response object.
const FINAL_EVENTS: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// One attempt to a deployment that speaks the Responses API.
pub struct Passthrough {
    provider: &'static ProviderSpec,
    stream: bool,
    decoder: SseDecoder,
    usage: Option<Usage>,
}

impl Passthrough {
    /// For a deployment of `provider`.
    pub fn new(provider: &'static ProviderSpec) -> Passthrough {
        Passthrough {
            provider,
            stream: false,
            decoder: SseDecoder::default(),
            usage: None,
        }
    }
}

/// `POST /v1/responses`, or Azure's v1 path (which takes no `api-version`).
fn responses_path(provider: &ProviderSpec, target: &Target<'_>) -> String {
    if provider.wire == WireApi::AzureOpenAi {
        join_path(target.base_path, "/openai/v1/responses")
    } else {
        join_path(target.base_path, "/responses")
    }
}

impl Translator for Passthrough {
    fn request(
        &mut self,
        client: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut request: Map<String, Value> = serde_json::from_slice(client.body).map_err(|e| {
            GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
        })?;
        request.insert(
            "model".into(),
            Value::String(target.upstream_model.to_string()),
        );
        self.stream = request.get("stream") == Some(&Value::Bool(true));
        let body = serde_json::to_vec(&request)
            .map_err(|e| GatewayError::internal(format!("could not encode the request: {e}")))?;
        Ok(UpstreamRequest {
            path: responses_path(self.provider, target),
            headers: openai_family::credential_header(self.provider, target)
                .into_iter()
                .collect(),
            body,
            dropped: Vec::new(),
        })
    }

    fn is_stream(&self) -> bool {
        self.stream
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        let value = serde_json::from_slice::<Value>(body).ok();
        if (200..300).contains(&upstream_status) {
            return match value {
                Some(v) if v.get("object").and_then(Value::as_str) == Some("response") => {
                    TranslatedResponse {
                        status,
                        body: body.to_vec(),
                        usage: v.get("usage").and_then(usage_of),
                    }
                }
                _ => TranslatedResponse::error(
                    &GatewayError::new(
                        ErrorKind::Api,
                        "the provider returned a 2xx body that is not a Response object",
                    )
                    .with_status(502)
                    .with_code("bad_upstream_response"),
                ),
            };
        }
        // OpenAI's errors are already in the shape the client expects.
        if value.is_some_and(|v| v.get("error").is_some_and(Value::is_object)) {
            return TranslatedResponse {
                status,
                body: body.to_vec(),
                usage: None,
            };
        }
        let text = String::from_utf8_lossy(body);
        let snippet: String = text.trim().chars().take(500).collect();
        TranslatedResponse::error(
            &GatewayError::new(
                ErrorKind::from_status(status),
                format!("the provider answered {status}: {snippet}"),
            )
            .with_status(status),
        )
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(chunk);
        let mut usage = None;
        for (event, data) in super::complete_events(&mut self.decoder, chunk) {
            // The type is the event's first field as OpenAI writes it; the name may be absent.
            let head = data.as_bytes().get(..64).unwrap_or(data.as_bytes());
            let is_final =
                |t: &&str| event == *t || crate::bytes::find(head, t.as_bytes()).is_some();
            if FINAL_EVENTS.iter().any(is_final) {
                if let Ok(v) = crate::json::path::from_str::<Value>(&data) {
                    usage = v.pointer("/response/usage").and_then(usage_of);
                }
            }
        }
        if usage.is_some() {
            self.usage = usage;
        }
        if end_of_stream {
            self.decoder.finish();
        }
    }

    fn stream_usage(&self) -> Option<Usage> {
        self.usage
    }

    fn stream_buffered_bytes(&self) -> usize {
        self.decoder.buffered_capacity()
    }
}
