//! Limits shared by every Envoy replica, through Envoy's global rate limit service
//! (`general_settings.rate_limit_service`): the service's cluster, Envoy's
//! `envoy.filters.http.ratelimit` filter with the gateway's descriptors, and the body of
//! its 429 (Anthropic-shaped on the Messages endpoints, OpenAI-shaped elsewhere).
//!
//! Descriptors, under the configured domain, for a virtual key `K` of team `T` (none for
//! the master key, which no limit counts):
//!
//! | when | descriptor | hits |
//! | --- | --- | --- |
//! | request | `generic_key=requests, key=K` / `generic_key=requests, team=T` | 1 |
//! | request | `generic_key=tokens, key=K` / `... team=T` | 0: refused once over |
//! | request | `generic_key=cost_micro_usd, key=K` / `... team=T` | 0: refused once over |
//! | stream end | `generic_key=tokens, key=K` / `... team=T` | input + output tokens |
//! | stream end | `generic_key=cost_micro_usd, key=K` / `... team=T` | cost in micro-USD |
//!
//! Tokens and cost are only known when the answer ends, so they are counted then (Envoy's
//! `apply_on_stream_done`, which never refuses), and checked, without counting, on the
//! next request: a key over its tokens or budget is refused from its next request on.
//! The rate limits live in the filter's own config: Envoy ignores `hits_addend` on route
//! rate limits.

use serde_json::{json, Value};

use super::{anthropic_error_format, anthropic_request_cel, cel, openai_error_format};
use crate::config::RateLimitService;
use crate::routing::{COST_STATE, LIMIT_KEY_STATE, LIMIT_TEAM_STATE, TOTAL_TOKENS_STATE};

/// Name of the rate limit service's cluster.
pub const CLUSTER: &str = "llm_rate_limit_service";

/// `generic_key` value of the per-request descriptors.
pub const REQUESTS: &str = "requests";
/// `generic_key` value of the token descriptors.
pub const TOKENS: &str = "tokens";
/// `generic_key` value of the cost descriptors (micro-USD).
pub const COST: &str = "cost_micro_usd";

fn seconds(secs: f64) -> String {
    format!("{secs:.3}s")
}

/// The service's cluster: plaintext gRPC (HTTP/2).
pub fn cluster(rls: &RateLimitService) -> Value {
    super::service_cluster(CLUSTER, &rls.host, rls.port, true)
}

/// One rate limit: `generic_key=<what>` and the key's or team's name from filter state,
/// with its hits.
fn rate_limit(what: &str, descriptor_key: &str, state: &str, hits: Value, at_end: bool) -> Value {
    let mut limit = json!({
        "actions": [
            {"generic_key": {"descriptor_value": what}},
            // Filter state as the descriptor value (an HTTP matching input). Without it
            // (the master key) the descriptor is not sent at all.
            {"extension": {
                "name": descriptor_key,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.FilterStateInput",
                    "key": format!("wasm.{state}"),
                },
            }},
        ],
        "hits_addend": hits,
    });
    if at_end {
        limit["apply_on_stream_done"] = json!(true);
    }
    limit
}

/// Every rate limit of the filter, for keys then teams.
pub fn rate_limits() -> Vec<Value> {
    let state = |name: &str| json!({"format": format!("%FILTER_STATE(wasm.{name}:PLAIN)%")});
    let mut limits = Vec::new();
    for (key, who) in [("key", LIMIT_KEY_STATE), ("team", LIMIT_TEAM_STATE)] {
        limits.push(rate_limit(REQUESTS, key, who, json!({"number": 1}), false));
        // Checked, not counted: refused once the answers so far went over.
        limits.push(rate_limit(TOKENS, key, who, json!({"number": 0}), false));
        limits.push(rate_limit(COST, key, who, json!({"number": 0}), false));
        // Counted when the answer ends, from what the upstream instance published.
        limits.push(rate_limit(
            TOKENS,
            key,
            who,
            state(TOTAL_TOKENS_STATE),
            true,
        ));
        limits.push(rate_limit(COST, key, who, state(COST_STATE), true));
    }
    limits
}

/// The `envoy.filters.http.ratelimit` filter, placed after the downstream instance (which
/// authenticates and sets the key headers) and before the router.
pub fn http_filter(rls: &RateLimitService) -> Value {
    json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": rls.domain,
            "stage": 0,
            "request_type": "external",
            "timeout": seconds(rls.timeout_secs),
            "failure_mode_deny": rls.failure_mode_deny,
            // The service's limit, remaining and reset reach the client as X-RateLimit-*.
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limits": rate_limits(),
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": CLUSTER}},
                "transport_api_version": "V3",
            },
        },
    })
}

