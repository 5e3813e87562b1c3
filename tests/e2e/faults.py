"""A raw-socket fake provider for fault injection.

`fakes.py` speaks correct HTTP; this one can also break it: reset the connection in the
middle of a stream, promise more body than it sends and close, stall after the headers,
stream forever, trickle one byte at a time, answer 20 MiB. It speaks the OpenAI or the
Anthropic wire format (``kind``) for its normal answers, built with the same helpers as
`fakes.py`, and takes its behaviour per request from a script (``enqueue``) or a default.

A behaviour is a callable ``(server, conn, request) -> keep_alive``. Everything listens on
127.0.0.1; every wait is bounded; ``stop()`` closes every connection it holds.
"""

from __future__ import annotations

import json
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from fakes import (Event, anthropic_error, anthropic_event, anthropic_message, anthropic_stream,
                   last_user_text, openai_completion, openai_error, openai_stream)

Behaviour = Callable[["RawProvider", socket.socket, "RawRequest"], bool]

READ_TIMEOUT = 30.0


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict  # lower-cased name -> value
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def stream(self) -> bool:
        j = self.json
        return isinstance(j, dict) and j.get("stream") is True

    @property
    def model(self) -> str:
        j = self.json
        return str(j.get("model")) if isinstance(j, dict) else ""


class _Closed(Exception):
    pass


def _read_until(conn: socket.socket, buf: bytearray, marker: bytes) -> int:
    while True:
        i = buf.find(marker)
        if i >= 0:
            return i
        piece = conn.recv(65536)
        if not piece:
            raise _Closed()
        buf += piece


def _read_exact(conn: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        piece = conn.recv(max(65536, n - len(buf)))
        if not piece:
            raise _Closed()
        buf += piece
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_request(conn: socket.socket, buf: bytearray) -> RawRequest:
    end = _read_until(conn, buf, b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    del buf[: end + 4]
    lines = head.split("\r\n")
    method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            i = _read_until(conn, buf, b"\r\n")
            size = int(bytes(buf[:i]).split(b";")[0] or b"0", 16)
            del buf[: i + 2]
            if size == 0:
                _read_until(conn, buf, b"\r\n")
                j = buf.find(b"\r\n")
                del buf[: j + 2]
                break
            body += _read_exact(conn, buf, size)
            _read_exact(conn, buf, 2)
    else:
        body = _read_exact(conn, buf, int(headers.get("content-length") or 0))
    return RawRequest(method, path, headers, body)


# ---------------------------------------------------------------------------------------------
# Wire helpers


def send_head(conn: socket.socket, status: int, headers: dict) -> None:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
              500: "Internal Server Error", 503: "Service Unavailable", 529: "Overloaded"}.get(status, "X")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def send_json(conn: socket.socket, status: int, body: Any, close: bool = False) -> bool:
    payload = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    if close:
        headers["Connection"] = "close"
    send_head(conn, status, headers)
    conn.sendall(payload)
    return not close


def start_sse(conn: socket.socket, status: int = 200) -> None:
    send_head(conn, status, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                             "Transfer-Encoding": "chunked"})


def send_chunk(conn: socket.socket, data: bytes) -> None:
    if data:
        conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def end_chunks(conn: socket.socket) -> None:
    conn.sendall(b"0\r\n\r\n")


