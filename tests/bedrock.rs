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
