//! What an admitted request passes through before it is forwarded, when configured: the
//! response cache (a hit is answered here) and the shared spend ledger (the budget's
//! reservation in the store). Each may wait for the store; none runs without its setting.

use proxy_wasm::traits::Context;
use proxy_wasm::types::Action;
use serde_json::Value;

use super::DownstreamHttp;
use crate::cache::{self, Controls, Scope};
use crate::error::{ErrorKind, GatewayError};
use crate::filter::handoff::HandedRequest;
use crate::filter::host::{self, Buffer};
use crate::filter::spend;
use crate::filter::store::SharedData;
use crate::limits::ledger::{self, BudgetFailureMode, ReserveReply};
use crate::limits::refusal::format_dollars;
use crate::limits::settlement::{self, Settlement};

/// The parsed request, its route and its body, kept while a gate waits.
type Parts = (HandedRequest, String, Vec<u8>);

/// The gates, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The response cache.
    Cache,
    /// The budget's reservation in the spend store.
    Reserve,
    /// Forwarded to the provider.
    Forward,
}

impl Stage {
    fn next(self) -> Stage {
        match self {
            Stage::Cache => Stage::Reserve,
            Stage::Reserve | Stage::Forward => Stage::Forward,
        }
    }
}

/// A request waiting for the store's answer at `stage`.
pub struct Waiting {
    token: u32,
    stage: Stage,
    parts: Box<Parts>,
}

/// What a gate decided.
enum Step {
    /// On to the next gate.
    Next,
    /// Waiting for the store's answer to call `token`.
    Wait(u32),
    /// Answered here (a hit, a refusal).
    Replied(Action),
}

/// The response cache's state of one request.
pub struct CacheState {
    key: String,
    controls: Controls,
    include_usage: bool,
    /// Holding a non-streamed answer to store it.
    pub buffering: bool,
    /// The store's write of the answer, which the response waits for.
    store_token: Option<u32>,
}

/// A local reply was sent: nothing to resume.
fn replied(_: Action) {}

impl Context for DownstreamHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if self.cache.as_ref().and_then(|c| c.store_token) == Some(token) {
            // Written or not, the answer goes on: a cache the store cannot take is a miss.
            if let Err(e) = host::resume_response() {
                log::error!("cannot resume the response (host status {})", e.0);
            }
            return;
        }
        let Some(w) = self.waiting.take() else {
            return;
        };
        if w.token != token {
            self.waiting = Some(w);
            return;
        }
        let (status, body) = spend::answer(num_headers, body_size);
        let step = match w.stage {
            Stage::Cache => {
                let entry = cache::store_get_entry(status, &body);
                if status != 200 {
                    spend::count("llm_spend_store_errors_total", 1);
                }
                self.cache_found(entry.as_deref())
            }
            Stage::Reserve => match self.store_decision(status, &body) {
                Some(action) => Step::Replied(action),
                None => Step::Next,
            },
            Stage::Forward => Step::Next,
        };
        if let Step::Replied(action) = step {
            return replied(action);
        }
        if self.proceed(w.parts, w.stage.next()) == Action::Continue {
            if let Err(e) = host::resume_request() {
                log::error!("cannot resume the request (host status {})", e.0);
            }
        }
    }
}

impl DownstreamHttp {
    /// Runs the gates from `stage` on; `Continue` once the request is forwarded.
    pub(super) fn proceed(&mut self, parts: Box<Parts>, mut stage: Stage) -> Action {
        loop {
            let step = match stage {
                Stage::Cache => self.cache_lookup(&parts),
                Stage::Reserve => self.reserve_in_store(),
                Stage::Forward => {
                    let (request, route_key, body) = *parts;
                    return self.forward(request, &route_key, &body);
                }
            };
            match step {
                Step::Next => stage = stage.next(),
                Step::Wait(token) => {
                    self.waiting = Some(Waiting {
                        token,
                        stage,
                        parts,
                    });
                    return Action::Pause;
                }
                Step::Replied(action) => return action,
            }
        }
    }

    // === the response cache ===

