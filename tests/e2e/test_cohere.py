"""Cohere deployments: OpenAI chat requests become Cohere v2 Chat requests (`POST /v2/chat`),
Cohere answers and streams become OpenAI chat completions, as the official `openai` SDK
sees them.

The module runs its own Envoy in front of a Cohere fake with three deployments:
`cohere-test` (default policy), `cohere-drop` (`drop_params: true`) and `cohere-fb`, which
falls back to the OpenAI-compatible `gpt-test`.
"""

from __future__ import annotations

import json

import openai
import pytest

from fakes import CohereFake, Reply, cohere_error, cohere_event, cohere_message, cohere_stream, cohere_usage
from harness import deployment, gateway_for_test, running_gateway

COHERE_KEY_ENV = "FAKE_COHERE_KEY"
COHERE_KEY = "co-fake-cohere-provider-key-0123456789"
MODEL = "command-a-03-2025"

# Top-level fields of a v2 chat request the gateway may send; anything else is a leak.
COHERE_REQUEST_KEYS = {"model", "messages", "tools", "tool_choice", "response_format", "max_tokens",
                       "temperature", "p", "stop_sequences", "seed", "frequency_penalty",
                       "presence_penalty", "thinking", "stream"}


def _cohere(alias: str, url: str, **params) -> dict:
    return deployment(alias, f"cohere/{MODEL}", url, COHERE_KEY_ENV, **params)


