//! Criterion benchmarks of the translation core, native (the `.wasm` runs the same code
//! under V8; these isolate it from Envoy and the host calls).
//!
//! ```text
//! cargo bench --bench translate                    # full run
//! cargo bench --bench translate -- --quick         # a few seconds per benchmark
//! cargo bench --bench translate -- request/anthropic
//! ```
//!
//! Groups:
//! - `downstream/<size>`: what the downstream instance does per request (key check,
//!   parse and validate, alias, prompt estimate, route);
//! - `request/<provider>/<size>`: parse → translate → serialize of the client request for
//!   one attempt (1 KB, 10 KB, 100 KB prompts);
//! - `response/<provider>[-tools]`: a complete answer translated to a `chat.completion`;
//! - `stream/<provider>`: a 200-delta stream fed one event per call, reported per event
//!   (request translation excluded: it is done once in the setup of every iteration).

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use llm_gateway::auth;
use llm_gateway::config::GatewayConfig;
use llm_gateway::provider::{translator_for, ProviderKind, ProviderOptions};
use llm_gateway::request::{estimate_prompt_tokens, parse_chat_request};
use llm_gateway::routing::{choose_route, resolve_alias};

use common::{alias, target};

fn downstream(c: &mut Criterion) {
    let config = GatewayConfig::from_value(common::gateway_config()).expect("valid config");
    let master = auth::digest(common::MASTER_KEY);
    let header = format!("Bearer {}", common::MASTER_KEY);
    let mut g = c.benchmark_group("downstream");
    for (label, size) in common::PROMPT_SIZES {
        let body = common::chat_request(alias(ProviderKind::Anthropic), *size, false);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*label, |b| {
            b.iter(|| {
                let token = auth::bearer_token(&header).expect("bearer");
                let ok = auth::digests_equal(&auth::digest(token), &master);
                let request = parse_chat_request(black_box(&body)).expect("valid request");
                let alias = resolve_alias(&config, &request.model).expect("known alias");
                let estimate = estimate_prompt_tokens(&request);
                let route = choose_route(&config, alias, estimate).expect("route");
                black_box((ok, route.key.len()))
            })
        });
    }
    g.finish();
}

fn request(c: &mut Criterion) {
    let options = ProviderOptions::default();
    let mut g = c.benchmark_group("request");
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        for (label, size) in common::PROMPT_SIZES {
            let body = common::chat_request(alias(kind), *size, false);
            let t = target(kind, &options);
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.bench_function(format!("{}/{label}", kind.name()), |b| {
                b.iter(|| {
                    let mut tr = translator_for(kind);
                    black_box(
                        tr.request_from_body(InboundApi::Chat, black_box(&body), &t)
                            .expect("translates")
                            .body
                            .len(),
                    )
                })
            });
        }
    }
    let body = common::tools_request(alias(ProviderKind::Anthropic));
    let t = target(ProviderKind::Anthropic, &options);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("anthropic/tools", |b| {
        b.iter(|| {
            let mut tr = translator_for(ProviderKind::Anthropic);
            black_box(
                tr.request_from_body(InboundApi::Chat, black_box(&body), &t)
                    .expect("translates")
                    .body
                    .len(),
            )
        })
    });
    g.finish();
}

fn response(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    for (name, kind, answer) in [
        ("openai", ProviderKind::OpenAi, common::openai_answer()),
        (
            "anthropic",
            ProviderKind::Anthropic,
            common::anthropic_answer(),
        ),
        (
            "anthropic-tools",
            ProviderKind::Anthropic,
            common::anthropic_tool_answer(),
        ),
    ] {
        g.throughput(Throughput::Bytes(answer.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut tr = translator_for(kind);
                black_box(tr.response(200, black_box(&answer)).body.len())
            })
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    let options = ProviderOptions::default();
    let mut g = c.benchmark_group("stream");
    for (kind, answer) in [
        (ProviderKind::OpenAi, common::openai_stream()),
        (ProviderKind::Anthropic, common::anthropic_stream()),
    ] {
        let body = common::chat_request(alias(kind), 1024, true);
        let t = target(kind, &options);
        let events = common::split_events(&answer);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(kind.name(), |b| {
            b.iter_batched_ref(
                || {
                    let mut tr = translator_for(kind);
                    tr.request_from_body(InboundApi::Chat, &body, &t)
                        .expect("translates");
                    tr
                },
                |tr| {
                    let mut total = 0;
                    for e in &events {
                        let mut out = Vec::with_capacity(e.len() + 256);
                        tr.stream(black_box(e), false, &mut out);
                        total += out.len();
                    }
                    let mut out = Vec::new();
                    tr.stream(b"", true, &mut out);
                    black_box(total + out.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, downstream, request, response, stream);
criterion_main!(benches);
