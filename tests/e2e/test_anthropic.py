"""Anthropic deployments: OpenAI chat requests become Messages API requests, and Messages
answers become OpenAI chat completions."""

from __future__ import annotations

import json
import time

import pytest

from fakes import Reply, anthropic_message
from harness import assert_openai_error

# Top-level fields of a Messages API request; anything else is an OpenAI field leaking.
ANTHROPIC_REQUEST_KEYS = {
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "tools", "tool_choice", "metadata", "thinking", "service_tier",
}
BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}

# A 1x1 transparent PNG.
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def chat(messages, **fields) -> dict:
    return {"model": "claude-test", "messages": messages, **fields}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def blocks(content) -> list:
    """Anthropic content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    assert isinstance(content, list), content
    return content


def text_of(content) -> str:
    return "".join(b["text"] for b in blocks(content) if b.get("type") == "text")


def system_text(body: dict) -> str:
    s = body.get("system")
    if s is None:
        return ""
    if isinstance(s, str):
        return s
    assert isinstance(s, list) and all(b.get("type") == "text" for b in s), s
    return "\n".join(b["text"] for b in s)


def sent(gw, body: dict) -> dict:
    """Sends `body` for claude-test and returns the translated request the provider got,
    after checking it is a well-formed Messages request."""
    r = gw.chat(body)
    assert r.status == 200, r.body
    assert len(gw.anthropic.requests) == 1 and gw.openai.requests == []
    req = gw.anthropic.last
    assert req.path == "/v1/messages"
    assert req.json_error is None, f"provider got invalid JSON: {req.json_error}: {req.body[:300]!r}"
    if req.content_length is not None:
        assert req.content_length == len(req.body)
    up = req.json
    assert isinstance(up, dict)
    leaked = set(up) - ANTHROPIC_REQUEST_KEYS
    assert not leaked, f"OpenAI-only fields reached Anthropic: {sorted(leaked)}"
    assert up["model"] == "claude-sonnet-4-5"
    assert up.get("stream") in (None, False)
    assert isinstance(up["max_tokens"], int)
    msgs = up["messages"]
    assert msgs and msgs[0]["role"] == "user", msgs
    for i, m in enumerate(msgs):
        assert set(m) == {"role", "content"}, m
        assert m["role"] in ("user", "assistant"), m
        if i:
            assert m["role"] != msgs[i - 1]["role"], f"roles do not alternate: {[x['role'] for x in msgs]}"
        for b in blocks(m["content"]):
            assert b["type"] in BLOCK_TYPES, b
            if b["type"] == "text":
                assert b["text"] != "", f"empty text block in {m}"
    return up


# --- request translation -------------------------------------------------------------------


def test_system_and_developer_messages_become_top_level_system(gw):
    up = sent(gw, chat([
        {"role": "system", "content": "SYS-ONE be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "DEV-TWO use metric"}]},
        user("hello there"),
    ]))
    s = system_text(up)
    assert "SYS-ONE be brief" in s and "DEV-TWO use metric" in s
    assert s.index("SYS-ONE") < s.index("DEV-TWO")
    assert [m["role"] for m in up["messages"]] == ["user"]
    assert text_of(up["messages"][0]["content"]) == "hello there"


def test_single_system_message_is_the_system_text(gw):
    up = sent(gw, chat([{"role": "system", "content": "You are a pirate."}, user("hi")]))
    assert system_text(up) == "You are a pirate."


def test_no_system_message_means_no_system(gw):
    up = sent(gw, chat([user("hi")]))
    assert system_text(up) == ""


def test_system_messages_later_in_the_conversation_are_hoisted(gw):
    up = sent(gw, chat([
        {"role": "system", "content": "FIRST-SYS"},
        user("U1"),
        {"role": "assistant", "content": "A1"},
        {"role": "developer", "content": "LATE-DEV"},
        user("U2"),
    ]))
    s = system_text(up)
    assert "FIRST-SYS" in s and "LATE-DEV" in s
    assert [m["role"] for m in up["messages"]] == ["user", "assistant", "user"]
    assert [text_of(m["content"]) for m in up["messages"]] == ["U1", "A1", "U2"]


def test_consecutive_same_role_messages_are_merged_to_alternate(gw):
    up = sent(gw, chat([
        user("U-ONE"), user("U-TWO"),
        {"role": "assistant", "content": "A-ONE"}, {"role": "assistant", "content": "A-TWO"},
        user("U-THREE"),
    ]))
    roles = [m["role"] for m in up["messages"]]
    assert roles == ["user", "assistant", "user"], roles
    first = text_of(up["messages"][0]["content"])
    assert "U-ONE" in first and "U-TWO" in first and first.index("U-ONE") < first.index("U-TWO")
    second = text_of(up["messages"][1]["content"])
    assert "A-ONE" in second and "A-TWO" in second and second.index("A-ONE") < second.index("A-TWO")
    assert text_of(up["messages"][2]["content"]) == "U-THREE"


@pytest.mark.parametrize("fields,expected", [
    ({}, 4096),
    ({"max_tokens": 123}, 123),
    ({"max_completion_tokens": 55}, 55),
])
def test_max_tokens(gw, fields, expected):
    up = sent(gw, chat([user("hi")], **fields))
    assert up["max_tokens"] == expected


@pytest.mark.parametrize("fields,expected", [
    ({"temperature": 0.25}, {"temperature": 0.25}),
    ({"top_p": 0.5}, {"top_p": 0.5}),
    # Anthropic's current models refuse both: the one that changes nothing is left out.
    ({"temperature": 0.25, "top_p": 1}, {"temperature": 0.25}),
    ({"temperature": 1, "top_p": 0.5}, {"top_p": 0.5}),
])
def test_temperature_or_top_p_is_forwarded(gw, fields, expected):
    up = sent(gw, chat([user("hi")], **fields))
    assert {k: up[k] for k in ("temperature", "top_p") if k in up} == expected


def test_temperature_and_top_p_that_both_matter_are_refused(gw):
    r = gw.chat(chat([user("hi")], temperature=0.25, top_p=0.5))
    assert_openai_error(r, 400, "invalid_request_error", param="top_p")
    assert "temperature" in r.json["error"]["message"]
    assert gw.provider_requests() == []


def test_no_sampling_fields_unless_asked(gw):
    up = sent(gw, chat([user("hi")]))
    for f in ("temperature", "top_p", "stop_sequences", "tools", "tool_choice"):
        assert f not in up, f


@pytest.mark.parametrize("stop,expected", [
    ("END", ["END"]),
    (["A-STOP", "B-STOP"], ["A-STOP", "B-STOP"]),
])
def test_stop_becomes_stop_sequences(gw, stop, expected):
    up = sent(gw, chat([user("hi")], stop=stop))
    assert up["stop_sequences"] == expected


def test_openai_only_fields_never_leak(gw):
    up = sent(gw, chat(
        [user("hi")], presence_penalty=0, frequency_penalty=0, logit_bias={}, seed=7, user="u-1",
        n=1, store=False, logprobs=False, parallel_tool_calls=True, metadata={"team": "e2e"},
        max_completion_tokens=99, stop=["x"], temperature=1.0))
    # `sent` checks the top-level keys; the translated values still arrive.
    assert up["max_tokens"] == 99
    assert up["stop_sequences"] == ["x"]
    assert up["temperature"] == 1.0
    assert set(up.get("metadata") or {}) <= {"user_id"}, up["metadata"]


@pytest.mark.parametrize("field,value", [
    ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5),
    ("frequency_penalty", -0.5),
    ("n", 2),
    ("logprobs", True),
])
def test_openai_parameters_anthropic_cannot_honour_are_refused_not_forwarded(gw, field, value):
    r = gw.chat(chat([user("hi")], **{field: value}))
    assert_openai_error(r, 400, "invalid_request_error", param=field)
    assert gw.provider_requests() == []


WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def test_tools_become_anthropic_tools(gw):
    up = sent(gw, chat([user("weather?")], tools=TOOLS))
    tools = up["tools"]
    assert len(tools) == 2
    assert tools[0] == {"name": "get_weather", "description": "Get the weather", "input_schema": WEATHER_PARAMS}
    assert tools[1]["name"] == "get_time"
    assert tools[1]["input_schema"] == {"type": "object", "properties": {}}
    assert set(tools[1]) <= {"name", "description", "input_schema"}
    assert tools[1].get("description") in (None, "")


def _choice(up: dict):
    tc = up.get("tool_choice")
    if isinstance(tc, dict) and tc.get("disable_parallel_tool_use") is False:
        tc = {k: v for k, v in tc.items() if k != "disable_parallel_tool_use"}
    return tc


@pytest.mark.parametrize("fields,expected", [
    ({"tool_choice": "auto"}, {"type": "auto"}),
    ({"tool_choice": "required"}, {"type": "any"}),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, {"type": "tool", "name": "get_weather"}),
    ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
    ({"tool_choice": "auto", "parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
    ({"tool_choice": "required", "parallel_tool_calls": False}, {"type": "any", "disable_parallel_tool_use": True}),
    ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}, "parallel_tool_calls": False},
     {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
    ({"tool_choice": "auto", "parallel_tool_calls": True}, {"type": "auto"}),
])
def test_tool_choice(gw, fields, expected):
    up = sent(gw, chat([user("weather?")], tools=TOOLS, **fields))
    assert _choice(up) == expected
    assert [t["name"] for t in up["tools"]] == ["get_weather", "get_time"]


def test_no_tool_choice_means_auto(gw):
    up = sent(gw, chat([user("weather?")], tools=TOOLS))
    assert _choice(up) in (None, {"type": "auto"})


def test_tool_choice_none(gw):
    up = sent(gw, chat([user("weather?")], tools=TOOLS, tool_choice="none"))
    # Either say "none" to Anthropic, or send no tools at all: both stop tool use.
    assert _choice(up) == {"type": "none"} or not up.get("tools"), up


def test_assistant_tool_calls_and_tool_messages_become_tool_use_and_tool_result(gw):
    up = sent(gw, chat([
        user("Weather in Paris and Rome?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        user("Thanks, and tomorrow?"),
    ], tools=TOOLS))
    msgs = up["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    a = blocks(msgs[1]["content"])
    assert text_of(a) == "Checking."
    assert [b for b in a if b["type"] == "tool_use"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    u = blocks(msgs[2]["content"])
    results = [b for b in u if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["call_1", "call_2"]
    assert [text_of(r["content"]) for r in results] == ["18C", "21C"]
    # Anthropic wants the tool results first in the user turn.
    assert [b["type"] for b in u[:2]] == ["tool_result", "tool_result"]
    assert text_of(u) == "Thanks, and tomorrow?"


def test_assistant_tool_call_without_text_has_no_empty_text_block(gw):
    for content in (None, ""):
        gw.reset()
        up = sent(gw, chat([
            user("time?"),
            {"role": "assistant", "content": content, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "noon"},
        ], tools=TOOLS))
        a = blocks(up["messages"][1]["content"])
        assert a == [{"type": "tool_use", "id": "call_9", "name": "get_time", "input": {}}]
        u = blocks(up["messages"][2]["content"])
        assert u[0]["type"] == "tool_result" and u[0]["tool_use_id"] == "call_9"
        assert text_of(u[0]["content"]) == "noon"


def test_images_become_base64_and_url_sources(gw):
    up = sent(gw, chat([{"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG_B64}"}},
    ]}]))
    b = blocks(up["messages"][0]["content"])
    assert b[0] == {"type": "text", "text": "Compare these."}
    assert b[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    assert b[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert b[3] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_B64}}
    assert len(b) == 4


def test_client_provider_headers_do_not_override_the_gateways(gw):
    r = gw.chat(chat([user("hi")]), headers={"anthropic-version": "1999-01-01", "x-api-key": "sk-ant-client",
                                             "anthropic-beta": "client-beta"})
    assert r.status == 200, r.body
    req = gw.anthropic.last
    assert req.header_values("anthropic-version") == ["2023-06-01"]
    assert req.header_values("x-api-key") == [gw.anthropic_key]


# --- response translation ------------------------------------------------------------------


def answer(gw, message: dict, body: dict = None):
    gw.anthropic.enqueue(Reply(json=message))
    r = gw.chat(body or chat([user("q")]))
    assert r.status == 200, r.body
    assert (r.header("content-type") or "").startswith("application/json")
    cl = r.header("content-length")
    if cl is not None:
        assert int(cl) == len(r.body), "stale content-length on a translated answer"
    return r


def test_plain_answer(gw):
    before = int(time.time())
    r = answer(gw, anthropic_message([{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
                                     id="msg_abc123"))
    c = r.json
    assert c["object"] == "chat.completion"
    assert isinstance(c["id"], str) and c["id"]
    assert isinstance(c["created"], int) and before - 5 <= c["created"] <= time.time() + 5
    assert c["model"] == "claude-sonnet-4-5"
    assert len(c["choices"]) == 1
    ch = c["choices"][0]
    assert ch["index"] == 0
    assert ch["finish_reason"] == "stop"
    assert ch["message"]["role"] == "assistant"
    assert ch["message"]["content"] == "Hello world"
    assert not ch["message"].get("tool_calls")
    assert not ch["message"].get("reasoning_content")


def test_usage_includes_cache_reads_and_writes(gw):
    r = answer(gw, anthropic_message("ok", usage={
        "input_tokens": 10, "output_tokens": 7,
        "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5}))
    u = r.json["usage"]
    assert u["prompt_tokens"] == 35
    assert u["completion_tokens"] == 7
    assert u["total_tokens"] == 42
    assert u["prompt_tokens_details"]["cached_tokens"] == 20
    assert r.header("x-llm-prompt-tokens") == "35"
    assert r.header("x-llm-completion-tokens") == "7"
    assert r.header("x-llm-cached-tokens") == "20"
    assert r.header("x-llm-provider") == "anthropic"
    assert r.header("x-llm-model") == "claude-sonnet-4-5"
    assert r.header("x-llm-deployment") == "claude-test"
    assert r.header("x-llm-attempts") == "1"


def test_usage_without_cache_fields(gw):
    r = answer(gw, anthropic_message("ok", usage={"input_tokens": 4, "output_tokens": 3}))
    u = r.json["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (4, 3, 7)
    assert (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0) == 0
    assert r.header("x-llm-cached-tokens") == "0"


@pytest.mark.parametrize("stop_reason,finish_reason", [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
])
def test_finish_reasons(gw, stop_reason, finish_reason):
    content = [{"type": "text", "text": "x"}]
    if stop_reason == "tool_use":
        content.append({"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}})
    r = answer(gw, anthropic_message(content, stop_reason=stop_reason,
                                     stop_sequence="STOP" if stop_reason == "stop_sequence" else None))
    assert r.json["choices"][0]["finish_reason"] == finish_reason


def test_tool_use_becomes_tool_calls_with_json_string_arguments(gw):
    r = answer(gw, anthropic_message([
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2]}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ], stop_reason="tool_use"), chat([user("weather?")], tools=TOOLS))
    msg = r.json["choices"][0]["message"]
    assert r.json["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["content"] == "Let me check."
    calls = msg["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_01", "toolu_02"]
    assert all(c["type"] == "function" for c in calls)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": [1, 2]}
    assert json.loads(calls[1]["function"]["arguments"]) == {}


def test_tool_use_only_answer(gw):
    r = answer(gw, anthropic_message([
        {"type": "tool_use", "id": "toolu_03", "name": "get_time", "input": {"tz": "UTC"}},
    ], stop_reason="tool_use"), chat([user("time?")], tools=TOOLS))
    msg = r.json["choices"][0]["message"]
    assert msg["content"] in (None, "")
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"tz": "UTC"}


def test_thinking_is_kept_out_of_content(gw):
    r = answer(gw, anthropic_message([
        {"type": "thinking", "thinking": "THOUGHT: the user wants a number.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "REDACTED-BLOB"},
        {"type": "text", "text": "42"},
    ]))
    msg = r.json["choices"][0]["message"]
    assert msg["content"] == "42"
    assert msg["reasoning_content"] == "THOUGHT: the user wants a number."
    assert "REDACTED-BLOB" not in json.dumps(msg.get("content"))
