//! The Istio resources: the committed `envoy/istio/` files are exactly what the renderer
//! makes from `envoy/gateway.yaml`, and the rendered resources carry the same Envoy pieces
//! as the standalone bootstrap (filters, clusters, routes) where Istio needs them.

use llm_gateway::config::{FilterRole, GatewayConfig};
use llm_gateway::render::istio::{
    ecds_name, render_istio, IstioOptions, ManifestFile, WasmSource, KEYS_SECRET, NAME,
    STATS_CONFIGMAP, UNROUTED_ROUTE,
};
use llm_gateway::render::{self, RenderOptions};
use serde::Deserialize;
use serde_json::{json, Value};

/// The module URL the committed files use (`make render-istio`).
const COMMITTED_WASM_URL: &str = "file:///var/lib/llm-gateway/llm_gateway.wasm";

/// Where the committed files load the module from: the OCI image `make oci` builds, by
/// digest (which changes with every build of a new module, so it is read, not rendered).
const COMMITTED_OCI_REPO: &str = "oci://registry.example.com/llm-gateway@sha256:";

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("parse {path}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn options(wasm: WasmSource) -> IstioOptions {
    IstioOptions {
        wasm,
        namespace: "istio-system".into(),
        selector: vec![("app".into(), "istio-ingressgateway".into())],
    }
}

fn render(gateway: &Value, wasm: WasmSource) -> Vec<ManifestFile> {
    let config = GatewayConfig::from_value(gateway.clone()).expect("valid gateway config");
    render_istio(&config, gateway, &options(wasm)).expect("renders")
}

fn file<'a>(files: &'a [ManifestFile], name: &str) -> &'a [Value] {
    &files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .documents
}

fn patches<'a>(files: &'a [ManifestFile], apply_to: &str) -> Vec<&'a Value> {
    file(files, "envoyfilter.yaml")[0]["spec"]["configPatches"]
        .as_array()
        .expect("patches")
        .iter()
        .filter(|p| p["applyTo"] == apply_to)
        .collect()
}

/// A config with a fallback chain, two deployments in one tier, a plain-HTTP local server
/// and per-try timeouts.
fn sample() -> Value {
    json!({
        "model_list": [
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
            {"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"}, "model_info": {"id": "mini-a"}},
            {"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "https://eu.api.example.com:8443/v1", "api_key": "os.environ/OPENAI_API_KEY"}, "model_info": {"id": "mini-b"}},
            {"model_name": "local", "litellm_params": {"model": "openai/llama3", "api_base": "http://10.0.0.7:8000/v1"}}
        ],
        "router_settings": {"fallbacks": [{"gpt-4o": ["claude"]}], "allowed_fails": 2, "cooldown_time": 30, "per_try_timeout": 60},
        "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY", "listen_port": 8080}
    })
}

fn file_source() -> WasmSource {
    WasmSource::parse(COMMITTED_WASM_URL, None).expect("file URL")
}

/// `envoy/istio/*.yaml` == render-istio(`envoy/gateway.yaml`); run `make render-istio`.
#[test]
fn committed_istio_files_are_up_to_date() {
    let gateway = yaml_docs("envoy/gateway.yaml").remove(0);
    let filter = yaml_docs("envoy/istio/envoyfilter.yaml").remove(0);
    let url = filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"]["remote"]["http_uri"]["uri"]
        .as_str()
        .expect("the committed EnvoyFilter loads the module from a remote URL")
        .to_string();
    let digest = url.strip_prefix(COMMITTED_OCI_REPO).unwrap_or_else(|| {
        panic!("the committed files load {url}, not {COMMITTED_OCI_REPO}<digest>: run `make render-istio`")
    });
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{url}"
    );
    let files = render(&gateway, WasmSource::parse(&url, None).expect("oci URL"));
    for f in &files {
        let path = format!("envoy/istio/{}", f.name);
        assert!(
            yaml_docs(&path) == f.documents,
            "{path} is stale: run `make render-istio`"
        );
    }
    let mut committed: Vec<String> = std::fs::read_dir("envoy/istio")
        .expect("envoy/istio")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    committed.sort();
    let mut rendered: Vec<String> = files.iter().map(|f| f.name.to_string()).collect();
    rendered.sort();
    assert_eq!(
        committed, rendered,
        "envoy/istio holds a file the renderer does not make"
    );
}

