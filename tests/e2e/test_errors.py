"""Provider errors become OpenAI-shaped errors with the status and type OpenAI SDK users
expect, and the provider's message kept; the SDK raises the matching exception class."""

from __future__ import annotations

import openai
import pytest

from fakes import Reply, anthropic_error, openai_error
from harness import assert_openai_error

# upstream status -> (client status, error.type, SDK exception)
MAPPING = {
    400: (400, "invalid_request_error", openai.BadRequestError),
    401: (401, "authentication_error", openai.AuthenticationError),
    403: (403, "permission_error", openai.PermissionDeniedError),
    404: (404, "not_found_error", openai.NotFoundError),
    413: (413, "request_too_large", openai.APIStatusError),
    429: (429, "rate_limit_error", openai.RateLimitError),
    500: (500, "api_error", openai.InternalServerError),
}

ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
}

# What OpenAI itself sends for these statuses (its `type` is not always the SDK's idea).
OPENAI_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
    404: "invalid_request_error", 413: "invalid_request_error", 429: "requests", 500: "server_error",
}


def body(model: str, stream: bool = False) -> dict:
    b = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
    return b


@pytest.mark.parametrize("status", sorted(MAPPING))
def test_anthropic_errors(gw, status):
    message = f"anthropic says no ({status}) #a1"
    gw.anthropic.enqueue(anthropic_error(status, message, ANTHROPIC_TYPES[status]))
    r = gw.chat(body("claude-test"))
    want_status, want_type, _ = MAPPING[status]
    assert_openai_error(r, want_status, want_type, message_contains=message)
    assert len(gw.anthropic.requests) == 1


def test_anthropic_overloaded_529_becomes_503(gw):
    gw.anthropic.enqueue(anthropic_error(529, "Overloaded right now #a529", "overloaded_error"))
    r = gw.chat(body("claude-test"))
    assert_openai_error(r, 503, "overloaded_error", message_contains="Overloaded right now #a529")


@pytest.mark.parametrize("status", sorted(MAPPING))
def test_openai_compatible_errors(gw, status):
    message = f"openai says no ({status}) #o1"
    gw.openai.enqueue(openai_error(status, message, OPENAI_TYPES[status], code="some_code"))
    r = gw.chat(body("gpt-test"))
    want_status, want_type, _ = MAPPING[status]
    err = assert_openai_error(r, want_status, want_type, message_contains=message)
    assert err["code"] == "some_code"


def test_openai_compatible_503_is_overloaded(gw):
    gw.openai.enqueue(openai_error(503, "engine overloaded #o503", "server_error"))
    r = gw.chat(body("gpt-test"))
    assert_openai_error(r, 503, "overloaded_error", message_contains="engine overloaded #o503")


@pytest.mark.parametrize("model,fake", [("gpt-test", "openai"), ("claude-test", "anthropic")])
def test_non_json_provider_error_is_wrapped(gw, model, fake):
    getattr(gw, fake).enqueue(Reply(status=502, body=b"<html><body>bad gateway from upstream</body></html>",
                                    content_type="text/html"))
    r = gw.chat(body(model))
    err = assert_openai_error(r, 502)
    assert "bad gateway from upstream" in err["message"]


@pytest.mark.parametrize("model,fake", [("gpt-test", "openai"), ("claude-test", "anthropic")])
def test_provider_rejecting_the_gateways_key_keeps_the_message(gw, model, fake):
    # A real provider answers this way when the configured key is wrong.
    getattr(gw, fake).api_key = "sk-some-other-key"
    try:
        r = gw.chat(body(model))
    finally:
        getattr(gw, fake).api_key = gw.openai_key if fake == "openai" else gw.anthropic_key
    err = assert_openai_error(r, 401, "authentication_error")
    assert "key" in err["message"].lower()


@pytest.mark.parametrize("model,fake", [("gpt-test", "openai"), ("claude-test", "anthropic")])
def test_error_on_a_streamed_request_is_a_json_error(gw, model, fake):
    if fake == "anthropic":
        gw.anthropic.enqueue(anthropic_error(429, "slow down streaming #s429", "rate_limit_error"))
    else:
        gw.openai.enqueue(openai_error(429, "slow down streaming #s429", "requests"))
    r = gw.chat(body(model, stream=True))
    assert_openai_error(r, 429, "rate_limit_error", message_contains="slow down streaming #s429")


# --- through the SDK -------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(MAPPING))
@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_sdk_raises_the_matching_exception(gw, model, status):
    message = f"sdk visible message {status}"
    if model == "claude-test":
        gw.anthropic.enqueue(anthropic_error(status, message, ANTHROPIC_TYPES[status]))
    else:
        gw.openai.enqueue(openai_error(status, message, OPENAI_TYPES[status]))
    want_status, want_type, exc = MAPPING[status]
    with pytest.raises(exc) as info:
        gw.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    e = info.value
    assert e.status_code == want_status
    assert message in e.message
    assert isinstance(e.body, dict) and e.body.get("type") == want_type


def test_sdk_overloaded_is_internal_server_error(gw):
    gw.anthropic.enqueue(anthropic_error(529, "Overloaded", "overloaded_error"))
    with pytest.raises(openai.InternalServerError) as info:
        gw.client().chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503
    assert info.value.body.get("type") == "overloaded_error"


def test_sdk_streamed_request_rate_limited(gw):
    gw.anthropic.enqueue(anthropic_error(429, "stream rate limited", "rate_limit_error"))
    with pytest.raises(openai.RateLimitError) as info:
        gw.client().chat.completions.create(model="claude-test", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    assert "stream rate limited" in info.value.message
