//! The upstream instance: runs once per attempt, after Envoy picked the endpoint. Reads
//! which deployment the attempt reached from the endpoint metadata, translates the request
//! for that provider with its credentials, and translates the answer back.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::handoff::{self, HandedRequest, Report};
use super::host::{self, Buffer, Map};
use super::root::Runtime;
use super::stats;
use super::worker_bytes::Holding;
use crate::config::model::Deployment;
use crate::error::GatewayError;
use crate::header_map;
use crate::header_policy;
use crate::messages_api::{self, InboundApi};
use crate::metrics;
use crate::openai::{annotate_usage_chunk, write_error_event, AnswerMeta, DONE_EVENT};
use crate::otel::AnswerFacts;
use crate::pricing;
use crate::provider::registry::WireApi;
use crate::provider::{
    stream_content_type_preamble, translator_for, ClientRequest, StreamPreamble, Target,
    TranslatedResponse, Translator, Validated,
};
use crate::responses_api;
use crate::routing::{self, METADATA_DEPLOYMENT_KEY, METADATA_NAMESPACE};
use crate::usage::{Usage, UsageBound};

/// How the answer is being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    /// Headers not seen yet.
    Pending,
    /// Whole body buffered, translated at the end (JSON answers and all errors).
    Buffered,
    /// A streamed 200 whose headers are held until its first event shows it is not an
    /// error (an overloaded provider can open a 200 stream with an error event).
    StreamHeld,
    /// SSE translated chunk by chunk.
    Streamed,
    /// The stream was replaced by an error answer; the rest of its bytes are dropped.
    Discard,
    /// Nothing to do (local reply, or no translator).
    PassThrough,
}

/// Per-attempt state of the upstream instance.
pub struct UpstreamHttp {
    runtime: Rc<Runtime>,
    deployment: Option<usize>,
    translator: Option<Box<dyn Translator>>,
    upstream_status: u16,
    mode: ResponseMode,
    /// The stream's `[DONE]` went out and its usage was published.
    stream_finished: bool,
    /// The usage chunk got its cost annotation.
    usage_annotated: bool,
    /// Bytes of request body buffered so far (the trailers, which may end it, do not
    /// say).
    body_size: usize,
    /// A streamed answer already judged a failure by its headers, answered at its first
    /// body bytes.
    held_failure: Option<TranslatedResponse>,
    /// The usage last written to filter state.
    published_usage: Option<Usage>,
    attempts: u64,
    /// Where this attempt reports back to the downstream instance (see `handoff`).
    report: Option<Rc<RefCell<Report>>>,
    /// The most usage the request can cause; a provider reporting more is not believed.
    usage_bound: Option<UsageBound>,
    /// The provider reported usage beyond the bound (published nowhere, said once).
    usage_rejected: bool,
    /// What the stream translation holds between pieces, against the worker's limit.
    stream_held: Holding,
    /// The API the client spoke: its answers and errors take that API's shape.
    api: InboundApi,
    /// With tracing, for a chat or Messages answer: what it says about itself, for its
    /// span.
    facts: Option<Box<AnswerFacts>>,
}

