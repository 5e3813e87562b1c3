//! Renders the gateway for an Istio ingress gateway (host side only), from the same
//! validated config and the same Envoy pieces as the standalone bootstrap ([`crate::render`]).
//!
//! Istio has an API for the listener (`Gateway`, `VirtualService`) and for provider hosts
//! (`ServiceEntry`, `DestinationRule`), but none for what the gateway depends on: a Wasm
//! filter with `allow_on_headers_stop_iteration`, a Wasm filter in the router's
//! `upstream_http_filters`, clusters whose endpoints carry the deployment metadata, composite
//! fallback clusters and routes that match the routing header. Those go in one `EnvoyFilter`:
//!
//! - the two filter instances are `EXTENSION_CONFIG` resources (ECDS) holding the complete
//!   Wasm config, referenced through `config_discovery` by an `HTTP_FILTER` inserted before
//!   the router (downstream) and by the router's `upstream_http_filters` (upstream, a
//!   `MERGE` of the router). The Istio agent fetches `https://` and `oci://` modules for
//!   ECDS resources and hands Envoy a local file; `file://` modules are read in place.
//!   Istio's `WasmPlugin` cannot be used: it never sets the stop-iteration flag and only
//!   inserts into the HTTP connection manager's chain.
//! - the renderer's tier and composite clusters are `CLUSTER` additions, its routes are
//!   `HTTP_ROUTE` insertions before the `VirtualService`'s catch-all route, and its access
//!   log, local reply mapping and buffer limit are merged into the gateway's listener.
//! - with `general_settings.rate_limit_service`, Envoy's global rate limit filter is
//!   inserted between the downstream instance and the router, its service's cluster added,
//!   and its 429 (in each API's error shape) put first among the local reply mappers, as in
//!   the standalone bootstrap ([`crate::render::ratelimit`]).
//!
//! Label extraction for the filter's stats lives in Envoy's bootstrap, which no Istio
//! resource reaches at run time: it is a ConfigMap the gateway pod mounts as a bootstrap
//! override (`sidecar.istio.io/bootstrapOverride`), with Helm values for Istio's gateway
//! chart that add it, the provider keys and the listener port.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::model::Secret;
use crate::config::{FilterRole, GatewayConfig};
use crate::preflight::DEMO_MASTER_KEY;
use crate::render::{
    access_log, alias_routes, buffer_limit, clusters, duration, local_reply_config, memory_release,
    ratelimit, router_typed_config, stats_sinks, stats_tags, tracing, wasm_typed_config,
    UNROUTED_BODY,
};

/// Name of the Gateway, VirtualService and EnvoyFilter.
pub const NAME: &str = "llm-gateway";
/// The VirtualService's catch-all route; the gateway's routes are inserted before it.
pub const UNROUTED_ROUTE: &str = "llm-gateway-unrouted";
/// The ConfigMap holding the bootstrap override (stats tags).
pub const STATS_CONFIGMAP: &str = "llm-gateway-stats";
/// The Secret the Helm values read provider keys and the master key from.
pub const KEYS_SECRET: &str = "llm-gateway-keys";
/// The ConfigMap a `file://` module is mounted from by the Helm values.
pub const WASM_CONFIGMAP: &str = "llm-gateway-wasm";
/// ECDS resource name of each filter instance.
pub fn ecds_name(role: FilterRole) -> &'static str {
    match role {
        FilterRole::Downstream => "llm-gateway.downstream",
        FilterRole::Upstream => "llm-gateway.upstream",
    }
}

const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const HCM: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";

/// Where the gateway pods get the `.wasm` module from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// Fetched by the Istio agent (`https://` or `oci://`), verified against `sha256`.
    Remote {
        /// The module's URL.
        url: String,
        /// Hex SHA-256 of the module (`https`) or of the image manifest (`oci`).
        sha256: Option<String>,
    },
    /// Read from the gateway pod's file system (`file://`).
    File {
        /// Absolute path inside the gateway container.
        path: String,
    },
}

