"""Vertex AI deployments in a real Envoy, through the official `openai` SDK: Gemini and
Claude on Vertex AI (both publishers, streamed and not) with OAuth2 access tokens the
module fetches from a fake metadata server. Tokens live four seconds, so the module
refreshes them within the tests; a token outage falls back to another deployment.

The module runs its own Envoy with three Vertex AI deployments: `gemini-vertex`
(us-central1), `claude-vertex` (the `global` location) and `vertex-fb`, which falls back to
the OpenAI-compatible `gpt-test`. Every deployment's `api_base` is the fake Vertex AI, and
`general_settings.gcp_token_url` the fake metadata server. A second Envoy takes its tokens
from `envoy/vertex/gcp_token_server.py`, which trades a service-account key file for tokens at a
fake Google token endpoint that verifies the signed JWT.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import openai
import pytest

from harness import CLAUDE_HISTORY, REPO_ROOT, deployment, free_port, running_gateway, start_gateway, stop_process
from vertex_fakes import TOKEN_PATH, MetadataFake, OAuthFake, VertexFake

PROJECT = "test-project"
LIFETIME = 4  # seconds a token lives


def _vertex(alias: str, model: str, url: str, location: str = "us-central1") -> dict:
    return deployment(alias, f"vertex_ai/{model}", url, vertex_project=PROJECT, vertex_location=location)


@pytest.fixture(scope="module")
def metadata():
    with MetadataFake(name="gcp-metadata", lifetime=LIFETIME) as f:
        yield f


@pytest.fixture(scope="module")
def vertex_fake(metadata):
    with VertexFake(name="vertex", metadata=metadata) as f:
        yield f


@pytest.fixture(scope="module")
def vx_session(tmp_path_factory, openai_fake, anthropic_fake, metadata, vertex_fake):
    models = [_vertex("gemini-vertex", "gemini-2.5-flash", vertex_fake.url),
              _vertex("claude-vertex", "claude-sonnet-4-5@20250929", vertex_fake.url, "global"),
              _vertex("vertex-fb", "gemini-2.5-flash", vertex_fake.url)]
    with running_gateway(tmp_path_factory.mktemp("vertex"), openai_fake, anthropic_fake,
                         extra_models=models,
                         general_extra={"gcp_token_url": f"{metadata.url}{TOKEN_PATH}"},
                         router_settings={"fallbacks": [{"vertex-fb": ["gpt-test"]}]}) as g:
        yield g


def wait_until(what: str, check, timeout: float = 10.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def vx(vx_session, vertex_fake, metadata, openai_fake, request):
    metadata.failing = False
    vx_session.reset()
    vertex_fake.reset()
    request.node._envoys = [vx_session.envoy]
    # A token is in shared data once the module fetched one that is still valid.
    wait_until("a token", lambda: any(metadata.valid(t) for t in metadata.issued()))
    time.sleep(0.3)
    yield vx_session
    metadata.failing = False
    vertex_fake.reset()


def bearer(rec) -> str:
    auth = rec.headers.get("authorization", "")
    assert auth.startswith("Bearer "), auth
    return auth[len("Bearer "):]


def test_gemini_on_vertex(vx, vertex_fake, metadata):
    raw = vx.client().chat.completions.with_raw_response.create(
        model="gemini-vertex", messages=[{"role": "user", "content": "Say hi"}], max_tokens=20)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: Say hi"
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 5
    assert raw.headers["x-llm-provider"] == "vertex_ai"
    req = vertex_fake.last
    assert req.path == (f"/v1/projects/{PROJECT}/locations/us-central1"
                        "/publishers/google/models/gemini-2.5-flash:generateContent")
    assert bearer(req) in metadata.issued()
    assert "x-goog-api-key" not in req.headers and "key" not in req.query
    assert req.json["contents"] == [{"role": "user", "parts": [{"text": "Say hi"}]}]
    assert req.json["generationConfig"]["maxOutputTokens"] == 20


def test_gemini_stream_on_vertex(vx, vertex_fake, metadata):
    chunks = list(vx.client().chat.completions.create(
        model="gemini-vertex", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream me"
    assert chunks[-1].usage.total_tokens == 14
    req = vertex_fake.last
    assert req.path.endswith("/publishers/google/models/gemini-2.5-flash:streamGenerateContent")
    assert req.query.get("alt") == "sse"
    assert bearer(req) in metadata.issued()


def test_claude_on_vertex(vx, vertex_fake, metadata):
    raw = vx.client().chat.completions.with_raw_response.create(
        model="claude-vertex", messages=[{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hello Claude"}], max_tokens=30)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: Hello Claude"
    assert reply.usage.prompt_tokens == 12 and reply.usage.completion_tokens == 6
    assert raw.headers["x-llm-provider"] == "vertex_ai_anthropic"
    req = vertex_fake.last
    assert req.path == (f"/v1/projects/{PROJECT}/locations/global"
                        "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    assert bearer(req) in metadata.issued()
    assert req.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in req.json
    assert req.json["system"] == "Be brief." and req.json["max_tokens"] == 30
    assert "x-api-key" not in req.headers and "anthropic-version" not in req.headers


def test_claude_stream_on_vertex(vx, vertex_fake):
    chunks = list(vx.client().chat.completions.create(
        model="claude-vertex", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream me"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.total_tokens == 18
    req = vertex_fake.last
    assert req.path.endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict")
    assert req.json["stream"] is True and "model" not in req.json


def test_messages_to_claude_on_vertex_pass_through(vx, vertex_fake, metadata):
    """Anthropic's Messages API to Claude on Vertex AI, through the official `anthropic` SDK:
    passed through like to Anthropic (thinking signatures, cache marks, metadata and beta
    headers kept), with the version in the body instead of `model`; streamed and not."""
    client = vx.anthropic_client()
    history = CLAUDE_HISTORY
    msg = client.messages.create(
        model="claude-vertex", max_tokens=40, messages=history, metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert msg.content[0].text == "echo: Hello Claude"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 6)
    req = vertex_fake.last
    assert req.path == (f"/v1/projects/{PROJECT}/locations/global"
                        "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    assert bearer(req) in metadata.issued()
    assert req.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in req.json
    assert req.json["messages"] == history, "thinking signatures and cache marks kept"
    assert req.json["metadata"] == {"user_id": "u-1"}
    assert req.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert req.headers.get("anthropic-beta") == "context-1m-2025-08-07"
    assert "x-api-key" not in req.headers and "anthropic-version" not in req.headers

    with client.messages.stream(model="claude-vertex", max_tokens=40,
                                messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me" and final.stop_reason == "end_turn"
    req = vertex_fake.last
    assert req.path.endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict")
    assert req.json["stream"] is True and "model" not in req.json


def test_tokens_are_refreshed_shared_and_never_logged(vx, vertex_fake, metadata):
    client = vx.client()
    client.chat.completions.create(model="gemini-vertex", messages=[{"role": "user", "content": "one"}])
    first = bearer(vertex_fake.last)
    start = metadata.fetches()
    # Two token lifetimes: the module fetches again before each token expires.
    time.sleep(2 * LIFETIME + 0.5)
    fetched = metadata.fetches() - start
    assert fetched >= 2, fetched
    # One fetch at a time across workers: about one per half lifetime, not one per worker
    # per tick.
    assert fetched <= 6, fetched
    seen = []
    for i in range(4):
        client.chat.completions.create(model="claude-vertex", messages=[{"role": "user", "content": f"n{i}"}])
        seen.append(bearer(vertex_fake.last))
    assert first not in seen, "requests still carry the first token"
    assert all(t in metadata.issued() for t in seen)
    # Every answer came with a valid token (the fake refuses expired ones).
    assert all(r.reply_status == 200 for r in vertex_fake.requests), [r.reply_status for r in vertex_fake.requests]
    log = vx.envoy.log_text()
    for token in metadata.issued():
        assert token not in log


def test_steady_traffic_moves_to_each_refreshed_token(vx, vertex_fake, metadata):
    """Each worker sends its own copy of the token, refreshed every second: requests sent
    throughout two lifetimes all carry a token the fake still accepts, and move on to the
    refreshed ones as the old expire."""
    client = vx.client()
    seen = []
    deadline = time.monotonic() + 2 * LIFETIME + 0.5
    while time.monotonic() < deadline and len(seen) < 200:
        client.chat.completions.create(model="claude-vertex", messages=[{"role": "user", "content": "tick"}])
        seen.append(bearer(vertex_fake.last))
        time.sleep(0.2)
    # The fake refuses expired tokens: every answer being 200 means none was sent.
    assert all(r.reply_status == 200 for r in vertex_fake.requests), [r.reply_status for r in vertex_fake.requests]
    distinct = list(dict.fromkeys(seen))
    assert len(distinct) >= 3, distinct
    assert all(t in metadata.issued() for t in distinct)


def test_token_outage_falls_back_and_recovers(vx, vertex_fake, metadata, openai_fake):
    metadata.failing = True
    # The last good token expires; the module keeps trying and says why in the log.
    wait_until("the last token to expire", lambda: not any(metadata.valid(t) for t in metadata.issued()),
               timeout=LIFETIME + 2)
    time.sleep(0.5)
    client = vx.client()
    # A deployment with a fallback is answered by it.
    raw = client.chat.completions.with_raw_response.create(
        model="vertex-fb", messages=[{"role": "user", "content": "fall back"}])
    assert raw.headers["x-llm-provider"] == "openai"
    assert raw.parse().choices[0].message.content
    assert openai_fake.last.json["messages"][-1]["content"] == "fall back"
    # Without one, the client gets a quick, retriable 503 naming the cause, not a hang.
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gemini-vertex", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - t0 < 5
    assert err.value.status_code == 503
    assert err.value.code == "gcp_token_unavailable", err.value.body
    # Envoy writes its log out every few seconds.
    wait_until("the log to say why", lambda: "a status other than 200 (500)" in vx.envoy.log_text(),
               timeout=15, step=0.5)
    # The token server comes back: so does Vertex AI.
    metadata.failing = False
    wait_until("a new token", lambda: any(metadata.valid(t) for t in metadata.issued()), timeout=LIFETIME + 2)
    time.sleep(0.5)
    reply = client.chat.completions.create(model="gemini-vertex", messages=[{"role": "user", "content": "back"}])
    assert reply.choices[0].message.content == "echo: back"


def test_key_file_through_the_token_server(tmp_path, openai_fake, anthropic_fake, vertex_fake):
    """A service-account key file: `envoy/vertex/gcp_token_server.py` signs the JWT (RS256), trades it
    at the key's `token_uri` and serves the token with the metadata protocol; the gateway
    fetches from it as from the metadata server."""
    pem, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(pem)], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(pem), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True, timeout=60)
    email = "gateway@test-project.iam.gserviceaccount.com"
    with OAuthFake(name="gcp-oauth", public_key_pem=str(pub), client_email=email) as oauth:
        key_file = tmp_path / "sa.json"
        key_file.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
            "private_key": pem.read_text(), "client_email": email, "token_uri": oauth.token_uri}))
        port = free_port()
        server = subprocess.Popen([sys.executable, str(REPO_ROOT / "envoy/vertex/gcp_token_server.py"),
                                   "--key-file", str(key_file), "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        vertex_fake.issuers.append(oauth)
        g = None
        try:
            g = start_gateway(tmp_path / "gw", openai_fake, anthropic_fake,
                              extra_models=[_vertex("claude-key", "claude-opus-4-1@20250805", vertex_fake.url)],
                              general_extra={"gcp_token_url": f"http://127.0.0.1:{port}{TOKEN_PATH}"})
            wait_until("a token from the key file", oauth.issued, timeout=15)
            time.sleep(0.5)
            reply = g.client().chat.completions.create(
                model="claude-key", messages=[{"role": "user", "content": "via key"}])
            assert reply.choices[0].message.content == "echo: via key"
            assert bearer(vertex_fake.last) in oauth.issued()
            assert oauth.verified >= 1
        finally:
            vertex_fake.issuers.remove(oauth)
            if g is not None:
                g.envoy.stop()
            stop_process(server)
        output = server.stdout.read().decode() if server.stdout else ""
        assert "access token refreshed" in output
        for token in oauth.issued():
            assert token not in output and token not in (g.envoy.log_text() if g else "")
        assert "PRIVATE KEY" not in output


def test_token_server_down_falls_back(tmp_path, openai_fake, anthropic_fake, vertex_fake):
    """Nothing listens at `gcp_token_url`: Vertex AI requests are a quick 503 that falls back."""
    g = start_gateway(tmp_path, openai_fake, anthropic_fake,
                      extra_models=[_vertex("gemini-down", "gemini-2.5-flash", vertex_fake.url),
                                    _vertex("gemini-down-fb", "gemini-2.5-flash", vertex_fake.url)],
                      general_extra={"gcp_token_url": f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"},
                      router_settings={"fallbacks": [{"gemini-down-fb": ["gpt-test"]}]})
    try:
        time.sleep(1.5)  # a tick or two: fetches tried and failed
        client = g.client()
        raw = client.chat.completions.with_raw_response.create(
            model="gemini-down-fb", messages=[{"role": "user", "content": "x"}])
        assert raw.headers["x-llm-provider"] == "openai"
        t0 = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="gemini-down", messages=[{"role": "user", "content": "x"}])
        assert time.monotonic() - t0 < 5
        assert err.value.status_code == 503 and err.value.code == "gcp_token_unavailable"
        # Envoy answers the module's call itself: 503, no healthy upstream.
        wait_until("the log to say why", lambda: "a status other than 200 (503)" in g.envoy.log_text(),
                   timeout=15, step=0.5)
    finally:
        g.envoy.stop()
