//! The shared spend ledger's host side: webdis calls, the queue of settlements in shared
//! data, and the timer that writes it ([`crate::limits::ledger`] holds the logic).

use std::time::Duration;

use proxy_wasm::traits::Context;

use super::host::{self, Buffer, Map};
use super::stats;
use crate::config::keys::KeyTable;
use crate::limits::ledger::{self, Pending, Reservation, Subject};
use crate::metrics::{MetricKind, Record};

/// Shared-data key bumped whenever a queue gains entries, so idle timers read one key.
const GENERATION_KEY: &str = "llm_gateway.v1.pending.generation";

/// Most compare-and-swap attempts on one queue.
const MAX_TRIES: usize = 32;

/// Counts `n` in the counter `name`.
pub fn count(name: &str, n: u64) {
    stats::record_all(&[Record {
        kind: MetricKind::Counter,
        name: name.to_string(),
        value: n,
    }]);
}

/// Sends `body` to webdis; the token of the call, `None` when it could not be sent.
pub fn call(ctx: &dyn Context, store: &ledger::SpendStore, body: &[u8]) -> Option<u32> {
    let authority = format!("{}:{}", store.host, store.port);
    let headers = vec![
        (":method", "POST"),
        (":path", "/"),
        (":authority", authority.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    match ctx.dispatch_http_call(
        ledger::CLUSTER,
        headers,
        Some(body),
        Vec::new(),
        Duration::from_millis(store.timeout_ms),
    ) {
        Ok(token) => Some(token),
        Err(e) => {
            log::warn!("spend store: cannot call webdis ({e:?})");
            None
        }
    }
}

/// The status and body of the answer `on_http_call_response` announced (status 0: the
/// call failed or timed out).
pub fn answer(num_headers: usize, body_size: usize) -> (u16, Vec<u8>) {
    if num_headers == 0 {
        return (0, Vec::new());
    }
    let status = host::header_text(Map::HttpCallResponseHeaders, ":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = host::get_buffer(Buffer::HttpCallResponseBody, 0, body_size).unwrap_or_default();
    (status, body)
}

/// Adds `entries` to `subject`'s queue; what does not fit is counted lost.
fn enqueue_at(pending_key: &str, entries: Vec<(String, i64)>) {
    if entries.is_empty() {
        return;
    }
    for _ in 0..MAX_TRIES {
        let (mut q, cas) = match host::get_shared_data(pending_key) {
            Ok(Some((bytes, cas))) => (Pending::decode(&bytes), cas),
            _ => (Pending::default(), 0),
        };
        let lost: u64 = entries.iter().map(|(k, d)| q.add(k.clone(), *d)).sum();
        match host::set_shared_data(pending_key, &q.encode(), cas) {
            Ok(()) => {
                if lost > 0 {
                    log::error!("spend store: queue of {pending_key} full, {lost} micro-USD of spend dropped");
                    count("llm_spend_store_lost_micro_usd_total", lost);
                }
                bump_generation();
                return;
            }
            Err(e) if e.0 == host::CAS_MISMATCH => continue,
            Err(e) => {
                log::error!(
                    "spend store: cannot queue a settlement (host status {})",
                    e.0
                );
                break;
            }
        }
    }
    count("llm_spend_store_errors_total", 1);
}

fn bump_generation() {
    for _ in 0..MAX_TRIES {
        let (n, cas) = match host::get_shared_data(GENERATION_KEY) {
            Ok(Some((b, cas))) => (
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(0),
                cas,
            ),
            _ => (0, 0),
        };
        let next = n.wrapping_add(1).to_string();
        match host::set_shared_data(GENERATION_KEY, next.as_bytes(), cas) {
            Err(e) if e.0 == host::CAS_MISMATCH => continue,
            _ => return,
        }
    }
}

/// Queues a request's settlement: its cost to each subject's period, and the release of
/// the reservation the store holds.
pub fn enqueue_settlement(reservation: &Reservation, cost_micro: u64, now: u64) {
    for s in &reservation.subjects {
        enqueue_at(
            &s.pending_key(),
            ledger::settlement_entries(reservation, s, cost_micro, now),
        );
    }
}

/// The budgeted subjects of the config (keys, then teams): whose queues the timer reads.
pub fn all_subjects(table: &KeyTable) -> Vec<Subject> {
    table
        .keys
        .iter()
        .filter_map(|k| Subject::of("key", &k.name, &k.limits))
        .chain(
            table
                .teams
                .iter()
                .filter_map(|t| Subject::of("team", &t.name, &t.limits)),
        )
        .collect()
}

/// The root context's writer of the queues.
#[derive(Default)]
pub struct Flusher {
    /// The queue generation last read in full.
    seen_generation: Option<Vec<u8>>,
    /// The call in flight and the entries it carries, by queue.
    in_flight: Option<(u32, Vec<(String, Pending)>)>,
}

impl Flusher {
    /// One timer tick: claims every non-empty queue (emptying it by compare-and-swap, so
    /// no two workers write the same entries) and writes them in one call.
    pub fn tick(&mut self, ctx: &dyn Context, store: &ledger::SpendStore, subjects: &[Subject]) {
        if self.in_flight.is_some() {
            return;
        }
        let generation = host::get_shared_data(GENERATION_KEY)
            .ok()
            .flatten()
            .map(|(b, _)| b);
        if generation.is_none() || generation == self.seen_generation {
            return;
        }
        let mut claimed = Vec::new();
        for s in subjects {
            let key = s.pending_key();
            for _ in 0..MAX_TRIES {
                let Ok(Some((bytes, cas))) = host::get_shared_data(&key) else {
                    break;
                };
                let q = Pending::decode(&bytes);
                if q.is_empty() {
                    break;
                }
                match host::set_shared_data(&key, b"", cas) {
                    Ok(()) => {
                        claimed.push((key.clone(), q));
                        break;
                    }
                    Err(e) if e.0 == host::CAS_MISMATCH => continue,
                    Err(_) => break,
                }
            }
        }
        self.seen_generation = generation;
        if claimed.is_empty() {
            return;
        }
        let entries: Vec<(String, i64)> = claimed
            .iter()
            .flat_map(|(_, q)| q.entries.iter().cloned())
            .collect();
        match call(ctx, store, &ledger::settle_body(&entries)) {
            Some(token) => self.in_flight = Some((token, claimed)),
            None => self.give_back(claimed),
        }
    }

    /// The answer to the flush call `token`.
    pub fn answered(&mut self, token: u32, status: u16, body: &[u8]) {
        let Some((t, claimed)) = self.in_flight.take() else {
            return;
        };
        if t != token {
            self.in_flight = Some((t, claimed));
            return;
        }
        if ledger::settle_ok(status, body) {
            let n = claimed.iter().map(|(_, q)| q.entries.len() as u64).sum();
            count("llm_spend_store_entries_written_total", n);
        } else {
            log::warn!(
                "spend store: settlements not written (HTTP {status}); kept for the next try"
            );
            self.give_back(claimed);
        }
    }

    /// Puts entries back in their queues, and has the next tick look again.
    fn give_back(&mut self, claimed: Vec<(String, Pending)>) {
        count("llm_spend_store_errors_total", 1);
        for (key, q) in claimed {
            enqueue_at(&key, q.entries);
        }
        self.seen_generation = None;
    }
}
