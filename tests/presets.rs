//! The providers of the OpenAI-compatible family besides OpenAI itself (the presets and
//! Azure OpenAI): each one's golden cases under `tests/fixtures/<provider>/`, its fixture
//! folder's README, and its quirks, all driven by the registry.

mod common;

use common::{fixtures_dir, run_all, target_for};
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::registry::{OwnedOption, Prices, WireApi, PROVIDERS};
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
            .chain(spec.quirks.stream_usage_in.iter())
        {
            if !readme.contains(&format!("`{quirk}`")) {
                missing.push(format!(
                    "tests/fixtures/{}/README.md does not document `{quirk}`",
                    spec.name
                ));
            }
        }
        if let Some(field) = spec.quirks.stream_usage_in {
            let case = format!("stream_{field}_usage");
            if !dir.join(&case).is_dir() {
                missing.push(format!(
                    "provider `{}` reads stream usage from `{field}` but has no tests/fixtures/{}/{case}",
                    spec.name, spec.name
                ));
            }
        }
        if spec.prices == Prices::Reported
            && !(readme.contains("`usage.cost`") && dir.join("reported_cost").is_dir())
        {
            missing.push(format!(
                "provider `{}` reports its cost but tests/fixtures/{}/ has no reported_cost case or its README does not name `usage.cost`",
                spec.name, spec.name
            ));
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

/// OpenRouter's answers report what they were charged (`usage.cost`, USD): accounted as the
/// answer's cost (in micro-USD), for an answer and a stream alike; other providers' `cost`
/// fields (Perplexity's object) are not read.
#[test]
fn openrouter_answers_report_their_cost() {
    let answer =
        std::fs::read(fixtures_dir().join("openrouter/reported_cost/upstream_response.json"))
            .unwrap();
    let mut t = common::chat_translator(ProviderKind::OpenRouter, common::MINIMAL_REQUEST);
    let usage = t.response(200, &answer).usage.unwrap();
    assert_eq!(usage.reported_cost_micro_usd, Some(505));
    assert_eq!(usage.prompt_tokens, 194);
    // The same answer from a provider that is not known to report its cost.
    let mut t = common::chat_translator(ProviderKind::Together, common::MINIMAL_REQUEST);
    assert_eq!(
        t.response(200, &answer)
            .usage
            .unwrap()
            .reported_cost_micro_usd,
        None
    );
    // Perplexity's `cost` is an object: the usage is still read.
    let answer =
        std::fs::read(fixtures_dir().join("perplexity/citations/upstream_response.json")).unwrap();
    let mut t = common::chat_translator(ProviderKind::Perplexity, common::MINIMAL_REQUEST);
    let usage = t.response(200, &answer).usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 31));
    assert_eq!(usage.reported_cost_micro_usd, None);
}

/// Perplexity's `citations` and `search_results` reach the client unchanged, in an answer
/// and in every chunk of a stream (also when the gateway removes the usage the client did
/// not ask for).
#[test]
fn perplexity_citations_reach_the_client() {
    let dir = fixtures_dir().join("perplexity");
    let answer = std::fs::read(dir.join("citations/upstream_response.json")).unwrap();
    let sent: Value = serde_json::from_slice(&answer).unwrap();
    let mut t = common::chat_translator(ProviderKind::Perplexity, common::MINIMAL_REQUEST);
    let got: Value = serde_json::from_slice(&t.response(200, &answer).body).unwrap();
    for field in ["citations", "search_results"] {
        assert_eq!(got[field], sent[field], "{field}");
    }
    let mut t = common::chat_translator(
        ProviderKind::Perplexity,
        &std::fs::read(dir.join("stream_citations/openai_request.json")).unwrap(),
    );
    let mut out = Vec::new();
    t.stream(
        &std::fs::read(dir.join("stream_citations/upstream.sse")).unwrap(),
        true,
        &mut out,
    );
    let text = String::from_utf8(out).unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(chunks.len(), 3);
    for c in &chunks {
        for field in ["citations", "search_results"] {
            assert_eq!(c[field], sent[field], "{field}");
        }
        assert!(c.get("usage").is_none());
    }
    assert_eq!(t.stream_usage().unwrap().completion_tokens, 31);
}