/// Both instances are ECDS resources with the full Wasm config of the standalone
/// bootstrap (flag, failure policy, shared VM, env keys, role), only the code differs.
#[test]
fn filter_instances_are_extension_configs() {
    let gateway = sample();
    let config = GatewayConfig::from_value(gateway.clone()).unwrap();
    let files = render(&gateway, file_source());
    let ecds = patches(&files, "EXTENSION_CONFIG");
    assert_eq!(ecds.len(), 2);
    for (p, role) in ecds
        .iter()
        .zip([FilterRole::Downstream, FilterRole::Upstream])
    {
        assert_eq!(p["patch"]["operation"], "ADD");
        let value = &p["patch"]["value"];
        assert_eq!(value["name"], ecds_name(role));
        // The plugin config says the listener is exposed (the module then refuses the
        // public demo key); the rest is the gateway config as given.
        let mut exposed = gateway.clone();
        exposed["general_settings"]["listen_address"] = json!("0.0.0.0");
        let expected = render::wasm_typed_config(
            &config,
            &exposed,
            role,
            json!({"local": {"filename": "/var/lib/llm-gateway/llm_gateway.wasm"}}),
        );
        assert_eq!(value["typed_config"], expected);
        let c = &value["typed_config"]["config"];
        assert_eq!(c["allow_on_headers_stop_iteration"], true);
        assert_eq!(c["failure_policy"], "FAIL_RELOAD");
        assert_eq!(c["vm_config"]["vm_id"], render::VM_ID);
        assert_eq!(
            c["vm_config"]["environment_variables"]["host_env_keys"],
            json!([
                "ANTHROPIC_API_KEY",
                "LLM_GATEWAY_MASTER_KEY",
                "OPENAI_API_KEY"
            ])
        );
    }
    // Identical VM settings: one VM per worker serves both instances.
    assert_eq!(
        ecds[0]["patch"]["value"]["typed_config"]["config"]["vm_config"],
        ecds[1]["patch"]["value"]["typed_config"]["config"]["vm_config"]
    );
}

/// Remote modules are left for the Istio agent to fetch, pinned by their SHA-256.
#[test]
fn remote_module_code() {
    let sha = "ab".repeat(32);
    for url in [
        "https://example.com/llm_gateway.wasm",
        "oci://ghcr.io/example/llm-gateway:1.0",
    ] {
        let files = render(
            &sample(),
            WasmSource::parse(url, Some(&sha)).expect("remote URL"),
        );
        for p in patches(&files, "EXTENSION_CONFIG") {
            let code = &p["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"];
            assert_eq!(code["remote"]["http_uri"]["uri"], url);
            assert_eq!(code["remote"]["sha256"], sha.as_str());
            assert!(code.get("local").is_none());
        }
        // A remote module needs nothing mounted into the gateway pods.
        assert!(file(&files, "gateway-values.yaml")[0]
            .get("volumes")
            .is_none());
    }
    let files = render(
        &sample(),
        WasmSource::parse("oci://ghcr.io/example/llm-gateway@sha256:00", None).unwrap(),
    );
    let code = &patches(&files, "EXTENSION_CONFIG")[0]["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"];
    assert!(code["remote"].get("sha256").is_none());
}

