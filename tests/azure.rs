//! Azure OpenAI: its two paths, its credentials and its config errors (the golden cases
//! under `tests/fixtures/azure/` run in `tests/presets.rs` and `tests/streaming.rs`).

mod common;

use common::target_for;
use llm_gateway::config::GatewayConfig;
use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use llm_gateway::provider::{translator_for, ProviderKind, ProviderOptions, Target};
use serde_json::{json, Value};

const BODY: &[u8] = br#"{"model":"gpt4o","messages":[{"role":"user","content":"Hi"}]}"#;

/// The classic deployment path with its api-version, or the v1 path with the deployment
/// as `model`; the key in `api-key`, or an Entra ID token as a bearer token.
#[test]
fn paths_and_credentials() {
    let classic = translator_for(ProviderKind::Azure)
        .request_from_body(InboundApi::Chat, BODY, &target_for(ProviderKind::Azure))
        .unwrap();
    assert_eq!(
        classic.path,
        "/openai/deployments/my-gpt-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        classic.headers,
        vec![("api-key", "azure-test-key".to_string())]
    );

    let v1 = ProviderOptions {
        azure_api_version: None,
        bearer_token: true,
        ..ProviderOptions::default()
    };
    let target = Target {
        options: &v1,
        ..target_for(ProviderKind::Azure)
    };
    let up = translator_for(ProviderKind::Azure)
        .request_from_body(InboundApi::Chat, BODY, &target)
        .unwrap();
    assert_eq!(up.path, "/openai/v1/chat/completions");
    assert_eq!(
        up.headers,
        vec![("authorization", "Bearer azure-test-key".to_string())]
    );
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(sent["model"], "my-gpt-4o");
}

fn deployment(params: Value) -> Result<GatewayConfig, llm_gateway::config::model::ConfigError> {
    common::one_deployment(&params)
}

/// `api_version` picks the path; `azure_ad_token` makes the key a bearer token.
#[test]
fn config_options() {
    let base = "https://contoso.openai.azure.com";
    let c = deployment(
        json!({"model": "azure/gpt4o", "api_base": base, "api_key": "os.environ/AZURE_API_KEY"}),
    )
    .unwrap();
    let d = &c.deployments[0];
    assert_eq!(d.provider, ProviderKind::Azure);
    assert_eq!(d.options.azure_api_version.as_deref(), Some("2024-10-21"));
    assert!(!d.options.bearer_token);
    assert_eq!(d.price, None, "Azure deployment names are not model names");

    let c = deployment(json!({"model": "azure/gpt4o", "api_base": base, "api_version": "v1", "azure_ad_token": "os.environ/AZURE_AD_TOKEN"})).unwrap();
    let d = &c.deployments[0];
    assert_eq!(d.options.azure_api_version, None);
    assert!(d.options.bearer_token);
    assert_eq!(
        d.api_key.as_ref().and_then(|k| k.env_name()),
        Some("AZURE_AD_TOKEN")
    );

    let c = deployment(json!({"model": "azure/gpt4o", "api_base": base, "api_version": "2025-04-01-preview", "api_key": "os.environ/AZURE_API_KEY"})).unwrap();
    assert_eq!(
        c.deployments[0].options.azure_api_version.as_deref(),
        Some("2025-04-01-preview")
    );
}

/// Every mistake names the field and the fix.
#[test]
fn config_errors_name_the_field() {
    let base = "https://contoso.openai.azure.com";
    let cases = [
        (
            json!({"model": "azure/gpt4o", "api_key": "os.environ/K"}),
            "api_base",
            "https://<resource>.openai.azure.com",
        ),
        (
            json!({"model": "azure/", "api_base": base}),
            "model",
            "no model",
        ),
        (
            json!({"model": "azure/a b", "api_base": base}),
            "model",
            "azure/<deployment>",
        ),
        (
            json!({"model": "azure/gpt4o", "api_base": base, "api_version": "latest"}),
            "api_version",
            "v1",
        ),
        (
            json!({"model": "azure/gpt4o", "api_base": base, "api_key": "os.environ/K", "azure_ad_token": "os.environ/T"}),
            "azure_ad_token",
            "use one",
        ),
        (
            json!({"model": "azure/gpt4o", "api_base": base, "azure_ad_token": "eyJ0eXAi"}),
            "azure_ad_token",
            "os.environ/NAME",
        ),
        (
            json!({"model": "openai/gpt-4o", "api_version": "2024-10-21"}),
            "api_version",
            "azure",
        ),
        (
            json!({"model": "groq/llama", "anthropic_version": "2023-06-01"}),
            "anthropic_version",
            "anthropic",
        ),
    ];
    for (params, field, hint) in cases {
        let e = deployment(params.clone()).unwrap_err();
        assert_eq!(
            e.field,
            format!("model_list[0].litellm_params.{field}"),
            "{params}"
        );
        assert!(e.message.contains(hint), "{params}: {}", e.message);
    }
}

/// An Azure deployment's cluster reaches its resource over TLS with the resource's name
/// as SNI, like every provider host.
#[test]
fn cluster_uses_tls_with_the_resource_as_sni() {
    let params = json!({"model": "azure/gpt4o", "api_base": "https://contoso.openai.azure.com", "api_key": "os.environ/AZURE_API_KEY"});
    let config = deployment(params.clone()).unwrap();
    let doc = json!({
        "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"},
        "model_list": [{"model_name": "m", "litellm_params": params}],
    });
    let options = llm_gateway::render::RenderOptions {
        wasm_path: "/x.wasm".into(),
    };
    let bootstrap = llm_gateway::render::render_bootstrap(&config, &doc, &options);
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let azure = clusters
        .iter()
        .find(|c| c.to_string().contains("contoso.openai.azure.com"))
        .expect("a cluster for the Azure resource");
    assert_eq!(
        azure["transport_socket"]["typed_config"]["sni"],
        "contoso.openai.azure.com"
    );
    assert!(azure.to_string().contains("\"port_value\":443"), "{azure}");
}
