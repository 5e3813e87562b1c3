"""Every error on the Anthropic endpoints (`/v1/messages`, `/v1/messages/count_tokens`) in
Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with the status the
`anthropic` SDK turns into the matching exception (own Envoy):

* the replies Envoy makes itself (a provider that refuses connections, every fallback
  refusing, a host that does not resolve, a provider slower than the route's timeout), by
  the rendered `local_reply_config`, which tells the API from the filter state the
  downstream instance writes: the request's `:path` is the provider's by then;
* the gateway's own refusals (a model the key may not use, a body over the limit, the
  key's requests per minute, malformed JSON, an unknown path under `/v1/messages`).

The same failures on `/v1/chat/completions` stay OpenAI-shaped.
"""
from __future__ import annotations

import json

import pytest

import harness
from fakes import Reply, anthropic_message, openai_completion
from harness import Envoy, assert_openai_error, free_port, gateway_config, key_sha256, provider_env, request, write_yaml

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

LIMITED = "sk-gw-test-limited-0123456789abcdef"
NARROW = "sk-gw-test-narrow-0123456789abcdef"
UNRESOLVABLE = "http://llm-gateway-e2e.invalid"
# The route timeout of the slow models: their fakes answer later than this.
SLOW_TIMEOUT = 1
MAX_BODY = 64 * 1024
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def rgw(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("messages-replies")
    port, admin, closed = free_port(), free_port(), free_port()
    refused = f"http://127.0.0.1:{closed}"
    openai_key = f"os.environ/{harness.OPENAI_KEY_ENV}"
    anthropic_key = f"os.environ/{harness.ANTHROPIC_KEY_ENV}"
    extra = [
        {"model_name": "claude-down", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": refused, "api_key": anthropic_key}},
        {"model_name": "gpt-down", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{refused}/v1", "api_key": openai_key}},
        {"model_name": "nowhere", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": UNRESOLVABLE, "api_key": anthropic_key}},
        {"model_name": "claude-slow", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": anthropic_fake.url, "api_key": anthropic_key,
            "timeout": SLOW_TIMEOUT}},
        {"model_name": "gpt-slow", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{openai_fake.url}/v1", "api_key": openai_key,
            "timeout": SLOW_TIMEOUT}},
    ]
    cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin, extra_models=extra,
                         # Both refuse connections: every attempt of the chain fails.
                         router_settings={"fallbacks": [{"claude-down": ["gpt-down"]}]},
                         general_extra={"max_request_body_bytes": MAX_BODY})
    cfg["virtual_keys"] = [
        {"name": "limited", "key_sha256": key_sha256(LIMITED), "rpm_limit": 1},
        {"name": "narrow", "key_sha256": key_sha256(NARROW), "models": ["gpt-test"]},
    ]
    path = write_yaml(tmp / "gateway.yaml", cfg)
    env = provider_env()
    rendered = harness.render(path, tmp / "envoy.rendered.yaml", env=env)
    bootstrap = harness.exclusive_listeners(rendered, tmp / "envoy.yaml")
    envoy = Envoy(bootstrap, tmp, admin, env=env).start()
    try:
        envoy.wait_ready()
        yield {"port": port, "envoy": envoy, "url": f"http://127.0.0.1:{port}"}
    finally:
        envoy.stop()


@pytest.fixture
def r(rgw, openai_fake, anthropic_fake, request):
    openai_fake.reset()
    anthropic_fake.reset()
    request.node._envoys = [rgw["envoy"]]
    yield rgw
    openai_fake.reset()
    anthropic_fake.reset()


def claude(r, key: str = harness.MASTER_KEY):
    return anthropic.Anthropic(base_url=r["url"], api_key=key, max_retries=0, timeout=harness.HTTP_TIMEOUT)


def gpt(r):
    return openai.OpenAI(base_url=f"{r['url']}/v1", api_key=harness.MASTER_KEY, max_retries=0,
                         timeout=harness.HTTP_TIMEOUT)


def anthropic_error(e, status: int, kind: str, says: str = "") -> str:
    """Checks the SDK's exception carries Anthropic's error shape; returns the message."""
    assert e.status_code == status, (e.status_code, e.body)
    assert e.response.headers["content-type"].startswith("application/json")
    body = e.body
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    assert says in body["error"]["message"], body
    return body["error"]["message"]


# ---------------------------------------------------------------------------------------------
# Envoy's own replies


@pytest.mark.parametrize("model", ["claude-down", "gpt-down"])
def test_refused_connection_is_an_anthropic_503(r, model):
    """One deployment (gpt-down, bridged) or a chain whose every attempt is refused
    (claude-down, then gpt-down): Envoy's 503, in Anthropic's shape."""
    with pytest.raises(anthropic.InternalServerError) as e:
        claude(r).messages.create(model=model, max_tokens=10, messages=ASK)
    anthropic_error(e.value, 503, "overloaded_error", "connection failure")
    with pytest.raises(anthropic.InternalServerError) as e:
        with claude(r).messages.stream(model=model, max_tokens=10, messages=ASK) as s:
            s.get_final_message()
    anthropic_error(e.value, 503, "overloaded_error", "connection failure")


def test_no_healthy_upstream(r):
    """A provider host that does not resolve, for a message and for a token count
    (forwarded: every deployment of `nowhere` is Anthropic)."""
    with pytest.raises(anthropic.InternalServerError) as e:
        claude(r).messages.create(model="nowhere", max_tokens=10, messages=ASK)
    anthropic_error(e.value, 503, "overloaded_error", "no healthy upstream")
    with pytest.raises(anthropic.InternalServerError) as e:
        claude(r).messages.count_tokens(model="nowhere", messages=ASK)
    anthropic_error(e.value, 503, "overloaded_error", "no healthy upstream")


@pytest.mark.parametrize("model", ["claude-slow", "gpt-slow"])
def test_upstream_timeout_is_an_anthropic_504(r, openai_fake, anthropic_fake, model):
    late = SLOW_TIMEOUT + 2
    anthropic_fake.enqueue(Reply(json=anthropic_message(), delay=late))
    openai_fake.enqueue(Reply(json=openai_completion(), delay=late))
    with pytest.raises(anthropic.InternalServerError) as e:
        claude(r).messages.create(model=model, max_tokens=10, messages=ASK)
    anthropic_error(e.value, 504, "timeout_error", "upstream request timeout")


def test_the_same_failures_on_chat_stay_openai_shaped(r, openai_fake, anthropic_fake):
    """Chat requests to the same deployments (one of them rewritten to `/v1/messages` on
    its way to Anthropic) get OpenAI's shape."""
    for model, status, says in (("claude-down", 503, "connection failure"), ("gpt-down", 503, "connection failure"),
                                ("nowhere", 503, "no healthy upstream"),
                                ("claude-slow", 504, "upstream request timeout")):
        anthropic_fake.enqueue(Reply(json=anthropic_message(), delay=SLOW_TIMEOUT + 2))
        with pytest.raises(openai.InternalServerError) as e:
            gpt(r).chat.completions.create(model=model, messages=ASK)
        assert e.value.status_code == status, (model, e.value.body)
        raw = json.loads(e.value.response.text)
        assert set(raw) == {"error"}, raw
        err = raw["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert err["type"] == "api_error" and says in err["message"] and err["code"], err
        anthropic_fake.reset()


# ---------------------------------------------------------------------------------------------
# The gateway's own refusals


def test_model_the_key_may_not_use_is_a_403(r):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        claude(r, NARROW).messages.create(model="claude-test", max_tokens=10, messages=ASK)
    anthropic_error(e.value, 403, "permission_error", "not allowed to use model `claude-test`")


def test_body_over_the_limit_is_a_413(r, anthropic_fake):
    big = [{"role": "user", "content": "x" * (MAX_BODY + 1)}]
    # The SDK's class for a 413 (not exported at the package's top level).
    with pytest.raises(anthropic._exceptions.RequestTooLargeError) as e:
        claude(r).messages.create(model="claude-test", max_tokens=10, messages=big)
    anthropic_error(e.value, 413, "request_too_large", str(MAX_BODY))
    assert not anthropic_fake.requests


def test_requests_per_minute_is_a_429(r):
    c = claude(r, LIMITED)
    assert c.messages.create(model="claude-test", max_tokens=10, messages=ASK).content
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="claude-test", max_tokens=10, messages=ASK)
    anthropic_error(e.value, 429, "rate_limit_error")
    assert int(e.value.response.headers["retry-after"]) >= 1


def test_malformed_json_is_a_400(r):
    resp = request(r["port"], "POST", "/v1/messages", b'{"model": "claude-test", ', key=None,
                   headers={"x-api-key": harness.MASTER_KEY})
    assert resp.status == 400, resp.body
    assert resp.json["type"] == "error" and resp.json["error"]["type"] == "invalid_request_error", resp.json


def test_unknown_path_of_an_anthropic_client_is_a_404(r):
    """An endpoint the gateway does not serve, asked by Anthropic's SDK (it sends
    `anthropic-version`) or under `/v1/messages`: a 404 in its shape. Others get OpenAI's."""
    with pytest.raises(anthropic.NotFoundError) as e:
        claude(r).messages.batches.list()
    anthropic_error(e.value, 404, "not_found_error", "/v1/messages/batches")
    with pytest.raises(anthropic.NotFoundError) as e:
        claude(r).completions.create(model="claude-test", max_tokens_to_sample=5, prompt="\n\nHuman: hi\n\nAssistant:")
    anthropic_error(e.value, 404, "not_found_error", "/v1/complete")
    assert_openai_error(request(r["port"], "POST", "/v1/complete", {}), 404, "not_found_error")
