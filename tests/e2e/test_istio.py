"""Istio resources (`llm-gateway render-istio`, `envoy/istio/`).

1. Every rendered manifest validates against its kind's model generated from Istio 1.24's
   CRD OpenAPI schemas (cloudcoil-models-istio), and strictly: a field the schema does not
   know would be dropped by the model, so the model's dump must equal the document.
2. The Envoy configuration inside the EnvoyFilter is checked by Envoy itself: its patches
   are applied, the way istiod applies them, to a gateway listener shaped like Istio's
   (HCM with a route to the VirtualService's catch-all route, Istio's stats settings), the
   Istio agent's module download is stood in for, and `envoy --mode validate` must accept
   the result, with the stats bootstrap override merged as Istio's gateway pods merge it.
3. The same assembly, served over ECDS like istiod serves it, runs real requests against
   the fake providers: auth, routing by model, a 429 that falls back to another provider,
   labelled stats and the access log.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from cloudcoil.models.istio.extensions import v1alpha1 as extensions
from cloudcoil.models.istio.networking import v1 as networking
from cloudcoil.models.istio.networking import v1alpha3

import harness
from fakes import openai_error
from harness import (ANTHROPIC_KEY, MASTER_KEY, OPENAI_KEY, REPO_ROOT, Envoy, envoy_bin, gateway_config,
                     provider_env, run_cli, write_yaml)

MODELS = {
    ("networking.istio.io/v1", "Gateway"): networking.Gateway,
    ("networking.istio.io/v1", "VirtualService"): networking.VirtualService,
    ("networking.istio.io/v1", "ServiceEntry"): networking.ServiceEntry,
    ("networking.istio.io/v1", "DestinationRule"): networking.DestinationRule,
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): v1alpha3.EnvoyFilter,
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): extensions.WasmPlugin,
}
ISTIO_DIR = REPO_ROOT / "envoy" / "istio"
VALUES_FILE = "gateway-values.yaml"  # Helm values, not a Kubernetes manifest
MANIFEST_FILES = ["providers.yaml", "gateway.yaml", "envoyfilter.yaml", "stats-bootstrap.yaml"]
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


@pytest.fixture(scope="module", autouse=True)
def artefacts():
    harness.require_artefacts()


def load_docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def validate_strictly(doc: dict) -> None:
    """Validates `doc` against its kind's CRD model; fails on unknown fields too."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key == ("v1", "ConfigMap"):
        assert set(doc) == {"apiVersion", "kind", "metadata", "data"}, doc.keys()
        assert all(isinstance(v, str) for v in doc["data"].values())
        return
    assert key in MODELS, f"no schema for {key}"
    model = MODELS[key].model_validate(doc)
    dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == doc, f"{key[1]} {doc['metadata']['name']}: fields outside Istio's schema were dropped"


def render_istio(tmp: Path, config: dict, wasm_url: str, sha256: str | None = None,
                 extra: tuple = ()) -> dict:
    """Runs `llm-gateway render-istio`; returns {file name: [documents]}."""
    cfg = write_yaml(tmp / "gateway.yaml", config)
    out = tmp / "istio"
    args = ["render-istio", "--config", str(cfg), "--wasm-url", wasm_url, "--out-dir", str(out), *extra]
    if sha256:
        args += ["--wasm-sha256", sha256]
    r = run_cli(*args)
    assert r.returncode == 0, f"render-istio failed:\n{r.stderr}{r.stdout}"
    return {p.name: load_docs(p) for p in sorted(out.glob("*.yaml"))}


