"""Provider failures that carry no usable answer, on every provider, streamed or not:

* an error with an empty body (500, 429, 401, and a 302 that becomes a 502) reaches the
  client as an OpenAI-shaped JSON error with the status mapped as for any other error;
* a streamed request answered `200 text/html` (a proxy's error page) is a failed attempt
  before any byte is sent, so it falls back exactly as the same non-streamed request does.
"""

from __future__ import annotations

import pytest

from fakes import GeminiFake, Reply
from harness import assert_openai_error, deployment, gateway_for_test, openai_deployment, running_gateway

GEMINI_KEY_ENV = "FAKE_GEMINI_KEY"
GEMINI_KEY = "AIzaFakeGeminiProviderKey0123456789abcde"

# upstream status -> (client status, error.type)
EMPTY_ERRORS = {
    500: (500, "api_error"),
    429: (429, "rate_limit_error"),
    401: (401, "authentication_error"),
    302: (502, "api_error"),
}

HTML = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"


@pytest.fixture(scope="module")
def gemini_fake():
    with GeminiFake(name="gemini", api_key=GEMINI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def pf_session(tmp_path_factory, openai_fake, anthropic_fake, gemini_fake):
    o = openai_fake.url
    models = [
        deployment("gemini-test", "gemini/gemini-2.5-flash", gemini_fake.url, GEMINI_KEY_ENV),
        openai_deployment("html-first", "gpt-html-first", o),
        openai_deployment("html-second", "gpt-html-second", o),
    ]
    with running_gateway(tmp_path_factory.mktemp("provider-failures"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={GEMINI_KEY_ENV: GEMINI_KEY},
                         router_settings={"fallbacks": [{"html-first": ["html-second"]}]}) as g:
        yield g


@pytest.fixture
def pf(pf_session, gemini_fake, request):
    yield from gateway_for_test(pf_session, request, gemini_fake)


def ask(model: str, stream: bool = False) -> dict:
    b = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
    return b


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("upstream", sorted(EMPTY_ERRORS))
@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "gemini-test"])
def test_an_error_with_an_empty_body_is_openai_shaped(pf, gemini_fake, model, upstream, stream):
    fake = {"gpt-test": pf.openai, "claude-test": pf.anthropic, "gemini-test": gemini_fake}[model]
    headers = {"Location": "http://127.0.0.1:9/elsewhere"} if upstream == 302 else {}
    fake.enqueue(Reply(status=upstream, body=b"", headers=headers))
    r = pf.chat(ask(model, stream))
    status, kind = EMPTY_ERRORS[upstream]
    err = assert_openai_error(r, status, type=kind)
    assert str(status) in err["message"], err
    assert len(fake.requests) == 1
    # The gateway's own headers survive the replacement.
    assert r.header("x-llm-deployment") and r.header("x-llm-attempts") == "1", r.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_html_200_falls_back_streamed_or_not(pf, stream):
    pf.openai.enqueue(Reply(status=200, body=HTML, content_type="text/html; charset=utf-8"))
    body = ask("html-first", stream)
    r = pf.stream(body) if stream else pf.chat(body)
    assert r.status == 200, r.raw[:300] if stream else r.body
    assert r.header("x-llm-attempts") == "2", r.headers
    assert r.header("x-llm-model") == "gpt-html-second"
    assert [q.json["model"] for q in pf.openai.requests] == ["gpt-html-first", "gpt-html-second"]
    if stream:
        assert r.header("content-type").startswith("text/event-stream")
        assert r.content() == "echo: hi" and r.done_count == 1, r.raw[:300]
        assert b"<html" not in r.raw
    else:
        assert r.json["choices"][0]["message"]["content"] == "echo: hi"


def test_an_html_200_with_nothing_to_fall_back_on_is_a_502_before_any_byte(pf):
    pf.openai.enqueue(Reply(status=200, body=HTML, content_type="text/html"))
    r = pf.chat(ask("gpt-test", stream=True))
    err = assert_openai_error(r, 502, type="api_error")
    assert "text/html" in err["message"] and err["code"] == "bad_upstream_response", err
