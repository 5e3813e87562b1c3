//! What the gateway counts, as Envoy stats with tag-encoded labels.
//!
//! A stat name carries its labels as `.name=value;` segments, e.g.
//! `llm_requests_total.model=gpt-4o;.provider=openai;.status_class=2xx;`; the rendered
//! bootstrap's `stats_tags` turn every segment into a real Prometheus label
//! ([`STAT_TAGS`]). Names follow the OpenTelemetry GenAI semantic conventions where one
//! exists (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
//! `gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`), with the
//! unit in the name because Envoy histograms record integers.
//!
//! Label values come only from the gateway config (aliases, providers, models, key and
//! team names) or from small fixed sets (status class, token type), never from request
//! text or raw keys, so cardinality stays bounded by the config.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::hashing::FastHasher;
use crate::usage::Usage;

/// Stat names to what the host knows them by (ids). Names come from the config, not from
/// clients, so a fast hash is safe; a request looks up about ten names of ~100 bytes.
pub type StatNames<V> = HashMap<String, V, BuildHasherDefault<FastHasher>>;

/// The kind of an Envoy stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter (`increment_metric`).
    Counter,
    /// Histogram (`record_metric`).
    Histogram,
    /// Gauge set to a value (`record_metric`).
    Gauge,
}

/// One value to record into one stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Counter or histogram.
    pub kind: MetricKind,
    /// Full stat name with labels.
    pub name: String,
    /// Increment (counters) or sample (histograms).
    pub value: u64,
}

/// Tag name and extraction regex for each label, in the form Envoy's `stats_tags` takes:
/// the first group is removed from the name, the second is the value.
pub const STAT_TAGS: &[(&str, &str)] = &[
    ("model", r"(\.model=([^;]*);)"),
    ("provider", r"(\.provider=([^;]*);)"),
    ("upstream_model", r"(\.upstream_model=([^;]*);)"),
    ("key", r"(\.key=([^;]*);)"),
    ("team", r"(\.team=([^;]*);)"),
    ("operation", r"(\.operation=([^;]*);)"),
    ("status_class", r"(\.status_class=([^;]*);)"),
    ("status", r"(\.status=([^;]*);)"),
    ("token_type", r"(\.token_type=([^;]*);)"),
    ("operation", r"(\.operation=([^;]*);)"),
];

/// The `operation` label of a chat completion.
pub const CHAT_OPERATION: &str = "chat";
/// The `operation` label of an embeddings request.
pub const EMBEDDINGS_OPERATION: &str = "embeddings";

/// How one request ended: everything the stats need, gathered by the downstream instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The API the client called (`chat`, `embeddings`, `messages`, `count_tokens`,
    /// `responses`).
    pub operation: &'static str,
    /// The alias the client asked for (empty when the request never named a known one).
    pub model: String,
    /// The provider that answered last (empty when none was reached).
    pub provider: String,
    /// The provider's model that answered last.
    pub upstream_model: String,
    /// Name of the client key.
    pub key: String,
    /// Team of the client key.
    pub team: String,
    /// Final HTTP status sent to the client.
    pub status: u16,
    /// Whole request duration in milliseconds.
    pub duration_ms: u64,
    /// Time to the first response byte in milliseconds (streams).
    pub first_byte_ms: Option<u64>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// Envoy attempts (1 = no fallback).
    pub attempts: u64,
    /// Token usage, when known.
    pub usage: Option<Usage>,
    /// Cost in micro-USD; `None` when the model is unpriced or no usage is known.
    pub cost_micro_usd: Option<u64>,
}

/// Replaces characters that would break tag extraction or Prometheus output.
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(96));
    push_label(&mut out, value);
    out
}

/// Appends `value` as [`label`] would write it.
fn push_label(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push_str("none");
        return;
    }
    // Most labels (config names) need no change: copy them in one go.
    let plain = value.len() <= 96
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'"' | b'\\'));
    if plain {
        out.push_str(value);
        return;
    }
    out.extend(value.chars().take(96).map(|c| match c {
        ';' | '=' | ' ' | '\t' | '\n' | '\r' | '"' | '\\' => '_',
        c if c.is_control() => '_',
        c => c,
    }));
}

/// `2xx`, `4xx`, `5xx`...
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn name(base: &str, labels: &[(&str, &str)]) -> String {
    named(base, "", labels)
}

