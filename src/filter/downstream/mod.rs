//! The downstream instance: authenticates the client, validates the body and routes the
//! request to its alias's cluster by setting the routing header.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

mod gates;

use super::handoff::{self, Handed, HandedRequest, Report};
use super::host::{self, Buffer, Map};
use super::root::Runtime;
use super::stats;
use super::store::SharedData;
use super::worker_bytes::Holding;
use crate::auth;
use crate::config::keys::{self, VirtualKey};
use crate::error::{ErrorKind, GatewayError};
use crate::header_map;
use crate::limits::admission::{self, Admission, RequestFacts};
use crate::limits::refusal::Refusal;
use crate::limits::settlement::{self, Account, Ending, Settlement};
use crate::messages_api::{self, InboundApi};
use crate::metrics::{self, Outcome};
use crate::provider::ProviderKind;
use crate::request::{estimate_prompt_tokens, validate_chat};
use crate::routing::{self, OPERATION_STATE, ROUTE_HEADER};
use crate::usage::Usage;
use gates::{CacheState, Stage, Waiting};

/// What the request is, decided from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Not yet known, or answered locally.
    None,
    /// `POST /v1/chat/completions`, waiting for its body.
    Chat,
    /// `POST /v1/embeddings`, waiting for its body (see [`embeddings`]).
    Embeddings,
    /// `POST /v1/responses`, waiting for its body.
    Responses,
}

mod embeddings;

/// Per-request state of the downstream instance.
pub struct DownstreamHttp {
    runtime: Rc<Runtime>,
    endpoint: Endpoint,
    /// Set once the gateway answered locally, so response callbacks leave that answer alone.
    answered_locally: bool,
    /// What the stats of this request need.
    started_nanos: u64,
    first_byte_nanos: Option<u64>,
    status: u16,
    alias: Option<String>,
    stream: bool,
    /// Only model requests (chat, embeddings, messages, responses) are counted in the
    /// model stats.
    counted: bool,
    /// The authenticated key (`None` for the master key).
    key: Option<usize>,
    /// Bytes of request body buffered so far: a body that ends with trailers is complete
    /// at the trailers, which do not say its size.
    body_size: usize,
    /// The reservation made at admission, settled exactly once in `on_log`.
    admission: Option<Admission>,
    /// `x-ratelimit-*` values for the response.
    rate_headers: Vec<(&'static str, String)>,
    /// The parsed request handed to the upstream instance, released when this context ends.
    handoff: Option<u64>,
    /// What the attempts reported back through the hand-off.
    report: Option<Rc<RefCell<Report>>>,
    /// Bytes of the answer passed on to the client, to charge an answer whose usage never
    /// came.
    delivered_bytes: u64,
    /// The body's bytes, held against the worker's limit until the request ends (the parsed
    /// request lives as long, in the hand-off).
    held: Holding,
    /// The budget reservation in the shared spend store, settled in `on_log`.
    ledger: Option<crate::limits::ledger::Reservation>,
    /// The request waiting for the spend store's answer: the call's token and what
    /// forwarding it needs.
    waiting: Option<Waiting>,
    /// The response cache's state, for a request it applies to.
    cache: Option<Box<CacheState>>,
    /// The API the client speaks: errors take its shape.
    api: InboundApi,
    /// A Messages request's `anthropic-beta` and `anthropic-version`, for the attempts.
    anthropic_headers: Vec<(&'static str, String)>,
    /// A Responses request, parsed, for the attempts.
    responses: Option<Rc<crate::responses_api::ResponsesCall>>,
    /// Its messages and answer go on its spans (its model's or key's `capture_content`).
    capture: bool,
    /// The captured request (scrubbed, capped) and whether it is whole JSON, written as
    /// the answer ends.
    captured: Option<(String, bool)>,
}

impl Drop for DownstreamHttp {
    fn drop(&mut self) {
        if let Some(id) = self.handoff.take() {
            handoff::release(id);
        }
    }
}

impl DownstreamHttp {
    /// A context for one request.
    pub fn new(runtime: Rc<Runtime>) -> Self {
        DownstreamHttp {
            runtime,
            endpoint: Endpoint::None,
            answered_locally: false,
            started_nanos: 0,
            first_byte_nanos: None,
            status: 0,
            alias: None,
            stream: false,
            counted: false,
            key: None,
            body_size: 0,
            admission: None,
            rate_headers: Vec::new(),
            handoff: None,
            report: None,
            delivered_bytes: 0,
            held: Holding::default(),
            ledger: None,
            waiting: None,
            cache: None,
            api: InboundApi::Chat,
            anthropic_headers: Vec::new(),
            responses: None,
            capture: false,
            captured: None,
        }
    }

    /// An error body in the shape of the client's API.
    fn error_body(&self, error: &GatewayError) -> Vec<u8> {
        if self.api.is_anthropic() {
            messages_api::gateway_error_json(error)
        } else {
            error.to_json()
        }
    }

    /// The authenticated key (the master key until authentication says otherwise).
    fn virtual_key(&self) -> &VirtualKey {
        let table = &self.runtime.config.keys;
        self.key
            .and_then(|i| table.keys.get(i))
            .unwrap_or_else(|| table.master())
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
        let body = self.error_body(error);
        if error.status == 401 && !self.api.is_anthropic() {
            return self.reply_json(error.status, &body, &[("www-authenticate", "Bearer")]);
        }
        self.reply_json(error.status, &body, &[])
    }

    fn too_large(&self) -> GatewayError {
        GatewayError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "The request body is larger than this gateway accepts ({} bytes).",
                self.runtime.config.general.max_request_body_bytes
            ),
        )
        .with_code("request_too_large")
    }

