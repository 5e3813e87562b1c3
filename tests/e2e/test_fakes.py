"""The fakes themselves, without Envoy: wire format, keep-alive, chunked SSE, and the
standalone demo provider started from the command line."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import AnthropicFake, Event, GeminiFake, OpenAIFake, Reply
from harness import free_port, request, stream

FAKES_PY = Path(__file__).resolve().parent / "fakes.py"


def test_openai_fake_keeps_alive_and_records(tmp_path):
    with OpenAIFake(api_key="sk-x") as f:
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
        try:
            body = {"model": "m", "messages": [{"role": "user", "content": "hé"}]}
            r1 = request(f.port, "POST", "/v1/chat/completions", body, key="sk-x", conn=conn)
            port1 = conn.sock.getsockname()
            r2 = request(f.port, "POST", "/v1/chat/completions", body, key="bad", conn=conn)
            assert conn.sock.getsockname() == port1
        finally:
            conn.close()
        assert r1.status == 200 and r1.json["choices"][0]["message"]["content"] == "echo: hé"
        assert int(r1.header("content-length")) == len(r1.body)
        assert r2.status == 401
        reqs = f.requests
        assert [r.connection_seq for r in reqs] == [0, 1]
        assert reqs[0].json == body and reqs[0].headers["authorization"] == "Bearer sk-x"


def test_fake_reads_chunked_request_bodies():
    with AnthropicFake() as f:
        with socket.create_connection(("127.0.0.1", f.port), timeout=5) as s:
            payload = json.dumps({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode()
            head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            s.sendall(head + b"%x\r\n%s\r\n" % (10, payload[:10]) + b"%x\r\n%s\r\n" % (len(payload) - 10, payload[10:]) + b"0\r\n\r\n")
            s.settimeout(5)
            data = b""
            while b"msg_fake" not in data:
                data += s.recv(65536)
        rec = f.last
        assert rec.chunked and rec.content_length is None
        assert rec.json["model"] == "c"


def test_scripted_sse_is_chunked_and_timed():
    with OpenAIFake() as f:
        f.enqueue(Reply.sse([Event({"n": 1}), Event({"n": 2}, delay=0.2), Event("[DONE]", delay=0.2)]))
        s = stream(f.port, "/v1/chat/completions", {"model": "m", "messages": []}, key=None)
        assert s.header("transfer-encoding") == "chunked"
        assert s.header("content-length") is None
        assert [e.data for e in s.events] == ['{"n": 1}', '{"n": 2}', "[DONE]"]
        gaps = [b.received_at - a.received_at for a, b in zip(s.events, s.events[1:])]
        assert all(g > 0.15 for g in gaps), gaps
        sent = [t for t, _ in f.last.events_sent]
        assert all(abs(e.received_at - t) < 0.1 for e, t in zip(s.events, sent))


def test_anthropic_fake_validates_like_the_real_api():
    with AnthropicFake(api_key="k") as f:
        r = request(f.port, "POST", "/v1/messages", {"model": "c", "messages": [{"role": "user", "content": "x"}]},
                    key=None, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert r.status == 400 and r.json["error"]["message"] == "max_tokens: Field required"
        r = request(f.port, "POST", "/v1/messages", {}, key=None, headers={"x-api-key": "wrong"})
        assert r.status == 401 and r.json["type"] == "error"


def test_gemini_fake_answers_both_operations():
    with GeminiFake() as f:
        body = {"contents": [{"role": "user", "parts": [{"text": "hola"}]}]}
        r = request(f.port, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", body, key=None)
        assert r.json["candidates"][0]["content"]["parts"][0]["text"] == "echo: hola"
        s = stream(f.port, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body, key=None)
        text = "".join(e.json["candidates"][0]["content"]["parts"][0]["text"] for e in s.events)
        assert text == "echo: hola"
        assert s.events[-1].json["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_demo_cli(kind):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKES_PY), "demo", "--port", str(port), "--kind", kind],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "demo provider did not start"
                time.sleep(0.05)
        path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
        body = {"model": "demo-model-1", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        r = request(port, "POST", path, body, key=None)
        assert r.status == 200
        text = r.json["content"][0]["text"] if kind == "anthropic" else r.json["choices"][0]["message"]["content"]
        assert "demo-model-1" in text
        s = stream(port, path, {**body, "stream": True}, key=None)
        assert s.status == 200 and "demo-model-1" in s.raw.decode()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()
