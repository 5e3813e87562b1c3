//! The shared spend ledger: each key's and team's budget spend and reservations of the
//! current period, held in Redis (reached through webdis, its HTTP interface) and shared
//! by every Envoy replica, so budgets survive restarts and span replicas.
//!
//! Pure: this module builds the webdis requests, reads their answers and keeps the queue
//! of settlements not yet written; `src/filter/` sends them.
//!
//! # Keys in Redis
//!
//! - `llmgw:spent:<key|team>:<name>:<period>`: micro-USD spent in the budget period
//!   (`d20526`, `w2932`, `m24315`, `t0`, as the per-process records name periods).
//! - `llmgw:held:<key|team>:<name>:<bucket>`: micro-USD reserved by requests in flight,
//!   admitted in lease bucket `now / lease`; it expires two leases after, so a request
//!   whose settlement never comes (a crashed replica) stops holding its reservation.
//!
//! # Atomicity
//!
//! Admission is one Lua script ([`RESERVE_SCRIPT`]), which Redis runs atomically: it
//! checks spent + reserved + this request's worst case against every subject's budget
//! and, only if all pass, adds the reservation to each. Settlement is a second script
//! ([`SETTLE_SCRIPT`]): add the cost to `spent`, take the reservation back.
//!
//! # When the store cannot answer
//!
//! Settlements go through a bounded queue in Envoy's shared data ([`Pending`], one per
//! key and team, at most [`MAX_PENDING_ENTRIES`] entries each), flushed by a timer in
//! numbered batches ([`Writer`]); a batch that fails is sent again as it is, and the
//! store applies each batch number once, so a write that lands after its timeout is not
//! counted again by its retry. Admission without the store follows
//! [`BudgetFailureMode`].

use serde_json::Value;

use crate::config::keys::Limits;
use crate::config::model::ConfigError;
use crate::config::periods::BudgetDuration;

const AT: &str = "general_settings.spend_store";

/// Filter state naming how the store took part in a request's budget decision (the
/// access log's `spend_store`).
pub const DECISION_STATE: &str = "llm_spend_store";

/// The Envoy cluster the renderer emits for the store.
pub const CLUSTER: &str = "llm_gateway_spend_store";

/// Fields of `general_settings.spend_store`.
const FIELDS: [&str; 4] = [
    "address",
    "timeout_ms",
    "budget_failure_mode",
    "flush_interval_ms",
];

/// Checks a section's fields against `known` (read by hand rather than by a derived
/// deserializer, which costs the module several KB per section).
pub(crate) fn section<'a>(
    raw: &'a Value,
    at: &str,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, ConfigError> {
    let map = raw
        .as_object()
        .ok_or_else(|| ConfigError::new(at, "must be a mapping"))?;
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ConfigError::new(
            format!("{at}.{k}"),
            format!("unknown field; the fields are {}", known.join(", ")),
        )),
        None => Ok(map),
    }
}

/// An optional whole number of a section.
pub(crate) fn number(
    map: &serde_json::Map<String, Value>,
    at: &str,
    field: &str,
) -> Result<Option<u64>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ConfigError::new(format!("{at}.{field}"), "must be a whole number")),
    }
}

/// An optional whole number of a section from `min` to `max`, `default` when absent.
pub(crate) fn bounded(
    map: &serde_json::Map<String, Value>,
    at: &str,
    field: &str,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    match number(map, at, field)? {
        None => Ok(default),
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(ConfigError::new(
            format!("{at}.{field}"),
            format!("must be from {min} to {max} (default {default})"),
        )),
    }
}

/// An optional text of a section.
pub(crate) fn text<'a>(
    map: &'a serde_json::Map<String, Value>,
    at: &str,
    field: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| ConfigError::new(format!("{at}.{field}"), "must be a string")),
    }
}

