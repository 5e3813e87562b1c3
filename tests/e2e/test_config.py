"""Configs: rendered bootstraps and the repo's Envoy files (the bench's too) validate;
`check` and `render` refuse invalid gateway configs naming the field; Envoy refuses a bad
plugin config; the master key can come from the environment."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import harness
from harness import (ANTHROPIC_KEY, MASTER_KEY, OPENAI_KEY, REPO_ROOT, Envoy, envoy_validate,
                     gateway_config, provider_env, render, run_cli, start_gateway, write_yaml)


@pytest.fixture(scope="module", autouse=True)
def artefacts():
    harness.require_artefacts()


def base_config() -> dict:
    # Ports are never bound by these tests; fixed values keep the files readable.
    return gateway_config("http://127.0.0.1:18081", "http://127.0.0.1:18082", 10000, 9901)


def variants() -> dict:
    keyless = base_config()
    keyless["model_list"].append({"model_name": "local-llama", "litellm_params": {
        "model": "openai/llama3", "api_base": "http://127.0.0.1:18083/v1"}})

    hosted = base_config()
    hosted["model_list"] = [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                    "api_key": "os.environ/ANTHROPIC_API_KEY"}},
    ]

    multi = base_config()
    multi["model_list"] += [
        {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                   "api_base": "http://127.0.0.1:18082",
                                                   "api_key": "os.environ/FAKE_ANTHROPIC_KEY"},
         "model_info": {"id": "smart-primary"}},
        {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                   "api_base": "http://127.0.0.1:18081/v1",
                                                   "api_key": "os.environ/FAKE_OPENAI_KEY"},
         "model_info": {"id": "smart-fallback"}},
    ]

    tuned = base_config()
    tuned["model_list"][1]["litellm_params"].update({"anthropic_version": "2023-06-01", "timeout": 30})
    tuned["model_list"][1]["model_info"] = {"max_output_tokens": 1024}
    tuned["general_settings"].update({"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY",
                                      "request_timeout": 120, "max_request_body_bytes": 4 * 1024 * 1024})

    return {"base": base_config(), "keyless-local": keyless, "hosted-tls": hosted,
            "multi-deployment": multi, "tuned": tuned}


VARIANTS = variants()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rendered_config_validates_in_envoy(tmp_path, name):
    cfg = write_yaml(tmp_path / "gateway.yaml", VARIANTS[name])
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, f"check refused a valid config:\n{r.stderr}"
    out = render(cfg, tmp_path / "envoy.yaml")
    doc = yaml.safe_load(out.read_text())
    assert "static_resources" in doc
    v = envoy_validate(out, cwd=tmp_path)
    assert v.returncode == 0, f"envoy --mode validate failed:\n{v.stdout}\n{v.stderr}"


def test_rendered_config_carries_no_provider_key(tmp_path):
    cfg = write_yaml(tmp_path / "gateway.yaml", base_config())
    out = render(cfg, tmp_path / "envoy.yaml", env=provider_env())
    text = out.read_text()
    assert OPENAI_KEY not in text
    assert ANTHROPIC_KEY not in text


def _repo_bootstraps() -> list:
    params = []
    for path in sorted((REPO_ROOT / "envoy").glob("*.yaml")):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            params.append(pytest.param(path, f"not valid YAML: {e}", id=path.name))
            continue
        if any(isinstance(d, dict) and "static_resources" in d for d in docs):
            params.append(pytest.param(path, None, id=path.name))
    if not params:
        params.append(pytest.param(None, None, id="none",
                                   marks=pytest.mark.skip(reason="no Envoy bootstrap in envoy/*.yaml yet")))
    return params


@pytest.mark.parametrize("path,problem", _repo_bootstraps())
def test_repo_envoy_bootstrap_validates(path, problem):
    assert problem is None, f"{path}: {problem}"
    v = envoy_validate(path, cwd=REPO_ROOT)
    assert v.returncode == 0, f"envoy --mode validate {path.relative_to(REPO_ROOT)} failed:\n{v.stdout}\n{v.stderr}"


BENCH = REPO_ROOT / "bench"


def test_bench_configs_validate(tmp_path):
    """`make bench`'s Envoys: the gateway config passes `check` and renders, with Bedrock's
    signer and Vertex AI's token cluster, into a bootstrap Envoy accepts; the floor and the
    fake provider the harness generates (canned answers, token endpoint, signature checks)
    validate too."""
    r = run_cli("check", "--config", str(BENCH / "gateway.yaml"))
    assert r.returncode == 0, f"check refused bench/gateway.yaml:\n{r.stderr}"
    out = render(BENCH / "gateway.yaml", tmp_path / "bench-envoy.yaml")
    text = out.read_text()
    assert "envoy.filters.http.aws_request_signing" in text and "llm_gcp_token" in text
    fx = tmp_path / "fixtures"
    fx.mkdir()
    fake = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
         "import run; print(run.fake_provider_yaml(Path(sys.argv[2])))", str(BENCH), str(fx)],
        capture_output=True, text=True, timeout=60, check=True).stdout
    # The answers `driver fixtures` writes for the bench; any bytes do for validation.
    for name in set(re.findall(r'filename: "([^"]+)"', fake)):
        (fx / Path(name).name).write_text("{}")
    fake_cfg = tmp_path / "fake-provider.yaml"
    fake_cfg.write_text(fake)
    for path in (out, BENCH / "floor.yaml", fake_cfg):
        v = envoy_validate(path, cwd=tmp_path)
        assert v.returncode == 0, f"envoy --mode validate {path.name} failed:\n{v.stdout}\n{v.stderr}"


# --- invalid gateway configs ---------------------------------------------------------------


def _mutate(fn) -> dict:
    cfg = copy.deepcopy(base_config())
    fn(cfg)
    return cfg


LITERAL_KEY = "sk-literal-provider-key-must-not-print-42"

INVALID = {
    "literal-provider-key": (
        lambda c: c["model_list"][0]["litellm_params"].__setitem__("api_key", LITERAL_KEY),
        "model_list[0].litellm_params.api_key"),
    "literal-anthropic-key": (
        lambda c: c["model_list"][1]["litellm_params"].__setitem__("api_key", LITERAL_KEY),
        "model_list[1].litellm_params.api_key"),
    "unknown-provider": (
        lambda c: c["model_list"][0]["litellm_params"].__setitem__("model", "mystery/x"),
        "model_list[0].litellm_params.model"),
    "no-provider-prefix": (
        lambda c: c["model_list"][1]["litellm_params"].__setitem__("model", "claude-sonnet-4-5"),
        "model_list[1].litellm_params.model"),
    "misspelt-field": (
        lambda c: c["model_list"][1]["litellm_params"].__setitem__("modle", "x"),
        "model_list[1].litellm_params.modle"),
    "bad-api-base": (
        lambda c: c["model_list"][0]["litellm_params"].__setitem__("api_base", "ftp://127.0.0.1/v1"),
        "model_list[0].litellm_params.api_base"),
    "bad-model-name": (
        lambda c: c["model_list"][0].__setitem__("model_name", "has spaces"),
        "model_list[0].model_name"),
    "no-master-key": (
        lambda c: c["general_settings"].pop("master_key"),
        "general_settings.master_key"),
    "empty-model-list": (
        lambda c: c.__setitem__("model_list", []),
        "model_list"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_check_refuses_invalid_config_naming_the_field(tmp_path, name):
    mutate, field = INVALID[name]
    cfg = write_yaml(tmp_path / "gateway.yaml", _mutate(mutate))
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode != 0, f"check accepted an invalid config ({name})"
    assert field in r.stderr, f"stderr does not name {field}:\n{r.stderr}"
    assert LITERAL_KEY not in r.stderr + r.stdout, "the literal key was printed"


@pytest.mark.parametrize("name", sorted(INVALID))
def test_render_refuses_invalid_config_naming_the_field(tmp_path, name):
    mutate, field = INVALID[name]
    cfg = write_yaml(tmp_path / "gateway.yaml", _mutate(mutate))
    out = tmp_path / "envoy.yaml"
    r = run_cli("render", "--config", str(cfg), "--wasm", str(harness.wasm_path()), "--out", str(out))
    assert r.returncode != 0, f"render accepted an invalid config ({name})"
    assert field in r.stderr, f"stderr does not name {field}:\n{r.stderr}"
    assert not out.exists() or out.stat().st_size == 0, "render wrote a bootstrap for an invalid config"
    assert LITERAL_KEY not in r.stderr + r.stdout


def test_check_refuses_a_missing_file(tmp_path):
    r = run_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode != 0
    assert "nope.yaml" in r.stderr


# --- Envoy refuses a bad plugin configuration ---------------------------------------------


def _plugin_configs(node, found: list) -> None:
    """Collects every wasm `configuration` StringValue holding the gateway's JSON."""
    if isinstance(node, dict):
        conf = node.get("configuration")
        if isinstance(conf, dict) and str(conf.get("@type", "")).endswith("google.protobuf.StringValue"):
            try:
                value = json.loads(conf.get("value", ""))
            except ValueError:
                value = None
            if isinstance(value, dict):
                found.append((conf, value))
        for v in node.values():
            _plugin_configs(v, found)
    elif isinstance(node, list):
        for v in node:
            _plugin_configs(v, found)


