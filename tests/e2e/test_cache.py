"""The response cache: exact match on the normalized request, opt-in per model alias, with
a time to live. One Envoy keeps entries in its shared data (no store), scoped by key; two
more share them in Redis (behind webdis), the spend store, scoped by team.
"""

from __future__ import annotations

import time

import pytest

import harness
from fakes import Reply, openai_completion
from harness import Envoy, free_port, gateway_config, key_sha256, provider_env, request, write_yaml
from spend_store import SpendStore, access_log, binaries_available, replica_copy, stats

KEYS = {name: f"sk-gw-test-{name}-cache-0123456789abcdef" for name in ("alice", "bob", "carol")}


def key_entry(name: str, **limits) -> dict:
    return {"name": name, "key_sha256": key_sha256(KEYS[name]), **limits}






def counter(replica: dict, prefix: str) -> int:
    return sum(v or 0 for k, v in stats(replica["admin"]).items() if k.startswith(prefix))


@pytest.fixture(scope="module")
def caches(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("cache")
    store = SpendStore(tmp).start() if binaries_available() else None
    env = provider_env()
    ports = [(free_port(), free_port()) for _ in range(3)]
    envoys, started = [], []
    try:
        rendered = {}
        for kind in ("local", "store"):
            if kind == "store" and store is None:
                continue
            cfg = gateway_config(openai_fake.url, anthropic_fake.url, *ports[0])
            cfg["virtual_keys"] = [key_entry("alice", max_budget=10.0), key_entry("bob")]
            cfg["general_settings"]["response_cache"] = {"models": ["gpt-test"], "ttl_seconds": 60, "slots": 64}
            if kind == "store":
                # The replicas share entries by team: alice and carol are in one.
                cfg["virtual_keys"] = [key_entry("alice", max_budget=10.0, team="research"), key_entry("bob"),
                                       key_entry("carol", team="research")]
                cfg["teams"] = [{"name": "research"}]
                cfg["general_settings"]["response_cache"]["scope"] = "team"
                cfg["general_settings"]["spend_store"] = {"address": store.address, "timeout_ms": 100}
            path = write_yaml(tmp / f"gateway-{kind}.yaml", cfg)
            rendered[kind] = harness.render(path, tmp / f"envoy-{kind}.rendered.yaml", env=env)
        for i, (port, admin) in enumerate(ports):
            kind = "local" if i == 0 else "store"
            if kind not in rendered:
                continue
            work = tmp / f"envoy{i}"
            work.mkdir()
            envoys.append(Envoy(replica_copy(rendered[kind], work / "envoy.yaml", port, admin), work, admin,
                                env=env).start())
            started.append({"port": port, "admin": admin, "envoy": envoys[-1]})
        for e in envoys:
            e.wait_ready()
        yield {"local": started[0], "shared": started[1:], "store": store}
    finally:
        for e in envoys:
            e.stop()
        if store is not None:
            store.stop()


@pytest.fixture
def c(caches, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    request.node._envoys = [caches["local"]["envoy"]] + [r["envoy"] for r in caches["shared"]]
    yield caches
    openai_fake.reset()


_n = [0]


def question() -> str:
    """A question no earlier test asked."""
    _n[0] += 1
    return f"question {_n[0]} at {time.time()}"


def chat(replica: dict, content: str, key: str = "alice", model: str = "gpt-test", **fields):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **fields}
    return request(replica["port"], "POST", "/v1/chat/completions", body, key=KEYS[key])




def test_a_repeated_request_is_answered_from_the_cache_and_costs_nothing(c, openai_fake):
    g = c["local"]
    q = question()
    first = chat(g, q, temperature=0)
    assert first.status == 200 and first.header("x-llm-cache") == "miss"
    hits_before = counter(g, "llm_cache_hits_total")
    # The same question, fields in another order, another transport option: a hit.
    second = request(g["port"], "POST", "/v1/chat/completions",
                     {"temperature": 0, "user": "someone", "messages": [{"content": q, "role": "user"}],
                      "model": "gpt-test"}, key=KEYS["alice"])
    assert second.status == 200 and second.header("x-llm-cache") == "hit", second.headers
    assert second.json == first.json
    assert len(openai_fake.requests) == 1
    assert counter(g, "llm_cache_hits_total") == hits_before + 1
    # Another question, or another model alias, is not in the cache.
    assert chat(g, q, temperature=1).header("x-llm-cache") == "miss"
    assert chat(g, q, model="claude-test").header("x-llm-cache") is None
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline and not lines:
        lines = [l for l in access_log(g) if l.get("cache") == "hit"]
        time.sleep(0.2)
    assert lines and all(l["cost_micro_usd"] is None and l["provider"] is None for l in lines), lines


def test_a_streamed_request_gets_the_cached_answer_as_a_stream(c, openai_fake):
    g = c["local"]
    q = question()
    first = chat(g, q)
    assert first.status == 200 and len(openai_fake.requests) == 1
    s = harness.stream(g["port"], "/v1/chat/completions",
                       {"model": "gpt-test", "messages": [{"role": "user", "content": q}], "stream": True,
                        "stream_options": {"include_usage": True}}, key=KEYS["alice"])
    assert s.status == 200 and s.header("x-llm-cache") == "hit"
    assert s.content() == first.json["choices"][0]["message"]["content"]
    assert s.finish_reasons() == [first.json["choices"][0]["finish_reason"]]
    assert s.done_count == 1
    assert any(ch.get("usage") for ch in s.chunks)
    assert len(openai_fake.requests) == 1


def test_entries_expire(c, openai_fake):
    g = c["local"]
    q = question()
    # LiteLLM's per-request `ttl`: this entry lives one second.
    assert chat(g, q, cache={"ttl": 1}).header("x-llm-cache") == "miss"
    assert chat(g, q).header("x-llm-cache") == "hit"
    time.sleep(2.1)
    assert chat(g, q).header("x-llm-cache") == "miss"
    assert len(openai_fake.requests) == 2


def test_per_request_controls(c, openai_fake):
    g = c["local"]
    q = question()
    # no-store: answered, not kept.
    assert chat(g, q, cache={"no-store": True}).header("x-llm-cache") == "miss"
    assert chat(g, q).header("x-llm-cache") == "miss"
    assert chat(g, q).header("x-llm-cache") == "hit"
    # no-cache: not answered from the cache.
    assert chat(g, q, cache={"no-cache": True}).header("x-llm-cache") == "miss"
    # s-maxage: only entries young enough.
    time.sleep(2.1)
    assert chat(g, q, cache={"s-maxage": 1}).header("x-llm-cache") == "miss"
    assert len(openai_fake.requests) == 4
    # The controls are the gateway's: the provider never sees them.
    assert all("cache" not in r.json for r in openai_fake.requests)


def test_an_entry_is_never_served_to_another_key(c, openai_fake):
    g = c["local"]
    q = question()
    assert chat(g, q, key="alice").header("x-llm-cache") == "miss"
    assert chat(g, q, key="alice").header("x-llm-cache") == "hit"
    bob = chat(g, q, key="bob")
    assert bob.status == 200 and bob.header("x-llm-cache") == "miss"
    assert len(openai_fake.requests) == 2


def test_replicas_share_entries_in_the_store(c, openai_fake):
    if c["store"] is None:
        pytest.skip("redis-server and webdis not installed (make test-deps)")
    a, b = c["shared"]
    q = question()
    assert chat(a, q).header("x-llm-cache") == "miss"
    r = chat(b, q)
    assert r.status == 200 and r.header("x-llm-cache") == "hit"
    assert len(openai_fake.requests) == 1
    # Scoped by team: another key of the team gets the entry, a key outside it does not.
    assert chat(b, q, key="carol").header("x-llm-cache") == "hit"
    assert chat(b, q, key="bob").header("x-llm-cache") == "miss"
    assert len(openai_fake.requests) == 2
    assert c["store"].keys("llmgw:cache:*")


def test_a_store_that_cannot_answer_is_a_miss(c, openai_fake):
    if c["store"] is None:
        pytest.skip("redis-server and webdis not installed (make test-deps)")
    a, b = c["shared"]
    store = c["store"]
    q = question()
    assert chat(a, q, key="bob").header("x-llm-cache") == "miss"
    store.pause_webdis()
    try:
        t0 = time.monotonic()
        r = chat(b, q, key="bob")
        assert r.status == 200 and r.header("x-llm-cache") == "miss", r.body
        assert time.monotonic() - t0 < 1.5
    finally:
        store.resume_webdis()
    assert chat(b, q, key="bob").header("x-llm-cache") == "hit"


def test_only_chat_completions_are_cached(c, openai_fake):
    """A cached answer is replayed in the chat completion's shape: an Anthropic Messages
    request to a cached alias is never answered from the cache, nor stored in it."""
    g = c["local"]
    body = {"model": "gpt-test", "max_tokens": 64, "messages": [{"role": "user", "content": question()}]}
    headers = {"x-api-key": KEYS["alice"], "anthropic-version": "2023-06-01"}
    for _ in range(2):
        r = request(g["port"], "POST", "/v1/messages", body, key=None, headers=headers)
        assert r.status == 200, r.body
        assert r.header("x-llm-cache") is None and r.json["type"] == "message", r.body
    assert len(openai_fake.requests) == 2