impl WasmSource {
    /// Parses `--wasm-url` and `--wasm-sha256`. An `https` module needs its SHA-256: it is
    /// code that runs with the provider keys, so it is never taken unverified.
    pub fn parse(url: &str, sha256: Option<&str>) -> Result<WasmSource, String> {
        let sha256 = match sha256 {
            Some(s) => {
                let s = s.trim().trim_start_matches("sha256:").to_ascii_lowercase();
                if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "--wasm-sha256 `{s}` must be 64 hex digits (e.g. the output of sha256sum)"
                    ));
                }
                Some(s)
            }
            None => None,
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!(
                    "--wasm-url `{url}`: a file URL needs an absolute path inside the gateway container (file:///var/lib/llm-gateway/llm_gateway.wasm)"
                ));
            }
            if sha256.is_some() {
                return Err("--wasm-sha256 applies to https:// and oci:// modules only".into());
            }
            return Ok(WasmSource::File {
                path: path.to_string(),
            });
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("oci://"))
            .ok_or_else(|| {
                format!("--wasm-url `{url}` must start with https://, oci:// or file://")
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("--wasm-url `{url}` has no host"));
        }
        if url.starts_with("https://") && sha256.is_none() {
            return Err(format!(
                "--wasm-url `{url}`: an https module needs --wasm-sha256 (sha256sum of the .wasm); the Istio agent refuses a download that does not match"
            ));
        }
        Ok(WasmSource::Remote {
            url: url.to_string(),
            sha256,
        })
    }

    /// The Envoy `AsyncDataSource` for `vm_config.code`.
    fn code(&self) -> Value {
        match self {
            WasmSource::File { path } => json!({"local": {"filename": path}}),
            WasmSource::Remote { url, sha256 } => {
                // No `cluster`: Envoy never fetches this itself. The Istio agent downloads
                // the module for ECDS resources and rewrites `remote` into `local`.
                let mut remote = json!({"http_uri": {"uri": url, "timeout": "30s"}});
                if let Some(s) = sha256 {
                    remote["sha256"] = json!(s);
                }
                json!({"remote": remote})
            }
        }
    }
}

/// Options that depend on the cluster rather than on the gateway config.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// Where the module comes from.
    pub wasm: WasmSource,
    /// Namespace of the gateway pods (and of every rendered resource).
    pub namespace: String,
    /// Labels that select the gateway pods.
    pub selector: Vec<(String, String)>,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks `--namespace`: a Kubernetes namespace name.
pub fn parse_namespace(ns: &str) -> Result<String, String> {
    if dns_label(ns) {
        Ok(ns.to_string())
    } else {
        Err(format!(
            "--namespace `{ns}` is not a Kubernetes namespace name (lowercase letters, digits, '-')"
        ))
    }
}

/// Parses `--selector app=istio-ingressgateway[,key=value...]`.
pub fn parse_selector(s: &str) -> Result<Vec<(String, String)>, String> {
    let ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 253
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let mut labels = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if ok(k.trim()) && ok(v.trim()) => {
                labels.push((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(format!(
                "--selector `{s}`: expected key=value[,key=value], e.g. app=istio-ingressgateway"
            ))
            }
        }
    }
    if labels.is_empty() {
        return Err("--selector needs at least one key=value label".into());
    }
    Ok(labels)
}

/// One rendered file: its name in the output directory and its YAML documents.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// File name (`envoyfilter.yaml`, ...).
    pub name: &'static str,
    /// What the file is for, written as its header comment.
    pub about: &'static str,
    /// The documents, in order.
    pub documents: Vec<Value>,
}

fn metadata(name: &str, options: &IstioOptions) -> Value {
    json!({
        "name": name,
        "namespace": options.namespace,
        "labels": {"app.kubernetes.io/part-of": NAME},
    })
}

fn selector(options: &IstioOptions) -> Value {
    let map: serde_json::Map<String, Value> = options
        .selector
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    Value::Object(map)
}

/// The ports one provider host is reached on: `(port, tls)`.
type HostPorts = BTreeSet<(u16, bool)>;

