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
pub struct Flusher {
    /// The queue generation last read in full.
    seen_generation: Option<Vec<u8>>,
    /// Numbers this worker's batches.
    writer: ledger::Writer,
    /// The batch not yet written (in flight, or failed and due again) and the entries it
    /// carries.
    batch: Option<(ledger::Batch, u64)>,
    /// The call carrying `batch`, while one is in flight.
    in_flight: Option<u32>,
}

impl Flusher {
    /// A writer named at random (the host's randomness, which std's hash seeds draw on,
    /// mixed with the clock).
    pub fn new() -> Flusher {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(host::now_nanos());
        Flusher {
            seen_generation: None,
            writer: ledger::Writer::new(h.finish()),
            batch: None,
            in_flight: None,
        }
    }

    /// One timer tick: sends the batch a failed call left, or else claims every non-empty
    /// queue (emptying it by compare-and-swap, so no two workers write the same entries)
    /// and writes them in one new batch.
    pub fn tick(&mut self, ctx: &dyn Context, store: &ledger::SpendStore, subjects: &[Subject]) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some((batch, _)) = &self.batch {
            self.in_flight = call(ctx, store, &batch.body);
            return;
        }
        let generation = host::get_shared_data(GENERATION_KEY)
            .ok()
            .flatten()
            .map(|(b, _)| b);
        if generation.is_none() || generation == self.seen_generation {
            return;
        }
        let mut entries = Vec::new();
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
                        entries.extend(q.entries);
                        break;
                    }
                    Err(e) if e.0 == host::CAS_MISMATCH => continue,
                    Err(_) => break,
                }
            }
        }
        self.seen_generation = generation;
        if entries.is_empty() {
            return;
        }
        let batch = self.writer.batch(&entries);
        self.in_flight = call(ctx, store, &batch.body);
        self.batch = Some((batch, entries.len() as u64));
    }

    /// The answer to the flush call `token`.
    pub fn answered(&mut self, token: u32, status: u16, body: &[u8]) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        if ledger::settle_ok(status, body) {
            if let Some((_, n)) = self.batch.take() {
                count("llm_spend_store_entries_written_total", n);
            }
            // Queues filled meanwhile are claimed at the next tick.
            self.seen_generation = None;
        } else {
            log::warn!(
                "spend store: settlements not written (HTTP {status}); sent again at the next tick"
            );
            count("llm_spend_store_errors_total", 1);
        }
    }
}
