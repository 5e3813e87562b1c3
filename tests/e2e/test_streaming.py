"""Streaming: Anthropic SSE becomes OpenAI chunks incrementally; OpenAI-compatible streams
pass through incrementally; stream errors reach the client the way the SDK expects."""

from __future__ import annotations

import json

from fakes import Reply, anthropic_event, anthropic_stream, openai_stream
from harness import assert_openai_error

CLAUDE = {"model": "claude-test", "messages": [{"role": "user", "content": "stream it"}], "stream": True}
GPT = {"model": "gpt-test", "messages": [{"role": "user", "content": "stream it"}], "stream": True}


def check_chunks(s, model: str = "claude-sonnet-4-5") -> None:
    """Invariants of every OpenAI chat completion stream."""
    assert s.status == 200, s.raw[:500]
    assert (s.header("content-type") or "").startswith("text/event-stream")
    assert s.header("content-length") is None
    assert s.done_count == 1, f"[DONE] {s.done_count} times"
    assert s.events[-1].data == "[DONE]"
    chunks = s.chunks
    assert chunks, s.raw
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and all(isinstance(i, str) and i for i in ids), ids
    for c in chunks:
        assert "error" not in c, c
        assert c["object"] == "chat.completion.chunk", c
        assert isinstance(c["created"], int), c
        assert c["model"] == model, c
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    assert len(s.finish_reasons()) == 1, f"finish_reason {s.finish_reasons()}"
    # Nothing but the usage chunk follows the finish.
    last_finish = max(i for i, c in enumerate(chunks)
                      if any(ch.get("finish_reason") for ch in c["choices"]))
    for c in chunks[last_finish + 1:]:
        assert c["choices"] == [] and c.get("usage"), c


def tool_calls_of(s) -> dict:
    """Reassembles streamed tool calls by index, as the SDK does."""
    calls: dict = {}
    for c in s.chunks:
        for ch in c["choices"]:
            for tc in ch["delta"].get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                if tc.get("id"):
                    assert slot["id"] in (None, tc["id"]), "tool call id changed mid-stream"
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["name"] += fn["name"]
                slot["arguments"] += fn.get("arguments") or ""
    return calls


def reasoning_of(s) -> str:
    return "".join(ch["delta"].get("reasoning_content") or "" for c in s.chunks for ch in c["choices"])


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_text_stream(gw):
    gw.anthropic.enqueue(Reply.sse(anthropic_stream(pieces=["Hel", "lo, ", "wor", "ld!"])))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.content() == "Hello, world!"
    assert s.finish_reasons() == ["stop"]
    assert not any(c.get("usage") for c in s.chunks), "usage chunk the client did not ask for"
    up = gw.anthropic.last.json
    assert up["stream"] is True
    assert "stream_options" not in up


def test_anthropic_stream_headers(gw):
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.header("x-llm-provider") == "anthropic"
    assert s.header("x-llm-model") == "claude-sonnet-4-5"
    assert s.header("x-llm-deployment") == "claude-test"
    assert s.header("x-llm-attempts") == "1"