/// `base`, then labels already written by [`labels`], then `more`.
fn named(base: &str, written: &str, more: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(base.len() + written.len() + 32 * more.len());
    s.push_str(base);
    s.push_str(written);
    for (k, v) in more {
        s.push('.');
        s.push_str(k);
        s.push('=');
        push_label(&mut s, v);
        s.push(';');
    }
    s
}

/// Labels written once, for the several stats of a request that share them.
fn labels(labels: &[(&str, &str)]) -> String {
    named("", "", labels)
}

/// The stats one finished request records.
pub fn records(o: &Outcome) -> Vec<Record> {
    let mut out = Vec::with_capacity(12);
    let counter = |name: String, value: u64| Record {
        kind: MetricKind::Counter,
        name,
        value,
    };
    let histogram = |name: String, value: u64| Record {
        kind: MetricKind::Histogram,
        name,
        value,
    };
    let who: [(&str, &str); 6] = [
        ("model", &o.model),
        ("provider", &o.provider),
        ("upstream_model", &o.upstream_model),
        ("key", &o.key),
        ("team", &o.team),
        ("operation", o.operation),
    ];
    let route: [(&str, &str); 4] = [
        ("model", &o.model),
        ("provider", &o.provider),
        ("upstream_model", &o.upstream_model),
        ("operation", o.operation),
    ];

    let (who, route) = (labels(&who), labels(&route));
    out.push(counter(
        named(
            "llm_requests_total",
            &who,
            &[("status_class", status_class(o.status))],
        ),
        1,
    ));
    out.push(histogram(
        named("gen_ai_client_operation_duration_ms", &route, &[]),
        o.duration_ms,
    ));
    if o.stream {
        if let Some(ttft) = o.first_byte_ms {
            out.push(histogram(
                named("gen_ai_server_time_to_first_token_ms", &route, &[]),
                ttft,
            ));
        }
    }
    if let Some(u) = &o.usage {
        let types: [(&str, u64); 5] = [
            ("input", u.prompt_tokens),
            ("output", u.completion_tokens),
            ("cache_read", u.cache_read_tokens),
            ("cache_write", u.cache_write_tokens),
            ("reasoning", u.reasoning_tokens),
        ];
        for (t, n) in types {
            let token_type = [("token_type", t)];
            if t == "input" || t == "output" {
                out.push(histogram(
                    named("gen_ai_client_token_usage", &route, &token_type),
                    n,
                ));
            }
            if n > 0 {
                out.push(counter(named("llm_tokens_total", &who, &token_type), n));
            }
        }
        if o.stream && u.completion_tokens > 1 {
            if let Some(ttft) = o.first_byte_ms {
                let generating_us = o.duration_ms.saturating_sub(ttft).saturating_mul(1000);
                out.push(histogram(
                    named("gen_ai_server_time_per_output_token_us", &route, &[]),
                    generating_us / (u.completion_tokens - 1),
                ));
            }
        }
        match o.cost_micro_usd {
            Some(c) if c > 0 => out.push(counter(named("llm_cost_micro_usd_total", &who, &[]), c)),
            Some(_) => {}
            None => out.push(counter(
                named("llm_unpriced_requests_total", &route, &[]),
                1,
            )),
        }
    }
    if o.attempts > 1 {
        out.push(counter(
            named("llm_fallbacks_total", &route, &[]),
            o.attempts - 1,
        ));
    }
    out
}

/// Where a key's or team's budget stands, as gauges (micro-USD spent in the current
/// period, and its limit when it has one), for dashboards and budget alerts.
pub fn budget_gauges(
    scope: &str,
    name: &str,
    spent_micro_usd: u64,
    limit_micro_usd: Option<u64>,
) -> Vec<Record> {
    let labels: [(&str, &str); 1] = [(scope, name)];
    let mut out = vec![Record {
        kind: MetricKind::Gauge,
        name: self::name(&format!("llm_{scope}_spend_micro_usd"), &labels),
        value: spent_micro_usd,
    }];
    if let Some(limit) = limit_micro_usd {
        out.push(Record {
            kind: MetricKind::Gauge,
            name: self::name(&format!("llm_{scope}_budget_micro_usd"), &labels),
            value: limit,
        });
    }
    out
}

/// One provider error answer, counted per attempt by the upstream instance (so errors that
/// a fallback recovered from are counted too).
pub fn provider_error(model: &str, provider: &str, upstream_model: &str, status: u16) -> Record {
    let status = status.to_string();
    Record {
        kind: MetricKind::Counter,
        name: name(
            "llm_provider_errors_total",
            &[
                ("model", model),
                ("provider", provider),
                ("upstream_model", upstream_model),
                ("status", &status),
            ],
        ),
        value: 1,
    }
}