/// What admission does for a key or team with a budget when the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetFailureMode {
    /// Refuse with a 503 `spend_store_unavailable` (the default: no spend past a budget).
    Closed,
    /// Admit on the per-process budget check alone, and say so in the access log.
    Open,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendStore {
    /// webdis host name or address.
    pub host: String,
    /// webdis HTTP port.
    pub port: u16,
    /// Longest a request waits for the store, in milliseconds.
    pub timeout_ms: u64,
    /// Admission without the store.
    pub budget_failure_mode: BudgetFailureMode,
    /// How often queued settlements are written, in milliseconds.
    pub flush_interval_ms: u64,
}

pub(crate) fn validate(raw: &Value) -> Result<SpendStore, ConfigError> {
    let map = section(raw, AT, &FIELDS)?;
    let address = text(map, AT, "address")?.unwrap_or("");
    let (host, port) = crate::config::model::parse_host_port(address.trim()).map_err(|e| {
        ConfigError::new(
            format!("{AT}.address"),
            format!("`{address}` {e}; write webdis's `host:port`, e.g. `127.0.0.1:7379`"),
        )
    })?;
    let timeout_ms = bounded(map, AT, "timeout_ms", 50, (1, 10_000))?;
    let budget_failure_mode = match text(map, AT, "budget_failure_mode")? {
        None | Some("closed") => BudgetFailureMode::Closed,
        Some("open") => BudgetFailureMode::Open,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{AT}.budget_failure_mode"),
                format!("`{other}` is not a mode: write `closed` (refuse requests of keys with a budget while the store cannot answer) or `open` (admit them on this replica's own budget check)"),
            ))
        }
    };
    let flush_interval_ms = bounded(map, AT, "flush_interval_ms", 200, (10, 60_000))?;
    Ok(SpendStore {
        host,
        port,
        timeout_ms,
        budget_failure_mode,
        flush_interval_ms,
    })
}

/// Admits a request if every subject's spent + reserved + cost fits its budget, and then
/// reserves the cost in each. KEYS: per subject `spent`, current bucket, previous bucket.
/// ARGV: cost, bucket expiry (s), then each subject's budget. Answers `ok`, or
/// `no <subject> <spent> <reserved>` (subject from 1).
pub const RESERVE_SCRIPT: &str = "local c=tonumber(ARGV[1]) local n=#KEYS/3 \
for i=1,n do local b=(i-1)*3 \
local s=tonumber(redis.call('GET',KEYS[b+1]) or '0') \
local r=tonumber(redis.call('GET',KEYS[b+2]) or '0')+tonumber(redis.call('GET',KEYS[b+3]) or '0') \
if r<0 then r=0 end \
if s+r+c>tonumber(ARGV[2+i]) then return 'no '..i..' '..string.format('%d',s)..' '..string.format('%d',r) end end \
for i=1,n do local k=KEYS[(i-1)*3+2] redis.call('INCRBY',k,ARGV[1]) redis.call('EXPIRE',k,ARGV[2]) end \
return 'ok'";

/// Applies a writer's batch of queued deltas once: KEYS[1] holds the last batch number
/// that writer applied (ARGV[1] this batch's, ARGV[2] that record's expiry in seconds), so
/// a batch whose first try landed after its timeout, and its retries, count once. Then
/// KEYS[i+1] and ARGV[i+2] pair up: a positive delta is added (spend), a negative one
/// taken from a reservation bucket that still exists (never below 0).
pub const SETTLE_SCRIPT: &str = "local n=tonumber(ARGV[1]) \
if n<=tonumber(redis.call('GET',KEYS[1]) or '0') then return 'ok' end \
redis.call('SET',KEYS[1],ARGV[1],'EX',ARGV[2]) \
for i=2,#KEYS do local k=KEYS[i] local d=tonumber(ARGV[i+1]) \
if d>0 then redis.call('INCRBY',k,d) \
elseif d<0 and redis.call('EXISTS',k)==1 then \
if redis.call('DECRBY',k,-d)<0 then redis.call('SET',k,'0','KEEPTTL') end end end \
return 'ok'";

