//! The record: every counter of one key or team in one store value, and how it rolls
//! forward in time.
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
//! budget period (`d20526`, `w2932`, `m24315`, `t0`: see [`crate::config::periods::Period`]) of
//! `spent` (micro-USD); then two in-flight buckets (current, previous), each the second it
//! started, the requests admitted in it that have not settled, and their reserved
//! micro-USD. A bucket is dropped once it is older than the in-flight lease (a little more
//! than the longest route timeout), so a request whose settlement never comes (VM reload,
//! crash) stops holding its parallel slot and reservation by itself. A value that does not
//! parse (another version) is read as an empty record and replaced.

use super::store::{key_store_key, team_store_key, Store};
use crate::config::keys::Limits;
use crate::config::periods::BudgetDuration;

/// Requests admitted in one lease interval and not yet settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Bucket {
    /// The second it started (its id).
    pub(super) start: u64,
    pub(super) parallel: u64,
    pub(super) reserved_micro: u64,
}

/// Every counter of one key or team (format in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) minute: u64,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    pub(super) period_kind: u8,
    pub(super) period: u64,
    pub(super) spent_micro: u64,
    pub(super) cur: Bucket,
    pub(super) prev: Bucket,
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
pub(super) struct Clock {
    duration: BudgetDuration,
    lease_secs: u64,
}

impl Clock {
    pub(super) fn of(limits: &Limits) -> Clock {
        Clock {
            duration: limits.budget_duration,
            lease_secs: limits.inflight_lease_secs.max(1),
        }
    }
}

impl Record {
    pub(super) fn encode(&self) -> Vec<u8> {
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

    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
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
    pub(super) fn normalize(&mut self, clock: Clock, now: u64) {
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

    pub(super) fn in_flight(&self) -> u64 {
        self.cur.parallel.saturating_add(self.prev.parallel)
    }

    pub(super) fn reserved(&self) -> u64 {
        self.cur
            .reserved_micro
            .saturating_add(self.prev.reserved_micro)
    }

    pub(super) fn bucket_mut(&mut self, start: u64) -> Option<&mut Bucket> {
        if self.cur.start == start {
            Some(&mut self.cur)
        } else if self.prev.start == start {
            Some(&mut self.prev)
        } else {
            None
        }
    }
}

/// Creates the record of every key and team that has none yet; returns how many.
///
/// Envoy shared data has no create-if-absent: the first write of a store key is a plain
/// write, which could erase a concurrent first count. Call this when the downstream
/// instance is configured (`on_configure`, before it serves), so that every later write is
/// a compare-and-swap. [`super::admission::admit`] still creates missing records itself.
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
    use crate::limits::fixtures::*;
    use crate::limits::settlement::{settle, spend, Account, Settlement};
    use crate::limits::store::MemoryStore;
    use serde_json::json;

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
}