def base_config(listen_port: int = 10000, admin_port: int = 9901, openai_url: str = "http://127.0.0.1:18081",
                anthropic_url: str = "http://127.0.0.1:18082", hosted: bool = True) -> dict:
    """The suite's two fakes with a fallback chain; `hosted` adds a public TLS provider
    (never contacted: only for rendering and validation)."""
    cfg = gateway_config(openai_url, anthropic_url, listen_port, admin_port,
                         router_settings={"fallbacks": [{"gpt-test": ["claude-test"]}]})
    if hosted:
        cfg["model_list"].append({"model_name": "hosted", "litellm_params": {
            "model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}})
    return cfg


def module_sha256() -> str:
    return hashlib.sha256(harness.wasm_path().read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# 1. Schemas


@pytest.mark.parametrize("name", MANIFEST_FILES)
def test_committed_manifests_match_istio_schemas(name):
    docs = load_docs(ISTIO_DIR / name)
    assert docs, f"envoy/istio/{name} is empty"
    for doc in docs:
        validate_strictly(doc)


def test_committed_files_are_the_whole_set():
    assert sorted(p.name for p in ISTIO_DIR.glob("*.yaml")) == sorted(MANIFEST_FILES + [VALUES_FILE])
    assert (ISTIO_DIR / "README.md").is_file()


def test_the_module_fits_a_configmap():
    # Istio's file:// mode ships the module in a ConfigMap, which holds at most 1 MiB.
    size = harness.wasm_path().stat().st_size
    assert size < 1024 * 1024, f"the module is {size} bytes, over the 1 MiB a ConfigMap holds"


SOURCES = {
    "file": ("file:///var/lib/llm-gateway/llm_gateway.wasm", False),
    "https": ("https://downloads.example.com/llm-gateway/0.1.0/llm_gateway.wasm", True),
    "oci": ("oci://ghcr.io/example/llm-gateway:0.1.0", False),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_rendered_manifests_match_istio_schemas(tmp_path, source):
    url, needs_sha = SOURCES[source]
    files = render_istio(tmp_path, base_config(), url, module_sha256() if needs_sha else None,
                         extra=("--namespace", "llm", "--selector", "app=llm-gateway,istio=ingress"))
    assert sorted(files) == sorted(MANIFEST_FILES + [VALUES_FILE])
    kinds = []
    for name in MANIFEST_FILES:
        for doc in files[name]:
            validate_strictly(doc)
            assert doc["metadata"]["namespace"] == "llm"
            kinds.append(doc["kind"])
    assert sorted(set(kinds)) == ["ConfigMap", "DestinationRule", "EnvoyFilter", "Gateway", "ServiceEntry",
                                  "VirtualService"]
    ef = files["envoyfilter.yaml"][0]
    assert ef["spec"]["workloadSelector"]["labels"] == {"app": "llm-gateway", "istio": "ingress"}
    gw = files["gateway.yaml"][0]
    assert gw["spec"]["selector"] == {"app": "llm-gateway", "istio": "ingress"}
    for patch in ef["spec"]["configPatches"]:
        if patch["applyTo"] == "EXTENSION_CONFIG":
            code = patch["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]
            if source == "file":
                assert code == {"local": {"filename": "/var/lib/llm-gateway/llm_gateway.wasm"}}
            else:
                assert code["remote"]["http_uri"]["uri"] == url
    values = files[VALUES_FILE][0]
    assert [e["name"] for e in values["envVarFrom"]] == sorted(
        ["FAKE_ANTHROPIC_KEY", "FAKE_OPENAI_KEY", "OPENAI_API_KEY"])
    assert ("volumes" in values) == (source == "file")


@pytest.mark.parametrize("args,message", [
    (("--wasm-url", "https://example.com/m.wasm"), "--wasm-sha256"),
    (("--wasm-url", "http://example.com/m.wasm"), "must start with https://, oci:// or file://"),
    (("--wasm-url", "file://relative.wasm"), "absolute path"),
    (("--wasm-url", "oci://ghcr.io/a/b:1", "--selector", "app"), "--selector"),
    (("--wasm-url", "oci://ghcr.io/a/b:1", "--namespace", "Istio_System"), "--namespace"),
    (("--wasm-url", "oci://ghcr.io/a/b:1", "--wasm-sha256", "xyz"), "64 hex digits"),
])
def test_render_istio_refuses_bad_options(tmp_path, args, message):
    cfg = write_yaml(tmp_path / "gateway.yaml", base_config())
    r = run_cli("render-istio", "--config", str(cfg), "--out-dir", str(tmp_path / "out"), *args)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_wasmplugin_schema_cannot_carry_what_the_gateway_needs():
    """Why the gateway ships no WasmPlugin: Istio's WasmPlugin has no field for
    `allow_on_headers_stop_iteration` (without it, pausing headers for the body hangs the
    request) and, in 1.24, no FAIL_RELOAD failure strategy."""
    plugin = {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
              "metadata": {"name": "llm-gateway", "namespace": "istio-system"},
              "spec": {"url": "oci://ghcr.io/example/llm-gateway:0.1.0", "phase": "AUTHN",
                       "selector": {"matchLabels": {"app": "istio-ingressgateway"}},
                       "allowOnHeadersStopIteration": True}}
    with pytest.raises(AssertionError, match="dropped"):
        validate_strictly(plugin)
    assert "allow_on_headers_stop_iteration" not in extensions.WasmPluginSpec.model_fields
    with pytest.raises(Exception, match="FAIL_CLOSE"):
        extensions.WasmPlugin.model_validate({**plugin, "spec": {**plugin["spec"], "failStrategy": "FAIL_RELOAD"}})


# ---------------------------------------------------------------------------------------------
# 2. and 3. The EnvoyFilter's Envoy configuration, applied like istiod applies it

# A few of Istio's own bootstrap tag rules, so that the filter's rules are shown to work
# next to them, with Istio's `use_all_default_tags: false`.
ISTIO_STATS_TAGS = [
    {"tag_name": "cluster_name", "regex": "^cluster(\\.(.+);)"},
    {"tag_name": "response_code", "regex": "_rq(_(\\d{3}))$"},
    {"tag_name": "response_code_class", "regex": "_rq(_(\\dxx))$"},
    {"tag_name": "cache", "regex": "(cache\\.(.+?)\\.)"},
    {"tag_name": "component", "regex": "(component\\.(.+?)\\.)"},
    {"tag_name": "tag", "regex": "(tag\\.(.+?);\\.)"},
    {"tag_name": "wasm_filter", "regex": "(wasm_filter\\.(.+?)\\.)"},
]
# Istio always keeps these stats (the filter's are named wasmcustom.*, kept by "wasm").
ISTIO_STATS_INCLUSION = ["reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]


def istio_gateway_bootstrap(port: int, admin_port: int, vs_route: dict) -> dict:
    """A gateway proxy's config as Istio builds it before any EnvoyFilter: a listener on the
    Gateway server's port, its HCM with Istio's gateway filters and the VirtualService's
    route, Istio's stats settings."""
    return {
        "node": {"id": "router~10.0.0.1~llm-gateway-0.istio-system~istio-system.svc.cluster.local",
                 "cluster": "llm-gateway.istio-system"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "stats_config": {"use_all_default_tags": False, "stats_tags": copy.deepcopy(ISTIO_STATS_TAGS),
                         "stats_matcher": {"inclusion_list": {"patterns": [
                             {"prefix": p} for p in ISTIO_STATS_INCLUSION]}}},
        "static_resources": {
            "listeners": [{
                "name": f"0.0.0.0_{port}",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM_TYPE,
                        "stat_prefix": f"outbound_0.0.0.0_{port}",
                        "route_config": {"name": f"http.{port}", "virtual_hosts": [
                            {"name": f"*:{port}", "domains": ["*"], "routes": [vs_route]}]},
                        "http_filters": [
                            {"name": "envoy.filters.http.cors", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
                            {"name": "envoy.filters.http.fault", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}},
                        ],
                    },
                }]}],
            }],
            "clusters": [],
        },
    }


def virtual_service_route(vs: dict) -> dict:
    """The Envoy route istiod makes from the VirtualService's one HTTP route."""
    (http,) = vs["spec"]["http"]
    direct = http["directResponse"]
    return {"name": http["name"], "match": {"prefix": "/"},
            "direct_response": {"status": direct["status"], "body": {"inline_string": direct["body"]["string"]}}}


def proto_merge(dst: dict, src: dict) -> None:
    """istiod's MERGE: messages merge field by field, repeated fields append, scalars
    replace; typed configs merge only when their types are the same."""
    if "@type" in dst and "@type" in src:
        assert dst["@type"] == src["@type"], f"MERGE of {src['@type']} into {dst['@type']} is a no-op in istiod"
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            proto_merge(dst[k], v)
        elif isinstance(v, list) and isinstance(dst.get(k), list):
            dst[k] = dst[k] + copy.deepcopy(v)
        else:
            dst[k] = copy.deepcopy(v)


def agent_fetch(extension: dict, module: Path, mounts: dict) -> dict:
    """The Istio agent's part for an ECDS Wasm resource: a remote module is downloaded,
    checked against its sha256 and handed to Envoy as a local file. A local module is
    passed through; here it is read where the pod's volume mount (`mounts`: container
    directory -> directory here) would put it."""
    ext = copy.deepcopy(extension)
    code = ext["typed_config"]["config"]["vm_config"]["code"]
    if "local" in code:
        path = Path(code["local"]["filename"])
        if not path.is_file():
            assert str(path.parent) in mounts, f"nothing mounts {path} into the gateway pods"
            code["local"]["filename"] = str(Path(mounts[str(path.parent)]) / path.name)
    if "remote" in code:
        uri = code["remote"]["http_uri"]["uri"]
        assert uri.startswith(("https://", "oci://")), uri
        if uri.startswith("https://"):
            assert code["remote"]["sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
        ext["typed_config"]["config"]["vm_config"]["code"] = {"local": {"filename": str(module)}}
    return ext


def apply_envoyfilter(bootstrap: dict, envoyfilter: dict, module: Path, mounts: dict) -> dict:
    """Applies the patches to the gateway config; returns the ECDS resources by name."""
    listener = bootstrap["static_resources"]["listeners"][0]
    port = listener["address"]["socket_address"]["port_value"]
    hcm_filter = listener["filter_chains"][0]["filters"][0]
    hcm = hcm_filter["typed_config"]
    filters = hcm["http_filters"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    extensions_by_name = {}
    applied = []
    for p in envoyfilter["spec"]["configPatches"]:
        kind, op, value, match = p["applyTo"], p["patch"]["operation"], p["patch"].get("value"), p.get("match", {})
        if kind == "EXTENSION_CONFIG":
            assert op == "ADD", "istiod serves only ADDed extension configs"
            extensions_by_name[value["name"]] = agent_fetch(value, module, mounts)
            applied.append(p)
            continue
        assert match.get("context") == "GATEWAY", p
        if kind in ("LISTENER", "NETWORK_FILTER", "HTTP_FILTER"):
            assert match["listener"]["portNumber"] == port, "the patch would miss the Gateway server's listener"
            fm = match["listener"].get("filterChain", {}).get("filter", {})
            if kind == "LISTENER":
                assert op == "MERGE"
                proto_merge(listener, value)
            elif kind == "NETWORK_FILTER":
                assert op == "MERGE" and fm["name"] == hcm_filter["name"]
                proto_merge(hcm_filter, value)
            else:
                assert fm["name"] == hcm_filter["name"]
                (i,) = [n for n, f in enumerate(filters) if f["name"] == fm["subFilter"]["name"]]
                if op == "INSERT_BEFORE":
                    filters.insert(i, copy.deepcopy(value))
                else:
                    assert op == "MERGE"
                    proto_merge(filters[i], value)
        elif kind == "CLUSTER":
            assert op == "ADD"
            bootstrap["static_resources"]["clusters"].append(copy.deepcopy(value))
        elif kind == "HTTP_ROUTE":
            name = match["routeConfiguration"]["vhost"]["route"]["name"]
            (i,) = [n for n, r in enumerate(routes) if r["name"] == name]
            if op == "INSERT_BEFORE":
                routes.insert(i, copy.deepcopy(value))
            else:
                assert op == "MERGE"
                proto_merge(routes[i], value)
        else:
            raise AssertionError(f"unexpected patch {kind}")
        applied.append(p)
    assert len(applied) == len(envoyfilter["spec"]["configPatches"])
    return extensions_by_name


def discovered_filters(bootstrap: dict) -> list:
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    out = [f for f in hcm["http_filters"] if "config_discovery" in f]
    for f in hcm["http_filters"]:
        out += [u for u in f.get("typed_config", {}).get("upstream_http_filters", []) if "config_discovery" in u]
    return out


def resolve_extensions(bootstrap: dict, extensions_by_name: dict, ecds_dir: Path | None) -> None:
    """Serves the extension configs: inline (so that `--mode validate` checks them) or as
    ECDS files standing in for istiod's ADS (same names, type URLs and fetch timeout)."""
    found = discovered_filters(bootstrap)
    assert sorted(f["name"] for f in found) == sorted(extensions_by_name), "every ECDS resource is referenced"
    for f in found:
        ext = extensions_by_name[f["name"]]
        assert ext["typed_config"]["@type"] in f["config_discovery"]["type_urls"]
        if ecds_dir is None:
            del f["config_discovery"]
            f["typed_config"] = ext["typed_config"]
            continue
        path = ecds_dir / f"{f['name']}.yaml"
        path.write_text(yaml.safe_dump({"resources": [
            {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **ext}]}))
        source = f["config_discovery"]["config_source"]
        assert source.pop("ads") == {}
        source["path_config_source"] = {"path": str(path)}


def stats_override(files: dict) -> str:
    (cm,) = files["stats-bootstrap.yaml"]
    return cm["data"]["custom_bootstrap.json"]


def assemble(tmp: Path, files: dict, port: int, admin_port: int, via_ecds: bool) -> Path:
    gateway, vs = files["gateway.yaml"]
    assert gateway["spec"]["servers"][0]["port"]["number"] == port
    bootstrap = istio_gateway_bootstrap(port, admin_port, virtual_service_route(vs))
    (envoyfilter,) = files["envoyfilter.yaml"]
    # The Helm values mount the module's ConfigMap for a file:// module; stand in for it
    # with a directory holding the built module under the name the ConfigMap key gives it.
    mounts = {}
    values = files[VALUES_FILE][0]
    for m in values.get("volumeMounts", []):
        (volume,) = [v for v in values["volumes"] if v["name"] == m["name"]]
        mounted = tmp / "mounts" / m["name"]
        mounted.mkdir(parents=True, exist_ok=True)
        for item in volume["configMap"]["items"]:
            target = mounted / item["path"]
            if not target.exists():
                target.symlink_to(harness.wasm_path())
        mounts[m["mountPath"]] = str(mounted)
    extensions_by_name = apply_envoyfilter(bootstrap, envoyfilter, harness.wasm_path(), mounts)
    ecds_dir = None
    if via_ecds:
        ecds_dir = tmp / "ecds"
        ecds_dir.mkdir()
    resolve_extensions(bootstrap, extensions_by_name, ecds_dir)
    out = tmp / ("istio-gateway-ecds.yaml" if via_ecds else "istio-gateway.yaml")
    out.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return out


def envoy_validate(config: Path, override: str, cwd: Path) -> subprocess.CompletedProcess:
    env = provider_env({"OPENAI_API_KEY": "sk-validate-openai", "ANTHROPIC_API_KEY": "sk-validate-anthropic",
                        "LLM_GATEWAY_MASTER_KEY": "sk-validate-master"})
    return subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(config), "--config-yaml", override,
                           "-l", "warning"], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def test_committed_envoyfilter_validates_in_envoy(tmp_path):
    files = {name: load_docs(ISTIO_DIR / name) for name in MANIFEST_FILES + [VALUES_FILE]}
    gateway = load_docs(REPO_ROOT / "envoy" / "gateway.yaml")[0]
    port = gateway["general_settings"]["listen_port"]
    for via_ecds in (False, True):
        config = assemble(tmp_path, files, port, harness.free_port(), via_ecds)
        v = envoy_validate(config, stats_override(files), tmp_path)
        assert v.returncode == 0, f"envoy --mode validate failed:\n{v.stdout}\n{v.stderr}"


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_rendered_envoyfilter_validates_in_envoy(tmp_path, source):
    url, needs_sha = SOURCES[source]
    files = render_istio(tmp_path, base_config(listen_port=10000), url, module_sha256() if needs_sha else None)
    config = assemble(tmp_path, files, 10000, harness.free_port(), via_ecds=False)
    v = envoy_validate(config, stats_override(files), tmp_path)
    assert v.returncode == 0, f"envoy --mode validate failed:\n{v.stdout}\n{v.stderr}"


class OverriddenEnvoy(Envoy):
    """Envoy started like pilot-agent starts it with a bootstrap override."""

    def __init__(self, *args, override: str, **kw) -> None:
        super().__init__(*args, **kw)
        self.override = override

    def start(self) -> "OverriddenEnvoy":
        cmd = [envoy_bin(), "-c", str(self.config), "--config-yaml", self.override, "--concurrency", "2",
               "--base-id", str(harness._unique_base_id()), "-l", self.log_level, "--log-path", str(self.log_path)]
        with open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self


@pytest.fixture(scope="module")
def istio_gateway(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("istio")
    port, admin_port = harness.free_port(), harness.free_port()
    cfg = base_config(listen_port=port, openai_url=openai_fake.url, anthropic_url=anthropic_fake.url, hosted=False)
    files = render_istio(tmp, cfg, f"file://{harness.wasm_path()}")
    config = assemble(tmp, files, port, admin_port, via_ecds=True)
    envoy = OverriddenEnvoy(config, tmp, admin_port, override=stats_override(files)).start()
    try:
        envoy.wait_ready()
        yield envoy, port
    finally:
        envoy.stop()


def chat(port: int, model: str, key: str = MASTER_KEY) -> harness.Response:
    return harness.request(port, "POST", "/v1/chat/completions",
                           {"model": model, "messages": [{"role": "user", "content": "hello"}]}, key=key)


def admin(envoy: Envoy, path: str) -> str:
    with urllib.request.urlopen(f"{envoy.admin_url}{path}", timeout=5) as r:
        return r.read().decode()


def test_istio_shaped_gateway_serves_and_falls_back(istio_gateway, openai_fake, anthropic_fake, request):
    envoy, port = istio_gateway
    request.node._envoys = [envoy]
    openai_fake.reset()
    anthropic_fake.reset()
    try:
        # What envoy/istio/README.md tells operators to check: both instances arrived over
        # ECDS (one config dump section each) with the flag.
        dump = admin(envoy, "/config_dump")
        assert dump.count('"allow_on_headers_stop_iteration": true') == 2, dump[:2000]
        sections = [c for c in json.loads(dump)["configs"] if c["@type"].endswith("EcdsConfigDump")]
        names = sorted(f["ecds_filter"]["name"] for c in sections for f in c["ecds_filters"])
        assert names == ["llm-gateway.downstream", "llm-gateway.upstream"], names

        harness.assert_openai_error(chat(port, "gpt-test", key="sk-wrong"), 401)
        harness.assert_openai_error(chat(port, "no-such-model"), 404)
        assert not openai_fake.requests and not anthropic_fake.requests

        r = chat(port, "gpt-test")
        assert r.status == 200, r.body
        assert r.header("x-llm-provider") == "openai"
        assert r.header("x-llm-attempts") == "1"
        assert openai_fake.last.header_values("authorization") == [f"Bearer {OPENAI_KEY}"]

        openai_fake.enqueue(openai_error(429, "slow down", "rate_limit_error"))
        r = chat(port, "gpt-test")
        assert r.status == 200, r.body
        assert r.header("x-llm-provider") == "anthropic"
        assert r.header("x-llm-deployment") == "claude-test"
        assert r.header("x-llm-attempts") == "2"
        last = anthropic_fake.last
        assert last.header_values("x-api-key") == [ANTHROPIC_KEY]
        assert not last.header_values("authorization")

        deadline = time.monotonic() + 15
        wanted = ['model="gpt-test"', 'provider="anthropic"', 'status_class="2xx"']
        line = None
        while time.monotonic() < deadline and line is None:
            prom = admin(envoy, "/stats/prometheus")
            line = next((x for x in prom.splitlines()
                         if x.startswith("llm_requests_total{") and all(w in x for w in wanted)), None)
            time.sleep(0.5)
        assert line is not None, "no labelled llm_requests_total series for the fallback"

        def fallback_logged() -> bool:
            logs = [json.loads(x) for x in envoy.stdout_path.read_text().splitlines() if x.startswith("{")]
            return any(e.get("model") == "gpt-test" and e.get("provider") == "anthropic"
                       and e.get("attempts") == 2 for e in logs)

        deadline = time.monotonic() + 20  # Envoy flushes stdout access logs in batches
        while time.monotonic() < deadline and not fallback_logged():
            time.sleep(0.5)
        assert fallback_logged(), envoy.stdout_path.read_text()
    finally:
        openai_fake.reset()
        anthropic_fake.reset()


def test_the_module_refuses_the_demo_key_on_an_istio_gateway(tmp_path, openai_fake, anthropic_fake):
    """The rendered plugin config says the listener is exposed: with the public demo key in
    the pods' Secret, the module refuses its config and no request reaches a provider."""
    port, admin_port = harness.free_port(), harness.free_port()
    cfg = base_config(listen_port=port, openai_url=openai_fake.url, anthropic_url=anthropic_fake.url, hosted=False)
    cfg["general_settings"]["master_key"] = "os.environ/LLM_GATEWAY_MASTER_KEY"
    files = render_istio(tmp_path, cfg, f"file://{harness.wasm_path()}")
    config = assemble(tmp_path, files, port, admin_port, via_ecds=True)
    env = provider_env({"LLM_GATEWAY_MASTER_KEY": "sk-gateway-demo"})
    envoy = OverriddenEnvoy(config, tmp_path, admin_port, env=env, override=stats_override(files)).start()
    openai_fake.reset()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "public demo key" not in envoy.log_tail(400):
            time.sleep(0.2)
        assert "public demo key `sk-gateway-demo`" in envoy.log_tail(400), envoy.log_tail()
        try:
            r = chat(port, "gpt-test", key="sk-gateway-demo")
            assert r.status != 200, r.body
        except OSError:
            pass  # no listener is also a refusal
        assert not openai_fake.requests
    finally:
        envoy.stop()


def test_istio_shaped_gateway_enforces_global_rate_limits(tmp_path, openai_fake, anthropic_fake, request):
    """With `rate_limit_service`, the EnvoyFilter carries Envoy's global rate limit filter:
    a virtual key over its requests per minute gets the OpenAI-shaped 429, as from the
    standalone bootstrap."""
    from ratelimit_server import RateLimitServer

    key = "sk-gw-test-istio-rl-0123456789abcdef"
    rls = RateLimitServer({"domain": "llm_gateway", "descriptors": [
        {"key": "generic_key", "value": "requests", "descriptors": [
            {"key": "key", "value": "alice", "rate_limit": {"unit": "minute", "requests_per_unit": 2}}]}]}).start()
    # Frozen inside one minute, so the window does not reset during the test.
    rls.clock = lambda: 1_800_000_000 - 1_800_000_000 % 60 + 5
    port, admin_port = harness.free_port(), harness.free_port()
    cfg = base_config(listen_port=port, openai_url=openai_fake.url, anthropic_url=anthropic_fake.url, hosted=False)
    cfg["virtual_keys"] = [{"name": "alice", "key_sha256": hashlib.sha256(key.encode()).hexdigest()}]
    cfg["general_settings"]["rate_limit_service"] = {"address": rls.address}
    files = render_istio(tmp_path, cfg, f"file://{harness.wasm_path()}")
    v = envoy_validate(assemble(tmp_path, files, port, admin_port, via_ecds=False), stats_override(files), tmp_path)
    assert v.returncode == 0, f"envoy --mode validate failed:\n{v.stdout}\n{v.stderr}"
    config = assemble(tmp_path, files, port, admin_port, via_ecds=True)
    envoy = OverriddenEnvoy(config, tmp_path, admin_port, override=stats_override(files)).start()
    request.node._envoys = [envoy]
    openai_fake.reset()
    try:
        envoy.wait_ready()
        assert [chat(port, "gpt-test", key=key).status for _ in range(2)] == [200, 200]
        r = chat(port, "gpt-test", key=key)
        err = harness.assert_openai_error(r, 429, "rate_limit_error")
        assert err["code"] == "rate_limit_exceeded", err
        assert r.header("retry-after"), r.headers
        assert len(openai_fake.requests) == 2
        # The master key sends no descriptor: never limited.
        assert chat(port, "gpt-test").status == 200
    finally:
        envoy.stop()
        rls.stop()
        openai_fake.reset()