def reset(conn: socket.socket) -> None:
    """Closes with a TCP RST (SO_LINGER 0), as a crashed provider or a middlebox does."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        conn.close()


def peer_closed(conn: socket.socket, wait: float) -> bool:
    """True when the peer closed the connection within `wait` seconds."""
    r, _, _ = select.select([conn], [], [], wait)
    if not r:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---------------------------------------------------------------------------------------------
# Normal answers


def normal_events(kind: str, req: RawRequest, text: Optional[str] = None) -> list:
    body = req.json if isinstance(req.json, dict) else {}
    text = text if text is not None else f"echo: {last_user_text(body.get('messages'))}"
    if kind == "anthropic":
        return anthropic_stream(text, model=req.model or "claude-sonnet-4-5", ping=True)
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return openai_stream(text, model=req.model or "gpt-4o-mini", include_usage=wants_usage)


def normal_body(kind: str, req: RawRequest, text: Optional[str] = None) -> dict:
    body = req.json if isinstance(req.json, dict) else {}
    text = text if text is not None else f"echo: {last_user_text(body.get('messages'))}"
    if kind == "anthropic":
        return anthropic_message(text, model=req.model or "claude-sonnet-4-5")
    return openai_completion(text, model=req.model or "gpt-4o-mini")


def encode_events(events: list) -> bytes:
    return b"".join(e.encode() if isinstance(e, Event) else Event(data=e).encode() for e in events)


def normal(srv: "RawProvider", conn: socket.socket, req: RawRequest) -> bool:
    problem = srv.auth_problem(req)
    if problem is not None:
        return send_json(conn, problem[0], problem[1])
    if req.stream:
        start_sse(conn)
        for e in normal_events(srv.kind, req):
            send_chunk(conn, e.encode())
        end_chunks(conn)
        return True
    return send_json(conn, 200, normal_body(srv.kind, req))


# ---------------------------------------------------------------------------------------------
# Faults (each returns a behaviour)


def reset_mid_stream(events_first: int = 3) -> Behaviour:
    def b(srv, conn, req):
        start_sse(conn)
        for e in normal_events(srv.kind, req)[:events_first]:
            send_chunk(conn, e.encode())
        time.sleep(0.05)
        reset(conn)
        return False
    return b


def reset_before_answer() -> Behaviour:
    def b(srv, conn, req):
        reset(conn)
        return False
    return b


def malformed_json() -> Behaviour:
    def b(srv, conn, req):
        return send_json(conn, 200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "message": {"role": "assi')
    return b


def malformed_sse() -> Behaviour:
    def b(srv, conn, req):
        start_sse(conn)
        events = normal_events(srv.kind, req)
        send_chunk(conn, events[0].encode())
        send_chunk(conn, b"data: {this is not json}\n\n")
        for e in events[1:]:
            send_chunk(conn, e.encode())
        end_chunks(conn)
        return True
    return b


def unknown_event(text: str) -> Behaviour:
    """A normal stream with events of a type the gateway has never heard of."""
    def b(srv, conn, req):
        start_sse(conn)
        events = normal_events(srv.kind, req, text=text)
        odd = (anthropic_event("brand_new_event", detail={"x": 1}) if srv.kind == "anthropic"
               else Event(data={"object": "brand.new.object", "note": "ignore me"}, event="brand_new_event"))
        events.insert(2, odd)
        events.insert(len(events) - 1, odd)
        for e in events:
            send_chunk(conn, e.encode())
        end_chunks(conn)
        return True
    return b


def truncated_body(declared: int = 5000, sent: int = 100) -> Behaviour:
    def b(srv, conn, req):
        payload = json.dumps(normal_body(srv.kind, req, text="x" * declared)).encode()[:sent]
        send_head(conn, 200, {"Content-Type": "application/json", "Content-Length": str(declared)})
        conn.sendall(payload)
        time.sleep(0.05)
        conn.close()
        return False
    return b


def huge_json(size: int) -> Behaviour:
    def b(srv, conn, req):
        return send_json(conn, 200, normal_body(srv.kind, req, text="h" * size))
    return b


def stall(events_first: int = 0, up_to: float = 30.0) -> Behaviour:
    """Headers (and `events_first` events), then silence until the gateway gives up."""
    def b(srv, conn, req):
        start_sse(conn)
        for e in normal_events(srv.kind, req)[:events_first]:
            send_chunk(conn, e.encode())
        peer_closed(conn, up_to)
        conn.close()
        return False
    return b


def endless(interval: float = 0.1, up_to: float = 60.0) -> Behaviour:
    """A stream that never ends: a text event every `interval` until the gateway hangs up."""
    def b(srv, conn, req):
        start_sse(conn)
        events = normal_events(srv.kind, req, text="tick ")
        head = events[:2] if srv.kind == "openai" else events[:3]
        for e in head:
            send_chunk(conn, e.encode())
        delta = events[2] if srv.kind == "anthropic" else events[1]
        deadline = time.monotonic() + up_to
        try:
            while time.monotonic() < deadline:
                send_chunk(conn, delta.encode())
                if peer_closed(conn, interval):
                    break
        except OSError:
            pass
        conn.close()
        return False
    return b


def trickle(text: str, slow_bytes: int, interval: float = 0.1, json_answer: bool = False) -> Behaviour:
    """The answer's first `slow_bytes` bytes one at a time, `interval` apart, then the rest."""
    def b(srv, conn, req):
        if json_answer:
            payload = json.dumps(normal_body(srv.kind, req, text=text)).encode()
            send_head(conn, 200, {"Content-Type": "application/json", "Content-Length": str(len(payload))})
            send = conn.sendall
        else:
            payload = encode_events(normal_events(srv.kind, req, text=text))
            start_sse(conn)
            send = lambda data: send_chunk(conn, data)  # noqa: E731
        for i in range(min(slow_bytes, len(payload))):
            send(payload[i:i + 1])
            time.sleep(interval)
        send(payload[slow_bytes:])
        if not json_answer:
            end_chunks(conn)
        return True
    return b