impl UpstreamHttp {
    /// A context for one attempt.
    pub fn new(runtime: Rc<Runtime>) -> Self {
        UpstreamHttp {
            runtime,
            deployment: None,
            translator: None,
            upstream_status: 0,
            mode: ResponseMode::Pending,
            stream_finished: false,
            usage_annotated: false,
            body_size: 0,
            held_failure: None,
            published_usage: None,
            attempts: 1,
            report: None,
            usage_bound: None,
            usage_rejected: false,
            stream_held: Holding::default(),
            api: InboundApi::Chat,
            facts: None,
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

    fn deployment(&self) -> Option<&Deployment> {
        self.runtime.config.deployments.get(self.deployment?)
    }

    fn reply_error(&mut self, error: &GatewayError) -> Action {
        self.mode = ResponseMode::PassThrough;
        if let Err(e) = host::send_local_response(
            error.status,
            &[("content-type", "application/json")],
            &self.error_body(error),
        ) {
            log::error!("local reply failed (host status {})", e.0);
        }
        Action::Pause
    }

    /// Writes usage and cost into filter state (for the access log, the downstream
    /// instance's stats and the global rate limit's stream-end hits) and returns the cost
    /// in micro-USD, `None` when unpriced.
    ///
    /// A property write is one of the dearest host calls (thousands of instructions in
    /// Envoy), so only what a reader needs is written: cache and reasoning tokens only when
    /// there are some, the cost only when priced (the access log shows none for an
    /// unpriced model; the rate limit's counter starts at 0), the total only for the
    /// global rate limit, and whether the answer was priced only when there is no
    /// hand-off to tell the downstream instance.
    fn publish_usage(&self, usage: &Usage) -> Option<u64> {
        let cost = self.cost_of(usage);
        let values: [(&str, u64, bool); 5] = [
            ("llm_prompt_tokens", usage.prompt_tokens, true),
            ("llm_completion_tokens", usage.completion_tokens, true),
            // Most answers have none of these: the access log shows none rather than 0.
            ("llm_cached_tokens", usage.cache_read_tokens, false),
            ("llm_cache_write_tokens", usage.cache_write_tokens, false),
            ("llm_reasoning_tokens", usage.reasoning_tokens, false),
        ];
        for (name, v, always) in values {
            if always || v > 0 {
                let _ = host::set_property(&[name], v.to_string().as_bytes());
            }
        }
        if self.runtime.config.general.rate_limit_service.is_some() {
            let total = usage.prompt_tokens.saturating_add(usage.completion_tokens);
            let _ =
                host::set_property(&[routing::TOTAL_TOKENS_STATE], total.to_string().as_bytes());
        }
        if let Some(c) = cost {
            let _ = host::set_property(&[routing::COST_STATE], c.to_string().as_bytes());
            // A span attribute in USD: written only when there are spans to carry it.
            if self.runtime.config.general.opentelemetry.is_some() {
                let usd = crate::pricing::format_usd(c);
                let _ = host::set_property(&[routing::COST_USD_STATE], usd.as_bytes());
            }
        }
        match &self.report {
            Some(report) => {
                let mut r = report.borrow_mut();
                r.usage = Some(*usage);
                r.cost_micro_usd = cost;
            }
            None => {
                let priced: &[u8] = if cost.is_some() { b"1" } else { b"0" };
                let _ = host::set_property(&["llm_priced"], priced);
            }
        }
        cost
    }

    /// Writes what the answer said about itself where the spans read it; a captured text
    /// goes to the downstream instance, which writes it for the client's span alone.
    fn publish_facts(facts: &AnswerFacts, report: Option<&Rc<RefCell<Report>>>) {
        if let Some(id) = &facts.id {
            let _ = host::set_property(&[crate::otel::RESPONSE_ID_STATE], id.as_bytes());
        }
        if let Some(reasons) = facts.finish_reasons() {
            let _ = host::set_property(&[crate::otel::FINISH_REASONS_STATE], reasons);
        }
        if let Some(report) = report {
            report.borrow_mut().captured_text = facts.captured_text();
        }
    }

    /// Ends a stream whose unfinished event would pass the worker's byte limit: what was
    /// translated goes out, then an error event and `[DONE]`; the rest of the provider's
    /// bytes are dropped, and so is the translation with everything it held.
    fn end_stream_over_limit(&mut self, body_size: usize, mut out: Vec<u8>) -> Action {
        log::warn!("a stream event would pass max_buffered_bytes_per_worker; the stream was ended");
        let e = GatewayError::new(
            crate::error::ErrorKind::Overloaded,
            "The provider's stream sent an event larger than the gateway can hold now (max_buffered_bytes_per_worker); the stream was ended.",
        )
        .with_code("gateway_busy");
        if self.api.is_anthropic() {
            let data = messages_api::gateway_error_json(&e);
            crate::sse::write_event(&mut out, Some("error"), &String::from_utf8_lossy(&data));
        } else {
            write_error_event(&mut out, &e);
            out.extend_from_slice(DONE_EVENT);
        }
        self.translator = None;
        let _ = self.stream_held.resize(0);
        self.mode = ResponseMode::Discard;
        if let Err(e) = host::set_buffer(Buffer::ResponseBody, 0, body_size, &out) {
            log::error!("could not replace a stream chunk (host status {})", e.0);
        }
        Action::Continue
    }

    /// Says that the usage published last is the answer's final one (the whole body came,
    /// or the stream ended): an answer without it is charged an estimate instead.
    fn mark_usage_final(&self) {
        match &self.report {
            Some(report) => report.borrow_mut().complete = true,
            None => {
                let _ = host::set_property(&[routing::ANSWER_COMPLETE_STATE], b"1");
            }
        }
    }

    /// Whether `usage` is within what the request can cause. The first time it is not,
    /// says so (log and stat) and marks the request, which is then charged its whole
    /// reservation; the figure itself goes nowhere.
    fn plausible(&mut self, usage: &Usage) -> bool {
        if self.usage_rejected {
            return false;
        }
        if self.usage_bound.is_none_or(|b| b.admits(usage)) {
            return true;
        }
        self.usage_rejected = true;
        let (model, provider, upstream_model) = match self.deployment() {
            Some(d) => (
                d.alias.as_str(),
                d.provider.name(),
                d.upstream_model.as_str(),
            ),
            None => ("", "", ""),
        };
        log::warn!(
            "deployment of `{model}` ({provider} {upstream_model}) reported impossible usage ({} prompt, {} completion tokens for a request bounded at {:?}): not applied, the request is charged its reservation",
            usage.prompt_tokens,
            usage.completion_tokens,
            self.usage_bound
        );
        stats::record_all(&[metrics::usage_rejected(model, provider, upstream_model)]);
        match &self.report {
            Some(report) => report.borrow_mut().usage_rejected = true,
            None => {
                let _ = host::set_property(&[routing::USAGE_REJECTED_STATE], b"1");
            }
        }
        false
    }

    /// Translates the buffered request body and rewrites path, credentials and body.
    fn translate_request(&mut self, body_size: usize) -> Result<(), GatewayError> {
        let body = host::get_buffer(Buffer::RequestBody, 0, body_size).map_err(|e| {
            GatewayError::internal(format!(
                "could not read the request body (host status {})",
                e.0
            ))
        })?;
        let (api, handed) = handoff::lookup(&body);
        self.api = api;
        if let Some(otel) = &self.runtime.config.general.opentelemetry {
            if matches!(api, InboundApi::Chat | InboundApi::Messages) {
                // A request that could not be handed over (a worker with more than the
                // hand-off's limit in flight) has its messages captured, not its answer.
                let capture = handed.as_ref().is_some_and(|h| h.capture);
                self.facts = Some(Box::new(AnswerFacts::new(
                    capture.then_some(otel.capture_max_bytes),
                )));
            }
        }
        let deployment = self
            .deployment()
            .ok_or_else(|| GatewayError::internal("no deployment for this attempt"))?;
        let index = self.deployment.unwrap_or(0);
        let mut api_key = self
            .runtime
            .provider_keys
            .get(index)
            .and_then(|k| k.as_deref());
        // Vertex AI: the access token every worker shares, unless a static one is set.
        let gcp_token;
        if api_key.is_none()
            && deployment.provider.spec().credential
                == crate::provider::registry::Credential::GoogleOAuth
        {
            gcp_token = super::gcp_token::current();
            api_key = gcp_token.as_deref();
        }
        if deployment.api_key.is_some() && api_key.is_none() {
            return Err(GatewayError::new(
                crate::error::ErrorKind::Authentication,
                format!(
                    "The gateway has no provider key for deployment `{}` of model `{}`; the operator must set `{}` in Envoy's environment.",
                    deployment.id,
                    deployment.alias,
                    deployment.api_key.as_ref().and_then(|k| k.env_name()).unwrap_or("?")
                ),
            )
            .with_code("provider_key_missing"));
        }
        let target = Target {
            upstream_model: &deployment.upstream_model,
            base_path: &deployment.endpoint.base_path,
            api_key,
            now_unix_secs: host::now_nanos() / 1_000_000_000,
            options: &deployment.options,
        };
        let chat = handed.as_ref().and_then(|h| match &h.request {
            HandedRequest::Chat(chat) => Some(Rc::clone(chat)),
            HandedRequest::Embeddings => None,
        });
        let responses = match (&handed, api) {
            (Some(h), _) => h.responses.clone(),
            // Without a hand-off, the hand-off's name still says the client spoke Responses.
            (None, InboundApi::Responses) => Some(Rc::new(responses_api::parse(&body)?)),
            (None, _) => None,
        };
        let (mut translator, usage_bound) = match api {
            InboundApi::Embeddings => (
                crate::embeddings::translate::translator_for(deployment.provider),
                Some(crate::embeddings::EmbeddingsRequest::usage_bound(
                    body_size as u64,
                )),
            ),
            _ => {
                // A stored conversation's prompt is not in the request: no bound.
                let bound = if responses
                    .as_ref()
                    .is_some_and(|c| c.continues_stored.is_some())
                {
                    None
                } else {
                    Some(match &chat {
                        Some(chat) => UsageBound::for_request(chat, body_size as u64),
                        None => UsageBound::for_body(body_size as u64),
                    })
                };
                let translator = match (&responses, api) {
                    (Some(call), _) => {
                        responses_api::translator_for(deployment.provider, Rc::clone(call))
                    }
                    (None, InboundApi::Chat | InboundApi::Responses) => {
                        translator_for(deployment.provider)
                    }
                    (None, _) => messages_api::translator::translator(
                        deployment.provider,
                        api,
                        &deployment.upstream_model,
                    ),
                };
                (translator, bound)
            }
        };
        // Without a hand-off, the attempt validates the body as the downstream instance did.
        let own_chat;
        let own_embeddings;
        let validated = match (api, &chat) {
            (InboundApi::Embeddings, _) => {
                own_embeddings = crate::embeddings::parse_request(&body)?;
                Validated::Embeddings(&own_embeddings)
            }
            (_, Some(chat)) => Validated::Chat(chat),
            (_, None) => {
                own_chat = crate::request::validate_chat(api, &body, responses.as_deref())?;
                Validated::Chat(&own_chat)
            }
        };
        let request = ClientRequest {
            body: &body,
            validated,
        };
        let mut upstream = translator.request(request, &target)?;
        if !upstream.dropped.is_empty() {
            log::warn!(
                "deployment `{}` ({}) dropped unsupported parameters (drop_params): {}",
                deployment.id,
                deployment.provider.name(),
                upstream.dropped.join(", ")
            );
        }

        let raw = host::get_headers(Map::RequestHeaders).map_err(|e| {
            GatewayError::internal(format!(
                "could not read the request headers (host status {})",
                e.0
            ))
        })?;
        let present = header_map::decode(&raw)
            .ok_or_else(|| GatewayError::internal("the request headers could not be read"))?;
        let forwarded = match deployment.provider.spec().wire {
            _ if !api.is_anthropic() => &[][..],
            WireApi::AnthropicMessages => messages_api::translator::FORWARDED_HEADERS,
            WireApi::VertexAnthropic => messages_api::translator::VERTEX_FORWARDED_HEADERS,
            _ => &[][..],
        };
        if !forwarded.is_empty() {
            // The client's beta features (and API version) reach Anthropic's API as sent.
            for name in forwarded {
                let value = match &handed {
                    Some(h) => h
                        .anthropic_headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone()),
                    None => header_map::find(&present, name)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                };
                if let Some(value) = value {
                    upstream.headers.retain(|(n, _)| n != name);
                    upstream.headers.push((name, value));
                }
            }
        }
        if api == InboundApi::Messages
            && deployment.provider.spec().wire == WireApi::BedrockConverse
            && messages_api::translator::bedrock_invoke(&deployment.upstream_model)
        {
            // Claude on Bedrock takes the client's beta features in the body.
            let beta = match &handed {
                Some(h) => h
                    .anthropic_headers
                    .iter()
                    .find(|(n, _)| *n == "anthropic-beta")
                    .map(|(_, v)| v.clone()),
                None => header_map::find(&present, "anthropic-beta")
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            };
            if let Some(beta) = beta {
                crate::provider::bedrock::invoke::add_betas(&mut upstream.body, &beta);
            }
        }
        let set = upstream.gateway_headers();
        let changes = header_policy::request_changes(&present, &set);
        Self::apply(Map::RequestHeaders, &changes).map_err(|e| {
            GatewayError::internal(format!(
                "could not set the provider's request headers (host status {})",
                e.0
            ))
        })?;
        host::set_buffer(Buffer::RequestBody, 0, body_size, &upstream.body).map_err(|e| {
            GatewayError::internal(format!(
                "could not replace the request body (host status {})",
                e.0
            ))
        })?;
        self.translator = Some(translator);
        self.usage_bound = usage_bound;
        // The cost annotation is a chat usage chunk's; Anthropic's events carry none.
        self.usage_annotated = api.is_anthropic();
        if let Some(h) = handed {
            // Counting attempts here saves asking Envoy for its count (a property read)
            // on every answer: each attempt runs this once.
            let mut r = h.report.borrow_mut();
            r.started = r.started.saturating_add(1);
            self.attempts = r.started;
            drop(r);
            self.report = Some(h.report);
        }
        Ok(())
    }

    /// Adds cost and who answered to the usage chunk in `out`, if there is one.
    fn annotate(&self, out: &mut Vec<u8>, cost_micro_usd: Option<u64>) -> bool {
        match self.deployment() {
            Some(d) => {
                let meta = AnswerMeta {
                    provider: d.provider.name(),
                    upstream_model: &d.upstream_model,
                    deployment: &d.id,
                    attempts: self.attempts,
                    cost_micro_usd,
                };
                annotate_usage_chunk(out, &meta)
            }
            None => false,
        }
    }

    /// Cost of `usage` at this attempt's deployment's price, else the cost the provider
    /// reported (OpenRouter's); `None` when unpriced.
    fn cost_of(&self, usage: &Usage) -> Option<u64> {
        match self.deployment()?.price {
            Some(p) => Some(pricing::cost_micro_usd(usage, &p)),
            None => usage.reported_cost_micro_usd,
        }
    }

    fn provider_error_record(&self, status: u16) -> metrics::Record {
        match self.deployment() {
            Some(d) => {
                metrics::provider_error(&d.alias, d.provider.name(), &d.upstream_model, status)
            }
            None => metrics::provider_error("", "", "", status),
        }
    }

    /// Applies an allow-list's changes, one host call each.
    fn apply(map: Map, changes: &header_policy::HeaderChanges<'_>) -> host::HostResult<()> {
        for name in &changes.remove {
            host::remove_header(map, *name)?;
        }
        for (name, value) in &changes.set {
            host::set_header(map, &**name, &**value)?;
        }
        Ok(())
    }

    fn set_response_header(name: &str, value: &str) {
        if let Err(e) = host::set_header(Map::ResponseHeaders, name, value) {
            log::warn!("could not set response header {name} (host status {})", e.0);
        }
    }
}

impl Context for UpstreamHttp {}

impl HttpContext for UpstreamHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let id = host::property_text(&[
            "xds",
            "upstream_host_metadata",
            "filter_metadata",
            METADATA_NAMESPACE,
            METADATA_DEPLOYMENT_KEY,
        ]);
        let index = id.as_deref().and_then(|id| {
            self.runtime
                .config
                .deployments
                .iter()
                .position(|d| d.id == id)
        });
        let Some(index) = index else {
            log::error!(
                "the endpoint of this attempt has no known `{METADATA_NAMESPACE}.{METADATA_DEPLOYMENT_KEY}` metadata (got {id:?}); render the Envoy config from the same gateway config"
            );
            return self.reply_error(&GatewayError::internal(
                "the gateway's Envoy configuration does not match its gateway config",
            ));
        };
        self.deployment = Some(index);
        if end_of_stream {
            return self.reply_error(&GatewayError::invalid_request("request body is empty"));
        }
        // Hold the headers: path and credentials are set once the body is translated.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.deployment.is_none() || self.mode == ResponseMode::PassThrough {
            return Action::Continue;
        }
        if !end_of_stream {
            self.body_size = body_size;
            return Action::Pause;
        }
        match self.translate_request(body_size) {
            Ok(()) => Action::Continue,
            Err(e) => self.reply_error(&e),
        }
    }

    /// A body followed by trailers ends at the trailers. Providers get none of them: the
    /// body they receive is the gateway's.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.deployment.is_none() || self.mode == ResponseMode::PassThrough {
            return Action::Continue;
        }
        if let Err(e) =
            host::set_headers(Map::RequestTrailers, &header_map::encode::<&str, &str>(&[]))
        {
            log::warn!("could not drop the request trailers (host status {})", e.0);
        }
        match self.translate_request(self.body_size) {
            Ok(()) => Action::Continue,
            Err(e) => self.reply_error(&e),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.mode == ResponseMode::PassThrough {
            return Action::Continue;
        }
        let Some(translator) = self.translator.as_mut() else {
            self.mode = ResponseMode::PassThrough;
            return Action::Continue;
        };
        // One host call reads the whole map; then only what differs from what the client
        // may see (`header_policy`) and the gateway's own headers is changed, one host
        // call each (replacing the whole map costs Envoy more).
        let raw = host::get_headers(Map::ResponseHeaders).unwrap_or_default();
        let headers = header_map::decode(&raw).unwrap_or_default();
        let value = |name: &str| header_map::find(&headers, name);
        let status = value(":status")
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        self.upstream_status = status;
        translator.response_headers(&headers);
        let mut client_status = translator.response_status(status);
        let is_stream = translator.is_stream();
        let stream_start = (is_stream && (200..300).contains(&status))
            .then(|| {
                stream_content_type_preamble(value("content-type"), translator.stream_media_type())
            })
            .map(|p| match self.api {
                InboundApi::Messages | InboundApi::CountTokens => {
                    messages_api::translator::preamble_in_anthropic_shape(p)
                }
                _ => p,
            });
        let mut set: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(8);
        if let Some(d) = self.deployment() {
            let (provider, model, id) = (d.provider.name(), d.upstream_model.clone(), d.id.clone());
            if self.report.is_none() {
                // Without a hand-off the downstream instance reads who answered from here
                // (the access log reads the endpoint metadata itself).
                let _ = host::set_property(&["llm_provider"], provider.as_bytes());
                let _ = host::set_property(&["llm_upstream_model"], model.as_bytes());
                let _ = host::set_property(&["llm_deployment"], id.as_bytes());
            }
            set.push((routing::PROVIDER_HEADER, provider.into()));
            set.push((routing::MODEL_HEADER, model.into()));
            set.push((routing::DEPLOYMENT_HEADER, id.into()));
        }
        let attempts = match self.report {
            Some(_) => self.attempts,
            None => host::property_u64(&["upstream", "request_attempt_count"]).unwrap_or(1),
        };
        if status == 429 || status == 503 {
            // Envoy's rate-limited back-off reads whole seconds only.
            let now = host::now_nanos() / 1_000_000_000;
            if let Some(secs) = header_policy::retry_after_seconds(
                value("retry-after"),
                value("retry-after-ms"),
                now,
            ) {
                set.push(("retry-after", secs.to_string().into()));
            }
        }
        if let Some(d) = self.deployment() {
            if status >= 400 {
                stats::record_all(&[metrics::provider_error(
                    &d.alias,
                    d.provider.name(),
                    &d.upstream_model,
                    status,
                )]);
                log::info!(
                    "deployment `{}` ({} {}) answered {status} on attempt {attempts}",
                    d.id,
                    d.provider.name(),
                    d.upstream_model
                );
            } else if attempts > 1 {
                log::info!(
                    "fallback: deployment `{}` ({} {}) answered on attempt {attempts}",
                    d.id,
                    d.provider.name(),
                    d.upstream_model
                );
            }
        }
        self.attempts = attempts;
        if let (Some(report), Some(d)) = (&self.report, self.deployment()) {
            let mut r = report.borrow_mut();
            r.answered = true;
            r.provider = d.provider.name();
            r.upstream_model.clone_from(&d.upstream_model);
            r.attempts = attempts;
            // A new attempt's answer replaces what an earlier one reported.
            r.usage = None;
            r.cost_micro_usd = None;
            r.complete = false;
        }
        set.push((routing::ATTEMPTS_HEADER, attempts.to_string().into()));
        if self.report.is_none() {
            let _ = host::set_property(&["llm_attempts"], attempts.to_string().as_bytes());
        }

        let mut drop: &[&str] = &[];
        let (mode, action) = match stream_start {
            Some(StreamPreamble::Fail(answer)) if end_of_stream => {
                // Not a stream, and nothing to replace: the status alone says so (the
                // downstream instance gives an error without a body its JSON).
                client_status = answer.status;
                drop = &["content-length"];
                (ResponseMode::Buffered, Action::Continue)
            }
            Some(StreamPreamble::Fail(answer)) => {
                // Answered at the first body bytes, as a stream that opens with an error.
                self.held_failure = Some(answer);
                (ResponseMode::StreamHeld, Action::Pause)
            }
            Some(_) => {
                drop = &["content-length"];
                set.push(("content-type", "text/event-stream".into()));
                set.push(("cache-control", "no-cache".into()));
                if end_of_stream {
                    (ResponseMode::Streamed, Action::Continue)
                } else {
                    // Hold the headers until the first event: if it is an error, the
                    // status can still change, and Envoy's retry policy can still fall
                    // back.
                    (ResponseMode::StreamHeld, Action::Pause)
                }
            }
            None if end_of_stream => {
                // No body to translate (an error without a body: the downstream instance
                // gives it one, after Envoy's retries). Keep the status.
                drop = &["content-length"];
                (ResponseMode::Buffered, Action::Continue)
            }
            None => {
                // Hold the headers until the whole body is translated (always JSON), so
                // content-length and the usage headers can be set.
                set.push(("content-type", "application/json".into()));
                (ResponseMode::Buffered, Action::Pause)
            }
        };
        set.push((":status", client_status.to_string().into()));
        let scrubber = self.translator.as_ref().and_then(|t| t.key_scrubber());
        let changes = header_policy::response_changes(&headers, &set, drop, |v| {
            scrubber.map_or(Cow::Borrowed(v), |k| k.scrub_slice(v))
        });
        if let Err(e) = Self::apply(Map::ResponseHeaders, &changes) {
            log::warn!(
                "could not change the response headers (host status {})",
                e.0
            );
        }
        self.mode = mode;
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.mode {
            ResponseMode::StreamHeld => {
                let Some(translator) = self.translator.as_mut() else {
                    return Action::Continue;
                };
                let preamble = match self.held_failure.take() {
                    Some(answer) => StreamPreamble::Fail(answer),
                    None => {
                        let buffered = host::get_buffer(Buffer::ResponseBody, 0, body_size)
                            .unwrap_or_default();
                        translator.stream_preamble(&buffered, end_of_stream)
                    }
                };
                match preamble {
                    StreamPreamble::NeedMore if !end_of_stream => Action::Pause,
                    StreamPreamble::NeedMore | StreamPreamble::Proceed => {
                        self.mode = ResponseMode::Streamed;
                        self.on_http_response_body(body_size, end_of_stream)
                    }
                    StreamPreamble::Fail(answer) => {
                        log::info!(
                            "stream opened with an error; answering {} instead",
                            answer.status
                        );
                        stats::record_all(&[self.provider_error_record(answer.status)]);
                        Self::set_response_header(":status", &answer.status.to_string());
                        Self::set_response_header("content-type", "application/json");
                        let _ = host::remove_header(Map::ResponseHeaders, "cache-control");
                        Self::set_response_header("content-length", &answer.body.len().to_string());
                        if let Err(e) =
                            host::set_buffer(Buffer::ResponseBody, 0, body_size, &answer.body)
                        {
                            log::error!(
                                "could not replace the response body (host status {})",
                                e.0
                            );
                        }
                        self.mode = ResponseMode::Discard;
                        Action::Continue
                    }
                }
            }
            ResponseMode::Discard => {
                let _ = host::set_buffer(Buffer::ResponseBody, 0, body_size, b"");
                Action::Continue
            }
            ResponseMode::Streamed => {
                let Some(translator) = self.translator.as_mut() else {
                    return Action::Continue;
                };
                let chunk =
                    host::get_buffer(Buffer::ResponseBody, 0, body_size).unwrap_or_default();
                let mut out = Vec::with_capacity(chunk.len() + 256);
                translator.stream(&chunk, end_of_stream, &mut out);
                let captured = self.facts.as_ref().map_or(0, |f| f.held_bytes());
                if !self
                    .stream_held
                    .resize((translator.stream_buffered_bytes() + captured) as u64)
                {
                    return self.end_stream_over_limit(body_size, out);
                }
                let usage = translator.stream_usage();
                let complete = end_of_stream || translator.stream_complete(&out);
                let usage = usage.filter(|u| self.plausible(u));
                if !self.usage_annotated {
                    // The usage chunk carries the stream's final usage: price it there.
                    if let Some(u) = usage {
                        let cost = self.cost_of(&u);
                        self.usage_annotated = self.annotate(&mut out, cost);
                    }
                }
                if let Some(facts) = self.facts.as_mut() {
                    facts.read(&out, self.api.is_anthropic());
                    if complete && !self.stream_finished {
                        Self::publish_facts(facts, self.report.as_ref());
                    }
                }
                if !self.stream_finished {
                    // Publish usage as it becomes known, so a stream cut in the middle still
                    // accounts the prompt the provider already reported.
                    // Nothing follows `[DONE]` in what a translator writes.
                    self.stream_finished = complete;
                    if let Some(u) = usage {
                        if self.published_usage != Some(u) {
                            self.published_usage = Some(u);
                            let _ = self.publish_usage(&u);
                        }
                        if self.stream_finished {
                            self.mark_usage_final();
                        }
                    }
                }
                if let Err(e) = host::set_buffer(Buffer::ResponseBody, 0, body_size, &out) {
                    log::error!("could not replace a stream chunk (host status {})", e.0);
                }
                Action::Continue
            }
            ResponseMode::Buffered => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let Some(translator) = self.translator.as_mut() else {
                    return Action::Continue;
                };
                let body = host::get_buffer(Buffer::ResponseBody, 0, body_size).unwrap_or_default();
                let mut translated = translator.response(self.upstream_status, &body);
                let estimated = translator.usage_estimated();
                if let Some(u) = translated.usage {
                    if !self.plausible(&u) {
                        // The answer cannot be trusted: an upstream error, and a retriable
                        // one, so the next deployment may answer instead.
                        let e = GatewayError::internal(
                            "The provider reported more tokens than this request can use; the answer was discarded.",
                        )
                        .with_status(502)
                        .with_code("implausible_usage");
                        translated.status = e.status;
                        translated.body = self.error_body(&e);
                        translated.usage = None;
                    }
                }
                if let Some(facts) = self.facts.as_mut() {
                    if (200..300).contains(&translated.status) {
                        facts.read(&translated.body, self.api.is_anthropic());
                        Self::publish_facts(facts, self.report.as_ref());
                    }
                }
                if translated.status != self.upstream_status {
                    Self::set_response_header(":status", &translated.status.to_string());
                }
                Self::set_response_header("content-length", &translated.body.len().to_string());
                if let Some(u) = &translated.usage {
                    Self::set_response_header(
                        routing::PROMPT_TOKENS_HEADER,
                        &u.prompt_tokens.to_string(),
                    );
                    Self::set_response_header(
                        routing::COMPLETION_TOKENS_HEADER,
                        &u.completion_tokens.to_string(),
                    );
                    Self::set_response_header(
                        routing::CACHED_TOKENS_HEADER,
                        &u.cache_read_tokens.to_string(),
                    );
                    if estimated {
                        Self::set_response_header(routing::USAGE_ESTIMATED_HEADER, "true");
                    }
                    let cost = self.publish_usage(u);
                    self.mark_usage_final();
                    Self::set_response_header(
                        routing::COST_HEADER,
                        &pricing::format_usd(cost.unwrap_or(0)),
                    );
                }
                if let Err(e) =
                    host::set_buffer(Buffer::ResponseBody, 0, body_size, &translated.body)
                {
                    log::error!("could not replace the response body (host status {})", e.0);
                }
                Action::Continue
            }
            ResponseMode::Pending | ResponseMode::PassThrough => Action::Continue,
        }
    }
}