/// How long the store remembers a writer's last batch number: far longer than any write
/// can wait in a socket, and renewed by every batch.
pub const WRITER_RECORD_SECS: u64 = 7 * 24 * 3600;

/// Largest amount the scripts handle exactly (Lua numbers are doubles).
const MAX_EXACT: u64 = 1 << 53;

/// Which records a subject's spend lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `key` or `team`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// `max_budget` in micro-USD.
    pub budget_micro: u64,
    /// Its budget period.
    pub duration: BudgetDuration,
}

impl Subject {
    /// The subject of `limits`, when it has a budget (nothing to share otherwise).
    pub fn of(kind: &'static str, name: &str, limits: &Limits) -> Option<Subject> {
        Some(Subject {
            kind,
            name: name.to_string(),
            budget_micro: limits.max_budget_micro_usd?,
            duration: limits.budget_duration,
        })
    }

    /// Its `spent` key in the period `now` falls in.
    pub fn spent_key(&self, now: u64) -> String {
        let p = self.duration.period(now);
        let code = match self.duration {
            BudgetDuration::Daily => 'd',
            BudgetDuration::Weekly => 'w',
            BudgetDuration::Monthly => 'm',
            BudgetDuration::Total => 't',
        };
        format!("llmgw:spent:{}:{}:{code}{}", self.kind, self.name, p.id)
    }

    /// Its reservation bucket `bucket`.
    pub fn held_key(&self, bucket: u64) -> String {
        format!("llmgw:held:{}:{}:{bucket}", self.kind, self.name)
    }

    /// The shared-data key of its queue of unwritten settlements.
    pub fn pending_key(&self) -> String {
        format!("llm_gateway.v1.pending.{}.{}", self.kind, self.name)
    }
}

/// Percent-encodes one webdis argument: `/` separates arguments and `.` picks the output
/// format in its URLs, so everything but letters, digits, `-` and `_` is escaped.
fn push_arg(out: &mut String, arg: &str) {
    use std::fmt::Write;
    out.push('/');
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The body of a webdis `POST /` running `script` on `keys` with `args`.
pub fn eval_body(script: &str, keys: &[String], args: &[String]) -> Vec<u8> {
    let mut out = String::from("EVAL");
    push_arg(&mut out, script);
    push_arg(&mut out, &keys.len().to_string());
    for a in keys.iter().chain(args) {
        push_arg(&mut out, a);
    }
    out.into_bytes()
}

/// The body of a webdis `POST /` running `command` with `args` (which may be any bytes).
pub fn command_body(command: &str, args: &[&[u8]]) -> Vec<u8> {
    let mut out = command.as_bytes().to_vec();
    for a in args {
        out.push(b'/');
        for &b in *a {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
    }
    out
}

/// A reservation made (or to be made) in the store, which settlement takes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The subjects, key first.
    pub subjects: Vec<Subject>,
    /// The lease bucket it was made in.
    pub bucket: u64,
    /// Micro-USD reserved in each subject.
    pub cost: u64,
    /// The store holds it (false: admitted without the store, nothing to take back).
    pub held: bool,
}

impl Reservation {
    /// A reservation of `cost` for `subjects` at `now`, with in-flight lease `lease_secs`.
    pub fn new(subjects: Vec<Subject>, cost: u64, now: u64, lease_secs: u64) -> Reservation {
        Reservation {
            subjects,
            bucket: now / lease_secs.max(1),
            cost: cost.min(MAX_EXACT),
            held: false,
        }
    }

    /// The webdis request body of the admission script.
    pub fn reserve_body(&self, now: u64, lease_secs: u64) -> Vec<u8> {
        let mut keys = Vec::with_capacity(self.subjects.len() * 3);
        for s in &self.subjects {
            keys.push(s.spent_key(now));
            keys.push(s.held_key(self.bucket));
            keys.push(s.held_key(self.bucket.saturating_sub(1)));
        }
        let mut args = vec![
            self.cost.to_string(),
            // A bucket counts for two leases: its own and the next one's.
            lease_secs.max(1).saturating_mul(3).to_string(),
        ];
        args.extend(
            self.subjects
                .iter()
                .map(|s| s.budget_micro.min(MAX_EXACT).to_string()),
        );
        eval_body(RESERVE_SCRIPT, &keys, &args)
    }
}

/// The store's answer to an admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveReply {
    /// Every budget had room: the reservation is held.
    Admitted,
    /// A subject's budget (index into the subjects) has no room.
    Refused {
        /// Which subject.
        subject: usize,
        /// Its spend in the period.
        spent_micro: u64,
        /// Reserved by requests in flight.
        reserved_micro: u64,
    },
    /// No usable answer (status, error, or shape): the store is unavailable.
    Unavailable,
}

