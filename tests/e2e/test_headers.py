"""Headers do not cross the gateway unless they are meant to, on every provider, streamed
or not:

* a provider receives the client's `accept`, `user-agent`, `x-request-id` and trace
  context, and the gateway's own headers; never the client's cookies, proxy credentials,
  keys or any other header;
* a client receives what describes the answer; never the provider's cookies, organisation,
  or a header quoting the provider key; the provider's rate limits and request id only
  renamed (`x-llm-provider-ratelimit-*`, `x-llm-provider-request-id`), apart from the
  gateway's own `x-ratelimit-*`, which describe the client's key.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from fakes import Event, GeminiFake, Reply, anthropic_message, anthropic_stream, gemini_response, openai_completion, openai_stream
from harness import ANTHROPIC_KEY, OPENAI_KEY, deployment, gateway_for_test, running_gateway

GEMINI_KEY_ENV = "FAKE_GEMINI_KEY"
GEMINI_KEY = "AIzaFakeGeminiProviderKey0123456789abcde"
VIRTUAL = "sk-header-test-virtual-key-0123456789"
KEYS = {"gpt-test": OPENAI_KEY, "claude-test": ANTHROPIC_KEY, "gemini-test": GEMINI_KEY}

CLIENT_HEADERS = {
    "Cookie": "session=client-session-cookie",
    "Proxy-Authorization": "Basic Y2xpZW50OnByb3h5",
    "X-Internal-Tenant": "tenant-42",
    "OpenAI-Organization": "org-client",
    "Anthropic-Beta": "client-chosen-beta",
    "X-Forwarded-Host": "internal.example",
    "User-Agent": "OpenAI/Python 1.99",
    "Accept": "application/json",
    "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "X-Request-Id": "client-request-1",
}
LEAKED_TO_PROVIDER = ["client-session-cookie", "Y2xpZW50OnByb3h5", "tenant-42", "org-client",
                      "client-chosen-beta", "internal.example", "x-internal-tenant", "proxy-authorization", "cookie"]
KEPT_FOR_PROVIDER = {"user-agent": "OpenAI/Python 1.99", "accept": "application/json",
                     "traceparent": CLIENT_HEADERS["Traceparent"], "x-request-id": "client-request-1"}


def provider_headers(key: str) -> dict:
    return {
        "Set-Cookie": "__cf_bm=provider-cookie; path=/; HttpOnly",
        "OpenAI-Organization": "org-provider-account",
        "Anthropic-Organization-Id": "provider-org-uuid",
        "X-Ratelimit-Remaining-Requests": "4321",
        "Anthropic-Ratelimit-Tokens-Remaining": "98765",
        "X-Debug-Auth": f"Bearer {key}",
        "Request-Id": f"req_{key}",
        "Server": "provider-frontend",
    }


@pytest.fixture(scope="module")
def gemini_fake():
    with GeminiFake(name="gemini", api_key=GEMINI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def hd_session(tmp_path_factory, openai_fake, anthropic_fake, gemini_fake):
    models = [deployment("gemini-test", "gemini/gemini-2.5-flash", gemini_fake.url, GEMINI_KEY_ENV)]
    # A virtual key with a request limit, so that the gateway sets its own x-ratelimit-*.
    keys = [{"name": "headers", "key_sha256": hashlib.sha256(VIRTUAL.encode()).hexdigest(), "rpm_limit": 1000}]
    with running_gateway(tmp_path_factory.mktemp("headers"), openai_fake, anthropic_fake, extra_models=models,
                         env_extra={GEMINI_KEY_ENV: GEMINI_KEY}, config_extra={"virtual_keys": keys}) as g:
        yield g


@pytest.fixture
def hd(hd_session, gemini_fake, request):
    yield from gateway_for_test(hd_session, request, gemini_fake)


def fake_for(hd, gemini_fake, model):
    return {"gpt-test": hd.openai, "claude-test": hd.anthropic, "gemini-test": gemini_fake}[model]


def answer(model: str, stream: bool, key: str) -> Reply:
    h = provider_headers(key)
    if model == "gpt-test":
        return Reply.sse(openai_stream("hello"), headers=h) if stream else Reply(json=openai_completion("hello"), headers=h)
    if model == "claude-test":
        return Reply.sse(anthropic_stream("hello"), headers=h) if stream else Reply(json=anthropic_message("hello"), headers=h)
    if stream:
        return Reply.sse([Event(gemini_response("hello"))], headers=h)
    return Reply(json=gemini_response("hello"), headers=h)


def call(hd, model, stream):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
        return hd.stream(body, key=VIRTUAL, headers=CLIENT_HEADERS)
    return hd.chat(body, key=VIRTUAL, headers=CLIENT_HEADERS)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "gemini-test"])
def test_only_allow_listed_headers_cross(hd, gemini_fake, model, stream):
    fake = fake_for(hd, gemini_fake, model)
    key = KEYS[model]
    fake.enqueue(answer(model, stream, key))
    r = call(hd, model, stream)
    assert r.status == 200, getattr(r, "body", b"") or r.raw[:300]

    # To the provider: the allow-list and the gateway's own headers, nothing else.
    sent = fake.last
    seen = json.dumps(sent.header_list).lower()
    assert [s for s in LEAKED_TO_PROVIDER if s.lower() in seen] == [], sent.header_list
    for name, value in KEPT_FOR_PROVIDER.items():
        assert sent.headers.get(name) == value, (name, sent.header_list)
    assert VIRTUAL not in seen

    # To the client: nothing of the provider account, the key nowhere.
    got = {k: v for k, v in r.header_list}
    text = json.dumps(r.header_list)
    assert key not in text, r.header_list
    for gone in ("set-cookie", "openai-organization", "anthropic-organization-id", "x-debug-auth",
                 "anthropic-ratelimit-tokens-remaining", "request-id"):
        assert gone not in got, (gone, r.header_list)
    assert "provider-frontend" not in text and "org-provider-account" not in text
    assert got.get("x-llm-provider-ratelimit-remaining-requests") == "4321", r.header_list
    assert got.get("x-llm-provider-ratelimit-tokens-remaining") == "98765", r.header_list
    assert got.get("x-llm-provider-request-id", "").startswith("req_") and "***" in got["x-llm-provider-request-id"]
    # The gateway's own rate limit headers describe the virtual key.
    assert got.get("x-ratelimit-limit-requests") == "1000", r.header_list
    assert got.get("x-ratelimit-remaining-requests") != "4321"
    assert got.get("x-llm-provider") and got.get("x-llm-attempts") == "1"
