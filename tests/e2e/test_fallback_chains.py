"""Fallback chains and load balancing beyond one retry: a chain across three providers,
each attempt translated for the provider it reaches; a per-try timeout; weighted sharing;
ejection of a failing deployment and its return after the cool-down; 50 concurrent
fallbacks with no retry overflow; a 5 MiB prompt that falls back; context-window fallback."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

import harness
from fakes import AnthropicFake, GeminiFake, OpenAIFake, Reply, anthropic_error, openai_completion, openai_error
from harness import (ANTHROPIC_KEY, ANTHROPIC_KEY_ENV, OPENAI_KEY, OPENAI_KEY_ENV, Envoy, free_port,
                     gateway_config, provider_env, render, write_yaml)

GEMINI_KEY_ENV = "FAKE_GEMINI_KEY"
GEMINI_KEY = "AIza-fake-gemini-key-0123456789"
COOLDOWN = 2.0
PER_TRY_TIMEOUT = 1.5


def openai_model(alias: str, fake, model: str, **params) -> dict:
    return {"model_name": alias, "litellm_params": {
        "model": f"openai/{model}", "api_base": f"{fake.url}/v1", "api_key": f"os.environ/{OPENAI_KEY_ENV}", **params}}


@pytest.fixture(scope="module")
def chains(tmp_path_factory, openai_fake, anthropic_fake):
    fakes = {name: OpenAIFake(name=name, api_key=OPENAI_KEY).start() for name in ("heavy", "light", "good", "bad", "slow", "big")}
    gemini = GeminiFake(name="gemini", api_key=GEMINI_KEY).start()
    anth = AnthropicFake(name="anthropic2", api_key=ANTHROPIC_KEY).start()
    models = [
        # A chain over three providers: Anthropic, then Gemini, then OpenAI-compatible.
        {"model_name": "tri-a", "litellm_params": {"model": "anthropic/claude-tri", "api_base": anth.url,
                                                   "api_key": f"os.environ/{ANTHROPIC_KEY_ENV}"}},
        {"model_name": "tri-g", "litellm_params": {"model": "gemini/gemini-tri", "api_base": gemini.url,
                                                   "api_key": f"os.environ/{GEMINI_KEY_ENV}"}},
        openai_model("tri-o", openai_fake, "gpt-tri"),
        # Two deployments of one alias sharing load 3:1.
        openai_model("weighted", fakes["heavy"], "gpt-heavy", weight=3),
        openai_model("weighted", fakes["light"], "gpt-light", weight=1),
        # One healthy and one failing deployment at the same priority.
        openai_model("ejecting", fakes["good"], "gpt-good"),
        openai_model("ejecting", fakes["bad"], "gpt-bad"),
        # A primary that hangs, and its fallback.
        openai_model("hanging", fakes["slow"], "gpt-slow"),
        openai_model("hanging-backup", openai_fake, "gpt-backup"),
        # Context windows: small, then a larger model only for long prompts.
        {**openai_model("small", openai_fake, "gpt-small"), "model_info": {"max_input_tokens": 1000}},
        {**openai_model("large", fakes["big"], "gpt-large"), "model_info": {"max_input_tokens": 100000}},
    ]
    router = {
        "fallbacks": [{"tri-a": ["tri-g", "tri-o"]}, {"hanging": ["hanging-backup"]}],
        "context_window_fallbacks": [{"small": ["large"]}],
        "allowed_fails": 3,
        "cooldown_time": COOLDOWN,
        "per_try_timeout": PER_TRY_TIMEOUT,
    }
    tmp = tmp_path_factory.mktemp("chains")
    port, admin = free_port(), free_port()
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin, extra_models=models, router_settings=router)
    env = provider_env({GEMINI_KEY_ENV: GEMINI_KEY})
    out = render(write_yaml(tmp / "gateway.yaml", cfg), tmp / "envoy.yaml", env=env)
    envoy = Envoy(out, tmp, admin, env=env).start()
    try:
        envoy.wait_ready()
        yield {"port": port, "envoy": envoy, "fakes": fakes, "gemini": gemini, "anthropic": anth, "openai": openai_fake}
    finally:
        envoy.stop()
        for f in [*fakes.values(), gemini, anth]:
            f.stop()


@pytest.fixture
def c(chains, request):
    for f in [*chains["fakes"].values(), chains["gemini"], chains["anthropic"], chains["openai"]]:
        f.reset()
    request.node._envoys = [chains["envoy"]]
    return chains


def chat(c, model: str, text: str = "hello", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return harness.request(c["port"], "POST", "/v1/chat/completions", body, **kw)


def test_three_provider_chain_translates_each_attempt(c):
    c["anthropic"].enqueue(anthropic_error(529, "Overloaded", type="overloaded_error"))
    c["gemini"].enqueue(Reply(status=503, json={"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}))
    r = chat(c, "tri-a")
    assert r.status == 200, r.body
    assert r.header("x-llm-attempts") == "3" and r.header("x-llm-provider") == "openai"
    a, g, o = c["anthropic"].last, c["gemini"].last, c["openai"].last
    assert a.path == "/v1/messages" and a.headers.get("x-api-key") == ANTHROPIC_KEY
    assert g.path == "/v1beta/models/gemini-tri:generateContent" and g.headers.get("x-goog-api-key") == GEMINI_KEY
    assert "contents" in g.json and "messages" not in g.json
    assert o.path == "/v1/chat/completions" and o.json["model"] == "gpt-tri"
    # Nothing of an earlier attempt's provider reaches a later one.
    assert "x-api-key" not in g.headers and "anthropic-version" not in g.headers
    assert not {"x-api-key", "x-goog-api-key", "anthropic-version"} & set(o.headers)
    assert o.headers.get("authorization") == f"Bearer {OPENAI_KEY}"


def test_per_try_timeout_falls_back(c):
    c["fakes"]["slow"].set_default(lambda rec: Reply(json=openai_completion("late"), delay=5.0))
    started = time.monotonic()
    r = chat(c, "hanging")
    took = time.monotonic() - started
    assert r.status == 200, r.body
    assert r.header("x-llm-deployment") == "hanging-backup" and r.header("x-llm-attempts") == "2"
    assert took < 4.0, took


def test_weighted_sharing_matches_the_weights(c):
    for _ in range(200):
        assert chat(c, "weighted").status == 200
    heavy, light = len(c["fakes"]["heavy"].requests), len(c["fakes"]["light"].requests)
    assert heavy + light == 200
    assert 0.65 <= heavy / 200 <= 0.85, (heavy, light)


def test_failing_deployment_is_ejected_and_comes_back_after_cooldown(c):
    bad, good = c["fakes"]["bad"], c["fakes"]["good"]
    bad.set_default(lambda rec: openai_error(500, "broken"))
    for _ in range(40):
        r = chat(c, "ejecting")
        assert r.status == 200, r.body  # a failed attempt is retried on the other deployment
    # After `allowed_fails` consecutive 5xx (per worker), the bad one stops getting traffic.
    assert len(bad.requests) <= 12, len(bad.requests)
    assert len(good.requests) >= 40
    bad.set_default(None)  # healthy again
    time.sleep(COOLDOWN + 1.5)
    seen_before = len(bad.requests)
    for _ in range(40):
        assert chat(c, "ejecting").status == 200
    assert len(bad.requests) > seen_before, "the deployment never came back after its cool-down"


def test_fifty_concurrent_fallbacks_are_all_answered(c):
    c["anthropic"].set_default(lambda rec: anthropic_error(429, "rate limited", type="rate_limit_error"))
    c["gemini"].set_default(lambda rec: Reply(status=503, json={"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}))
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: chat(c, "tri-a", f"req {i}"), range(50)))
    assert [r.status for r in results] == [200] * 50
    assert {r.header("x-llm-attempts") for r in results} == {"3"}
    assert len(c["openai"].requests) == 50


def test_five_mib_prompt_falls_back(c):
    c["anthropic"].enqueue(anthropic_error(529, "Overloaded", type="overloaded_error"))
    c["gemini"].enqueue(Reply(status=503, json={"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}))
    big = "x" * (5 * 1024 * 1024)
    r = chat(c, "tri-a", big)
    assert r.status == 200, r.body[:300]
    assert r.header("x-llm-attempts") == "3"
    assert c["openai"].last.json["messages"][0]["content"] == big


def test_context_window_fallback(c):
    # About 4,000 tokens: more than `small` takes, so `large` answers at once.
    r = chat(c, "small", "word " * 3200)
    assert r.status == 200, r.body
    assert r.header("x-llm-deployment") == "large" and r.header("x-llm-attempts") == "1"
    assert c["openai"].requests == []
    # A short prompt stays on `small`.
    r = chat(c, "small", "short")
    assert r.header("x-llm-deployment") == "small"
    # Too large for every deployment: a clear 400, no provider called.
    c["fakes"]["big"].reset()
    r = chat(c, "small", "word " * 200_000)
    err = harness.assert_openai_error(r, 400, "invalid_request_error")
    assert err["code"] == "context_length_exceeded" and "100000" in err["message"]
    assert c["fakes"]["big"].requests == []
