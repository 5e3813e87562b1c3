//! Admission and settlement: requests per minute, tokens per minute, parallel requests and
//! dollar budgets per virtual key and team, held in a shared [`Store`] so that they hold
//! across all Envoy worker VMs at once.
//!
//! The store is modelled on Envoy's shared data: process-wide, values with a version
//! (`cas`), and a write that succeeds only if the version is unchanged. Every
//! read-modify-write here is a compare-and-swap loop bounded by [`MAX_CAS_TRIES`]; when it
//! runs out the request is refused with a 503 rather than admitted unaccounted (fail
//! closed), and nothing loops forever or panics.
//!
//! # Records
//!
//! One record per key (`llm_gateway.v1.key.<name>`) and per team
//! (`llm_gateway.v1.team.<name>`) holds every counter of that subject, so admitting a
//! request is one CAS per subject, and the set of store keys stays fixed. That matters:
//! Envoy shared data cannot delete keys, so a key per minute or per period would grow
//! forever, and the first write of a key cannot be a CAS (see [`prepare`]). Windows and
//! periods are ids *inside* the record; a reader that finds an old id treats the counter
//! as zero, so roll-over needs no timer.
//!
//! The value is compact ASCII, space-separated decimal numbers:
//!
//! ```text
//! v1 <minute> <requests> <tokens> <period> <spent> <start> <parallel> <reserved> <start> <parallel> <reserved>
//! ```
//!
//! `minute` is `now / 60`, the fixed window of `requests` and `tokens`; `period` is the
//! budget period (`d20526`, `w2932`, `m24315`, `t0`: see [`crate::config::keys::Period`]) of
//! `spent` (micro-USD); then two in-flight buckets (current, previous), each the second it
//! started, the requests admitted in it that have not settled, and their reserved
//! micro-USD. A bucket is dropped once it is older than the in-flight lease (a little more
//! than the longest route timeout), so a request whose settlement never comes (VM reload,
//! crash) stops holding its parallel slot and reservation by itself. A value that does not
//! parse (another version) is read as an empty record and replaced.
//!
//! # Request lifecycle
//!
//! [`admit`] checks, in order, parallel requests (key, then team), requests per minute,
//! tokens per minute and the budget, and then counts the request: one request and its
//! estimated prompt tokens in this minute, one parallel slot and the worst-case cost as a
//! reservation. If the team's record refuses after the key's was written, the key's
//! increments are rolled back, so a refused request leaves nothing behind. [`settle`]
//! (once, when the request ends) frees the slot and the reservation and adds the real cost
//! and tokens.

pub mod byte_budget;
pub mod ledger;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::keys::{format_utc, BudgetDuration, Limits, Team, VirtualKey};
use crate::error::{ErrorKind, GatewayError};
use crate::usage::Usage;

/// Most attempts of one compare-and-swap loop before giving up (fail closed). Each Envoy
/// worker runs one request at a time, so a loop only loses to another worker's write in
/// between its read and its write; 64 losses in a row means something is wrong.
pub const MAX_CAS_TRIES: usize = 64;

/// Prefix of every store key (the version changes when the record format does).
pub const STORE_PREFIX: &str = "llm_gateway.v1.";

/// Store key of a virtual key's record.
pub fn key_store_key(name: &str) -> String {
    format!("{STORE_PREFIX}key.{name}")
}

/// Store key of a team's record.
pub fn team_store_key(name: &str) -> String {
    format!("{STORE_PREFIX}team.{name}")
}

// === store ===

/// Why a store write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read (the caller reads again and retries). From
    /// [`settle`]: still contended after [`MAX_CAS_TRIES`] attempts.
    CasMismatch,
    /// Any other failure of the host.
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => write!(f, "value changed concurrently (cas mismatch)"),
            StoreError::Other(m) => write!(f, "{m}"),
        }
    }
}

/// A versioned key-value store with compare-and-swap, as Envoy's shared data is.
///
/// Contract (Envoy's): `get` returns the value and its version, `None` only when the key
/// does not exist; `set` with `cas: Some(v)` fails with [`StoreError::CasMismatch`] unless
/// the stored version is still `v`; with `None` it writes unconditionally. Writing a key
/// that does not exist always succeeds (there is no create-if-absent).
pub trait Store {
    /// The value of `key` and its version.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the version is still `cas` (or unconditionally with `None`).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// An in-process [`Store`] with Envoy's semantics, for tests and host-side tools.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((_, current)), Some(expected)) = (inner.map.get(key), cas) {
            // Envoy: a cas of 0 means "no check".
            if expected != 0 && expected != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        inner.last_cas = inner.last_cas.wrapping_add(1).max(1);
        let version = inner.last_cas;
        inner.map.insert(key.to_string(), (value.to_vec(), version));
        Ok(())
    }
}

// === records ===

/// Requests admitted in one lease interval and not yet settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// The second it started (its id).
    start: u64,
    parallel: u64,
    reserved_micro: u64,
}

/// Every counter of one key or team (format in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    minute: u64,
    requests: u64,
    tokens: u64,
    period_kind: u8,
    period: u64,
    spent_micro: u64,
    cur: Bucket,
    prev: Bucket,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            minute: 0,
            requests: 0,
            tokens: 0,
            period_kind: kind_code(BudgetDuration::Total),
            period: 0,
            spent_micro: 0,
            cur: Bucket::default(),
            prev: Bucket::default(),
        }
    }
}

fn kind_code(d: BudgetDuration) -> u8 {
    match d {
        BudgetDuration::Daily => b'd',
        BudgetDuration::Weekly => b'w',
        BudgetDuration::Monthly => b'm',
        BudgetDuration::Total => b't',
    }
}

/// What a record needs from the subject's limits to roll its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    duration: BudgetDuration,
    lease_secs: u64,
}

impl Clock {
    fn of(limits: &Limits) -> Clock {
        Clock {
            duration: limits.budget_duration,
            lease_secs: limits.inflight_lease_secs.max(1),
        }
    }
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        format!(
            "v1 {} {} {} {}{} {} {} {} {} {} {} {}",
            self.minute,
            self.requests,
            self.tokens,
            char::from(self.period_kind),
            self.period,
            self.spent_micro,
            self.cur.start,
            self.cur.parallel,
            self.cur.reserved_micro,
            self.prev.start,
            self.prev.parallel,
            self.prev.reserved_micro,
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let fields: Vec<&str> = text.split(' ').collect();
        let [version, minute, requests, tokens, period, spent, cur_start, cur_par, cur_res, prev_start, prev_par, prev_res] =
            fields.as_slice()
        else {
            return None;
        };
        if *version != "v1" {
            return None;
        }
        let n = |s: &str| s.parse::<u64>().ok();
        let (&kind, digits) = period.as_bytes().split_first()?;
        if !kind.is_ascii_lowercase() {
            return None;
        }
        Some(Record {
            minute: n(minute)?,
            requests: n(requests)?,
            tokens: n(tokens)?,
            period_kind: kind,
            period: n(std::str::from_utf8(digits).ok()?)?,
            spent_micro: n(spent)?,
            cur: Bucket {
                start: n(cur_start)?,
                parallel: n(cur_par)?,
                reserved_micro: n(cur_res)?,
            },
            prev: Bucket {
                start: n(prev_start)?,
                parallel: n(prev_par)?,
                reserved_micro: n(prev_res)?,
            },
        })
    }

    /// Rolls the minute, the budget period and the in-flight buckets forward to `now`.
    /// Ids never move backwards, so a worker whose clock reads a little behind the last
    /// writer's keeps the newer window.
    fn normalize(&mut self, clock: Clock, now: u64) {
        let minute = now / 60;
        if minute > self.minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
        }
        let period = clock.duration.period(now);
        let kind = kind_code(clock.duration);
        if self.period_kind != kind || period.id > self.period {
            // A new period, or the config changed the duration: start over.
            self.period_kind = kind;
            self.period = period.id;
            self.spent_micro = 0;
        }
        let l = clock.lease_secs;
        if now >= self.cur.start.saturating_add(l) {
            // Requests of a bucket count for at least one whole lease after they start.
            self.prev = if now < self.cur.start.saturating_add(2 * l) {
                self.cur
            } else {
                Bucket::default()
            };
            self.cur = Bucket {
                start: now,
                parallel: 0,
                reserved_micro: 0,
            };
        }
    }

    fn in_flight(&self) -> u64 {
        self.cur.parallel.saturating_add(self.prev.parallel)
    }

    fn reserved(&self) -> u64 {
        self.cur
            .reserved_micro
            .saturating_add(self.prev.reserved_micro)
    }

    fn bucket_mut(&mut self, start: u64) -> Option<&mut Bucket> {
        if self.cur.start == start {
            Some(&mut self.cur)
        } else if self.prev.start == start {
            Some(&mut self.prev)
        } else {
            None
        }
    }
}

