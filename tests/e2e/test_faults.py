"""Provider faults in a real Envoy: for each one, the client gets its defined result (an
OpenAI-shaped error, a stream that ends with an error event and `[DONE]`, or a transfer
that is visibly cut off, never one that looks complete), and the next normal request on
the same gateway succeeds. After the whole file, Envoy's stats show no Wasm VM crash or
reload, every request is in the access log and in `llm_requests_total` exactly once, and
Envoy's memory is back where it was (bounded).

The providers are `faults.RawProvider`s, raw sockets that can reset, truncate, stall,
trickle and flood. The tests run in file order: the first one (the 20 MiB answer) sets the
memory baseline, the last one checks the whole file's effects.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

import faults
import harness
import rawclient
from harness import (ANTHROPIC_KEY, ANTHROPIC_KEY_ENV, MASTER_KEY, OPENAI_KEY, OPENAI_KEY_ENV, Envoy,
                     assert_openai_error, free_port, gateway_config, key_sha256, provider_env, render, rss_kb,
                     write_yaml)

SOLO_KEY = "sk-fault-solo-key-0123456789abcdef"
# The route timeout of `gpt-short` (a never-ending stream is cut there).
SHORT_TIMEOUT = 2
# Per-attempt silence allowed on `gpt-idle`, whose second tier answers when the first stalls.
IDLE_TIMEOUT = 1




def admin_stats(admin_url: str) -> dict:
    text = urllib.request.urlopen(f"{admin_url}/stats", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def vm_health(stats: dict) -> dict:
    """The stats that move when a Wasm VM traps: reloads, and VMs created."""
    return {k: v for k, v in stats.items()
            if k.startswith("wasm.") and ("vm_reload" in k or k.startswith("wasm.envoy.wasm.runtime."))}


def requests_total(stats: dict) -> int:
    return sum(v for k, v in stats.items() if k.startswith("wasmcustom.llm_requests_total"))


def access_log(envoy: Envoy) -> list:
    out = []
    if envoy.stdout_path.is_file():
        for line in envoy.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


class FaultGateway:
    def __init__(self, envoy, port, admin_port, openai, anthropic):
        self.envoy = envoy
        self.port = port
        self.admin_port = admin_port
        self.openai = openai
        self.anthropic = anthropic
        self.sent = 0  # chat requests sent, for the accounting check
        self._lock = threading.Lock()
        self.start_stats: dict = {}
        self.rss: dict = {}

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def call(self, model: str, stream: bool = False, key: str = MASTER_KEY, content: str = "hi", **kw):
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        if stream:
            body["stream"] = True
        with self._lock:
            self.sent += 1
        return rawclient.call(self.port, body, key, **kw)

    def reset(self) -> None:
        self.openai.reset()
        self.anthropic.reset()


@pytest.fixture(scope="module")
def fg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    oa = faults.RawProvider("openai", api_key=OPENAI_KEY).start()
    an = faults.RawProvider("anthropic", api_key=ANTHROPIC_KEY).start()
    port, admin = free_port(), free_port()
    openai_params = {"model": "openai/gpt-4o-mini", "api_base": f"{oa.url}/v1",
                     "api_key": f"os.environ/{OPENAI_KEY_ENV}"}
    models = [
        {"model_name": "gpt-f", "litellm_params": dict(openai_params)},
        {"model_name": "claude-f", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": an.url, "api_key": f"os.environ/{ANTHROPIC_KEY_ENV}"}},
        {"model_name": "gpt-short", "litellm_params": {**openai_params, "timeout": SHORT_TIMEOUT},
         "model_info": {"id": "short"}},
        {"model_name": "gpt-idle", "litellm_params": {**openai_params, "order": 1}, "model_info": {"id": "idle-1"}},
        {"model_name": "gpt-idle", "litellm_params": {**openai_params, "order": 2}, "model_info": {"id": "idle-2"}},
    ]
    cfg = gateway_config(None, None, port, admin, extra_models=models,
                         router_settings={"per_try_idle_timeout": IDLE_TIMEOUT})
    cfg["general_settings"]["request_timeout"] = 15
    cfg["virtual_keys"] = [{"name": "solo", "key_sha256": key_sha256(SOLO_KEY), "max_parallel_requests": 1}]
    env = provider_env()
    out = render(write_yaml(tmp / "gateway.yaml", cfg), tmp / "envoy.yaml", env=env)
    envoy = Envoy(out, tmp, admin, env=env).start()
    try:
        envoy.wait_ready()
        g = FaultGateway(envoy, port, admin, oa, an)
        g.start_stats = vm_health(admin_stats(g.admin_url))
        yield g
    finally:
        envoy.stop()
        oa.stop()
        an.stop()


@pytest.fixture
def f(fg, request):
    fg.reset()
    request.node._envoys = [fg.envoy]
    yield fg
    fg.reset()


def assert_next_request_works(g: FaultGateway) -> None:
    """The gateway still answers normally, JSON and streamed, for both providers."""
    g.reset()
    for model in ("gpt-f", "claude-f"):
        r = g.call(model, content="still there?")
        assert r.status == 200 and r.complete, (model, r.status, r.body[:300])
        assert r.json["choices"][0]["message"]["content"] == "echo: still there?"
        s = g.call(model, stream=True, content="still there?")
        assert s.status == 200 and s.complete and s.done_count == 1, (model, s.status, s.body[:300])
        assert s.content() == "echo: still there?" and s.finish_reasons() == ["stop"]


def assert_cut_or_cleanly_failed(s: rawclient.RawResult) -> None:
    """A stream the provider broke: either the client sees the transfer cut off (no last
    chunk, so no client mistakes it for a complete answer), or it ends with an OpenAI error
    event and `[DONE]`. Never a clean end without `[DONE]`, never `[DONE]` without an error."""
    assert s.status == 200, (s.status, s.body[:300])
    print(f"\n  stream outcome: {'error event + [DONE]' if s.complete else 'cut off'}, "
          f"{len(s.events)} events, {s.elapsed:.2f}s")
    if s.complete:
        assert s.done_count == 1, s.events
        errors = s.error_events()
        assert errors, s.events
        assert isinstance(errors[-1]["error"]["message"], str)
        assert s.events[-1].strip() == "[DONE]"
    else:
        assert s.aborted and s.done_count == 0, s.events


# ---------------------------------------------------------------------------------------------
# Tests, in file order


def test_huge_answer_is_translated_or_an_openai_error(f):
    pid = f.envoy.proc.pid
    assert_next_request_works(f)  # warm up both workers' VMs
    f.rss["start"] = rss_kb(pid)
    size = 20 * 1024 * 1024
    for model, provider in (("gpt-f", f.openai), ("claude-f", f.anthropic)):
        provider.enqueue(faults.huge_json(size))
        r = f.call(model, timeout=60)
        assert r.complete, (model, r.status)
        if r.status == 200:
            assert len(r.json["choices"][0]["message"]["content"]) == size
        else:
            assert r.status >= 500, r.status
            assert_openai_error(harness.Response(r.status, r.headers, list(r.headers.items()), r.body), r.status)
    # Beyond Envoy's buffer (twice the request limit and 1 MiB): an OpenAI-shaped 5xx.
    f.openai.enqueue(faults.huge_json(40 * 1024 * 1024))
    r = f.call("gpt-f", timeout=60)
    assert r.status >= 500 and r.complete, (r.status, r.body[:300])
    assert_openai_error(harness.Response(r.status, r.headers, list(r.headers.items()), r.body), r.status)
    assert_next_request_works(f)
    # Each worker's Wasm memory grows to the largest answer it translated and stays there:
    # a few more rounds so that both workers have seen both providers' huge answers...
    def rounds(n):
        for _ in range(n):
            for model, provider in (("gpt-f", f.openai), ("claude-f", f.anthropic)):
                provider.enqueue(faults.huge_json(size))
                assert f.call(model, timeout=60).status == 200
    rounds(3)
    f.rss["after_huge"] = rss_kb(pid)
    # ...after which the same answers take little more memory: it is reused, not leaked
    # (keeping the six answers of three more rounds would take over 120 MiB; the
    # allocator's fragmentation may take a few tens of MiB).
    rounds(3)
    f.rss["after_more_huge"] = rss_kb(pid)
    assert f.rss["after_more_huge"] - f.rss["after_huge"] < 64 * 1024, f.rss


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_connection_reset_mid_stream(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.reset_mid_stream(events_first=3))
    s = f.call(model, stream=True)
    assert_cut_or_cleanly_failed(s)
    assert_next_request_works(f)


def sdk(g: FaultGateway):
    import openai

    return openai.OpenAI(base_url=f"http://127.0.0.1:{g.port}/v1", api_key=MASTER_KEY,
                         max_retries=0, timeout=15)


@pytest.mark.parametrize("fault", ["reset", "malformed"])
def test_the_sdk_raises_on_a_broken_stream(f, fault):
    # What an application sees: an exception while iterating, after the first chunks,
    # never a stream that just stops as if it were complete.
    f.anthropic.enqueue(faults.reset_mid_stream(events_first=4) if fault == "reset" else faults.malformed_sse())
    got = []
    f.sent += 1
    with pytest.raises(Exception) as raised:
        for chunk in sdk(f).chat.completions.create(
                model="claude-f", messages=[{"role": "user", "content": "hi"}], stream=True):
            got.append(chunk)
    assert got, raised.value
    if fault == "malformed":
        import openai

        assert isinstance(raised.value, openai.APIError), repr(raised.value)
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_connection_reset_before_the_answer(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.reset_before_answer())
    r = f.call(model)
    assert r.complete and r.status in (502, 503), (r.status, r.body[:300])
    assert_openai_error(harness.Response(r.status, r.headers, list(r.headers.items()), r.body), r.status)
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_malformed_json_answer(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.malformed_json())
    r = f.call(model)
    err = assert_openai_error(harness.Response(r.status, r.headers, list(r.headers.items()), r.body), 502)
    assert err["code"] == "bad_upstream_response", err
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_malformed_sse_ends_with_an_error_event(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.malformed_sse())
    s = f.call(model, stream=True)
    assert s.status == 200 and s.complete, (s.status, s.body[:300])
    assert s.done_count == 1 and s.events[-1] == "[DONE]", s.events
    assert s.error_events(), s.events
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_unknown_event_types_are_skipped(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.unknown_event("one two three"))
    s = f.call(model, stream=True)
    assert s.status == 200 and s.complete and s.done_count == 1, (s.status, s.events)
    assert s.content() == "one two three" and s.finish_reasons() == ["stop"]
    assert not s.error_events()
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_truncated_body_is_an_openai_error(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    provider.enqueue(faults.truncated_body(declared=5000, sent=100))
    r = f.call(model)
    assert r.complete and r.status >= 500, (r.status, r.body[:300])
    assert_openai_error(harness.Response(r.status, r.headers, list(r.headers.items()), r.body), r.status)
    assert_next_request_works(f)


def test_never_ending_stream_is_cut_at_the_route_timeout(f):
    f.openai.enqueue(faults.endless(interval=0.1))
    s = f.call("gpt-short", stream=True, timeout=SHORT_TIMEOUT + 10)
    assert s.elapsed < SHORT_TIMEOUT + 3, s.elapsed
    assert s.content().startswith("tick"), s.events[:3]
    assert_cut_or_cleanly_failed(s)
    assert_next_request_works(f)


def test_stall_before_the_first_event_falls_back(f):
    # The first tier sends its headers and then nothing: its attempt is abandoned after the
    # idle timeout and the second tier answers, since nothing reached the client yet.
    f.openai.enqueue(faults.stall(events_first=0))
    s = f.call("gpt-idle", stream=True, timeout=15)
    assert s.status == 200 and s.complete and s.done_count == 1, (s.status, s.events)
    assert s.content() == "echo: hi"
    assert s.headers.get("x-llm-attempts") == "2", s.headers
    assert s.elapsed < IDLE_TIMEOUT + 3, s.elapsed
    assert_next_request_works(f)


def test_stall_in_the_middle_of_a_stream_is_bounded(f):
    f.openai.enqueue(faults.stall(events_first=3))
    s = f.call("gpt-idle", stream=True, timeout=15)
    assert s.elapsed < IDLE_TIMEOUT + 3, s.elapsed
    assert_cut_or_cleanly_failed(s)
    assert_next_request_works(f)


@pytest.mark.parametrize("model", ["gpt-f", "claude-f"])
def test_slow_trickle_still_translates(f, model):
    provider = f.openai if model == "gpt-f" else f.anthropic
    # One byte every 100 ms for 3 s, across the first events' boundaries, then the rest.
    provider.enqueue(faults.trickle("slow and steady", slow_bytes=30, interval=0.1))
    s = f.call(model, stream=True, timeout=30)
    assert s.status == 200 and s.complete and s.done_count == 1, (s.status, s.events)
    assert s.content() == "slow and steady" and s.finish_reasons() == ["stop"]
    assert s.elapsed >= 2.5
    provider.enqueue(faults.trickle("slow json", slow_bytes=20, interval=0.1, json_answer=True))
    r = f.call(model, timeout=30)
    assert r.status == 200 and r.json["choices"][0]["message"]["content"] == "slow json", r.body[:300]
    assert_next_request_works(f)


def test_client_leaving_mid_stream_releases_its_parallel_slot(f):
    f.openai.set_default(faults.slow_stream(events=40, interval=0.1))
    result = {}

    def leave_early():
        result["first"] = f.call("gpt-f", stream=True, key=SOLO_KEY, leave_after_events=3, timeout=20)

    t = threading.Thread(target=leave_early)
    t.start()
    # While that stream runs, the key's one parallel slot is taken.
    deadline = time.monotonic() + 5
    refused = None
    while time.monotonic() < deadline and t.is_alive():
        time.sleep(0.1)
        if len(f.openai.requests) >= 1:
            refused = f.call("gpt-f", key=SOLO_KEY)
            break
    t.join(20)
    assert result["first"].status == 200 and len(result["first"].events) >= 3
    assert refused is not None and refused.status == 429, (refused and refused.body[:300])
    # Once the client has gone, the slot is free again.
    f.openai.set_default(None)
    deadline = time.monotonic() + 5
    statuses = []
    while time.monotonic() < deadline:
        r = f.call("gpt-f", key=SOLO_KEY)
        statuses.append(r.status)
        if r.status == 200:
            break
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    assert_next_request_works(f)


def input_tokens(g: FaultGateway, model: str) -> int:
    return sum(v for k, v in admin_stats(g.admin_url).items()
               if k.startswith("wasmcustom.llm_tokens_total") and f"model={model};" in k
               and "token_type=input;" in k)


@pytest.mark.parametrize("cut", ["client leaves", "provider resets"])
def test_a_cut_stream_still_accounts_the_prompt(f, cut):
    # Anthropic reports the prompt's tokens in message_start and bills them whatever
    # happens next: a stream cut after it must still count them.
    before = input_tokens(f, "claude-f")
    if cut == "client leaves":
        f.anthropic.enqueue(faults.slow_stream(events=40, interval=0.1))
        s = f.call("claude-f", stream=True, leave_after_events=4, timeout=20)
    else:
        f.anthropic.enqueue(faults.reset_mid_stream(events_first=5))
        s = f.call("claude-f", stream=True, timeout=20)
    assert s.status == 200 and len(s.events) >= 3
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and input_tokens(f, "claude-f") == before:
        time.sleep(0.2)
    assert input_tokens(f, "claude-f") - before == 12


def test_zz_envoy_is_healthy_after_every_fault(fg):
    g = fg
    # No VM trapped, reloaded or was re-created.
    assert vm_health(admin_stats(g.admin_url)) == g.start_stats
    log = g.envoy.log_text()
    for sign in ("panicked", "wasm_fail_stream", "Uncaught", "RuntimeError"):
        assert sign not in log, (sign, g.envoy.log_tail())
    # Every request is accounted once: in the access log and in llm_requests_total. Envoy
    # flushes the access log every 10 s (its file_flush_interval), hence the wait.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        posts = [e for e in access_log(g.envoy) if e.get("method") == "POST"]
        total = requests_total(admin_stats(g.admin_url))
        if len(posts) >= g.sent and total >= g.sent:
            break
        time.sleep(0.3)
    assert len(posts) == g.sent, (len(posts), g.sent)
    assert total == g.sent, (total, g.sent)
    # Memory: after all the faults, back near where it was after the huge answers.
    g.reset()
    for _ in range(20):
        g.call("gpt-f")
    rss = rss_kb(g.envoy.proc.pid)
    g.rss["end"] = rss
    print(f"\nEnvoy RSS (KiB): {g.rss}")
    if "after_more_huge" not in g.rss:
        return  # run without the first test (-k): no baseline
    assert rss - g.rss["after_more_huge"] < 32 * 1024, g.rss
    # The huge answers themselves cost a bounded amount (Wasm memory grows to the largest
    # body and stays there, per worker).
    assert g.rss["after_huge"] - g.rss["start"] < 400 * 1024, g.rss
