//! Anthropic translation: golden cases under `tests/fixtures/anthropic/` (see `common`), and
//! the request refusals, each a 400 naming the parameter.

mod common;

use common::{anthropic_target, run_all};
use llm_gateway::error::GatewayError;
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::anthropic::request::translate_request;
use llm_gateway::provider::RequestFromBody;
use llm_gateway::provider::{translator_for, ProviderKind};
use serde_json::{json, Value};

/// Every case directory translates to its expected files.
#[test]
fn golden_cases() {
    let n = run_all("anthropic", ProviderKind::Anthropic, &anthropic_target());
    assert!(n >= 30, "only {n} cases found");
}

fn refuse(body: Value) -> GatewayError {
    let bytes = serde_json::to_vec(&body).unwrap();
    match translate_request(&bytes, &anthropic_target()) {
        Ok(r) => panic!(
            "expected a refusal, got {}",
            String::from_utf8_lossy(&r.body)
        ),
        Err(e) => e,
    }
}

fn translate(body: Value) -> Value {
    let bytes = serde_json::to_vec(&body).unwrap();
    let r = translate_request(&bytes, &anthropic_target()).unwrap();
    serde_json::from_slice(&r.body).unwrap()
}

fn with(extra: Value) -> Value {
    common::chat_body("claude", extra)
}

fn assert_refused(body: Value, param: &str) {
    let e = refuse(body);
    assert_eq!(e.status, 400, "{e}");
    assert_eq!(e.param.as_deref(), Some(param), "{e}");
    let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], param);
}

/// Parameters Anthropic cannot honour are refused by name.
#[test]
fn refuses_unsupported_parameters() {
    for (extra, param) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"presence_penalty": 0.5}), "presence_penalty"),
        (json!({"frequency_penalty": -1.0}), "frequency_penalty"),
        (json!({"temperature": 1.5}), "temperature"),
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
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "has space"}}}),
            "response_format.json_schema.name",
        ),
    ] {
        assert_refused(with(extra), param);
    }
}

/// What SDKs send by default is not a reason to refuse.
#[test]
fn accepts_harmless_defaults() {
    let v = translate(with(json!({
        "n": 1, "logprobs": false, "top_logprobs": 0, "logit_bias": {},
        "presence_penalty": 0, "frequency_penalty": 0.0, "seed": 7,
        "metadata": {"trace": "x"}, "store": false, "service_tier": "auto"
    })));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for k in ["model", "max_tokens", "messages"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
}

/// Anthropic's current models take `temperature` or `top_p`, not both: a value that
/// changes nothing is left out, two that both matter are refused by name.
#[test]
fn one_sampling_parameter() {
    let sent = |extra: Value| {
        let v = translate(with(extra));
        (v.get("temperature").cloned(), v.get("top_p").cloned())
    };
    // Either alone is sent as it is.
    assert_eq!(sent(json!({"temperature": 0.3})), (Some(json!(0.3)), None));
    assert_eq!(sent(json!({"top_p": 0.8})), (None, Some(json!(0.8))));
    // top_p 1 keeps every token: only the temperature goes.
    assert_eq!(
        sent(json!({"temperature": 0.3, "top_p": 1})),
        (Some(json!(0.3)), None)
    );
    assert_eq!(
        sent(json!({"temperature": 1, "top_p": 1.0})),
        (Some(json!(1.0)), None)
    );
    // temperature 1 is Anthropic's default: only top_p goes.
    assert_eq!(
        sent(json!({"temperature": 1.0, "top_p": 0.9})),
        (None, Some(json!(0.9)))
    );
    // Two values that both change the answer: the client chooses.
    assert_refused(with(json!({"temperature": 0.2, "top_p": 0.9})), "top_p");
    let e = refuse(with(json!({"temperature": 0.2, "top_p": 0.9})));
    assert!(e.message.contains("temperature"), "{}", e.message);
    assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    // With thinking both are left out, whatever their values.
    assert_eq!(
        sent(
            json!({"temperature": 0.2, "top_p": 0.9, "reasoning_effort": "low", "max_tokens": 4096})
        ),
        (None, None)
    );
}

/// Bad message content is a 400 naming the message, the part and the field.
#[test]
fn refuses_bad_content_by_path() {
    let audio = json!({"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is said?"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
        ]}
    ]});
    assert_refused(audio, "messages[1].content[1].type");

    let unknown = json!({"model": "claude", "messages": [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://x"}}]}
    ]});
    assert_refused(unknown, "messages[0].content[0].type");

    let image_in_system = json!({"model": "claude", "messages": [
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
        {"role": "user", "content": "Hi"}
    ]});
    assert_refused(image_in_system, "messages[0].content[0].type");

    let ftp_image = json!({"model": "claude", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}
    ]});
    assert_refused(ftp_image, "messages[0].content[0].image_url.url");

    let not_base64 = json!({"model": "claude", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}
    ]});
    assert_refused(not_base64, "messages[0].content[0].image_url.url");

    let file_id = json!({"model": "claude", "messages": [
        {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
    ]});
    assert_refused(file_id, "messages[0].content[0].file.file_id");

    let word_file = json!({"model": "claude", "messages": [
        {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/msword;base64,AAAA"}}]}
    ]});
    assert_refused(word_file, "messages[0].content[0].file.file_data");

    let function_role = json!({"model": "claude", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "function", "name": "f", "content": "42"}
    ]});
    assert_refused(function_role, "messages[1].role");

    let only_system = json!({"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": ""}
    ]});
    assert_refused(only_system, "messages");
}