// === requests and refusals ===

/// What [`admit`] needs to know about a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestFacts {
    /// `request::estimate_prompt_tokens` of the body.
    pub estimated_prompt_tokens: u64,
    /// The most output the request may produce: its `max_tokens`/`max_completion_tokens`,
    /// else the deployment default, times the number of choices (`n`).
    pub max_output_tokens: u64,
    /// Worst-case USD per input token over the route's deployments (0 when unpriced).
    pub input_price_per_token: f64,
    /// Worst-case USD per output token over the route's deployments (0 when unpriced).
    pub output_price_per_token: f64,
}

impl RequestFacts {
    /// The most the request can cost, in micro-USD, rounded up (a price that is not a
    /// finite number reserves everything, so a broken price cannot overspend).
    pub fn worst_case_micro_usd(&self) -> u64 {
        micro_usd_rounded_up(
            self.estimated_prompt_tokens as f64 * self.input_price_per_token
                + self.max_output_tokens as f64 * self.output_price_per_token,
        )
    }

    /// The prompt's part of [`Self::worst_case_micro_usd`].
    pub fn prompt_micro_usd(&self) -> u64 {
        micro_usd_rounded_up(self.estimated_prompt_tokens as f64 * self.input_price_per_token)
    }
}

/// USD as micro-USD, rounded up (not a finite number: everything, so a broken price
/// cannot overspend).
fn micro_usd_rounded_up(usd: f64) -> u64 {
    let micro = usd * 1e6;
    if micro.is_nan() || micro == f64::INFINITY {
        return u64::MAX;
    }
    if micro <= 0.0 {
        return 0;
    }
    // Prices like 2.5e-6 are not exact in binary: 500.0000000001 is 500, not 501.
    let nearest = micro.round();
    if (micro - nearest).abs() < 1e-6 {
        nearest as u64
    } else {
        micro.ceil() as u64
    }
}

impl RequestFacts {
    /// The facts of `request` sent on `route`: its estimated prompt, its output limit (or
    /// the largest deployment default on the route), and the highest per-token prices of
    /// any priced deployment the route may reach (fallbacks included; cache writes and
    /// reasoning count as input and output), so the reservation covers every attempt.
    /// Unpriced deployments add nothing: their spend is not known.
    pub fn for_route(
        config: &crate::config::GatewayConfig,
        route: &crate::config::chains::RoutePlan,
        request: &crate::openai::ChatRequest,
    ) -> RequestFacts {
        let deployments = route
            .tiers
            .iter()
            .filter_map(|t| config.tiers.get(*t))
            .flat_map(|t| t.deployments.iter())
            .filter_map(|d| config.deployments.get(*d));
        let (mut input, mut output, mut default_max) = (0u64, 0u64, 0u64);
        for d in deployments {
            default_max = default_max.max(d.options.default_max_tokens);
            if let Some(p) = d.price {
                input = input.max(p.input).max(p.cache_write);
                output = output.max(p.output).max(p.reasoning);
            }
        }
        // Every choice (`n`) can produce the whole output limit.
        let choices = u64::from(request.n.unwrap_or(1).max(1));
        RequestFacts {
            estimated_prompt_tokens: crate::request::estimate_prompt_tokens(request),
            max_output_tokens: request
                .output_limit()
                .unwrap_or(default_max)
                .saturating_mul(choices),
            // Prices are pico-USD per token.
            input_price_per_token: input as f64 * 1e-12,
            output_price_per_token: output as f64 * 1e-12,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// `max_parallel_requests`.
    Parallel,
    /// `rpm_limit`.
    Requests,
    /// `tpm_limit`.
    Tokens,
    /// `max_budget`.
    Budget,
    /// The counters could not be updated (contention or a host failure): 503.
    Unavailable,
}

/// A request the limits refuse: the OpenAI-shaped error and what the reply headers need.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The error to answer with (429, or 503 when the counters were unavailable).
    pub error: GatewayError,
    /// Which limit.
    pub reason: RefusalReason,
    /// `retry-after` in seconds, when waiting helps (`None`: it does not, or no one knows).
    /// At most a month, so `u32` (which keeps the error small).
    pub retry_after_secs: Option<u32>,
    /// The `x-ratelimit-*` headers of the window that refused (requests or tokens).
    pub rate_headers: Vec<(&'static str, String)>,
}

impl Refusal {
    /// Headers for the refusal: `retry-after` and the `x-ratelimit-*` of the limit hit.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(s) = self.retry_after_secs {
            h.push(("retry-after", s.to_string()));
        }
        h.extend(self.rate_headers.iter().cloned());
        h
    }
}

impl From<Refusal> for GatewayError {
    fn from(r: Refusal) -> GatewayError {
        r.error
    }
}

/// One fixed window's numbers for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The limit.
    pub limit: u64,
    /// What is left of it in this window (after this request).
    pub remaining: u64,
    /// Seconds until the window starts over.
    pub reset_secs: u64,
}

/// The tightest request and token windows over the key and its team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// `rpm_limit` window, when a limit applies.
    pub requests: Option<Window>,
    /// `tpm_limit` window, when a limit applies.
    pub tokens: Option<Window>,
}

impl RateLimitInfo {
    /// OpenAI's `x-ratelimit-*` headers for the windows that apply.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(w) = self.requests {
            h.push(("x-ratelimit-limit-requests", w.limit.to_string()));
            h.push(("x-ratelimit-remaining-requests", w.remaining.to_string()));
            h.push(("x-ratelimit-reset-requests", format!("{}s", w.reset_secs)));
        }
        if let Some(w) = self.tokens {
            h.push(("x-ratelimit-limit-tokens", w.limit.to_string()));
            h.push(("x-ratelimit-remaining-tokens", w.remaining.to_string()));
            h.push(("x-ratelimit-reset-tokens", format!("{}s", w.reset_secs)));
        }
        h
    }

    /// Keeps the window with less left.
    fn tighten(slot: &mut Option<Window>, w: Window) {
        if slot.is_none_or(|old| w.remaining < old.remaining) {
            *slot = Some(w);
        }
    }
}

/// A subject's share of an admitted request: what to undo or settle, where.
#[derive(Debug, PartialEq, Eq)]
struct Hold {
    store_key: String,
    clock: Clock,
    /// The minute the request and its estimated tokens were counted in.
    minute: u64,
    /// The in-flight bucket holding its slot and reservation.
    bucket: u64,
}

/// An admitted request: what [`settle`] needs, and the values of the rate-limit headers.
///
/// Deliberately not `Clone`: [`settle`] takes it by value, so one admission is settled at
/// most once (keep it in an `Option` and `take()` it when the request ends).
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    /// The key's name (`master` for the master key).
    pub key_name: String,
    /// Its team's name.
    pub team_name: Option<String>,
    /// Worst-case cost reserved against the budgets, in micro-USD.
    pub reserved_micro_usd: u64,
    /// Estimated prompt tokens counted against `tpm_limit` until settlement.
    pub reserved_tokens: u64,
    /// The prompt's part of `reserved_micro_usd`.
    pub reserved_prompt_micro_usd: u64,
    /// The output tokens the reservation covers (the output limit times `n`).
    pub reserved_output_tokens: u64,
    /// Values for the `x-ratelimit-*` response headers.
    pub rate: RateLimitInfo,
    holds: Vec<Hold>,
}

impl Admission {
    /// The store keys this admission holds counters in (none for the master key).
    pub fn store_keys(&self) -> impl Iterator<Item = &str> {
        self.holds.iter().map(|h| h.store_key.as_str())
    }
}

/// OpenAI's `x-ratelimit-*` response headers for an admitted request (none when no
/// `rpm_limit`/`tpm_limit` applies).
pub fn rate_limit_headers(admission: &Admission) -> Vec<(&'static str, String)> {
    admission.rate.headers()
}

// === admission ===

/// A key or team as admission sees it.
struct Subject<'a> {
    what: &'static str,
    name: &'a str,
    limits: &'a Limits,
    store_key: String,
}

impl Subject<'_> {
    fn who(&self) -> String {
        format!("{} `{}`", self.what, self.name)
    }
}

