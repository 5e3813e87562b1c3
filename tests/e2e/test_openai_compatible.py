"""OpenAI-compatible deployments: the body is forwarded with only `model` rewritten and the
answer passes through; streams always ask upstream for usage."""

from __future__ import annotations

import json

import pytest

from fakes import Reply, openai_completion, openai_stream

RICH_REQUEST = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"at\": \"cat\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "user", "content": "Sum up. Ünïcödé ✓"},
    ],
    "temperature": 0.3,
    "top_p": 0.9,
    "max_completion_tokens": 77,
    "stop": ["\n\n"],
    "seed": 42,
    "user": "user-123",
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "logit_bias": {"50256": -100},
    "response_format": {"type": "json_object"},
    "tools": [{"type": "function", "function": {"name": "look", "description": "Look at something",
                                                 "parameters": {"type": "object", "properties": {"at": {"type": "string"}}}}}],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "metadata": {"team": "e2e"},
    "vendor_extension": {"keep": [1, 2, 3]},
}


def test_body_is_forwarded_with_only_the_model_rewritten(gw):
    r = gw.chat(RICH_REQUEST)
    assert r.status == 200, r.body
    req = gw.openai.last
    assert req.path == "/v1/chat/completions"
    assert req.json_error is None, req.json_error
    assert req.json == {**RICH_REQUEST, "model": "gpt-4o-mini"}
    if req.content_length is not None:
        assert req.content_length == len(req.body)


def test_answer_passes_through_unchanged(gw):
    answer = openai_completion(
        "The answer is 42.", model="gpt-4o-mini-2024-07-18", id="chatcmpl-passthrough",
        usage={"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
               "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
        service_tier="default", vendor_field={"x": [1, None, "y"]})
    answer["choices"][0]["logprobs"] = {"content": [{"token": "The", "logprob": -0.1, "bytes": [84, 104, 101], "top_logprobs": []}]}
    gw.openai.enqueue(Reply(json=answer, headers={"x-request-id": "upstream-req-1"}))
    r = gw.chat({"model": "gpt-test", "messages": [{"role": "user", "content": "q"}]})
    assert r.status == 200, r.body
    assert (r.header("content-type") or "").startswith("application/json")
    assert r.json == answer
    cl = r.header("content-length")
    if cl is not None:
        assert int(cl) == len(r.body)


def test_usage_headers_on_a_plain_answer(gw):
    gw.openai.enqueue(Reply(json=openai_completion(
        "ok", usage={"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
                     "prompt_tokens_details": {"cached_tokens": 16}})))
    r = gw.chat({"model": "gpt-test", "messages": [{"role": "user", "content": "q"}]})
    assert r.status == 200, r.body
    assert r.header("x-llm-provider") == "openai"
    assert r.header("x-llm-model") == "gpt-4o-mini"
    assert r.header("x-llm-deployment") == "gpt-test"
    assert r.header("x-llm-attempts") == "1"
    assert r.header("x-llm-prompt-tokens") == "31"
    assert r.header("x-llm-completion-tokens") == "9"
    assert r.header("x-llm-cached-tokens") == "16"


def test_usage_headers_without_cache_details(gw):
    gw.openai.enqueue(Reply(json=openai_completion(
        "ok", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})))
    r = gw.chat({"model": "gpt-test", "messages": [{"role": "user", "content": "q"}]})
    assert r.status == 200, r.body
    assert r.header("x-llm-prompt-tokens") == "5"
    assert r.header("x-llm-completion-tokens") == "2"
    assert r.header("x-llm-cached-tokens") == "0"


# --- streams (raw wire) -------------------------------------------------------------------


STREAM_BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "stream please"}], "stream": True}


@pytest.mark.parametrize("stream_options,client_gets_usage", [
    (None, False),
    ({"include_usage": False}, False),
    ({"include_usage": True}, True),
])
def test_stream_always_asks_upstream_for_usage(gw, stream_options, client_gets_usage):
    body = dict(STREAM_BODY)
    if stream_options is not None:
        body["stream_options"] = stream_options
    usage = {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17,
             "prompt_tokens_details": {"cached_tokens": 0}}
    gw.openai.enqueue(Reply.sse(openai_stream("one two three", include_usage=True, usage=usage)))
    s = gw.stream(body)
    assert s.status == 200, s.raw
    sent = gw.openai.last.json
    assert sent["stream"] is True
    assert sent["stream_options"]["include_usage"] is True
    assert {k: v for k, v in sent.items() if k != "stream_options"} == \
        {**{k: v for k, v in body.items() if k != "stream_options"}, "model": "gpt-4o-mini"}
    usage_chunks = [c for c in s.chunks if c.get("usage")]
    if client_gets_usage:
        assert len(usage_chunks) == 1, s.raw
        # The gateway adds the cost (gpt-4o-mini: 13 x $0.15/M + 4 x $0.60/M = 4 micro-USD).
        assert usage_chunks[0]["usage"] == {**usage, "cost_usd": 0.000004}
        assert usage_chunks[0]["llm_gateway"]["provider"] == "openai"
        assert usage_chunks[0]["choices"] == []
        assert s.chunks[-1] is usage_chunks[0] or s.chunks[-1] == usage_chunks[0]
    else:
        assert usage_chunks == [], s.raw
        assert all(c.get("choices") for c in s.chunks), "an empty usage-only chunk reached the client"
    assert s.content() == "one two three"
    assert s.finish_reasons() == ["stop"]
    assert s.done_count == 1 and s.events[-1].data == "[DONE]"


def test_stream_headers(gw):
    s = gw.stream(STREAM_BODY)
    assert s.status == 200
    assert (s.header("content-type") or "").startswith("text/event-stream")
    assert s.header("content-length") is None
    assert s.header("x-llm-provider") == "openai"
    assert s.header("x-llm-model") == "gpt-4o-mini"
    assert s.header("x-llm-deployment") == "gpt-test"
    assert s.header("x-llm-attempts") == "1"


def test_stream_chunks_pass_through(gw):
    events = openai_stream("alpha beta", include_usage=True)
    gw.openai.enqueue(Reply.sse(events))
    s = gw.stream({**STREAM_BODY, "stream_options": {"include_usage": True}})
    expected = [json.loads(json.dumps(e.data)) for e in events if e.data != "[DONE]"]
    # Byte for byte, except the usage chunk, which also carries the cost and who answered.
    got = [dict(c) for c in s.chunks]
    last = got[-1]
    assert last.pop("llm_gateway")["model"] == "gpt-4o-mini"
    last["usage"] = {k: v for k, v in last["usage"].items() if k != "cost_usd"}
    assert got == expected


def test_stream_events_split_across_writes_are_reassembled(gw):
    events = openai_stream("split events work", include_usage=True)
    for e in events[1:4]:
        e.split_at = 17  # in the middle of the JSON
    gw.openai.enqueue(Reply.sse(events))
    s = gw.stream(STREAM_BODY)
    assert s.status == 200
    assert s.content() == "split events work"
    assert s.done_count == 1
