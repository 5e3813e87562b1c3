//! Admission: what a request may cost ([`RequestFacts`]), the check of every limit of its
//! key and team, and the counting of an admitted request ([`admit`], [`precheck`]), with
//! the `x-ratelimit-*` windows it leaves ([`RateLimitInfo`]).

use super::records::{Clock, Record};
use super::refusal::{self, Refusal, RefusalReason};
use super::settlement::{release_all, Release};
use super::store::{key_store_key, team_store_key, Store, StoreError, MAX_CAS_TRIES};
use crate::config::keys::{Limits, Team, VirtualKey};

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
pub(super) struct Hold {
    pub(super) store_key: String,
    pub(super) clock: Clock,
    /// The minute the request and its estimated tokens were counted in.
    pub(super) minute: u64,
    /// The in-flight bucket holding its slot and reservation.
    pub(super) bucket: u64,
}

/// An admitted request: what [`super::settlement::settle`] needs, and the values of the
/// rate-limit headers.
///
/// Deliberately not `Clone`: [`super::settlement::settle`] takes it by value, so one
/// admission is settled at most once (keep it in an `Option` and `take()` it when the
/// request ends).
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
    pub(super) holds: Vec<Hold>,
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

/// A key or team as admission sees it.
pub(super) struct Subject<'a> {
    pub(super) what: &'static str,
    pub(super) name: &'a str,
    pub(super) limits: &'a Limits,
    pub(super) store_key: String,
}

impl Subject<'_> {
    pub(super) fn who(&self) -> String {
        format!("{} `{}`", self.what, self.name)
    }
}

fn minute_reset(rec: &Record, now: u64) -> u64 {
    rec.minute
        .saturating_add(1)
        .saturating_mul(60)
        .saturating_sub(now)
        .max(1)
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
            (busy.saturating_add(1) > max).then(|| refusal::parallel(s, busy, max))
        }
        RefusalReason::Requests => {
            let max = l.rpm_limit?;
            let reset = minute_reset(rec, now);
            (rec.requests.saturating_add(1) > max)
                .then(|| refusal::requests(s, rec.requests, max, reset))
        }
        RefusalReason::Tokens => {
            let max = l.tpm_limit?;
            let need = facts.estimated_prompt_tokens;
            let window = Window {
                limit: max,
                remaining: max.saturating_sub(rec.tokens),
                reset_secs: minute_reset(rec, now),
            };
            if need > max {
                return Some(refusal::too_large(s, need, window));
            }
            (rec.tokens.saturating_add(need) > max)
                .then(|| refusal::tokens(s, rec.tokens, need, window))
        }
        RefusalReason::Budget => {
            let max = l.max_budget_micro_usd?;
            let reserved = rec.reserved();
            (rec.spent_micro
                .saturating_add(reserved)
                .saturating_add(cost)
                > max)
                .then(|| refusal::budget(s, rec.spent_micro, reserved, cost, max, now))
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
                    return Err(refusal::unavailable(s, &e));
                }
            }
        }
    }
    Err(refusal::unavailable(s, "too many concurrent updates"))
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
                return Err(refusal::unavailable(&ks, "too many concurrent updates"))
            }
            Err(StoreError::Other(e)) => return Err(refusal::unavailable(&ks, &e)),
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
                Err(StoreError::CasMismatch) => {
                    refusal::unavailable(s, "too many concurrent updates")
                }
                Err(StoreError::Other(e)) => refusal::unavailable(s, &e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::limits::fixtures::*;
    use crate::limits::records::prepare;
    use crate::limits::settlement::{settle, spend, Account, Settlement};
    use crate::limits::store::MemoryStore;
    use serde_json::json;

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
        assert!(store.is_empty());
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
}