/// The string value webdis wraps an `EVAL` answer in: `{"EVAL":"..."}`.
fn eval_text(status: u16, body: &[u8]) -> Option<&str> {
    if status != 200 {
        return None;
    }
    std::str::from_utf8(body)
        .ok()?
        .trim()
        .strip_prefix("{\"EVAL\":\"")?
        .strip_suffix("\"}")
}

/// Reads the admission script's answer.
pub fn parse_reserve_reply(status: u16, body: &[u8]) -> ReserveReply {
    let Some(text) = eval_text(status, body) else {
        return ReserveReply::Unavailable;
    };
    if text == "ok" {
        return ReserveReply::Admitted;
    }
    let mut parts = text.split(' ');
    let n = |p: Option<&str>| p.and_then(|v| v.parse::<u64>().ok());
    match (
        parts.next(),
        n(parts.next()),
        n(parts.next()),
        n(parts.next()),
    ) {
        (Some("no"), Some(i), Some(spent_micro), Some(reserved_micro)) if i >= 1 => {
            ReserveReply::Refused {
                subject: usize::try_from(i - 1).unwrap_or(usize::MAX),
                spent_micro,
                reserved_micro,
            }
        }
        _ => ReserveReply::Unavailable,
    }
}

/// Whether the settlement script's answer says it ran.
pub fn settle_ok(status: u16, body: &[u8]) -> bool {
    eval_text(status, body) == Some("ok")
}

// === the queue of settlements not yet written ===

/// Most entries one subject's queue holds: one per budget period and reservation bucket
/// touched while the store could not be written. Past it, reservation releases go first
/// (their buckets expire by themselves), then the oldest period's spend (counted lost).
pub const MAX_PENDING_ENTRIES: usize = 16;

/// One subject's settlements not yet written: Redis key and signed delta pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// `(redis key, delta)`: positive adds spend, negative releases a reservation.
    pub entries: Vec<(String, i64)>,
}

impl Pending {
    /// Reads a queue (a value that does not parse is an empty queue).
    pub fn decode(bytes: &[u8]) -> Pending {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let entries = text
            .lines()
            .filter_map(|l| {
                let (k, d) = l.rsplit_once(' ')?;
                Some((k.to_string(), d.parse::<i64>().ok()?))
            })
            .filter(|(k, d)| !k.is_empty() && *d != 0)
            .collect();
        Pending { entries }
    }

    /// The queue as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (k, d) in &self.entries {
            out.push_str(k);
            out.push(' ');
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Adds `delta` to `key`'s entry; returns the micro-USD of spend dropped to stay
    /// within [`MAX_PENDING_ENTRIES`] (0 almost always).
    pub fn add(&mut self, key: String, delta: i64) -> u64 {
        if delta == 0 {
            return 0;
        }
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            e.1 = e.1.saturating_add(delta);
            self.entries.retain(|(_, d)| *d != 0);
            return 0;
        }
        self.entries.push((key, delta));
        let mut lost = 0;
        while self.entries.len() > MAX_PENDING_ENTRIES {
            // A release first: its bucket expires by itself.
            let at = self.entries.iter().position(|(_, d)| *d < 0).unwrap_or(0);
            let (_, d) = self.entries.remove(at);
            lost += u64::try_from(d).unwrap_or(0);
        }
        lost
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Micro-USD of spend queued.
    pub fn spend_micro(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, d)| u64::try_from(*d).unwrap_or(0))
            .sum()
    }
}

