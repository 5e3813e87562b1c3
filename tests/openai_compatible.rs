//! OpenAI-compatible translation: golden cases under `tests/fixtures/openai/` (see `common`).

mod common;

use common::{openai_target, run_all};
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
        .request(
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