def _drop_model_list(node) -> bool:
    """Removes `model_list` wherever it is in the plugin JSON; True when one was removed."""
    dropped = False
    if isinstance(node, dict):
        if "model_list" in node:
            del node["model_list"]
            dropped = True
        for v in node.values():
            dropped = _drop_model_list(v) or dropped
    elif isinstance(node, list):
        for v in node:
            dropped = _drop_model_list(v) or dropped
    return dropped


def test_envoy_refuses_to_start_with_a_bad_plugin_config(tmp_path, envoys):
    admin = harness.free_port()
    cfg = gateway_config("http://127.0.0.1:18081", "http://127.0.0.1:18082", harness.free_port(), admin)
    out = render(write_yaml(tmp_path / "gateway.yaml", cfg), tmp_path / "envoy.yaml")
    doc = yaml.safe_load(out.read_text())
    found: list = []
    _plugin_configs(doc, found)
    edited = 0
    for conf, value in found:
        if _drop_model_list(value):
            conf["value"] = json.dumps(value)
            edited += 1
    assert edited, "no wasm plugin configuration with model_list in the rendered bootstrap"
    bad = write_yaml(tmp_path / "envoy-bad.yaml", doc)
    envoy = Envoy(bad, tmp_path, admin)
    envoys.append(envoy)
    envoy.start()
    code = envoy.wait_exit(timeout=20)
    assert code is not None, "Envoy kept running with a plugin config that has no model_list"
    assert code != 0
    log = envoy.log_text()
    assert "Unable to create Wasm plugin" in log or "Failed to configure" in log, log[-2000:]


# --- master key from the environment -------------------------------------------------------


def test_master_key_from_the_environment(tmp_path, envoys, openai_fake, anthropic_fake):
    openai_fake.reset()
    anthropic_fake.reset()
    g = start_gateway(tmp_path, openai_fake, anthropic_fake, master_key="os.environ/E2E_MASTER_KEY",
                      env_extra={"E2E_MASTER_KEY": "sk-master-from-env-777"})
    envoys.append(g.envoy)
    rendered = g.envoy_config_path.read_text()
    assert "sk-master-from-env-777" not in rendered
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "env key"}]}
    r = harness.request(g.port, "POST", "/v1/chat/completions", body, key="sk-master-from-env-777")
    assert r.status == 200, r.body
    assert r.json["choices"][0]["message"]["content"] == "echo: env key"
    for wrong in ("os.environ/E2E_MASTER_KEY", MASTER_KEY, "", None):
        r = harness.request(g.port, "POST", "/v1/chat/completions", body, key=wrong)
        assert r.status == 401, (wrong, r.body)
    assert len(openai_fake.requests) == 1
    openai_fake.reset()
