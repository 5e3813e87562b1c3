//! Renders the complete Envoy bootstrap from a gateway config (host side only).
//!
//! The output is plain data (`serde_json::Value`) that the CLI writes as YAML. Everything
//! the two filter instances rely on is produced here, from the same validated config:
//! one route per alias matching the routing header, one cluster per deployment with the
//! endpoint metadata naming it, TLS with SNI and host rewrite for public hosts, and the
//! wasm filter twice with `allow_on_headers_stop_iteration` and a fail-closed,
//! self-reloading failure policy.
//!
//! The pieces (filter configs, router, routes, clusters, access log) are public so that
//! [`crate::render::istio`] puts the very same ones into Istio resources.

use serde_json::{json, Value};

use crate::config::chains::{Balancing, RoutePlan, Tier};
use crate::config::model::{Deployment, Endpoint};
use crate::config::{FilterRole, GatewayConfig};
use crate::metrics::STAT_TAGS;
use crate::routing::{
    LOCAL_REPLY_DETAILS, METADATA_DEPLOYMENT_KEY, METADATA_NAMESPACE, OPERATION_METADATA_KEY,
    OPERATION_STATE, ROUTE_HEADER,
};

pub mod access_log;
pub mod aws_signing;
pub mod istio;
pub mod oci;
pub mod ratelimit;
pub mod tracing;

pub use access_log::{access_log, access_log_fields};

/// Options that depend on where the bootstrap runs rather than on the gateway config.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Path of the `.wasm` file as Envoy will see it.
    pub wasm_path: String,
}

/// Name of the shared Wasm VM (identical `vm_config` lets both instances share one VM).
pub const VM_ID: &str = "llm_gateway";

/// The plugin configuration JSON for one instance: its role and the gateway config.
pub fn plugin_configuration(role: FilterRole, gateway_json: &Value) -> Value {
    let role = match role {
        FilterRole::Downstream => "downstream",
        FilterRole::Upstream => "upstream",
    };
    json!({"role": role, "config": gateway_json})
}

/// Envoy's least-request policy comparing every deployment of the tier, not two drawn at
/// random (its default): with two deployments, two draws pick the slow one a quarter of
/// the time even when it is busier. With unequal weights Envoy weighs each deployment by
/// `weight / (requests in flight + 1)` instead.
fn least_request_policy() -> Value {
    json!({"policies": [{"typed_extension_config": {
        "name": "envoy.load_balancing_policies.least_request",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
            "selection_method": "FULL_SCAN",
        },
    }}]})
}

/// An Envoy (protobuf JSON) duration: `5s`, `1.500s`.
pub fn duration(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}s", secs as u64)
    } else {
        format!("{secs:.3}s")
    }
}

/// Name of each filter instance (its plugin name and root id).
pub fn filter_name(role: FilterRole) -> &'static str {
    match role {
        FilterRole::Downstream => "llm_gateway_downstream",
        FilterRole::Upstream => "llm_gateway_upstream",
    }
}

/// The `envoy.filters.http.wasm` typed config of one instance, loading the module from
/// `code` (an Envoy `AsyncDataSource`): every deployment form (a file here, a fetched
/// module under Istio) shares the flag, the failure policy and the VM settings.
pub fn wasm_typed_config(
    config: &GatewayConfig,
    gateway_json: &Value,
    role: FilterRole,
    code: Value,
) -> Value {
    let name = filter_name(role);
    let configuration = plugin_configuration(role, gateway_json).to_string();
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name,
            "root_id": name,
            // Headers must wait for the body: routing and translation depend on it.
            "allow_on_headers_stop_iteration": true,
            // A trapped VM reloads instead of failing every request or opening the gateway.
            "failure_policy": "FAIL_RELOAD",
            "reload_config": {"backoff": {"base_interval": "0.1s", "max_interval": "1s"}},
            "vm_config": {
                "vm_id": VM_ID,
                "runtime": "envoy.wasm.runtime.v8",
                "code": code,
                "environment_variables": {"host_env_keys": config.env_names()},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
        },
    })
}

fn wasm_filter(
    config: &GatewayConfig,
    gateway_json: &Value,
    role: FilterRole,
    options: &RenderOptions,
) -> Value {
    let code = json!({"local": {"filename": options.wasm_path}});
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": wasm_typed_config(config, gateway_json, role, code),
    })
}

