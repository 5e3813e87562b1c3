//! Gemini translation: golden cases under `tests/fixtures/gemini/` (see `common`), the
//! request refusals and the unsupported-parameter policy, the endpoint, credentials and
//! state of the translator, and the stream preamble. The streamed cases
//! (`tests/fixtures/gemini/stream_*`) are replayed at every split point by
//! `tests/streaming.rs`.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::sync::LazyLock;

use common::{gemini_target, run_all, Case};
use llm_gateway::error::GatewayError;
use llm_gateway::provider::gemini::request::translate_request;
use llm_gateway::provider::{
    translator_for, ProviderKind, ProviderOptions, StreamPreamble, Target,
};
use serde_json::{json, Value};

/// Options of a deployment with `drop_params: true`.
static DROPPING: LazyLock<ProviderOptions> = LazyLock::new(|| ProviderOptions {
    drop_params: true,
    ..ProviderOptions::default()
});

/// The Gemini deployment with other options.
fn target_with(options: &'static ProviderOptions) -> Target<'static> {
    Target {
        options,
        ..gemini_target()
    }
}

/// Every case directory translates to its expected files.
#[test]
fn golden_cases() {
    let n = run_all("gemini", ProviderKind::Gemini, &gemini_target());
    assert!(n >= 40, "only {n} cases found");
}

// === streams ===

/// The `stream_*` case directories, sorted by name.
fn stream_cases() -> Vec<Case> {
    let root = common::fixtures_dir().join("gemini");
    let mut cases: Vec<Case> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            name.starts_with("stream_").then_some(Case { name, dir })
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

// === requests ===

fn with(extra: Value) -> Value {
    common::chat_body("gemini", extra)
}

fn translate(body: &Value, target: &Target<'_>) -> Result<Value, GatewayError> {
    let bytes = serde_json::to_vec(body).unwrap();
    translate_request(&bytes, target).map(|r| serde_json::from_slice(&r.body).unwrap())
}

fn assert_refused(body: Value, param: &str) {
    let e = translate(&body, &gemini_target()).expect_err("expected a refusal");
    assert_eq!(e.status, 400, "{e}");
    assert_eq!(e.param.as_deref(), Some(param), "{e}");
    let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

/// Log probabilities and token bias do not exist on Gemini: refused by name.
#[test]
fn refuses_logprobs() {
    assert_refused(with(json!({"logprobs": true})), "logprobs");
    assert_refused(with(json!({"top_logprobs": 3})), "top_logprobs");
    assert_refused(with(json!({"logit_bias": {"50256": -100}})), "logit_bias");
}

/// Gemini cannot be held to one call per turn.
#[test]
fn refuses_parallel_tool_calls_false() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    assert_refused(
        with(json!({"tools": tools, "parallel_tool_calls": false})),
        "parallel_tool_calls",
    );
    // Nothing to hold back without tools, or when calls are off.
    translate(
        &with(json!({"parallel_tool_calls": false})),
        &gemini_target(),
    )
    .unwrap();
    translate(
        &with(json!({"tools": tools, "tool_choice": "none", "parallel_tool_calls": false})),
        &gemini_target(),
    )
    .unwrap();
}

/// Bad formats, efforts, tool choices and `n` are refused by name.
#[test]
fn refuses_bad_parameters() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
    for (extra, param) in [
        (json!({"n": 0}), "n"),
        (json!({"reasoning_effort": "extreme"}), "reasoning_effort"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
            "tool_choice.function.name",
        ),
        (
            json!({"tools": tools, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "custom", "function": {"name": "x"}}]}),
            "tools[0].type",
        ),
    ] {
        assert_refused(with(extra), param);
    }
}

/// Bad message content is a 400 naming the message, the part and the field.
#[test]
fn refuses_bad_content_by_path() {
    let body = |messages: Value| json!({"model": "gemini", "messages": messages});
    assert_refused(
        body(
            json!([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://x"}}]}]),
        ),
        "messages[0].content[0].type",
    );
    assert_refused(
        body(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}, {"role": "user", "content": "Hi"}]),
        ),
        "messages[0].content[0].type",
    );
    assert_refused(
        body(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}]),
        ),
        "messages[0].content[0].image_url.url",
    );
    assert_refused(
        body(
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"format": "wav"}}]}]),
        ),
        "messages[0].content[0].input_audio.data",
    );
    assert_refused(
        body(
            json!([{"role": "user", "content": "Hi"}, {"role": "function", "name": "f", "content": "42"}]),
        ),
        "messages[1].role",
    );
    assert_refused(
        body(json!([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}])),
        "messages[1].tool_call_id",
    );
}

