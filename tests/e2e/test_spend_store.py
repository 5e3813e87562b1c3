"""The shared spend ledger: budgets held in one Redis (behind webdis) by two Envoy
replicas, so a budget holds across replicas and restarts, and what happens while the
store is down or slow.

Three Envoys run the bootstrap rendered from one gateway config: two replicas with the
default `budget_failure_mode: closed` and a third with `open` (each differs only in its
ports, and the third in its mode). All three share the store and the fake providers.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import harness
from fakes import Reply, openai_completion
from harness import Envoy, assert_openai_error, free_port, gateway_config, key_sha256, provider_env, request, write_yaml
from spend_store import SpendStore, access_log, binaries_available, replica_copy, stats

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="redis-server and webdis not installed (make test-deps)")

KEYS = {name: f"sk-gw-test-{name}-ledger-0123456789abcdef" for name in
        ("burst", "spender", "steady", "frank")}

# gpt-4o-mini: max_tokens 1000 reserves about 601.5 micro-USD: 6,200 admit ten at a time.
BURST_BUDGET_USD = 0.0062
STORE_TIMEOUT_MS = 100


def key_entry(name: str, **limits) -> dict:
    return {"name": name, "key_sha256": key_sha256(KEYS[name]), **limits}


def month_id() -> int:
    t = time.gmtime()
    return t.tm_year * 12 + t.tm_mon


def spent_key(kind: str, name: str) -> str:
    return f"llmgw:spent:{kind}:{name}:m{month_id()}"






def stat(replica: dict, name: str) -> int:
    return sum(v or 0 for k, v in stats(replica["admin"]).items() if k == name or k.startswith(name + "."))


def local_spend(replica: dict, key: str) -> int:
    """The replica's own per-process spend of `key` this period (its budget gauge)."""
    return sum(v or 0 for k, v in stats(replica["admin"]).items()
               if k.startswith("llm_key_spend_micro_usd") and f"key={key}" in k)




@pytest.fixture(scope="module")
def ledger(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("spend-store")
    store = SpendStore(tmp).start()
    ports = [(free_port(), free_port()) for _ in range(3)]
    envoys = []
    started = []
    try:
        rendered = {}
        env = provider_env()
        for mode in ("closed", "open"):
            cfg = gateway_config(openai_fake.url, anthropic_fake.url, *ports[0], extra_models=[
                {"model_name": "embed", "litellm_params": {
                    "model": "openai/text-embedding-3-small", "api_base": f"{openai_fake.url}/v1",
                    "api_key": f"os.environ/{harness.OPENAI_KEY_ENV}"}}])
            cfg["virtual_keys"] = [
                key_entry("burst", max_budget=BURST_BUDGET_USD, budget_duration="monthly"),
                key_entry("spender", max_budget=0.00002, budget_duration="monthly"),
                key_entry("steady", max_budget=10.0, budget_duration="monthly"),
                key_entry("frank", team="research"),
            ]
            cfg["teams"] = [{"name": "research", "max_budget": 5.0, "budget_duration": "monthly"}]
            cfg["general_settings"]["spend_store"] = {
                "address": store.address, "timeout_ms": STORE_TIMEOUT_MS, "budget_failure_mode": mode,
                "flush_interval_ms": 100,
            }
            path = write_yaml(tmp / f"gateway-{mode}.yaml", cfg)
            rendered[mode] = harness.render(path, tmp / f"envoy-{mode}.rendered.yaml", env=env)
        for i, (port, admin) in enumerate(ports):
            work = tmp / f"envoy{i}"
            work.mkdir()
            mode = "open" if i == 2 else "closed"
            bootstrap = replica_copy(rendered[mode], work / "envoy.yaml", port, admin)
            envoys.append(Envoy(bootstrap, work, admin, env=env).start())
            started.append({"port": port, "admin": admin, "envoy": envoys[-1], "bootstrap": bootstrap,
                            "work": work, "env": env})
        for e in envoys:
            e.wait_ready()
        yield {"store": store, "replicas": started[:2], "open": started[2]}
    finally:
        for e in envoys:
            e.stop()
        for s in started:
            s["envoy"].stop()
        store.stop()


@pytest.fixture
def ls(ledger, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [r["envoy"] for r in ledger["replicas"]] + [ledger["open"]["envoy"]]
    yield ledger
    openai_fake.reset()
    anthropic_fake.reset()


def chat(replica: dict, key: str, **fields):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **fields}
    return request(replica["port"], "POST", "/v1/chat/completions", body, key=KEYS[key])


def wait_for(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def held(store: SpendStore, kind: str, name: str) -> int:
    return sum(store.get_int(k) for k in store.keys(f"llmgw:held:{kind}:{name}:*"))


def test_budget_holds_across_two_replicas_under_a_concurrent_burst(ls, openai_fake):
    a, b = ls["replicas"]
    store = ls["store"]
    openai_fake.set_default(lambda rec: Reply(json=openai_completion("ok"), delay=1.5))
    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda i: chat((a, b)[i % 2], "burst", max_tokens=1000), range(100)))
    statuses = [r.status for r in results]
    # Each replica alone would admit ten: the store admits ten in all.
    assert statuses.count(200) == 10, statuses
    refused = [r for r in results if r.status != 200]
    assert all(r.status == 429 for r in refused), statuses
    err = assert_openai_error(refused[0], 429, "rate_limit_error")
    assert err["code"] == "budget_exceeded" and "burst" in err["message"], err
    assert any("across all gateway replicas" in r.json["error"]["message"] for r in refused)
    assert len(openai_fake.requests) == 10
    # Settled in the store to the real cost, reservations given back.
    local = local_spend(a, "burst") + local_spend(b, "burst")
    assert local > 0
    wait_for(lambda: store.get_int(spent_key("key", "burst")) == local and held(store, "key", "burst") == 0,
             what="settlement written")
    # Room again for more, on either replica.
    openai_fake.set_default(None)
    assert chat(b, "burst", max_tokens=1000).status == 200