/// What one subject's settlement adds to its queue: the cost to the current period, and
/// the release of the reservation when the store holds one.
pub fn settlement_entries(
    reservation: &Reservation,
    subject: &Subject,
    cost_micro: u64,
    now: u64,
) -> Vec<(String, i64)> {
    let mut out = Vec::with_capacity(2);
    if cost_micro > 0 {
        out.push((
            subject.spent_key(now),
            i64::try_from(cost_micro.min(MAX_EXACT)).unwrap_or(i64::MAX),
        ));
    }
    if reservation.held && reservation.cost > 0 {
        out.push((
            subject.held_key(reservation.bucket),
            -i64::try_from(reservation.cost).unwrap_or(i64::MAX),
        ));
    }
    out
}

/// One writer's numbered batch of settlements: sent again as it is until the store says
/// it is written, so the store can tell a retry from a new batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Its number, rising by one per batch of the writer.
    pub number: u64,
    /// The webdis body.
    pub body: Vec<u8>,
}

/// A source of numbered batches: one per flushing worker, named at random so no two
/// writers (of any replica, before or after a restart) share a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// The Redis key of its last applied batch number: `llmgw:writer:<hex id>`.
    record: String,
    /// Number of the last batch it made.
    last: u64,
}

impl Writer {
    /// A writer named `id`.
    pub fn new(id: u64) -> Writer {
        Writer {
            record: format!("llmgw:writer:{id:016x}"),
            last: 0,
        }
    }

