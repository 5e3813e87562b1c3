//! The JSON access log on Envoy's stdout (and, with tracing, the same record through
//! Envoy's OTLP access logger): one line per request with the filter's facts.

use serde_json::{json, Value};

use crate::config::GatewayConfig;
use crate::routing::{METADATA_DEPLOYMENT_KEY, METADATA_NAMESPACE, OPERATION_STATE};

/// `%FILTER_STATE(...)%` of a value the module writes (`wasm.<name>`).
pub fn filter_state(name: &str) -> String {
    format!("%FILTER_STATE(wasm.{name}:PLAIN)%")
}

/// A count the module writes (`wasm.<name>`, decimal text) as a JSON number when `numbers`
/// (`general_settings.access_log_numbers`), else as its text. Envoy 1.40 gives filter state
/// to a JSON log only as text; a typed CEL expression keeps the number it converts to
/// (`null` when the module wrote none), at about 7,700 instructions an expression.
pub fn filter_state_number(name: &str, numbers: bool) -> String {
    if numbers {
        format!("%TYPED_CEL(int(string(filter_state['wasm.{name}'])))%")
    } else {
        filter_state(name)
    }
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
/// decimal text, or JSON numbers with `access_log_numbers` ([`filter_state_number`]);
/// `null` when absent.
///
/// `operation` is the API the client called (`embeddings`, `messages`, `count_tokens`); a
/// chat request names it only with tracing (`null` otherwise: the write is a dear host
/// call). With tracing, every line also names its trace (`trace_id`), to join it to its
/// spans.
pub fn access_log_fields(config: &GatewayConfig) -> Value {
    let n = |name: &str| filter_state_number(name, config.general.access_log_numbers);
    let mut fields = json!({
        "time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "status": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "model": route_metadata("model"),
        "provider": endpoint_metadata("provider"),
        "upstream_model": endpoint_metadata("model"),
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "prompt_tokens": n("llm_prompt_tokens"),
        "completion_tokens": n("llm_completion_tokens"),
        "cached_tokens": n("llm_cached_tokens"),
        "cache_write_tokens": n("llm_cache_write_tokens"),
        "reasoning_tokens": n("llm_reasoning_tokens"),
        "cost_micro_usd": n("llm_cost_micro_usd"),
        "deployment": endpoint_metadata(METADATA_DEPLOYMENT_KEY),
        "key": filter_state("llm_key"),
        "team": filter_state("llm_team"),
        "operation": filter_state(OPERATION_STATE),
        "response_flags": "%RESPONSE_FLAGS%",
        "upstream_host": "%UPSTREAM_HOST%",
    });
    if config.general.opentelemetry.is_some() {
        fields["trace_id"] = json!("%TRACE_ID%");
    }
    if config.general.spend_store.is_some() {
        // `ok`, or how the budget was decided without the store (`unavailable_open`,
        // `unavailable_closed`); null for requests with no budget to share.
        fields["spend_store"] = json!(filter_state(crate::limits::ledger::DECISION_STATE));
    }
    if config.general.response_cache.is_some() {
        // `hit` or `miss` for requests the cache applies to.
        fields["cache"] = json!(filter_state("llm_cache"));
    }
    fields
}

/// The CEL formatter, allowed to turn the module's filter state (bytes) into text for
/// [`filter_state_number`]: the only conversion its expressions make, on values of a few
/// digits.
pub fn cel_formatter() -> Value {
    json!({
        "name": "envoy.formatter.cel",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel",
            "cel_config": {"enable_string_conversion": true},
        },
    })
}

/// The JSON access log on stdout, one line of [`access_log_fields`] per request.
pub fn access_log(config: &GatewayConfig) -> Value {
    json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {
                "json_format": access_log_fields(config),
                "formatters": [cel_formatter()],
            },
        },
    }])
}