fn route_for(config: &GatewayConfig, plan: &RoutePlan) -> Value {
    let tiers: Vec<&Tier> = plan
        .tiers
        .iter()
        .filter_map(|t| config.tiers.get(*t))
        .collect();
    let timeout = tiers
        .iter()
        .flat_map(|t| t.deployments.iter())
        .filter_map(|d| config.deployments.get(*d))
        .map(|d| d.timeout_secs)
        .fold(0.0_f64, f64::max);
    let mut route = json!({
        "cluster": plan.cluster(&config.tiers),
        "timeout": duration(timeout),
        "auto_host_rewrite": true,
    });
    // One attempt per tier (the composite cluster sends attempt n to tier n), or, within
    // a single tier, one attempt per deployment, each to a host not tried yet; each
    // `num_retries` times more. Never more: a composite cluster out of children answers
    // "no healthy upstream" and would hide the last provider's real error.
    let single_tier_hosts = match tiers.as_slice() {
        [one] => one.deployments.len(),
        _ => 0,
    };
    let tries_per_tier = 1 + config.router.num_retries as usize;
    let attempts = tries_per_tier
        * if tiers.len() > 1 {
            tiers.len()
        } else {
            single_tier_hosts.max(1)
        };
    if attempts > 1 {
        let mut policy = json!({
            "retry_on": "5xx,reset,connect-failure,refused-stream,retriable-status-codes",
            "retriable_status_codes": [429],
            "num_retries": attempts - 1,
            // Every retry goes to another deployment (the next tier, or a host not tried
            // yet), so waiting spares no one: without this Envoy waits up to 25 ms before
            // the first fallback (its default back-off), ~12 ms on average.
            "retry_back_off": {"base_interval": RETRY_BACK_OFF, "max_interval": RETRY_BACK_OFF},
        });
        if tries_per_tier > 1 {
            // A retry may reach the deployment that refused: wait as long as its 429 or
            // 503 asked (`Retry-After: <seconds>`), up to a bound.
            policy["rate_limited_retry_back_off"] = json!({
                "reset_headers": [{"name": "retry-after", "format": "SECONDS"}],
                "max_interval": RETRY_AFTER_MAX,
            });
        }
        if single_tier_hosts > 1 && tries_per_tier == 1 {
            policy["retry_host_predicate"] = json!([{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }]);
            policy["host_selection_retry_max_attempts"] = json!(5);
        }
        if let Some(t) = config.router.per_try_timeout_secs {
            policy["per_try_timeout"] = json!(duration(t));
        }
        if let Some(t) = config.router.per_try_idle_timeout_secs {
            policy["per_try_idle_timeout"] = json!(duration(t));
        }
        route["retry_policy"] = policy;
    }
    json!({
        "name": format!("model:{}", plan.key),
        "match": {
            "prefix": "/",
            "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": plan.key}}],
        },
        "route": route,
        // The alias (and with tracing the operation), for the access log and spans: the
        // filter need not write them per request.
        "metadata": {"filter_metadata": {METADATA_NAMESPACE: alias_route_metadata(config, &plan.alias)}},
        // Retries replay the buffered body; it must hold the largest accepted request.
        "request_body_buffer_limit": buffer_limit(config),
    })
}

/// The GenAI operation of every alias route (`gen_ai.operation.name`).
pub const CHAT_OPERATION: &str = "chat";

/// An alias route's gateway metadata: the alias, and with tracing the operation.
fn alias_route_metadata(config: &GatewayConfig, alias: &str) -> Value {
    let mut metadata = json!({"model": alias});
    if config.general.opentelemetry.is_some() {
        metadata[OPERATION_METADATA_KEY] = json!(CHAT_OPERATION);
    }
    metadata
}

/// Envoy's back-off before a retry (it takes no zero): a fallback starts at once.
pub const RETRY_BACK_OFF: &str = "0.001s";

/// The longest a retry waits for a provider's `Retry-After` (`num_retries`).
pub const RETRY_AFTER_MAX: &str = "30s";

/// Envoy's per-stream buffer limit: well above the gateway's own body limit, so that the
/// filter, not Envoy, refuses an oversized request (with an OpenAI-shaped 413). One read
/// can bring a lot of data at once, hence the generous margin; it is a cap, not an
/// allocation.
pub fn buffer_limit(config: &GatewayConfig) -> u64 {
    config.general.max_request_body_bytes * 2 + 1024 * 1024
}

/// Envoy's own local replies (no healthy upstream, upstream timeout, connection failure,
/// an answer too large to buffer...) get the error shape of the API the client called:
/// Anthropic's on the Messages endpoints ([`anthropic_local_reply_mappers`], first), OpenAI's
/// everywhere else. The filter's own replies are in the right shape already: they carry
/// [`LOCAL_REPLY_DETAILS`] as response code details, and every mapper that quotes a reply's
/// body skips them, so that no error body is ever wrapped in another error's message. The
/// bodies Envoy's config writes itself (the unrouted route's) are plain text for the same
/// reason.
pub fn local_reply_config() -> Value {
    // OpenAI's `error.code`: what Envoy says happened (`response_timeout`, ...).
    const DETAILS: &str = "%RESPONSE_CODE_DETAILS%";
    let not_the_filters = not_the_filters();
    let flags = json!({"response_flag_filter": {"flags": [
        "UH", "UF", "UT", "URX", "UO", "NR", "UC", "LR", "UR", "UMSDR", "DPE", "UPE", "NC", "OM", "SI",
    ]}});
    let mut mappers = anthropic_local_reply_mappers();
    mappers.extend([
        json!({
            "filter": {"and_filter": {"filters": [flags, cel(not_the_filters.clone())]}},
            "body_format_override": openai_error_format("%LOCAL_REPLY_BODY%", "api_error", DETAILS),
        }),
        json!({
            // A provider's answer larger than Envoy buffers: the provider's fault, a 502.
            "filter": cel(PAYLOAD_TOO_LARGE_CEL.to_string()),
            "status_code": 502,
            "body_format_override": openai_error_format(PAYLOAD_TOO_LARGE_MESSAGE, "api_error", DETAILS),
        }),
        json!({
            // The unrouted route's plain-text 404.
            "filter": cel("response.code_details == 'direct_response'".to_string()),
            "body_format_override": openai_error_format("%LOCAL_REPLY_BODY%", "not_found_error", DETAILS),
        }),
        json!({
            // Any other error Envoy answers itself, without a response flag.
            "filter": cel(format!("response.code >= 400 && {not_the_filters}")),
            "body_format_override": openai_error_format("%LOCAL_REPLY_BODY%", "api_error", DETAILS),
        }),
    ]);
    json!({"mappers": mappers})
}