/// Tool calls must carry JSON object arguments; an empty string means no arguments.
#[test]
fn tool_call_arguments() {
    let call = |args: &str| {
        json!({"model": "claude", "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": args}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}
        ]})
    };
    assert_refused(
        call("{\"city\": "),
        "messages[1].tool_calls[1].function.arguments",
    );
    assert_refused(
        call("[1, 2]"),
        "messages[1].tool_calls[1].function.arguments",
    );
    let v = translate(call(""));
    assert_eq!(v["messages"][1]["content"][1]["input"], json!({}));
    assert_eq!(v["messages"][2]["content"][1]["tool_use_id"], "call_2");
}

/// Thinking blocks sent back must be complete; Anthropic checks their signatures.
#[test]
fn thinking_blocks_need_signatures() {
    let body = |block: Value| {
        json!({"model": "claude", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "thinking_blocks": [block]},
            {"role": "user", "content": "Again"}
        ]})
    };
    assert_refused(
        body(json!({"type": "thinking", "thinking": "Let me think"})),
        "messages[1].thinking_blocks[0].signature",
    );
    assert_refused(
        body(json!({"type": "redacted_thinking"})),
        "messages[1].thinking_blocks[0].data",
    );
    assert_refused(
        body(json!({"type": "summary", "thinking": "x"})),
        "messages[1].thinking_blocks[0].type",
    );
}

/// Tool choices must fit the tools, and forced tool use cannot be combined with thinking.
#[test]
fn tool_choice_conflicts() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    assert_refused(
        with(
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
        ),
        "tool_choice.function.name",
    );
    assert_refused(
        with(json!({"tools": tools, "tool_choice": "sometimes"})),
        "tool_choice",
    );
    assert_refused(
        with(json!({"tools": tools, "tool_choice": "required", "reasoning_effort": "low"})),
        "tool_choice",
    );
    assert_refused(
        with(
            json!({"reasoning_effort": "high", "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}}),
        ),
        "response_format",
    );
    assert_refused(
        with(
            json!({"tools": tools, "response_format": {"type": "json_schema", "json_schema": {"name": "get_weather", "schema": {"type": "object"}}}}),
        ),
        "response_format.json_schema.name",
    );
    assert_refused(
        with(json!({"tools": [{"type": "custom", "function": {"name": "x"}}]})),
        "tools[0].type",
    );
    // Thinking with the model choosing is fine.
    let v = translate(with(
        json!({"tools": tools, "tool_choice": "auto", "reasoning_effort": "low"}),
    ));
    assert_eq!(v["tool_choice"], json!({"type": "auto"}));
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
}

/// `json_schema` next to client tools: the model must call a tool, the stand-in included.
#[test]
fn json_schema_with_client_tools() {
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let format = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}});
    let v = translate(with(json!({"tools": tools, "response_format": format})));
    assert_eq!(v["tool_choice"], json!({"type": "any"}));
    assert_eq!(v["tools"][1]["name"], "answer");
    let v = translate(with(
        json!({"tools": tools, "tool_choice": "none", "response_format": format}),
    ));
    assert_eq!(
        v["tool_choice"],
        json!({"type": "tool", "name": "answer", "disable_parallel_tool_use": true})
    );
    let v = translate(with(json!({"tools": tools, "response_format": format,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}}})));
    assert_eq!(v["tool_choice"], json!({"type": "tool", "name": "lookup"}));
}

