"""The gateway through the official `openai` Python SDK."""

from __future__ import annotations

import json

import openai
import pytest

from fakes import Reply, anthropic_event, anthropic_message, anthropic_stream, openai_completion
from harness import OPENAI_KEY

MODELS = ["gpt-test", "claude-test"]
UPSTREAM = {"gpt-test": "gpt-4o-mini", "claude-test": "claude-sonnet-4-5"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_models_list(gw):
    models = gw.client().models.list()
    assert sorted(m.id for m in models.data) == ["claude-test", "gpt-test"]
    assert all(m.object == "model" for m in models.data)


@pytest.mark.parametrize("model", MODELS)
def test_plain_completion(gw, model):
    resp = gw.client().chat.completions.create(
        model=model, messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "ping from sdk"}])
    assert resp.object == "chat.completion"
    assert resp.model == UPSTREAM[model]
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "echo: ping from sdk"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    # The SDK's `Authorization: Bearer <master key>` never reaches the provider.
    for rec in gw.provider_requests():
        for name, value in rec.header_list:
            assert gw.master_key not in value, f"master key sent upstream in {name}"


@pytest.mark.parametrize("model", MODELS)
def test_raw_response_headers(gw, model):
    raw = gw.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}])
    assert raw.http_response.status_code == 200
    h = raw.headers
    assert h["x-llm-provider"] == ("openai" if model == "gpt-test" else "anthropic")
    assert h["x-llm-model"] == UPSTREAM[model]
    assert h["x-llm-deployment"] == model
    assert h["x-llm-attempts"] == "1"
    completion = raw.parse()
    assert h["x-llm-prompt-tokens"] == str(completion.usage.prompt_tokens)
    assert h["x-llm-completion-tokens"] == str(completion.usage.completion_tokens)
    assert h["x-llm-cached-tokens"] == "0"


def test_tools_openai_compatible(gw):
    gw.openai.enqueue(Reply(json=openai_completion(None, finish_reason="tool_calls", tool_calls=[
        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}])))
    resp = gw.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "weather in Oslo?"}], tools=[WEATHER_TOOL])
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.id == "call_abc" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert gw.openai.last.json["tools"] == [WEATHER_TOOL]


def test_tools_anthropic_round_trip(gw):
    client = gw.client()
    gw.anthropic.enqueue(Reply(json=anthropic_message([
        {"type": "tool_use", "id": "toolu_rt", "name": "get_weather", "input": {"city": "Oslo"}}],
        stop_reason="tool_use")))
    messages = [{"role": "user", "content": "weather in Oslo?"}]
    resp = client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER_TOOL],
                                          tool_choice="required")
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert call.id == "toolu_rt" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert gw.anthropic.last.json["tool_choice"]["type"] == "any"

    # Send the tool result back the way SDK users do.
    messages.append(msg.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "-3C and snowing"})
    resp = client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].message.content.startswith("echo: ")
    up = gw.anthropic.last.json
    assert [m["role"] for m in up["messages"]] == ["user", "assistant", "user"]
    tool_use = [b for b in up["messages"][1]["content"] if b["type"] == "tool_use"]
    assert tool_use == [{"type": "tool_use", "id": "toolu_rt", "name": "get_weather", "input": {"city": "Oslo"}}]
    result = [b for b in up["messages"][2]["content"] if b["type"] == "tool_result"][0]
    assert result["tool_use_id"] == "toolu_rt"
    rc = result["content"]
    assert (rc if isinstance(rc, str) else "".join(b["text"] for b in rc)) == "-3C and snowing"


@pytest.mark.parametrize("model", MODELS)
def test_stream_without_stream_options(gw, model):
    stream = gw.client().chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": "count to three"}])
    chunks = list(stream)
    assert chunks
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: count to three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert {c.model for c in chunks} == {UPSTREAM[model]}
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("model", MODELS)
def test_stream_with_include_usage(gw, model):
    stream = gw.client().chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count to three"}])
    chunks = list(stream)
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    u = chunks[-1].usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_stream_helper_reassembles_anthropic_tool_calls(gw):
    gw.anthropic.enqueue(Reply.sse(anthropic_stream(stop_reason="tool_use", blocks=[
        ("tool_use", "toolu_s1", "get_weather", ['{"c', 'ity"', ': "Ber', 'lin"}']),
        ("tool_use", "toolu_s2", "get_weather", ['{"city": "Rome"}']),
    ])))
    client = gw.client()
    # `chat.completions.stream` in recent SDKs, `beta.chat.completions.stream` in older ones.
    helper = getattr(client.chat.completions, "stream", None) or client.beta.chat.completions.stream
    with helper(
            model="claude-test", messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.id for c in calls] == ["toolu_s1", "toolu_s2"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Berlin"}, {"city": "Rome"}]


def test_stream_mid_stream_error_raises(gw):
    events = anthropic_stream(pieces=["some ", "text"])[:5]
    events.append(anthropic_event("error", error={"type": "api_error", "message": "Internal server error mid-stream"}))
    gw.anthropic.enqueue(Reply.sse(events))
    stream = gw.client().chat.completions.create(
        model="claude-test", stream=True, messages=[{"role": "user", "content": "hi"}])
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    assert "Internal server error mid-stream" in str(info.value)
    assert "".join(got) == "some text"


def test_stream_overloaded_before_first_token_raises_503(gw):
    gw.anthropic.enqueue(Reply.sse([anthropic_event(
        "error", error={"type": "overloaded_error", "message": "Overloaded"})]))
    with pytest.raises(openai.InternalServerError) as info:
        stream = gw.client().chat.completions.create(
            model="claude-test", stream=True, messages=[{"role": "user", "content": "hi"}])
        list(stream)
    assert info.value.status_code == 503


@pytest.mark.parametrize("key", ["sk-nope", OPENAI_KEY])
def test_wrong_key_raises_authentication_error(gw, key):
    with pytest.raises(openai.AuthenticationError):
        gw.client(key=key).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert gw.provider_requests() == []


def test_unknown_model_raises_not_found(gw):
    with pytest.raises(openai.NotFoundError) as info:
        gw.client().chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert "gpt-nope" in info.value.message


def test_bad_request_raises_bad_request(gw):
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="gpt-test", messages=[])
    assert info.value.body.get("param") == "messages"
    assert gw.provider_requests() == []