/// The downstream instance goes before the router of the gateway listener on the
/// configured port; the router runs the upstream instance, then the codec.
#[test]
fn filter_chain_patches() {
    let files = render(&sample(), file_source());
    let http = patches(&files, "HTTP_FILTER");
    assert_eq!(http.len(), 2);
    for p in &http {
        let m = &p["match"];
        assert_eq!(m["context"], "GATEWAY");
        assert_eq!(m["listener"]["portNumber"], 8080);
        assert_eq!(
            m["listener"]["filterChain"]["filter"]["name"],
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(
            m["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
    }
    assert_eq!(http[0]["patch"]["operation"], "INSERT_BEFORE");
    let down = &http[0]["patch"]["value"];
    assert_eq!(down["name"], ecds_name(FilterRole::Downstream));
    let source = &down["config_discovery"]["config_source"];
    assert_eq!(source["ads"], json!({}));
    assert_eq!(source["initial_fetch_timeout"], "0s");
    assert_eq!(
        down["config_discovery"]["type_urls"],
        json!(["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"])
    );

    assert_eq!(http[1]["patch"]["operation"], "MERGE");
    let router = &http[1]["patch"]["value"];
    assert_eq!(router["name"], "envoy.filters.http.router");
    let tc = &router["typed_config"];
    assert_eq!(
        tc["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
    assert_eq!(tc["suppress_envoy_headers"], true);
    let ups = tc["upstream_http_filters"].as_array().unwrap();
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0]["name"], ecds_name(FilterRole::Upstream));
    assert_eq!(
        ups[0]["config_discovery"]["config_source"],
        down["config_discovery"]["config_source"]
    );
    assert_eq!(ups[1]["name"], "envoy.filters.http.upstream_codec");

    let hcm = patches(&files, "NETWORK_FILTER");
    assert_eq!(hcm.len(), 1);
    assert_eq!(hcm[0]["patch"]["operation"], "MERGE");
    assert_eq!(
        hcm[0]["patch"]["value"]["typed_config"]["access_log"],
        render::access_log(&GatewayConfig::from_value(sample()).unwrap())
    );
    assert_eq!(
        hcm[0]["patch"]["value"]["typed_config"]["local_reply_config"],
        render::local_reply_config()
    );
    let listener = patches(&files, "LISTENER");
    assert_eq!(listener.len(), 1);
    assert_eq!(listener[0]["match"]["listener"]["portNumber"], 8080);
    let config = GatewayConfig::from_value(sample()).unwrap();
    assert_eq!(
        listener[0]["patch"]["value"]["per_connection_buffer_limit_bytes"],
        render::buffer_limit(&config)
    );
}

/// Clusters and routes are the standalone bootstrap's, in the same order; routes go before
/// the VirtualService's catch-all route, which gets the stream buffer limit.
#[test]
fn clusters_and_routes_are_the_bootstraps() {
    let gateway = sample();
    let config = GatewayConfig::from_value(gateway.clone()).unwrap();
    let files = render(&gateway, file_source());
    let bootstrap = render::render_bootstrap(
        &config,
        &gateway,
        &RenderOptions {
            wasm_path: "x.wasm".into(),
        },
    );

    let added: Vec<&Value> = patches(&files, "CLUSTER")
        .into_iter()
        .inspect(|p| {
            assert_eq!(p["patch"]["operation"], "ADD");
            assert_eq!(p["match"]["context"], "GATEWAY");
        })
        .map(|p| &p["patch"]["value"])
        .collect();
    let standalone: Vec<&Value> = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(added, standalone);
    let composite = added
        .iter()
        .find(|c| c["name"] == "llm_chain_gpt-4o")
        .expect("the fallback chain's composite cluster");
    assert_eq!(
        composite["cluster_type"]["typed_config"]["clusters"],
        json!([{"name": "llm_gpt-4o"}, {"name": "llm_claude"}])
    );

    let routes = patches(&files, "HTTP_ROUTE");
    let (inserts, merges): (Vec<&Value>, Vec<&Value>) = routes
        .into_iter()
        .partition(|p| p["patch"]["operation"] == "INSERT_BEFORE");
    for p in inserts.iter().chain(merges.iter()) {
        assert_eq!(p["match"]["context"], "GATEWAY");
        assert_eq!(
            p["match"]["routeConfiguration"]["vhost"]["route"]["name"],
            UNROUTED_ROUTE
        );
    }
    let inserted: Vec<&Value> = inserts.iter().map(|p| &p["patch"]["value"]).collect();
    let standalone_routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
        ["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    let (last, alias) = standalone_routes.split_last().unwrap();
    assert_eq!(last["name"], "unrouted");
    assert_eq!(inserted, alias.iter().collect::<Vec<_>>());
    let chain = inserted
        .iter()
        .find(|r| r["name"] == "model:gpt-4o")
        .unwrap();
    assert_eq!(
        chain["match"]["headers"][0],
        json!({"name": "x-llm-route", "string_match": {"exact": "gpt-4o"}})
    );
    assert_eq!(chain["route"]["cluster"], "llm_chain_gpt-4o");
    assert_eq!(
        chain["route"]["retry_policy"]["retriable_status_codes"],
        json!([429])
    );
    assert_eq!(chain["route"]["retry_policy"]["num_retries"], 1);
    assert_eq!(merges.len(), 1);
    assert_eq!(
        merges[0]["patch"]["value"],
        json!({"request_body_buffer_limit": last["request_body_buffer_limit"]})
    );

    let gw = file(&files, "gateway.yaml");
    assert_eq!(gw[0]["kind"], "Gateway");
    assert_eq!(gw[0]["spec"]["servers"][0]["port"]["number"], 8080);
    assert_eq!(
        gw[0]["spec"]["selector"],
        json!({"app": "istio-ingressgateway"})
    );
    assert_eq!(gw[1]["kind"], "VirtualService");
    assert_eq!(gw[1]["spec"]["gateways"], json!([NAME]));
    let anchor = &gw[1]["spec"]["http"][0];
    assert_eq!(anchor["name"], UNROUTED_ROUTE);
    assert_eq!(anchor["directResponse"]["status"], 404);
    assert_eq!(
        anchor["directResponse"]["body"]["string"],
        last["direct_response"]["body"]["inline_string"]
    );
}

/// One ServiceEntry and DestinationRule per provider host: DNS hosts with TLS origination
/// (SNI, SAN) on an HTTP port, IP hosts STATIC and kept to the namespace; the outlier
/// detection follows router_settings.
#[test]
fn provider_hosts() {
    let files = render(&sample(), file_source());
    let docs = file(&files, "providers.yaml");
    let entries: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceEntry")
        .collect();
    let rules: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "DestinationRule")
        .collect();
    let hosts: Vec<&str> = entries
        .iter()
        .map(|e| e["spec"]["hosts"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "10-0-0-7.llm-gateway.internal",
            "api.anthropic.com",
            "api.openai.com",
            "eu.api.example.com"
        ]
    );
    assert_eq!(rules.len(), entries.len());

    let openai = entries[2];
    assert_eq!(openai["spec"]["location"], "MESH_EXTERNAL");
    assert_eq!(openai["spec"]["resolution"], "DNS");
    assert_eq!(
        openai["spec"]["ports"],
        json!([
            {"number": 80, "name": "http-tls-origination", "protocol": "HTTP", "targetPort": 443},
            {"number": 443, "name": "https-443", "protocol": "HTTPS"}
        ])
    );
    let rule = rules[2];
    assert_eq!(rule["spec"]["host"], "api.openai.com");
    let policy = &rule["spec"]["trafficPolicy"];
    assert_eq!(policy["outlierDetection"]["consecutive5xxErrors"], 2);
    assert_eq!(policy["outlierDetection"]["baseEjectionTime"], "30s");
    let port = &policy["portLevelSettings"][0];
    assert_eq!(port["port"]["number"], 80);
    assert_eq!(
        port["tls"],
        json!({"mode": "SIMPLE", "sni": "api.openai.com", "subjectAltNames": ["api.openai.com"]})
    );

    let eu = entries[3];
    assert_eq!(eu["spec"]["ports"][0]["targetPort"], 8443);
    assert_eq!(eu["spec"]["ports"][1]["number"], 8443);

    let local = entries[0];
    assert_eq!(local["spec"]["resolution"], "STATIC");
    assert_eq!(local["spec"]["endpoints"], json!([{"address": "10.0.0.7"}]));
    assert_eq!(local["spec"]["exportTo"], json!(["."]));
    assert_eq!(
        local["spec"]["ports"],
        json!([{"number": 8000, "name": "http-8000", "protocol": "HTTP"}])
    );
    assert!(rules[0]["spec"]["trafficPolicy"]
        .get("portLevelSettings")
        .is_none());
    for d in docs {
        assert_eq!(d["metadata"]["namespace"], "istio-system");
        let name = d["metadata"]["name"].as_str().unwrap();
        assert!(
            name.len() <= 63 && name.starts_with("llm-provider-"),
            "{name}"
        );
    }
}

/// Stats labels, provider keys and the port: what the gateway pods need besides the
/// resources.
#[test]
fn stats_and_pod_settings() {
    let files = render(&sample(), file_source());
    let cm = &file(&files, "stats-bootstrap.yaml")[0];
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], STATS_CONFIGMAP);
    let text = cm["data"]["custom_bootstrap.json"].as_str().unwrap();
    let override_: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        override_,
        json!({
            "stats_config": {"stats_tags": render::stats_tags()},
            "memory_allocator_manager": render::memory_release(),
        })
    );

    let values = &file(&files, "gateway-values.yaml")[0];
    let annotations = &values["podAnnotations"];
    assert_eq!(
        annotations["sidecar.istio.io/bootstrapOverride"],
        STATS_CONFIGMAP
    );
    assert_eq!(annotations.as_object().unwrap().len(), 1);
    let env: Vec<&str> = values["envVarFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], KEYS_SECRET);
            assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], e["name"]);
            e["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        env,
        [
            "ANTHROPIC_API_KEY",
            "LLM_GATEWAY_MASTER_KEY",
            "OPENAI_API_KEY"
        ]
    );
    assert_eq!(values["service"]["ports"][1]["port"], 8080);
    assert_eq!(values["service"]["ports"][1]["targetPort"], 8080);
    assert_eq!(
        values["volumeMounts"],
        json!([{"name": "llm-gateway-wasm", "mountPath": "/var/lib/llm-gateway", "readOnly": true}])
    );
}