def test_team_spend_is_shared_in_the_store(ls):
    a, b = ls["replicas"]
    assert chat(a, "frank").status == 200
    assert chat(b, "frank").status == 200
    store = ls["store"]
    # The key has no budget of its own: only its team's spend is shared.
    local = sum(v or 0 for r in (a, b) for k, v in stats(r["admin"]).items()
                if k.startswith("llm_team_spend_micro_usd") and "team=research" in k)
    assert local > 0
    wait_for(lambda: store.get_int(spent_key("team", "research")) == local, what="team spend written")
    assert store.keys("llmgw:spent:key:frank:*") == []


def test_a_restarted_replica_keeps_refusing_an_exhausted_key(ls):
    a, b = ls["replicas"]
    store = ls["store"]
    statuses = []
    for i in range(10):
        r = chat((a, b)[i % 2], "spender", max_tokens=7)
        statuses.append(r.status)
        if r.status == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    wait_for(lambda: store.get_int(spent_key("key", "spender")) > 0 and held(store, "key", "spender") == 0,
             what="spend written")
    spent_before = store.get_int(spent_key("key", "spender"))
    # A restart empties the replica's own counters; the store still holds the spend.
    a["envoy"].stop()
    a["envoy"] = Envoy(a["bootstrap"], a["work"], a["admin"], env=a["env"]).start()
    a["envoy"].wait_ready()
    r = chat(a, "spender", max_tokens=7)
    err = assert_openai_error(r, 429, "rate_limit_error")
    assert err["code"] == "budget_exceeded" and "across all gateway replicas" in err["message"], err
    assert local_spend(a, "spender") == 0
    assert store.get_int(spent_key("key", "spender")) == spent_before


def test_embeddings_pass_the_shared_ledger(ls):
    """Every endpoint's budget is reserved in the store, not only chat's: an embeddings
    request is decided by the store (access log) and its reservation is settled there
    (its cost, a few tokens at $0.02 per million, rounds to 0 micro-USD)."""
    _, b = ls["replicas"]
    store = ls["store"]
    wait_for(lambda: held(store, "key", "steady") == 0, what="earlier reservations released")
    r = request(b["port"], "POST", "/v1/embeddings", {"model": "embed", "input": ["hello", "world"]},
                key=KEYS["steady"])
    assert r.status == 200, r.body

    def decided() -> bool:
        return any(e.get("operation") == "embeddings" and e.get("spend_store") == "ok"
                   for e in access_log(b))
    wait_for(decided, timeout=20, what="an embeddings line decided by the store")
    wait_for(lambda: held(store, "key", "steady") == 0, what="the embeddings reservation settled")


