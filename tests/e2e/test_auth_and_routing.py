"""Authentication, request validation, model listing and routing by alias."""

from __future__ import annotations

import time

import pytest

from harness import ANTHROPIC_KEY, MASTER_KEY, OPENAI_KEY, assert_openai_error

CHAT = "/v1/chat/completions"


def hello(model: str = "gpt-test", text: str = "hi there") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


# --- /v1/models ---------------------------------------------------------------------------


def test_models_lists_every_alias_in_openai_shape(gw):
    r = gw.request("GET", "/v1/models")
    assert r.status == 200, r.body
    assert (r.header("content-type") or "").startswith("application/json")
    body = r.json
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == ["claude-test", "gpt-test"]
    now = time.time()
    for m in body["data"]:
        assert m["object"] == "model"
        assert isinstance(m["created"], int) and 0 <= m["created"] <= now + 60
        assert isinstance(m["owned_by"], str) and m["owned_by"]
    assert gw.provider_requests() == []


@pytest.mark.parametrize("key", [None, "sk-wrong", OPENAI_KEY])
def test_models_requires_the_master_key(gw, key):
    r = gw.request("GET", "/v1/models", key=key)
    assert_openai_error(r, 401, "authentication_error")
    assert "data" not in r.json


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("key,label", [
    (None, "missing"),
    ("sk-wrong", "wrong"),
    (MASTER_KEY + "x", "master key with a suffix"),
    (MASTER_KEY[:-1], "truncated master key"),
    (OPENAI_KEY, "the OpenAI provider key"),
    (ANTHROPIC_KEY, "the Anthropic provider key"),
])
@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_chat_without_the_master_key_is_401(gw, key, label, model):
    r = gw.chat(hello(model), key=key)
    assert_openai_error(r, 401, "authentication_error")
    assert gw.provider_requests() == [], f"{label}: a provider was contacted"


def test_master_key_in_another_scheme_is_refused(gw):
    r = gw.chat(hello(), key=None, headers={"Authorization": f"Basic {MASTER_KEY}"})
    assert_openai_error(r, 401, "authentication_error")
    assert gw.provider_requests() == []


def test_error_body_never_echoes_the_presented_key(gw):
    r = gw.chat(hello(), key=OPENAI_KEY)
    assert r.status == 401
    assert OPENAI_KEY.encode() not in r.body
    assert MASTER_KEY.encode() not in r.body


def test_openai_provider_sees_its_own_key_not_the_clients(gw):
    r = gw.chat(hello("gpt-test"), headers={"x-api-key": MASTER_KEY})
    assert r.status == 200, r.body
    assert len(gw.openai.requests) == 1 and gw.anthropic.requests == []
    req = gw.openai.last
    assert req.method == "POST"
    assert req.path == "/v1/chat/completions"
    assert req.header_values("authorization") == [f"Bearer {OPENAI_KEY}"]
    for name, value in req.header_list:
        assert MASTER_KEY not in value, f"master key leaked upstream in {name}"
    assert "x-api-key" not in req.headers or req.headers["x-api-key"] != MASTER_KEY


def test_anthropic_provider_sees_its_own_key_not_the_clients(gw):
    r = gw.chat(hello("claude-test"))
    assert r.status == 200, r.body
    assert len(gw.anthropic.requests) == 1 and gw.openai.requests == []
    req = gw.anthropic.last
    assert req.method == "POST"
    assert req.path == "/v1/messages"
    assert req.header_values("x-api-key") == [ANTHROPIC_KEY]
    assert req.header_values("anthropic-version") == ["2023-06-01"]
    assert "authorization" not in req.headers, req.headers
    for name, value in req.header_list:
        assert MASTER_KEY not in value, f"master key leaked upstream in {name}"
        assert OPENAI_KEY not in value, f"OpenAI key sent to Anthropic in {name}"


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"{not json",
    b'{"model": "gpt-test", "messages": [',
    b"",
    b"\xff\xfe\x00garbage",
])
def test_invalid_json_is_400_and_never_forwarded(gw, raw):
    r = gw.chat(raw)
    assert_openai_error(r, 400, "invalid_request_error")
    assert gw.provider_requests() == []


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"gpt-test"', b"42", b"null", b"true"])
def test_non_object_body_is_400_and_never_forwarded(gw, raw):
    r = gw.chat(raw)
    assert_openai_error(r, 400, "invalid_request_error")
    assert gw.provider_requests() == []


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "gpt-test"}, "messages"),
    ({"model": "claude-test"}, "messages"),
    ({"model": "gpt-test", "messages": "hi"}, "messages"),
    ({"model": "claude-test", "messages": []}, "messages"),
])
def test_missing_or_bad_model_and_messages_are_400_naming_the_field(gw, body, param):
    r = gw.chat(body)
    assert_openai_error(r, 400, "invalid_request_error", param=param)
    assert gw.provider_requests() == []


def test_unknown_alias_is_404_naming_it(gw):
    r = gw.chat(hello("no-such-model-xyz"))
    err = assert_openai_error(r, 404, message_contains="no-such-model-xyz")
    assert err["type"] != "authentication_error"
    assert gw.provider_requests() == []


def test_upstream_model_name_is_not_an_alias(gw):
    # Clients name aliases; the provider's own model name is not one.
    r = gw.chat(hello("gpt-4o-mini"))
    assert_openai_error(r, 404, message_contains="gpt-4o-mini")
    assert gw.provider_requests() == []


@pytest.mark.parametrize("method,path", [
    ("GET", "/"),
    ("GET", "/v1"),
    ("GET", "/v1/nope"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v2/chat/completions"),
])
def test_other_paths_are_openai_shaped_404(gw, method, path):
    body = hello() if method == "POST" else None
    r = gw.request(method, path, body)
    assert_openai_error(r, 404)
    assert gw.provider_requests() == []


# --- routing -------------------------------------------------------------------------------


def test_each_alias_reaches_its_own_provider(gw):
    for _ in range(2):
        assert gw.chat(hello("gpt-test", "to openai")).status == 200
        assert gw.chat(hello("claude-test", "to anthropic")).status == 200
    assert len(gw.openai.requests) == 2
    assert len(gw.anthropic.requests) == 2
    assert all(r.json["model"] == "gpt-4o-mini" for r in gw.openai.requests)
    assert all(r.json["model"] == "claude-sonnet-4-5" for r in gw.anthropic.requests)


def test_routing_follows_the_body_not_client_headers(gw):
    # A client cannot steer the request with headers of its own.
    r = gw.chat(hello("claude-test"), headers={
        "x-llm-cluster": "llm_deployment_gpt-test", "x-llm-route": "gpt-test",
        "x-llm-deployment": "gpt-test", "x-llm-provider": "openai"})
    assert r.status == 200, r.body
    assert gw.openai.requests == []
    assert len(gw.anthropic.requests) == 1
    assert r.header("x-llm-provider") == "anthropic"


@pytest.mark.parametrize("model,provider,upstream", [
    ("gpt-test", "openai", "gpt-4o-mini"),
    ("claude-test", "anthropic", "claude-sonnet-4-5"),
])
def test_response_headers_name_provider_model_deployment_and_attempts(gw, model, provider, upstream):
    r = gw.chat(hello(model))
    assert r.status == 200, r.body
    assert r.header_list.count(("x-llm-provider", provider)) == 1, r.header_list
    assert r.header("x-llm-model") == upstream
    assert r.header("x-llm-deployment") == model
    assert r.header("x-llm-attempts") == "1"
