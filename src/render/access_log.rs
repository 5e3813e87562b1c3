//! The JSON access log on Envoy's stdout (and, with tracing, the same record through
//! Envoy's OTLP access logger): one line per request with the filter's facts.

use serde_json::{json, Value};

use crate::config::GatewayConfig;
use crate::routing::{METADATA_DEPLOYMENT_KEY, METADATA_NAMESPACE, OPERATION_METADATA_KEY};

/// `%FILTER_STATE(...)%` of a value the module writes (`wasm.<name>`).
pub fn filter_state(name: &str) -> String {
    format!("%FILTER_STATE(wasm.{name}:PLAIN)%")
}

/// `%UPSTREAM_METADATA(...)%` of the answering endpoint's gateway metadata.
pub fn endpoint_metadata(key: &str) -> String {
    format!("%UPSTREAM_METADATA({METADATA_NAMESPACE}:{key})%")
}

/// `%METADATA(ROUTE:...)%` of the route's gateway metadata (the alias, the operation).
pub fn route_metadata(key: &str) -> String {
    format!("%METADATA(ROUTE:{METADATA_NAMESPACE}:{key})%")
}

/// The fields of the JSON access-log line: the filter's facts. Who answered comes from
/// the last attempt's endpoint metadata and Envoy's own attempt count, so the filter
/// writes only what Envoy cannot know (each write is a host call). Counts and cost are
/// decimal strings, `null` when absent: Envoy 1.40 gives the module's filter state to a
/// JSON log only as text (its `:TYPED` form is a protobuf `BytesValue`, and the CEL
/// formatter prints text too).
///
/// With tracing, every line also names its operation and its trace (`trace_id`), to join
/// it to its spans. Without, they are left out: the operation's route metadata lookup
/// alone costs Envoy about 3,900 instructions a request, and there is no trace.
pub fn access_log_fields(config: &GatewayConfig) -> Value {
    let mut fields = json!({
        "time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "status": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "model": route_metadata("model"),
        "provider": endpoint_metadata("provider"),
        "upstream_model": endpoint_metadata("model"),
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "prompt_tokens": filter_state("llm_prompt_tokens"),
        "completion_tokens": filter_state("llm_completion_tokens"),
        "cached_tokens": filter_state("llm_cached_tokens"),
        "cache_write_tokens": filter_state("llm_cache_write_tokens"),
        "reasoning_tokens": filter_state("llm_reasoning_tokens"),
        "cost_micro_usd": filter_state("llm_cost_micro_usd"),
        "deployment": endpoint_metadata(METADATA_DEPLOYMENT_KEY),
        "key": filter_state("llm_key"),
        "team": filter_state("llm_team"),
        "response_flags": "%RESPONSE_FLAGS%",
        "upstream_host": "%UPSTREAM_HOST%",
    });
    if config.general.opentelemetry.is_some() {
        fields["operation"] = json!(route_metadata(OPERATION_METADATA_KEY));
        fields["trace_id"] = json!("%TRACE_ID%");
    }
    fields
}

/// The JSON access log on stdout, one line of [`access_log_fields`] per request.
pub fn access_log(config: &GatewayConfig) -> Value {
    json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"json_format": access_log_fields(config)},
        },
    }])
}