def test_anthropic_stream_usage_chunk_only_when_asked(gw):
    events = anthropic_stream(pieces=["ok"], input_tokens=10, cache_read=20, cache_write=5, output_tokens=7)
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream({**CLAUDE, "stream_options": {"include_usage": True}})
    check_chunks(s)
    usage_chunks = [c for c in s.chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    u = usage_chunks[0]
    assert u is s.chunks[-1] or u == s.chunks[-1]
    assert u["choices"] == []
    assert u["usage"]["prompt_tokens"] == 35
    assert u["usage"]["completion_tokens"] == 7
    assert u["usage"]["total_tokens"] == 42
    assert u["usage"]["prompt_tokens_details"]["cached_tokens"] == 20

    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream({**CLAUDE, "stream_options": {"include_usage": False}})
    check_chunks(s)
    assert not any(c.get("usage") for c in s.chunks)


def test_anthropic_stream_max_tokens_is_length(gw):
    gw.anthropic.enqueue(Reply.sse(anthropic_stream(pieces=["cut"], stop_reason="max_tokens")))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.finish_reasons() == ["length"]


def test_anthropic_events_reach_the_client_as_they_are_sent(gw):
    pieces = [f"P{i} " for i in range(5)]
    events = anthropic_stream(pieces=pieces, ping=False)
    for e in events:
        if e.event in ("content_block_delta", "message_delta"):
            e.delay = 0.3
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.content() == "".join(pieces)
    sent = {ev.data["delta"]["text"]: t for (t, ev) in gw.anthropic.last.events_sent
            if ev.event == "content_block_delta"}
    received = {}
    for e in s.events:
        if e.data == "[DONE]":
            continue
        for ch in json.loads(e.data)["choices"]:
            text = ch["delta"].get("content")
            if text:
                received.setdefault(text, e.received_at)
    assert set(received) == set(pieces), f"pieces were merged or split: {sorted(received)}"
    lags = {p: received[p] - sent[p] for p in pieces}
    assert all(-0.1 < lag < 0.2 for lag in lags.values()), f"client lagged behind the provider: {lags}"
    # Spread over the provider's ~1.5 s, not delivered at the end.
    assert received[pieces[-1]] - received[pieces[0]] > 0.9, received
    assert received[pieces[0]] < sent[pieces[-1]] - 0.9


def test_anthropic_partial_events_are_held_back_until_complete(gw):
    events = anthropic_stream(pieces=["split ", "across ", "writes"])
    for e in events:
        if e.event in ("content_block_delta", "message_start", "message_delta"):
            e.split_at = 25
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.content() == "split across writes"


def test_anthropic_tool_call_stream_reassembles_to_valid_json(gw):
    gw.anthropic.enqueue(Reply.sse(anthropic_stream(stop_reason="tool_use", blocks=[
        ("text", ["Let me ", "check."]),
        ("tool_use", "toolu_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris", "days"', ': [1, 2]}']),
        ("tool_use", "toolu_2", "get_time", [""]),
    ])))
    s = gw.stream({**CLAUDE, "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]})
    check_chunks(s)
    assert s.finish_reasons() == ["tool_calls"]
    assert s.content() == "Let me check."
    calls = tool_calls_of(s)
    assert sorted(calls) == [0, 1], f"tool call indices {sorted(calls)}"
    assert (calls[0]["id"], calls[0]["name"]) == ("toolu_1", "get_weather")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "days": [1, 2]}
    assert (calls[1]["id"], calls[1]["name"]) == ("toolu_2", "get_time")
    assert json.loads(calls[1]["arguments"]) == {}
    for c in s.chunks:
        for ch in c["choices"]:
            for tc in ch["delta"].get("tool_calls") or []:
                if tc.get("id"):
                    assert tc["type"] == "function"


def test_anthropic_thinking_stream_stays_out_of_content(gw):
    gw.anthropic.enqueue(Reply.sse(anthropic_stream(blocks=[
        ("thinking", ["THINK-A ", "THINK-B"]),
        ("text", ["Answer: ", "42"]),
    ])))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.content() == "Answer: 42"
    assert "THINK" not in s.content()
    assert reasoning_of(s) == "THINK-A THINK-B"
    assert "sig-fake" not in s.content()


def test_anthropic_mid_stream_error_is_an_error_event(gw):
    events = anthropic_stream(pieces=["partial ", "answer"])[:5]  # start, block start, ping, 2 deltas
    events.append(anthropic_event("error", error={"type": "overloaded_error", "message": "Overloaded mid-stream"}))
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream(CLAUDE)
    assert s.status == 200
    assert s.content() == "partial answer"
    errors = [json.loads(e.data) for e in s.events if e.data != "[DONE]" and "error" in json.loads(e.data)]
    assert len(errors) == 1, s.raw
    assert "Overloaded mid-stream" in errors[0]["error"]["message"]
    assert s.done_count <= 1
    assert not s.finish_reasons() or s.finish_reasons() == ["stop"]


def test_anthropic_overloaded_first_event_becomes_a_503(gw):
    gw.anthropic.enqueue(Reply.sse([
        anthropic_event("error", error={"type": "overloaded_error", "message": "Overloaded before any token"}),
    ]))
    r = gw.chat(CLAUDE)
    assert_openai_error(r, 503, "overloaded_error", message_contains="Overloaded before any token")
    assert b"data:" not in r.body


def test_anthropic_stream_content_is_unicode_safe(gw):
    # Multi-byte characters split across writes must survive.
    events = anthropic_stream(pieces=["Grüße ", "🌍 ", "日本"])
    for e in events:
        if e.event == "content_block_delta":
            raw = e.encode()
            first_multibyte = next(i for i, b in enumerate(raw) if b >= 0x80)
            e.split_at = first_multibyte + 1  # inside the character
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream(CLAUDE)
    check_chunks(s)
    assert s.content() == "Grüße 🌍 日本"


# --- OpenAI-compatible -----------------------------------------------------------------------


def test_openai_stream_passes_through_incrementally(gw):
    pieces = [f"Q{i} " for i in range(5)]
    events = openai_stream(pieces=pieces, include_usage=True)
    for e in events[1:]:
        e.delay = 0.3 if isinstance(e.data, dict) and e.data["choices"] and \
            e.data["choices"][0]["delta"].get("content") else 0.0
    gw.openai.enqueue(Reply.sse(events))
    s = gw.stream(GPT)
    check_chunks(s, model="gpt-4o-mini")
    sent = {}
    for t, ev in gw.openai.last.events_sent:
        if isinstance(ev.data, dict) and ev.data["choices"]:
            text = ev.data["choices"][0]["delta"].get("content")
            if text:
                sent[text] = t
    received = {}
    for e in s.events:
        if e.data == "[DONE]":
            continue
        for ch in json.loads(e.data)["choices"]:
            if ch["delta"].get("content"):
                received.setdefault(ch["delta"]["content"], e.received_at)
    lags = {p: received[p] - sent[p] for p in pieces}
    assert all(-0.1 < lag < 0.2 for lag in lags.values()), f"client lagged behind the provider: {lags}"
    assert received[pieces[-1]] - received[pieces[0]] > 0.9


def test_openai_stream_finish_and_done_once(gw):
    s = gw.stream({**GPT, "stream_options": {"include_usage": True}})
    check_chunks(s, model="gpt-4o-mini")
    assert s.content() == "echo: stream it"
    assert len([c for c in s.chunks if c.get("usage")]) == 1


def test_openai_stream_error_status_is_json(gw):
    gw.openai.enqueue(Reply(status=500, json={"error": {"message": "boom #os500", "type": "server_error",
                                                         "param": None, "code": None}}))
    r = gw.chat(GPT)
    assert_openai_error(r, 500, "api_error", message_contains="boom #os500")


def test_stream_that_ends_without_a_finish_still_terminates(gw):
    # The provider drops the stream after a delta: the client must not hang, and must
    # learn that the answer is incomplete (an error event, never a normal finish).
    events = anthropic_stream(pieces=["cut ", "off"])[:5]
    gw.anthropic.enqueue(Reply.sse(events))
    s = gw.stream(CLAUDE)
    assert s.status == 200
    assert s.content() == "cut off"
    errors = [json.loads(e.data) for e in s.events if e.data != "[DONE]" and "error" in json.loads(e.data)]
    assert errors, "a truncated stream looked complete"
    assert s.finish_reasons() != ["stop"]
    assert s.done_count <= 1



def test_usage_chunk_is_the_same_whatever_the_providers_write_boundaries(gw):
    # The gateway annotates the usage chunk (cost, who answered); that must not depend on
    # whether the provider's usage chunk and [DONE] arrive in one read or two.
    body = {**GPT, "stream_options": {"include_usage": True}}
    seen = []
    for done_delay in (0.0, 0.3):
        events = openai_stream("same either way", include_usage=True)
        events[-1].delay = done_delay  # [DONE] alone, later
        gw.openai.enqueue(Reply.sse(events))
        s = gw.stream(body)
        check_chunks(s, model="gpt-4o-mini")
        usage_chunks = [c for c in s.chunks if c.get("usage")]
        assert len(usage_chunks) == 1
        u = usage_chunks[0]
        seen.append({k: v for k, v in u.items() if k not in ("created", "id")})
    assert seen[0] == seen[1], f"usage chunk differs with the write boundaries:\n{seen[0]}\n{seen[1]}"
