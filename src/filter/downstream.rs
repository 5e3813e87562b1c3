//! The downstream instance: authenticates the client, validates the body and routes the
//! request to its alias's cluster by setting the routing header.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::handoff::{self, Handed, Report};
use super::host::{self, Buffer, Map};
use super::root::Runtime;
use super::stats;
use super::store::SharedData;
use super::worker_bytes::Holding;
use crate::accounting::{self, Admission, Ending, RequestFacts, Settlement};
use crate::auth;
use crate::error::{ErrorKind, GatewayError};
use crate::header_map;
use crate::keys::{self, VirtualKey};
use crate::metrics::{self, Outcome};
use crate::provider::ProviderKind;
use crate::request::{estimate_prompt_tokens, parse_chat_request};
use crate::routing::{self, ROUTE_HEADER};
use crate::usage::Usage;

/// What the request is, decided from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Not yet known, or answered locally.
    None,
    /// `POST /v1/chat/completions`, waiting for its body.
    Chat,
    /// `POST /v1/responses`, waiting for its body.
    Responses,
}

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
    /// Only model requests (chat, responses) are counted in the model stats.
    counted: bool,
    /// The operation label of a counted request.
    operation: &'static str,
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
            operation: "chat",
            key: None,
            body_size: 0,
            admission: None,
            rate_headers: Vec::new(),
            handoff: None,
            report: None,
            delivered_bytes: 0,
            held: Holding::default(),
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
        let body = error.to_json();
        if error.status == 401 {
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
    fn reply_refusal(&mut self, refusal: accounting::Refusal) -> Action {
        let headers = refusal.headers();
        let error = GatewayError::from(refusal);
        let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.reply_json(error.status, &error.to_json(), &extra)
    }

    /// The worker holds as much as it may: a 503 the client can retry.
    fn worker_full(&mut self) -> Action {
        let e = GatewayError::new(
            ErrorKind::Overloaded,
            "The gateway is holding as many request bytes as it may (max_buffered_bytes_per_worker); retry shortly.",
        )
        .with_code("gateway_busy");
        self.reply_json(e.status, &e.to_json(), &[("retry-after", "1")])
    }

    /// Checks `Authorization: Bearer <key>` against the master key and the virtual keys
    /// (by SHA-256 digest), including expiry.
    fn authenticate(
        &mut self,
        authorization: Option<&str>,
        now_secs: u64,
    ) -> Result<(), GatewayError> {
        let Some(token) = authorization.and_then(auth::bearer_token) else {
            return Err(GatewayError::new(
                ErrorKind::Authentication,
                "Missing API key: send `Authorization: Bearer <your gateway key>`.",
            )
            .with_code("missing_api_key"));
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
        let responses = if self.endpoint == Endpoint::Responses {
            match crate::responses_api::parse(&body) {
                Ok(call) => Some(Rc::new(call)),
                Err(e) => return self.reply_error(&e),
            }
        } else {
            None
        };
        let parsed = match &responses {
            Some(call) => parse_chat_request(&call.chat_body),
            None => parse_chat_request(&body),
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        self.stream = request.is_stream();
        let alias = match routing::resolve_alias(&self.runtime.config, &request.model) {
            Ok(a) => a,
            Err(e) => return self.reply_error(&e),
        };
        self.alias = Some(alias.name.clone());
        if let Err(e) = keys::check_model(self.virtual_key(), &alias.name) {
            return self.reply_error(&e);
        }
        let estimate = estimate_prompt_tokens(&request);
        let route = match routing::choose_route(&self.runtime.config, alias, estimate) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        let key = self.virtual_key();
        if !key.is_master {
            let config = &self.runtime.config;
            let facts = RequestFacts::for_route(config, route, &request);
            match accounting::admit(
                &SharedData,
                key,
                config.keys.team_of(key),
                &facts,
                // The body follows the headers at once: their time saves a host call.
                self.started_nanos / 1_000_000_000,
            ) {
                Ok(a) => {
                    self.rate_headers = accounting::rate_limit_headers(&a);
                    self.admission = Some(a);
                }
                Err(refusal) => return self.reply_refusal(refusal),
            }
        }
        if self.runtime.config.general.rate_limit_service.is_some() {
            self.publish_limit_identity();
        }
        // Span attributes: written only when there are spans to carry them.
        if self.runtime.config.general.opentelemetry.is_some() {
            for (name, value) in crate::otel::request_span_values(&request) {
                let _ = host::set_property(&[name], value.as_bytes());
            }
        }
        if let Err(e) = host::set_header(Map::RequestHeaders, ROUTE_HEADER, &route.key) {
            log::error!("cannot set the routing header (host status {})", e.0);
            return self.reply_error(&GatewayError::internal("could not route the request"));
        }
        let handed = Handed {
            chat: Rc::new(request),
            report: Rc::default(),
            responses,
        };
        let report = Rc::clone(&handed.report);
        self.handoff = handoff::register(handed, &body);
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
        self.reply_json(status, &error.to_json(), &extra)
    }
}

impl Context for DownstreamHttp {}

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
        let is_responses = !is_chat && !is_models && matches!(path, "/v1/responses" | "/responses");

        if !is_models && !is_chat && !is_responses {
            let e = GatewayError::new(
                ErrorKind::NotFound,
                format!("Unknown path `{path}`: the gateway serves POST /v1/chat/completions, POST /v1/responses and GET /v1/models."),
            )
            .with_code("unknown_url");
            return self.reply_error(&e);
        }
        let now = host::now_nanos();
        if let Err(e) = self.authenticate(text("authorization").as_deref(), now / 1_000_000_000) {
            return self.reply_error(&e);
        }
        if is_chat || is_responses {
            self.counted = true;
            self.started_nanos = now;
        }
        if is_responses {
            self.operation = crate::responses_api::OPERATION;
            // For an attempt that gets no hand-off.
            let _ = host::set_property(&[routing::OPERATION_STATE], self.operation.as_bytes());
        }
        if is_models {
            if method != "GET" {
                let e = GatewayError::invalid_request(format!("{path} takes GET, not {method}"))
                    .with_status(405);
                return self.reply_error(&e);
            }
            let created = now_secs();
            let key = self.virtual_key();
            let body = routing::models_list_json(&self.runtime.config, created, |alias| {
                keys::model_allowed(key, alias)
            });
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
        if !key.is_master {
            let team = self.runtime.config.keys.team_of(key);
            if let Err(refusal) = accounting::precheck(&SharedData, key, team, now / 1_000_000_000)
            {
                return self.reply_refusal(refusal);
            }
        }
        self.strip_client_headers(headers.as_deref());
        self.endpoint = if is_responses {
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
        self.route_body(body_size)
    }

    /// An HTTP/2 (or chunked HTTP/1.1) request whose body is followed by trailers never
    /// sees its body end: it ends here.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.endpoint == Endpoint::None {
            return Action::Continue;
        }
        self.route_body(self.body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.status = host::header_text(Map::ResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.answered_locally {
            return Action::Continue;
        }
        if end_of_stream && self.status >= 400 {
            return self.reply_empty_error();
        }
        for (name, value) in &self.rate_headers {
            let _ = host::set_header(Map::ResponseHeaders, name, value);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
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
            if let Err(e) = accounting::settle(&SharedData, admission, how, now_secs()) {
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
        let s = accounting::spend(&SharedData, accounting::Account::Key(key), now);
        let mut records = metrics::budget_gauges(
            "key",
            &key.name,
            s.spent_micro_usd,
            key.limits.max_budget_micro_usd,
        );
        if let Some(team) = config.keys.team_of(key) {
            let s = accounting::spend(&SharedData, accounting::Account::Team(team), now);
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
            operation: self.operation,
            model: self.alias.clone().unwrap_or_default(),
            upstream_model,
            provider,
            key: self.virtual_key().name.clone(),
            team: self.virtual_key().team.clone().unwrap_or_default(),
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
            }),
            cost_micro_usd: match host::property_text(&["llm_priced"]).as_deref() {
                Some("1") => state_u64("llm_cost_micro_usd"),
                _ => None,
            },
            complete: state_text(routing::ANSWER_COMPLETE_STATE) == "1",
            usage_rejected: state_text(routing::USAGE_REJECTED_STATE) == "1",
        }
    }
}

fn now_secs() -> u64 {
    host::now_nanos() / 1_000_000_000
}
