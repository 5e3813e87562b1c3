"""Request size: bodies up to `general_settings.max_request_body_bytes` (16 MiB by default)
are accepted, and larger ones get an OpenAI-shaped 413 without reaching a provider."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from harness import MASTER_KEY, Response, assert_openai_error

DEFAULT_LIMIT = 16 * 1024 * 1024


@pytest.mark.parametrize("model,fake", [("gpt-test", "openai"), ("claude-test", "anthropic")])
@pytest.mark.parametrize("size", [1_500_000, 4_000_000])
def test_large_request_under_the_limit_is_accepted(gw, model, fake, size):
    # e.g. a conversation carrying an inline image of a few megabytes
    text = "large " * (size // 6)
    r = gw.chat({"model": model, "messages": [{"role": "user", "content": text}]})
    assert r.status == 200, (r.status, r.header("content-type"), r.body[:200])
    rec = getattr(gw, fake).last
    assert rec.json_error is None
    assert len(rec.body) > size


def _raw_post(port: int, headers: dict, body: bytes = b"") -> Response:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + \
            "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + body)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        payload = resp.read()
        lst = [(k.lower(), v) for k, v in resp.getheaders()]
        return Response(resp.status, dict(lst), lst, payload)


def test_declared_oversized_request_is_an_openai_413(gw):
    r = _raw_post(gw.port, {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json",
                            "Content-Length": str(DEFAULT_LIMIT + 1)})
    assert_openai_error(r, 413, "request_too_large")
    assert gw.provider_requests() == []


def test_streamed_oversized_request_is_an_openai_413(gw):
    # Without a content-length the gateway learns the size while the body arrives.
    chunk = b"x" * (1024 * 1024)
    start = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": ""}]})[:-4].encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=15) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"%x\r\n%s\r\n" % (len(start), start))
        try:
            for _ in range(18):  # 18 MiB > 16 MiB; the gateway may answer before all is sent
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(s)
        resp.begin()
        payload = resp.read()
        lst = [(k.lower(), v) for k, v in resp.getheaders()]
    assert_openai_error(Response(resp.status, dict(lst), lst, payload), 413, "request_too_large")
    assert gw.provider_requests() == []