/// One answer whose usage was beyond what its request can cause (not applied; the request
/// was charged its reservation instead).
pub fn usage_rejected(model: &str, provider: &str, upstream_model: &str) -> Record {
    Record {
        kind: MetricKind::Counter,
        name: name(
            "llm_provider_usage_rejected_total",
            &[
                ("model", model),
                ("provider", provider),
                ("upstream_model", upstream_model),
            ],
        ),
        value: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            operation: CHAT_OPERATION,
            model: "gpt-4o".into(),
            provider: "openai".into(),
            upstream_model: "gpt-4o-2024-08-06".into(),
            key: "master".into(),
            team: String::new(),
            status: 200,
            duration_ms: 1200,
            first_byte_ms: Some(200),
            stream: true,
            attempts: 2,
            usage: Some(Usage {
                prompt_tokens: 100,
                completion_tokens: 11,
                cache_read_tokens: 40,
                ..Usage::default()
            }),
            cost_micro_usd: Some(350),
        }
    }

    fn find<'a>(r: &'a [Record], prefix: &str) -> Vec<&'a Record> {
        r.iter().filter(|x| x.name.starts_with(prefix)).collect()
    }

    /// Names carry every label as a `.k=v;` segment the stats_tags regexes extract.
    #[test]
    fn names_and_labels() {
        let r = records(&outcome());
        let req = find(&r, "llm_requests_total");
        assert_eq!(req.len(), 1);
        assert_eq!(
            req[0].name,
            "llm_requests_total.model=gpt-4o;.provider=openai;.upstream_model=gpt-4o-2024-08-06;.key=master;.team=none;.operation=chat;.status_class=2xx;"
        );
        assert_eq!(find(&r, "llm_fallbacks_total")[0].value, 1);
        assert_eq!(find(&r, "llm_cost_micro_usd_total")[0].value, 350);
        let ttft = find(&r, "gen_ai_server_time_to_first_token_ms");
        assert_eq!(ttft[0].value, 200);
        // 1000 ms over 10 further tokens.
        assert_eq!(
            find(&r, "gen_ai_server_time_per_output_token_us")[0].value,
            100_000
        );
        let tokens = find(&r, "llm_tokens_total");
        let total: u64 = tokens
            .iter()
            .filter(|t| !t.name.contains("cache_read"))
            .map(|t| t.value)
            .sum();
        assert_eq!(total, 111);
        assert!(find(&r, "llm_provider_errors_total").is_empty());
    }

    /// Unpriced usage is counted as such; provider errors by status.
    #[test]
    fn unpriced_and_errors() {
        let mut o = outcome();
        o.cost_micro_usd = None;
        o.status = 429;
        o.stream = false;
        let r = records(&o);
        assert_eq!(find(&r, "llm_unpriced_requests_total").len(), 1);
        assert!(find(&r, "gen_ai_server_time_to_first_token_ms").is_empty());
        let e = provider_error("m", "anthropic", "claude", 529);
        assert_eq!(
            e.name,
            "llm_provider_errors_total.model=m;.provider=anthropic;.upstream_model=claude;.status=529;"
        );
    }

    /// Budget gauges carry the key or team label.
    #[test]
    fn budget_gauge_names() {
        let g = budget_gauges("team", "research", 5, Some(100));
        assert_eq!(g[0].name, "llm_team_spend_micro_usd.team=research;");
        assert_eq!(g[1].name, "llm_team_budget_micro_usd.team=research;");
        assert_eq!(g[1].kind, MetricKind::Gauge);
        assert_eq!(budget_gauges("key", "k", 1, None).len(), 1);
    }

    /// Label values cannot break the encoding.
    #[test]
    fn label_sanitizing() {
        assert_eq!(label("a;b=c d"), "a_b_c_d");
        assert_eq!(label(""), "none");
    }

    /// The extraction regexes match the encoding.
    #[test]
    fn tags_cover_labels() {
        let n = &records(&outcome())[0].name;
        for (tag, _) in STAT_TAGS {
            if ["status", "token_type"].contains(tag) {
                continue;
            }
            assert!(n.contains(&format!(".{tag}=")), "{tag} in {n}");
        }
    }
}
