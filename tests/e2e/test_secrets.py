"""Keys never leak: provider keys and client keys appear in no response body (not even when
a provider's error quotes the key it was sent), no Envoy log line at `info`, no access log
entry, no stat name, no admin config dump, and no rendered bootstrap, which names the
environment variables and never holds their values. No client key reaches a provider."""

from __future__ import annotations

import hashlib
import json
import urllib.request

import pytest

import harness
from fakes import Event, Reply, anthropic_error, anthropic_event, anthropic_stream, openai_error, openai_stream
from harness import (ANTHROPIC_KEY, ANTHROPIC_KEY_ENV, OPENAI_KEY, OPENAI_KEY_ENV, Envoy, free_port,
                     gateway_config, provider_env, render, request, stream, write_yaml)

MASTER_ENV = "LLM_GATEWAY_MASTER_KEY"
MASTER = "sk-secret-master-key-for-leak-test-0123456789"
VIRTUAL = "sk-secret-virtual-key-for-leak-test-0123456789"
WRONG = "sk-wrong-client-key-attempt-0123456789abcdef"
SECRETS = {"openai provider key": OPENAI_KEY, "anthropic provider key": ANTHROPIC_KEY,
           "master key": MASTER, "virtual key": VIRTUAL, "wrong client key": WRONG}


def leaks(text: str) -> list:
    return [name for name, value in SECRETS.items() if value in text]


@pytest.fixture(scope="module")
def sg(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("secrets")
    port, admin = free_port(), free_port()
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin, master_key=f"os.environ/{MASTER_ENV}")
    cfg["virtual_keys"] = [{"name": "leaktest", "key_sha256": hashlib.sha256(VIRTUAL.encode()).hexdigest()}]
    env = provider_env({MASTER_ENV: MASTER})
    out = render(write_yaml(tmp / "gateway.yaml", cfg), tmp / "envoy.yaml", env=env)
    envoy = Envoy(out, tmp, admin, env=env, log_level="info").start()
    try:
        envoy.wait_ready()
        yield {"port": port, "admin": admin, "envoy": envoy, "bootstrap": out, "bodies": []}
    finally:
        envoy.stop()


@pytest.fixture
def s(sg, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [sg["envoy"]]
    yield sg
    openai_fake.reset()
    anthropic_fake.reset()


def chat(s, model, key=MASTER, stream_it=False):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream_it:
        body["stream"] = True
        r = stream(s["port"], "/v1/chat/completions", body, key=key)
        s["bodies"].append(r.raw.decode(errors="replace"))
    else:
        r = request(s["port"], "POST", "/v1/chat/completions", body, key=key)
        s["bodies"].append(r.body.decode(errors="replace"))
    return r


def test_rendered_bootstrap_names_variables_never_values(s):
    text = s["bootstrap"].read_text()
    assert leaks(text) == []
    assert f"os.environ/{OPENAI_KEY_ENV}" in text and f"os.environ/{ANTHROPIC_KEY_ENV}" in text
    assert f"os.environ/{MASTER_ENV}" in text
    for f in json.loads(json.dumps(__import__("yaml").safe_load(text)))["static_resources"]["listeners"][0][
            "filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
        vm = (f.get("typed_config", {}).get("config") or {}).get("vm_config")
        if vm:
            assert set(vm["environment_variables"]["host_env_keys"]) >= {OPENAI_KEY_ENV, ANTHROPIC_KEY_ENV, MASTER_ENV}


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_normal_traffic_with_master_and_virtual_keys(s, model, openai_fake, anthropic_fake):
    for key in (MASTER, VIRTUAL):
        assert chat(s, model, key).status == 200
        assert chat(s, model, key, stream_it=True).status == 200
    assert chat(s, model, WRONG).status == 401
    # No client key reaches a provider, in any header or body.
    for rec in openai_fake.requests + anthropic_fake.requests:
        seen = json.dumps(rec.header_list) + rec.body.decode(errors="replace")
        assert not [n for n in leaks(seen) if "client" in n or n in ("master key", "virtual key")], seen


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_provider_error_quoting_the_key_is_scrubbed(s, model, openai_fake, anthropic_fake):
    key = OPENAI_KEY if model == "gpt-test" else ANTHROPIC_KEY
    message = f"Incorrect API key provided: {key}. You can find your API key at https://example.invalid."
    if model == "gpt-test":
        openai_fake.enqueue(openai_error(401, message, code="invalid_api_key"),
                            Reply.sse([Event(data={"error": {"message": message, "type": "invalid_request_error"}})]),
                            Reply.sse([Event(data={"id": "c", "object": "chat.completion.chunk", "choices": [
                                {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}),
                                Event(data={"error": {"message": message, "type": "server_error"}})]))
    else:
        start = anthropic_event("message_start", message={
            "id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
            "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 1}})
        anthropic_fake.enqueue(anthropic_error(401, message, "authentication_error"),
                               Reply.sse([anthropic_event("error", error={"type": "overloaded_error", "message": message})]),
                               Reply.sse([start, anthropic_event("error", error={"type": "api_error", "message": message})]))
    r = chat(s, model)
    assert r.status == 401, r.body
    err = r.json["error"]["message"]
    assert key not in err and "Incorrect API key provided" in err, err
    first = chat(s, model, stream_it=True)  # an error as the first event
    assert first.status >= 400 or first.done_count == 1, first.raw[:300]
    mid = chat(s, model, stream_it=True)  # an error in the middle of the stream
    assert mid.status == 200 and mid.done_count == 1, mid.raw[:300]
    for text in (r.body.decode(), first.raw.decode(), mid.raw.decode()):
        assert leaks(text) == [], text


@pytest.mark.parametrize("cut", [3, 19, 37])
@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_a_key_split_across_stream_events_is_scrubbed(s, model, cut, openai_fake, anthropic_fake):
    key = OPENAI_KEY if model == "gpt-test" else ANTHROPIC_KEY
    pieces = ["Your key is ", key[:cut], key[cut:], " -- keep it safe."]
    # Each piece its own event, sent a moment apart, so each reaches the gateway alone.
    if model == "gpt-test":
        events = openai_stream(pieces=pieces)
        fake = openai_fake
    else:
        events = anthropic_stream(pieces=pieces)
        fake = anthropic_fake
    for e in events:
        e.delay = 0.02
    fake.enqueue(Reply.sse(events))
    r = chat(s, model, stream_it=True)
    assert r.status == 200 and r.done_count == 1, r.raw[:300]
    mask = "sk-***" if model == "gpt-test" else "sk-ant-***"
    assert r.content() == f"Your key is {mask} -- keep it safe.", r.raw[:600]


def test_zz_nothing_leaked_anywhere(s):
    envoy = s["envoy"]
    assert s["bodies"], "no traffic was recorded"
    for body in s["bodies"]:
        assert leaks(body) == [], body
    # Envoy's log at info and the JSON access log on its stdout.
    log = envoy.log_text()
    assert '"method":"POST"' in log.replace(" ", "")
    assert leaks(log) == [], [line for line in log.splitlines() if leaks(line)][:5]
    admin = f"http://127.0.0.1:{s['admin']}"
    for path in ("/stats", "/stats/prometheus", "/config_dump", "/clusters", "/server_info"):
        text = urllib.request.urlopen(admin + path, timeout=10).read().decode(errors="replace")
        assert leaks(text) == [], (path, [line for line in text.splitlines() if leaks(line)][:5])
    assert "llm_requests_total" in urllib.request.urlopen(admin + "/stats", timeout=10).read().decode()
