//! Limits under concurrency: many threads admitting at once against one shared store with
//! Envoy's compare-and-swap semantics must admit exactly what the limits allow, and the
//! totals after settlement must be exact. Also: the entry `mint-key` prints is a valid
//! config entry for the key it prints.

use std::sync::Barrier;

use llm_gateway::auth;
use llm_gateway::config::keys::{find_key, KeyTable};
use llm_gateway::config::GatewayConfig;
use llm_gateway::limits::admission::{admit, Admission, RequestFacts};
use llm_gateway::limits::records::prepare;
use llm_gateway::limits::refusal::{Refusal, RefusalReason};
use llm_gateway::limits::settlement::{settle, spend, Account, Settlement, Spend};
use llm_gateway::limits::store::MemoryStore;
use llm_gateway::usage::Usage;
use serde_json::{json, Value};

/// A fixed instant, so no minute or period rolls over during a test.
const NOW: u64 = 1_773_489_610;
const THREADS: usize = 100;

fn table(keys: Value, teams: Value) -> KeyTable {
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

/// 100 prompt tokens at 1 µ$ and 200 output tokens at 2 µ$: 500 µ$ worst case.
fn facts() -> RequestFacts {
    RequestFacts {
        estimated_prompt_tokens: 100,
        max_output_tokens: 200,
        input_price_per_token: 1e-6,
        output_price_per_token: 2e-6,
    }
}

/// `THREADS` threads, released together, each admitting once with key `names[i % len]`.
fn storm(store: &MemoryStore, t: &KeyTable, names: &[&str]) -> Vec<Result<Admission, Refusal>> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let barrier = &barrier;
                let name = names[i % names.len()];
                s.spawn(move || {
                    let key = find_key(t, &auth::digest(name)).unwrap();
                    barrier.wait();
                    admit(store, key, t.team_of(key), &facts(), NOW)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn split(results: Vec<Result<Admission, Refusal>>) -> (Vec<Admission>, Vec<Refusal>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in results {
        match r {
            Ok(a) => ok.push(a),
            Err(e) => refused.push(e),
        }
    }
    (ok, refused)
}

/// A key budget that covers exactly ten worst cases admits exactly ten of 100 racing
/// requests; after settling them at a smaller real cost, the spend is exact.
#[test]
fn key_budget_under_concurrency() {
    for _round in 0..5 {
        let t = table(
            json!([entry(
                "k",
                json!({"max_budget": 0.005, "budget_duration": "daily"})
            )]),
            json!([]),
        );
        let store = MemoryStore::new();
        prepare(&store, &t);
        let (ok, refused) = split(storm(&store, &t, &["k"]));
        assert_eq!(ok.len(), 10);
        assert_eq!(refused.len(), 90);
        for r in &refused {
            assert_eq!(r.reason, RefusalReason::Budget, "{}", r.error.message);
            assert_eq!(r.error.status, 429);
            assert_eq!(r.error.code.as_deref(), Some("budget_exceeded"));
        }
        let key = find_key(&t, &auth::digest("k")).unwrap();
        let s = spend(&store, Account::Key(key), NOW);
        assert_eq!((s.reserved_micro_usd, s.in_flight), (5_000, 10));
        // Refused requests left nothing behind: 10 requests, 10 estimates of 100 tokens.
        assert_eq!((s.requests_this_minute, s.tokens_this_minute), (10, 1_000));

        settle_all(&store, ok, 137);
        let s = spend(&store, Account::Key(key), NOW);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (1_370, 0, 0)
        );
        assert_eq!(s.tokens_this_minute, 10 * 150);
    }
}

fn settle_all(store: &MemoryStore, admissions: Vec<Admission>, cost: u64) {
    let usage = Usage {
        prompt_tokens: 100,
        completion_tokens: 50,
        ..Usage::default()
    };
    std::thread::scope(|s| {
        for a in admissions {
            s.spawn(move || {
                settle(
                    store,
                    a,
                    Settlement::Used {
                        usage,
                        cost_micro_usd: cost,
                    },
                    NOW,
                )
                .unwrap()
            });
        }
    });
}

/// A team budget shared by four keys holds exactly under contention on both records; the
/// keys' records keep no trace of the requests the team refused.
#[test]
fn team_budget_under_concurrency() {
    for _round in 0..5 {
        let keys: Vec<Value> = (0..4)
            .map(|i| {
                entry(
                    &format!("k{i}"),
                    json!({"team": "research", "max_budget": 1.0}),
                )
            })
            .collect();
        let t = table(
            Value::Array(keys),
            json!([{"name": "research", "max_budget": 0.005, "budget_duration": "monthly"}]),
        );
        let store = MemoryStore::new();
        prepare(&store, &t);
        let (ok, refused) = split(storm(&store, &t, &["k0", "k1", "k2", "k3"]));
        assert_eq!(ok.len(), 10);
        assert_eq!(refused.len(), 90);
        for r in &refused {
            assert_eq!(r.error.code.as_deref(), Some("budget_exceeded"));
            assert!(
                r.error.message.contains("team `research`"),
                "{}",
                r.error.message
            );
        }
        let team = t.team("research").unwrap();
        let key_totals = |f: &dyn Fn(Spend) -> u64| -> u64 {
            t.keys
                .iter()
                .map(|k| f(spend(&store, Account::Key(k), NOW)))
                .sum()
        };
        assert_eq!(key_totals(&|s| s.in_flight), 10);
        assert_eq!(key_totals(&|s| s.requests_this_minute), 10);
        assert_eq!(key_totals(&|s| s.reserved_micro_usd), 5_000);
        assert_eq!(spend(&store, Account::Team(team), NOW).in_flight, 10);

        settle_all(&store, ok, 250);
        let s = spend(&store, Account::Team(team), NOW);
        assert_eq!(
            (s.spent_micro_usd, s.reserved_micro_usd, s.in_flight),
            (2_500, 0, 0)
        );
        assert_eq!(key_totals(&|s| s.spent_micro_usd), 2_500);
        assert_eq!(key_totals(&|s| s.in_flight), 0);
    }
}

/// `max_parallel_requests` admits exactly that many of 100 racing requests, and frees the
/// slots on settlement.
#[test]
fn parallel_limit_under_concurrency() {
    let t = table(
        json!([
            entry("a", json!({"team": "t", "max_parallel_requests": 10})),
            entry("b", json!({"team": "t"}))
        ]),
        json!([{"name": "t", "max_parallel_requests": 30}]),
    );
    let store = MemoryStore::new();
    prepare(&store, &t);
    for _round in 0..5 {
        let (ok, refused) = split(storm(&store, &t, &["a"]));
        assert_eq!(ok.len(), 10);
        assert_eq!(refused.len(), 90);
        assert!(refused.iter().all(|r| r.reason == RefusalReason::Parallel
            && r.error.status == 429
            && r.error.message.contains("key `a`")));
        // The team's own limit: b's requests fill what a left of the team's 30.
        let (ok_b, refused_b) = split(storm(&store, &t, &["b"]));
        assert_eq!(ok_b.len(), 20);
        assert!(refused_b
            .iter()
            .all(|r| r.reason == RefusalReason::Parallel && r.error.message.contains("team `t`")));
        let team = t.team("t").unwrap();
        assert_eq!(spend(&store, Account::Team(team), NOW).in_flight, 30);
        settle_all(&store, ok, 0);
        settle_all(&store, ok_b, 0);
        assert_eq!(spend(&store, Account::Team(team), NOW).in_flight, 0);
        for k in &t.keys {
            assert_eq!(spend(&store, Account::Key(k), NOW).in_flight, 0);
        }
    }
}

/// The `mint-key` command prints the key once, on its own line, and an entry that parses
/// and validates, for exactly that key.
#[test]
fn mint_key_entry_validates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args([
            "mint-key",
            "--name",
            "alice-dev",
            "--team",
            "research",
            "--models",
            "gpt-4o*, m",
            "--max-budget",
            "10",
            "--budget-duration",
            "monthly",
            "--rpm",
            "60",
            "--tpm",
            "100000",
            "--max-parallel",
            "4",
            "--expires",
            "2026-12-31T23:59:59Z",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (key, rest) = stdout.split_once('\n').unwrap();
    assert!(key.starts_with("sk-gw-") && key.len() == 49, "{key}");
    assert_eq!(stdout.matches(key).count(), 1, "the key is printed once");
    assert!(rest.contains("shown only this once"), "{rest}");

    let entries: Value = serde_norway::from_str(rest).unwrap();
    let config = GatewayConfig::from_value(json!({
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/m"}},
            {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini"}}
        ],
        "general_settings": {"master_key": "sk-master"},
        "virtual_keys": entries,
        "teams": [{"name": "research"}],
    }))
    .unwrap();
    let k = find_key(&config.keys, &auth::digest(key)).unwrap();
    assert_eq!(k.name, "alice-dev");
    assert_eq!(k.team.as_deref(), Some("research"));
    assert_eq!(k.limits.rpm_limit, Some(60));
    assert_eq!(k.limits.max_parallel_requests, Some(4));
    assert_eq!(k.limits.max_budget_micro_usd, Some(10_000_000));
    assert_eq!(k.models.as_deref().unwrap(), ["gpt-4o*", "m"]);

    // Two runs never mint the same key.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["mint-key", "--name", "x"])
        .output()
        .unwrap();
    let other = String::from_utf8(again.stdout).unwrap();
    assert_ne!(other.lines().next(), Some(key));

    // Bad input names the flag and prints no key.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["mint-key", "--name", "x", "--budget-duration", "monthly"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--budget-duration"));
}
