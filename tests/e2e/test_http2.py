"""HTTP/2 clients (cleartext, prior knowledge, as gRPC-style and many HTTP/2 libraries
speak it): a request whose body ends with trailers is routed and answered like any other,
streamed or not, on every provider; its trailers never reach a provider; and an error is
never an error body wrapped inside another error's message."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest

from harness import MASTER_KEY, parse_sse_events

TIMEOUT = 15.0


@dataclass
class H2Response:
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    @property
    def json(self):
        return json.loads(self.body)

    def events(self) -> list:
        return [data for _, data in parse_sse_events(self.body)[0]]


def h2_post(port: int, body: dict, trailers: list | None, key: str = MASTER_KEY,
            path: str = "/v1/chat/completions") -> H2Response:
    """One POST over a fresh h2c connection; the body ends with `trailers` when given."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    payload = json.dumps(body).encode()
    out = H2Response()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                (":authority", f"127.0.0.1:{port}"), ("authorization", f"Bearer {key}"),
                                ("content-type", "application/json")])
        conn.send_data(sid, payload, end_stream=trailers is None)
        if trailers is not None:
            conn.send_headers(sid, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + TIMEOUT
        ended = False
        while not ended and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    hd = {k.decode().lower(): v.decode() for k, v in ev.headers}
                    out.status = int(hd.pop(":status"))
                    out.headers = hd
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    out.body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                    ended = True
            sock.sendall(conn.data_to_send())
        assert ended, f"the HTTP/2 stream did not end within {TIMEOUT}s"
    return out


TRAILERS = [("x-client-trailer", "checksum-abc"), ("grpc-status", "0")]


def ask(model: str, stream: bool = False) -> dict:
    b = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
    return b


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_a_body_ending_with_trailers_is_routed(gw, model):
    r = h2_post(gw.port, ask(model), TRAILERS)
    assert r.status == 200, r.body[:300]
    assert r.json["choices"][0]["message"]["content"] == "echo: hi"
    assert r.headers.get("x-llm-attempts") == "1"
    req = gw.provider_requests()
    assert len(req) == 1 and req[0].json["messages"][-1]["content"] in ("hi", [{"type": "text", "text": "hi"}])
    # The client's trailers stay at the gateway.
    seen = json.dumps(req[0].header_list)
    assert "checksum-abc" not in seen and "x-client-trailer" not in seen, seen


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_a_streamed_body_ending_with_trailers_is_routed(gw, model):
    r = h2_post(gw.port, ask(model, stream=True), TRAILERS)
    assert r.status == 200, r.body[:300]
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.events()
    assert events[-1] == "[DONE]", events
    text = "".join((json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                   for e in events[:-1] if json.loads(e).get("choices"))
    assert text == "echo: hi"


def test_errors_with_trailers_are_answered_once_not_wrapped(gw):
    r = h2_post(gw.port, ask("no-such-model"), TRAILERS)
    assert r.status == 404, r.body
    err = r.json["error"]
    assert err["code"] == "model_not_found" and err["type"] == "not_found_error", err
    assert "{" not in err["message"], err
    r = h2_post(gw.port, ask("gpt-test"), TRAILERS, key="sk-wrong-key-0123456789")
    assert r.status == 401 and r.json["error"]["type"] == "authentication_error", r.body
    assert gw.provider_requests() == []


def test_http2_without_trailers_still_works(gw):
    r = h2_post(gw.port, ask("gpt-test"), None)
    assert r.status == 200, r.body[:300]
    assert r.json["choices"][0]["message"]["content"] == "echo: hi"
