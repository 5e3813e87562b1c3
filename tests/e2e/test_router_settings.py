"""`router_settings` knobs LiteLLM users expect, done by Envoy: `routing_strategy:
least-busy` (Envoy's least-request policy, every deployment compared) sends fewer requests
to a deployment that answers slowly; `num_retries` retries a deployment before the chain moves on; a provider's
`Retry-After` is honoured by Envoy's rate-limited retry back-off. Strategies Envoy cannot
run are refused at `check`, naming the Envoy policies that exist."""

from __future__ import annotations

import concurrent.futures
import email.utils
import time

import pytest

import harness
from fakes import OpenAIFake, Reply, openai_completion, openai_error
from harness import OPENAI_KEY, OPENAI_KEY_ENV, Envoy, free_port, gateway_config, provider_env, render, run_cli, write_yaml

SLOW_SECONDS = 0.5


def deployment(alias: str, fake, model: str) -> dict:
    return {"model_name": alias, "litellm_params": {
        "model": f"openai/{model}", "api_base": f"{fake.url}/v1", "api_key": f"os.environ/{OPENAI_KEY_ENV}"}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, openai_fake, anthropic_fake):
    fakes = {name: OpenAIFake(name=name, api_key=OPENAI_KEY).start()
             for name in ("fast", "slow", "flaky", "backup")}
    tmp = tmp_path_factory.mktemp("router-settings")
    port, admin = free_port(), free_port()
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin, extra_models=[
        deployment("busy", fakes["fast"], "gpt-fast"),
        deployment("busy", fakes["slow"], "gpt-slow"),
        deployment("flaky", fakes["flaky"], "gpt-flaky"),
        deployment("flaky-backup", fakes["backup"], "gpt-backup"),
    ], router_settings={"routing_strategy": "least-busy", "num_retries": 1,
                        "fallbacks": [{"flaky": ["flaky-backup"]}]})
    out = render(write_yaml(tmp / "gateway.yaml", cfg), tmp / "envoy.yaml")
    text = out.read_text()
    assert "selection_method: FULL_SCAN" in text and "rate_limited_retry_back_off" in text
    envoy = Envoy(out, tmp, admin, env=provider_env()).start()
    try:
        envoy.wait_ready()
        yield {"port": port, "envoy": envoy, **fakes}
    finally:
        envoy.stop()
        for f in fakes.values():
            f.stop()


@pytest.fixture
def g(gateway, request):
    for name in ("fast", "slow", "flaky", "backup"):
        gateway[name].reset()
    request.node._envoys = [gateway["envoy"]]
    return gateway


def chat(g, model: str):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return harness.request(g["port"], "POST", "/v1/chat/completions", body)


def test_least_busy_sends_fewer_requests_to_a_slow_deployment(g):
    g["slow"].set_default(lambda rec: Reply(json=openai_completion("slowly"), delay=SLOW_SECONDS))
    total, clients = 60, 6
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        statuses = [r.status for r in pool.map(lambda _: chat(g, "busy"), range(total))]
    assert statuses == [200] * total
    n_fast, n_slow = len(g["fast"].requests), len(g["slow"].requests)
    assert n_fast + n_slow == total
    # Round robin would give each half (30); the slow one holds requests in flight, so it
    # is picked only when it has no more of them than the fast one (every deployment is
    # compared, not two drawn at random).
    assert n_slow <= total // 4, (n_fast, n_slow)


def test_num_retries_retries_the_deployment_before_falling_back(g):
    g["flaky"].enqueue(openai_error(503, "busy", type="server_error"))
    r = chat(g, "flaky")
    assert r.status == 200, r.body
    assert r.header("x-llm-deployment") == "flaky" and r.header("x-llm-attempts") == "2"
    assert len(g["flaky"].requests) == 2 and not g["backup"].requests

    g["flaky"].reset()
    g["flaky"].enqueue(openai_error(503, "busy", type="server_error"), openai_error(503, "still busy", type="server_error"))
    r = chat(g, "flaky")
    assert r.status == 200, r.body
    assert r.header("x-llm-deployment") == "flaky-backup" and r.header("x-llm-attempts") == "3"
    assert len(g["flaky"].requests) == 2 and len(g["backup"].requests) == 1


def test_retry_after_is_honoured(g):
    g["flaky"].enqueue(Reply(status=429, headers={"retry-after": "1"},
                             json={"error": {"message": "slow down", "type": "rate_limit_error"}}))
    started = time.monotonic()
    r = chat(g, "flaky")
    assert r.status == 200, r.body
    first, second = g["flaky"].requests
    waited = second.received_at - first.received_at
    assert 0.9 <= waited < 5, waited
    assert r.header("x-llm-deployment") == "flaky" and not g["backup"].requests
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("form", ["http-date", "retry-after-ms"])
def test_retry_after_as_a_date_or_in_milliseconds_is_honoured(g, form):
    # Envoy's back-off reads seconds only; the gateway turns the other forms into them.
    headers = ({"retry-after": email.utils.formatdate(time.time() + 2, usegmt=True)}
               if form == "http-date" else {"retry-after-ms": "1500"})
    g["flaky"].reset()
    g["flaky"].enqueue(Reply(status=429, headers=headers,
                             json={"error": {"message": "slow down", "type": "rate_limit_error"}}))
    r = chat(g, "flaky")
    assert r.status == 200, r.body
    first, second = g["flaky"].requests
    waited = second.received_at - first.received_at
    # A date has one-second resolution: 2 s ahead is 1 to 2 s away.
    assert 0.9 <= waited < 5, waited
    assert r.header("x-llm-deployment") == "flaky" and not g["backup"].requests


@pytest.mark.parametrize("strategy", ["latency-based-routing", "usage-based-routing-v2", "cost-based-routing"])
def test_strategies_envoy_cannot_run_are_refused_at_check(tmp_path, strategy):
    cfg = gateway_config("http://127.0.0.1:18081", None, 14000, 19901,
                         router_settings={"routing_strategy": strategy})
    r = run_cli("check", "--config", str(write_yaml(tmp_path / "gateway.yaml", cfg)))
    assert r.returncode != 0
    assert f"router_settings.routing_strategy: `{strategy}` has no Envoy load-balancing policy" in r.stderr, r.stderr
    assert "Envoy's LEAST_REQUEST" in r.stderr and "Envoy's ROUND_ROBIN" in r.stderr


def test_num_retries_is_bounded(tmp_path):
    cfg = gateway_config("http://127.0.0.1:18081", None, 14000, 19901, router_settings={"num_retries": 50})
    r = run_cli("check", "--config", str(write_yaml(tmp_path / "gateway.yaml", cfg)))
    assert r.returncode != 0
    assert "router_settings.num_retries: must be at most 5" in r.stderr, r.stderr