/// What SDKs send by default is not a reason to refuse, and adds nothing to the body.
#[test]
fn accepts_harmless_defaults() {
    let v = translate(
        &with(json!({
            "n": 1, "logprobs": false, "top_logprobs": 0, "logit_bias": {},
            "presence_penalty": 0, "frequency_penalty": 0.0, "parallel_tool_calls": true,
            "metadata": {"trace": "x"}, "user": "u-1", "store": false, "service_tier": "auto"
        })),
        &gemini_target(),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    );
}

/// With `drop_params`, what Gemini cannot honour is left out and reported; `n` still maps.
#[test]
fn drop_params_drops_and_reports() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let body = with(json!({
        "logprobs": true, "top_logprobs": 2, "logit_bias": {"1": 5},
        "tools": tools, "parallel_tool_calls": false, "n": 2
    }));
    let mut t = translator_for(ProviderKind::Gemini);
    let r = t
        .request_from_body(
            InboundApi::Chat,
            &serde_json::to_vec(&body).unwrap(),
            &target_with(&DROPPING),
        )
        .unwrap();
    assert_eq!(
        r.dropped,
        vec![
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "parallel_tool_calls"
        ]
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["generationConfig"], json!({"candidateCount": 2}));
    // Without anything to drop, nothing is reported.
    let r = t
        .request_from_body(
            InboundApi::Chat,
            &serde_json::to_vec(&with(json!({}))).unwrap(),
            &target_with(&DROPPING),
        )
        .unwrap();
    assert!(r.dropped.is_empty());
}

/// The endpoint depends on `stream`; the key travels in `x-goog-api-key` only.
#[test]
fn translator_request_and_state() {
    let mut t = translator_for(ProviderKind::Gemini);
    let r = t
        .request_from_body(
            InboundApi::Chat,
            &serde_json::to_vec(&with(json!({}))).unwrap(),
            &gemini_target(),
        )
        .unwrap();
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        r.headers,
        vec![("x-goog-api-key", "AIza-test-key".to_string())]
    );
    assert!(!t.is_stream());
    assert_eq!(t.response_status(503), 503);

    let r = t
        .request_from_body(
            InboundApi::Chat,
            &serde_json::to_vec(&with(json!({"stream": true}))).unwrap(),
            &gemini_target(),
        )
        .unwrap();
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(t.is_stream());

    let keyless = Target {
        api_key: None,
        base_path: "/gemini/v1beta",
        ..gemini_target()
    };
    let r = t
        .request_from_body(
            InboundApi::Chat,
            &serde_json::to_vec(&with(json!({}))).unwrap(),
            &keyless,
        )
        .unwrap();
    assert!(r.headers.is_empty());
    assert_eq!(
        r.path,
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    );
}

/// A signature returned in a tool-call id comes back on that call's `functionCall` part,
/// also when the client strips it from the tool result's id; the other call gets none.
#[test]
fn signatures_round_trip() {
    let mut t = translator_for(ProviderKind::Gemini);
    t.request_from_body(
        InboundApi::Chat,
        &serde_json::to_vec(&with(json!({}))).unwrap(),
        &gemini_target(),
    )
    .unwrap();
    let upstream = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "lookup", "args": {"q": "a"}}, "thoughtSignature": "c2lnLWE+/="},
            {"functionCall": {"name": "lookup", "args": {"q": "b"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "responseId": "r9"
    });
    let answer = t.response(200, &serde_json::to_vec(&upstream).unwrap());
    let answer: Value = serde_json::from_slice(&answer.body).unwrap();
    let message = answer["choices"][0]["message"].clone();
    let calls = message["tool_calls"].as_array().unwrap().clone();
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    let first_id = calls[0]["id"].as_str().unwrap();
    let (base, _) = first_id.split_once("__thought__").unwrap();

    // The client sends the message back as it got it, answering the first call with the
    // bare id (some frameworks shorten ids).
    let next = json!({"model": "gemini", "messages": [
        {"role": "user", "content": "Look up a and b"},
        message,
        {"role": "tool", "tool_call_id": base, "content": "A"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "B"}
    ]});
    let v = translate(&next, &gemini_target()).unwrap();
    let model_parts = &v["contents"][1]["parts"];
    assert_eq!(model_parts[0]["thoughtSignature"], "c2lnLWE+/=");
    assert!(model_parts[1].get("thoughtSignature").is_none());
    assert_eq!(model_parts[0]["functionCall"]["args"], json!({"q": "a"}));
    let results = &v["contents"][2]["parts"];
    assert_eq!(results[0]["functionResponse"]["name"], "lookup");
    assert_eq!(
        results[0]["functionResponse"]["response"],
        json!({"result": "A"})
    );
    assert_eq!(
        results[1]["functionResponse"]["response"],
        json!({"result": "B"})
    );
}

