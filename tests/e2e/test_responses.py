"""`POST /v1/responses` in a real Envoy, driven by the official `openai` SDK and by Codex.

`gpt-test` is an OpenAI deployment, answered by a fake that speaks the Responses API
(`responses_fakes.py`): the body passes through with the model rewritten. `claude-test` is
an Anthropic deployment, reached through the gateway's stateless bridge. Both are priced,
and the module's own Envoy has a virtual key for Codex, so the stats and the access log can
be checked to count every request with its cost.

Codex (`@openai/codex`, installed by `make codex`, found through `CODEX_BIN`) runs as it is
used: `codex exec` headless with stdin from /dev/null, a temporary CODEX_HOME whose
config.toml names the gateway as a `wire_api = "responses"` model provider with the virtual
key in an environment variable, sandbox read-only, approvals never. The config also turns off
everything that would reach the network elsewhere (see `codex_config`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from fakes import Reply, anthropic_message, anthropic_stream
from harness import OPENAI_KEY, gateway_for_test, key_sha256, openai_deployment, running_gateway
from responses_fakes import ResponsesOpenAIFake, call_item, message_item, responses_reply

CODEX_KEY = "sk-gw-test-codex-0123456789abcdef"
CODEX_ENV = "LLM_GATEWAY_TEST_KEY"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False},
                "strict": True}


def codex_bin() -> str | None:
    path = os.environ.get("CODEX_BIN")
    if path and Path(path).exists():
        return path
    return shutil.which("codex")


@pytest.fixture(scope="module")
def oai():
    with ResponsesOpenAIFake(name="openai-responses", api_key=OPENAI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def rgw(tmp_path_factory, oai, anthropic_fake):
    keys = {"virtual_keys": [{"name": "codex", "key_sha256": key_sha256(CODEX_KEY),
                              "models": ["gpt-test", "claude-test"], "max_budget": 5.0}]}
    # `gpt-fb` is the OpenAI deployment again, falling back to Anthropic through the bridge.
    fb = openai_deployment("gpt-fb", "gpt-4o-mini", oai.url)
    with running_gateway(tmp_path_factory.mktemp("responses"), oai, anthropic_fake, config_extra=keys,
                         extra_models=[fb], router_settings={"fallbacks": [{"gpt-fb": ["claude-test"]}]}) as g:
        yield g


@pytest.fixture
def r(rgw, request):
    yield from gateway_for_test(rgw, request)


def access_log(g, count_at_least: int = 0, key: str = "codex") -> list:
    """The access-log lines of requests made with `key` (only `/v1/responses` requests use
    it), once there are `count_at_least` of them (Envoy writes its access log in the
    background)."""
    deadline = time.monotonic() + 15
    lines: list = []
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in g.envoy.log_text().splitlines() if l.startswith("{")]
        lines = [l for l in lines if l.get("key") == key and l.get("method") == "POST"]
        if len(lines) >= count_at_least:
            break
        time.sleep(0.3)
    return lines


def requests_stat(g, **labels) -> float:
    """The sum of `llm_requests_total` over series with `labels` (Envoy's Prometheus output)."""
    text = urllib.request.urlopen(f"{g.admin_url}/stats/prometheus", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("llm_requests_total{") and "_llm_requests_total{" not in line:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------------------------
# OpenAI: passed through


def test_passthrough_keeps_the_body_and_prices_the_answer(r, oai):
    raw = r.client().responses.with_raw_response.create(
        model="gpt-test", input="Hello!", store=True, include=["message.output_text.logprobs"],
        previous_response_id="resp_earlier", instructions="Be brief.", metadata={"team": "a"})
    resp = raw.parse()
    assert resp.output_text == "echo: Hello!"
    assert resp.usage.input_tokens == 11 and resp.usage.output_tokens == 7
    assert raw.headers["x-llm-provider"] == "openai"
    assert float(raw.headers["x-llm-cost-usd"]) > 0
    sent = oai.last
    assert sent.path == "/v1/responses"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["store"] is True and sent.json["previous_response_id"] == "resp_earlier"
    assert sent.json["include"] == ["message.output_text.logprobs"]
    assert sent.json["metadata"] == {"team": "a"}
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_passthrough_stream_with_a_function_tool_round_trip(r, oai):
    client = r.client()
    oai.enqueue(responses_reply([call_item("get_weather", '{"city":"Paris"}', call_id="call_w1")]))
    with client.responses.stream(model="gpt-test", input="Weather in Paris?", tools=[WEATHER_TOOL]) as s:
        deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        first = s.get_final_response()
    assert "".join(deltas) == '{"city":"Paris"}'
    call = first.output[0]
    assert call.type == "function_call" and call.call_id == "call_w1"
    oai.enqueue(responses_reply([message_item("Sunny in Paris.")]))
    second = client.responses.create(
        model="gpt-test", tools=[WEATHER_TOOL], stream=False,
        input=[{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": "call_w1", "output": "sunny"}])
    assert second.output_text == "Sunny in Paris."
    assert oai.last.json["input"][-1] == {"type": "function_call_output", "call_id": "call_w1", "output": "sunny"}


def test_a_429_falls_back_from_openai_to_the_bridge(r, oai, anthropic_fake):
    oai.enqueue(Reply(status=429, json={"error": {"message": "Rate limit reached", "type": "requests",
                                                  "param": None, "code": "rate_limit_exceeded"}}))
    raw = r.client().responses.with_raw_response.create(model="gpt-fb", input="Hello!", store=False)
    resp = raw.parse()
    assert raw.headers["x-llm-attempts"] == "2" and raw.headers["x-llm-provider"] == "anthropic"
    assert resp.output_text == "echo: Hello!" and resp.object == "response"
    assert oai.last.path == "/v1/responses" and anthropic_fake.last.path == "/v1/messages"


# ---------------------------------------------------------------------------------------------
# Anthropic: through the bridge


def test_bridge_json_with_a_function_tool_round_trip(r, anthropic_fake):
    client = r.client()
    anthropic_fake.enqueue(Reply(json=anthropic_message(
        [{"type": "text", "text": "Let me look."},
         {"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}],
        stop_reason="tool_use")))
    raw = client.responses.with_raw_response.create(
        model="claude-test", instructions="Be brief.", input="Weather in Paris?", tools=[WEATHER_TOOL],
        max_output_tokens=300, temperature=0.2)
    first = raw.parse()
    assert float(raw.headers["x-llm-cost-usd"]) > 0
    sent = anthropic_fake.last.json
    assert sent["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}]), sent["system"]
    assert sent["max_tokens"] == 300 and sent["tools"][0]["name"] == "get_weather"
    assert [o.type for o in first.output] == ["message", "function_call"]
    call = first.output[1]
    assert call.call_id == "toolu_w1" and json.loads(call.arguments) == {"city": "Paris"}
    assert first.usage.input_tokens == 12 and first.usage.output_tokens == 6

    second = client.responses.create(
        model="claude-test", tools=[WEATHER_TOOL],
        input=[{"role": "user", "content": "Weather in Paris?"}, *[o.model_dump(exclude_none=True) for o in first.output],
               {"type": "function_call_output", "call_id": "toolu_w1", "output": "sunny, 21 C"}])
    assert second.output_text == "echo: " or second.output_text.startswith("echo")
    messages = anthropic_fake.last.json["messages"]
    assert messages[1]["role"] == "assistant"
    assert any(b.get("type") == "tool_use" and b["id"] == "toolu_w1" for b in messages[1]["content"])
    result = messages[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_w1"


def test_bridge_stream_events_through_the_sdk(r, anthropic_fake):
    anthropic_fake.enqueue(Reply.sse(anthropic_stream(blocks=[
        ("text", ["Checking", " now."]),
        ("tool_use", "toolu_s1", "get_weather", ['{"ci', 'ty": "Ro', 'me"}'])], stop_reason="tool_use")))
    with r.client().responses.stream(model="claude-test", input="Weather in Rome?", tools=[WEATHER_TOOL]) as s:
        events = list(s)
        final = s.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    for t in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
              "response.output_text.done", "response.function_call_arguments.delta",
              "response.function_call_arguments.done", "response.output_item.done"):
        assert t in types, (t, types)
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Checking now."
    assert final.output[1].type == "function_call" and json.loads(final.output[1].arguments) == {"city": "Rome"}
    assert final.usage.input_tokens == 12 and final.usage.output_tokens == 6
    assert anthropic_fake.last.json["stream"] is True


def test_bridge_refuses_what_it_cannot_carry(r, anthropic_fake):
    client = r.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude-test", input="And then?", previous_response_id="resp_1")
    assert "previous_response_id" in str(e.value) and e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude-test", input="News?", tools=[{"type": "web_search"}])
    assert "web_search" in str(e.value) and e.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude-test", input=[{"type": "message", "role": "robot", "content": "x"}])
    assert e.value.body["param"] == "input[0].role"
    assert anthropic_fake.requests == []


def test_stats_and_access_log_count_responses_with_cost(r):
    client = r.client(key=CODEX_KEY)
    assert client.responses.create(model="gpt-test", input="one").output_text == "echo: one"
    assert client.responses.create(model="claude-test", input="two").output_text == "echo: two"
    lines = access_log(r, 2)
    assert len(lines) >= 2, lines
    for line in lines[-2:]:
        assert line["status"] == 200 and int(line["cost_micro_usd"]) > 0, line
        assert int(line["prompt_tokens"]) > 0 and int(line["completion_tokens"]) > 0, line
    assert {l["provider"] for l in lines[-2:]} == {"openai", "anthropic"}
    deadline = time.monotonic() + 10
    while requests_stat(r, operation="responses", key="codex") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert requests_stat(r, operation="responses", key="codex") >= 2
    assert requests_stat(r, operation="responses", model="claude-test", provider="anthropic") >= 1


# ---------------------------------------------------------------------------------------------
# Codex


def codex_config(home: Path, gateway_url: str, model: str) -> None:
    """A config.toml for `codex exec` against the gateway, and nothing else: no web search
    tool, no plugins, apps or tool suggestions (which look up github.com and chatgpt.com),
    no analytics, no update check, no multi-agent namespace tool (a tool type the bridge
    does not carry)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'''
model = "{model}"
model_provider = "gateway"
approval_policy = "never"
sandbox_mode = "read-only"
web_search = "disabled"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
multi_agent = false
plugins = false
remote_plugin = false
apps = false
tool_suggest = false

[model_providers.gateway]
name = "LLM gateway"
base_url = "{gateway_url}/v1"
wire_api = "responses"
env_key = "{CODEX_ENV}"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 30000
''')


def run_codex(tmp: Path, gateway_url: str, model: str, prompt: str) -> subprocess.CompletedProcess:
    binary = codex_bin()
    if binary is None:
        pytest.skip("codex is not installed (make codex)")
    home = tmp / "codex-home"
    codex_config(home, gateway_url, model)
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    # Anything that is not the gateway goes to a closed port, should it be tried at all.
    env.update({"CODEX_HOME": str(home), CODEX_ENV: CODEX_KEY, "HOME": str(tmp),
                "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                "ALL_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"})
    with open(os.devnull, "rb") as devnull:
        return subprocess.run([binary, "exec", "--skip-git-repo-check", "--color", "never", prompt],
                              cwd=work, env=env, stdin=devnull, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("model,provider", [("gpt-test", "openai"), ("claude-test", "anthropic")])
def test_codex_exec(r, oai, anthropic_fake, tmp_path, model, provider):
    before = len(access_log(r))
    answer = f"Hello from the {provider} fake, behind the gateway."
    fake = oai if provider == "openai" else anthropic_fake
    if provider == "openai":
        oai.set_default(responses_reply([message_item(answer)]))
    else:
        anthropic_fake.set_default(lambda rec: Reply.sse(anthropic_stream(pieces=[answer[:9], answer[9:]])))
    try:
        done = run_codex(tmp_path, r.url, model, "Say hello to the gateway")
    finally:
        fake.set_default(None)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert answer in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Say hello to the gateway" in json.dumps(fake.last.json)
    sent = fake.last
    assert sent.path == ("/v1/responses" if provider == "openai" else "/v1/messages")
    assert sent.json["stream"] is True
    if provider == "openai":
        # Codex's own fields reach OpenAI as it sent them.
        assert sent.json["store"] is False and "reasoning.encrypted_content" in sent.json["include"]
    lines = access_log(r, before + 1)
    mine = [l for l in lines[before:] if l["provider"] == provider]
    assert mine and all(l["status"] == 200 and int(l["cost_micro_usd"]) > 0 for l in mine), lines[before:]
    assert requests_stat(r, operation="responses", key="codex", provider=provider) >= 1