/// Adds the filter (before the router) and the 429 mapper to a rendered listener.
pub fn add_to_listener(listener: &mut Value, rls: &RateLimitService) {
    let Some(hcm) = listener
        .pointer_mut("/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_array_mut) {
        let router = filters
            .iter()
            .position(|f| f["name"] == "envoy.filters.http.router")
            .unwrap_or(filters.len());
        filters.insert(router, http_filter(rls));
    }
    if let Some(reply) = hcm.get_mut("local_reply_config") {
        prepend_local_reply_mappers(reply);
    }
}

/// Puts [`local_reply_mappers`] first in a `local_reply_config`: the generic mappers would
/// otherwise answer these replies as plain `api_error`s.
pub fn prepend_local_reply_mappers(local_reply_config: &mut Value) {
    if let Some(mappers) = local_reply_config
        .get_mut("mappers")
        .and_then(Value::as_array_mut)
    {
        for (i, m) in local_reply_mappers().into_iter().enumerate() {
            mappers.insert(i, m);
        }
    }
}

/// The bodies of the rate limit filter's own replies, each first in Anthropic's shape for
/// the Messages endpoints, then in OpenAI's: its 429 (response flag `RL`), a
/// `rate_limit_error` with a `Retry-After` from the service's reset time, and the 500 it
/// answers when the service cannot be reached and `failure_mode_deny` is set.
pub fn local_reply_mappers() -> Vec<Value> {
    let retry_after = json!([{
        "header": {"key": "retry-after", "value": "%RESP(X-RATELIMIT-RESET)%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }]);
    let limited = json!({"response_flag_filter": {"flags": ["RL"]}});
    // Envoy flags this reply (RLSE) only after it is sent, too late for a flag filter;
    // the response code details are set before.
    let unavailable = "response.code_details == 'rate_limiter_error'";
    let anthropic = anthropic_request_cel();
    vec![
        json!({
            "filter": {"and_filter": {"filters": [limited, cel(anthropic.clone())]}},
            "headers_to_add": retry_after,
            "body_format_override": anthropic_error_format(LIMITED_MESSAGE, "rate_limit_error"),
        }),
        json!({
            "filter": limited,
            "headers_to_add": retry_after,
            "body_format_override": openai_error_format(
                LIMITED_MESSAGE,
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
        }),
        json!({
            "filter": cel(format!("{anthropic} && {unavailable}")),
            "body_format_override": anthropic_error_format(UNAVAILABLE_MESSAGE, "api_error"),
        }),
        json!({
            "filter": cel(unavailable.to_string()),
            "body_format_override": openai_error_format(
                UNAVAILABLE_MESSAGE,
                "api_error",
                "rate_limit_service_unavailable",
            ),
        }),
    ]
}

const LIMITED_MESSAGE: &str = "Rate limit exceeded: this key or its team is over a requests, tokens or budget limit shared by all gateway replicas. Retry after the time in the Retry-After header.";
const UNAVAILABLE_MESSAGE: &str = "The gateway's rate limit service is unavailable, and the gateway is configured to refuse requests until it answers.";

#[cfg(test)]
mod tests {
    use super::*;

    fn rls() -> RateLimitService {
        RateLimitService {
            host: "127.0.0.1".into(),
            port: 8081,
            domain: "llm_gateway".into(),
            timeout_secs: 0.1,
            failure_mode_deny: false,
        }
    }

    /// Descriptors per key and per team: requests counted, tokens and cost checked at the
    /// request and counted at stream end from the filter state.
    #[test]
    fn descriptors() {
        let limits = rate_limits();
        assert_eq!(limits.len(), 10);
        let first = &limits[0];
        assert_eq!(
            first["actions"][0]["generic_key"]["descriptor_value"],
            "requests"
        );
        assert_eq!(first["actions"][1]["extension"]["name"], "key");
        assert_eq!(
            first["actions"][1]["extension"]["typed_config"]["key"],
            "wasm.llm_limit_key"
        );
        assert_eq!(first["hits_addend"], json!({"number": 1}));
        assert!(first.get("apply_on_stream_done").is_none());
        assert_eq!(limits[1]["hits_addend"], json!({"number": 0}));
        let tokens_at_end = &limits[3];
        assert_eq!(tokens_at_end["apply_on_stream_done"], true);
        assert_eq!(
            tokens_at_end["hits_addend"]["format"],
            "%FILTER_STATE(wasm.llm_total_tokens:PLAIN)%"
        );
        assert_eq!(
            limits[4]["hits_addend"]["format"],
            "%FILTER_STATE(wasm.llm_cost_micro_usd:PLAIN)%"
        );
        let team = &limits[5]["actions"][1]["extension"];
        assert_eq!(team["name"], "team");
        assert_eq!(team["typed_config"]["key"], "wasm.llm_limit_team");
    }

    /// In the rendered bootstrap: the filter sits between the downstream instance and the
    /// router, its cluster and the 429 body are there; nothing changes without the setting.
    #[test]
    fn in_the_bootstrap() {
        use crate::config::GatewayConfig;
        use crate::render::{render_bootstrap, RenderOptions};
        let mut v = json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}}],
            "general_settings": {"master_key": "sk-m"}
        });
        let options = RenderOptions {
            wasm_path: "x.wasm".into(),
        };
        let render = |v: &Value| {
            let c = GatewayConfig::from_value(v.clone()).unwrap();
            render_bootstrap(&c, v, &options)
        };
        let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
        let plain = render(&v);
        assert_eq!(
            plain.pointer(hcm).unwrap()["http_filters"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        v["general_settings"]["rate_limit_service"] =
            json!({"address": "rls.internal:8081", "domain": "gw", "timeout": 0.5});
        let b = render(&v);
        let hcm = b.pointer(hcm).unwrap();
        let names: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.wasm",
                "envoy.filters.http.ratelimit",
                "envoy.filters.http.router"
            ]
        );
        let rl = &hcm["http_filters"][1]["typed_config"];
        assert_eq!(rl["domain"], "gw");
        assert_eq!(rl["timeout"], "0.500s");
        assert_eq!(rl["rate_limits"], json!(rate_limits()));
        assert_eq!(rl["enable_x_ratelimit_headers"], "DRAFT_VERSION_03");
        // Route rate limits would lose their hits_addend: none are rendered.
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap();
        assert!(routes
            .iter()
            .all(|r| r["route"].get("rate_limits").is_none()));
        let mappers = hcm["local_reply_config"]["mappers"].as_array().unwrap();
        // First the service's 429 and 500 on the Messages endpoints in Anthropic's shape,
        // then in OpenAI's, before the generic mappers.
        assert_eq!(mappers[..4], local_reply_mappers()[..]);
        let anthropic = &mappers[0];
        assert_eq!(
            anthropic["filter"]["and_filter"]["filters"][0],
            json!({"response_flag_filter": {"flags": ["RL"]}})
        );
        assert_eq!(
            anthropic["filter"]["and_filter"]["filters"][1]["extension_filter"]["typed_config"]
                ["expression"],
            super::super::anthropic_request_cel()
        );
        assert_eq!(
            anthropic["body_format_override"]["json_format"]["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            anthropic["body_format_override"]["json_format"]["type"],
            "error"
        );
        let rl_mapper = &mappers[1];
        assert_eq!(
            rl_mapper["filter"],
            json!({"response_flag_filter": {"flags": ["RL"]}})
        );
        assert_eq!(anthropic["headers_to_add"], rl_mapper["headers_to_add"]);
        assert_eq!(
            rl_mapper["body_format_override"]["json_format"]["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            mappers[2]["body_format_override"]["json_format"]["error"]["type"],
            "api_error"
        );
        assert!(mappers[2]["filter"]
            .to_string()
            .contains("rate_limiter_error"));
        assert_eq!(
            mappers[3]["body_format_override"]["json_format"]["error"]["code"],
            "rate_limit_service_unavailable"
        );
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let c = clusters.iter().find(|c| c["name"] == CLUSTER).unwrap();
        assert_eq!(c["type"], "STRICT_DNS");
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"],
            json!({"address": "rls.internal", "port_value": 8081})
        );
        assert_eq!(
            clusters.len(),
            plain["static_resources"]["clusters"]
                .as_array()
                .unwrap()
                .len()
                + 1
        );
    }

    /// The filter talks gRPC v3 to the cluster; the cluster speaks HTTP/2.
    #[test]
    fn filter_and_cluster() {
        let f = http_filter(&rls());
        let c = &f["typed_config"];
        assert_eq!(c["domain"], "llm_gateway");
        assert_eq!(c["timeout"], "0.100s");
        assert_eq!(c["failure_mode_deny"], false);
        assert_eq!(c["request_type"], "external");
        assert_eq!(
            c["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"],
            CLUSTER
        );
        assert_eq!(c["rate_limit_service"]["transport_api_version"], "V3");
        let cl = cluster(&rls());
        assert_eq!(cl["type"], "STATIC");
        assert!(cl["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some());
    }
}
