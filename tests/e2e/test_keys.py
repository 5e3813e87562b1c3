"""Virtual keys, teams, limits and budgets in a real Envoy with two worker threads: keys are
known only by their SHA-256, budgets hold under a concurrent burst, RPM/TPM/parallel limits
answer 429 with Retry-After, streams are settled to their real cost, and a key removed
from the config stops working after a reload, without restarting Envoy."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import pytest

import harness
from fakes import Reply, openai_completion
from harness import (Envoy, assert_openai_error, free_port, gateway_config, key_sha256, provider_env, request,
                     write_yaml)

KEYS = {name: f"sk-gw-test-{name}-0123456789abcdef" for name in
        ("alice", "burst", "expired", "tpm", "parallel", "frank", "gina", "streamer", "temp")}

# gpt-4o-mini: a request with max_tokens 1000 reserves about 1000 x $0.60/M + its prompt,
# about 601.5 micro-USD: 6,200 micro-USD admit exactly ten at a time.
BURST_BUDGET_USD = 0.0062



def key_entry(name: str, **limits) -> dict:
    return {"name": name, "key_sha256": key_sha256(KEYS[name]), **limits}


def keys_config(include_temp: bool = True) -> dict:
    keys = [
        key_entry("alice", models=["gpt-*"], rpm_limit=3),
        key_entry("burst", max_budget=BURST_BUDGET_USD, budget_duration="monthly"),
        key_entry("expired", expires="2020-01-01"),
        key_entry("tpm", tpm_limit=30),
        key_entry("parallel", max_parallel_requests=2),
        key_entry("frank", team="research"),
        key_entry("gina", team="research"),
        key_entry("streamer", max_budget=10.0),
    ]
    if include_temp:
        keys.append(key_entry("temp"))
    return {
        "virtual_keys": keys,
        # A worst case of 1000 output tokens (~600 micro-USD) fits; 3000 (~1800) does not.
        "teams": [{"name": "research", "max_budget": 0.0013, "budget_duration": "daily"}],
    }


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("keys")
    port, admin = free_port(), free_port()
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin)
    cfg.update(keys_config())
    path = write_yaml(tmp / "gateway.yaml", cfg)
    env = provider_env()
    out = harness.run_cli("render", "--config", str(path), "--wasm", str(harness.wasm_path()),
                          "--dynamic", str(tmp / "dyn"), env=env)
    assert out.returncode == 0, out.stderr
    envoy = Envoy(tmp / "dyn" / "envoy.yaml", tmp, admin, env=env).start()
    try:
        envoy.wait_ready()
        yield {"port": port, "admin": admin, "envoy": envoy, "tmp": tmp, "cfg": cfg, "path": path, "env": env}
    finally:
        envoy.stop()


@pytest.fixture
def k(keyed, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [keyed["envoy"]]
    yield keyed
    openai_fake.reset()
    anthropic_fake.reset()


def chat(k, key: str, model: str = "gpt-test", **fields):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    return request(k["port"], "POST", "/v1/chat/completions", body, key=key)


def test_virtual_key_answers_and_master_still_works(k):
    r = chat(k, KEYS["alice"])
    assert r.status == 200, r.body
    assert chat(k, harness.MASTER_KEY).status == 200


def test_unknown_key_is_401(k):
    assert_openai_error(chat(k, "sk-gw-nobody"), 401, "authentication_error")


def test_expired_key_is_401(k):
    err = assert_openai_error(chat(k, KEYS["expired"]), 401, "authentication_error")
    assert err["code"] == "key_expired"


def test_disallowed_model_is_403_and_hidden_from_the_list(k, anthropic_fake):
    err = assert_openai_error(chat(k, KEYS["alice"], model="claude-test"), 403)
    assert "claude-test" in err["message"] and "alice" in err["message"]
    assert anthropic_fake.requests == []
    r = request(k["port"], "GET", "/v1/models", key=KEYS["alice"])
    assert [m["id"] for m in r.json["data"]] == ["gpt-test"]


def test_rpm_limit_with_retry_after_and_ratelimit_headers(k):
    # alice has 3 requests a minute, and may have used one in an earlier test.
    statuses = []
    last = None
    for _ in range(5):
        last = chat(k, KEYS["alice"])
        statuses.append(last.status)
        if last.status == 200:
            assert last.header("x-ratelimit-limit-requests") == "3"
            assert last.header("x-ratelimit-remaining-requests") is not None
    assert 429 in statuses and statuses.count(200) <= 3, statuses
    err = assert_openai_error(last, 429, "rate_limit_error")
    assert int(last.header("retry-after")) >= 1, last.headers
    assert "request" in err["message"].lower()


def test_tpm_limit(k):
    # 30 tokens a minute: each answer uses 11 + 7; the third request does not fit.
    statuses = [chat(k, KEYS["tpm"]).status for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses, statuses


def test_max_parallel_requests(k, openai_fake):
    openai_fake.set_default(lambda rec: Reply(json=openai_completion("slow"), delay=1.0))
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: chat(k, KEYS["parallel"]).status, range(6)))
    assert statuses.count(200) == 2 and statuses.count(429) == 4, statuses


def test_budget_holds_under_a_concurrent_burst(k, openai_fake):
    # 100 concurrent requests, each reserving its worst case; the budget allows ten.
    openai_fake.set_default(lambda rec: Reply(json=openai_completion("ok"), delay=1.5))
    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda _: chat(k, KEYS["burst"], max_tokens=1000), range(100)))
    statuses = [r.status for r in results]
    assert statuses.count(200) == 10, statuses
    refused = [r for r in results if r.status == 429]
    assert len(refused) == 90
    err = assert_openai_error(refused[0], 429, "rate_limit_error")
    assert err["code"] == "budget_exceeded" and "burst" in err["message"], err
    assert len(openai_fake.requests) == 10
    # Settled to the real cost (6 micro-USD each): room again for more.
    assert chat(k, KEYS["burst"], max_tokens=1000).status == 200


def test_team_budget_is_shared_by_its_keys(k):
    assert chat(k, KEYS["frank"], max_tokens=1000).status == 200
    assert chat(k, KEYS["gina"], max_tokens=1000).status == 200
    # Both settled to a few micro-USD; a request whose worst case (3000 output tokens,
    # ~1800 micro-USD) exceeds what is left of the team's 1300 is refused, whichever key.
    r = chat(k, KEYS["gina"], max_tokens=3000)
    err = assert_openai_error(r, 429, "rate_limit_error")
    assert err["code"] == "budget_exceeded" and "research" in err["message"], err


def admin_stats(k) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{k['admin']}/stats?format=json", timeout=5) as r:
        doc = json.load(r)
    return {s["name"]: s.get("value") for s in doc["stats"] if "value" in s}


def test_stream_is_settled_to_its_real_cost(k):
    body = {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    s = harness.stream(k["port"], "/v1/chat/completions", body, key=KEYS["streamer"])
    assert s.status == 200 and s.done_count == 1
    # claude-sonnet-4-5: 12 x $3/M + 6 x $15/M = 126 micro-USD, whatever was reserved.
    deadline = time.monotonic() + 5
    spent = None
    while time.monotonic() < deadline:
        spent = admin_stats(k).get("wasmcustom.llm_key_spend_micro_usd.key=streamer;")
        if spent == 126:
            break
        time.sleep(0.2)
    assert spent == 126


def test_removed_key_stops_working_after_reload(k):
    assert chat(k, KEYS["temp"]).status == 200
    before = admin_stats(k).get("listener_manager.lds.update_success", 0)
    cfg = dict(k["cfg"])
    cfg.update(keys_config(include_temp=False))
    path = write_yaml(k["tmp"] / "gateway-revoked.yaml", cfg)
    out = harness.run_cli("render", "--config", str(path), "--wasm", str(harness.wasm_path()),
                          "--dynamic", str(k["tmp"] / "dyn"), env=k["env"])
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and admin_stats(k).get("listener_manager.lds.update_success", 0) <= before:
        time.sleep(0.2)
    assert admin_stats(k).get("listener_manager.lds.update_success", 0) > before
    # The old listener drains its connections; new requests meet the new config.
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        status = chat(k, KEYS["temp"]).status
        if status == 401:
            break
        time.sleep(0.2)
    assert status == 401
    # Other keys, and what they have spent, survive the reload.
    assert chat(k, KEYS["streamer"]).status == 200