/// A local reply mapper's (or an access log's) filter on a CEL expression.
pub fn cel(expression: String) -> Value {
    json!({"extension_filter": {
        "name": "envoy.access_loggers.extension_filters.cel",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": expression,
        },
    }})
}

/// CEL: the reply is not one of the filter's own (those are in their final shape).
pub fn not_the_filters() -> String {
    format!("response.code_details != '{LOCAL_REPLY_DETAILS}'")
}

/// CEL: the client called Anthropic's Messages API (`/v1/messages`, `.../count_tokens`).
///
/// The downstream instance names the API in filter state before anything can fail
/// upstream. The request's `:path` cannot tell: the upstream instance rewrites it per
/// attempt, in the header map the local reply sees (a Messages request bridged to OpenAI
/// shows `/v1/chat/completions`, a chat request to Anthropic `/v1/messages`). A reply
/// before the filter ran (an HTTP codec error) has no request headers to look at either;
/// it gets OpenAI's shape.
pub fn anthropic_request_cel() -> String {
    use crate::messages_api::InboundApi;
    format!(
        "filter_state['wasm.{OPERATION_STATE}'] in [b'{}', b'{}']",
        InboundApi::Messages.operation(),
        InboundApi::CountTokens.operation()
    )
}

/// The OpenAI error body (`error.code` is Envoy's response code details or a fixed code).
pub fn openai_error_format(message: &str, kind: &str, code: &str) -> Value {
    json!({
        "json_format": {"error": {"message": message, "type": kind, "param": null, "code": code}},
        "content_type": "application/json",
    })
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
pub fn anthropic_error_format(message: &str, kind: &str) -> Value {
    json!({
        "json_format": {"type": "error", "error": {"type": kind, "message": message}},
        "content_type": "application/json",
    })
}

const PAYLOAD_TOO_LARGE_CEL: &str = "response.code_details == 'response_payload_too_large'";
const PAYLOAD_TOO_LARGE_MESSAGE: &str =
    "The provider's answer is larger than this gateway can buffer.";

/// Envoy's local replies on the Messages endpoints, in Anthropic's error shape with the
/// error type its SDKs expect for the status (the module's own table,
/// [`crate::messages_api::error_type`]): 404 `not_found_error`, 413 `request_too_large`,
/// 429 `rate_limit_error`, 503 `overloaded_error`, 504 `timeout_error`, any other error
/// `api_error`. The status is kept, so the SDK raises the same exception class as for an
/// Anthropic answer with that status.
pub fn anthropic_local_reply_mappers() -> Vec<Value> {
    let anthropic = anthropic_request_cel();
    let not_the_filters = not_the_filters();
    let mut mappers = vec![json!({
        "filter": cel(format!("{anthropic} && {PAYLOAD_TOO_LARGE_CEL}")),
        "status_code": 502,
        "body_format_override": anthropic_error_format(PAYLOAD_TOO_LARGE_MESSAGE, "api_error"),
    })];
    for (kind, statuses) in anthropic_error_types() {
        let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
        mappers.push(json!({
            "filter": cel(format!(
                "{anthropic} && {not_the_filters} && response.code in [{}]",
                statuses.join(", ")
            )),
            "body_format_override": anthropic_error_format("%LOCAL_REPLY_BODY%", kind),
        }));
    }
    mappers.push(json!({
        "filter": cel(format!("{anthropic} && {not_the_filters} && response.code >= 400")),
        "body_format_override": anthropic_error_format("%LOCAL_REPLY_BODY%", "api_error"),
    }));
    mappers
}

/// The error statuses grouped by Anthropic error type, `api_error` (the rest) left out,
/// in status order.
fn anthropic_error_types() -> Vec<(&'static str, Vec<u16>)> {
    let mut groups: Vec<(&'static str, Vec<u16>)> = Vec::new();
    for status in 400..600 {
        let kind = crate::messages_api::error_type(status);
        if kind == "api_error" {
            continue;
        }
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, statuses)) => statuses.push(status),
            None => groups.push((kind, vec![status])),
        }
    }
    groups
}

pub(crate) fn tls_socket(config: &GatewayConfig, ep: &Endpoint) -> Value {
    let mut validation = json!({"trusted_ca": {"filename": config.general.ca_bundle}});
    if !ep.host_is_ip() {
        validation["match_typed_subject_alt_names"] =
            json!([{"san_type": "DNS", "matcher": {"exact": ep.host}}]);
    }
    let mut tls = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"validation_context": validation},
    });
    // SNI is set per deployment: Envoy's auto_sni would use the client's Host instead.
    if !ep.host_is_ip() {
        tls["sni"] = json!(ep.host);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": tls})
}

