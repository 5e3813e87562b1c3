//! OpenTelemetry through Envoy's own tracer (`general_settings.opentelemetry`): the
//! `envoy.tracers.opentelemetry` provider in the HTTP connection manager's `tracing`, the
//! collector's cluster, and optionally the OTLP access logger and stats sink.
//!
//! Envoy makes one span per client request and, with `spawn_upstream_span`, one child
//! span per upstream attempt, and honours the client's W3C `traceparent`. The attributes
//! follow the OpenTelemetry GenAI semantic conventions and are Envoy custom tags read
//! from what the gateway already leaves where Envoy can see it: the route's metadata (the
//! alias), the answering endpoint's metadata (provider, model, deployment) and the filter
//! state the module writes for the access log (tokens, cost, key name, team) and, with
//! tracing, for the spans alone (the answer's id and finish reasons; the captured prompt
//! and answer of the models and keys that ask for it). Nothing is rendered, and the module
//! writes nothing more, when the section is absent.

use serde_json::{json, Value};

use super::access_log::{endpoint_metadata, filter_state, route_metadata};
use crate::config::model::Secret;
use crate::config::GatewayConfig;
use crate::otel::{
    OpenTelemetry, OtlpProtocol, FINISH_REASONS_STATE, INPUT_STATE, INPUT_TYPE_STATE, OUTPUT_STATE,
    OUTPUT_TYPE_STATE, REQUEST_MAX_TOKENS_STATE, REQUEST_TEMPERATURE_STATE, RESPONSE_ID_STATE,
};
use crate::routing::{COST_USD_STATE, METADATA_DEPLOYMENT_KEY, OPERATION_METADATA_KEY};

/// Name of the collector's cluster.
pub const CLUSTER: &str = "llm_otel_collector";

/// How long one export may take.
const EXPORT_TIMEOUT: &str = "5s";

/// Span attributes and the Envoy formatter each is read with: GenAI semantic
/// conventions first, then the gateway's own (`llm_gateway.*`). The key's name and team
/// are attributes, never the key itself. With `capture` (some model or key captures its
/// messages), OpenInference's `input.value` and `output.value` too, which Phoenix shows
/// as the span's input and output and Langfuse as the observation's; the tags are only
/// rendered then, as Envoy formats every tag of every span.
pub fn span_attributes(capture: bool) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        (
            "gen_ai.operation.name",
            route_metadata(OPERATION_METADATA_KEY),
        ),
        ("gen_ai.provider.name", endpoint_metadata("provider")),
        ("gen_ai.request.model", route_metadata("model")),
        ("gen_ai.response.model", endpoint_metadata("model")),
        ("gen_ai.response.id", filter_state(RESPONSE_ID_STATE)),
        (
            "gen_ai.response.finish_reasons",
            filter_state(FINISH_REASONS_STATE),
        ),
        (
            "gen_ai.request.max_tokens",
            filter_state(REQUEST_MAX_TOKENS_STATE),
        ),
        (
            "gen_ai.request.temperature",
            filter_state(REQUEST_TEMPERATURE_STATE),
        ),
        (
            "gen_ai.usage.input_tokens",
            filter_state("llm_prompt_tokens"),
        ),
        (
            "gen_ai.usage.output_tokens",
            filter_state("llm_completion_tokens"),
        ),
        (
            "gen_ai.usage.cache_read.input_tokens",
            filter_state("llm_cached_tokens"),
        ),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            filter_state("llm_cache_write_tokens"),
        ),
        ("llm_gateway.cost_usd", filter_state(COST_USD_STATE)),
        (
            "llm_gateway.deployment",
            endpoint_metadata(METADATA_DEPLOYMENT_KEY),
        ),
        (
            "llm_gateway.attempts",
            "%UPSTREAM_REQUEST_ATTEMPT_COUNT%".into(),
        ),
        ("llm_gateway.key_name", filter_state("llm_key")),
        ("llm_gateway.team", filter_state("llm_team")),
    ];
    if capture {
        attributes.extend([
            ("input.value", filter_state(INPUT_STATE)),
            ("input.mime_type", filter_state(INPUT_TYPE_STATE)),
            ("output.value", filter_state(OUTPUT_STATE)),
            ("output.mime_type", filter_state(OUTPUT_TYPE_STATE)),
        ]);
    }
    attributes
}

