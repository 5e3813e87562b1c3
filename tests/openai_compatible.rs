//! OpenAI-compatible translation: golden cases under `tests/fixtures/openai/` (see `common`).

mod common;

use common::{openai_target, run_all};
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use llm_gateway::provider::{translator_for, ProviderKind};

/// Every case directory translates to its expected files.
#[test]
fn golden_cases() {
    let n = run_all("openai", ProviderKind::OpenAi, &openai_target());
    assert!(n >= 8, "only {n} cases found");
}

/// The endpoint sits under the deployment's base path and carries a bearer key.
#[test]
fn endpoint_and_credentials() {
    let mut t = translator_for(ProviderKind::OpenAi);
    let r = t
        .request_from_body(
            InboundApi::Chat,
            br#"{"model":"gpt","messages":[{"role":"user","content":"Hi"}]}"#,
            &openai_target(),
        )
        .unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.headers,
        vec![("authorization", "Bearer sk-test".to_string())]
    );
}

/// A provider error event is forwarded as sent; a stream cut before `[DONE]` gets an
/// OpenAI-style error event and exactly one `[DONE]`.
#[test]
fn stream_errors_end_with_one_done() {
    let request = br#"{"model":"gpt","messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
    let chunk = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    let error = b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";

    let mut t = translator_for(ProviderKind::OpenAi);
    t.request_from_body(InboundApi::Chat, request, &openai_target())
        .unwrap();
    let mut out = Vec::new();
    t.stream(chunk, false, &mut out);
    t.stream(error, false, &mut out);
    t.stream(b"data: [DONE]\n\n", true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"message\":\"overloaded\""), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");

    let mut t = translator_for(ProviderKind::OpenAi);
    t.request_from_body(InboundApi::Chat, request, &openai_target())
        .unwrap();
    let mut out = Vec::new();
    t.stream(chunk, false, &mut out);
    t.stream(b"", true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"code\":\"stream_error\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
}
