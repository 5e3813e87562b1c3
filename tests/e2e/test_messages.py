"""`POST /v1/messages` (Anthropic's Messages API in) through the official `anthropic` SDK and
Claude Code, in a real Envoy with virtual keys and budgets (own Envoy):

* to an Anthropic deployment the body is passed through with only `model` rewritten
  (cache control, thinking, metadata, `anthropic-beta` kept), its usage priced;
* to an OpenAI-compatible deployment it is bridged both ways, JSON and SSE, in Anthropic's
  event sequence (text, thinking, tool use);
* gateway errors (bad key, budget, unknown model, missing field) in Anthropic's shape with
  the status the SDK maps to its exceptions;
* `count_tokens` forwarded to Anthropic, estimated elsewhere; `HEAD /` answered locally;
* stats (`operation="messages"`) and the access log count every request with its cost.

Claude Code (`@anthropic-ai/claude-code`, installed by `make test-deps` under
~/.cache/llm-gateway/, or named by `CLAUDE_CODE_BIN`) runs headless (`claude -p`) against
the gateway, once routed to the Anthropic fake and once to the OpenAI-compatible fake. It
gets a temporary HOME and `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` (no telemetry,
error reporting, auto-update or feedback survey); `DISABLE_AUTOUPDATER`, `DISABLE_TELEMETRY`
and `DISABLE_ERROR_REPORTING` say the same for older releases. With these set, 2.1.175 opens
connections to the gateway only (checked with `strace -e trace=connect`: `HEAD /`, then
`POST /v1/messages?beta=true`).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import harness
from fakes import Event, Reply, anthropic_answer, openai_chunk, openai_completion, openai_error
from harness import Envoy, free_port, gateway_config, key_sha256, provider_env, request, write_yaml

anthropic = pytest.importorskip("anthropic")

CODER = "sk-gw-test-coder-0123456789abcdef"
BROKE = "sk-gw-test-broke-0123456789abcdef"
# One key per accounting test: its access-log lines and stats are that test's alone.
OWN_KEYS = {name: f"sk-gw-test-{name}-0123456789abcdef" for name in ("acct", "cc-anthropic", "cc-openai")}
CLAUDE_CODE_VERSION = "2.1.175"


@pytest.fixture(scope="module")
def mgw(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("messages")
    port, admin = free_port(), free_port()
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin)
    cfg["virtual_keys"] = [
        {"name": "coder", "key_sha256": key_sha256(CODER)},
        *({"name": name, "key_sha256": key_sha256(key)} for name, key in OWN_KEYS.items()),
        # Far less than any request's worst case: refused at admission.
        {"name": "broke", "key_sha256": key_sha256(BROKE), "max_budget": 0.000001,
         "budget_duration": "monthly"},
    ]
    path = write_yaml(tmp / "gateway.yaml", cfg)
    env = provider_env()
    rendered = harness.render(path, tmp / "envoy.rendered.yaml", env=env)
    bootstrap = harness.exclusive_listeners(rendered, tmp / "envoy.yaml")
    envoy = Envoy(bootstrap, tmp, admin, env=env).start()
    try:
        envoy.wait_ready()
        yield {"port": port, "admin": admin, "envoy": envoy, "url": f"http://127.0.0.1:{port}"}
    finally:
        envoy.stop()


@pytest.fixture
def m(mgw, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [mgw["envoy"]]
    yield mgw
    openai_fake.reset()
    anthropic_fake.reset()


def client(m, key: str = CODER, **kw):
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", harness.HTTP_TIMEOUT)
    return anthropic.Anthropic(base_url=m["url"], api_key=key, **kw)


def admin_stats(m) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{m['admin']}/stats?format=json", timeout=5) as r:
        stats = json.loads(r.read())["stats"]
    return {s["name"]: s.get("value") for s in stats if "value" in s}


def stat_sum(m, prefix: str, *parts: str) -> int:
    return sum(v for k, v in admin_stats(m).items()
               if k.startswith(prefix) and all(p in k for p in parts))


def access_log(m, want: int, **match) -> list:
    """The JSON access-log lines matching `match`, once there are `want` of them (bounded)."""
    deadline = time.monotonic() + 10
    lines: list = []
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in m["envoy"].log_text().splitlines() if l.startswith("{")]
        lines = [l for l in lines if all(l.get(k) == v for k, v in match.items())]
        if len(lines) >= want:
            break
        time.sleep(0.2)
    return lines



# ---------------------------------------------------------------------------------------------
# To Anthropic: passed through


def test_create_passes_through_to_anthropic(m, anthropic_fake):
    msg = client(m).messages.create(
        model="claude-test", max_tokens=200,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi there",
                                                 "cache_control": {"type": "ephemeral"}}]}],
        metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    )
    assert msg.content[0].text == "echo: hi there"
    assert msg.usage.input_tokens == 12 and msg.usage.output_tokens == 6
    rec = anthropic_fake.last
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == harness.ANTHROPIC_KEY
    assert rec.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert rec.headers["anthropic-version"] == "2023-06-01"
    # Everything but the model as the client sent it.
    assert rec.json["model"] == "claude-sonnet-4-5"
    assert rec.json["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert rec.json["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert rec.json["metadata"] == {"user_id": "u-1"}
    assert rec.json["context_management"] == {"edits": [{"type": "clear_tool_uses_20250919"}]}


def test_stream_with_thinking_from_anthropic(m, anthropic_fake):
    with client(m).messages.stream(
        model="claude-test", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think first"}],
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: think first"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == "sig-fake" and final.content[0].thinking == "Let me think."
    assert final.usage.output_tokens == 6
    assert anthropic_fake.last.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert anthropic_fake.last.json["stream"] is True


def test_tool_round_trip_to_anthropic(m, anthropic_fake):
    anthropic_fake.enqueue(Reply(json={
        "id": "msg_t", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 10}}))
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    msg = client(m).messages.create(model="claude-test", max_tokens=100, tools=tools,
                                    messages=[{"role": "user", "content": "weather in Paris?"}])
    assert msg.stop_reason == "tool_use" and msg.content[0].input == {"city": "Paris"}
    assert anthropic_fake.last.json["tools"] == tools


# ---------------------------------------------------------------------------------------------
# To an OpenAI-compatible provider: bridged


def test_create_bridged_to_openai(m, openai_fake):
    msg = client(m).messages.create(model="gpt-test", max_tokens=100, system="be brief",
                                    messages=[{"role": "user", "content": "hello"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "gpt-test"
    assert msg.content[0].text == "echo: hello"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 7
    rec = openai_fake.last
    assert rec.path == "/v1/chat/completions"
    assert rec.json["model"] == "gpt-4o-mini" and rec.json["max_tokens"] == 100
    assert rec.json["messages"] == [{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": "hello"}]


def test_tools_bridged_to_openai(m, openai_fake):
    openai_fake.enqueue(Reply(json=openai_completion(None, finish_reason="tool_calls", tool_calls=[
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])))
    tools = [{"name": "get_weather", "description": "Weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    c = client(m)
    msg = c.messages.create(model="gpt-test", max_tokens=100, tools=tools, tool_choice={"type": "any"},
                            messages=[{"role": "user", "content": "weather in Paris?"}])
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "tool_use" and msg.content[0].name == "get_weather"
    assert msg.content[0].id == "call_1" and msg.content[0].input == {"city": "Paris"}
    sent = openai_fake.last.json
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "parameters": tools[0]["input_schema"]}}]
    assert sent["tool_choice"] == "required"
    # The tool result goes back as a `tool` message.
    c.messages.create(model="gpt-test", max_tokens=100, tools=tools, messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
    ])
    assert openai_fake.last.json["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]


def test_stream_bridged_to_openai(m, openai_fake):
    with client(m).messages.stream(model="gpt-test", max_tokens=100,
                                   messages=[{"role": "user", "content": "stream me"}]) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert final.content[0].text == "echo: stream me"
    assert final.usage.output_tokens == 7 and final.stop_reason == "end_turn"
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "message_delta" in events
    assert openai_fake.last.json["stream_options"] == {"include_usage": True}


def test_stream_thinking_and_tool_call_bridged(m, openai_fake):
    chunks = [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Paris is "}, {"reasoning_content": "in France."},
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]},
    ]
    events = [Event(openai_chunk(d)) for d in chunks]
    events.append(Event(openai_chunk({}, finish_reason="tool_calls")))
    events.append(Event(openai_chunk(choices=[], usage={"prompt_tokens": 30, "completion_tokens": 12,
                                                        "total_tokens": 42})))
    events.append(Event("[DONE]"))
    openai_fake.enqueue(Reply.sse(events))
    with client(m).messages.stream(
        model="gpt-test", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "weather?"}],
    ) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Paris is in France."
    assert final.content[2].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use" and final.usage.input_tokens == 30
    assert openai_fake.last.json["reasoning_effort"] == "low"


def test_provider_error_bridged_in_anthropic_shape(m, openai_fake):
    openai_fake.enqueue(openai_error(400, "This model's maximum context length is 128000 tokens."))
    with pytest.raises(anthropic.BadRequestError) as e:
        client(m).messages.create(model="gpt-test", max_tokens=10,
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "maximum context length" in e.value.body["error"]["message"]


def test_server_tool_refused_for_other_providers(m, openai_fake):
    with pytest.raises(anthropic.BadRequestError) as e:
        client(m).messages.create(model="gpt-test", max_tokens=10,
                                  tools=[{"type": "web_search_20250305", "name": "web_search"}],
                                  messages=[{"role": "user", "content": "x"}])
    assert "tools[0]" in e.value.body["error"]["message"]
    assert not openai_fake.requests


# ---------------------------------------------------------------------------------------------
# Gateway errors in Anthropic's shape


def test_gateway_errors_in_anthropic_shape(m):
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(m, key="sk-wrong").messages.create(model="claude-test", max_tokens=10,
                                                   messages=[{"role": "user", "content": "x"}])
    assert e.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                       "message": e.value.body["error"]["message"]}}
    with pytest.raises(anthropic.RateLimitError) as e:
        client(m, key=BROKE).messages.create(model="claude-test", max_tokens=1000,
                                              messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as e:
        client(m).messages.create(model="no-such-model", max_tokens=10,
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    r = request(m["port"], "POST", "/v1/messages", {"model": "claude-test", "messages": [
        {"role": "user", "content": "x"}]}, key=None, headers={"x-api-key": CODER})
    assert r.status == 400 and r.json["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json["error"]["message"]


def test_bearer_token_and_beta_query(m, anthropic_fake):
    c = anthropic.Anthropic(base_url=m["url"], auth_token=CODER, max_retries=0)
    msg = c.beta.messages.create(model="claude-test", max_tokens=10, betas=["interleaved-thinking-2025-05-14"],
                                 messages=[{"role": "user", "content": "beta"}])
    assert msg.content[0].text == "echo: beta"
    assert anthropic_fake.last.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "authorization" not in anthropic_fake.last.headers


# ---------------------------------------------------------------------------------------------
# count_tokens, connectivity checks


def test_count_tokens(m, anthropic_fake, openai_fake):
    c = client(m)
    body = {"messages": [{"role": "user", "content": "count these words please"}]}
    counted = c.messages.count_tokens(model="claude-test", **body)
    assert counted.input_tokens > 0
    assert anthropic_fake.last.path == "/v1/messages/count_tokens"
    assert anthropic_fake.last.json["model"] == "claude-sonnet-4-5"
    raw = c.messages.with_raw_response.count_tokens(model="gpt-test", **body)
    assert raw.headers["x-llm-token-count"] == "estimated"
    assert raw.parse().input_tokens > 0
    assert not openai_fake.requests


@pytest.mark.parametrize("path", ["/", "/api/hello"])
def test_head_connectivity_check(m, anthropic_fake, openai_fake, path):
    r = request(m["port"], "HEAD", path, key=None)
    assert r.status == 200
    assert not anthropic_fake.requests and not openai_fake.requests


# ---------------------------------------------------------------------------------------------
# Accounting


def test_stats_and_access_log_count_messages(m):
    c = client(m, key=OWN_KEYS["acct"])
    c.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "count me"}])
    with c.messages.stream(model="gpt-test", max_tokens=10, messages=[{"role": "user", "content": "me too"}]) as s:
        s.get_final_message()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stat_sum(m, "wasmcustom.llm_requests_total", ".operation=messages;", ".key=acct;") >= 2:
            break
        time.sleep(0.2)
    assert stat_sum(m, "wasmcustom.llm_requests_total", ".operation=messages;", ".key=acct;") == 2
    # claude-sonnet-4-5: 12 x $3/M + 6 x $15/M = 126 micro-USD; gpt-4o-mini 11 x $0.15/M
    # + 7 x $0.60/M, rounded to 6.
    assert stat_sum(m, "wasmcustom.llm_cost_micro_usd_total", ".operation=messages;", ".key=acct;") == 132
    lines = access_log(m, 2, operation="messages", key="acct")
    assert len(lines) == 2, lines
    by_model = {l["model"]: l for l in lines}
    assert by_model["claude-test"]["cost_micro_usd"] == "126" and by_model["claude-test"]["prompt_tokens"] == "12"
    assert by_model["gpt-test"]["cost_micro_usd"] == "6" and by_model["gpt-test"]["completion_tokens"] == "7"


# ---------------------------------------------------------------------------------------------
# Claude Code


def claude_code_bin() -> Path | None:
    named = os.environ.get("CLAUDE_CODE_BIN")
    if named:
        return Path(named)
    cached = (Path.home() / ".cache" / "llm-gateway" / f"claude-code-{CLAUDE_CODE_VERSION}"
              / "node_modules" / ".bin" / "claude")
    return cached if cached.exists() else None


def run_claude(m, tmp_path: Path, model: str, prompt: str, key_env: str, key: str) -> subprocess.CompletedProcess:
    binary = claude_code_bin()
    if binary is None:
        pytest.skip(f"Claude Code {CLAUDE_CODE_VERSION} is not installed: run `make test-deps`")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": m["url"],
        key_env: key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        # No telemetry, error reporting, auto-update, release notes or surveys: only the
        # gateway is called.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run([str(binary), "-p", prompt], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_claude_code_through_anthropic(m, anthropic_fake, tmp_path):
    anthropic_fake.set_default(lambda rec: anthropic_answer(
        rec.json or {}, "PONG from the Anthropic fake", str((rec.json or {}).get("model"))))
    r = run_claude(m, tmp_path, "claude-test", "Reply with PONG.", "ANTHROPIC_API_KEY", OWN_KEYS["cc-anthropic"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "PONG from the Anthropic fake" in r.stdout, (r.stdout, r.stderr)
    main = [q for q in anthropic_fake.requests if q.path == "/v1/messages" and (q.json or {}).get("tools")]
    assert main, [q.path for q in anthropic_fake.requests]
    # Claude Code's real request: streamed, many tools, its beta headers forwarded.
    assert main[0].json["stream"] is True and len(main[0].json["tools"]) > 5
    assert main[0].headers.get("anthropic-beta")
    assert main[0].json["model"] == "claude-sonnet-4-5"
    calls = len([q for q in anthropic_fake.requests if q.path == "/v1/messages"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stat_sum(
            m, "wasmcustom.llm_requests_total", ".operation=messages;", ".key=cc-anthropic;") < calls:
        time.sleep(0.2)
    assert stat_sum(m, "wasmcustom.llm_requests_total", ".operation=messages;", ".model=claude-test;",
                    ".key=cc-anthropic;", ".status_class=2xx;") == calls
    assert stat_sum(m, "wasmcustom.llm_cost_micro_usd_total", ".key=cc-anthropic;") > 0
    lines = access_log(m, calls, operation="messages", model="claude-test", key="cc-anthropic")
    assert len(lines) == calls and all(int(l["cost_micro_usd"] or 0) > 0 for l in lines), lines


def test_claude_code_through_openai(m, openai_fake, tmp_path):
    openai_fake.set_default(lambda rec: Reply.sse([
        Event(openai_chunk({"role": "assistant", "content": ""})),
        Event(openai_chunk({"content": "PONG from the "})),
        Event(openai_chunk({"content": "OpenAI-compatible fake"})),
        Event(openai_chunk({}, finish_reason="stop")),
        Event(openai_chunk(choices=[], usage={"prompt_tokens": 900, "completion_tokens": 8,
                                              "total_tokens": 908})),
        Event("[DONE]")]) if (rec.json or {}).get("stream") else Reply(json=openai_completion("PONG")))
    r = run_claude(m, tmp_path, "gpt-test", "Reply with PONG.", "ANTHROPIC_AUTH_TOKEN", OWN_KEYS["cc-openai"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "PONG from the OpenAI-compatible fake" in r.stdout, (r.stdout, r.stderr)
    main = [q for q in openai_fake.requests if (q.json or {}).get("tools")]
    assert main and main[0].json["stream"] is True and len(main[0].json["tools"]) > 5
    calls = len(openai_fake.requests)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stat_sum(
            m, "wasmcustom.llm_requests_total", ".operation=messages;", ".key=cc-openai;") < calls:
        time.sleep(0.2)
    assert stat_sum(m, "wasmcustom.llm_requests_total", ".operation=messages;", ".model=gpt-test;",
                    ".key=cc-openai;", ".status_class=2xx;") == calls
    assert stat_sum(m, "wasmcustom.llm_cost_micro_usd_total", ".key=cc-openai;") > 0
    lines = access_log(m, calls, operation="messages", model="gpt-test", key="cc-openai")
    assert len(lines) == calls and all(int(l["cost_micro_usd"] or 0) > 0 for l in lines), lines


def test_models_list_in_anthropic_shape(m):
    page = client(m).models.list()
    ids = [model.id for model in page.data]
    assert "claude-test" in ids and "gpt-test" in ids
    assert all(model.type == "model" and model.created_at.year >= 2025 for model in page.data)
    # Without `anthropic-version`, OpenAI's shape as before.
    r = request(m["port"], "GET", "/v1/models", key=CODER)
    assert r.json["object"] == "list"
