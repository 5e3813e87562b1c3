"""Gemini deployments: OpenAI chat requests become `generateContent` requests, Gemini answers
and streams become OpenAI chat completions, as the official `openai` SDK sees them.

The module runs its own Envoy with two Gemini deployments in front of a Gemini fake:
`gemini-test` (default policy) and `gemini-drop` (`drop_params: true`).
"""

from __future__ import annotations

import json

import openai
import pytest

from fakes import Event, GeminiFake, Reply
from harness import deployment, gateway_for_test, running_gateway

GEMINI_KEY_ENV = "FAKE_GEMINI_KEY"
GEMINI_KEY = "AIzaFakeGeminiProviderKey0123456789abcde"
MODEL = "gemini-2.5-flash"

# Top-level fields of a generateContent request; anything else is an OpenAI field leaking.
GEMINI_REQUEST_KEYS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


def _gemini(alias: str, url: str, **params) -> dict:
    return deployment(alias, f"gemini/{MODEL}", url, GEMINI_KEY_ENV, **params)


@pytest.fixture(scope="module")
def gemini_fake():
    with GeminiFake(name="gemini", api_key=GEMINI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def gem_session(tmp_path_factory, openai_fake, anthropic_fake, gemini_fake):
    models = [_gemini("gemini-test", gemini_fake.url),
              _gemini("gemini-drop", gemini_fake.url, drop_params=True)]
    with running_gateway(tmp_path_factory.mktemp("gemini"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={GEMINI_KEY_ENV: GEMINI_KEY}) as g:
        yield g


@pytest.fixture
def gem(gem_session, gemini_fake, request):
    yield from gateway_for_test(gem_session, request, gemini_fake)


def answer(parts, finish="STOP", usage=None, rid="resp-e2e-1") -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": usage or {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
            "modelVersion": MODEL, "responseId": rid}


def google_error(code: int, status: str, message: str, details=None) -> Reply:
    body = {"error": {"code": code, "message": message, "status": status}}
    if details:
        body["error"]["details"] = details
    return Reply(status=code, json=body)


def sent(fake) -> dict:
    """The one request the fake got, checked to be a well-formed generateContent request."""
    assert len(fake.requests) == 1, [r.path for r in fake.requests]
    req = fake.last
    assert req.json_error is None, req.body[:300]
    assert set(req.json) <= GEMINI_REQUEST_KEYS, sorted(set(req.json) - GEMINI_REQUEST_KEYS)
    for c in req.json["contents"]:
        assert c["role"] in ("user", "model"), c
        for p in c["parts"]:
            assert p.get("text", "x") != "", f"empty text part in {c}"
    return req.json


def test_text_through_the_sdk(gem, gemini_fake):
    client = gem.client()
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-test",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
        temperature=0.3, max_tokens=50, stop=["END"])
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: Say hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 5
    assert raw.headers["x-llm-provider"] == "gemini"
    assert raw.headers["x-llm-model"] == MODEL
    req = gemini_fake.last
    assert req.path == f"/v1beta/models/{MODEL}:generateContent"
    # The key travels in its header only: not in the URL, and no other credential leaks.
    assert req.headers.get("x-goog-api-key") == GEMINI_KEY
    assert "key" not in req.query and "authorization" not in req.headers
    up = sent(gemini_fake)
    assert up["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert up["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["END"]}