/// Limits high enough that Envoy never drops a request or a fallback on its own: the
/// default of 3 concurrent retries would refuse most fallbacks under load.
fn circuit_breakers() -> Value {
    json!({"thresholds": [{
        "priority": "DEFAULT",
        "max_connections": 100000,
        "max_pending_requests": 100000,
        "max_requests": 100000,
        "max_retries": 100000,
    }]})
}

fn tier_cluster(config: &GatewayConfig, tier: &Tier) -> Value {
    let members: Vec<&Deployment> = tier
        .deployments
        .iter()
        .filter_map(|d| config.deployments.get(*d))
        .collect();
    let tls_hosts: Vec<&Endpoint> = members
        .iter()
        .map(|d| &d.endpoint)
        .filter(|e| e.tls)
        .collect();
    let one_socket =
        tls_hosts.len() == members.len() && tls_hosts.windows(2).all(|w| w[0].host == w[1].host);
    let lb_endpoints: Vec<Value> = members
        .iter()
        .map(|d| {
            let ep = &d.endpoint;
            json!({
                "endpoint": {
                    "address": {"socket_address": {"address": ep.host, "port_value": ep.port}},
                    // Used by the route's auto_host_rewrite: the provider sees its own Host.
                    "hostname": ep.host,
                },
                "load_balancing_weight": d.weight,
                "metadata": {"filter_metadata": {
                    METADATA_NAMESPACE: {
                        METADATA_DEPLOYMENT_KEY: d.id,
                        "provider": d.provider.name(),
                        "model": d.upstream_model,
                    },
                    "envoy.transport_socket_match": {"deployment": d.id},
                }},
            })
        })
        .collect();
    let all_ip = members.iter().all(|d| d.endpoint.host_is_ip());
    let mut cluster = json!({
        "name": tier.cluster,
        "type": if all_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "5s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {"cluster_name": tier.cluster, "endpoints": [{"lb_endpoints": lb_endpoints}]},
        "circuit_breakers": circuit_breakers(),
        // LiteLLM-style cool-down: a deployment that keeps failing is taken out for a while.
        "outlier_detection": {
            "consecutive_5xx": config.router.allowed_fails,
            "base_ejection_time": duration(config.router.cooldown_secs),
            "max_ejection_time": duration(config.router.cooldown_secs * 10.0),
            "max_ejection_percent": 100,
            "interval": "1s",
        },
    });
    // Envoy's default, ROUND_ROBIN, is `simple-shuffle`; only another policy is written.
    if config.router.balancing == Balancing::LeastBusy {
        cluster["load_balancing_policy"] = least_request_policy();
    }
    if one_socket {
        if let Some(ep) = tls_hosts.first() {
            cluster["transport_socket"] = tls_socket(config, ep);
        }
    } else if !tls_hosts.is_empty() {
        let matches: Vec<Value> = members
            .iter()
            .filter(|d| d.endpoint.tls)
            .map(|d| {
                json!({
                    "name": d.id,
                    "match": {"deployment": d.id},
                    "transport_socket": tls_socket(config, &d.endpoint),
                })
            })
            .collect();
        cluster["transport_socket_matches"] = json!(matches);
    }
    cluster
}

fn chain_cluster(config: &GatewayConfig, plan: &RoutePlan) -> Value {
    // Attempt n goes to child n: each tier once, and `num_retries` times more, before
    // the next.
    let tries_per_tier = 1 + config.router.num_retries as usize;
    let children: Vec<Value> = plan
        .tiers
        .iter()
        .filter_map(|t| config.tiers.get(*t))
        .flat_map(|t| std::iter::repeat_n(json!({"name": t.cluster}), tries_per_tier))
        .collect();
    json!({
        "name": plan.cluster(&config.tiers),
        "connect_timeout": "5s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.composite",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.composite.v3.ClusterConfig",
                "clusters": children,
            },
        },
        "circuit_breakers": circuit_breakers(),
    })
}

/// One route per route plan, matching the routing header the downstream instance sets.
pub fn alias_routes(config: &GatewayConfig) -> Vec<Value> {
    config.routes.iter().map(|r| route_for(config, r)).collect()
}

/// The last route: what a request matches before the downstream instance has chosen its
/// route, with the stream's buffer limit. Never answered in practice: the downstream
/// instance answers unknown models itself.
pub fn unrouted_route(config: &GatewayConfig) -> Value {
    json!({
        "name": "unrouted",
        "match": {"prefix": "/"},
        // Matched while the downstream instance buffers the body, before it sets the route.
        "request_body_buffer_limit": buffer_limit(config),
        "direct_response": {
            "status": 404,
            "body": {"inline_string": UNROUTED_BODY},
        },
    })
}

/// Body of the answer for a request no route matched: plain text, which
/// [`local_reply_config`] puts in the OpenAI error shape.
pub const UNROUTED_BODY: &str = "no route for this request";

/// The router's typed config, with `upstream` (the upstream instance) run per attempt,
/// then the AWS signers of the Bedrock deployments ([`aws_signing`]), before the upstream
/// codec.
pub fn router_typed_config(config: &GatewayConfig, upstream: Value) -> Value {
    let mut filters = vec![upstream];
    filters.extend(aws_signing::signers(config));
    filters.push(json!({
        "name": "envoy.filters.http.upstream_codec",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
    }));
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        // Providers need not see Envoy's x-envoy-* request headers.
        "suppress_envoy_headers": true,
        "upstream_http_filters": filters,
    })
}

