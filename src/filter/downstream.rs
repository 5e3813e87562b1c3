//! The downstream instance: authenticates the client, validates the body and routes the
//! request to its alias's cluster by setting the routing header.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, Buffer, Map};
use super::root::Runtime;
use crate::auth;
use crate::error::{ErrorKind, GatewayError};
use crate::request::{estimate_prompt_tokens, parse_chat_request};
use crate::routing::{self, ROUTE_HEADER};

/// What the request is, decided from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Not yet known, or answered locally.
    None,
    /// `POST /v1/chat/completions`, waiting for its body.
    Chat,
}

/// Per-request state of the downstream instance.
pub struct DownstreamHttp {
    runtime: Rc<Runtime>,
    endpoint: Endpoint,
    /// Set once the gateway answered locally, so response callbacks leave that answer alone.
    answered_locally: bool,
}

impl DownstreamHttp {
    /// A context for one request.
    pub fn new(runtime: Rc<Runtime>) -> Self {
        DownstreamHttp {
            runtime,
            endpoint: Endpoint::None,
            answered_locally: false,
        }
    }

    fn reply_json(&mut self, status: u16, body: &[u8], extra: &[(&str, &str)]) -> Action {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
        if let Err(e) = host::send_local_response(status, &headers, body) {
            log::error!("local reply failed (host status {})", e.0);
        }
        self.answered_locally = true;
        Action::Pause
    }

    fn reply_error(&mut self, error: &GatewayError) -> Action {
        let body = error.to_json();
        if error.status == 401 {
            return self.reply_json(error.status, &body, &[("www-authenticate", "Bearer")]);
        }
        self.reply_json(error.status, &body, &[])
    }

    /// Checks `Authorization: Bearer <key>` against the master key.
    fn authenticate(&self) -> Result<(), GatewayError> {
        let header = host::header_text(Map::RequestHeaders, "authorization");
        let Some(token) = header.as_deref().and_then(auth::bearer_token) else {
            return Err(GatewayError::new(
                ErrorKind::Authentication,
                "Missing API key: send `Authorization: Bearer <your gateway key>`.",
            )
            .with_code("missing_api_key"));
        };
        if auth::digests_equal(&auth::digest(token), &self.runtime.master_key) {
            Ok(())
        } else {
            Err(
                GatewayError::new(ErrorKind::Authentication, "Incorrect API key provided.")
                    .with_code("invalid_api_key"),
            )
        }
    }

    fn strip_client_headers(&self) {
        for name in routing::CLIENT_CREDENTIAL_HEADERS
            .iter()
            .chain(routing::INTERNAL_REQUEST_HEADERS)
        {
            if let Err(e) = host::remove_header(Map::RequestHeaders, name) {
                log::warn!(
                    "could not remove request header {name} (host status {})",
                    e.0
                );
            }
        }
    }
}

impl Context for DownstreamHttp {}

impl HttpContext for DownstreamHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let method = host::header_text(Map::RequestHeaders, ":method").unwrap_or_default();
        let full_path = host::header_text(Map::RequestHeaders, ":path").unwrap_or_default();
        let path = full_path.split('?').next().unwrap_or("");
        let is_models = matches!(path, "/v1/models" | "/models");
        let is_chat = matches!(path, "/v1/chat/completions" | "/chat/completions");

        if !is_models && !is_chat {
            let e = GatewayError::new(
                ErrorKind::NotFound,
                format!("Unknown path `{path}`: the gateway serves POST /v1/chat/completions and GET /v1/models."),
            )
            .with_code("unknown_url");
            return self.reply_error(&e);
        }
        if let Err(e) = self.authenticate() {
            return self.reply_error(&e);
        }
        if is_models {
            if method != "GET" {
                let e = GatewayError::invalid_request(format!("{path} takes GET, not {method}"))
                    .with_status(405);
                return self.reply_error(&e);
            }
            let created = host::now_nanos() / 1_000_000_000;
            let body = routing::models_list_json(&self.runtime.config, created);
            return self.reply_json(200, &body, &[]);
        }
        if method != "POST" {
            let e = GatewayError::invalid_request(format!("{path} takes POST, not {method}"))
                .with_status(405);
            return self.reply_error(&e);
        }
        if end_of_stream {
            return self.reply_error(&GatewayError::invalid_request(
                "request body is empty: send a JSON object with `model` and `messages`",
            ));
        }
        self.strip_client_headers();
        self.endpoint = Endpoint::Chat;
        // Hold the headers: the route depends on the `model` in the body.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.endpoint != Endpoint::Chat {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host::get_buffer(Buffer::RequestBody, 0, body_size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot read the request body (host status {})", e.0);
                return self
                    .reply_error(&GatewayError::internal("could not read the request body"));
            }
        };
        let request = match parse_chat_request(&body) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        let alias = match routing::resolve_alias(&self.runtime.config, &request.model) {
            Ok(a) => a,
            Err(e) => return self.reply_error(&e),
        };
        let estimate = estimate_prompt_tokens(&request);
        let route = match routing::choose_route(&self.runtime.config, alias, estimate) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        if let Err(e) = host::set_header(Map::RequestHeaders, ROUTE_HEADER, &route.key) {
            log::error!("cannot set the routing header (host status {})", e.0);
            return self.reply_error(&GatewayError::internal("could not route the request"));
        }
        let _ = host::set_property(&["llm_model_alias"], alias.name.as_bytes());
        self.endpoint = Endpoint::None;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.answered_locally {
            return Action::Continue;
        }
        Action::Continue
    }
}