fn provider_hosts(config: &GatewayConfig) -> BTreeMap<String, HostPorts> {
    let mut hosts: BTreeMap<String, HostPorts> = BTreeMap::new();
    for d in &config.deployments {
        let ep = &d.endpoint;
        hosts
            .entry(ep.host.clone())
            .or_default()
            .insert((ep.port, ep.tls));
    }
    hosts
}

/// Kubernetes-safe name for a provider host's ServiceEntry and DestinationRule.
fn provider_resource_name(host: &str) -> String {
    let mut name: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = format!("llm-provider-{}", name.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The mesh's name for a host: IP addresses get a name of their own (a ServiceEntry host
/// must be a DNS name), resolved STATICally to the address.
fn mesh_host(host: &str, is_ip: bool) -> String {
    if is_ip {
        let label: String = host
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("{}.llm-gateway.internal", label.trim_matches('-'))
    } else {
        host.to_string()
    }
}

/// The port on which mesh clients send plain HTTP and the sidecar originates TLS (Istio's
/// egress TLS origination pattern), when the host has a TLS port and 80 is free.
const ORIGINATION_PORT: u16 = 80;

fn origination_target(ports: &HostPorts) -> Option<u16> {
    let plain_80 = ports.iter().any(|(p, tls)| *p == ORIGINATION_PORT && !tls);
    if plain_80 {
        return None;
    }
    ports.iter().find(|(_, tls)| *tls).map(|(p, _)| *p)
}

fn service_entry(host: &str, ports: &HostPorts, options: &IstioOptions) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut entries: Vec<Value> = Vec::new();
    if let Some(target) = origination_target(ports) {
        entries.push(json!({
            "number": ORIGINATION_PORT,
            "name": "http-tls-origination",
            "protocol": "HTTP",
            "targetPort": target,
        }));
    }
    for (port, tls) in ports {
        entries.push(if *tls {
            json!({"number": port, "name": format!("https-{port}"), "protocol": "HTTPS"})
        } else {
            json!({"number": port, "name": format!("http-{port}"), "protocol": "HTTP"})
        });
    }
    let mut spec = json!({
        "hosts": [mesh_host(host, is_ip)],
        "location": "MESH_EXTERNAL",
        "ports": entries,
        "resolution": if is_ip { "STATIC" } else { "DNS" },
    });
    if is_ip {
        spec["endpoints"] = json!([{"address": host}]);
        // An address (often a loopback or private one) means something only where the
        // gateway runs: keep it out of other namespaces' sidecars.
        spec["exportTo"] = json!(["."]);
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": metadata(&provider_resource_name(host), options),
        "spec": spec,
    })
}

fn destination_rule(
    config: &GatewayConfig,
    host: &str,
    ports: &HostPorts,
    options: &IstioOptions,
) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let r = &config.router;
    // The same limits and cool-down as the gateway's own clusters for this host.
    let pool = json!({
        "tcp": {"maxConnections": 100000, "connectTimeout": "5s"},
        "http": {"http1MaxPendingRequests": 100000, "http2MaxRequests": 100000, "maxRetries": 100000},
    });
    let outlier = json!({
        "consecutive5xxErrors": r.allowed_fails,
        "interval": "1s",
        "baseEjectionTime": duration(r.cooldown_secs),
        "maxEjectionPercent": 100,
    });
    let mut policy = json!({"connectionPool": pool, "outlierDetection": outlier});
    if origination_target(ports).is_some() {
        let mut tls = json!({"mode": "SIMPLE"});
        if !is_ip {
            tls["sni"] = json!(host);
            tls["subjectAltNames"] = json!([host]);
        }
        // Port-level settings replace the host-level ones, hence the repetition.
        policy["portLevelSettings"] = json!([{
            "port": {"number": ORIGINATION_PORT},
            "connectionPool": pool,
            "outlierDetection": outlier,
            "tls": tls,
        }]);
    }
    let mut spec = json!({"host": mesh_host(host, is_ip), "trafficPolicy": policy});
    if is_ip {
        spec["exportTo"] = json!(["."]);
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": metadata(&provider_resource_name(host), options),
        "spec": spec,
    })
}