/// The custom tags of every span (formatters; an unknown value is an empty string).
pub fn custom_tags(capture: bool) -> Vec<Value> {
    span_attributes(capture)
        .into_iter()
        .map(|(tag, value)| json!({"tag": tag, "value": value}))
        .collect()
}

/// `key: value` headers of every export; secrets as `%ENVIRONMENT(NAME)%`, which Envoy
/// reads from its own environment when it sends.
fn header_values(otel: &OpenTelemetry) -> Vec<Value> {
    otel.headers
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Secret::Env(env) => format!("%ENVIRONMENT({env})%"),
                Secret::Literal(v) => v.clone(),
            };
            json!({"key": name, "value": value})
        })
        .collect()
}

/// The `grpc_service` of the tracer, the access logger and the stats sink.
fn grpc_service(otel: &OpenTelemetry) -> Value {
    let mut service = json!({"envoy_grpc": {"cluster_name": CLUSTER}, "timeout": EXPORT_TIMEOUT});
    let headers = header_values(otel);
    if !headers.is_empty() {
        service["initial_metadata"] = json!(headers);
    }
    service
}

/// The tracer: `envoy.tracers.opentelemetry` exporting over gRPC or HTTP.
pub fn provider(otel: &OpenTelemetry) -> Value {
    let mut tracer = json!({
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "service_name": otel.service_name,
    });
    match otel.protocol {
        OtlpProtocol::Grpc => tracer["grpc_service"] = grpc_service(otel),
        OtlpProtocol::HttpProtobuf => {
            let ep = &otel.endpoint;
            let scheme = if ep.tls { "https" } else { "http" };
            let host = if ep.host.contains(':') {
                format!("[{}]", ep.host)
            } else {
                ep.host.clone()
            };
            let headers: Vec<Value> = header_values(otel)
                .into_iter()
                .map(|h| json!({"header": h, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}))
                .collect();
            tracer["http_service"] = json!({
                "http_uri": {
                    "uri": format!("{scheme}://{host}:{}{}", ep.port, ep.base_path),
                    "cluster": CLUSTER,
                    "timeout": EXPORT_TIMEOUT,
                },
                "request_headers_to_add": headers,
            });
        }
    }
    json!({"name": "envoy.tracers.opentelemetry", "typed_config": tracer})
}

/// The connection manager's `tracing`: sampling, the tracer, one span per attempt and the
/// GenAI attributes (`capture`: and the captured messages).
pub fn hcm_tracing(otel: &OpenTelemetry, capture: bool) -> Value {
    json!({
        "random_sampling": {"value": otel.sampling_percent},
        "spawn_upstream_span": true,
        "provider": provider(otel),
        "custom_tags": custom_tags(capture),
    })
}

/// The OTLP access logger: the same fields as the stdout JSON line, as log attributes.
pub fn access_logger(otel: &OpenTelemetry, fields: &Value) -> Value {
    let attributes: Vec<Value> = fields
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({"key": k, "value": {"string_value": v.as_str().unwrap_or_default()}}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": "envoy.access_loggers.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
            "log_name": "llm_gateway",
            "grpc_service": grpc_service(otel),
            "body": {"string_value": "%REQ(:METHOD)% %RESPONSE_CODE%"},
            "attributes": {"values": attributes},
            "formatters": [super::access_log::cel_formatter()],
            "resource_attributes": {"values": [
                {"key": "service.name", "value": {"string_value": otel.service_name}},
            ]},
        },
    })
}

/// The OTLP stats sink (bootstrap `stats_sinks`).
pub fn stats_sink(otel: &OpenTelemetry) -> Value {
    json!({
        "name": "envoy.stat_sinks.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig",
            "grpc_service": grpc_service(otel),
        },
    })
}

/// The collector's cluster: HTTP/2 for gRPC, TLS with SNI for `https://` endpoints.
pub fn cluster(config: &GatewayConfig, otel: &OpenTelemetry) -> Value {
    let mut cluster = super::service_cluster(
        CLUSTER,
        &otel.endpoint.host,
        otel.endpoint.port,
        otel.protocol == OtlpProtocol::Grpc,
    );
    if otel.endpoint.tls {
        cluster["transport_socket"] = super::tls_socket(config, &otel.endpoint);
    }
    cluster
}

