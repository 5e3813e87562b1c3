//! Refusals: which limit refused a request, and how the refusal reads (the OpenAI-shaped
//! error naming the key or team and the limit, `retry-after` and the `x-ratelimit-*`
//! headers of the window that refused). Admission decides; this renders.

use super::admission::{RateLimitInfo, Subject, Window};
use crate::config::periods::format_utc;
use crate::error::{ErrorKind, GatewayError};

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

/// `max_parallel_requests` reached: `busy` requests in flight.
pub(super) fn parallel(s: &Subject<'_>, busy: u64, max: u64) -> Refusal {
    Refusal {
        error: rate_limited(format!(
            "Too many parallel requests for {}: {busy} in flight, its max_parallel_requests is {max}. Retry when one finishes.",
            s.who()
        )),
        reason: RefusalReason::Parallel,
        retry_after_secs: Some(1),
        rate_headers: Vec::new(),
    }
}

/// `rpm_limit` reached: `used` requests this minute, which starts over in `reset` seconds.
pub(super) fn requests(s: &Subject<'_>, used: u64, max: u64, reset: u64) -> Refusal {
    Refusal {
        error: rate_limited(format!(
            "Rate limit reached for {}: {used} of its {max} requests per minute (rpm_limit) used. Retry in {reset}s.",
            s.who()
        )),
        reason: RefusalReason::Requests,
        retry_after_secs: Some(secs_u32(reset)),
        rate_headers: RateLimitInfo {
            requests: Some(Window { limit: max, remaining: 0, reset_secs: reset }),
            tokens: None,
        }.headers(),
    }
}

/// A prompt of about `need` tokens can never fit `tpm_limit`: no retry helps.
pub(super) fn too_large(s: &Subject<'_>, need: u64, window: Window) -> Refusal {
    let max = window.limit;
    Refusal {
        error: rate_limited(format!(
            "Request too large for {}: its prompt is about {need} tokens, more than its tpm_limit of {max} tokens per minute. Shorten the prompt or ask for a higher tpm_limit.",
            s.who()
        )),
        reason: RefusalReason::Tokens,
        retry_after_secs: None,
        rate_headers: RateLimitInfo { requests: None, tokens: Some(window) }.headers(),
    }
}

/// `tpm_limit` reached: `used` tokens this minute and the request needs about `need`.
pub(super) fn tokens(s: &Subject<'_>, used: u64, need: u64, window: Window) -> Refusal {
    let (max, reset) = (window.limit, window.reset_secs);
    Refusal {
        error: rate_limited(format!(
            "Rate limit reached for {}: {used} of its {max} tokens per minute (tpm_limit) used and this request needs about {need}. Retry in {reset}s.",
            s.who()
        )),
        reason: RefusalReason::Tokens,
        retry_after_secs: Some(secs_u32(reset)),
        rate_headers: RateLimitInfo { requests: None, tokens: Some(window) }.headers(),
    }
}

/// `max_budget` reached: `spent` and `reserved` (micro-USD) leave no room for `cost`.
/// Names the budget period and when it resets (a total budget never does).
pub(super) fn budget(
    s: &Subject<'_>,
    spent: u64,
    reserved: u64,
    cost: u64,
    max: u64,
    now: u64,
) -> Refusal {
    let l = s.limits;
    let period = l.budget_duration.period(now);
    let (span, reset) = match period.end_unix_secs() {
        Some(end) => (
            format!("{} budget ({})", l.budget_duration.name(), period.label()),
            format!("It resets at {}.", format_utc(end)),
        ),
        None => (
            "total budget".to_string(),
            "It does not reset: ask your gateway administrator to raise max_budget.".to_string(),
        ),
    };
    Refusal {
        error: GatewayError::new(
            ErrorKind::RateLimit,
            format!(
                "Budget exceeded for {}: {} spent of its {} {span}, {} reserved by requests in flight, and this request may cost up to {}. {reset}",
                s.who(),
                format_dollars(spent),
                format_dollars(max),
                format_dollars(reserved),
                format_dollars(cost),
            ),
        )
        .with_code("budget_exceeded"),
        reason: RefusalReason::Budget,
        retry_after_secs: period
            .end_unix_secs()
            .map(|e| secs_u32(e.saturating_sub(now).max(1))),
        rate_headers: Vec::new(),
    }
}

pub(super) fn unavailable(s: &Subject<'_>, why: &str) -> Refusal {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::fixtures::*;
    use crate::limits::settlement::{settle, Settlement};
    use crate::limits::store::MemoryStore;
    use serde_json::json;

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