    /// Looks the request up, if the cache applies to it.
    fn cache_lookup(&mut self, parts: &Parts) -> Step {
        let runtime = std::rc::Rc::clone(&self.runtime);
        let Some(config) = &runtime.config.general.response_cache else {
            return Step::Next;
        };
        // Chat completions only: a cached answer is replayed in their shape.
        if self.api != crate::messages_api::InboundApi::Chat {
            return Step::Next;
        }
        let alias = self.alias.clone().unwrap_or_default();
        let key = self.virtual_key();
        if !config.applies(&alias, &key.name) {
            return Step::Next;
        }
        let Ok(body) = serde_json::from_slice::<Value>(&parts.2) else {
            return Step::Next;
        };
        let scope = match (config.scope, &key.team) {
            (Scope::Team, Some(team)) => format!("team:{team}"),
            _ => format!("key:{}", key.name),
        };
        let controls = Controls::of(&body);
        let entry_key = cache::request_key(&body, &alias, &scope);
        let get = cache::store_get_body(&entry_key);
        self.cache = Some(Box::new(CacheState {
            key: entry_key,
            controls,
            include_usage: match &parts.0 {
                HandedRequest::Chat(chat) => chat.wants_stream_usage(),
                HandedRequest::Embeddings => false,
            },
            buffering: false,
            store_token: None,
        }));
        if controls.no_cache {
            return self.cache_found(None);
        }
        match &runtime.config.general.spend_store {
            Some(store) => match spend::call(self, store, &get) {
                Some(token) => Step::Wait(token),
                None => self.cache_found(None),
            },
            None => {
                let now = self.started_nanos / 1_000_000_000;
                let found = self.cache.as_ref().and_then(|c| {
                    super::super::cache::lookup_local(config, &c.key, now, c.controls.s_maxage)
                });
                self.cache_answer(found)
            }
        }
    }

    /// A store entry read (or not): checked against the key, expiry and `s-maxage`.
    fn cache_found(&mut self, entry: Option<&[u8]>) -> Step {
        let now = self.started_nanos / 1_000_000_000;
        let answer = match (&self.cache, entry) {
            (Some(c), Some(e)) if !c.controls.no_cache => {
                cache::decode_entry(e, &c.key, now, c.controls.s_maxage).map(<[u8]>::to_vec)
            }
            _ => None,
        };
        self.cache_answer(answer)
    }

    /// Serves a hit, or notes a miss and goes on.
    fn cache_answer(&mut self, answer: Option<Vec<u8>>) -> Step {
        let alias = self.alias.clone().unwrap_or_default();
        let outcome = if answer.is_some() { "hit" } else { "miss" };
        let _ = host::set_property(&["llm_cache"], outcome.as_bytes());
        spend::count(&format!("llm_cache_{outcome}s_total.model={alias};"), 1);
        let Some(answer) = answer else {
            return Step::Next;
        };
        // Nothing reaches a provider: nothing is charged, nothing is reserved.
        self.undo_admission();
        let include_usage = self.cache.as_ref().is_some_and(|c| c.include_usage);
        let replay = if self.stream {
            cache::replay_as_stream(&answer, include_usage)
        } else {
            None
        };
        let (content_type, body) = match &replay {
            Some(sse) => ("text/event-stream", sse.as_slice()),
            None => ("application/json", answer.as_slice()),
        };
        let headers = [("content-type", content_type), ("x-llm-cache", "hit")];
        if let Err(e) = host::send_local_response(200, &headers, body) {
            log::error!("cannot answer from the cache (host status {})", e.0);
        }
        self.answered_locally = true;
        Step::Replied(Action::Pause)
    }

    /// Says a miss in the answer's headers and decides whether to keep the answer.
    pub(super) fn cache_response_headers(&mut self) {
        let stream = self.stream;
        let status = self.status;
        if let Some(c) = &mut self.cache {
            let _ = host::set_header(
                crate::filter::host::Map::ResponseHeaders,
                "x-llm-cache",
                "miss",
            );
            // Streamed answers are not stored: a later non-streamed or streamed request
            // is served from a non-streamed one.
            c.buffering = status == 200 && !stream && !c.controls.no_store;
        }
    }

    /// Holds a non-streamed answer until it is whole, then stores it.
    pub(super) fn cache_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let runtime = std::rc::Rc::clone(&self.runtime);
        let Some(config) = &runtime.config.general.response_cache else {
            return Action::Continue;
        };
        let Some(c) = &mut self.cache else {
            return Action::Continue;
        };
        if body_size > config.max_entry_bytes as usize {
            // Too large to keep: let it go as it is.
            c.buffering = false;
            self.delivered_bytes = body_size as u64;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        c.buffering = false;
        self.delivered_bytes = body_size as u64;
        let Ok(answer) = host::get_buffer(Buffer::ResponseBody, 0, body_size) else {
            return Action::Continue;
        };
        let now = host::now_nanos() / 1_000_000_000;
        let ttl = c.controls.ttl.unwrap_or(config.ttl_secs).max(1);
        let entry = cache::encode_entry(&c.key, now, ttl, &answer);
        match &runtime.config.general.spend_store {
            Some(store) => {
                let set = cache::store_set_body(&c.key, &entry, ttl);
                let token = spend::call(self, store, &set);
                if let Some(c) = &mut self.cache {
                    c.store_token = token;
                }
                if token.is_some() {
                    // The answer waits for the write (at most timeout_ms): a write sent
                    // as the request ends would be cancelled with it.
                    return Action::Pause;
                }
                Action::Continue
            }
            None => {
                super::super::cache::store_local(config, &c.key, &entry);
                Action::Continue
            }
        }
    }