/// No provider key and no environment value is ever written into a resource.
#[test]
fn no_secrets_in_resources() {
    std::env::set_var("OPENAI_API_KEY", "sk-must-not-appear-0123456789");
    let files = render(&sample(), file_source());
    for f in &files {
        for d in &f.documents {
            assert!(!d.to_string().contains("sk-must-not-appear"), "{}", f.name);
        }
    }
}

/// With a global rate limit service, the EnvoyFilter carries what the standalone bootstrap
/// has: the rate limit filter between the downstream instance and the router, its 429 and
/// 500 mappers first among the local replies, and the service's cluster.
#[test]
fn global_rate_limit_patches() {
    let mut gateway = sample();
    gateway["general_settings"]["rate_limit_service"] =
        json!({"address": "ratelimit.istio-system.svc.cluster.local:8081"});
    let files = render(&gateway, file_source());
    let config = GatewayConfig::from_value(gateway.clone()).unwrap();
    let bootstrap = render::render_bootstrap(
        &config,
        &gateway,
        &RenderOptions {
            wasm_path: "x.wasm".into(),
        },
    );
    let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let standalone: Vec<&Value> = hcm["http_filters"].as_array().unwrap().iter().collect();
    assert_eq!(standalone[1]["name"], "envoy.filters.http.ratelimit");

    let http = patches(&files, "HTTP_FILTER");
    let ops: Vec<(&Value, &Value)> = http
        .iter()
        .map(|p| (&p["patch"]["operation"], &p["patch"]["value"]["name"]))
        .collect();
    assert_eq!(
        ops,
        vec![
            (
                &json!("INSERT_BEFORE"),
                &json!(ecds_name(FilterRole::Downstream))
            ),
            (
                &json!("INSERT_BEFORE"),
                &json!("envoy.filters.http.ratelimit")
            ),
            (&json!("MERGE"), &json!("envoy.filters.http.router")),
        ]
    );
    // Each insertion lands just before the router: the rate limit filter follows the
    // downstream instance, which names the key in filter state.
    assert_eq!(http[1]["patch"]["value"], *standalone[1]);

    let reply = &patches(&files, "NETWORK_FILTER")[0]["patch"]["value"]["typed_config"]
        ["local_reply_config"];
    assert_eq!(*reply, hcm["local_reply_config"]);
    let mappers = reply["mappers"].as_array().unwrap();
    // The 429 in Anthropic's shape on the Messages endpoints, then in OpenAI's.
    assert_eq!(
        mappers[0]["filter"]["and_filter"]["filters"][0],
        json!({"response_flag_filter": {"flags": ["RL"]}})
    );
    assert_eq!(
        mappers[1]["filter"],
        json!({"response_flag_filter": {"flags": ["RL"]}})
    );

    let clusters: Vec<&Value> = patches(&files, "CLUSTER")
        .into_iter()
        .map(|p| &p["patch"]["value"])
        .collect();
    assert!(clusters
        .iter()
        .any(|c| c["name"] == render::ratelimit::CLUSTER));
}

/// A literal demo master key is refused: an Istio gateway is reachable by other machines.
#[test]
fn the_public_demo_key_is_refused() {
    let mut gateway = sample();
    gateway["general_settings"]["master_key"] = json!("sk-gateway-demo");
    let config = GatewayConfig::from_value(gateway.clone()).unwrap();
    let e = render_istio(&config, &gateway, &options(file_source())).unwrap_err();
    assert!(
        e.starts_with("general_settings.master_key: the public demo key `sk-gateway-demo`"),
        "{e}"
    );
    assert!(e.contains("os.environ/LLM_GATEWAY_MASTER_KEY"), "{e}");
}