fn gateway(config: &GatewayConfig, options: &IstioOptions) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": metadata(NAME, options),
        "spec": {
            "selector": selector(options),
            "servers": [{
                // With no Service port of this number, the gateway pods listen on it as is,
                // which is what the EnvoyFilter's listener matches expect.
                "port": {"number": config.general.listen_port, "name": "http-llm-gateway", "protocol": "HTTP"},
                "hosts": ["*"],
            }],
        },
    })
}

fn virtual_service(options: &IstioOptions) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(NAME, options),
        "spec": {
            "hosts": ["*"],
            "gateways": [NAME],
            // The anchor the EnvoyFilter inserts the gateway's routes before; answers
            // what no route matched, like the standalone bootstrap's last route.
            "http": [{
                "name": UNROUTED_ROUTE,
                "directResponse": {"status": 404, "body": {"string": UNROUTED_BODY}},
            }],
        },
    })
}

fn config_discovery(role: FilterRole) -> Value {
    json!({
        "name": ecds_name(role),
        "config_discovery": {
            // Wait for the filter, however long: the listener never serves without it.
            "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "type_urls": [WASM_TYPE_URL],
        },
    })
}

fn listener_match(config: &GatewayConfig, filter: Option<Value>) -> Value {
    let mut listener = json!({"portNumber": config.general.listen_port});
    if let Some(f) = filter {
        listener["filterChain"] = json!({"filter": f});
    }
    json!({"context": "GATEWAY", "listener": listener})
}

fn envoy_filter(config: &GatewayConfig, gateway_json: &Value, options: &IstioOptions) -> Value {
    let router_match = || {
        listener_match(
            config,
            Some(json!({"name": HCM, "subFilter": {"name": ROUTER}})),
        )
    };
    let mut patches: Vec<Value> = Vec::new();
    for role in [FilterRole::Downstream, FilterRole::Upstream] {
        patches.push(json!({
            "applyTo": "EXTENSION_CONFIG",
            "patch": {"operation": "ADD", "value": {
                "name": ecds_name(role),
                "typed_config": wasm_typed_config(config, gateway_json, role, options.wasm.code()),
            }},
        }));
    }
    patches.push(json!({
        "applyTo": "HTTP_FILTER",
        "match": router_match(),
        "patch": {"operation": "INSERT_BEFORE", "value": config_discovery(FilterRole::Downstream)},
    }));
    if let Some(rls) = &config.general.rate_limit_service {
        // After the downstream instance, which names the key and its team in filter state.
        patches.push(json!({
            "applyTo": "HTTP_FILTER",
            "match": router_match(),
            "patch": {"operation": "INSERT_BEFORE", "value": ratelimit::http_filter(rls)},
        }));
    }
    patches.push(json!({
        "applyTo": "HTTP_FILTER",
        "match": router_match(),
        "patch": {"operation": "MERGE", "value": {
            "name": ROUTER,
            "typed_config": router_typed_config(config, config_discovery(FilterRole::Upstream)),
        }},
    }));
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "access_log": access_log(config),
        "local_reply_config": istio_local_reply_config(config),
    });
    if let Some(otel) = &config.general.opentelemetry {
        // Replaces the mesh's tracer on this listener: the gateway's spans go to the
        // collector its config names, with the GenAI attributes.
        tracing::add_to_hcm(config, &mut hcm, otel);
    }
    patches.push(json!({
        "applyTo": "NETWORK_FILTER",
        "match": listener_match(config, Some(json!({"name": HCM}))),
        "patch": {"operation": "MERGE", "value": {"name": HCM, "typed_config": hcm}},
    }));
    patches.push(json!({
        "applyTo": "LISTENER",
        "match": listener_match(config, None),
        // The downstream instance buffers the body before any route is chosen.
        "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": buffer_limit(config)}},
    }));
    for cluster in clusters(config) {
        patches.push(json!({
            "applyTo": "CLUSTER",
            "match": {"context": "GATEWAY"},
            "patch": {"operation": "ADD", "value": cluster},
        }));
    }
    let anchor = json!({"context": "GATEWAY", "routeConfiguration": {"vhost": {"route": {"name": UNROUTED_ROUTE}}}});
    for route in alias_routes(config) {
        // Each insertion lands just before the anchor, so the routes keep their order.
        patches.push(json!({
            "applyTo": "HTTP_ROUTE",
            "match": anchor,
            "patch": {"operation": "INSERT_BEFORE", "value": route},
        }));
    }
    patches.push(json!({
        "applyTo": "HTTP_ROUTE",
        "match": anchor,
        "patch": {"operation": "MERGE", "value": {"request_body_buffer_limit": buffer_limit(config)}},
    }));
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata(NAME, options),
        "spec": {
            "workloadSelector": {"labels": selector(options)},
            "configPatches": patches,
        },
    })
}