fn listener(config: &GatewayConfig, gateway_json: &Value, options: &RenderOptions) -> Value {
    let mut listener = listener_without_rate_limit(config, gateway_json, options);
    if let Some(rls) = &config.general.rate_limit_service {
        ratelimit::add_to_listener(&mut listener, rls);
    }
    if let Some(otel) = &config.general.opentelemetry {
        tracing::add_to_listener(config, &mut listener, otel);
    }
    listener
}

fn listener_without_rate_limit(
    config: &GatewayConfig,
    gateway_json: &Value,
    options: &RenderOptions,
) -> Value {
    let g = &config.general;
    let mut routes = alias_routes(config);
    routes.push(unrouted_route(config));
    json!({
        "name": "llm_gateway",
        "address": {"socket_address": {"address": g.listen_address, "port_value": g.listen_port}},
        // The downstream instance buffers the body before the route is known, so the
        // stream's buffer limit comes from here, not from the alias routes.
        "per_connection_buffer_limit_bytes": buffer_limit(config),
        // A second Envoy on the same port must fail to start, not silently take a share
        // of the traffic.
        "enable_reuse_port": false,
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "llm_gateway",
                    "codec_type": "AUTO",
                    "access_log": access_log(config),
                    "local_reply_config": local_reply_config(),
                    "route_config": {
                        "name": "llm_gateway",
                        "virtual_hosts": [{"name": "llm_gateway", "domains": ["*"], "routes": routes}],
                    },
                    "http_filters": [
                        wasm_filter(config, gateway_json, FilterRole::Downstream, options),
                        {
                            "name": "envoy.filters.http.router",
                            "typed_config": router_typed_config(config, wasm_filter(config, gateway_json, FilterRole::Upstream, options)),
                        },
                    ],
                },
            }],
        }],
    })
}

/// Every cluster: one per tier (endpoints carry the deployment metadata the upstream
/// instance reads), then one composite cluster per route of several tiers.
pub fn clusters(config: &GatewayConfig) -> Vec<Value> {
    let mut clusters: Vec<Value> = config
        .tiers
        .iter()
        .map(|t| tier_cluster(config, t))
        .collect();
    for plan in config.routes.iter().filter(|r| r.tiers.len() > 1) {
        clusters.push(chain_cluster(config, plan));
    }
    if let Some(rls) = &config.general.rate_limit_service {
        clusters.push(ratelimit::cluster(rls));
    }
    if let Some(otel) = &config.general.opentelemetry {
        clusters.push(tracing::cluster(config, otel));
    }
    if config.fetches_gcp_tokens() {
        let ep = &config.general.gcp_token_url;
        let mut cluster = service_cluster(
            crate::provider::vertex::token::CLUSTER,
            &ep.host,
            ep.port,
            false,
        );
        if ep.tls {
            cluster["transport_socket"] = tls_socket(config, ep);
        }
        clusters.push(cluster);
    }
    if let Some(store) = &config.general.spend_store {
        // webdis: plain HTTP/1.1.
        clusters.push(service_cluster(
            crate::limits::ledger::CLUSTER,
            &store.host,
            store.port,
            false,
        ));
    }
    clusters
}

/// A cluster for one service the gateway's Envoy talks to itself (the rate limit
/// service, the OpenTelemetry collector): one endpoint, HTTP/2 when it speaks gRPC.
pub fn service_cluster(name: &str, host: &str, port: u16, grpc: bool) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": host,
                "port_value": port,
            }}}}]}],
        },
    });
    if grpc {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        });
    }
    cluster
}

/// Envoy `stats_tags` that turn the filter's `.label=value;` stat name segments into
/// Prometheus labels.
pub fn stats_tags() -> Vec<Value> {
    STAT_TAGS
        .iter()
        .map(|(tag, regex)| json!({"tag_name": tag, "regex": regex}))
        .collect()
}

/// The parts of the bootstrap that do not depend on static or dynamic resources.
fn bootstrap_base(config: &GatewayConfig) -> Value {
    let mut base = json!({
        // Histograms reach /stats/prometheus on each flush.
        "stats_flush_interval": "5s",
        // Turn the filter's `.label=value;` stat name segments into Prometheus labels.
        "stats_config": {"stats_tags": stats_tags()},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": config.general.admin_port}}},
        "memory_allocator_manager": memory_release(),
    });
    if let Some(sink) = stats_sinks(config) {
        base["stats_sinks"] = sink;
    }
    base
}

/// The bootstrap's `stats_sinks`: the OTLP stats sink when asked for.
pub fn stats_sinks(config: &GatewayConfig) -> Option<Value> {
    let otel = config
        .general
        .opentelemetry
        .as_ref()
        .filter(|o| o.metrics)?;
    Some(json!([tracing::stats_sink(otel)]))
}

/// Hands memory the allocator holds free back to the system, up to 16 MiB a second.
/// Compiling the module leaves tens of MiB of freed pages in tcmalloc, which it keeps by
/// default; they are released within seconds of start-up.
pub fn memory_release() -> Value {
    json!({"bytes_to_release": 16 * 1024 * 1024, "memory_release_interval": "1s"})
}