def test_stream_through_the_sdk(gem, gemini_fake):
    client = gem.client()
    chunks = list(client.chat.completions.create(
        model="gemini-test", messages=[{"role": "user", "content": "stream me"}],
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 14
    req = gemini_fake.last
    assert req.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert req.query.get("alt") == "sse"


def test_tool_calls_and_thought_signatures_round_trip(gem, gemini_fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}]
    gemini_fake.enqueue(Reply(json=answer([
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLXBhcmlz+/=="},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ])))
    client = gem.client()
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    first = client.chat.completions.create(model="gemini-test", messages=messages, tools=tools,
                                           tool_choice="required")
    up = gemini_fake.last.json
    assert up["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert up["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"] is False
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    calls = msg.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert calls[0].id != calls[1].id

    # The usual SDK loop: the assistant message goes back as it came, then one result per call.
    messages.append(msg)
    for c, result in zip(calls, ["18 C", "22 C"]):
        messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    gemini_fake.enqueue(Reply(json=answer([{"text": "Paris 18 C, Rome 22 C."}])))
    second = client.chat.completions.create(model="gemini-test", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Paris 18 C, Rome 22 C."
    contents = gemini_fake.last.json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0]["thoughtSignature"] == "c2lnLXBhcmlz+/=="
    assert "thoughtSignature" not in model_parts[1]
    assert [p["functionResponse"] for p in contents[2]["parts"]] == [
        {"name": "get_weather", "response": {"result": "18 C"}},
        {"name": "get_weather", "response": {"result": "22 C"}},
    ]


def test_streamed_tool_call(gem, gemini_fake):
    gemini_fake.enqueue(Reply.sse([
        Event({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "c2ln"}]}, "index": 0}],
            "responseId": "r-s"}, split_at=20),
        Event({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP",
                               "index": 0}], "responseId": "r-s",
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}),
    ]))
    client = gem.client()
    chunks = list(client.chat.completions.create(
        model="gemini-test", messages=[{"role": "user", "content": "time?"}], stream=True,
        tools=[{"type": "function", "function": {"name": "now"}}]))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1
    assert deltas[0].id == "call_r-s_0__thought__c2ln" and deltas[0].function.name == "now"
    assert deltas[0].function.arguments == "{}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_reasoning_comes_back_apart_from_content(gem, gemini_fake):
    gemini_fake.enqueue(Reply(json=answer(
        [{"text": "Thinking about primes.", "thought": True}, {"text": "Yes."}],
        usage={"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 20, "totalTokenCount": 26})))
    r = gem.chat({"model": "gemini-test", "messages": [{"role": "user", "content": "Is 7 prime?"}],
                  "reasoning_effort": "low"})
    assert r.status == 200, r.body
    msg = r.json["choices"][0]["message"]
    assert msg["content"] == "Yes." and msg["reasoning_content"] == "Thinking about primes."
    assert r.json["usage"]["completion_tokens"] == 21
    assert r.json["usage"]["completion_tokens_details"]["reasoning_tokens"] == 20
    assert gemini_fake.last.json["generationConfig"]["thinkingConfig"] == {"includeThoughts": True,
                                                                          "thinkingBudget": 1024}


@pytest.mark.parametrize("reply,exc,status", [
    (google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."), openai.RateLimitError, 429),
    (google_error(400, "INVALID_ARGUMENT", "API key not valid.", [{"reason": "API_KEY_INVALID"}]),
     openai.AuthenticationError, 401),
    (google_error(404, "NOT_FOUND", "models/x is not found."), openai.NotFoundError, 404),
    (google_error(400, "INVALID_ARGUMENT", "Bad schema."), openai.BadRequestError, 400),
])
def test_errors_reach_the_sdk_as_openai_errors(gem, gemini_fake, reply, exc, status):
    # Every attempt fails the same way, whatever Envoy retries.
    gemini_fake.set_default(lambda rec: reply)
    with pytest.raises(exc) as info:
        gem.client().chat.completions.create(model="gemini-test", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.body["message"]


def test_stream_opening_with_an_error_is_a_real_status(gem, gemini_fake):
    gemini_fake.set_default(lambda rec: Reply.sse([Event({"error": {
        "code": 429, "message": "Resource has been exhausted.", "status": "RESOURCE_EXHAUSTED"}})]))
    with pytest.raises(openai.RateLimitError) as info:
        list(gem.client().chat.completions.create(
            model="gemini-test", messages=[{"role": "user", "content": "x"}], stream=True))
    assert "exhausted" in info.value.body["message"]


def test_blocked_prompt_is_a_content_filter_400(gem, gemini_fake):
    gemini_fake.enqueue(Reply(json={"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "b"}))
    with pytest.raises(openai.BadRequestError) as info:
        gem.client().chat.completions.create(model="gemini-test", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "content_filter"


def test_unsupported_parameters_follow_the_deployment_policy(gem, gemini_fake):
    body = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "presence_penalty": 0}
    r = gem.chat({"model": "gemini-test", **body})
    assert r.status == 400, r.body
    assert r.json["error"]["param"] == "logprobs"
    assert r.json["error"]["code"] == "unsupported_parameter"
    assert gemini_fake.requests == []
    r = gem.chat({"model": "gemini-drop", **body})
    assert r.status == 200, r.body
    assert "generationConfig" not in sent(gemini_fake)