/// The body must parse as a chat request; the error names the field that does not.
#[test]
fn refuses_malformed_bodies() {
    let e = translate_request(b"{not json", &anthropic_target()).unwrap_err();
    assert_eq!(e.status, 400);
    let e = translate_request(
        br#"{"model":"c","messages":[]} trailing"#,
        &anthropic_target(),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    let e = translate_request(
        br#"{"model":"c","messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#,
        &anthropic_target(),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
    let e = translate_request(
        br#"{"model":"c","messages":[{"role":"user","content":"x"},{"role":"robot","content":"y"}]}"#,
        &anthropic_target(),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[1].role"));
}

/// The translator sets the endpoint, the credentials and the version header, and remembers
/// what the answer needs.
#[test]
fn translator_request_and_state() {
    let mut t = translator_for(ProviderKind::Anthropic);
    let r = t
        .request_from_body(InboundApi::Chat,
            br#"{"model":"claude","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            &anthropic_target(),
        )
        .unwrap();
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        r.headers,
        vec![
            ("anthropic-version", "2023-06-01".to_string()),
            ("x-api-key", "sk-ant-test".to_string())
        ]
    );
    assert!(t.is_stream());
    assert_eq!(t.response_status(529), 503);

    let r = translate_request(
        br#"{"model":"claude","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        &anthropic_target(),
    )
    .unwrap();
    assert!(r.stream && r.client_wants_usage);
    assert_eq!(r.json_response_tool, None);
    let r = translate_request(
        br#"{"model":"claude","messages":[{"role":"user","content":"Hi"}],"stream_options":{"include_usage":true}}"#,
        &anthropic_target(),
    )
    .unwrap();
    assert!(!r.stream && !r.client_wants_usage);
}

/// Provider messages never carry an Anthropic key back to the client.
#[test]
fn error_messages_are_redacted() {
    let mut t = translator_for(ProviderKind::Anthropic);
    let body = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key: sk-ant-api03-Zx9_k-Q"}}"#;
    let r = t.response(401, body);
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("Zx9"), "{text}");
    assert!(text.contains("sk-ant-***"), "{text}");
    let r = t.response(502, b"upstream said sk-ant-api03-secret and died");
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("secret"), "{text}");
}

/// A 2xx body that is not a message is a 502 the client can tell apart.
#[test]
fn bad_upstream_bodies() {
    let mut t = translator_for(ProviderKind::Anthropic);
    for body in [
        &b"not json"[..],
        br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#,
        br#"{"id":"msg_1","type":"message"}"#,
        b"",
    ] {
        let r = t.response(200, body);
        assert_eq!(r.status, 502);
        assert_eq!(r.usage, None);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "bad_upstream_response", "{v}");
        assert_eq!(v["error"]["type"], "api_error");
    }
}

/// 1-hour cache writes are told apart in the usage of a JSON answer and of a stream (where
/// a later report replaces an earlier one), so that they are priced at their own rate.
#[test]
fn one_hour_cache_writes_in_usage() {
    let usage = r#"{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":0,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200}}"#;
    let mut t = translator_for(ProviderKind::Anthropic);
    t.request_from_body(
        InboundApi::Chat,
        br#"{"model":"claude","messages":[{"role":"user","content":"Hi"}]}"#,
        &anthropic_target(),
    )
    .unwrap();
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"Hi"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{usage}}}"#
    );
    let u = t.response(200, body.as_bytes()).usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens
        ),
        (310, 300, 200)
    );

    let mut t = translator_for(ProviderKind::Anthropic);
    t.request_from_body(
        InboundApi::Chat,
        br#"{"model":"claude","messages":[{"role":"user","content":"Hi"}],"stream":true}"#,
        &anthropic_target(),
    )
    .unwrap();
    let start = r#"{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_1h_input_tokens":50}}"#;
    let stream = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{start}}}}}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{usage}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let mut out = Vec::new();
    t.stream(stream.as_bytes(), true, &mut out);
    let u = t.stream_usage().unwrap();
    assert_eq!((u.cache_write_tokens, u.cache_write_1h_tokens), (300, 200));
}