/// The local reply mapping of the standalone bootstrap: with a rate limit service, its
/// 429 and 500 mappers first, where the generic ones would otherwise answer them.
fn istio_local_reply_config(config: &GatewayConfig) -> Value {
    let mut reply = local_reply_config();
    if config.general.rate_limit_service.is_some() {
        ratelimit::prepend_local_reply_mappers(&mut reply);
    }
    reply
}

/// The bootstrap override: Envoy merges it into Istio's bootstrap (`--config-yaml`), so
/// these tag rules are appended to Istio's own.
pub fn bootstrap_override(config: &GatewayConfig) -> Value {
    let mut doc = json!({
        "stats_config": {"stats_tags": stats_tags()},
        "memory_allocator_manager": memory_release(),
    });
    if let Some(sinks) = stats_sinks(config) {
        doc["stats_sinks"] = sinks;
    }
    doc
}

fn stats_configmap(config: &GatewayConfig, options: &IstioOptions) -> Result<Value, String> {
    let text = serde_json::to_string_pretty(&bootstrap_override(config))
        .map_err(|e| format!("cannot write the bootstrap override: {e}"))?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(STATS_CONFIGMAP, options),
        // The key Istio's gateway injection template mounts as the override.
        "data": {"custom_bootstrap.json": text},
    }))
}