/// Adds the tracing (and the OTLP access logger) to a rendered listener's connection
/// manager.
pub fn add_to_listener(config: &GatewayConfig, listener: &mut Value, otel: &OpenTelemetry) {
    if let Some(hcm) = listener.pointer_mut("/filter_chains/0/filters/0/typed_config") {
        add_to_hcm(config, hcm, otel);
    }
}

/// Adds `tracing` (and the OTLP access logger) to a connection manager's typed config.
pub fn add_to_hcm(config: &GatewayConfig, hcm: &mut Value, otel: &OpenTelemetry) {
    hcm["tracing"] = hcm_tracing(otel, config.captures_content());
    if otel.access_log {
        let logger = access_logger(otel, &super::access_log_fields(config));
        if let Some(logs) = hcm.get_mut("access_log").and_then(Value::as_array_mut) {
            logs.push(logger);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_bootstrap, RenderOptions};

    fn config(otel: Value) -> (GatewayConfig, Value) {
        let v = json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}}],
            "general_settings": {"master_key": "sk-x", "opentelemetry": otel},
        });
        (GatewayConfig::from_value(v.clone()).unwrap(), v)
    }

    fn render(otel: Value) -> Value {
        let (c, v) = config(otel);
        render_bootstrap(
            &c,
            &v,
            &RenderOptions {
                wasm_path: "x.wasm".into(),
            },
        )
    }

    fn collector_cluster(b: &Value) -> &Value {
        b["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == CLUSTER)
            .unwrap()
    }

    fn hcm(b: &Value) -> &Value {
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    /// OTLP/HTTP: the tracer posts to the full URL through its cluster, with the secret
    /// header read from Envoy's environment; sampling in percent; a span per attempt.
    #[test]
    fn http_tracer() {
        let b = render(json!({
            "endpoint": "https://cloud.langfuse.com/api/public/otel/v1/traces",
            "headers": {"Authorization": "os.environ/LANGFUSE_AUTH"},
            "sampling_rate": 0.5,
            "service_name": "gw",
        }));
        let t = &hcm(&b)["tracing"];
        assert_eq!(t["random_sampling"]["value"], 50.0);
        assert_eq!(t["spawn_upstream_span"], true);
        let p = &t["provider"]["typed_config"];
        assert_eq!(t["provider"]["name"], "envoy.tracers.opentelemetry");
        assert_eq!(p["service_name"], "gw");
        let http = &p["http_service"];
        assert_eq!(
            http["http_uri"]["uri"],
            "https://cloud.langfuse.com:443/api/public/otel/v1/traces"
        );
        assert_eq!(http["http_uri"]["cluster"], CLUSTER);
        assert_eq!(
            http["request_headers_to_add"][0]["header"],
            json!({"key": "authorization", "value": "%ENVIRONMENT(LANGFUSE_AUTH)%"})
        );
        let collector = collector_cluster(&b);
        assert_eq!(
            collector["transport_socket"]["typed_config"]["sni"],
            "cloud.langfuse.com"
        );
        // Plain HTTP/1.1 for OTLP/HTTP.
        assert!(collector.get("typed_extension_protocol_options").is_none());
        assert!(b.get("stats_sinks").is_none());
    }

    /// The GenAI attributes come from route metadata, endpoint metadata and filter state.
    #[test]
    fn genai_tags() {
        let b = render(json!({"endpoint": "http://127.0.0.1:6006"}));
        let tags = hcm(&b)["tracing"]["custom_tags"]
            .as_array()
            .unwrap()
            .clone();
        let tag = |name: &str| {
            tags.iter()
                .find(|t| t["tag"] == name)
                .map(|t| t["value"].as_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(
            tag("gen_ai.request.model"),
            "%METADATA(ROUTE:llm_gateway:model)%"
        );
        assert_eq!(
            tag("gen_ai.provider.name"),
            "%UPSTREAM_METADATA(llm_gateway:provider)%"
        );
        assert_eq!(
            tag("gen_ai.usage.input_tokens"),
            "%FILTER_STATE(wasm.llm_prompt_tokens:PLAIN)%"
        );
        assert_eq!(
            tag("llm_gateway.key_name"),
            "%FILTER_STATE(wasm.llm_key:PLAIN)%"
        );
        // What the answer says about itself, from what the upstream instance writes.
        assert_eq!(
            tag("gen_ai.response.id"),
            "%FILTER_STATE(wasm.llm_response_id:PLAIN)%"
        );
        assert_eq!(
            tag("gen_ai.response.finish_reasons"),
            "%FILTER_STATE(wasm.llm_finish_reasons:PLAIN)%"
        );
        // No capture configured: no capture tags for Envoy to format.
        assert!(tags
            .iter()
            .all(|t| !t["tag"].as_str().unwrap().starts_with("input.")
                && !t["tag"].as_str().unwrap().starts_with("output.")));
        assert!(tags
            .iter()
            .all(|t| !t["tag"].as_str().unwrap().contains("sha")));
        // The span's operation comes from the alias routes' metadata; the access log joins
        // its lines to their traces.
        let route = &hcm(&b)["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(
            route["metadata"]["filter_metadata"]["llm_gateway"]["operation"],
            "chat"
        );
        let fields = &hcm(&b)["access_log"][0]["typed_config"]["log_format"]["json_format"];
        assert_eq!(
            fields["operation"],
            "%FILTER_STATE(wasm.llm_operation:PLAIN)%"
        );
        assert_eq!(fields["trace_id"], "%TRACE_ID%");
    }

    /// The connection manager the Istio resources patch in.
    fn istio_hcm(c: &GatewayConfig, v: &Value) -> Value {
        use crate::render::istio::{render_istio, IstioOptions, WasmSource};
        let options = IstioOptions {
            wasm: WasmSource::parse("file:///x.wasm", None).unwrap(),
            namespace: "istio-system".into(),
            selector: vec![("app".into(), "istio-ingressgateway".into())],
        };
        let files = render_istio(c, v, &options).unwrap();
        let filter = files.iter().find(|f| f.name == "envoyfilter.yaml").unwrap();
        filter.documents[0]["spec"]["configPatches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["applyTo"] == "NETWORK_FILTER")
            .unwrap()["patch"]["value"]["typed_config"]
            .clone()
    }

    /// With a model or a key capturing, OpenInference's input and output attributes are
    /// rendered, in every form.
    #[test]
    fn capture_tags() {
        let tags_of = |hcm: &Value| -> Vec<(String, String)> {
            hcm["tracing"]["custom_tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["tag"].as_str().unwrap().to_string(),
                        t["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let expected = [
            (
                "input.value",
                "%FILTER_STATE(wasm.llm_capture_input:PLAIN)%",
            ),
            (
                "input.mime_type",
                "%FILTER_STATE(wasm.llm_capture_input_type:PLAIN)%",
            ),
            (
                "output.value",
                "%FILTER_STATE(wasm.llm_capture_output:PLAIN)%",
            ),
            (
                "output.mime_type",
                "%FILTER_STATE(wasm.llm_capture_output_type:PLAIN)%",
            ),
        ];
        let base = json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}}],
            "general_settings": {"master_key": "sk-x", "opentelemetry": {"endpoint": "http://127.0.0.1:6006"}},
        });
        let mut by_model = base.clone();
        by_model["model_list"][0]["model_info"] = json!({"capture_content": true});
        let mut by_key = base.clone();
        by_key["virtual_keys"] =
            json!([{"name": "k", "key_sha256": "ab".repeat(32), "capture_content": true}]);
        let o = RenderOptions {
            wasm_path: "x.wasm".into(),
        };
        for v in [by_model, by_key] {
            let c = GatewayConfig::from_value(v.clone()).unwrap();
            let b = render_bootstrap(&c, &v, &o);
            let d = crate::render::render_dynamic(&c, &v, &o, "/etc/gw");
            let dynamic = &d.lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"];
            let istio = istio_hcm(&c, &v);
            for hcm in [hcm(&b), dynamic, &istio] {
                let tags = tags_of(hcm);
                for (tag, value) in expected {
                    assert!(
                        tags.contains(&(tag.to_string(), value.to_string())),
                        "{tag}: {tags:?}"
                    );
                }
            }
        }
    }

    /// gRPC: metadata headers, an HTTP/2 cluster, the OTLP access logger and stats sink.
    #[test]
    fn grpc_logs_and_metrics() {
        let b = render(json!({
            "endpoint": "http://127.0.0.1:4317", "protocol": "grpc",
            "headers": {"x-tenant": "t1"}, "access_log": true, "metrics": true,
        }));
        let p = &hcm(&b)["tracing"]["provider"]["typed_config"];
        assert_eq!(p["grpc_service"]["envoy_grpc"]["cluster_name"], CLUSTER);
        assert_eq!(
            p["grpc_service"]["initial_metadata"],
            json!([{"key": "x-tenant", "value": "t1"}])
        );
        let logs = hcm(&b)["access_log"].as_array().unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[1]["name"], "envoy.access_loggers.open_telemetry");
        assert_eq!(
            b["stats_sinks"][0]["name"],
            "envoy.stat_sinks.open_telemetry"
        );
        let collector = collector_cluster(&b);
        assert!(collector["typed_extension_protocol_options"].is_object());
    }

    /// The dynamic form carries the tracer in its listener and the collector in its
    /// clusters.
    #[test]
    fn dynamic_form() {
        let (c, v) = config(json!({"endpoint": "http://127.0.0.1:6006"}));
        let o = RenderOptions {
            wasm_path: "x.wasm".into(),
        };
        let d = crate::render::render_dynamic(&c, &v, &o, "/etc/gw");
        let hcm = &d.lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["tracing"]["provider"]["name"],
            "envoy.tracers.opentelemetry"
        );
        assert!(d.cds["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == CLUSTER));
    }

    /// The Istio resources: the tracer merged into the gateway's connection manager, the
    /// collector's cluster, the OTLP stats sink in the bootstrap override and the header
    /// secret in the pods' environment.
    #[test]
    fn istio_resources() {
        use crate::render::istio::{render_istio, IstioOptions, WasmSource};
        let (c, v) = config(json!({
            "endpoint": "http://otel-collector:4317", "protocol": "grpc",
            "headers": {"authorization": "os.environ/OTEL_AUTH"}, "metrics": true,
        }));
        let options = IstioOptions {
            wasm: WasmSource::parse("file:///x.wasm", None).unwrap(),
            namespace: "istio-system".into(),
            selector: vec![("app".into(), "istio-ingressgateway".into())],
        };
        let files = render_istio(&c, &v, &options).unwrap();
        let doc = |name: &str| {
            files
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .documents
                .clone()
        };
        let patches = doc("envoyfilter.yaml")[0]["spec"]["configPatches"].clone();
        let patches = patches.as_array().unwrap();
        let hcm = patches
            .iter()
            .find(|p| p["applyTo"] == "NETWORK_FILTER")
            .unwrap();
        let tracing = &hcm["patch"]["value"]["typed_config"]["tracing"];
        assert_eq!(tracing["spawn_upstream_span"], true);
        assert_eq!(
            tracing["provider"]["typed_config"]["grpc_service"]["initial_metadata"][0]["value"],
            "%ENVIRONMENT(OTEL_AUTH)%"
        );
        assert!(patches
            .iter()
            .any(|p| p["applyTo"] == "CLUSTER" && p["patch"]["value"]["name"] == CLUSTER));
        let overrides = doc("stats-bootstrap.yaml")[0]["data"]["custom_bootstrap.json"].clone();
        let overrides: Value = serde_json::from_str(overrides.as_str().unwrap()).unwrap();
        assert_eq!(
            overrides["stats_sinks"][0]["name"],
            "envoy.stat_sinks.open_telemetry"
        );
        let values = doc("gateway-values.yaml")[0].clone();
        assert!(values["envVarFrom"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "OTEL_AUTH"));
        // The filter itself is not given the variable.
        assert!(!c.env_names().contains(&"OTEL_AUTH".to_string()));
    }

    /// Without the section nothing about tracing is rendered.
    #[test]
    fn absent_means_no_tracing() {
        let v = json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}}],
            "general_settings": {"master_key": "sk-x"},
        });
        let c = GatewayConfig::from_value(v.clone()).unwrap();
        let b = render_bootstrap(
            &c,
            &v,
            &RenderOptions {
                wasm_path: "x.wasm".into(),
            },
        );
        assert!(hcm(&b).get("tracing").is_none());
        assert!(b.get("stats_sinks").is_none());
        // No route metadata lookup and no trace id per line: no cost without spans; the
        // operation is the filter's.
        let fields = &hcm(&b)["access_log"][0]["typed_config"]["log_format"]["json_format"];
        assert_eq!(
            fields["operation"],
            "%FILTER_STATE(wasm.llm_operation:PLAIN)%"
        );
        assert!(fields.get("trace_id").is_none());
        let text = b.to_string();
        assert!(!text.contains(CLUSTER) && !text.contains("opentelemetry"));
    }
}
