//! The providers of the OpenAI-compatible family besides OpenAI itself (the presets and
//! Azure OpenAI): each one's golden cases under `tests/fixtures/<provider>/`, its fixture
//! folder's README, and its quirks, all driven by the registry.

mod common;

use common::{fixtures_dir, run_all, target_for};
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::registry::{OwnedOption, WireApi, PROVIDERS};
use llm_gateway::provider::RequestFromBody;
use llm_gateway::provider::{translator_for, ProviderKind, ProviderOptions, Target};
use serde_json::Value;

fn family() -> impl Iterator<Item = ProviderKind> {
    ProviderKind::ALL.iter().copied().filter(|k| {
        *k != ProviderKind::OpenAi
            && matches!(k.spec().wire, WireApi::OpenAiChat | WireApi::AzureOpenAi)
    })
}

/// Every golden case of every preset translates to its expected files.
#[test]
fn golden_cases() {
    for kind in family() {
        // Presets without quirks in answers have only the corpus snapshots.
        if !common::cases(kind.name()).is_empty() {
            run_all(kind.name(), kind, &target_for(kind));
        }
    }
}

/// Every provider has a fixture folder whose README cites the API reference of its
/// registry entry and names each of its quirks; each reasoning quirk has an answer and a
/// stream golden.
#[test]
fn every_provider_documents_its_fixtures() {
    let mut missing = Vec::new();
    for spec in PROVIDERS {
        let dir = fixtures_dir().join(spec.name);
        let Ok(readme) = std::fs::read_to_string(dir.join("README.md")) else {
            missing.push(format!(
                "provider `{}` has no tests/fixtures/{}/README.md citing {}",
                spec.name, spec.name, spec.reference
            ));
            continue;
        };
        if !readme.contains(spec.reference) {
            missing.push(format!(
                "tests/fixtures/{}/README.md does not cite {}",
                spec.name, spec.reference
            ));
        }
        for quirk in spec
            .quirks
            .rejected_params
            .iter()
            .chain(spec.quirks.reasoning_field.iter())
        {
            if !readme.contains(&format!("`{quirk}`")) {
                missing.push(format!(
                    "tests/fixtures/{}/README.md does not document `{quirk}`",
                    spec.name
                ));
            }
        }
        if spec.quirks.reasoning_field.is_some() {
            for case in ["reasoning_field_renamed", "stream_reasoning"] {
                if !dir.join(case).is_dir() {
                    missing.push(format!(
                        "provider `{}` renames its reasoning field but has no tests/fixtures/{}/{case}",
                        spec.name, spec.name
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A rejected parameter set to a value that changes the answer is a 400 naming it (the
/// shared corpus shows each), dropped and reported with `drop_params`, and removed quietly
/// when it is a default.
#[test]
fn rejected_params_are_refused_dropped_or_removed() {
    let lenient = ProviderOptions {
        drop_params: true,
        ..ProviderOptions::default()
    };
    for kind in family() {
        let spec = kind.spec();
        for param in spec.quirks.rejected_params {
            let set = match *param {
                "logit_bias" => serde_json::json!({"50256": -100}),
                "n" | "top_logprobs" => serde_json::json!(2),
                "tools" => serde_json::json!([{"type": "function", "function": {"name": "f"}}]),
                "tool_choice" => serde_json::json!("required"),
                "parallel_tool_calls" => serde_json::json!(false),
                "logprobs" => serde_json::json!(true),
                _ => serde_json::json!(0.5),
            };
            let mut body =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
            body[*param] = set;
            let bytes = serde_json::to_vec(&body).unwrap();

            let e = translator_for(kind)
                .request_from_body(InboundApi::Chat, &bytes, &target_for(kind))
                .expect_err(param);
            assert_eq!(e.status, 400, "{} {param}", spec.name);
            assert_eq!(e.param.as_deref(), Some(*param), "{}", spec.name);
            assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));

            let target = Target {
                options: &lenient,
                ..target_for(kind)
            };
            let up = translator_for(kind)
                .request_from_body(InboundApi::Chat, &bytes, &target)
                .unwrap();
            assert_eq!(up.dropped, vec![param.to_string()], "{}", spec.name);
            let sent: Value = serde_json::from_slice(&up.body).unwrap();
            assert!(sent.get(*param).is_none(), "{} {param}", spec.name);
        }
        if spec.quirks.rejected_params.contains(&"n") {
            let body = br#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":1}"#;
            let up = translator_for(kind)
                .request_from_body(InboundApi::Chat, body, &target_for(kind))
                .unwrap();
            let sent: Value = serde_json::from_slice(&up.body).unwrap();
            assert!(
                sent.get("n").is_none() && up.dropped.is_empty(),
                "{}",
                spec.name
            );
        }
    }
}

/// `model: <prefix>/<model>` with `api_key: os.environ/<key_env>` is a whole deployment:
/// the registry's default base, the provider's name, and no other field needed; a provider
/// without a default base requires `api_base`, naming the field.
#[test]
fn a_prefix_and_a_key_make_a_deployment() {
    for spec in PROVIDERS {
        let mut params =
            serde_json::json!({"model": format!("{}/{}", spec.prefixes[0], spec.example_model)});
        if let Some(env) = spec.key_env {
            params["api_key"] = format!("os.environ/{env}").into();
        }
        let config = common::one_deployment;
        if spec.options.contains(&OwnedOption::VertexProject) {
            // Vertex AI: the project is required, the location picks the host.
            let e = config(&params).unwrap_err();
            assert_eq!(e.field, "model_list[0].litellm_params.vertex_project");
            params["vertex_project"] = "my-project".into();
            let c = config(&params).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert_eq!(c.deployments[0].provider.name(), spec.name);
            assert!(c.deployments[0]
                .endpoint
                .host
                .ends_with("aiplatform.googleapis.com"));
            continue;
        }
        // Bedrock's base comes from the region (`aws_region_name`, us-east-1 by default).
        let bedrock = (spec.wire == WireApi::BedrockConverse)
            .then_some("https://bedrock-runtime.us-east-1.amazonaws.com");
        match spec.default_api_base.or(bedrock) {
            Some(base) => {
                let c = config(&params).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
                let d = &c.deployments[0];
                assert_eq!(d.provider.name(), spec.name);
                assert_eq!(d.upstream_model, spec.example_model);
                assert!(base.contains(&d.endpoint.host), "{}", spec.name);
            }
            None => {
                let e = config(&params).unwrap_err();
                assert_eq!(
                    e.field, "model_list[0].litellm_params.api_base",
                    "{}",
                    spec.name
                );
                assert!(e.message.contains("required"), "{}", e.message);
                params["api_base"] = "https://example.test/v1".into();
                config(&params).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            }
        }
    }
}

/// DeepSeek reports cache hits as `prompt_cache_hit_tokens`: they are accounted as cache
/// reads, in an answer and in a stream's usage chunk.
#[test]
fn deepseek_cache_hits_are_cache_reads() {
    let case = fixtures_dir().join("deepseek/cache_hit_usage/upstream_response.json");
    let answer = std::fs::read(case).unwrap();
    let target = target_for(ProviderKind::DeepSeek);
    let mut t = translator_for(ProviderKind::DeepSeek);
    t.request_from_body(
        InboundApi::Chat,
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        &target,
    )
    .unwrap();
    let usage = t.response(200, &answer).usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.cache_read_tokens), (1600, 1536));

    let mut t = translator_for(ProviderKind::DeepSeek);
    t.request_from_body(
        InboundApi::Chat,
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#,
        &target,
    )
    .unwrap();
    let mut out = Vec::new();
    t.stream(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n\
          data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1600,\"completion_tokens\":3,\"total_tokens\":1603,\"prompt_cache_hit_tokens\":1536,\"prompt_cache_miss_tokens\":64}}\n\n\
          data: [DONE]\n\n",
        true,
        &mut out,
    );
    assert_eq!(t.stream_usage().unwrap().cache_read_tokens, 1536);
}
