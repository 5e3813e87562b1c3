"""Concurrent requests on both workers each get their own answer: no state leaks between
requests that are in flight at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def test_parallel_mixed_requests_get_their_own_answers(gw):
    def one(i: int):
        model = ("gpt-test", "claude-test")[i % 2]
        text = f"parallel request {i} " + "x" * (i * 13)
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        r = gw.chat(body)
        return i, model, text, r

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(24)))
    for i, model, text, r in results:
        assert r.status == 200, (i, r.body[:300])
        assert r.json["choices"][0]["message"]["content"] == f"echo: {text}", i
        assert r.header("x-llm-deployment") == model, i
        assert r.header("x-llm-provider") == ("openai" if model == "gpt-test" else "anthropic"), i
    assert len(gw.openai.requests) == 12 and len(gw.anthropic.requests) == 12
    assert all(rec.json_error is None for rec in gw.provider_requests())


def test_parallel_streams_get_their_own_answers(gw):
    def one(i: int):
        model = ("gpt-test", "claude-test")[i % 2]
        text = f"parallel stream {i}"
        s = gw.stream({"model": model, "stream": True, "messages": [{"role": "user", "content": text}]})
        return i, text, s

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(12)))
    for i, text, s in results:
        assert s.status == 200, (i, s.raw[:300])
        assert s.content() == f"echo: {text}", i
        assert s.done_count == 1, i