    /// A limit's refusal, with its `retry-after` and `x-ratelimit-*` headers.
    fn reply_refusal(&mut self, refusal: Refusal) -> Action {
        let headers = refusal.headers();
        let error = GatewayError::from(refusal);
        let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = self.error_body(&error);
        self.reply_json(error.status, &body, &extra)
    }

    /// The worker holds as much as it may: a 503 the client can retry.
    fn worker_full(&mut self) -> Action {
        let e = GatewayError::new(
            ErrorKind::Overloaded,
            "The gateway is holding as many request bytes as it may (max_buffered_bytes_per_worker); retry shortly.",
        )
        .with_code("gateway_busy");
        let body = self.error_body(&e);
        self.reply_json(e.status, &body, &[("retry-after", "1")])
    }

    /// Checks the key (`Authorization: Bearer <key>`, or `x-api-key` on the Messages API)
    /// against the master key and the virtual keys (by SHA-256 digest), including expiry.
    fn authenticate(&mut self, token: Option<&str>, now_secs: u64) -> Result<(), GatewayError> {
        let Some(token) = token else {
            let how = if self.api.is_anthropic() {
                "Missing API key: send `x-api-key: <your gateway key>` or `Authorization: Bearer <your gateway key>`."
            } else {
                "Missing API key: send `Authorization: Bearer <your gateway key>`."
            };
            return Err(
                GatewayError::new(ErrorKind::Authentication, how).with_code("missing_api_key")
            );
        };
        let table = &self.runtime.config.keys;
        let key = keys::authenticate(
            table,
            &self.runtime.master_key,
            &auth::digest(token),
            now_secs,
        )?;
        self.key = if key.is_master {
            None
        } else {
            table.keys.iter().position(|k| k.name == key.name)
        };
        // For the access log: who made the request, by name (never the key itself).
        let _ = host::set_property(&["llm_key"], key.name.as_bytes());
        if let Some(team) = &key.team {
            let _ = host::set_property(&["llm_team"], team.as_bytes());
        }
        Ok(())
    }

    /// For Envoy's global rate limit filter: names the virtual key and its team (nothing
    /// for the master key, so no descriptor counts it), and starts its tokens and cost at
    /// 0, so that a request that ends without an answer counts nothing.
    fn publish_limit_identity(&self) {
        let key = self.virtual_key();
        if key.is_master {
            return;
        }
        let mut values = vec![
            (routing::LIMIT_KEY_STATE, key.name.as_str()),
            (routing::TOTAL_TOKENS_STATE, "0"),
            (routing::COST_STATE, "0"),
        ];
        if let Some(team) = &key.team {
            values.push((routing::LIMIT_TEAM_STATE, team.as_str()));
        }
        for (name, value) in values {
            if let Err(e) = host::set_property(&[name], value.as_bytes()) {
                log::error!(
                    "could not publish {name} for the rate limit (host status {})",
                    e.0
                );
            }
        }
    }

