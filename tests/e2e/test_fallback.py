"""Fallback chains (`router_settings.fallbacks`): a failed attempt is retried on the next
alias's deployment, translated for its provider with only that provider's credentials,
and the response headers say which deployment answered after how many attempts."""

from __future__ import annotations

import pytest

import harness
from fakes import Reply, anthropic_error, anthropic_event, openai_error
from harness import ANTHROPIC_KEY, OPENAI_KEY, assert_openai_error, gateway_for_test, running_gateway
from harness import anthropic_deployment as _anthropic
from harness import openai_deployment as _openai


@pytest.fixture(scope="module")
def fb_session(tmp_path_factory, openai_fake, anthropic_fake):
    o, a = openai_fake.url, anthropic_fake.url
    dead = f"http://127.0.0.1:{harness.free_port()}"  # nothing listens there
    models = [
        _openai("oo-first", "gpt-first", o), _openai("oo-second", "gpt-second", o),
        _openai("oa-first", "gpt-oa", o), _anthropic("oa-second", "claude-oa", a),
        _anthropic("ao-first", "claude-ao", a), _openai("ao-second", "gpt-ao", o),
        _openai("dead-first", "gpt-dead", dead), _openai("dead-second", "gpt-alive", o),
        _openai("dead-only", "gpt-dead", dead),
    ]
    fallbacks = [{"oo-first": ["oo-second"]}, {"oa-first": ["oa-second"]},
                 {"ao-first": ["ao-second"]}, {"dead-first": ["dead-second"]}]
    with running_gateway(tmp_path_factory.mktemp("fallback"), openai_fake, anthropic_fake,
                         extra_models=models, router_settings={"fallbacks": fallbacks}) as g:
        yield g


@pytest.fixture
def fb(fb_session, request):
    yield from gateway_for_test(fb_session, request)