def slow_stream(events: int = 50, interval: float = 0.1) -> Behaviour:
    """A long, slow, well-formed stream (for clients that leave in the middle)."""
    def b(srv, conn, req):
        start_sse(conn)
        evs = normal_events(srv.kind, req, text=" ".join(f"w{i}" for i in range(events)))
        try:
            for e in evs:
                send_chunk(conn, e.encode())
                if peer_closed(conn, interval):
                    conn.close()
                    return False
            end_chunks(conn)
        except OSError:
            conn.close()
            return False
        return True
    return b


def error_status(status: int, message: str = "fault injected", type: Optional[str] = None) -> Behaviour:
    def b(srv, conn, req):
        if srv.kind == "anthropic":
            t = type or {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}.get(status, "api_error")
            r = anthropic_error(status, message, t)
        else:
            t = type or {429: "requests", 401: "invalid_request_error"}.get(status, "server_error")
            r = openai_error(status, message, t)
        return send_json(conn, status, r.json)
    return b


def echo_key_error() -> Behaviour:
    """The provider's 401 quoting the key it was sent, as some OpenAI-compatible servers do."""
    def b(srv, conn, req):
        key = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix("Bearer ")
        return error_status(401, f"Incorrect API key provided: {key}. You can find your API key at "
                                 f"https://example.invalid/keys.", "invalid_request_error"
                            if srv.kind == "openai" else "authentication_error")(srv, conn, req)
    return b


def mixed(weights: dict, seed: int = 7) -> Behaviour:
    """Picks a behaviour per request, by weight (for the soak). Thread-safe."""
    rnd = random.Random(seed)
    lock = threading.Lock()
    names = list(weights)
    cum = []
    total = 0.0
    for n in names:
        total += weights[n][0]
        cum.append(total)

    def b(srv, conn, req):
        with lock:
            x = rnd.random() * total
        for n, c in zip(names, cum):
            if x < c:
                srv.count(n)
                return weights[n][1](srv, conn, req)
        return normal(srv, conn, req)
    return b


# ---------------------------------------------------------------------------------------------
# The server


class RawProvider:
    """A scripted fault-injecting provider on 127.0.0.1 (``kind``: openai or anthropic)."""

    def __init__(self, kind: str, api_key: Optional[str] = None) -> None:
        assert kind in ("openai", "anthropic")
        self.kind = kind
        self.api_key = api_key
        self._lock = threading.Lock()
        self._script: deque = deque()
        self._default: Optional[Behaviour] = None
        self._requests: list = []
        self._counts: dict = {}
        self._conns: set = set()
        self._stopping = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RawProvider":
        self._thread = threading.Thread(target=self._accept, name=f"raw-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> "RawProvider":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- scripting --

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def set_default(self, behaviour: Optional[Behaviour]) -> None:
        with self._lock:
            self._default = behaviour

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._default = None
            self._requests.clear()
            self._counts.clear()

    @property
    def requests(self) -> list:
        with self._lock:
            return list(self._requests)

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    @property
    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts)

    def auth_problem(self, req: RawRequest) -> Optional[tuple]:
        if self.api_key is None:
            return None
        if self.kind == "anthropic":
            if req.headers.get("x-api-key") != self.api_key:
                return 401, anthropic_error(401, "invalid x-api-key", "authentication_error").json
            return None
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, openai_error(401, "Incorrect API key provided.", code="invalid_api_key").json
        return None

    # -- internals --

    def _accept(self) -> None:
        self._sock.settimeout(0.2)  # so that stop() is noticed without closing under accept()
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(READ_TIMEOUT)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stopping:
                try:
                    req = read_request(conn, buf)
                except (_Closed, OSError, ValueError):
                    return
                with self._lock:
                    self._requests.append(req)
                    behaviour = self._script.popleft() if self._script else (self._default or normal)
                try:
                    keep = behaviour(self, conn, req)
                except OSError:
                    return
                if not keep:
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
