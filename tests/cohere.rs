//! Cohere translation: golden cases under `tests/fixtures/cohere/` (see `common`), the
//! unsupported-parameter policy, the endpoint and credentials, error statuses and the
//! stream preamble. The streamed cases (`tests/fixtures/cohere/stream_*`) are replayed at
//! every split point by `tests/streaming.rs`.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::sync::LazyLock;

use common::{run_all, target_for};
use llm_gateway::provider::cohere::request::translate_request;
use llm_gateway::provider::{
    translator_for, ProviderKind, ProviderOptions, StreamPreamble, Target, Translator,
};
use serde_json::{json, Value};

/// Options of a deployment with `drop_params: true`.
static DROPPING: LazyLock<ProviderOptions> = LazyLock::new(|| ProviderOptions {
    drop_params: true,
    ..ProviderOptions::default()
});

/// Every case directory translates to its expected files.
#[test]
fn golden_cases() {
    let n = run_all(
        "cohere",
        ProviderKind::Cohere,
        &target_for(ProviderKind::Cohere),
    );
    assert!(n >= 25, "only {n} cases found");
}

/// A Cohere translator set up by a one-message request, streamed or not.
fn translator(stream: bool) -> Box<dyn Translator> {
    let mut t = translator_for(ProviderKind::Cohere);
    let body =
        json!({"model": "c", "messages": [{"role": "user", "content": "Hi"}], "stream": stream});
    t.request_from_body(
        InboundApi::Chat,
        &serde_json::to_vec(&body).unwrap(),
        &target_for(ProviderKind::Cohere),
    )
    .unwrap();
    t
}

/// With `drop_params`, a named tool choice, `parallel_tool_calls: false` and logprobs are
/// left out and reported; `n` > 1 is still refused.
#[test]
fn drop_params_drops_and_reports() {
    let target = Target {
        options: &DROPPING,
        ..target_for(ProviderKind::Cohere)
    };
    let body = json!({
        "model": "c", "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": false, "logprobs": true
    });
    let t = translate_request(&serde_json::to_vec(&body).unwrap(), &target).unwrap();
    assert_eq!(
        t.dropped,
        ["logprobs", "tool_choice", "parallel_tool_calls"]
    );
    let sent: Value = serde_json::from_slice(&t.body).unwrap();
    assert!(sent.get("tool_choice").is_none() && sent.get("logprobs").is_none());
    let n2 = json!({"model": "c", "messages": [{"role": "user", "content": "Hi"}], "n": 2});
    let e = translate_request(&serde_json::to_vec(&n2).unwrap(), &target).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("n"));
}

/// `POST /v2/chat` with the key as a Bearer token, streamed or not.
#[test]
fn translator_request_and_state() {
    let mut t = translator_for(ProviderKind::Cohere);
    let up = t
        .request_from_body(
            InboundApi::Chat,
            br#"{"model":"c","messages":[{"role":"user","content":"Hi"}],"stream":true}"#,
            &target_for(ProviderKind::Cohere),
        )
        .unwrap();
    assert_eq!(up.path, "/v2/chat");
    assert_eq!(
        up.headers,
        vec![("authorization", "Bearer sk-test".to_string())]
    );
    assert!(t.is_stream());
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "command-a-03-2025");
}

/// 429 and 5xx keep their status (Envoy retries or falls back on them); Cohere's 498
/// (unknown key) is a 401.
#[test]
fn error_statuses() {
    for (upstream, client) in [(429, 429), (500, 500), (503, 503), (498, 401), (400, 400)] {
        let mut t = translator(false);
        let r = t.response(upstream, br#"{"message":"nope"}"#);
        assert_eq!(r.status, client, "{upstream}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["message"], "nope");
    }
}

/// A stream that opens with an error or a failed generation is answered with a status
/// before any header goes out; a good start proceeds; a partial first event waits.
#[test]
fn stream_preamble_turns_opening_errors_into_statuses() {
    let mut t = translator(true);
    let error = b"event: error\ndata: {\"message\":\"overloaded\"}\n\n";
    match t.stream_preamble(error, false) {
        StreamPreamble::Fail(a) => assert_eq!(a.status, 503),
        other => panic!("{other:?}"),
    }
    let failed = b"event: message-start\ndata: {\"type\":\"message-start\",\"id\":\"x\"}\n\nevent: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n";
    match t.stream_preamble(failed, false) {
        StreamPreamble::Fail(a) => assert_eq!(a.status, 502),
        other => panic!("{other:?}"),
    }
    let good = b"event: message-start\ndata: {\"type\":\"message-start\",\"id\":\"x\"}\n\nevent: content-start\ndata: {\"type\":\"content-start\",\"index\":0}\n\n";
    assert_eq!(t.stream_preamble(good, false), StreamPreamble::Proceed);
    assert_eq!(
        t.stream_preamble(b"event: message-start\ndata: {\"ty", false),
        StreamPreamble::NeedMore
    );
}

/// What SDKs send by default is not a reason to refuse, and adds nothing to the body.
#[test]
fn accepts_harmless_defaults() {
    let body = json!({
        "model": "c", "messages": [{"role": "user", "content": "Hi"}],
        "n": 1, "logprobs": false, "top_logprobs": 0, "logit_bias": {},
        "presence_penalty": 0, "frequency_penalty": 0, "parallel_tool_calls": true,
        "user": "u", "metadata": {"k": "v"}
    });
    let t = translate_request(
        &serde_json::to_vec(&body).unwrap(),
        &target_for(ProviderKind::Cohere),
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "command-a-03-2025", "messages": [{"role": "user", "content": "Hi"}]})
    );
    assert!(t.dropped.is_empty());
}

/// Cohere quoting the key it was sent never shows it to the client, in an answer or a
/// stream.
#[test]
fn key_never_echoed() {
    let key = "co-test-key";
    let target = Target {
        api_key: Some(key),
        ..target_for(ProviderKind::Cohere)
    };
    let mut t = translator_for(ProviderKind::Cohere);
    let body =
        json!({"model": "c", "messages": [{"role": "user", "content": "Hi"}], "stream": true});
    t.request_from_body(
        InboundApi::Chat,
        &serde_json::to_vec(&body).unwrap(),
        &target,
    )
    .unwrap();
    let r = t.response(401, br#"{"message":"invalid api token co-test-key"}"#);
    assert!(!String::from_utf8_lossy(&r.body).contains(key));
    let mut out = Vec::new();
    t.stream(
        b"event: error\ndata: {\"message\":\"bad key co-test-key\"}\n\n",
        true,
        &mut out,
    );
    assert!(!String::from_utf8_lossy(&out).contains(key));
}