    /// Removes client credentials and gateway-internal headers; `present` is the request's
    /// header map, so that only headers actually sent cost a host call.
    fn strip_client_headers(&self, present: Option<&[(&[u8], &[u8])]>) {
        let names = routing::CLIENT_CREDENTIAL_HEADERS
            .iter()
            .chain(routing::INTERNAL_REQUEST_HEADERS)
            .copied();
        if let Err(e) = host::remove_present(Map::RequestHeaders, present, names) {
            log::warn!("could not remove a request header (host status {})", e.0);
        }
    }

    /// The whole body is in: routes it by its endpoint.
    fn route_endpoint(&mut self, body_size: usize) -> Action {
        match self.endpoint {
            Endpoint::Embeddings => self.route_embeddings(body_size),
            _ => self.route_body(body_size),
        }
    }

    /// The whole body is in: validates it, admits the request and routes it.
    fn route_body(&mut self, body_size: usize) -> Action {
        let body = match host::get_buffer(Buffer::RequestBody, 0, body_size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot read the request body (host status {})", e.0);
                return self
                    .reply_error(&GatewayError::internal("could not read the request body"));
            }
        };
        let responses = if self.api == InboundApi::Responses {
            match crate::responses_api::parse(&body) {
                Ok(call) => Some(Rc::new(call)),
                Err(e) => return self.reply_error(&e),
            }
        } else {
            None
        };
        self.responses.clone_from(&responses);
        let request = match validate_chat(self.api, &body, responses.as_deref()) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        self.stream = request.is_stream();
        let runtime = Rc::clone(&self.runtime);
        let config = &runtime.config;
        let alias = match routing::resolve_alias(config, &request.model) {
            Ok(a) => a,
            Err(e) => return self.reply_error(&e),
        };
        self.alias = Some(alias.name.clone());
        self.capture = alias.capture_content || self.virtual_key().capture_content;
        if let Err(e) = keys::check_model(self.virtual_key(), &alias.name) {
            return self.reply_error(&e);
        }
        if alias.mode == Some(crate::config::model::ModelMode::Embedding) {
            return self.reply_error(&embeddings::chat_to_embedding_model(&alias.name));
        }
        let estimate = estimate_prompt_tokens(&request);
        let route = match routing::choose_route(config, alias, estimate) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        if self.api == InboundApi::CountTokens && !self.all_anthropic(route) {
            // Only Anthropic counts with its own tokenizer; elsewhere the estimate that
            // routing uses is the answer, and the header says so.
            let body = format!("{{\"input_tokens\":{estimate}}}");
            return self.reply_json(
                200,
                body.as_bytes(),
                &[(messages_api::TOKEN_COUNT_HEADER, "estimated")],
            );
        }
        if let Err(action) = self.admit(&|| RequestFacts::for_route(config, route, &request)) {
            return action;
        }
        self.pass_gates(HandedRequest::Chat(Rc::new(request)), &route.key, body)
    }

    /// Admitted: through the response cache and the shared ledger when they are
    /// configured, then forwarded. Every endpoint passes here, so no admitted request
    /// escapes the shared budgets.
    fn pass_gates(&mut self, request: HandedRequest, route_key: &str, body: Vec<u8>) -> Action {
        let general = &self.runtime.config.general;
        if general.spend_store.is_some() || general.response_cache.is_some() {
            return self.proceed(
                Box::new((request, route_key.to_string(), body)),
                Stage::Cache,
            );
        }
        self.forward(request, route_key, &body)
    }

    /// Admitted (and past the cache and the shared ledger, when configured): routes the
    /// request to `route_key` and hands it to the upstream instance.
    fn forward(&mut self, request: HandedRequest, route_key: &str, body: &[u8]) -> Action {
        if let Err(action) = self.route_to(route_key) {
            return action;
        }
        // Span attributes: written only when there are spans to carry them.
        if let HandedRequest::Chat(chat) = &request {
            if let Some(otel) = &self.runtime.config.general.opentelemetry {
                for (name, value) in crate::otel::request_span_values(chat) {
                    let _ = host::set_property(&[name], value.as_bytes());
                }
                if self.capture {
                    self.captured = crate::otel::captured_input(body, otel.capture_max_bytes);
                }
            }
        }
        self.hand_off(request, body)
    }

    /// Writes the captured request and answer where the client's span reads them, as the
    /// answer ends: after every attempt's span is finished (Envoy finishes the answering
    /// attempt's before it passes on the answer's end), so that they do not repeat them.
    fn publish_capture(&mut self) {
        let Some((input, whole)) = self.captured.take() else {
            return;
        };
        let set = |name, value: &[u8]| {
            let _ = host::set_property(&[name], value);
        };
        set(crate::otel::INPUT_STATE, input.as_bytes());
        if whole {
            set(crate::otel::INPUT_TYPE_STATE, b"application/json");
        }
        let text = self
            .report
            .as_ref()
            .and_then(|r| r.borrow_mut().captured_text.take());
        if let Some(text) = text {
            set(crate::otel::OUTPUT_STATE, text.as_bytes());
            set(crate::otel::OUTPUT_TYPE_STATE, b"text/plain");
        }
    }

    /// Admits the request against its key's limits in this Envoy (`facts` only computed
    /// for a virtual key); `Err` with the refusal already answered.
    fn admit(&mut self, facts: &dyn Fn() -> RequestFacts) -> Result<(), Action> {
        let key = self.virtual_key();
        // Not counted (`count_tokens`): no limit applies.
        if key.is_master || !self.counted {
            return Ok(());
        }
        let config = &self.runtime.config;
        match admission::admit(
            &SharedData,
            key,
            config.keys.team_of(key),
            &facts(),
            // The body follows the headers at once: their time saves a host call.
            self.started_nanos / 1_000_000_000,
        ) {
            Ok(a) => {
                self.rate_headers = admission::rate_limit_headers(&a);
                self.admission = Some(a);
                Ok(())
            }
            Err(refusal) => Err(self.reply_refusal(refusal)),
        }
    }

    /// Publishes the key's identity for the global rate limit and sets the route header;
    /// `Err` with the failure already answered.
    fn route_to(&mut self, route_key: &str) -> Result<(), Action> {
        if self.runtime.config.general.rate_limit_service.is_some() {
            self.publish_limit_identity();
        }
        if let Err(e) = host::set_header(Map::RequestHeaders, ROUTE_HEADER, route_key) {
            log::error!("cannot set the routing header (host status {})", e.0);
            return Err(self.reply_error(&GatewayError::internal("could not route the request")));
        }
        Ok(())
    }

    /// Hands the parsed request to the attempts and lets the request go on to its route.
    fn hand_off(&mut self, request: HandedRequest, body: &[u8]) -> Action {
        let handed = Handed {
            request,
            report: Rc::default(),
            anthropic_headers: std::mem::take(&mut self.anthropic_headers).into(),
            responses: self.responses.take(),
            capture: self.capture,
        };
        let report = Rc::clone(&handed.report);
        self.handoff = handoff::register(handed, body, self.api);
        if self.handoff.is_some() {
            self.report = Some(report);
        }
        self.endpoint = Endpoint::None;
        Action::Continue
    }

    /// A provider error that came without a body (or a redirect the upstream instance
    /// turned into a 502) is answered as an OpenAI-shaped error with the same status. The
    /// answer is replaced here, after Envoy's retries, so that a retriable status still
    /// falls back; the headers the gateway set on the answer are kept.
    fn reply_empty_error(&mut self) -> Action {
        let status = self.status;
        let error = GatewayError::new(
            ErrorKind::from_status(status),
            format!("The provider failed with HTTP {status} and gave no details."),
        )
        .with_status(status)
        .with_code("provider_error");
        let raw = host::get_headers(Map::ResponseHeaders).unwrap_or_default();
        let present = header_map::decode(&raw).unwrap_or_default();
        let mut extra: Vec<(&str, &str)> = present
            .iter()
            .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
            .filter(|(n, _)| {
                !n.starts_with(':') && !matches!(*n, "content-type" | "content-length")
            })
            .collect();
        let rate_headers = std::mem::take(&mut self.rate_headers);
        extra.extend(rate_headers.iter().map(|(k, v)| (*k, v.as_str())));
        let body = self.error_body(&error);
        self.reply_json(status, &body, &extra)
    }
}