    /// The next batch writing `entries` (of any number of subjects).
    pub fn batch(&mut self, entries: &[(String, i64)]) -> Batch {
        self.last += 1;
        let mut keys = Vec::with_capacity(entries.len() + 1);
        keys.push(self.record.clone());
        keys.extend(entries.iter().map(|(k, _)| k.clone()));
        let mut args = Vec::with_capacity(entries.len() + 2);
        args.push(self.last.to_string());
        args.push(WRITER_RECORD_SECS.to_string());
        args.extend(entries.iter().map(|(_, d)| d.to_string()));
        Batch {
            number: self.last,
            body: eval_body(SETTLE_SCRIPT, &keys, &args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &'static str, name: &str, budget: u64) -> Subject {
        Subject {
            kind,
            name: name.into(),
            budget_micro: budget,
            duration: BudgetDuration::Monthly,
        }
    }

    #[test]
    fn config_defaults_and_errors_name_the_field() {
        let raw: Value = serde_json::from_str(r#"{"address":"127.0.0.1:7379"}"#).unwrap();
        let s = validate(&raw).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.timeout_ms),
            ("127.0.0.1", 7379, 50)
        );
        assert_eq!(s.budget_failure_mode, BudgetFailureMode::Closed);
        for (json, field) in [
            (r#"{"address":"http://x:1"}"#, "address"),
            (r#"{"address":"x:1","timeout_ms":0}"#, "timeout_ms"),
            (
                r#"{"address":"x:1","budget_failure_mode":"maybe"}"#,
                "budget_failure_mode",
            ),
            (
                r#"{"address":"x:1","flush_interval_ms":1}"#,
                "flush_interval_ms",
            ),
            (r#"{"address":"x:1","timeout_ms":"5"}"#, "timeout_ms"),
            (r#"{"adress":"x:1"}"#, "adress"),
        ] {
            let raw: Value = serde_json::from_str(json).unwrap();
            assert_eq!(validate(&raw).unwrap_err().field, format!("{AT}.{field}"));
        }
    }

    #[test]
    fn webdis_arguments_are_escaped() {
        let body = eval_body("return 'a/b.c'", &["k:x y".into()], &["1".into()]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "EVAL/return%20%27a%2Fb%2Ec%27/1/k%3Ax%20y/1"
        );
    }

    #[test]
    fn reservation_keys_and_arguments() {
        let now = 1_700_000_000;
        let r = Reservation::new(
            vec![subject("key", "alice", 10), subject("team", "t", 20)],
            3,
            now,
            60,
        );
        assert_eq!(r.bucket, now / 60);
        let body = String::from_utf8(r.reserve_body(now, 60)).unwrap();
        let parts: Vec<&str> = body.split('/').collect();
        assert_eq!(parts[2], "6");
        assert_eq!(parts[3], "llmgw%3Aspent%3Akey%3Aalice%3Am24287");
        assert_eq!(
            parts[4],
            format!("llmgw%3Aheld%3Akey%3Aalice%3A{}", now / 60)
        );
        assert_eq!(&parts[9..], ["3", "180", "10", "20"]);
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reserve_reply(200, br#"{"EVAL":"ok"}"#),
            ReserveReply::Admitted
        );
        assert_eq!(
            parse_reserve_reply(200, br#"{"EVAL":"no 2 7 3"}"#),
            ReserveReply::Refused {
                subject: 1,
                spent_micro: 7,
                reserved_micro: 3
            }
        );
        for (status, body) in [
            (503, &b""[..]),
            (200, br#"{"EVAL":[false,"ERR x"]}"#),
            (200, br#"{"EVAL":"no 0 1 1"}"#),
            (200, b"garbage"),
        ] {
            assert!(matches!(
                parse_reserve_reply(status, body),
                ReserveReply::Unavailable
            ));
        }
        assert!(settle_ok(200, br#"{"EVAL":"ok"}"#));
        assert!(!settle_ok(503, br#"{"EVAL":"ok"}"#));
    }

    #[test]
    fn queue_merges_round_trips_and_stays_bounded() {
        let mut q = Pending::default();
        assert_eq!(q.add("s:m1".into(), 5), 0);
        assert_eq!(q.add("s:m1".into(), 7), 0);
        assert_eq!(q.add("h:1".into(), -3), 0);
        assert_eq!(q.add("h:1".into(), 3), 0);
        assert_eq!(q.entries, vec![("s:m1".to_string(), 12)]);
        assert_eq!(Pending::decode(&q.encode()), q);
        assert_eq!(Pending::decode(b"garbage\n"), Pending::default());
        for i in 0..MAX_PENDING_ENTRIES {
            q.add(format!("h:{i}"), -1);
        }
        // Full: releases go first, spend stays.
        assert_eq!(q.entries.len(), MAX_PENDING_ENTRIES);
        assert_eq!(q.spend_micro(), 12);
        let mut spends = Pending::default();
        for i in 0..=MAX_PENDING_ENTRIES {
            spends.add(format!("s:{i}"), 1);
        }
        // Only spend: the oldest is dropped and reported lost.
        assert_eq!(spends.entries.len(), MAX_PENDING_ENTRIES);
        assert_eq!(spends.entries[0].0, "s:1");
    }

    #[test]
    fn settlement_adds_cost_and_releases_what_the_store_holds() {
        let now = 1_700_000_000;
        let s = subject("key", "a", 100);
        let mut r = Reservation::new(vec![s.clone()], 40, now, 60);
        assert_eq!(
            settlement_entries(&r, &s, 10, now),
            vec![(s.spent_key(now), 10)]
        );
        r.held = true;
        assert_eq!(
            settlement_entries(&r, &s, 0, now),
            vec![(s.held_key(now / 60), -40)]
        );
        let mut w = Writer::new(0xab);
        let first = w.batch(&[("a".into(), 5), ("b".into(), -2)]);
        let body = String::from_utf8(first.body).unwrap();
        assert!(
            body.ends_with("/3/llmgw%3Awriter%3A00000000000000ab/a/b/1/604800/5/-2"),
            "{body}"
        );
        assert_eq!(w.batch(&[("a".into(), 1)]).number, 2);
    }
}
