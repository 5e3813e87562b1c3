//! Native driver for instruction counts (`valgrind --tool=callgrind`) and fixture export.
//!
//! ```text
//! driver fixtures <dir>          write the request bodies and provider answers the load
//!                                harness sends and serves (same bytes as the benches)
//! driver list                    cases and phases
//! driver count <case> <phase> N  run one phase N times inside `measured_loop`; count it with
//!                                valgrind --tool=callgrind --toggle-collect='*measured_loop*'
//! driver                         (as run by `cargo test --all-targets`) every phase once
//! ```
//!
//! Phases mirror what the filter does per request, minus the host calls:
//! `downstream` (key check, parse and validate, alias, prompt estimate, route),
//! `upstream` (per-attempt request translation), `response` (answer translation),
//! `stream` (request translation, then the answer fed one event per call, as a provider
//! flushes it) and `full` (all of a request).

mod common;

use std::hint::black_box;

use llm_gateway::auth;
use llm_gateway::config::GatewayConfig;
use llm_gateway::messages_api::InboundApi;
use llm_gateway::metrics::{self, Outcome};
use llm_gateway::openai::ChatRequest;
use llm_gateway::provider::{
    translator_for, ClientRequest, ProviderKind, ProviderOptions, RequestFromBody, Target,
};
use llm_gateway::request::{estimate_prompt_tokens, parse_chat_request};
use llm_gateway::routing::{choose_route, resolve_alias};
use llm_gateway::usage::Usage;

struct Case {
    name: String,
    kind: ProviderKind,
    request: Vec<u8>,
    answer: Vec<u8>,
    /// The answer split into events (streams only), done once outside the measured loop.
    events: Vec<Vec<u8>>,
    stream: bool,
    /// The request as the downstream instance parsed it (for the phases that start after it).
    parsed: Option<ChatRequest>,
}

use common::alias;

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        for (label, size) in common::PROMPT_SIZES {
            out.push(Case {
                name: format!("{}-{label}", kind.name()),
                kind,
                request: common::chat_request(alias(kind), *size, false),
                answer: match kind {
                    ProviderKind::Anthropic => common::anthropic_answer(),
                    _ => common::openai_answer(),
                },
                events: Vec::new(),
                stream: false,
                parsed: None,
            });
        }
    }
    out.push(Case {
        name: "anthropic-tools".into(),
        kind: ProviderKind::Anthropic,
        request: common::tools_request(alias(ProviderKind::Anthropic)),
        answer: common::anthropic_tool_answer(),
        events: Vec::new(),
        stream: false,
        parsed: None,
    });
    out.push(Case {
        name: "openai-stream".into(),
        kind: ProviderKind::OpenAi,
        request: common::chat_request(alias(ProviderKind::OpenAi), 1024, true),
        answer: common::openai_stream(),
        events: Vec::new(),
        stream: true,
        parsed: None,
    });
    out.push(Case {
        name: "anthropic-stream".into(),
        kind: ProviderKind::Anthropic,
        request: common::chat_request(alias(ProviderKind::Anthropic), 1024, true),
        answer: common::anthropic_stream(),
        events: Vec::new(),
        stream: true,
        parsed: None,
    });
    for c in &mut out {
        c.parsed = parse_chat_request(&c.request).ok();
        if c.stream {
            c.events = common::split_events(&c.answer)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
        }
    }
    out
}

const PHASES: &[&str] = &[
    "downstream",
    "upstream",
    "response",
    "stream",
    "full",
    "metrics",
];

struct Env {
    /// Stat ids by name, as the shell caches them per VM.
    stat_ids: std::cell::RefCell<metrics::StatNames<u32>>,
    config: GatewayConfig,
    master: auth::KeyDigest,
    options: ProviderOptions,
}

impl Env {
    fn new() -> Env {
        Env {
            stat_ids: Default::default(),
            config: GatewayConfig::from_value(common::gateway_config())
                .expect("bench gateway config is valid"),
            master: auth::digest(common::MASTER_KEY),
            options: ProviderOptions::default(),
        }
    }

    fn target(&self, kind: ProviderKind) -> Target<'_> {
        common::target(kind, &self.options)
    }
}

/// The downstream instance's work; returns a number so nothing is optimised away, and the
/// parsed request it hands to the attempts.
fn downstream(env: &Env, body: &[u8]) -> (usize, Option<ChatRequest>) {
    let header = format!("Bearer {}", common::MASTER_KEY);
    let ok = auth::bearer_token(&header)
        .map(|t| auth::digests_equal(&auth::digest(t), &env.master))
        .unwrap_or(false);
    let Ok(request) = parse_chat_request(body) else {
        return (0, None);
    };
    let Ok(alias) = resolve_alias(&env.config, &request.model) else {
        return (0, None);
    };
    let estimate = estimate_prompt_tokens(&request);
    match choose_route(&env.config, alias, estimate) {
        Ok(route) => (
            route.key.len() + ok as usize + estimate as usize,
            Some(request),
        ),
        Err(_) => (0, None),
    }
}

/// One attempt's request translation, from the request the downstream instance parsed
/// (as the filter does), or from the body when there is none.
fn upstream(env: &Env, case: &Case, parsed: Option<&ChatRequest>) -> usize {
    let mut t = translator_for(case.kind);
    let target = env.target(case.kind);
    let result = match parsed {
        Some(chat) => t.request(ClientRequest::chat(&case.request, chat), &target),
        None => t.request_from_body(InboundApi::Chat, &case.request, &target),
    };
    match result {
        Ok(r) => r.body.len() + r.path.len(),
        Err(_) => 0,
    }
}

fn response(case: &Case) -> usize {
    let mut t = translator_for(case.kind);
    t.response(200, &case.answer).body.len()
}

