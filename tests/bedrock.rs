//! Bedrock Converse translation: golden cases under `tests/fixtures/bedrock/` (see
//! `common`), the endpoint, the Host and credentials the attempt sets, and the event-stream
//! decoder against corruption. The streamed cases (`tests/fixtures/bedrock/stream_*`) are
//! replayed at every split point by `tests/streaming.rs`.

mod common;

use common::{run_all, target_for};
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::bedrock::eventstream::{encode_event, EventStreamDecoder};
use llm_gateway::provider::RequestFromBody;
use llm_gateway::provider::{translator_for, ProviderKind, ProviderOptions, Target};
use std::ops::ControlFlow;

/// Every case directory translates to its expected files.
#[test]
fn golden_cases() {
    let n = run_all(
        "bedrock",
        ProviderKind::Bedrock,
        &target_for(ProviderKind::Bedrock),
    );
    assert!(n >= 12, "only {n} cases found");
}

/// The path names the model percent-encoded; the Host is set for the signer; no
/// `authorization` unless the deployment has a Bedrock API key.
#[test]
fn request_path_host_and_credentials() {
    let options = ProviderOptions {
        host: Some("bedrock-runtime.eu-central-1.amazonaws.com".into()),
        aws_region: Some("eu-central-1".into()),
        ..ProviderOptions::default()
    };
    let target = Target {
        options: &options,
        ..target_for(ProviderKind::Bedrock)
    };
    let body = br#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
    let mut t = translator_for(ProviderKind::Bedrock);
    let up = t
        .request_from_body(InboundApi::Chat, body, &target)
        .unwrap();
    assert_eq!(
        up.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
    );
    assert_eq!(
        up.headers,
        vec![
            (
                ":authority",
                "bedrock-runtime.eu-central-1.amazonaws.com".to_string()
            ),
            ("accept", "application/vnd.amazon.eventstream".to_string()),
        ]
    );
    let keyed = Target {
        api_key: Some("bedrock-api-key"),
        ..target
    };
    let up = translator_for(ProviderKind::Bedrock)
        .request_from_body(InboundApi::Chat, body, &keyed)
        .unwrap();
    assert!(up
        .headers
        .contains(&("authorization", "Bearer bedrock-api-key".to_string())));
}

/// Random corruption of a valid stream never panics and never yields a message past the
/// first bad byte's frame.
#[test]
fn corrupt_streams_are_errors_not_panics() {
    let mut stream = Vec::new();
    for i in 0..8 {
        stream.extend(encode_event(
            "contentBlockDelta",
            &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"piece {i}"}}}}"#),
        ));
    }
    let mut seed = 0x2545_f491_u64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bad = stream.clone();
        let at = (seed as usize) % bad.len();
        bad[at] ^= ((seed >> 32) as u8) | 1;
        let mut d = EventStreamDecoder::default();
        let mut n = 0;
        for piece in bad.chunks(1 + (seed as usize >> 8) % 64) {
            d.feed(piece, |_| {
                n += 1;
                ControlFlow::Continue(())
            });
        }
        assert!(n < 8 || d.error().is_none(), "byte {at}");
    }
}

/// A corrupt frame ends a Converse stream with one error, however many pieces follow it.
#[test]
fn converse_stream_tells_a_corrupt_frame_once() {
    let target = target_for(ProviderKind::Bedrock);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
    let mut t = translator_for(ProviderKind::Bedrock);
    t.request_from_body(InboundApi::Chat, body, &target)
        .unwrap();
    let mut out = Vec::new();
    t.stream(
        &encode_event("messageStart", r#"{"role":"assistant"}"#),
        false,
        &mut out,
    );
    let mut corrupt = encode_event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"x"}}"#,
    );
    if let Some(last) = corrupt.last_mut() {
        *last ^= 0xFF;
    }
    t.stream(&corrupt, false, &mut out);
    for i in 0..3 {
        let next = encode_event(
            "contentBlockDelta",
            &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"after {i}"}}}}"#),
        );
        t.stream(&next, i == 2, &mut out);
    }
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("\"error\"").count(), 1, "{text}");
    assert!(!text.contains("after"), "{text}");
}

