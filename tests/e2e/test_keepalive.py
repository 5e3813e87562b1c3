"""Keep-alive after body rewrites: sequential requests over one client connection, whose
translated bodies are longer or shorter than the originals, all succeed, and the providers
always receive complete JSON bodies (a stale content-length would truncate one and desync
the connection for the next)."""

from __future__ import annotations

import http.client

from harness import MASTER_KEY, request, stream

LONG_SYSTEM = "You are a meticulous assistant. " * 200


def requests_to_send() -> list:
    """(body, is_stream, expected text in the answer); translated sizes all differ."""
    return [
        ({"model": "claude-test", "messages": [{"role": "user", "content": "one"}]}, False, "echo: one"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": "two"}]}, False, "echo: two"),
        ({"model": "claude-test", "messages": [{"role": "system", "content": LONG_SYSTEM},
                                               {"role": "user", "content": "three"}]}, False, "echo: three"),
        ({"model": "claude-test", "messages": [{"role": "user", "content": "four"}],
          "presence_penalty": 0, "frequency_penalty": 0, "seed": 1, "n": 1, "store": False,
          "user": "someone-with-a-long-identifier-" * 5}, False, "echo: four"),
        ({"model": "claude-test", "messages": [{"role": "user", "content": "five"}], "stream": True}, True, "echo: five"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": "six"}], "stream": True}, True, "echo: six"),
        ({"model": "claude-test", "messages": [{"role": "user", "content": "sieben – Grüße 🌍"}]}, False,
         "echo: sieben – Grüße 🌍"),
        ({"model": "gpt-test", "messages": [{"role": "system", "content": "x" * 200_000},
                                            {"role": "user", "content": "eight"}]}, False, "echo: eight"),
        ({"model": "claude-test", "messages": [{"role": "user", "content": "nine"}]}, False, "echo: nine"),
    ]


def test_sequential_requests_over_one_connection(gw):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    try:
        local = None
        sent = 0
        for round_ in range(2):
            for body, is_stream, expected in requests_to_send():
                label = f"round {round_} {body['model']} {expected!r}"
                if is_stream:
                    s = stream(gw.port, "/v1/chat/completions", body, key=MASTER_KEY, conn=conn)
                    assert s.status == 200, f"{label}: {s.raw[:300]!r}"
                    assert s.content() == expected, label
                    assert s.done_count == 1, label
                else:
                    r = request(gw.port, "POST", "/v1/chat/completions", body, key=MASTER_KEY, conn=conn)
                    assert r.status == 200, f"{label}: {r.status} {r.body[:300]!r}"
                    assert r.json["choices"][0]["message"]["content"] == expected, label
                sent += 1
                assert conn.sock is not None, f"{label}: the gateway closed the client connection"
                name = conn.sock.getsockname()
                assert local in (None, name), f"{label}: the client had to reconnect"
                local = name
        provider_requests = sorted(gw.provider_requests(), key=lambda r: r.received_at)
        assert len(provider_requests) == sent
        for rec in provider_requests:
            assert rec.json_error is None, f"{rec.path}: incomplete body ({len(rec.body)} bytes): {rec.json_error}"
            if rec.content_length is not None:
                assert rec.content_length == len(rec.body)
            assert rec.reply_status == 200
    finally:
        conn.close()


def test_gpt_then_claude_alternating_on_one_connection(gw):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    try:
        for i in range(6):
            model = "gpt-test" if i % 2 else "claude-test"
            text = f"msg {i} " + "pad " * (i * 50)
            r = request(gw.port, "POST", "/v1/chat/completions",
                        {"model": model, "messages": [{"role": "user", "content": text}]}, conn=conn)
            assert r.status == 200, r.body[:300]
            assert r.json["choices"][0]["message"]["content"] == f"echo: {text}"
        assert len(gw.openai.requests) == 3 and len(gw.anthropic.requests) == 3
        assert all(rec.json_error is None for rec in gw.provider_requests())
    finally:
        conn.close()


def test_openai_compatible_rewrites_on_one_connection(gw):
    # `model` grows from the alias to the upstream name, and streams gain stream_options.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    try:
        local = None
        for i in range(8):
            text = f"gpt {i} " + "é" * (i * 37)
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
            if i % 3 == 2:
                s = stream(gw.port, "/v1/chat/completions", {**body, "stream": True}, key=MASTER_KEY, conn=conn)
                assert s.status == 200, s.raw[:300]
                assert s.content() == f"echo: {text}"
            else:
                r = request(gw.port, "POST", "/v1/chat/completions", body, key=MASTER_KEY, conn=conn)
                assert r.status == 200, r.body[:300]
                assert r.json["choices"][0]["message"]["content"] == f"echo: {text}"
            assert conn.sock is not None, "the gateway closed the client connection"
            assert local in (None, conn.sock.getsockname()), "the client had to reconnect"
            local = conn.sock.getsockname()
        recs = gw.openai.requests
        assert len(recs) == 8
        for rec in recs:
            assert rec.json_error is None, rec.json_error
            if rec.content_length is not None:
                assert rec.content_length == len(rec.body)
    finally:
        conn.close()