@pytest.fixture(scope="module")
def cohere_fake():
    with CohereFake(name="cohere", api_key=COHERE_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def co_session(tmp_path_factory, openai_fake, anthropic_fake, cohere_fake):
    models = [_cohere("cohere-test", cohere_fake.url),
              _cohere("cohere-drop", cohere_fake.url, drop_params=True),
              _cohere("cohere-fb", cohere_fake.url)]
    with running_gateway(tmp_path_factory.mktemp("cohere"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={COHERE_KEY_ENV: COHERE_KEY},
                         router_settings={"fallbacks": [{"cohere-fb": ["gpt-test"]}]}) as g:
        yield g


@pytest.fixture
def co(co_session, cohere_fake, request):
    yield from gateway_for_test(co_session, request, cohere_fake)


def sent(fake) -> dict:
    """The last request the fake got, checked to be a well-formed v2 chat request."""
    req = fake.last
    assert req.path == "/v2/chat"
    assert req.json_error is None, req.body[:300]
    assert set(req.json) <= COHERE_REQUEST_KEYS, sorted(set(req.json) - COHERE_REQUEST_KEYS)
    for m in req.json["messages"]:
        assert m["role"] in ("system", "user", "assistant", "tool"), m
    return req.json


def test_text_through_the_sdk(co, cohere_fake):
    raw = co.client().chat.completions.with_raw_response.create(
        model="cohere-test",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
        temperature=0.3, top_p=0.9, max_tokens=50, stop=["END"], seed=7)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: Say hi"
    assert reply.choices[0].finish_reason == "stop"
    # The billed units are the usage.
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 5
    assert raw.headers["x-llm-provider"] == "cohere"
    assert raw.headers["x-llm-model"] == MODEL
    req = cohere_fake.last
    assert req.headers.get("authorization") == f"Bearer {COHERE_KEY}"
    assert "x-api-key" not in req.headers and "x-goog-api-key" not in req.headers
    up = sent(cohere_fake)
    assert up == {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Say hi"}],
                  "max_tokens": 50, "temperature": 0.3, "p": 0.9, "stop_sequences": ["END"], "seed": 7}


def test_stream_through_the_sdk(co, cohere_fake):
    chunks = list(co.client().chat.completions.create(
        model="cohere-test", messages=[{"role": "user", "content": "stream me"}],
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 14
    assert sent(cohere_fake)["stream"] is True


def test_tool_call_and_result_round_trip(co, cohere_fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    cohere_fake.enqueue(Reply(json=cohere_message(
        None, tool_plan="I will look up the weather in Paris and Rome.", finish_reason="TOOL_CALL",
        tool_calls=[{"id": "get_weather_p1", "name": "get_weather", "arguments": {"city": "Paris"}},
                    {"id": "get_weather_r2", "name": "get_weather", "arguments": {"city": "Rome"}}])))
    client = co.client()
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    first = client.chat.completions.create(model="cohere-test", messages=messages, tools=tools,
                                           tool_choice="required")
    up = sent(cohere_fake)
    assert up["tool_choice"] == "REQUIRED"
    assert up["tools"] == tools
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert msg.content == "I will look up the weather in Paris and Rome."
    assert [c.id for c in msg.tool_calls] == ["get_weather_p1", "get_weather_r2"]
    assert [json.loads(c.function.arguments) for c in msg.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]

    # The usual SDK loop: the assistant message goes back as it came, then one result per call.
    messages.append(msg)
    for c, result in zip(msg.tool_calls, ["18 C", "22 C"]):
        messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    cohere_fake.enqueue(Reply(json=cohere_message("Paris 18 C, Rome 22 C.")))
    second = client.chat.completions.create(model="cohere-test", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Paris 18 C, Rome 22 C."
    sent_messages = sent(cohere_fake)["messages"]
    assert [m["role"] for m in sent_messages] == ["user", "assistant", "tool", "tool"]
    assistant = sent_messages[1]
    assert assistant["tool_plan"] == "I will look up the weather in Paris and Rome."
    assert "content" not in assistant
    assert [c["id"] for c in assistant["tool_calls"]] == ["get_weather_p1", "get_weather_r2"]
    assert sent_messages[2:] == [
        {"role": "tool", "tool_call_id": "get_weather_p1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "get_weather_r2", "content": "22 C"},
    ]


def test_streamed_tool_call(co, cohere_fake):
    cohere_fake.enqueue(Reply.sse(cohere_stream(
        "", tool_calls=[{"id": "now_1", "name": "now", "arguments": {"tz": "UTC"}}], finish_reason="TOOL_CALL")))
    chunks = list(co.client().chat.completions.create(
        model="cohere-test", messages=[{"role": "user", "content": "time?"}], stream=True,
        tools=[{"type": "function", "function": {"name": "now"}}]))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "now_1" and deltas[0].function.name == "now"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"tz": "UTC"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_a_429_falls_back_to_another_provider(co, cohere_fake):
    cohere_fake.set_default(lambda rec: cohere_error(429, "You are using a Trial key, which is limited."))
    r = co.chat({"model": "cohere-fb", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status == 200, r.body
    assert r.header("x-llm-provider") == "openai"
    assert r.header("x-llm-attempts") == "2"
    assert len(cohere_fake.requests) == 1
    # The OpenAI attempt carries only the OpenAI credentials, never the Cohere key.
    assert all(COHERE_KEY not in (rq.headers.get("authorization") or "") for rq in co.openai.requests)


@pytest.mark.parametrize("reply,exc,status", [
    (cohere_error(400, "invalid request: temperature must be between 0 and 1"), openai.BadRequestError, 400),
    (cohere_error(401, "invalid api token"), openai.AuthenticationError, 401),
    (cohere_error(429, "You are using a Trial key, which is limited."), openai.RateLimitError, 429),
    (cohere_error(404, "model 'x' not found"), openai.NotFoundError, 404),
])
def test_errors_reach_the_sdk_as_openai_errors(co, cohere_fake, reply, exc, status):
    # Every attempt fails the same way, whatever Envoy retries.
    cohere_fake.set_default(lambda rec: reply)
    with pytest.raises(exc) as info:
        co.client().chat.completions.create(model="cohere-test", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.body["message"] == reply.json["message"]


def test_stream_opening_with_an_error_is_a_real_status(co, cohere_fake):
    cohere_fake.set_default(lambda rec: Reply.sse([cohere_event("message-start", id="x"), cohere_event(
        "message-end", delta={"finish_reason": "ERROR", "error": "internal error", "usage": cohere_usage(9, 0)})]))
    with pytest.raises(openai.InternalServerError) as info:
        list(co.client().chat.completions.create(
            model="cohere-test", messages=[{"role": "user", "content": "x"}], stream=True))
    assert info.value.status_code == 502
    assert "internal error" in info.value.body["message"]


def test_unsupported_parameters_follow_the_deployment_policy(co, cohere_fake):
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "f"}}}
    r = co.chat({"model": "cohere-test", **body})
    assert r.status == 400, r.body
    assert r.json["error"]["param"] == "tool_choice"
    assert r.json["error"]["code"] == "unsupported_parameter"
    assert cohere_fake.requests == []
    r = co.chat({"model": "cohere-drop", **body})
    assert r.status == 200, r.body
    assert "tool_choice" not in sent(cohere_fake)
    r = co.chat({"model": "cohere-drop", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert r.status == 400 and r.json["error"]["param"] == "n"