/// The presets' models are priced under their provider's name, so one open model hosted
/// by several providers has each one's price; a model the table does not list stays
/// unpriced; local servers are free unless priced; OpenRouter and vLLM have no built-in
/// price (OpenRouter's answers report theirs).
#[test]
fn preset_prices_come_from_the_registry() {
    let price = |model: &str| {
        common::one_deployment(&serde_json::json!({"model": model, "api_key": "os.environ/K"}))
            .unwrap_or_else(|e| panic!("{model}: {e}"))
            .deployments[0]
            .price
    };
    let groq = price("groq/openai/gpt-oss-120b").unwrap();
    assert_eq!(
        (groq.input, groq.cache_read, groq.output),
        (150_000, 75_000, 600_000)
    );
    let cerebras = price("cerebras/gpt-oss-120b").unwrap();
    assert_eq!((cerebras.input, cerebras.output), (350_000, 750_000));
    assert_ne!(price("together_ai/openai/gpt-oss-120b"), Some(groq));
    assert_eq!(price("deepseek/deepseek-v4-pro").unwrap().output, 3_960_000);
    // Snapshots of a listed model share its price; other names are other models.
    assert_eq!(price("xai/grok-4.6-latest"), price("xai/grok-4.6"));
    for unpriced in [
        "groq/llama-3.3-70b-versatile",
        "mistral/mistral-large-latest",
        "deepinfra/meta-llama/Llama-3.3-70B-Instruct",
        "perplexity/sonar",
        "openrouter/openai/gpt-4o",
        "hosted_vllm/openai/gpt-oss-120b",
        // The OpenAI-compatible `openai/` prefix lists OpenAI's own models only.
        "openai/gpt-oss-120b",
    ] {
        let d = if unpriced.starts_with("hosted_vllm") {
            common::one_deployment(
                &serde_json::json!({"model": unpriced, "api_base": "http://vllm.internal:8000/v1"}),
            )
        } else {
            common::one_deployment(
                &serde_json::json!({"model": unpriced, "api_key": "os.environ/K"}),
            )
        };
        assert_eq!(d.unwrap().deployments[0].price, None, "{unpriced}");
    }
    for free in ["ollama_chat/llama3.2", "lm_studio/qwen2.5-7b-instruct"] {
        let p = common::one_deployment(&serde_json::json!({"model": free}))
            .unwrap()
            .deployments[0]
            .price;
        assert_eq!(p, Some(Default::default()), "{free}");
    }
    // A price set on a free server or through `base_model` (a preset's row named whole).
    let local = common::one_deployment(&serde_json::json!({
        "model": "ollama_chat/llama3.2", "output_cost_per_token": 0.000001}))
    .unwrap()
    .deployments[0]
        .price
        .unwrap();
    assert_eq!((local.input, local.output), (0, 1_000_000));
    let vllm = common::one_deployment(&serde_json::json!({
        "model": "hosted_vllm/gpt-oss-120b", "api_base": "http://vllm.internal:8000/v1"}))
    .map(|c| c.deployments[0].price)
    .unwrap();
    assert_eq!(vllm, None);
    let named = llm_gateway::config::GatewayConfig::from_value(serde_json::json!({
        "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"},
        "model_list": [{"model_name": "m",
            "litellm_params": {"model": "hosted_vllm/gpt-oss-120b", "api_base": "http://vllm.internal:8000/v1"},
            "model_info": {"base_model": "groq/openai/gpt-oss-120b"}}],
    }))
    .unwrap();
    assert_eq!(named.deployments[0].price, Some(groq));
}
