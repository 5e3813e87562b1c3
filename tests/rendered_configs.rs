//! The committed Envoy bootstrap is exactly what the renderer makes from the committed
//! gateway config, so the two can never drift apart.

use llm_gateway::config::GatewayConfig;
use llm_gateway::render::{render_bootstrap, RenderOptions};
use serde_json::Value;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// `envoy/envoy.yaml` == render(`envoy/gateway.yaml`); run `make render` after editing.
#[test]
fn committed_bootstrap_is_up_to_date() {
    let gateway = yaml("envoy/gateway.yaml");
    let config = GatewayConfig::from_value(gateway.clone()).expect("envoy/gateway.yaml is valid");
    let rendered = render_bootstrap(
        &config,
        &gateway,
        &RenderOptions {
            wasm_path: "target/llm_gateway.wasm".into(),
        },
    );
    assert!(
        yaml("envoy/envoy.yaml") == rendered,
        "envoy/envoy.yaml is stale: run `make render`"
    );
}

/// `bench/gateway.yaml` (what `make bench` and `make bench-instructions` measure) is a
/// config the module accepts, with a deployment of every wire the bench's scenarios reach:
/// Bedrock signed by Envoy, Vertex AI with fetched tokens, and the rest.
#[test]
fn bench_gateway_config_is_valid() {
    let gateway = yaml("bench/gateway.yaml");
    let config = GatewayConfig::from_value(gateway.clone()).expect("bench/gateway.yaml is valid");
    let rendered = render_bootstrap(
        &config,
        &gateway,
        &RenderOptions {
            wasm_path: "target/llm_gateway.wasm".into(),
        },
    )
    .to_string();
    assert!(
        rendered.contains("aws_sigv4_us-east-1"),
        "no Bedrock signer"
    );
    // It signs InvokeModel calls (embedding models, Claude's Messages) as well as Converse.
    assert!(
        rendered.contains("/model/[^/]+/(converse(-stream)?|invoke(-with-response-stream)?)$"),
        "the signer skips InvokeModel"
    );
    assert!(
        rendered.contains("llm_gcp_token"),
        "no Vertex AI token cluster"
    );
}
