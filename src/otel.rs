//! `general_settings.opentelemetry`: where Envoy's own OpenTelemetry tracer (and, when
//! asked, its OTLP access logger and stats sink) sends what it records. Parsed and
//! validated once with the rest of the config; the renderer
//! ([`crate::render::tracing`]) turns it into Envoy config.
//!
//! Header values that are secrets (Langfuse's basic auth, an API key) are read from
//! Envoy's environment (`os.environ/NAME`), never written in a file: the rendered config
//! carries `%ENVIRONMENT(NAME)%`, which Envoy expands when it sends.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::model::{check_env_name, ConfigError, Endpoint, Secret};
use crate::openai::chat::ChatRequest;

const AT: &str = "general_settings.opentelemetry";

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpenTelemetry {
    endpoint: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    sampling_rate: Option<f64>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    access_log: Option<bool>,
    #[serde(default)]
    metrics: Option<bool>,
}

/// How spans (and logs, metrics) travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`grpc`), e.g. a collector's port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`), e.g. Langfuse, Phoenix's
    /// `/v1/traces`.
    HttpProtobuf,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTelemetry {
    /// OTLP over gRPC or HTTP.
    pub protocol: OtlpProtocol,
    /// The collector. For HTTP, `base_path` is the full path spans are posted to.
    pub endpoint: Endpoint,
    /// Headers sent with every export, by lower-case name; secrets from the environment.
    pub headers: Vec<(String, Secret)>,
    /// Share of client requests traced, in percent (Envoy's random sampling, which
    /// decides for requests with a client's `traceparent` too).
    pub sampling_percent: f64,
    /// `service.name` of every span.
    pub service_name: String,
    /// Also send each access-log record through Envoy's OTLP access logger (gRPC only).
    pub access_log: bool,
    /// Also send Envoy's stats through its OTLP stats sink (gRPC only).
    pub metrics: bool,
}

impl OpenTelemetry {
    /// The environment variables the export's headers are read from (by Envoy, not by
    /// the filter).
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().filter_map(|(_, v)| v.env_name())
    }
}

/// Filter state the downstream instance writes, with tracing on, for
/// `gen_ai.request.max_tokens`.
pub const REQUEST_MAX_TOKENS_STATE: &str = "llm_request_max_tokens";
/// Filter state the downstream instance writes, with tracing on, for
/// `gen_ai.request.temperature`.
pub const REQUEST_TEMPERATURE_STATE: &str = "llm_request_temperature";

/// The request's values for span attributes, as (filter state, value): only those the
/// client set, so a request without them costs no write.
pub fn request_span_values(request: &ChatRequest) -> Vec<(&'static str, String)> {
    let mut values = Vec::new();
    if let Some(n) = request.max_completion_tokens.or(request.max_tokens) {
        values.push((REQUEST_MAX_TOKENS_STATE, n.to_string()));
    }
    if let Some(t) = request.temperature {
        values.push((REQUEST_TEMPERATURE_STATE, t.to_string()));
    }
    values
}

/// `service.name` when the section sets none.
pub const DEFAULT_SERVICE_NAME: &str = "llm-gateway";

/// Where OTLP/HTTP spans go when the endpoint has no path (the OTLP default).
pub const DEFAULT_TRACES_PATH: &str = "/v1/traces";