impl HttpContext for DownstreamHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One host call for the whole map: the gateway looks at several headers.
        let raw = host::get_headers(Map::RequestHeaders).unwrap_or_default();
        let headers = header_map::decode(&raw);
        let text = |name: &str| -> Option<String> {
            match &headers {
                Some(h) => {
                    header_map::find(h, name).map(|v| String::from_utf8_lossy(v).into_owned())
                }
                None => host::header_text(Map::RequestHeaders, name),
            }
        };
        let method = text(":method").unwrap_or_default();
        let full_path = text(":path").unwrap_or_default();
        let path = full_path.split('?').next().unwrap_or("");
        let is_models = matches!(path, "/v1/models" | "/models");
        let is_chat = matches!(path, "/v1/chat/completions" | "/chat/completions");
        let is_embeddings = !is_chat && matches!(path, "/v1/embeddings" | "/embeddings");
        let is_responses = !is_chat && matches!(path, "/v1/responses" | "/responses");

        if is_embeddings {
            self.api = InboundApi::Embeddings;
        } else if is_responses {
            self.api = InboundApi::Responses;
        }
        if !is_models && !is_chat && !is_embeddings && !is_responses {
            match messages_api_of(path) {
                Some(api) => self.api = api,
                None if method == "HEAD" && matches!(path, "/" | "/api/hello") => {
                    // A client's connectivity check (Claude Code's): no provider, no key.
                    return self.reply_json(200, b"", &[]);
                }
                None => {
                    // An Anthropic client (its SDKs send `anthropic-version` on every call)
                    // reads the refusal in its own shape.
                    if path.starts_with("/v1/messages") || text("anthropic-version").is_some() {
                        self.api = InboundApi::Messages;
                    }
                    let e = GatewayError::new(
                        ErrorKind::NotFound,
                        format!("Unknown path `{path}`: the gateway serves POST /v1/chat/completions, POST /v1/embeddings, POST /v1/responses, POST /v1/messages, POST /v1/messages/count_tokens and GET /v1/models."),
                    )
                    .with_code("unknown_url");
                    return self.reply_error(&e);
                }
            }
        }
        let now = host::now_nanos();
        let authorization = text("authorization");
        let token = authorization.as_deref().and_then(auth::bearer_token);
        // Anthropic's SDKs send `anthropic-version` on every call, `GET /v1/models` included.
        let anthropic_client =
            self.api.is_anthropic() || (is_models && text("anthropic-version").is_some());
        let api_key = if anthropic_client {
            text("x-api-key")
        } else {
            None
        };
        let token = api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .or(token);
        if let Err(e) = self.authenticate(token, now / 1_000_000_000) {
            return self.reply_error(&e);
        }
        if is_chat || is_embeddings || is_responses || self.api == InboundApi::Messages {
            self.counted = true;
            self.started_nanos = now;
        }
        if self.api.is_anthropic() {
            for name in messages_api::translator::FORWARDED_HEADERS {
                if let Some(v) = text(name) {
                    self.anthropic_headers.push((name, v));
                }
            }
        }
        // The access log's `operation`: a chat request writes it only when tracing is on
        // (a property write is one of the dearest host calls); absent means chat.
        if self.api != InboundApi::Chat || self.runtime.config.general.opentelemetry.is_some() {
            let _ = host::set_property(&[OPERATION_STATE], self.api.operation().as_bytes());
        }
        if is_models {
            if method != "GET" {
                let e = GatewayError::invalid_request(format!("{path} takes GET, not {method}"))
                    .with_status(405);
                return self.reply_error(&e);
            }
            let created = now_secs();
            let key = self.virtual_key();
            let config = &self.runtime.config;
            let body = if anthropic_client {
                // An Anthropic SDK (or Claude Code) listing models: its own shape.
                let aliases = config.aliases.iter().map(|a| a.name.as_str());
                messages_api::models_list_json(
                    aliases.filter(|alias| keys::model_allowed(key, alias)),
                    created,
                )
            } else {
                routing::models_list_json(config, created, |alias| keys::model_allowed(key, alias))
            };
            return self.reply_json(200, &body, &[]);
        }
        if method != "POST" {
            let e = GatewayError::invalid_request(format!("{path} takes POST, not {method}"))
                .with_status(405);
            return self.reply_error(&e);
        }
        if end_of_stream {
            let fields = if is_chat { "messages" } else { "input" };
            return self.reply_error(&GatewayError::invalid_request(format!(
                "request body is empty: send a JSON object with `model` and `{fields}`"
            )));
        }
        let declared = text("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(len) = declared {
            if len > self.runtime.config.general.max_request_body_bytes {
                return self.reply_error(&self.too_large());
            }
            // Reserve the declared body at once, before any of it is buffered.
            if !self.held.resize(len) {
                return self.worker_full();
            }
        }
        // A key that no body could make admissible is refused before its body is read.
        let key = self.virtual_key();
        if !key.is_master && self.counted {
            let team = self.runtime.config.keys.team_of(key);
            if let Err(refusal) = admission::precheck(&SharedData, key, team, now / 1_000_000_000) {
                return self.reply_refusal(refusal);
            }
        }
        self.strip_client_headers(headers.as_deref());
        self.endpoint = if is_embeddings {
            Endpoint::Embeddings
        } else if is_responses {
            Endpoint::Responses
        } else {
            Endpoint::Chat
        };
        // Hold the headers: the route depends on the `model` in the body.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.endpoint == Endpoint::None {
            return Action::Continue;
        }
        if body_size as u64 > self.runtime.config.general.max_request_body_bytes {
            return self.reply_error(&self.too_large());
        }
        if !self.held.resize(body_size as u64) {
            return self.worker_full();
        }
        if !end_of_stream {
            self.body_size = body_size;
            return Action::Pause;
        }
        self.route_endpoint(body_size)
    }

    /// An HTTP/2 (or chunked HTTP/1.1) request whose body is followed by trailers never
    /// sees its body end: it ends here.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.endpoint == Endpoint::None {
            return Action::Continue;
        }
        self.route_endpoint(self.body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.status = host::header_text(Map::ResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if end_of_stream {
            self.publish_capture();
        }
        if self.answered_locally {
            return Action::Continue;
        }
        if end_of_stream && self.status >= 400 {
            return self.reply_empty_error();
        }
        for (name, value) in &self.rate_headers {
            let _ = host::set_header(Map::ResponseHeaders, name, value);
        }
        if self.cache.is_some() {
            self.cache_response_headers();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.publish_capture();
        }
        if self.cache.as_ref().is_some_and(|c| c.buffering) {
            return self.cache_response_body(body_size, end_of_stream);
        }
        self.delivered_bytes = self.delivered_bytes.saturating_add(body_size as u64);
        // Time to first byte is a stream's figure only.
        if self.stream && body_size > 0 && self.first_byte_nanos.is_none() {
            self.first_byte_nanos = Some(host::now_nanos());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if !self.counted {
            return;
        }
        let last = self.last_attempt();
        let outcome = self.outcome(&last);
        if let Some(admission) = self.admission.take() {
            // Settled exactly once: the real cost replaces the reservation; an answer
            // whose usage never came is charged an estimate, a failure nothing.
            let ending = Ending {
                status: self.status,
                usage: outcome
                    .usage
                    .map(|u| (u, outcome.cost_micro_usd.unwrap_or(0))),
                complete: last.complete,
                usage_rejected: last.usage_rejected,
                delivered_bytes: self.delivered_bytes,
            };
            let how = ending.settlement();
            if how != Settlement::Failed && !last.complete {
                log::info!(
                    "key `{}`: the answer ended without its final usage; charged {how:?}",
                    self.virtual_key().name
                );
            }
            if let Some(reservation) = self.ledger.take() {
                let cost = admission.charge_of(how).map_or(0, |(_, c)| c);
                super::spend::enqueue_settlement(&reservation, cost, now_secs());
            }
            if let Err(e) = settlement::settle(&SharedData, admission, how, now_secs()) {
                log::error!("could not settle the request's reservation: {e:?}");
            }
            self.record_spend();
        }
        stats::record_all(&metrics::records(&outcome));
    }
}

fn state_text(name: &str) -> String {
    host::property_text(&[name]).unwrap_or_default()
}

fn state_u64(name: &str) -> Option<u64> {
    host::property_text(&[name]).and_then(|v| v.parse().ok())
}

impl DownstreamHttp {
    /// Publishes where the key's and its team's budgets stand.
    fn record_spend(&self) {
        let config = &self.runtime.config;
        let key = self.virtual_key();
        let now = now_secs();
        let s = settlement::spend(&SharedData, Account::Key(key), now);
        let mut records = metrics::budget_gauges(
            "key",
            &key.name,
            s.spent_micro_usd,
            key.limits.max_budget_micro_usd,
        );
        if let Some(team) = config.keys.team_of(key) {
            let s = settlement::spend(&SharedData, Account::Team(team), now);
            records.extend(metrics::budget_gauges(
                "team",
                &team.name,
                s.spent_micro_usd,
                team.limits.max_budget_micro_usd,
            ));
        }
        stats::record_all(&records);
    }

    /// Gathers how the request ended from this context and from the filter state the
    /// upstream instance wrote for the last attempt.
    fn outcome(&self, last: &Report) -> Outcome {
        let now = host::now_nanos();
        let ms = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        let (provider, upstream_model) = if self.answered_locally || last.provider.is_empty() {
            (String::new(), String::new())
        } else {
            (last.provider.to_string(), last.upstream_model.clone())
        };
        Outcome {
            model: self.alias.clone().unwrap_or_default(),
            upstream_model,
            provider,
            key: self.virtual_key().name.clone(),
            team: self.virtual_key().team.clone().unwrap_or_default(),
            operation: self.api.operation(),
            status: self.status,
            duration_ms: ms(self.started_nanos, now),
            first_byte_ms: self.first_byte_nanos.map(|t| ms(self.started_nanos, t)),
            stream: self.stream,
            attempts: last.attempts,
            usage: last.usage,
            cost_micro_usd: last.usage.and(last.cost_micro_usd),
        }
    }

    /// What the last attempt reported: through the hand-off when it was made, else from the
    /// filter state the upstream instance wrote.
    fn last_attempt(&self) -> Report {
        if let Some(report) = &self.report {
            let r = report.borrow();
            if r.answered {
                return Report {
                    upstream_model: r.upstream_model.clone(),
                    captured_text: None,
                    ..*r
                };
            }
        }
        let provider = state_text("llm_provider");
        Report {
            answered: !provider.is_empty(),
            provider: ProviderKind::from_name(&provider).map_or("", ProviderKind::name),
            upstream_model: state_text("llm_upstream_model"),
            attempts: state_u64("llm_attempts").unwrap_or(0),
            started: 0,
            usage: state_u64("llm_prompt_tokens").map(|prompt| Usage {
                prompt_tokens: prompt,
                completion_tokens: state_u64("llm_completion_tokens").unwrap_or(0),
                cache_read_tokens: state_u64("llm_cached_tokens").unwrap_or(0),
                cache_write_tokens: state_u64("llm_cache_write_tokens").unwrap_or(0),
                // Only the cost tells 1-hour writes apart, and it comes priced already.
                cache_write_1h_tokens: 0,
                reasoning_tokens: state_u64("llm_reasoning_tokens").unwrap_or(0),
                // The cost comes apart, below.
                reported_cost_micro_usd: None,
            }),
            cost_micro_usd: match host::property_text(&["llm_priced"]).as_deref() {
                Some("1") => state_u64("llm_cost_micro_usd"),
                _ => None,
            },
            complete: state_text(routing::ANSWER_COMPLETE_STATE) == "1",
            usage_rejected: state_text(routing::USAGE_REJECTED_STATE) == "1",
            captured_text: None,
        }
    }
}

/// The Messages API endpoint at `path`, if it is one.
fn messages_api_of(path: &str) -> Option<InboundApi> {
    match path {
        "/v1/messages" => Some(InboundApi::Messages),
        "/v1/messages/count_tokens" => Some(InboundApi::CountTokens),
        _ => None,
    }
}

impl DownstreamHttp {
    /// Every deployment the route can reach speaks Anthropic's Messages API.
    fn all_anthropic(&self, route: &crate::config::chains::RoutePlan) -> bool {
        let config = &self.runtime.config;
        route
            .tiers
            .iter()
            .filter_map(|t| config.tiers.get(*t))
            .flat_map(|t| t.deployments.iter())
            .filter_map(|d| config.deployments.get(*d))
            .all(|d| {
                d.provider.spec().wire == crate::provider::registry::WireApi::AnthropicMessages
            })
    }
}

fn now_secs() -> u64 {
    host::now_nanos() / 1_000_000_000
}
