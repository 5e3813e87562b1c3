"""Start-up: the public demo key is refused on an address other machines reach (by the CLI
and by Envoy), and what will fail in this environment is said once, by `check`/`render`,
and is what clients really get."""

from __future__ import annotations

import pytest

import harness
from harness import Envoy, gateway_config, provider_env, render, run_cli, start_gateway, write_yaml

DEMO_KEY = "sk-gateway-demo"
# RFC 6761: `.invalid` never resolves.
UNRESOLVABLE = "http://llm-gateway-e2e.invalid/v1"


@pytest.fixture(scope="module", autouse=True)
def artefacts():
    harness.require_artefacts()


def _config(listen_address: str, port: int = 14000, admin: int = 19901) -> dict:
    cfg = gateway_config("http://127.0.0.1:18081", None, port, admin,
                         master_key="os.environ/LLM_GATEWAY_MASTER_KEY")
    cfg["general_settings"]["listen_address"] = listen_address
    return cfg


@pytest.mark.parametrize("command", ["check", "render"])
def test_cli_refuses_the_demo_key_on_a_public_address(tmp_path, command):
    cfg = write_yaml(tmp_path / "gateway.yaml", _config("0.0.0.0"))
    out = tmp_path / "envoy.yaml"
    args = ["--wasm", str(harness.wasm_path()), "--out", str(out)] if command == "render" else []
    r = run_cli(command, "--config", str(cfg), *args, env=provider_env({"LLM_GATEWAY_MASTER_KEY": DEMO_KEY}))
    assert r.returncode != 0, r.stdout
    assert "general_settings.listen_address: `0.0.0.0` is reachable from other machines" in r.stderr, r.stderr
    assert "or listen on `127.0.0.1`" in r.stderr
    assert not out.exists()
    # The same config with a key of one's own, or the demo key on loopback, is fine.
    own = run_cli(command, "--config", str(cfg), *args,
                  env=provider_env({"LLM_GATEWAY_MASTER_KEY": "sk-my-own-key"}))
    assert own.returncode == 0, own.stderr
    local = write_yaml(tmp_path / "local.yaml", _config("127.0.0.1"))
    r = run_cli(command, "--config", str(local), *args, env=provider_env({"LLM_GATEWAY_MASTER_KEY": DEMO_KEY}))
    assert r.returncode == 0, r.stderr


def test_envoy_refuses_to_start_with_the_demo_key_on_a_public_address(tmp_path, envoys):
    """Rendered with a key of one's own, started with the demo key: the filter refuses."""
    admin = harness.free_port()
    cfg = write_yaml(tmp_path / "gateway.yaml", _config("0.0.0.0", harness.free_port(), admin))
    out = render(cfg, tmp_path / "envoy.yaml", env=provider_env({"LLM_GATEWAY_MASTER_KEY": "sk-my-own-key"}))
    envoy = Envoy(out, tmp_path, admin, env=provider_env({"LLM_GATEWAY_MASTER_KEY": DEMO_KEY}))
    envoys.append(envoy)
    envoy.start()
    code = envoy.wait_exit(timeout=20)
    assert code not in (None, 0), "Envoy served the demo key on 0.0.0.0"
    assert "general_settings.listen_address" in envoy.log_text(), envoy.log_tail()


def test_the_default_listen_address_is_loopback(tmp_path):
    cfg = _config("127.0.0.1")
    del cfg["general_settings"]["listen_address"]
    out = render(write_yaml(tmp_path / "gateway.yaml", cfg), tmp_path / "envoy.yaml")
    assert "address: 127.0.0.1\n" in out.read_text()
    assert "0.0.0.0" not in out.read_text()


def test_each_failure_is_said_once_and_is_what_clients_get(tmp_path, envoys, openai_fake, anthropic_fake):
    """A deployment whose host does not resolve gets 503 `no healthy upstream`; one whose key
    variable is unset gets 401 `provider_key_missing`; each is said once, at render time,
    and Envoy's log repeats neither."""
    unset = "E2E_UNSET_PROVIDER_KEY"
    extra = [
        {"model_name": "nowhere", "litellm_params": {"model": "openai/gpt-4o", "api_base": UNRESOLVABLE,
                                                     "api_key": f"os.environ/{unset}"}},
        {"model_name": "nowhere-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": UNRESOLVABLE}},
        {"model_name": "keyless", "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{openai_fake.url}/v1",
                                                     "api_key": f"os.environ/{unset}"}},
        {"model_name": "keyless-too", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                         "api_base": f"{openai_fake.url}/v1",
                                                         "api_key": f"os.environ/{unset}"}},
    ]
    cfg = write_yaml(tmp_path / "gateway.yaml",
                     gateway_config(openai_fake.url, anthropic_fake.url, 14000, 19901, extra_models=extra))
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: `llm-gateway-e2e.invalid` does not resolve from this machine: Envoy answers requests for "
        "nowhere, nowhere-mini with 503 `no healthy upstream` (unless a fallback answers); once it resolves, "
        f"they need `{unset}` set in Envoy's environment",
        f"warning: `{unset}` is not set: the gateway answers requests for keyless, keyless-too with 401 "
        "`provider_key_missing` (unless a fallback answers); export it before starting Envoy",
    ], r.stderr

    openai_fake.reset()
    g = start_gateway(tmp_path / "run", openai_fake, anthropic_fake, extra_models=extra)
    envoys.append(g.envoy)
    for model, status, says in (("nowhere", 503, b"no healthy upstream"),
                                ("keyless", 401, b"provider_key_missing")):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        resp = harness.request(g.port, "POST", "/v1/chat/completions", body)
        assert resp.status == status, (model, resp.status, resp.body)
        assert says in resp.body, (model, resp.body)
    assert not openai_fake.requests, "a request without its provider key reached the provider"
    log = g.envoy.log_text()
    assert "has no key" not in log and unset not in log, log[-2000:]
