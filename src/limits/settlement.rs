//! Settlement: how an admitted request ended ([`Ending`]), what that charges
//! ([`Settlement`]), and [`settle`], which frees its parallel slot and reservation and
//! adds the real cost; and [`spend`], where a key or team stands now.

use super::admission::{Admission, Hold, RequestFacts};
use super::records::{Clock, Record};
use super::store::{key_store_key, team_store_key, Store, StoreError, MAX_CAS_TRIES};
use crate::config::keys::{Team, VirtualKey};
use crate::usage::Usage;

/// How a hold ends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Release {
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

pub(super) fn release_all(
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::fixtures::*;
    use crate::limits::store::MemoryStore;
    use serde_json::json;

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
}