/// Header names whose values are credentials: they must come from the environment.
fn is_credential_header(name: &str) -> bool {
    ["auth", "key", "token", "secret", "password", "cookie"]
        .iter()
        .any(|w| name.contains(w))
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) fn validate(raw: &RawOpenTelemetry) -> Result<OpenTelemetry, ConfigError> {
    let protocol = match raw.protocol.as_deref() {
        None | Some("http/protobuf") | Some("http") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(p) => {
            return Err(ConfigError::new(
                format!("{AT}.protocol"),
                format!("`{p}` is not an OTLP protocol: use `http/protobuf` (default; Langfuse, Phoenix on :6006) or `grpc` (a collector on :4317)"),
            ))
        }
    };
    let mut endpoint = Endpoint::parse(raw.endpoint.trim()).map_err(|e| {
        ConfigError::new(
            format!("{AT}.endpoint"),
            format!("{e}; write the collector's URL, e.g. `http://otel-collector:4318/v1/traces` or, with `protocol: grpc`, `http://otel-collector:4317`"),
        )
    })?;
    match protocol {
        OtlpProtocol::HttpProtobuf if endpoint.base_path.is_empty() => {
            endpoint.base_path = DEFAULT_TRACES_PATH.to_string();
        }
        OtlpProtocol::Grpc if !endpoint.base_path.is_empty() => {
            return Err(ConfigError::new(
                format!("{AT}.endpoint"),
                format!("`{}` has a path, which OTLP over gRPC does not use: write only `http(s)://host:port`, or set `protocol: http/protobuf` for an HTTP endpoint", raw.endpoint),
            ))
        }
        _ => {}
    }
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let field = format!("{AT}.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if !valid_header_name(&lower) {
            return Err(ConfigError::new(
                field,
                "is not a valid header name: use letters, digits and - _ .",
            ));
        }
        let secret = Secret::parse(value);
        match &secret {
            Secret::Env(env) => check_env_name(env, &field)?,
            Secret::Literal(_) if is_credential_header(&lower) => {
                return Err(ConfigError::new(
                    field,
                    "looks like a credential and must not be written in the config: use `os.environ/NAME` and set NAME in Envoy's environment (for Langfuse, NAME holds `Basic <base64 of public_key:secret_key>`)",
                ))
            }
            // Envoy would read `%...%` as a formatter command.
            Secret::Literal(v) if v.contains('%') || v.is_empty() => {
                return Err(ConfigError::new(
                    field,
                    "must be a non-empty value without `%` (or `os.environ/NAME`)",
                ))
            }
            Secret::Literal(_) => {}
        }
        headers.push((lower, secret));
    }
    let sampling_percent =
        match raw.sampling_rate {
            None => 100.0,
            Some(r) if (0.0..=1.0).contains(&r) => r * 100.0,
            Some(_) => return Err(ConfigError::new(
                format!("{AT}.sampling_rate"),
                "must be a share between 0 and 1 (e.g. 0.1 traces one request in ten; default 1)",
            )),
        };
    let service_name = match raw.service_name.as_deref() {
        None => DEFAULT_SERVICE_NAME.to_string(),
        Some(s) if !s.trim().is_empty() && s.len() <= 128 && !s.contains('%') => s.to_string(),
        Some(_) => {
            return Err(ConfigError::new(
                format!("{AT}.service_name"),
                "must be 1-128 characters without `%` (default `llm-gateway`)",
            ))
        }
    };
    let access_log = raw.access_log.unwrap_or(false);
    let metrics = raw.metrics.unwrap_or(false);
    if protocol != OtlpProtocol::Grpc {
        for (on, what) in [(access_log, "access_log"), (metrics, "metrics")] {
            if on {
                return Err(ConfigError::new(
                    format!("{AT}.{what}"),
                    "needs `protocol: grpc`: the gateway sends OTLP logs and metrics over gRPC only; point `endpoint` at the collector's gRPC port (4317) or leave this off",
                ));
            }
        }
    }
    Ok(OpenTelemetry {
        protocol,
        endpoint,
        headers,
        sampling_percent,
        service_name,
        access_log,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;
    use serde_json::{json, Value};

    fn with_otel(otel: Value) -> Value {
        json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}}],
            "general_settings": {"master_key": "sk-x", "opentelemetry": otel},
        })
    }

    fn error(otel: Value) -> (String, String) {
        let e = GatewayConfig::from_value(with_otel(otel)).unwrap_err();
        (e.field, e.message)
    }

    /// Defaults: OTLP/HTTP to `/v1/traces`, every request traced, service `llm-gateway`.
    #[test]
    fn defaults() {
        let c = GatewayConfig::from_value(with_otel(json!({"endpoint": "http://127.0.0.1:6006"})))
            .unwrap();
        let o = c.general.opentelemetry.clone().unwrap();
        assert_eq!(o.protocol, super::OtlpProtocol::HttpProtobuf);
        assert_eq!(o.endpoint.host, "127.0.0.1");
        assert_eq!(o.endpoint.port, 6006);
        assert_eq!(o.endpoint.base_path, "/v1/traces");
        assert_eq!(o.sampling_percent, 100.0);
        assert_eq!(o.service_name, "llm-gateway");
        assert!(!o.access_log && !o.metrics);
        // Secrets in headers stay in Envoy's environment, not in the filter's.
        assert_eq!(c.env_names(), Vec::<String>::new());
    }

    /// Langfuse: an HTTPS path kept as written and basic auth from the environment.
    #[test]
    fn langfuse_shape() {
        let c = GatewayConfig::from_value(with_otel(json!({
            "endpoint": "https://cloud.langfuse.com/api/public/otel/v1/traces",
            "headers": {"Authorization": "os.environ/LANGFUSE_AUTH", "x-project": "demo"},
            "sampling_rate": 0.25,
        })))
        .unwrap();
        let o = c.general.opentelemetry.unwrap();
        assert!(o.endpoint.tls);
        assert_eq!(o.endpoint.port, 443);
        assert_eq!(o.endpoint.base_path, "/api/public/otel/v1/traces");
        assert_eq!(
            o.headers,
            vec![
                (
                    "authorization".to_string(),
                    crate::config::model::Secret::Env("LANGFUSE_AUTH".into())
                ),
                (
                    "x-project".to_string(),
                    crate::config::model::Secret::Literal("demo".into())
                ),
            ]
        );
        assert_eq!(o.sampling_percent, 25.0);
    }

    /// Every error names the field and the fix.
    #[test]
    fn errors_name_the_field() {
        let at = |f: &str| format!("general_settings.opentelemetry.{f}");
        let cases = [
            (
                json!({"endpoint": "collector:4317"}),
                at("endpoint"),
                "http://",
            ),
            (
                json!({"endpoint": "http://c:4317/v1/traces", "protocol": "grpc"}),
                at("endpoint"),
                "gRPC",
            ),
            (
                json!({"endpoint": "http://c:4318", "protocol": "thrift"}),
                at("protocol"),
                "http/protobuf",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"Authorization": "Basic abc"}}),
                at("headers.Authorization"),
                "os.environ/NAME",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-api-key": "k"}}),
                at("headers.x-api-key"),
                "os.environ/NAME",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-a": "os.environ/1BAD"}}),
                at("headers.x-a"),
                "valid environment variable",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-a": "%REQ(x)%"}}),
                at("headers.x-a"),
                "`%`",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"bad header": "v"}}),
                at("headers.bad header"),
                "header name",
            ),
            (
                json!({"endpoint": "http://c:4318", "sampling_rate": 5}),
                at("sampling_rate"),
                "between 0 and 1",
            ),
            (
                json!({"endpoint": "http://c:4318", "service_name": ""}),
                at("service_name"),
                "1-128",
            ),
            (
                json!({"endpoint": "http://c:4318", "access_log": true}),
                at("access_log"),
                "protocol: grpc",
            ),
            (
                json!({"endpoint": "http://c:4318", "metrics": true}),
                at("metrics"),
                "protocol: grpc",
            ),
            (
                json!({"endpoint": "http://c:4318", "sample": 1}),
                at("sample"),
                "",
            ),
            (
                json!({}),
                "general_settings.opentelemetry".to_string(),
                "endpoint",
            ),
        ];
        for (otel, field, fix) in cases {
            let (f, m) = error(otel.clone());
            assert_eq!(f, field, "{otel}: {m}");
            assert!(m.contains(fix), "{otel}: {m}");
        }
    }

    /// Only what the client set is written, `max_completion_tokens` first.
    #[test]
    fn request_values() {
        let parse = |body: &str| crate::request::parse_chat_request(body.as_bytes()).unwrap();
        let none = parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#);
        assert!(super::request_span_values(&none).is_empty());
        let both = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":50,"max_completion_tokens":70,"temperature":0.7}"#,
        );
        assert_eq!(
            super::request_span_values(&both),
            vec![
                (super::REQUEST_MAX_TOKENS_STATE, "70".to_string()),
                (super::REQUEST_TEMPERATURE_STATE, "0.7".to_string()),
            ]
        );
    }

    /// gRPC with the OTLP access logger and stats sink.
    #[test]
    fn grpc_with_logs_and_metrics() {
        let c = GatewayConfig::from_value(with_otel(json!({
            "endpoint": "http://otel-collector:4317", "protocol": "grpc",
            "access_log": true, "metrics": true, "service_name": "gw-eu",
        })))
        .unwrap();
        let o = c.general.opentelemetry.unwrap();
        assert_eq!(o.protocol, super::OtlpProtocol::Grpc);
        assert!(o.access_log && o.metrics);
        assert_eq!(o.service_name, "gw-eu");
    }
}