/// Renders the Envoy bootstrap with static resources. `gateway_json` is the gateway
/// config document as given (it becomes the plugin configuration); `config` is its
/// validated form.
pub fn render_bootstrap(
    config: &GatewayConfig,
    gateway_json: &Value,
    options: &RenderOptions,
) -> Value {
    let mut b = bootstrap_base(config);
    b["static_resources"] = json!({
        "listeners": [listener(config, gateway_json, options)],
        "clusters": clusters(config),
    });
    b
}

/// A bootstrap whose listener and clusters Envoy reads from `lds.yaml` and `cds.yaml` in
/// `dir` and reloads whenever they are replaced (atomically, by rename): a changed gateway
/// config (a revoked key, a new model) takes effect without restarting Envoy, and the
/// filter's shared state (spend, counters) survives the reload.
pub struct DynamicBootstrap {
    /// The bootstrap (`envoy.yaml`).
    pub bootstrap: Value,
    /// The listener discovery file (`lds.yaml`).
    pub lds: Value,
    /// The cluster discovery file (`cds.yaml`).
    pub cds: Value,
}

/// Renders [`DynamicBootstrap`] for files kept in `dir` (as Envoy will see the path).
pub fn render_dynamic(
    config: &GatewayConfig,
    gateway_json: &Value,
    options: &RenderOptions,
    dir: &str,
) -> DynamicBootstrap {
    let dir = dir.trim_end_matches('/');
    let source = |file: &str| {
        json!({
            "resource_api_version": "V3",
            "path_config_source": {"path": format!("{dir}/{file}"), "watched_directory": {"path": dir}},
        })
    };
    let mut bootstrap = bootstrap_base(config);
    bootstrap["node"] = json!({"id": "llm-gateway", "cluster": "llm-gateway"});
    bootstrap["dynamic_resources"] = json!({
        "lds_config": source("lds.yaml"),
        "cds_config": source("cds.yaml"),
    });
    let mut listener = listener(config, gateway_json, options);
    listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    let clusters: Vec<Value> = clusters(config)
        .into_iter()
        .map(|mut c| {
            c["@type"] = json!("type.googleapis.com/envoy.config.cluster.v3.Cluster");
            c
        })
        .collect();
    DynamicBootstrap {
        bootstrap,
        lds: json!({"resources": [listener]}),
        cds: json!({"resources": clusters}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(v: Value) -> Value {
        let c = GatewayConfig::from_value(v.clone()).unwrap();
        render_bootstrap(
            &c,
            &v,
            &RenderOptions {
                wasm_path: "x.wasm".into(),
            },
        )
    }

    fn sample() -> Value {
        json!({
            "model_list": [
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
                {"model_name": "local", "litellm_params": {"model": "openai/llama", "api_base": "http://127.0.0.1:8000/v1"}}
            ],
            "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"}
        })
    }

    /// The spend store gets its plain-HTTP cluster, and the access log the store's and the
    /// cache's fields, only when configured.
    #[test]
    fn spend_store_cluster_and_log_fields() {
        let plain = render(sample());
        let mut v = sample();
        v["general_settings"]["spend_store"] = json!({"address": "127.0.0.1:7379"});
        v["general_settings"]["response_cache"] = json!({"models": ["local"]});
        let b = render(v);
        let cluster = |b: &Value| {
            b["static_resources"]["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == crate::limits::ledger::CLUSTER)
                .cloned()
        };
        assert!(cluster(&plain).is_none());
        let c = cluster(&b).unwrap();
        assert_eq!(c["type"], "STATIC");
        assert!(c.get("typed_extension_protocol_options").is_none());
        let text = b.to_string();
        assert!(
            text.contains("wasm.llm_spend_store:PLAIN") && text.contains("wasm.llm_cache:PLAIN")
        );
        assert!(!plain.to_string().contains("wasm.llm_spend_store"));
    }

    /// No error body is ever wrapped in another error's message: the bodies the config
    /// writes are plain text, and every mapper that quotes a body skips the filter's own
    /// (already OpenAI-shaped) replies.
    #[test]
    fn no_error_body_is_wrapped_twice() {
        fn walk<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
            match v {
                Value::Object(m) => {
                    for (k, child) in m {
                        if k == key {
                            out.push(child);
                        }
                        walk(child, key, out);
                    }
                }
                Value::Array(items) => items.iter().for_each(|c| walk(c, key, out)),
                _ => {}
            }
        }
        let b = render(sample());
        let mut direct = Vec::new();
        walk(&b, "direct_response", &mut direct);
        assert!(!direct.is_empty());
        for d in direct {
            let body = d["body"]["inline_string"].as_str().unwrap();
            assert!(!body.trim_start().starts_with('{'), "{body}");
        }
        let mut mappers = Vec::new();
        walk(&b, "mappers", &mut mappers);
        let quoting: Vec<&Value> = mappers
            .iter()
            .flat_map(|m| m.as_array().unwrap())
            .filter(|m| {
                m["body_format_override"]
                    .to_string()
                    .contains("%LOCAL_REPLY_BODY%")
            })
            .collect();
        // OpenAI's three, Anthropic's one per error type and its catch-all.
        assert_eq!(quoting.len(), 3 + anthropic_error_types().len() + 1);
        for m in quoting {
            let filter = m["filter"].to_string();
            assert!(
                filter.contains(&format!("!= '{LOCAL_REPLY_DETAILS}'"))
                    || filter.contains("== 'direct_response'"),
                "{filter}"
            );
        }
    }

    /// Envoy's own replies on the Messages endpoints take Anthropic's shape: chosen by the
    /// API the downstream instance names in filter state (never by `:path`, which the
    /// upstream instance rewrites per attempt), with the module's error type for every
    /// status, before any OpenAI mapper, and never over the filter's own replies.
    #[test]
    fn anthropic_local_replies() {
        let b = render(sample());
        let mappers = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["local_reply_config"]["mappers"]
            .as_array()
            .unwrap()
            .clone();
        let anthropic = anthropic_request_cel();
        assert_eq!(
            anthropic,
            "filter_state['wasm.llm_operation'] in [b'messages', b'count_tokens']"
        );
        let is_anthropic = |m: &Value| m["filter"].to_string().contains(&anthropic);
        let split = mappers.iter().position(|m| !is_anthropic(m)).unwrap();
        assert!(split >= 2);
        assert!(mappers[split..].iter().all(|m| !is_anthropic(m)));
        for m in &mappers {
            let filter = m["filter"].to_string();
            assert!(
                !filter.contains(":path") && !filter.contains("request.path"),
                "{filter}"
            );
        }
        let ours = &mappers[..split];
        for m in ours {
            let body = &m["body_format_override"];
            assert_eq!(body["content_type"], "application/json");
            assert_eq!(body["json_format"]["type"], "error");
            assert_eq!(
                body["json_format"]["error"].as_object().unwrap().len(),
                2,
                "{body}"
            );
        }
        // The answer too large to buffer: a 502 `api_error`.
        assert_eq!(ours[0]["status_code"], 502);
        assert_eq!(
            ours[0]["body_format_override"]["json_format"]["error"]["type"],
            "api_error"
        );
        // Every other status: the first mapper whose status list holds it, else the
        // catch-all, gives the type the module gives.
        let expression = |m: &Value| {
            m["filter"]["extension_filter"]["typed_config"]["expression"]
                .as_str()
                .unwrap()
                .to_string()
        };
        for status in 400..600u16 {
            let hit = ours[1..]
                .iter()
                .find(|m| {
                    let e = expression(m);
                    assert!(e.contains(&not_the_filters()), "{e}");
                    match e.split_once("response.code in [") {
                        Some((_, list)) => list
                            .trim_end_matches(']')
                            .split(", ")
                            .any(|s| s.parse::<u16>().unwrap() == status),
                        None => e.ends_with("response.code >= 400"),
                    }
                })
                .unwrap();
            let body = &hit["body_format_override"]["json_format"]["error"];
            assert_eq!(
                body["type"],
                crate::messages_api::error_type(status),
                "{status}"
            );
            assert_eq!(body["message"], "%LOCAL_REPLY_BODY%");
            assert!(hit.get("status_code").is_none());
        }
        let types: Vec<&str> = anthropic_error_types().iter().map(|(t, _)| *t).collect();
        for t in [
            "invalid_request_error",
            "not_found_error",
            "request_too_large",
            "rate_limit_error",
            "overloaded_error",
            "timeout_error",
        ] {
            assert!(types.contains(&t), "{t}");
        }
    }

    /// Public hosts get TLS with SNI and SAN checks; local ones plain HTTP.
    #[test]
    fn clusters_tls_and_metadata() {
        let b = render(sample());
        let clusters = &b["static_resources"]["clusters"];
        let anthropic = &clusters[0];
        assert_eq!(anthropic["name"], "llm_claude");
        assert_eq!(anthropic["type"], "STRICT_DNS");
        assert_eq!(
            anthropic["transport_socket"]["typed_config"]["sni"],
            "api.anthropic.com"
        );
        let ep = &anthropic["load_assignment"]["endpoints"][0]["lb_endpoints"][0];
        assert_eq!(ep["endpoint"]["hostname"], "api.anthropic.com");
        assert_eq!(
            ep["endpoint"]["address"]["socket_address"]["port_value"],
            443
        );
        assert_eq!(
            ep["metadata"]["filter_metadata"]["llm_gateway"]["deployment"],
            "claude"
        );
        let local = &clusters[1];
        assert_eq!(local["type"], "STATIC");
        assert!(local.get("transport_socket").is_none());
    }

    /// `least-busy` makes every tier cluster Envoy's least-request policy with a full scan;
    /// the default writes no policy (Envoy's weighted ROUND_ROBIN).
    #[test]
    fn routing_strategy_sets_the_lb_policy() {
        let plain = render(sample());
        for c in plain["static_resources"]["clusters"].as_array().unwrap() {
            assert!(c.get("lb_policy").is_none(), "{c}");
            assert!(c.get("load_balancing_policy").is_none(), "{c}");
        }
        let mut v = sample();
        v["router_settings"] = json!({"routing_strategy": "least-busy"});
        let b = render(v);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let tiers: Vec<&Value> = clusters
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with("llm_"))
            .collect();
        assert_eq!(tiers.len(), 2);
        for c in tiers {
            let policy = &c["load_balancing_policy"]["policies"][0]["typed_extension_config"];
            assert_eq!(
                policy["name"],
                "envoy.load_balancing_policies.least_request"
            );
            assert_eq!(
                policy["typed_config"]["selection_method"], "FULL_SCAN",
                "{c}"
            );
        }
    }

    /// Both instances carry the flag, the same VM, the env keys and their role.
    #[test]
    fn filters() {
        let b = render(sample());
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let down = &hcm["http_filters"][0]["typed_config"]["config"];
        let up = &hcm["http_filters"][1]["typed_config"]["upstream_http_filters"][0]
            ["typed_config"]["config"];
        for (f, role) in [(down, "downstream"), (up, "upstream")] {
            assert_eq!(f["allow_on_headers_stop_iteration"], true);
            assert_eq!(f["failure_policy"], "FAIL_RELOAD");
            assert_eq!(f["vm_config"]["vm_id"], VM_ID);
            assert_eq!(
                f["vm_config"]["environment_variables"]["host_env_keys"],
                json!(["ANTHROPIC_API_KEY", "LLM_GATEWAY_MASTER_KEY"])
            );
            let plugin: Value =
                serde_json::from_str(f["configuration"]["value"].as_str().unwrap()).unwrap();
            assert_eq!(plugin["role"], role);
            assert_eq!(plugin["config"], sample());
            crate::config::PluginConfig::from_json(plugin.to_string().as_bytes()).unwrap();
        }
        assert_eq!(down["vm_config"], up["vm_config"]);
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(
            routes[0]["match"]["headers"][0]["string_match"]["exact"],
            "claude"
        );
        assert_eq!(routes[0]["route"]["cluster"], "llm_claude");
        assert_eq!(routes[0]["route"]["auto_host_rewrite"], true);
    }

    /// `num_retries` gives each tier of a chain that many more attempts, in order (the
    /// composite cluster lists it again), waiting for the provider's `Retry-After`.
    #[test]
    fn num_retries_repeats_each_tier_and_honours_retry_after() {
        let mut v = sample();
        v["router_settings"] = json!({"fallbacks": [{"claude": ["local"]}], "num_retries": 2});
        let b = render(v);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let chain = clusters
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with("llm_chain_"))
            .unwrap();
        let children: Vec<&str> = chain["cluster_type"]["typed_config"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            children,
            [
                "llm_claude",
                "llm_claude",
                "llm_claude",
                "llm_local",
                "llm_local",
                "llm_local"
            ]
        );
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
        let policies: Vec<&Value> = routes
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["route"]["retry_policy"])
            .filter(|p| p.is_object())
            .collect();
        assert_eq!(policies.len(), 2);
        // claude's chain: 6 attempts; local alone: 3.
        assert_eq!(policies[0]["num_retries"], 5);
        assert_eq!(policies[1]["num_retries"], 2);
        for p in policies {
            assert_eq!(
                p["rate_limited_retry_back_off"]["reset_headers"][0],
                json!({"name": "retry-after", "format": "SECONDS"})
            );
            assert_eq!(
                p["rate_limited_retry_back_off"]["max_interval"],
                RETRY_AFTER_MAX
            );
        }
        let plain = render(sample());
        let routes = &plain["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
        assert!(routes[0]["route"].get("retry_policy").is_none());
    }

    /// A fallback goes out at once: every retry goes to another deployment, so Envoy's
    /// default back-off (up to 25 ms before the first retry) would only add latency.
    #[test]
    fn fallback_retries_without_back_off() {
        let mut v = sample();
        v["router_settings"] = json!({"fallbacks": [{"claude": ["local"]}]});
        let b = render(v);
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
        let chain = routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"]["retry_policy"].is_object())
            .unwrap();
        let policy = &chain["route"]["retry_policy"];
        assert_eq!(policy["num_retries"], 1);
        assert_eq!(
            policy["retry_back_off"],
            json!({"base_interval": "0.001s", "max_interval": "0.001s"})
        );
    }

    /// The allocator hands free pages back to the system.
    #[test]
    fn memory_release() {
        let b = render(sample());
        assert_eq!(
            b["memory_allocator_manager"],
            json!({"bytes_to_release": 16_777_216, "memory_release_interval": "1s"})
        );
    }

    /// The dynamic form watches lds.yaml/cds.yaml in the directory and carries the same
    /// listener and clusters as the static form.
    #[test]
    fn dynamic_form() {
        let v = sample();
        let c = GatewayConfig::from_value(v.clone()).unwrap();
        let o = RenderOptions {
            wasm_path: "x.wasm".into(),
        };
        let d = render_dynamic(&c, &v, &o, "/etc/gw/");
        let lds = &d.bootstrap["dynamic_resources"]["lds_config"]["path_config_source"];
        assert_eq!(lds["path"], "/etc/gw/lds.yaml");
        assert_eq!(lds["watched_directory"]["path"], "/etc/gw");
        let s = render_bootstrap(&c, &v, &o);
        let mut listener = d.lds["resources"][0].clone();
        listener.as_object_mut().unwrap().remove("@type");
        assert_eq!(listener, s["static_resources"]["listeners"][0]);
        assert_eq!(
            d.cds["resources"].as_array().unwrap().len(),
            s["static_resources"]["clusters"].as_array().unwrap().len()
        );
    }
}