def test_store_down_and_slow_during_traffic(ls, openai_fake):
    a, _ = ls["replicas"]
    c = ls["open"]
    store = ls["store"]
    before = store.get_int(spent_key("key", "steady"))
    local_before = local_spend(a, "steady") + local_spend(c, "steady")
    stop = threading.Event()
    results = {"closed": [], "open": []}

    def traffic():
        for _ in range(2000):
            if stop.is_set():
                return
            for name, replica in (("closed", a), ("open", c)):
                t0 = time.monotonic()
                r = chat(replica, "steady")
                results[name].append((r.status, time.monotonic() - t0, r.json if r.status != 200 else None))
            time.sleep(0.02)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1.0)
        # Redis stopped: webdis answers 503 at once.
        store.stop_redis()
        outage_start = len(results["closed"]), len(results["open"])
        time.sleep(1.5)
        # A Messages client is refused in Anthropic's shape.
        m = request(a["port"], "POST", "/v1/messages",
                    {"model": "gpt-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
                    key=None, headers={"x-api-key": KEYS["steady"]})
        # webdis frozen: the store accepts connections and never answers.
        store.pause_webdis()
        time.sleep(1.5)
        store.resume_webdis()
        store.start_redis()
        outage_end = len(results["closed"]), len(results["open"])
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    closed, opened = results["closed"], results["open"]
    during_closed = closed[outage_start[0]:outage_end[0]]
    during_open = opened[outage_start[1]:outage_end[1]]
    assert during_closed and during_open
    # Closed mode: refused with a 503 it can retry; open mode: served on the replica's check.
    assert {s for s, _, _ in during_closed} <= {200, 503}
    assert any(s == 503 for s, _, _ in during_closed)
    for s, _, body in closed:
        if s == 503:
            assert body["error"]["code"] == "spend_store_unavailable", body
    assert all(s == 200 for s, _, _ in opened), [s for s, _, _ in opened]
    assert m.status == 503 and m.header("retry-after") == "1", (m.status, m.body)
    assert m.json == {"type": "error", "error": {"type": "overloaded_error",
                                                 "message": m.json["error"]["message"]}}, m.json
    assert "spend store" in m.json["error"]["message"], m.json
    # Nobody waited much longer than timeout_ms for the store (the provider answers at once).
    slowest = max(d for _, d, _ in closed + opened)
    assert slowest < STORE_TIMEOUT_MS / 1000 + 1.0, slowest
    # Before and after the outage, the closed replica serves.
    assert closed[0][0] == 200 and closed[-1][0] == 200
    # Spend settled meanwhile is written once the store is back: nothing lost, no overshoot.
    local = local_spend(a, "steady") + local_spend(c, "steady") - local_before
    wait_for(lambda: store.get_int(spent_key("key", "steady")) - before == local, timeout=15,
             what=f"spend written after the outage ({local} micro-USD)")
    written = store.get_int(spent_key("key", "steady")) - before
    assert stat(a, "llm_spend_store_errors_total") > 0 and stat(c, "llm_spend_store_errors_total") > 0
    assert stat(c, "llm_spend_store_decisions_without_store_total") >= len(during_open) // 2
    # The access log says which decisions were made without the store.
    log_c = wait_for(lambda: [l for l in access_log(c) if l.get("spend_store") == "unavailable_open"],
                     what="open decisions in the access log")
    log_a = wait_for(lambda: [l for l in access_log(a) if l.get("spend_store") == "unavailable_closed"],
                     what="closed decisions in the access log")
    assert all(l["status"] == 200 for l in log_c) and all(l["status"] == 503 for l in log_a)
    # Nothing crashed: both replicas still serve.
    assert chat(a, "steady").status == 200 and chat(c, "steady").status == 200
    print(f"\nspend store outage: closed replica {len(during_closed)} requests "
          f"({sum(1 for s, _, _ in during_closed if s == 503)} refused 503), open replica "
          f"{len(during_open)} served; slowest {slowest * 1000:.0f} ms; "
          f"{local} micro-USD settled, {written} in the store after it returned")


def team_spend(replicas, team: str) -> int:
    """The replicas' own per-process spend of `team` this period (their budget gauges)."""
    return sum(v or 0 for r in replicas for k, v in stats(r["admin"]).items()
               if k.startswith("llm_team_spend_micro_usd") and f"team={team}" in k)


def test_a_write_that_lands_after_its_timeout_is_counted_once(ls):
    """webdis frozen with Redis up: each flush times out while its request waits in the
    socket, and is sent again at every tick; webdis runs all of them when it wakes. The
    store applies a batch once, however many copies of it arrive."""
    _, _, c = *ls["replicas"], ls["open"]
    store = ls["store"]
    replicas = ls["replicas"] + [c]
    before = store.get_int(spent_key("team", "research"))
    local_before = team_spend(replicas, "research")
    store.pause_webdis()
    try:
        for _ in range(15):
            assert chat(c, "frank").status == 200
            time.sleep(0.1)
    finally:
        store.resume_webdis()
    local = team_spend(replicas, "research") - local_before
    assert local > 0
    wait_for(lambda: store.get_int(spent_key("team", "research")) - before == local, timeout=15,
             what=f"{local} micro-USD of team spend written")
    # Late copies still arriving would only ever add: the total stays put.
    time.sleep(1.0)
    assert store.get_int(spent_key("team", "research")) - before == local
    assert stat(c, "llm_spend_store_errors_total") > 0
    assert store.keys("llmgw:writer:*"), "each flushing worker keeps its last batch number"