fn helm_values(config: &GatewayConfig, options: &IstioOptions) -> Value {
    let env: Vec<Value> = config
        .envoy_env_names()
        .iter()
        .map(|name| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": KEYS_SECRET, "key": name}}}))
        .collect();
    let port = config.general.listen_port;
    let mut values = json!({
        // Istio keeps every stat named `wasm*` (the filter's are `wasmcustom.*`), so only
        // the tag rules need adding.
        "podAnnotations": {"sidecar.istio.io/bootstrapOverride": STATS_CONFIGMAP},
        "envVarFrom": env,
        "service": {"ports": [
            {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
            {"name": "http-llm-gateway", "port": port, "protocol": "TCP", "targetPort": port},
        ]},
    });
    if let WasmSource::File { path } = &options.wasm {
        let (dir, file) = match path.rsplit_once('/') {
            Some((d, f)) if !d.is_empty() => (d.to_string(), f.to_string()),
            Some((_, f)) => ("/".to_string(), f.to_string()),
            None => ("/".to_string(), path.clone()),
        };
        values["volumes"] = json!([{
            "name": WASM_CONFIGMAP,
            "configMap": {"name": WASM_CONFIGMAP, "items": [{"key": file, "path": file}]},
        }]);
        values["volumeMounts"] =
            json!([{"name": WASM_CONFIGMAP, "mountPath": dir, "readOnly": true}]);
    }
    values
}

/// The address the plugin config names in Istio: the gateway pods' listener takes traffic
/// from every address its Service reaches.
pub const ISTIO_LISTEN_ADDRESS: &str = "0.0.0.0";

/// Renders every file for `kubectl apply` (and the Helm values for the gateway chart).
/// `gateway_json` is the gateway config document as given (it becomes the plugin
/// configuration); `config` is its validated form.
pub fn render_istio(
    config: &GatewayConfig,
    gateway_json: &Value,
    options: &IstioOptions,
) -> Result<Vec<ManifestFile>, String> {
    if matches!(&config.master_key, Secret::Literal(k) if k == DEMO_MASTER_KEY) {
        return Err(format!(
            "general_settings.master_key: the public demo key `{DEMO_MASTER_KEY}` on an Istio gateway, which other \
             machines reach: name a variable the gateway pods get from a Secret instead \
             (`master_key: os.environ/LLM_GATEWAY_MASTER_KEY`, see envoy/istio/README.md)"
        ));
    }
    // The gateway's listener is the Istio gateway's Service, reachable by other machines
    // whatever `listen_address` says: said so in the plugin config, the module refuses the
    // public demo key if the pods' Secret holds it.
    let mut exposed = gateway_json.clone();
    if let Some(general) = exposed.as_object_mut().and_then(|doc| {
        doc.entry("general_settings")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    }) {
        general.insert("listen_address".into(), json!(ISTIO_LISTEN_ADDRESS));
    }
    let gateway_json = &exposed;
    let mut providers = Vec::new();
    for (host, ports) in provider_hosts(config) {
        providers.push(service_entry(&host, &ports, options));
        providers.push(destination_rule(config, &host, &ports, options));
    }
    Ok(vec![
        ManifestFile {
            name: "providers.yaml",
            about: "Provider hosts for the mesh: ServiceEntry and DestinationRule (TLS origination, pool, outlier detection)",
            documents: providers,
        },
        ManifestFile {
            name: "gateway.yaml",
            about: "The listener on the selected gateway pods and the catch-all route the gateway's routes are inserted before",
            documents: vec![gateway(config, options), virtual_service(options)],
        },
        ManifestFile {
            name: "envoyfilter.yaml",
            about: "Both filter instances (ECDS), the router's upstream filter, clusters, routes, access log and local replies",
            documents: vec![envoy_filter(config, gateway_json, options)],
        },
        ManifestFile {
            name: "stats-bootstrap.yaml",
            about: "Bootstrap override with the stats tag rules (Prometheus labels); mounted by the gateway pods",
            documents: vec![stats_configmap(config, options)?],
        },
        ManifestFile {
            name: "gateway-values.yaml",
            about: "Helm values for Istio's gateway chart (not a manifest): keys from a Secret, the stats bootstrap override, the listener port",
            documents: vec![helm_values(config, options)],
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let sha = "a".repeat(64);
        assert!(WasmSource::parse("https://x/y.wasm", None).is_err());
        assert_eq!(
            WasmSource::parse(
                "https://x/y.wasm",
                Some(&format!("sha256:{}", sha.to_uppercase()))
            ),
            Ok(WasmSource::Remote {
                url: "https://x/y.wasm".into(),
                sha256: Some(sha.clone())
            })
        );
        assert!(WasmSource::parse("oci://ghcr.io/a/b:1", None).is_ok());
        assert!(WasmSource::parse("file://rel.wasm", None).is_err());
        assert!(WasmSource::parse("file:///a.wasm", Some(&sha)).is_err());
        assert!(WasmSource::parse("http://x/y.wasm", Some(&sha)).is_err());
        assert!(WasmSource::parse("https://x/y.wasm", Some("abc")).is_err());
    }

    #[test]
    fn selectors_and_names() {
        assert_eq!(
            parse_selector("app=gw, istio=ingress").unwrap(),
            vec![
                ("app".into(), "gw".into()),
                ("istio".into(), "ingress".into())
            ]
        );
        assert!(parse_selector("app").is_err());
        assert!(parse_selector("").is_err());
        assert!(parse_namespace("Istio_System").is_err());
        assert_eq!(
            provider_resource_name("api.openai.com"),
            "llm-provider-api-openai-com"
        );
        assert_eq!(
            mesh_host("127.0.0.1", true),
            "127-0-0-1.llm-gateway.internal"
        );
        assert!(provider_resource_name(&"a".repeat(100)).len() <= 63);
    }
}