/// Request translation, then the stream fed one event per call (a fresh output buffer per
/// chunk, as the shell does), then the end of stream.
fn stream(env: &Env, case: &Case, parsed: Option<&ChatRequest>) -> usize {
    let mut t = translator_for(case.kind);
    let target = env.target(case.kind);
    let translated = match parsed {
        Some(chat) => t.request(ClientRequest::chat(&case.request, chat), &target),
        None => t.request_from_body(InboundApi::Chat, &case.request, &target),
    };
    if translated.is_err() {
        return 0;
    }
    let mut total = 0;
    for event in &case.events {
        let mut out = Vec::with_capacity(event.len() + 256);
        t.stream(event, false, &mut out);
        total += out.len();
    }
    let mut out = Vec::new();
    t.stream(b"", true, &mut out);
    total + out.len()
}

/// The stats of one finished request: record names built from the labels, then looked up
/// in the per-VM id cache (the host calls that follow are not counted).
fn stats(env: &Env, case: &Case) -> usize {
    let outcome = Outcome {
        operation: metrics::CHAT_OPERATION,
        model: alias(case.kind).to_string(),
        provider: case.kind.name().to_string(),
        upstream_model: "bench-model".to_string(),
        key: "master".to_string(),
        status: 200,
        duration_ms: 12,
        first_byte_ms: case.stream.then_some(3),
        stream: case.stream,
        attempts: 1,
        usage: Some(Usage {
            prompt_tokens: 260,
            completion_tokens: 70,
            ..Usage::default()
        }),
        ..Outcome::default()
    };
    let mut ids = env.stat_ids.borrow_mut();
    let mut total = 0usize;
    for r in metrics::records(&outcome) {
        let next = ids.len() as u32;
        total += *ids.entry(r.name).or_insert(next) as usize + r.value as usize;
    }
    total
}

fn run_phase(env: &Env, case: &Case, phase: &str) -> usize {
    match phase {
        "downstream" => downstream(env, &case.request).0,
        "upstream" => upstream(env, case, case.parsed.as_ref()),
        "response" => response(case),
        "stream" => stream(env, case, case.parsed.as_ref()),
        "metrics" => stats(env, case),
        "full" => {
            let (n, parsed) = downstream(env, &case.request);
            n + if case.stream {
                stream(env, case, parsed.as_ref())
            } else {
                upstream(env, case, parsed.as_ref()) + response(case)
            }
        }
        _ => 0,
    }
}

/// The only code callgrind counts (`--toggle-collect='*measured_loop*'`).
#[inline(never)]
fn measured_loop(env: &Env, case: &Case, phase: &str, n: usize) -> usize {
    let mut acc = 0usize;
    for _ in 0..n {
        acc = acc.wrapping_add(run_phase(black_box(env), black_box(case), black_box(phase)));
    }
    acc
}

fn write_fixtures(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let m = common::MODEL_PLACEHOLDER;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (label, size) in common::PROMPT_SIZES {
        files.push((
            format!("request-{label}.json"),
            common::chat_request(m, *size, false),
        ));
    }
    files.push(("request-tools.json".into(), common::tools_request(m)));
    files.push((
        "request-stream.json".into(),
        common::chat_request(m, 1024, true),
    ));
    files.push(("answer-openai.json".into(), common::openai_answer()));
    files.push(("answer-openai-429.json".into(), common::openai_429()));
    files.push(("answer-anthropic.json".into(), common::anthropic_answer()));
    files.push(("answer-bedrock.json".into(), common::bedrock_answer()));
    files.push(("answer-gemini.json".into(), common::gemini_answer()));
    files.push((
        "answer-anthropic-tools.json".into(),
        common::anthropic_tool_answer(),
    ));
    files.push(("answer-openai-stream.sse".into(), common::openai_stream()));
    files.push((
        "answer-anthropic-stream.sse".into(),
        common::anthropic_stream(),
    ));
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn main() {
    // `cargo bench` appends `--bench`; ignore it and any other flag.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let env = Env::new();
    let cases = cases();
    match args.first().map(String::as_str) {
        Some("fixtures") => {
            let dir = args
                .get(1)
                .map(String::as_str)
                .unwrap_or("bench/out/fixtures");
            if let Err(e) = write_fixtures(std::path::Path::new(dir)) {
                eprintln!("cannot write fixtures to {dir}: {e}");
                std::process::exit(1);
            }
        }
        Some("list") => {
            for c in &cases {
                let phases: Vec<&str> = PHASES
                    .iter()
                    .copied()
                    .filter(|p| {
                        (*p == "stream") == c.stream
                            || *p == "downstream"
                            || *p == "upstream"
                            || *p == "full"
                            || *p == "metrics"
                    })
                    .collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    c.name,
                    c.request.len(),
                    c.events.len(),
                    phases.join(",")
                );
            }
        }
        Some("count") => {
            let (Some(name), Some(phase)) = (args.get(1), args.get(2)) else {
                eprintln!("usage: driver count <case> <phase> <n>");
                std::process::exit(2);
            };
            let n: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(100);
            let Some(case) = cases.iter().find(|c| &c.name == name) else {
                eprintln!("unknown case {name}");
                std::process::exit(2);
            };
            // One untimed run first so lazily initialised state is not counted.
            let warm = run_phase(&env, case, phase);
            let acc = measured_loop(&env, case, phase, n);
            println!("{name} {phase} n={n} out={warm} acc={acc}");
        }
        _ => {
            // Smoke run: every phase of every case once; report, never fail the test run.
            for c in &cases {
                for p in PHASES {
                    let out = run_phase(&env, c, p);
                    if out == 0 && (*p != "stream" || c.stream) {
                        println!("driver: {} {p}: no output", c.name);
                    }
                }
            }
        }
    }
}