def ask(model: str, text: str = "hello", **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def test_primary_answers_in_one_attempt(fb):
    r = fb.chat(ask("oo-first"))
    assert r.status == 200, r.body
    assert r.header("x-llm-attempts") == "1"
    assert r.header("x-llm-deployment") == "oo-first"
    assert r.header("x-llm-model") == "gpt-first"
    assert [q.json["model"] for q in fb.openai.requests] == ["gpt-first"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_failure_falls_back(fb, status):
    fb.openai.enqueue(openai_error(status, f"primary failed {status}", "server_error"))
    r = fb.chat(ask("oo-first", "fall back please"))
    assert r.status == 200, r.body
    assert r.json["choices"][0]["message"]["content"] == "echo: fall back please"
    assert r.header("x-llm-attempts") == "2"
    assert r.header("x-llm-deployment") == "oo-second"
    assert r.header("x-llm-model") == "gpt-second"
    assert r.header("x-llm-provider") == "openai"
    reqs = fb.openai.requests
    assert [q.json["model"] for q in reqs] == ["gpt-first", "gpt-second"]
    for q in reqs:
        assert q.json_error is None
        assert q.header_values("authorization") == [f"Bearer {OPENAI_KEY}"]
        assert q.json["messages"] == [{"role": "user", "content": "fall back please"}]


def test_client_error_is_not_retried(fb):
    fb.openai.enqueue(openai_error(400, "your request is wrong"))
    r = fb.chat(ask("oo-first"))
    assert_openai_error(r, 400, "invalid_request_error", message_contains="your request is wrong")
    assert len(fb.openai.requests) == 1


def test_when_every_tier_fails_the_client_gets_the_last_real_error(fb):
    fb.openai.enqueue(openai_error(429, "first is busy", "requests"),
                      openai_error(500, "second broke too", "server_error"))
    r = fb.chat(ask("oo-first"))
    assert_openai_error(r, 500, "api_error", message_contains="second broke too")
    assert len(fb.openai.requests) == 2


def test_connect_failure_falls_back(fb):
    r = fb.chat(ask("dead-first", "anyone there?"))
    assert r.status == 200, r.body
    assert r.header("x-llm-deployment") == "dead-second"
    assert r.header("x-llm-model") == "gpt-alive"
    assert r.json["choices"][0]["message"]["content"] == "echo: anyone there?"


def test_stream_falls_back_before_the_first_byte(fb):
    fb.openai.enqueue(openai_error(429, "busy", "requests"))
    s = fb.stream(ask("oo-first", "stream after fallback", stream=True))
    assert s.status == 200, s.raw[:300]
    assert s.header("x-llm-attempts") == "2"
    assert s.header("x-llm-deployment") == "oo-second"
    assert s.content() == "echo: stream after fallback"
    assert s.done_count == 1


def test_openai_to_anthropic_fallback_carries_only_anthropic_credentials(fb):
    fb.openai.enqueue(openai_error(429, "busy", "requests"))
    r = fb.chat(ask("oa-first", "cross provider", max_tokens=50))
    assert r.status == 200, r.body
    assert r.header("x-llm-provider") == "anthropic"
    assert r.header("x-llm-deployment") == "oa-second"
    assert r.header("x-llm-model") == "claude-oa"
    assert r.header("x-llm-attempts") == "2"
    assert r.json["object"] == "chat.completion"
    assert r.json["choices"][0]["message"]["content"] == "echo: cross provider"
    assert len(fb.openai.requests) == 1 and len(fb.anthropic.requests) == 1
    q = fb.anthropic.last
    assert q.path == "/v1/messages"
    assert q.header_values("x-api-key") == [ANTHROPIC_KEY]
    assert q.header_values("anthropic-version") == ["2023-06-01"]
    assert "authorization" not in q.headers, "the OpenAI key leaked into the Anthropic attempt"
    assert q.json["model"] == "claude-oa"
    assert q.json["max_tokens"] == 50
    assert q.json_error is None


def test_anthropic_to_openai_fallback_carries_only_openai_credentials(fb):
    fb.anthropic.enqueue(anthropic_error(529, "Overloaded", "overloaded_error"))
    r = fb.chat(ask("ao-first", "the other way", max_tokens=50))
    assert r.status == 200, r.body
    assert r.header("x-llm-provider") == "openai"
    assert r.header("x-llm-deployment") == "ao-second"
    assert r.header("x-llm-attempts") == "2"
    assert r.json["choices"][0]["message"]["content"] == "echo: the other way"
    q = fb.openai.last
    assert q.path == "/v1/chat/completions"
    assert q.header_values("authorization") == [f"Bearer {OPENAI_KEY}"]
    assert "x-api-key" not in q.headers and "anthropic-version" not in q.headers, \
        "Anthropic headers leaked into the OpenAI attempt"
    assert q.json == {**ask("ao-first", "the other way", max_tokens=50), "model": "gpt-ao"}


def test_anthropic_overloaded_falls_back_even_when_streaming(fb):
    fb.anthropic.enqueue(Reply.sse([anthropic_event("error", error={"type": "overloaded_error", "message": "Overloaded"})]))
    s = fb.stream(ask("ao-first", "streamed fallback", stream=True))
    assert s.status == 200, s.raw[:300]
    assert s.header("x-llm-provider") == "openai"
    assert s.content() == "echo: streamed fallback"


def test_unreachable_provider_without_fallback_is_an_openai_shaped_error(fb):
    # Envoy's own failure reply (connection refused) must still be something the SDK parses.
    r = fb.chat(ask("dead-only"))
    err = assert_openai_error(r, r.status)
    assert r.status in (502, 503, 504), r.status
    assert err["type"] in ("api_error", "overloaded_error", "timeout_error"), err
    assert fb.provider_requests() == []


def test_concurrent_fallbacks_each_translate_their_own_request(fb):
    """Attempts translate the request their downstream instance parsed (handed over inside
    the worker, not parsed again): with many requests in flight on both workers, every
    fallback to Anthropic must carry its own conversation and answer its own client."""
    from concurrent.futures import ThreadPoolExecutor

    fb.openai.set_default(lambda _req: openai_error(429, "busy", "requests"))

    def one(i: int):
        text = f"request {i} " + "y" * (i * 17)
        body = ask("oa-first", text, max_tokens=100 + i,
                   **({"stream": True} if i % 3 == 0 else {}))
        return i, text, (fb.stream(body) if i % 3 == 0 else fb.chat(body))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(30)))
    for i, text, r in results:
        assert r.status == 200, (i, getattr(r, "body", b"")[:300])
        answer = r.content() if i % 3 == 0 else r.json["choices"][0]["message"]["content"]
        assert answer == f"echo: {text}", i
        assert r.header("x-llm-attempts") == "2", i
        assert r.header("x-llm-provider") == "anthropic", i
    def text_of(content):
        return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)

    sent = {text_of(q.json["messages"][0]["content"]): q.json for q in fb.anthropic.requests}
    assert len(sent) == 30 == len(fb.anthropic.requests)
    for i, text, _ in results:
        assert sent[text]["max_tokens"] == 100 + i, i
        assert sent[text]["model"] == "claude-oa", i
        assert sent[text].get("stream", False) == (i % 3 == 0), i