    // === the shared spend ledger ===

    /// Asks the spend store to reserve the admitted request's worst case against the
    /// shared budgets of its key and team (nothing to do without a budget to share).
    fn reserve_in_store(&mut self) -> Step {
        let runtime = std::rc::Rc::clone(&self.runtime);
        let Some(store) = &runtime.config.general.spend_store else {
            return Step::Next;
        };
        let Some(admission) = self.admission.as_ref() else {
            return Step::Next;
        };
        let key = self.virtual_key();
        let team = runtime.config.keys.team_of(key);
        let subjects: Vec<_> = ledger::Subject::of("key", &key.name, &key.limits)
            .into_iter()
            .chain(team.and_then(|t| ledger::Subject::of("team", &t.name, &t.limits)))
            .collect();
        if subjects.is_empty() {
            return Step::Next;
        }
        let now = self.started_nanos / 1_000_000_000;
        let lease = key.limits.inflight_lease_secs;
        let reservation =
            ledger::Reservation::new(subjects, admission.reserved_micro_usd, now, lease);
        let body = reservation.reserve_body(now, lease);
        self.ledger = Some(reservation);
        match spend::call(self, store, &body) {
            Some(token) => Step::Wait(token),
            // Decided at once, as if the store had not answered.
            None => match self.store_decision(0, b"") {
                Some(action) => Step::Replied(action),
                None => Step::Next,
            },
        }
    }

    /// Acts on the store's answer: `None` to go on, else the refusal sent.
    fn store_decision(&mut self, status: u16, body: &[u8]) -> Option<Action> {
        let mode = self
            .runtime
            .config
            .general
            .spend_store
            .as_ref()
            .map_or(BudgetFailureMode::Closed, |s| s.budget_failure_mode);
        // Status 0: no answer within timeout_ms.
        let decision = match ledger::parse_reserve_reply(status, body) {
            ReserveReply::Admitted => {
                if let Some(r) = &mut self.ledger {
                    r.held = true;
                }
                "ok"
            }
            ReserveReply::Unavailable => {
                spend::count("llm_spend_store_errors_total", 1);
                log::warn!("spend store: no usable answer (HTTP {status}, 0: none within timeout_ms); budget decided without it");
                match mode {
                    BudgetFailureMode::Open => "unavailable_open",
                    BudgetFailureMode::Closed => "unavailable_closed",
                }
            }
            ReserveReply::Refused {
                subject,
                spent_micro,
                reserved_micro,
            } => {
                let error = self.shared_budget_refusal(subject, spent_micro, reserved_micro);
                self.undo_admission();
                let _ = host::set_property(&[ledger::DECISION_STATE], b"ok");
                return Some(self.reply_error(&error));
            }
        };
        let _ = host::set_property(&[ledger::DECISION_STATE], decision.as_bytes());
        if decision == "unavailable_closed" {
            self.undo_admission();
            let e = GatewayError::new(
                ErrorKind::Overloaded,
                "The spend store that holds this key's shared budget did not answer in time; retry the request.",
            )
            .with_code("spend_store_unavailable");
            let body = self.error_body(&e);
            return Some(self.reply_json(e.status, &body, &[("retry-after", "1")]));
        }
        if decision != "ok" {
            spend::count("llm_spend_store_decisions_without_store_total", 1);
        }
        None
    }

    /// A request refused or answered here leaves no trace in the per-process counters
    /// (but its request count), nor in the store.
    fn undo_admission(&mut self) {
        self.ledger = None;
        if let Some(a) = self.admission.take() {
            let _ = settlement::settle(&SharedData, a, Settlement::Failed, super::now_secs());
        }
    }

    fn shared_budget_refusal(&self, subject: usize, spent: u64, reserved: u64) -> GatewayError {
        let cost = self.ledger.as_ref().map_or(0, |r| r.cost);
        let (who, max, duration) = match self.ledger.as_ref().and_then(|r| r.subjects.get(subject))
        {
            Some(s) => (
                format!("{} `{}`", s.kind, s.name),
                s.budget_micro,
                s.duration.name(),
            ),
            None => ("this key".to_string(), 0, "total"),
        };
        GatewayError::new(
            ErrorKind::RateLimit,
            format!(
                "Budget exceeded for {who}: {} spent of its {} {duration} budget across all gateway replicas, {} reserved by requests in flight, and this request may cost up to {}.",
                format_dollars(spent),
                format_dollars(max),
                format_dollars(reserved),
                format_dollars(cost),
            ),
        )
        .with_code("budget_exceeded")
    }
}
