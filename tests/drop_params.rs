//! The per-deployment unsupported-parameter policy (`litellm_params.drop_params`) across
//! providers: by default a parameter the provider cannot honour is a 400 naming it; with
//! `drop_params: true` it is left out and reported in `UpstreamRequest::dropped`.
//! OpenAI-compatible deployments forward everything.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::sync::LazyLock;

use common::{anthropic_target, openai_target, NOW};
use llm_gateway::error::GatewayError;
use llm_gateway::provider::{
    translator_for, ProviderKind, ProviderOptions, Target, UpstreamRequest,
};
use serde_json::{json, Value};

static DROPPING: LazyLock<ProviderOptions> = LazyLock::new(|| ProviderOptions {
    drop_params: true,
    ..ProviderOptions::default()
});

fn dropping(target: Target<'static>) -> Target<'static> {
    Target {
        options: &DROPPING,
        now_unix_secs: NOW,
        ..target
    }
}

fn body(extra: Value) -> Vec<u8> {
    serde_json::to_vec(&common::chat_body("m", extra)).unwrap()
}

/// A fresh `kind` translator's upstream request for a chat request with `extra`, to `target`.
fn translate(
    kind: ProviderKind,
    extra: Value,
    target: &Target<'_>,
) -> Result<UpstreamRequest, GatewayError> {
    translator_for(kind).request_from_body(InboundApi::Chat, &body(extra), target)
}

fn anthropic_unsupported() -> Vec<(&'static str, Value)> {
    vec![
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("logit_bias", json!({"50256": -100})),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-1.0)),
    ]
}

/// Anthropic refuses each unsupported parameter by name, with code
/// `unsupported_parameter` and a message that names the `drop_params` fix.
#[test]
fn anthropic_refuses_by_default() {
    for (param, value) in anthropic_unsupported() {
        let e = translate(
            ProviderKind::Anthropic,
            json!({ param: value }),
            &anthropic_target(),
        )
        .expect_err(param);
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some(param));
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
        assert!(e.message.contains("drop_params"), "{}", e.message);
    }
}

/// With `drop_params`, Anthropic leaves them out and reports each; the body is the same as
/// without them.
#[test]
fn anthropic_drops_with_drop_params() {
    let mut all = serde_json::Map::new();
    for (param, value) in anthropic_unsupported() {
        all.insert(param.to_string(), value);
    }
    let mut t = translator_for(ProviderKind::Anthropic);
    let r = t
        .request_from_body(
            InboundApi::Chat,
            &body(Value::Object(all)),
            &dropping(anthropic_target()),
        )
        .unwrap();
    assert_eq!(
        r.dropped,
        vec![
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "presence_penalty",
            "frequency_penalty"
        ]
    );
    let plain = t
        .request_from_body(
            InboundApi::Chat,
            &body(json!({})),
            &dropping(anthropic_target()),
        )
        .unwrap();
    assert_eq!(r.body, plain.body);
    assert!(plain.dropped.is_empty());
}

/// With `drop_params`, two sampling parameters that both matter keep `temperature` and
/// report `top_p` as dropped (Anthropic's current models refuse both together).
#[test]
fn anthropic_keeps_temperature_over_top_p() {
    let r = translate(
        ProviderKind::Anthropic,
        json!({"temperature": 0.2, "top_p": 0.9}),
        &dropping(anthropic_target()),
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent["temperature"], json!(0.2));
    assert!(sent.get("top_p").is_none(), "{sent}");
    assert_eq!(r.dropped, vec!["top_p"]);
}

/// `n` > 1 is never dropped: one choice where several were asked for is a different answer
/// the client could not detect.
#[test]
fn anthropic_n_is_always_refused() {
    let e = translate(
        ProviderKind::Anthropic,
        json!({"n": 3}),
        &dropping(anthropic_target()),
    )
    .expect_err("n");
    assert_eq!(e.param.as_deref(), Some("n"));
}

/// OpenAI-compatible servers get every parameter as sent; nothing is dropped.
#[test]
fn openai_compatible_forwards_everything() {
    let r = translate(
        ProviderKind::OpenAi,
        json!({"logprobs": true, "top_logprobs": 3, "logit_bias": {"1": 2}, "n": 3}),
        &dropping(openai_target()),
    )
    .unwrap();
    assert!(r.dropped.is_empty());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["logprobs"], true);
    assert_eq!(v["top_logprobs"], 3);
    assert_eq!(v["n"], 3);
}
