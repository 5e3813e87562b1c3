"""Limits shared by several Envoy replicas through Envoy's global rate limit service.

Two Envoy processes run the bootstrap rendered from one gateway config (the second copy
differs only in its listener and admin ports, as two hosts would not) and share one rate
limit service (``ratelimit_server.py``: the real gRPC protocol, the reference service's
counting rules) and the fake providers. The service's clock is frozen inside one window,
so no limit resets in the middle of a test.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import harness
import ratelimit_server
from harness import (Envoy, assert_openai_error, free_port, gateway_config, key_sha256, provider_env, request,
                     write_yaml)
from ratelimit_server import RateLimitServer

KEYS = {name: f"sk-gw-test-{name}-rl-0123456789abcdef" for name in
        ("alice", "bob", "carol", "dave", "erin", "frank", "grace")}

RLS_CONFIG = {
    "domain": "llm_gateway",
    "descriptors": [
        {"key": "generic_key", "value": "requests", "descriptors": [
            {"key": "key", "value": "alice", "rate_limit": {"unit": "minute", "requests_per_unit": 5}},
            {"key": "key", "value": "grace", "rate_limit": {"unit": "minute", "requests_per_unit": 1}},
        ]},
        {"key": "generic_key", "value": "tokens", "descriptors": [
            {"key": "key", "value": "erin", "rate_limit": {"unit": "minute", "requests_per_unit": 30}},
        ]},
        {"key": "generic_key", "value": "cost_micro_usd", "descriptors": [
            {"key": "key", "value": "frank", "rate_limit": {"unit": "month", "requests_per_unit": 10}},
        ]},
    ],
}

# Inside a minute (and a 30-day window), well before either ends.
FROZEN_NOW = 1_800_000_000 - 1_800_000_000 % (30 * 86400) + 5



def body(model: str = "gpt-test", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def replica_copy(rendered: Path, out: Path, port: int, admin: int, deny: bool = False) -> Path:
    """The rendered bootstrap with its own ports (and, with `deny`, the rate limit filter's
    failure_mode_deny on); everything else identical."""
    doc = yaml.safe_load(rendered.read_text())
    listener = doc["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    listener["enable_reuse_port"] = False
    doc["admin"]["address"]["socket_address"]["port_value"] = admin
    if deny:
        for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            if f["name"] == "envoy.filters.http.ratelimit":
                f["typed_config"]["failure_mode_deny"] = True
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def stats(admin: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=5) as r:
        doc = json.load(r)
    return {s["name"]: s.get("value") for s in doc["stats"] if "value" in s}


def ratelimit_stat(replicas, suffix: str) -> int:
    return sum(v or 0 for r in replicas for k, v in stats(r["admin"]).items()
               if k.endswith(f".ratelimit.{suffix}"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("global-ratelimit")
    rls = RateLimitServer(RLS_CONFIG).start()
    rls.clock = lambda: FROZEN_NOW
    ports = [(free_port(), free_port()) for _ in range(3)]
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, *ports[0])
    cfg["virtual_keys"] = [
        {"name": name, "key_sha256": key_sha256(key), **({"team": "research"} if name in ("alice", "bob") else {})}
        for name, key in KEYS.items()
    ]
    cfg["teams"] = [{"name": "research"}]
    cfg["general_settings"]["rate_limit_service"] = {"address": rls.address}
    path = write_yaml(tmp / "gateway.yaml", cfg)
    env = provider_env()
    rendered = harness.render(path, tmp / "envoy.rendered.yaml", env=env)
    # Two replicas, and a third Envoy that refuses requests when the service is down;
    # started together, since each takes a while to load the filter.
    envoys = []
    started = {}
    try:
        for i, (port, admin) in enumerate(ports):
            work = tmp / f"envoy{i}"
            work.mkdir()
            bootstrap = replica_copy(rendered, work / "envoy.yaml", port, admin, deny=i == 2)
            envoys.append(Envoy(bootstrap, work, admin, env=env).start())
            started[i] = {"port": port, "admin": admin, "envoy": envoys[-1]}
        for e in envoys:
            e.wait_ready()
        yield {"rls": rls, "replicas": [started[0], started[1]], "deny": started[2]}
    finally:
        for e in envoys:
            e.stop()
        rls.stop()


@pytest.fixture
def rl(cluster, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [r["envoy"] for r in cluster["replicas"]] + [cluster["deny"]["envoy"]]
    yield cluster
    openai_fake.reset()
    anthropic_fake.reset()


def chat(replica: dict, key: str, **fields):
    return request(replica["port"], "POST", "/v1/chat/completions", body(**fields), key=key)


def hits(rls: RateLimitServer, what: str, who: tuple) -> list:
    """The hits of every `(generic_key=what, who)` descriptor counted so far."""
    return [d.hits_addend for d in rls.descriptors()
            if d.entries == [("generic_key", what), who] and d.hits_addend]


def wait_hits(rls: RateLimitServer, what: str, who: tuple, count: int) -> list:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(hits(rls, what, who)) < count:
        time.sleep(0.05)
    return hits(rls, what, who)


def test_requests_per_minute_hold_across_replicas(rl, openai_fake):
    a, b = rl["replicas"]
    statuses = [chat(r, KEYS["alice"]).status for r in (a, b, a, b, a)]
    assert statuses == [200] * 5
    for replica in (b, a):
        r = chat(replica, KEYS["alice"])
        err = assert_openai_error(r, 429, "rate_limit_error")
        assert err["code"] == "rate_limit_exceeded", err
        assert 1 <= int(r.header("retry-after")) <= 60, r.headers
        assert r.header("x-ratelimit-remaining") == "0", r.headers
        assert r.header("x-ratelimit-limit").startswith("5"), r.headers
    assert len(openai_fake.requests) == 5
    # bob shares alice's team, which has no limit: unaffected.
    assert chat(b, KEYS["bob"]).status == 200
    assert rl["rls"].counter("llm_gateway", [("generic_key", "requests"), ("key", "alice")]) == 7
    # The team's descriptor reaches the service too; the provider sees nothing of it.
    sent = [d.entries for d in rl["rls"].descriptors()]
    assert [("generic_key", "requests"), ("team", "research")] in sent
    for rec in openai_fake.requests:
        assert not [h for h in rec.headers if h.startswith("x-llm-")], rec.headers


def test_anthropic_clients_get_the_429_in_their_shape(rl, anthropic_fake):
    """The service's 429 on `/v1/messages`: Anthropic's error shape, which the `anthropic`
    SDK raises as a RateLimitError, with the same Retry-After."""
    anthropic = pytest.importorskip("anthropic")
    a, b = rl["replicas"]
    clients = [anthropic.Anthropic(base_url=f"http://127.0.0.1:{r['port']}", api_key=KEYS["grace"], max_retries=0,
                                   timeout=harness.HTTP_TIMEOUT) for r in (a, b)]
    ask = {"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert clients[0].messages.create(**ask).content
    with pytest.raises(anthropic.RateLimitError) as e:
        clients[1].messages.create(**ask)
    assert e.value.body == {"type": "error", "error": {"type": "rate_limit_error",
                                                       "message": e.value.body["error"]["message"]}}
    assert "Rate limit exceeded" in e.value.body["error"]["message"]
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    assert len(anthropic_fake.requests) == 1


def test_tokens_and_cost_are_counted_at_stream_end_as_used(rl):
    a, b = rl["replicas"]
    rls = rl["rls"]
    carol = ("key", "carol")
    # Not streamed, on one replica: usage and cost as the client sees them.
    r = chat(a, KEYS["carol"])
    assert r.status == 200, r.body
    usage = r.json["usage"]
    cost = round(float(r.header("x-llm-cost-usd")) * 1_000_000)
    assert wait_hits(rls, "tokens", carol, 1) == [usage["prompt_tokens"] + usage["completion_tokens"]]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert wait_hits(rls, "cost_micro_usd", carol, 1) == [cost] and cost > 0
    # Streamed, through the other replica and another provider.
    s = harness.stream(b["port"], "/v1/chat/completions", body("claude-test", stream=True, stream_options={"include_usage": True}),
                       key=KEYS["carol"])
    assert s.status == 200 and s.done_count == 1
    final = [c for c in s.chunks if c.get("usage")][-1]["usage"]
    stream_cost = round(final["cost_usd"] * 1_000_000)
    assert wait_hits(rls, "tokens", carol, 2)[1] == final["prompt_tokens"] + final["completion_tokens"]
    assert wait_hits(rls, "cost_micro_usd", carol, 2)[1] == stream_cost
    assert stream_cost == 126  # claude-sonnet-4-5: 12 x $3/M + 6 x $15/M
    # On the request path, tokens and cost are only checked (hits 0), never counted.
    checks = [d for d in rls.descriptors() if d.entries[1:] == [carol]
              and d.entries[0][1] in ("tokens", "cost_micro_usd") and not d.hits_addend]
    assert len(checks) == 4 and all(d.hits_addend == 0 for d in checks)


def test_tokens_and_budget_refuse_the_next_request_once_over(rl):
    a, b = rl["replicas"]
    rls = rl["rls"]
    # erin: 30 tokens a minute; each answer uses 18. frank: 10 micro-USD; each costs 6.
    for name, what in (("erin", "tokens"), ("frank", "cost_micro_usd")):
        assert chat(a, KEYS[name]).status == 200
        wait_hits(rls, what, ("key", name), 1)
        assert chat(b, KEYS[name]).status == 200  # under the limit before this answer
        wait_hits(rls, what, ("key", name), 2)
        for replica in (a, b):
            err = assert_openai_error(chat(replica, KEYS[name]), 429, "rate_limit_error")
            assert err["code"] == "rate_limit_exceeded"


def test_master_key_sends_no_descriptors(rl):
    rls = rl["rls"]
    # Earlier tests' stream-end calls are sent after their answers: wait until they stop.
    before = -1
    deadline = time.monotonic() + 5
    while len(rls.calls) != before and time.monotonic() < deadline:
        before = len(rls.calls)
        time.sleep(0.5)
    errors = ratelimit_stat(rl["replicas"], "error")
    for replica in rl["replicas"]:
        assert chat(replica, harness.MASTER_KEY).status == 200
        s = harness.stream(replica["port"], "/v1/chat/completions", body(stream=True))
        assert s.status == 200 and s.done_count == 1
    time.sleep(0.3)
    assert len(rls.calls) == before
    assert ratelimit_stat(rl["replicas"], "error") == errors


def test_rate_limit_service_down(rl):
    rls = rl["rls"]
    rls.stop()
    try:
        # failure_mode_deny false (the default): served, on both replicas.
        allowed = ratelimit_stat(rl["replicas"], "failure_mode_allowed")
        for replica in rl["replicas"]:
            assert chat(replica, KEYS["dave"]).status == 200
        assert ratelimit_stat(rl["replicas"], "failure_mode_allowed") >= allowed + 2
        # failure_mode_deny true: an OpenAI-shaped 500 instead.
        err = assert_openai_error(chat(rl["deny"], KEYS["dave"]), 500, "api_error")
        assert err["code"] == "rate_limit_service_unavailable"
        # In Anthropic's shape on the Messages API.
        r = request(rl["deny"]["port"], "POST", "/v1/messages",
                    body(max_tokens=10), key=None, headers={"x-api-key": KEYS["dave"]})
        assert r.status == 500 and r.json["type"] == "error", (r.status, r.body)
        assert r.json["error"]["type"] == "api_error" and "rate limit service" in r.json["error"]["message"]
        # The master key has no limits to check: served all the same.
        assert chat(rl["deny"], harness.MASTER_KEY).status == 200
    finally:
        rls.start()


def test_protocol_codec_round_trip():
    req = ratelimit_server.Request("d", [
        ratelimit_server.Descriptor([("generic_key", "tokens"), ("key", "k")], hits_addend=0),
        ratelimit_server.Descriptor([("generic_key", "requests")], hits_addend=None),
    ], hits_addend=3)
    assert ratelimit_server.decode_request(ratelimit_server.encode_request(req)) == req
    resp = ratelimit_server.Response(2, [ratelimit_server.Status(2, (5, 2, ""), 0, 17),
                                         ratelimit_server.Status(1)])
    assert ratelimit_server.decode_response(ratelimit_server.encode_response(resp)) == resp


def test_example_config_is_what_the_gateway_sends():
    """envoy/ratelimit/config.yaml loads, and limits the descriptors the gateway sends."""
    rls = RateLimitServer()
    rls.load_file(harness.REPO_ROOT / "envoy" / "ratelimit" / "config.yaml")
    rls.clock = lambda: FROZEN_NOW

    def ask(*entries, hits=None):
        return rls.check(ratelimit_server.Request(
            "llm_gateway", [ratelimit_server.Descriptor(list(entries), hits)]))
    status = ask(("generic_key", "requests"), ("key", "alice")).statuses[0]
    assert status.limit[:2] == (60, ratelimit_server.UNITS["minute"]) and status.remaining == 59
    assert ask(("generic_key", "requests"), ("key", "zed")).statuses[0].limit[0] == 600
    assert ask(("generic_key", "tokens"), ("key", "alice"), hits=18).statuses[0].remaining == 100000 - 18
    cost = ask(("generic_key", "cost_micro_usd"), ("team", "research"), hits=0).statuses[0]
    assert cost.limit[:2] == (100_000_000, ratelimit_server.UNITS["month"])
    assert ask(("generic_key", "tokens"), ("key", "zed")).statuses[0].limit is None