// === answers ===

/// Provider messages never carry a Google key back to the client.
#[test]
fn error_messages_are_redacted() {
    let mut t = translator_for(ProviderKind::Gemini);
    let body = br#"{"error":{"code":400,"message":"API key not valid: AIzaSyA1b2C3d4E5f6G7h8I9j0K-LmNoPqRsTuV","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#;
    let r = t.response(400, body);
    assert_eq!(r.status, 401);
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("SyA1b2"), "{text}");
    assert!(text.contains("AIza***"), "{text}");
    let r = t.response(502, b"proxy error for key=AIzaSyA1b2C3d4E5f6G7h8I9j0K");
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("SyA1b2"), "{text}");
}

/// A 2xx body that is not a Gemini answer is a 502 the client can tell apart.
#[test]
fn bad_upstream_bodies() {
    let mut t = translator_for(ProviderKind::Gemini);
    for body in [&b"not json"[..], b"[]", br#"{"candidates": []}"#, b""] {
        let r = t.response(200, body);
        assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.usage, None);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "bad_upstream_response", "{v}");
    }
}

/// Google's canonical codes decide the class and status; unknown ones fall back to HTTP.
#[test]
fn errors_by_status() {
    let mut t = translator_for(ProviderKind::Gemini);
    for (http, status, expected_status, kind) in [
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (401, "UNAUTHENTICATED", 401, "authentication_error"),
        (403, "PERMISSION_DENIED", 403, "permission_error"),
        (404, "NOT_FOUND", 404, "not_found_error"),
        (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        (500, "INTERNAL", 500, "api_error"),
        (503, "UNAVAILABLE", 503, "overloaded_error"),
        (504, "DEADLINE_EXCEEDED", 504, "timeout_error"),
        (499, "CANCELLED", 500, "api_error"),
        (418, "SOMETHING_NEW", 418, "invalid_request_error"),
    ] {
        let body = json!({"error": {"code": http, "message": "m", "status": status}});
        let r = t.response(http, &serde_json::to_vec(&body).unwrap());
        assert_eq!(r.status, expected_status, "{status}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert_eq!(v["error"]["message"], "m");
    }
}

/// A stream that opens with an error, a blocked prompt or a failed generation is answered
/// with that error's status before any header goes out (so Envoy can retry or fall back);
/// a good start proceeds; an incomplete first event asks for more.
#[test]
fn stream_preamble_turns_opening_errors_into_statuses() {
    let expected: &[(&str, Option<u16>)] = &[
        ("stream_error_first_event", Some(429)),
        ("stream_blocked_prompt", Some(400)),
        ("stream_malformed_function_call", Some(502)),
        ("stream_text_usage", None),
        ("stream_tool_calls", None),
        ("stream_error_mid_stream", None),
    ];
    let cases = stream_cases();
    for (name, status) in expected {
        let case = cases.iter().find(|c| c.name == *name).unwrap();
        let upstream = case.bytes("upstream.sse").unwrap();
        let mut t = translator_for(ProviderKind::Gemini);
        t.request_from_body(
            InboundApi::Chat,
            &case.bytes("openai_request.json").unwrap(),
            &gemini_target(),
        )
        .unwrap();
        match (t.stream_preamble(&upstream, false), status) {
            (StreamPreamble::Fail(answer), Some(status)) => {
                assert_eq!(answer.status, *status, "{name}");
                let v: Value = serde_json::from_slice(&answer.body).unwrap();
                assert!(v["error"]["message"].is_string(), "{name}: {v}");
            }
            (StreamPreamble::Proceed, None) => {}
            (other, _) => panic!("{name}: unexpected {other:?}"),
        }
        // Up to the end of the first event nothing can be decided.
        let first_end = upstream
            .windows(2)
            .position(|w| w == b"\n\n" || w == b"\r\n")
            .unwrap();
        for cut in [0, 6, first_end] {
            assert_eq!(
                t.stream_preamble(&upstream[..cut], false),
                StreamPreamble::NeedMore,
                "{name} cut at {cut}"
            );
        }
        assert_eq!(
            t.stream_preamble(&upstream[..first_end], true),
            StreamPreamble::Proceed,
            "{name}: an ended stream is left to `stream`"
        );
    }
    // A plain JSON error body where SSE was expected is judged once it parses.
    let mut t = translator_for(ProviderKind::Gemini);
    let body = br#"[{"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}]"#;
    assert_eq!(
        t.stream_preamble(&body[..30], false),
        StreamPreamble::NeedMore
    );
    match t.stream_preamble(body, false) {
        StreamPreamble::Fail(answer) => assert_eq!(answer.status, 429),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        t.stream_preamble(b"{not json", true),
        StreamPreamble::Proceed
    );
}