/// Anthropic's Messages API to Claude on Bedrock goes through InvokeModel with the client's
/// body: everything it wrote is kept (thinking blocks with their signatures, cache marks,
/// `metadata`, `top_k`), `model` and `stream` give way to `anthropic_version`, the path
/// says the model and whether to stream. Other models and ARNs stay on Converse.
#[test]
fn messages_to_claude_on_bedrock_pass_through() {
    use serde_json::{json, Value};

    let options = ProviderOptions {
        host: Some("bedrock-runtime.us-west-2.amazonaws.com".into()),
        ..ProviderOptions::default()
    };
    let target = Target {
        options: &options,
        ..target_for(ProviderKind::Bedrock)
    };
    let mut client = common::claude_messages_request();
    client["context_management"] = json!({"edits": [{"type": "clear_tool_uses_20250919"}]});
    let client_bytes = serde_json::to_vec(&client).unwrap();
    for stream in [false, true] {
        let mut body = client.clone();
        body["stream"] = json!(stream);
        let (t, up) = common::messages_translator(
            ProviderKind::Bedrock,
            &serde_json::to_vec(&body).unwrap(),
            &target,
        );
        let method = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        assert_eq!(
            up.path,
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/".to_string() + method
        );
        let mut headers = vec![(
            ":authority",
            "bedrock-runtime.us-west-2.amazonaws.com".to_string(),
        )];
        if stream {
            headers.push(("accept", "application/vnd.amazon.eventstream".to_string()));
        }
        assert_eq!(up.headers, headers, "signed by Envoy: no authorization");
        let mut sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
        sent.as_object_mut().unwrap().remove("anthropic_version");
        let mut expected = client.clone();
        expected.as_object_mut().unwrap().remove("model");
        assert_eq!(
            sent, expected,
            "everything else is kept as the client wrote it"
        );
        assert_eq!(t.is_stream(), stream);
        assert_eq!(t.stream_media_type(), "application/vnd.amazon.eventstream");
    }

    // A Bedrock API key travels as a bearer token.
    let keyed = Target {
        api_key: Some("bedrock-api-key"),
        ..target
    };
    let (_, up) = common::messages_translator(ProviderKind::Bedrock, &client_bytes, &keyed);
    assert!(up
        .headers
        .contains(&("authorization", "Bearer bedrock-api-key".to_string())));

    // The JSON answer is Anthropic's Message, passed on with its usage read.
    let (mut t, _) = common::messages_translator(ProviderKind::Bedrock, &client_bytes, &target);
    let answer = br#"{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"thinking","thinking":"x","signature":"s"},{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"cache_read_input_tokens":30,"output_tokens":6}}"#;
    t.response_headers(&[]);
    let r = t.response(200, answer);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, answer.to_vec(), "the answer is passed on as sent");
    let usage = r.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (42, 6));

    // Other models and ARNs (which do not say the model) stay on Converse.
    for other in [
        "amazon.nova-pro-v1:0",
        "converse/anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
    ] {
        let t = Target {
            upstream_model: other,
            ..target
        };
        let (_, up) = common::messages_translator(ProviderKind::Bedrock, &client_bytes, &t);
        assert!(up.path.ends_with("/converse"), "{other}: {}", up.path);
    }
}

/// Bedrock's errors reach the client in Anthropic's shape at the status the Converse
/// translator gives them; a stream that opens with an exception answers its status.
#[test]
fn claude_on_bedrock_errors_in_anthropic_shape() {
    use llm_gateway::provider::StreamPreamble;
    use serde_json::{json, Value};

    let target = target_for(ProviderKind::Bedrock);
    let body = br#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    for (error_type, upstream, status, kind) in [
        ("ThrottlingException", 429, 429, "rate_limit_error"),
        ("ModelNotReadyException", 429, 503, "overloaded_error"),
        ("ValidationException", 400, 400, "invalid_request_error"),
        ("AccessDeniedException", 403, 403, "permission_error"),
        (
            "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            503,
            503,
            "overloaded_error",
        ),
    ] {
        let (mut t, _) = common::messages_translator(ProviderKind::Bedrock, body, &target);
        t.response_headers(&[(b"x-amzn-errortype", error_type.as_bytes())]);
        assert_eq!(t.response_status(upstream), status, "{error_type}");
        let r = t.response(upstream, br#"{"message":"went wrong"}"#);
        assert_eq!(r.status, status, "{error_type}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": kind, "message": "went wrong"}}),
            "{error_type}"
        );
    }

    let streamed = br#"{"model":"m","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (mut t, _) = common::messages_translator(ProviderKind::Bedrock, streamed, &target);
    let first = llm_gateway::provider::bedrock::eventstream::encode(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"slow down"}"#,
    );
    let StreamPreamble::Fail(answer) = t.stream_preamble(&first, false) else {
        panic!("an exception first is the answer");
    };
    assert_eq!(answer.status, 429);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "slow down");
}

/// A corrupt frame, a `chunk` that is not base64 of JSON, or a stream cut inside a frame
/// ends the stream with one Anthropic `error` event, never a panic.
#[test]
fn claude_on_bedrock_bad_streams_end_with_an_error_event() {
    let target = target_for(ProviderKind::Bedrock);
    let body = br#"{"model":"m","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let start = common::encode_frames(
        br#"[{"chunk": {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "c", "usage": {"input_tokens": 3, "output_tokens": 1}}}}]"#,
    );
    let mut corrupt = encode_event("chunk", r#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#);
    if let Some(last) = corrupt.last_mut() {
        *last ^= 0xFF;
    }
    let cut = encode_event("chunk", r#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#);
    for (name, tail) in [
        ("corrupt frame", corrupt),
        ("not base64", encode_event("chunk", r#"{"bytes":"%%%"}"#)),
        (
            "not JSON",
            encode_event("chunk", r#"{"bytes":"bm90IGpzb24="}"#),
        ),
        ("no type", encode_event("chunk", r#"{"bytes":"e30="}"#)),
        ("no bytes", encode_event("chunk", r#"{"p":"abc"}"#)),
        ("cut", cut[..cut.len() - 3].to_vec()),
    ] {
        let mut stream = start.clone();
        stream.extend_from_slice(&tail);
        // Anything after the error is dropped.
        stream.extend(encode_event("chunk", r#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#));
        if name == "cut" {
            stream = start.clone();
            stream.extend_from_slice(&tail);
        }
        let (mut t, _) = common::messages_translator(ProviderKind::Bedrock, body, &target);
        let mut out = Vec::new();
        let (a, b) = stream.split_at(stream.len() / 2);
        t.stream(a, false, &mut out);
        t.stream(b, true, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("event: message_start\n"), "{name}: {text}");
        assert_eq!(text.matches("event: error\n").count(), 1, "{name}: {text}");
        assert!(
            text.ends_with("\n\n") && !text.contains("ping"),
            "{name}: {text}"
        );
        let usage = t.stream_usage().unwrap();
        assert_eq!(usage.prompt_tokens, 3, "{name}");
    }
}