/// Micro-USD as dollars, at least two decimals, no trailing zeros beyond that.
pub fn format_dollars(micro: u64) -> String {
    let mut frac = format!("{:06}", micro % 1_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("${}.{frac}", micro / 1_000_000)
}

fn rate_limited(message: String) -> GatewayError {
    GatewayError::new(ErrorKind::RateLimit, message).with_code("rate_limit_exceeded")
}

fn secs_u32(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

fn minute_reset(rec: &Record, now: u64) -> u64 {
    rec.minute
        .saturating_add(1)
        .saturating_mul(60)
        .saturating_sub(now)
        .max(1)
}

fn unavailable(s: &Subject<'_>, why: &str) -> Refusal {
    Refusal {
        error: GatewayError::new(
            ErrorKind::Overloaded,
            format!(
                "The gateway could not update the usage counters of {} ({why}); retry the request.",
                s.who()
            ),
        )
        .with_code("accounting_unavailable"),
        reason: RefusalReason::Unavailable,
        retry_after_secs: Some(1),
        rate_headers: Vec::new(),
    }
}

/// The check of one limit on one subject's (normalized) record.
fn check(
    reason: RefusalReason,
    s: &Subject<'_>,
    rec: &Record,
    facts: &RequestFacts,
    cost: u64,
    now: u64,
) -> Option<Refusal> {
    let l = s.limits;
    match reason {
        RefusalReason::Parallel => {
            let max = l.max_parallel_requests?;
            let busy = rec.in_flight();
            (busy.saturating_add(1) > max).then(|| Refusal {
                error: rate_limited(format!(
                    "Too many parallel requests for {}: {busy} in flight, its max_parallel_requests is {max}. Retry when one finishes.",
                    s.who()
                )),
                reason,
                retry_after_secs: Some(1),
                rate_headers: Vec::new(),
            })
        }
        RefusalReason::Requests => {
            let max = l.rpm_limit?;
            let reset = minute_reset(rec, now);
            (rec.requests.saturating_add(1) > max).then(|| Refusal {
                error: rate_limited(format!(
                    "Rate limit reached for {}: {} of its {max} requests per minute (rpm_limit) used. Retry in {reset}s.",
                    s.who(),
                    rec.requests
                )),
                reason,
                retry_after_secs: Some(secs_u32(reset)),
                rate_headers: RateLimitInfo {
                    requests: Some(Window { limit: max, remaining: 0, reset_secs: reset }),
                    tokens: None,
                }.headers(),
            })
        }
        RefusalReason::Tokens => {
            let max = l.tpm_limit?;
            let need = facts.estimated_prompt_tokens;
            let reset = minute_reset(rec, now);
            let window = Window {
                limit: max,
                remaining: max.saturating_sub(rec.tokens),
                reset_secs: reset,
            };
            if need > max {
                return Some(Refusal {
                    error: rate_limited(format!(
                        "Request too large for {}: its prompt is about {need} tokens, more than its tpm_limit of {max} tokens per minute. Shorten the prompt or ask for a higher tpm_limit.",
                        s.who()
                    )),
                    reason,
                    retry_after_secs: None,
                    rate_headers: RateLimitInfo { requests: None, tokens: Some(window) }.headers(),
                });
            }
            (rec.tokens.saturating_add(need) > max).then(|| Refusal {
                error: rate_limited(format!(
                    "Rate limit reached for {}: {} of its {max} tokens per minute (tpm_limit) used and this request needs about {need}. Retry in {reset}s.",
                    s.who(),
                    rec.tokens
                )),
                reason,
                retry_after_secs: Some(secs_u32(reset)),
                rate_headers: RateLimitInfo { requests: None, tokens: Some(window) }.headers(),
            })
        }
        RefusalReason::Budget => {
            let max = l.max_budget_micro_usd?;
            let reserved = rec.reserved();
            if rec
                .spent_micro
                .saturating_add(reserved)
                .saturating_add(cost)
                <= max
            {
                return None;
            }
            let period = l.budget_duration.period(now);
            let (span, reset) = match period.end_unix_secs() {
                Some(end) => (
                    format!("{} budget ({})", l.budget_duration.name(), period.label()),
                    format!("It resets at {}.", format_utc(end)),
                ),
                None => (
                    "total budget".to_string(),
                    "It does not reset: ask your gateway administrator to raise max_budget."
                        .to_string(),
                ),
            };
            Some(Refusal {
                error: GatewayError::new(
                    ErrorKind::RateLimit,
                    format!(
                        "Budget exceeded for {}: {} spent of its {} {span}, {} reserved by requests in flight, and this request may cost up to {}. {reset}",
                        s.who(),
                        format_dollars(rec.spent_micro),
                        format_dollars(max),
                        format_dollars(reserved),
                        format_dollars(cost),
                    ),
                )
                .with_code("budget_exceeded"),
                reason,
                retry_after_secs: period
                    .end_unix_secs()
                    .map(|e| secs_u32(e.saturating_sub(now).max(1))),
                rate_headers: Vec::new(),
            })
        }
        RefusalReason::Unavailable => None,
    }
}

const CHECK_ORDER: [RefusalReason; 4] = [
    RefusalReason::Parallel,
    RefusalReason::Requests,
    RefusalReason::Tokens,
    RefusalReason::Budget,
];

/// The first failing check, limit by limit, key before team within each limit.
fn first_failure(
    subjects: &[(&Subject<'_>, &Record)],
    facts: &RequestFacts,
    cost: u64,
    now: u64,
) -> Option<Refusal> {
    CHECK_ORDER.iter().find_map(|reason| {
        subjects
            .iter()
            .find_map(|(s, rec)| check(*reason, s, rec, facts, cost, now))
    })
}

/// Reads a subject's record rolled forward to `now`, creating it when missing.
fn load(
    store: &dyn Store,
    s: &Subject<'_>,
    now: u64,
    tries: &mut usize,
) -> Result<(Record, u32), Refusal> {
    while *tries < MAX_CAS_TRIES {
        *tries += 1;
        match store.get(&s.store_key) {
            Some((bytes, cas)) => {
                let mut rec = Record::decode(&bytes).unwrap_or_default();
                rec.normalize(Clock::of(s.limits), now);
                return Ok((rec, cas));
            }
            // No create-if-absent exists: write an empty record, then CAS on it.
            None => {
                if let Err(StoreError::Other(e)) =
                    store.set(&s.store_key, &Record::default().encode(), None)
                {
                    return Err(unavailable(s, &e));
                }
            }
        }
    }
    Err(unavailable(s, "too many concurrent updates"))
}

/// Counts the request in a normalized record; returns where it went.
fn charge(rec: &mut Record, s: &Subject<'_>, facts: &RequestFacts, cost: u64) -> Hold {
    rec.requests = rec.requests.saturating_add(1);
    rec.tokens = rec.tokens.saturating_add(facts.estimated_prompt_tokens);
    rec.cur.parallel = rec.cur.parallel.saturating_add(1);
    rec.cur.reserved_micro = rec.cur.reserved_micro.saturating_add(cost);
    Hold {
        store_key: s.store_key.clone(),
        clock: Clock::of(s.limits),
        minute: rec.minute,
        bucket: rec.cur.start,
    }
}

/// Tightens the header windows with a subject's record after charging.
fn note_rate(rate: &mut RateLimitInfo, s: &Subject<'_>, rec: &Record, now: u64) {
    let reset = minute_reset(rec, now);
    if let Some(max) = s.limits.rpm_limit {
        RateLimitInfo::tighten(
            &mut rate.requests,
            Window {
                limit: max,
                remaining: max.saturating_sub(rec.requests),
                reset_secs: reset,
            },
        );
    }
    if let Some(max) = s.limits.tpm_limit {
        RateLimitInfo::tighten(
            &mut rate.tokens,
            Window {
                limit: max,
                remaining: max.saturating_sub(rec.tokens),
                reset_secs: reset,
            },
        );
    }
}

/// Admits a request for `key` (and its `team`, from [`crate::config::keys::KeyTable::team_of`])
/// or refuses it.
///
/// Checks, in order: parallel requests (key, team), requests per minute, tokens per minute
/// (used + estimated prompt ≤ limit), budget (spent + reserved + worst-case cost ≤
/// max_budget in the current period). When all pass, the request is counted in both
/// records by compare-and-swap; a refusal leaves the store as it was. The master key is
/// admitted without touching the store.
pub fn admit(
    store: &dyn Store,
    key: &VirtualKey,
    team: Option<&Team>,
    facts: &RequestFacts,
    now_unix_secs: u64,
) -> Result<Admission, Refusal> {
    let now = now_unix_secs;
    let mut admission = Admission {
        key_name: key.name.clone(),
        team_name: team.map(|t| t.name.clone()),
        reserved_micro_usd: 0,
        reserved_tokens: 0,
        reserved_prompt_micro_usd: 0,
        reserved_output_tokens: 0,
        rate: RateLimitInfo::default(),
        holds: Vec::new(),
    };
    if key.is_master {
        return Ok(admission);
    }
    let cost = facts.worst_case_micro_usd();
    let ks = Subject {
        what: "key",
        name: &key.name,
        limits: &key.limits,
        store_key: key_store_key(&key.name),
    };
    let ts = team.map(|t| Subject {
        what: "team",
        name: &t.name,
        limits: &t.limits,
        store_key: team_store_key(&t.name),
    });

    // Phase 1: check both records as read, then write the key's record if unchanged.
    let mut key_tries = 0;
    let mut team_tries = 0;
    let (krec, key_hold, mut team_snapshot) = loop {
        let (mut krec, kcas) = load(store, &ks, now, &mut key_tries)?;
        let team_snapshot = match &ts {
            Some(s) => Some(load(store, s, now, &mut team_tries)?),
            None => None,
        };
        let mut subjects = vec![(&ks, &krec)];
        if let (Some(s), Some((trec, _))) = (&ts, &team_snapshot) {
            subjects.push((s, trec));
        }
        if let Some(refusal) = first_failure(&subjects, facts, cost, now) {
            return Err(refusal);
        }
        let hold = charge(&mut krec, &ks, facts, cost);
        match store.set(&ks.store_key, &krec.encode(), Some(kcas)) {
            Ok(()) => break (krec, hold, team_snapshot),
            Err(StoreError::CasMismatch) if key_tries < MAX_CAS_TRIES => key_tries += 1,
            Err(StoreError::CasMismatch) => {
                return Err(unavailable(&ks, "too many concurrent updates"))
            }
            Err(StoreError::Other(e)) => return Err(unavailable(&ks, &e)),
        }
    };
    note_rate(&mut admission.rate, &ks, &krec, now);
    admission.holds.push(key_hold);

    // Phase 2: the team's record; if it changed, check it again, and undo the key's
    // counts if it now refuses.
    if let Some(s) = &ts {
        while let Some((mut trec, tcas)) = team_snapshot.take() {
            let hold = charge(&mut trec, s, facts, cost);
            let failure = match store.set(&s.store_key, &trec.encode(), Some(tcas)) {
                Ok(()) => {
                    note_rate(&mut admission.rate, s, &trec, now);
                    admission.holds.push(hold);
                    break;
                }
                Err(StoreError::CasMismatch) if team_tries < MAX_CAS_TRIES => {
                    team_tries += 1;
                    match load(store, s, now, &mut team_tries) {
                        Ok((fresh, cas)) => match first_failure(&[(s, &fresh)], facts, cost, now) {
                            Some(refusal) => refusal,
                            None => {
                                team_snapshot = Some((fresh, cas));
                                continue;
                            }
                        },
                        Err(refusal) => refusal,
                    }
                }
                Err(StoreError::CasMismatch) => unavailable(s, "too many concurrent updates"),
                Err(StoreError::Other(e)) => unavailable(s, &e),
            };
            // Best effort: if even the undo cannot be written, the lease frees the slot
            // and the reservation later.
            let _ = release_all(store, admission.holds, Release::Undo, now, facts, cost);
            return Err(failure);
        }
    }
    admission.reserved_micro_usd = cost;
    admission.reserved_tokens = facts.estimated_prompt_tokens;
    admission.reserved_prompt_micro_usd = facts.prompt_micro_usd().min(cost);
    admission.reserved_output_tokens = facts.max_output_tokens;
    Ok(admission)
}

/// Refuses, from the headers alone, a request no body could make admissible: its key or
/// team is at its parallel or per-minute request limit, over its token limit, or has no
/// budget left for any priced request (spent and reserved reach `max_budget`). Reads the
/// records and writes nothing; [`admit`] still decides on the body. Refusing here spares
/// buffering a body that would be refused anyway.
pub fn precheck(
    store: &dyn Store,
    key: &VirtualKey,
    team: Option<&Team>,
    now_unix_secs: u64,
) -> Result<(), Refusal> {
    if key.is_master {
        return Ok(());
    }
    let nothing = RequestFacts {
        estimated_prompt_tokens: 0,
        max_output_tokens: 0,
        input_price_per_token: 0.0,
        output_price_per_token: 0.0,
    };
    let mut subjects = vec![(&key.name, &key.limits, key_store_key(&key.name), "key")];
    if let Some(t) = team {
        subjects.push((&t.name, &t.limits, team_store_key(&t.name), "team"));
    }
    for (name, limits, store_key, what) in subjects {
        let Some((bytes, _)) = store.get(&store_key) else {
            continue;
        };
        let mut rec = Record::decode(&bytes).unwrap_or_default();
        rec.normalize(Clock::of(limits), now_unix_secs);
        let s = Subject {
            what,
            name,
            limits,
            store_key,
        };
        // The smallest priced request costs 1 micro-USD.
        if let Some(refusal) = first_failure(&[(&s, &rec)], &nothing, 1, now_unix_secs) {
            return Err(refusal);
        }
    }
    Ok(())
}

// === settlement ===

/// How a hold ends.
#[derive(Debug, Clone, Copy)]
enum Release {
    /// The request was refused after all: remove every trace, the request count too.
    Undo,
    /// The request failed: free the slot and reservation, drop the token estimate.
    Failed,
    /// The request completed: free the slot and reservation, count what it really used.
    Done { tokens: u64, cost_micro: u64 },
}

fn release_one(
    store: &dyn Store,
    hold: &Hold,
    how: Release,
    now: u64,
    estimated_tokens: u64,
    reserved: u64,
) -> Result<(), StoreError> {
    let mut last = StoreError::CasMismatch;
    for _ in 0..MAX_CAS_TRIES {
        let (bytes, cas) = match store.get(&hold.store_key) {
            Some((b, c)) => (b, Some(c)),
            None => (Vec::new(), None),
        };
        let mut rec = Record::decode(&bytes).unwrap_or_default();
        rec.normalize(hold.clock, now);
        if rec.minute == hold.minute {
            rec.tokens = rec.tokens.saturating_sub(estimated_tokens);
            if matches!(how, Release::Undo) {
                rec.requests = rec.requests.saturating_sub(1);
            }
        }
        if let Some(b) = rec.bucket_mut(hold.bucket) {
            b.parallel = b.parallel.saturating_sub(1);
            b.reserved_micro = b.reserved_micro.saturating_sub(reserved);
        }
        if let Release::Done { tokens, cost_micro } = how {
            // Charged to the current minute and period: that is when it was spent.
            rec.tokens = rec.tokens.saturating_add(tokens);
            rec.spent_micro = rec.spent_micro.saturating_add(cost_micro);
        }
        match store.set(&hold.store_key, &rec.encode(), cas) {
            Ok(()) => return Ok(()),
            Err(e @ StoreError::CasMismatch) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn release_all(
    store: &dyn Store,
    holds: Vec<Hold>,
    how: Release,
    now: u64,
    facts: &RequestFacts,
    cost: u64,
) -> Result<(), StoreError> {
    let mut result = Ok(());
    for hold in &holds {
        if let Err(e) = release_one(store, hold, how, now, facts.estimated_prompt_tokens, cost) {
            result = Err(e);
        }
    }
    result
}

/// How an admitted request ended, for [`settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The provider reported its usage, priced at `cost_micro_usd`.
    Used {
        /// The usage as reported (and found plausible).
        usage: Usage,
        /// Its cost in micro-USD (0 when unpriced).
        cost_micro_usd: u64,
    },
    /// Nothing billable happened: refused, failed, or answered with an error.
    Failed,
    /// A provider answered but its final usage never came (the client left mid-stream,
    /// the provider reset, or it reports no usage): charged the prompt's part of the
    /// reservation and the output the client received, at a quarter of its bytes (the
    /// stream's framing counts too, so this errs high), at most the reserved output; or
    /// what the provider reported so far, when that is more.
    Unreported {
        /// Bytes of the answer the client received.
        delivered_bytes: u64,
        /// Usage the provider reported before the answer ended (Anthropic reports the
        /// prompt first), with its cost.
        so_far: Option<(Usage, u64)>,
    },
    /// Charged the whole reservation: the request reached a provider and nothing tells
    /// what it cost (the client left before the answer) or what was reported cannot be
    /// true (more tokens than the request could produce).
    Reservation,
}

/// How an admitted request ended, as the filter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// The status the client got; 0 when the client left before any answer.
    pub status: u16,
    /// The usage the provider reported (the last attempt's), with its cost.
    pub usage: Option<(Usage, u64)>,
    /// `usage` is final: the answer reached its end.
    pub complete: bool,
    /// A provider reported usage the request cannot have caused.
    pub usage_rejected: bool,
    /// Bytes of the answer passed on to the client.
    pub delivered_bytes: u64,
}

impl Ending {
    /// What the request is charged: its reported usage when that is final; an estimate
    /// when a provider answered but the final usage never came (an aborted or reset stream,
    /// a provider that reports none); the whole reservation when the client left before
    /// any answer (the provider may have done all the work) or the usage reported cannot
    /// be true; nothing when it ended in an error.
    pub fn settlement(&self) -> Settlement {
        if self.usage_rejected {
            return Settlement::Reservation;
        }
        match (self.status, self.usage) {
            (0, _) => Settlement::Reservation,
            (_, Some((usage, cost_micro_usd))) if self.complete => Settlement::Used {
                usage,
                cost_micro_usd,
            },
            (200..=399, so_far) => Settlement::Unreported {
                delivered_bytes: self.delivered_bytes,
                so_far,
            },
            // An error answer: whatever usage came with it (rare) is what it cost.
            (_, Some((usage, cost_micro_usd))) => Settlement::Used {
                usage,
                cost_micro_usd,
            },
            (_, None) => Settlement::Failed,
        }
    }
}

impl Admission {
    /// What `how` charges: tokens for the minute and micro-USD for the budget.
    pub fn charge_of(&self, how: Settlement) -> Option<(u64, u64)> {
        match how {
            Settlement::Used {
                usage,
                cost_micro_usd,
            } => Some((usage.total_tokens(), cost_micro_usd)),
            Settlement::Failed => None,
            Settlement::Reservation => Some((
                self.reserved_tokens
                    .saturating_add(self.reserved_output_tokens),
                self.reserved_micro_usd,
            )),
            Settlement::Unreported {
                delivered_bytes,
                so_far,
            } => {
                let output = delivered_bytes.div_ceil(4).min(self.reserved_output_tokens);
                let output_reserved = self
                    .reserved_micro_usd
                    .saturating_sub(self.reserved_prompt_micro_usd);
                // output_reserved × output / reserved_output, rounded up, in u128 so
                // that nothing overflows.
                let output_cost = match self.reserved_output_tokens {
                    0 => 0,
                    all => (u128::from(output_reserved) * u128::from(output))
                        .div_ceil(u128::from(all)) as u64,
                };
                let estimate = (
                    self.reserved_tokens.saturating_add(output),
                    self.reserved_prompt_micro_usd
                        .saturating_add(output_cost)
                        .min(self.reserved_micro_usd),
                );
                Some(match so_far {
                    Some((usage, cost)) => {
                        (estimate.0.max(usage.total_tokens()), estimate.1.max(cost))
                    }
                    None => estimate,
                })
            }
        }
    }
}

/// Ends a request: frees its parallel slot and its reservation in every record it holds,
/// and adds what `how` charges ([`Admission::charge_of`]) to the current budget period
/// and the current minute's tokens (replacing the estimate when the minute has not
/// changed). [`Settlement::Failed`] only frees.
///
/// Call it exactly once per admitted request, when the request ends (`on_log`). It takes
/// the [`Admission`] by value, so a second call cannot compile; a call that never happens
/// is healed by the in-flight lease. An error means a record could not be written after
/// [`MAX_CAS_TRIES`] attempts (the other records are still settled): log it.
pub fn settle(
    store: &dyn Store,
    admission: Admission,
    how: Settlement,
    now_unix_secs: u64,
) -> Result<(), StoreError> {
    let release = match admission.charge_of(how) {
        None => Release::Failed,
        Some((tokens, cost_micro)) => Release::Done { tokens, cost_micro },
    };
    let facts = RequestFacts {
        estimated_prompt_tokens: admission.reserved_tokens,
        max_output_tokens: 0,
        input_price_per_token: 0.0,
        output_price_per_token: 0.0,
    };
    release_all(
        store,
        admission.holds,
        release,
        now_unix_secs,
        &facts,
        admission.reserved_micro_usd,
    )
}

// === reporting and setup ===

/// A key or a team, for [`spend`].
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    /// A virtual key.
    Key(&'a VirtualKey),
    /// A team.
    Team(&'a Team),
}

/// Where a key or team stands now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// Spent in the current budget period, in micro-USD.
    pub spent_micro_usd: u64,
    /// Reserved by requests in flight, in micro-USD.
    pub reserved_micro_usd: u64,
    /// Requests in flight.
    pub in_flight: u64,
    /// Requests counted in the current minute.
    pub requests_this_minute: u64,
    /// Tokens counted in the current minute.
    pub tokens_this_minute: u64,
}

/// Reads where `account` stands at `now` (for stats; writes nothing).
pub fn spend(store: &dyn Store, account: Account<'_>, now_unix_secs: u64) -> Spend {
    let (store_key, limits) = match account {
        Account::Key(k) if k.is_master => return Spend::default(),
        Account::Key(k) => (key_store_key(&k.name), &k.limits),
        Account::Team(t) => (team_store_key(&t.name), &t.limits),
    };
    let Some((bytes, _)) = store.get(&store_key) else {
        return Spend::default();
    };
    let mut rec = Record::decode(&bytes).unwrap_or_default();
    rec.normalize(Clock::of(limits), now_unix_secs);
    Spend {
        spent_micro_usd: rec.spent_micro,
        reserved_micro_usd: rec.reserved(),
        in_flight: rec.in_flight(),
        requests_this_minute: rec.requests,
        tokens_this_minute: rec.tokens,
    }
}

/// Creates the record of every key and team that has none yet; returns how many.
///
/// Envoy shared data has no create-if-absent: the first write of a store key is a plain
/// write, which could erase a concurrent first count. Call this when the downstream
/// instance is configured (`on_configure`, before it serves), so that every later write is
/// a compare-and-swap. [`admit`] still creates missing records itself.
pub fn prepare(store: &dyn Store, table: &crate::config::keys::KeyTable) -> usize {
    let names = table
        .keys
        .iter()
        .map(|k| key_store_key(&k.name))
        .chain(table.teams.iter().map(|t| team_store_key(&t.name)));
    let mut created = 0;
    for store_key in names {
        if store.get(&store_key).is_none()
            && store
                .set(&store_key, &Record::default().encode(), None)
                .is_ok()
        {
            created += 1;
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth;
    use crate::config::keys::{find_key, KeyTable};
    use crate::config::GatewayConfig;
    use serde_json::{json, Value};

    /// 2026-03-14T12:00:10Z: a Saturday in the middle of a month, 10 s into its minute.
    const NOW: u64 = 1_773_489_610;

    fn keys(keys: Value, teams: Value) -> KeyTable {
        GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
            "general_settings": {"master_key": "sk-master"},
            "virtual_keys": keys,
            "teams": teams,
        }))
        .unwrap()
        .keys
    }

    fn entry(name: &str, extra: Value) -> Value {
        let mut v = json!({"name": name, "key_sha256": auth::digest_hex(&auth::digest(name))});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn key<'a>(t: &'a KeyTable, name: &str) -> &'a VirtualKey {
        find_key(t, &auth::digest(name)).unwrap()
    }

    /// 100 prompt tokens at 1 µ$/token, 200 output tokens at 2 µ$/token: 500 µ$ worst case.
    fn facts() -> RequestFacts {
        RequestFacts {
            estimated_prompt_tokens: 100,
            max_output_tokens: 200,
            input_price_per_token: 1e-6,
            output_price_per_token: 2e-6,
        }
    }

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    fn raw(store: &MemoryStore, k: &str) -> Record {
        Record::decode(&store.get(k).unwrap().0).unwrap()
    }

    fn admit_key(
        store: &MemoryStore,
        t: &KeyTable,
        name: &str,
        f: &RequestFacts,
        now: u64,
    ) -> Result<Admission, Refusal> {
        let k = key(t, name);
        admit(store, k, t.team_of(k), f, now)
    }

    /// Worst-case cost is rounded up, but float noise does not add a micro-dollar.
    #[test]
    fn worst_case_cost() {
        assert_eq!(facts().worst_case_micro_usd(), 500);
        let f = RequestFacts {
            estimated_prompt_tokens: 1000,
            max_output_tokens: 1000,
            input_price_per_token: 2.5e-6,
            output_price_per_token: 10e-6,
        };
        assert_eq!(f.worst_case_micro_usd(), 12_500);
        let f = RequestFacts {
            estimated_prompt_tokens: 1,
            max_output_tokens: 0,
            input_price_per_token: 1.5e-7,
            output_price_per_token: 0.0,
        };
        assert_eq!(f.worst_case_micro_usd(), 1);
        let f = RequestFacts {
            input_price_per_token: f64::NAN,
            ..facts()
        };
        assert_eq!(f.worst_case_micro_usd(), u64::MAX);
        let f = RequestFacts {
            input_price_per_token: 0.0,
            output_price_per_token: 0.0,
            ..facts()
        };
        assert_eq!(f.worst_case_micro_usd(), 0);
    }

    /// A route's facts take the highest price over its deployments and fallbacks.
    #[test]
    fn facts_for_route() {
        let c = GatewayConfig::from_value(json!({
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/x",
                    "input_cost_per_token": 1e-6, "output_cost_per_token": 8e-6},
                    "model_info": {"max_output_tokens": 1000}},
                {"model_name": "b", "litellm_params": {"model": "openai/y",
                    "input_cost_per_token": 3e-6, "output_cost_per_token": 2e-6},
                    "model_info": {"max_output_tokens": 3000}},
                {"model_name": "b", "litellm_params": {"model": "openai/unpriced-z"}, "model_info": {"id": "z"}}
            ],
            "router_settings": {"fallbacks": [{"a": ["b"]}]},
            "general_settings": {"master_key": "sk-master"}
        }))
        .unwrap();
        let request = crate::request::parse_chat_request(
            br#"{"model":"a","messages":[{"role":"user","content":"12345678"}]}"#,
        )
        .unwrap();
        let alias = crate::routing::resolve_alias(&c, "a").unwrap();
        let route = crate::routing::choose_route(&c, alias, 10).unwrap();
        let f = RequestFacts::for_route(&c, route, &request);
        assert_eq!(
            f.estimated_prompt_tokens,
            crate::request::estimate_prompt_tokens(&request)
        );
        assert_eq!(
            f.max_output_tokens, 4096,
            "the unpriced deployment's default is largest"
        );
        assert!((f.input_price_per_token - 3e-6).abs() < 1e-15);
        assert!((f.output_price_per_token - 8e-6).abs() < 1e-15);
        let request = crate::request::parse_chat_request(
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":7}"#,
        )
        .unwrap();
        assert_eq!(
            RequestFacts::for_route(&c, route, &request).max_output_tokens,
            7
        );
        // Every choice may use the whole limit: `n` multiplies the worst case.
        let request = crate::request::parse_chat_request(
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":100,"n":5}"#,
        )
        .unwrap();
        assert_eq!(
            RequestFacts::for_route(&c, route, &request).max_output_tokens,
            500
        );
    }

    /// The record format round-trips and rejects anything else.
    #[test]
    fn record_encoding() {
        let r = Record {
            minute: 29_558_160,
            requests: 3,
            tokens: 1200,
            period_kind: b'm',
            period: 24_315,
            spent_micro: 1_250_000,
            cur: Bucket {
                start: NOW,
                parallel: 2,
                reserved_micro: 800,
            },
            prev: Bucket {
                start: NOW - 700,
                parallel: 1,
                reserved_micro: 5,
            },
        };
        let text = String::from_utf8(r.encode()).unwrap();
        assert_eq!(
            text,
            format!(
                "v1 29558160 3 1200 m24315 1250000 {NOW} 2 800 {} 1 5",
                NOW - 700
            )
        );
        assert_eq!(Record::decode(text.as_bytes()), Some(r));
        assert_eq!(Record::decode(b"v2 1 2 3"), None);
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(format!("{text} 9").as_bytes()), None);
        assert_eq!(
            Record::decode(text.replace("m24315", "24315").as_bytes()),
            None
        );
    }

    /// Admission reserves; settlement frees the reservation and charges the real cost.
    #[test]
    fn reserve_then_settle() {
        let t = keys(
            json!([entry(
                "alice",
                json!({"max_budget": 1.0, "max_parallel_requests": 5})
            )]),
            json!([]),
        );
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        assert_eq!(a.reserved_micro_usd, 500);
        assert_eq!(a.reserved_tokens, 100);
        assert_eq!(
            a.store_keys().collect::<Vec<_>>(),
            vec!["llm_gateway.v1.key.alice"]
        );
        let s = spend(&store, Account::Key(key(&t, "alice")), NOW);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (0, 500, 1)
        );
        assert_eq!((s.requests_this_minute, s.tokens_this_minute), (1, 100));

        settle(
            &store,
            a,
            Settlement::Used {
                usage: usage(90, 40),
                cost_micro_usd: 170,
            },
            NOW + 5,
        )
        .unwrap();
        let s = spend(&store, Account::Key(key(&t, "alice")), NOW + 5);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (170, 0, 0)
        );
        // The estimate (100) is replaced by the real total (130).
        assert_eq!((s.requests_this_minute, s.tokens_this_minute), (1, 130));

        // A failed request frees everything and charges nothing, but still counts as a request.
        let a = admit_key(&store, &t, "alice", &facts(), NOW + 6).unwrap();
        settle(&store, a, Settlement::Failed, NOW + 7).unwrap();
        let s = spend(&store, Account::Key(key(&t, "alice")), NOW + 7);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (170, 0, 0)
        );
        assert_eq!((s.requests_this_minute, s.tokens_this_minute), (2, 130));
    }

    /// A key with no budget left, or at its request limit, is refused before its body.
    #[test]
    fn precheck_refuses_what_no_body_can_fix() {
        let t = keys(
            json!([
                entry("alice", json!({"max_budget": 0.0005})),
                entry("bob", json!({"rpm_limit": 1})),
                entry("carol", json!({"max_budget": 1.0}))
            ]),
            json!([]),
        );
        let store = MemoryStore::new();
        // Nothing recorded yet: nothing to refuse.
        assert!(precheck(&store, key(&t, "alice"), None, NOW).is_ok());
        let a = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        // The whole budget is reserved by the request in flight.
        let refusal = precheck(&store, key(&t, "alice"), None, NOW).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::Budget);
        settle(&store, a, Settlement::Failed, NOW).unwrap();
        assert!(precheck(&store, key(&t, "alice"), None, NOW).is_ok());
        let b = admit_key(&store, &t, "bob", &facts(), NOW).unwrap();
        settle(&store, b, Settlement::Failed, NOW).unwrap();
        let refusal = precheck(&store, key(&t, "bob"), None, NOW).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::Requests);
        assert!(precheck(&store, key(&t, "bob"), None, NOW + 60).is_ok());
        let c = admit_key(&store, &t, "carol", &facts(), NOW).unwrap();
        assert!(precheck(&store, key(&t, "carol"), None, NOW).is_ok());
        settle(&store, c, Settlement::Failed, NOW).unwrap();
        assert!(precheck(&store, t.master(), None, NOW).is_ok());
    }

    /// Which endings are charged what.
    #[test]
    fn endings() {
        let used = Some((usage(10, 5), 7));
        let end = |status, usage, complete, delivered_bytes| Ending {
            status,
            usage,
            complete,
            usage_rejected: false,
            delivered_bytes,
        };
        assert_eq!(
            end(200, used, true, 9).settlement(),
            Settlement::Used {
                usage: usage(10, 5),
                cost_micro_usd: 7
            }
        );
        // A stream cut before its final usage, with or without a partial one.
        assert_eq!(
            end(200, used, false, 9).settlement(),
            Settlement::Unreported {
                delivered_bytes: 9,
                so_far: used
            }
        );
        assert_eq!(
            end(200, None, true, 9).settlement(),
            Settlement::Unreported {
                delivered_bytes: 9,
                so_far: None
            }
        );
        // The client left before any answer.
        assert_eq!(end(0, None, false, 0).settlement(), Settlement::Reservation);
        assert_eq!(end(503, None, false, 80).settlement(), Settlement::Failed);
        assert_eq!(
            Ending {
                usage_rejected: true,
                ..end(200, None, true, 9)
            }
            .settlement(),
            Settlement::Reservation
        );
    }

    /// An answer without its final usage is never free: its prompt's reservation and
    /// the output the client received (a quarter of its bytes), at most the reservation,
    /// or what the provider reported so far when that is more.
    #[test]
    fn unreported_usage_is_charged_an_estimate() {
        let t = keys(
            json!([entry("alice", json!({"max_budget": 1.0}))]),
            json!([]),
        );
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        // Prompt 100 tokens at 1 µ$ = 100 µ$; output 200 tokens at 2 µ$ = 400 µ$.
        assert_eq!(
            (a.reserved_prompt_micro_usd, a.reserved_output_tokens),
            (100, 200)
        );
        let unreported = |bytes, so_far| Settlement::Unreported {
            delivered_bytes: bytes,
            so_far,
        };
        // 200 bytes ≈ 50 output tokens: 100 + 400 × 50 / 200 µ$.
        assert_eq!(a.charge_of(unreported(200, None)), Some((150, 200)));
        assert_eq!(a.charge_of(unreported(0, None)), Some((100, 100)));
        assert_eq!(a.charge_of(unreported(u64::MAX, None)), Some((300, 500)));
        assert_eq!(
            a.charge_of(unreported(0, Some((usage(120, 1), 130)))),
            Some((121, 130))
        );
        assert_eq!(a.charge_of(Settlement::Reservation), Some((300, 500)));
        assert_eq!(a.charge_of(Settlement::Failed), None);
        settle(&store, a, unreported(200, None), NOW).unwrap();
        let s = spend(&store, Account::Key(key(&t, "alice")), NOW);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (200, 0, 0)
        );
        assert_eq!(s.tokens_this_minute, 150);
    }

    /// The master key is admitted without counters and without headers.
    #[test]
    fn master_is_unlimited() {
        let t = keys(json!([]), json!([]));
        let store = MemoryStore::new();
        let a = admit(&store, t.master(), None, &facts(), NOW).unwrap();
        assert_eq!(a.key_name, "master");
        assert_eq!(a.store_keys().count(), 0);
        assert!(rate_limit_headers(&a).is_empty());
        settle(
            &store,
            a,
            Settlement::Used {
                usage: usage(1, 1),
                cost_micro_usd: 5,
            },
            NOW,
        )
        .unwrap();
        assert!(store.inner.lock().unwrap().map.is_empty());
    }

    /// The budget holds spent + reserved + this request; the refusal says which budget.
    #[test]
    fn budget_refusal_names_the_budget() {
        // 0.0012 $ = 2 requests of 500 µ$, not 3.
        let t = keys(
            json!([entry(
                "alice",
                json!({"max_budget": 0.0012, "budget_duration": "monthly"})
            )]),
            json!([]),
        );
        let store = MemoryStore::new();
        let a1 = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        let _a2 = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        let r = admit_key(&store, &t, "alice", &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Budget);
        assert_eq!(r.error.status, 429);
        assert_eq!(r.error.kind, ErrorKind::RateLimit);
        assert_eq!(r.error.code.as_deref(), Some("budget_exceeded"));
        let m = &r.error.message;
        assert!(m.contains("key `alice`"), "{m}");
        assert!(m.contains("$0.0012"), "{m}");
        assert!(m.contains("monthly budget (2026-03)"), "{m}");
        assert!(m.contains("$0.00 spent"), "{m}");
        assert!(m.contains("$0.001 reserved"), "{m}");
        assert!(m.contains("2026-04-01T00:00:00Z"), "{m}");
        // Until 2026-04-01T00:00:00Z.
        assert_eq!(r.retry_after_secs, Some((1_775_001_600 - NOW) as u32));
        assert!(r
            .headers()
            .contains(&("retry-after", (1_775_001_600 - NOW).to_string())));
        // Settling with a smaller real cost makes room again.
        settle(
            &store,
            a1,
            Settlement::Used {
                usage: usage(10, 10),
                cost_micro_usd: 30,
            },
            NOW,
        )
        .unwrap();
        let a3 = admit_key(&store, &t, "alice", &facts(), NOW).unwrap();
        let r = admit_key(&store, &t, "alice", &facts(), NOW).unwrap_err();
        assert!(
            r.error.message.contains("$0.00003 spent"),
            "{}",
            r.error.message
        );
        drop(a3);
    }

    /// Budgets start over with each period; a total budget never does.
    #[test]
    fn budget_rolls_over() {
        let t = keys(
            json!([
                entry(
                    "daily",
                    json!({"max_budget": 0.0005, "budget_duration": "daily"})
                ),
                entry("total", json!({"max_budget": 0.0005}))
            ]),
            json!([]),
        );
        let store = MemoryStore::new();
        for name in ["daily", "total"] {
            let a = admit_key(&store, &t, name, &facts(), NOW).unwrap();
            settle(
                &store,
                a,
                Settlement::Used {
                    usage: usage(100, 200),
                    cost_micro_usd: 500,
                },
                NOW,
            )
            .unwrap();
            assert!(admit_key(&store, &t, name, &facts(), NOW + 60).is_err());
        }
        // 2026-03-15T00:00:00Z: a new day.
        let midnight = 1_773_532_800;
        assert!(admit_key(&store, &t, "daily", &facts(), midnight - 1).is_err());
        assert!(admit_key(&store, &t, "daily", &facts(), midnight).is_ok());
        let r = admit_key(&store, &t, "total", &facts(), midnight + 86_400 * 400).unwrap_err();
        assert!(
            r.error.message.contains("total budget"),
            "{}",
            r.error.message
        );
        assert!(
            r.error.message.contains("does not reset"),
            "{}",
            r.error.message
        );
        assert_eq!(r.retry_after_secs, None);
        let s = spend(&store, Account::Key(key(&t, "daily")), midnight);
        assert_eq!((s.spent_micro_usd, s.reserved_micro_usd), (0, 500));
    }

    /// A request settled after the period rolled charges the new period.
    #[test]
    fn settle_across_period_boundary() {
        let t = keys(
            json!([entry(
                "k",
                json!({"max_budget": 1.0, "budget_duration": "daily"})
            )]),
            json!([]),
        );
        let store = MemoryStore::new();
        let midnight = 1_773_532_800;
        let a = admit_key(&store, &t, "k", &facts(), midnight - 5).unwrap();
        settle(
            &store,
            a,
            Settlement::Used {
                usage: usage(100, 50),
                cost_micro_usd: 200,
            },
            midnight + 5,
        )
        .unwrap();
        let s = spend(&store, Account::Key(key(&t, "k")), midnight + 5);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (200, 0, 0)
        );
        assert_eq!(
            spend(&store, Account::Key(key(&t, "k")), midnight - 5).spent_micro_usd,
            200,
            "the record moved on; an older clock reads the newest period"
        );
    }

    /// Two keys of one team exhaust the team's budget; the refusal names the team.
    #[test]
    fn team_budget_shared_by_keys() {
        let t = keys(
            json!([
                entry("k1", json!({"team": "research"})),
                entry("k2", json!({"team": "research", "max_budget": 5.0}))
            ]),
            json!([{"name": "research", "max_budget": 0.0015, "budget_duration": "weekly"}]),
        );
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "k1", &facts(), NOW).unwrap();
        let b = admit_key(&store, &t, "k2", &facts(), NOW).unwrap();
        assert_eq!(
            b.store_keys().collect::<Vec<_>>(),
            vec!["llm_gateway.v1.key.k2", "llm_gateway.v1.team.research"]
        );
        let _c = admit_key(&store, &t, "k1", &facts(), NOW).unwrap();
        let r = admit_key(&store, &t, "k2", &facts(), NOW).unwrap_err();
        assert_eq!(r.error.code.as_deref(), Some("budget_exceeded"));
        let m = &r.error.message;
        assert!(m.contains("team `research`"), "{m}");
        assert!(m.contains("weekly budget (2026-W11)"), "{m}");
        assert!(m.contains("$0.0015 reserved"), "{m}");
        // Nothing of the refused request stayed in k2's record.
        let s = spend(&store, Account::Key(key(&t, "k2")), NOW);
        assert_eq!(
            (s.in_flight, s.reserved_micro_usd, s.requests_this_minute),
            (1, 500, 1)
        );
        for admission in [a, b] {
            let used = Settlement::Used {
                usage: usage(100, 100),
                cost_micro_usd: 300,
            };
            settle(&store, admission, used, NOW).unwrap();
        }
        let team = t.team("research").unwrap();
        let s = spend(&store, Account::Team(team), NOW);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (600, 500, 1)
        );
    }

    /// When the team refuses, the key's increments are rolled back.
    #[test]
    fn refusal_by_team_rolls_back_the_key() {
        let t = keys(
            json!([
                entry(
                    "k1",
                    json!({"team": "t", "rpm_limit": 100, "max_budget": 1.0})
                ),
                entry("k2", json!({"team": "t"}))
            ]),
            json!([{"name": "t", "max_parallel_requests": 1}]),
        );
        let store = MemoryStore::new();
        prepare(&store, &t);
        let _held = admit_key(&store, &t, "k2", &facts(), NOW).unwrap();
        let before = store.get(&key_store_key("k1"));
        let r = admit_key(&store, &t, "k1", &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Parallel);
        assert!(r.error.message.contains("team `t`"), "{}", r.error.message);
        // Refused from the snapshot: k1's record was never written.
        assert_eq!(
            store.get(&key_store_key("k1")).map(|v| v.0),
            before.map(|v| v.0)
        );

        // The write-then-undo path: k1 is charged, then the team refuses on its re-read.
        let k1 = key(&t, "k1");
        let ks = Subject {
            what: "key",
            name: &k1.name,
            limits: &k1.limits,
            store_key: key_store_key("k1"),
        };
        let mut tries = 0;
        let (mut rec, cas) = load(&store, &ks, NOW, &mut tries).unwrap();
        let empty = rec;
        let hold = charge(&mut rec, &ks, &facts(), 500);
        store.set(&ks.store_key, &rec.encode(), Some(cas)).unwrap();
        release_all(&store, vec![hold], Release::Undo, NOW, &facts(), 500).unwrap();
        assert_eq!(raw(&store, &ks.store_key), empty);
    }

    /// Requests per minute: a fixed window, with headers and retry-after to its end.
    #[test]
    fn rpm_window() {
        let t = keys(json!([entry("k", json!({"rpm_limit": 2}))]), json!([]));
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        assert_eq!(
            rate_limit_headers(&a),
            vec![
                ("x-ratelimit-limit-requests", "2".to_string()),
                ("x-ratelimit-remaining-requests", "1".to_string()),
                ("x-ratelimit-reset-requests", "50s".to_string()),
            ]
        );
        admit_key(&store, &t, "k", &facts(), NOW + 1).unwrap();
        let r = admit_key(&store, &t, "k", &facts(), NOW + 2).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Requests);
        assert_eq!(r.error.status, 429);
        assert_eq!(r.error.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(
            r.error.message.contains("2 of its 2 requests per minute"),
            "{}",
            r.error.message
        );
        assert_eq!(r.retry_after_secs, Some(48));
        let h = r.headers();
        assert!(h.contains(&("retry-after", "48".into())));
        assert!(h.contains(&("x-ratelimit-remaining-requests", "0".into())));
        // The next minute starts at NOW + 50.
        assert!(admit_key(&store, &t, "k", &facts(), NOW + 49).is_err());
        assert!(admit_key(&store, &t, "k", &facts(), NOW + 50).is_ok());
    }

    /// Tokens per minute: estimates count while in flight, real totals after settlement.
    #[test]
    fn tpm_window() {
        let t = keys(json!([entry("k", json!({"tpm_limit": 250}))]), json!([]));
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        let _b = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        assert_eq!(
            rate_limit_headers(&_b)[1],
            ("x-ratelimit-remaining-tokens", "50".to_string())
        );
        let r = admit_key(&store, &t, "k", &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Tokens);
        assert!(
            r.error.message.contains("200 of its 250 tokens per minute"),
            "{}",
            r.error.message
        );
        // The first request really used 10 tokens: room for another 100-token prompt.
        settle(
            &store,
            a,
            Settlement::Used {
                usage: usage(5, 5),
                cost_micro_usd: 1,
            },
            NOW,
        )
        .unwrap();
        assert!(admit_key(&store, &t, "k", &facts(), NOW).is_ok());
        // A prompt larger than the whole limit can never pass: no retry-after.
        let huge = RequestFacts {
            estimated_prompt_tokens: 251,
            ..facts()
        };
        let r = admit_key(&store, &t, "k", &huge, NOW + 3600).unwrap_err();
        assert_eq!(r.retry_after_secs, None);
        assert!(
            r.error.message.contains("Request too large"),
            "{}",
            r.error.message
        );
    }

    /// Parallel requests: a slot per request until settlement.
    #[test]
    fn parallel_slots() {
        let t = keys(
            json!([entry("k", json!({"max_parallel_requests": 2}))]),
            json!([]),
        );
        let store = MemoryStore::new();
        let a = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        let _b = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        let r = admit_key(&store, &t, "k", &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Parallel);
        assert_eq!(r.error.status, 429);
        assert_eq!(r.retry_after_secs, Some(1));
        assert!(
            r.error.message.contains("2 in flight"),
            "{}",
            r.error.message
        );
        settle(&store, a, Settlement::Failed, NOW + 1).unwrap();
        assert!(admit_key(&store, &t, "k", &facts(), NOW + 1).is_ok());
    }

    /// Checks run limit by limit: a parallel refusal wins over an rpm refusal.
    #[test]
    fn check_order() {
        let t = keys(
            json!([entry("k", json!({"team": "t", "rpm_limit": 1}))]),
            json!([{"name": "t", "max_parallel_requests": 1}]),
        );
        let store = MemoryStore::new();
        let _a = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        let r = admit_key(&store, &t, "k", &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Parallel);
        assert!(r.error.message.contains("team `t`"));
    }

    /// A settlement that never comes stops holding its slot after the in-flight lease.
    #[test]
    fn lost_settlement_heals() {
        let t = keys(
            json!([entry(
                "k",
                json!({"max_parallel_requests": 1, "max_budget": 0.0005})
            )]),
            json!([]),
        );
        let k = key(&t, "k");
        let lease = k.limits.inflight_lease_secs;
        assert_eq!(lease, 660);
        let store = MemoryStore::new();
        let lost = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        std::mem::forget(lost);
        assert!(admit_key(&store, &t, "k", &facts(), NOW + lease - 1).is_err());
        // Still held while any request admitted then could still be running...
        assert_eq!(spend(&store, Account::Key(k), NOW + lease).in_flight, 1);
        // ...and gone once none could be.
        let a = admit_key(&store, &t, "k", &facts(), NOW + 2 * lease).unwrap();
        settle(
            &store,
            a,
            Settlement::Used {
                usage: usage(1, 1),
                cost_micro_usd: 100,
            },
            NOW + 2 * lease,
        )
        .unwrap();
        assert_eq!(spend(&store, Account::Key(k), NOW + 2 * lease).in_flight, 0);
    }

    /// A late settlement of a request from an older bucket frees that bucket only.
    #[test]
    fn settle_finds_the_older_bucket() {
        let t = keys(
            json!([entry("k", json!({"max_parallel_requests": 10}))]),
            json!([]),
        );
        let k = key(&t, "k");
        let lease = k.limits.inflight_lease_secs;
        let store = MemoryStore::new();
        let old = admit_key(&store, &t, "k", &facts(), NOW).unwrap();
        let _new = admit_key(&store, &t, "k", &facts(), NOW + lease + 1).unwrap();
        assert_eq!(spend(&store, Account::Key(k), NOW + lease + 1).in_flight, 2);
        settle(&store, old, Settlement::Failed, NOW + lease + 2).unwrap();
        let s = spend(&store, Account::Key(k), NOW + lease + 2);
        assert_eq!((s.in_flight, s.reserved_micro_usd), (1, 500));
    }

    /// Records are created ahead by `prepare`; unreadable values start over.
    #[test]
    fn prepare_and_garbage() {
        let t = keys(
            json!([entry("a", json!({"team": "t"})), entry("b", json!({}))]),
            json!([{"name": "t"}]),
        );
        let store = MemoryStore::new();
        assert_eq!(prepare(&store, &t), 3);
        assert_eq!(prepare(&store, &t), 0);
        store.set(&key_store_key("b"), b"garbage", None).unwrap();
        let a = admit_key(&store, &t, "b", &facts(), NOW).unwrap();
        assert_eq!(raw(&store, &key_store_key("b")).requests, 1);
        drop(a);
    }

    /// A store that always loses the race: admission gives up with a 503, bounded.
    #[test]
    fn contention_fails_closed() {
        struct Hostile(MemoryStore, std::sync::atomic::AtomicUsize);
        impl Store for Hostile {
            fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.get(key)
            }
            fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
                if cas.is_some() {
                    Err(StoreError::CasMismatch)
                } else {
                    self.0.set(key, value, cas)
                }
            }
        }
        let t = keys(json!([entry("k", json!({}))]), json!([]));
        let store = Hostile(MemoryStore::new(), Default::default());
        let r = admit_key(&store.0, &t, "k", &facts(), NOW).map(|_| ());
        assert!(r.is_ok());
        let k = key(&t, "k");
        let r = admit(&store, k, None, &facts(), NOW).unwrap_err();
        assert_eq!(r.reason, RefusalReason::Unavailable);
        assert_eq!(r.error.status, 503);
        assert_eq!(r.error.code.as_deref(), Some("accounting_unavailable"));
        assert!(store.1.load(std::sync::atomic::Ordering::Relaxed) <= MAX_CAS_TRIES + 1);

        struct Broken;
        impl Store for Broken {
            fn get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
                None
            }
            fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
                Err(StoreError::Other("host says no".into()))
            }
        }
        let r = admit(&Broken, k, None, &facts(), NOW).unwrap_err();
        assert_eq!(r.error.status, 503);
        assert!(r.error.message.contains("host says no"));
    }

    /// Dollar amounts read naturally.
    #[test]
    fn usd_formatting() {
        assert_eq!(format_dollars(10_000_000), "$10.00");
        assert_eq!(format_dollars(150), "$0.00015");
        assert_eq!(format_dollars(1_234_567), "$1.234567");
        assert_eq!(format_dollars(1_500_000), "$1.50");
        assert_eq!(format_dollars(0), "$0.00");
    }
}
