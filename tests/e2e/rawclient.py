"""A raw-socket HTTP/1.1 client for the fault tests: it reports whether a chunked answer
was terminated properly or cut off, which `http.client` hides behind exceptions, and it can
walk away in the middle of a stream."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from harness import parse_sse_events


@dataclass
class RawResult:
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    events: list = field(default_factory=list)  # data strings, in order
    complete: bool = False  # the answer ended as HTTP says it should (last chunk / full length)
    aborted: bool = False  # the connection ended (or reset) before that
    elapsed: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def done_count(self) -> int:
        return sum(1 for d in self.events if d.strip() == "[DONE]")

    @property
    def chunks(self) -> list:
        out = []
        for d in self.events:
            if d.strip() == "[DONE]":
                continue
            out.append(json.loads(d))
        return out

    def content(self) -> str:
        return "".join(((c.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
                       for c in self.chunks if c.get("choices"))

    def error_events(self) -> list:
        return [c for c in self.chunks if c.get("error")]

    def finish_reasons(self) -> list:
        return [ch.get("finish_reason") for c in self.chunks for ch in c.get("choices") or []
                if ch.get("finish_reason") is not None]


class _Eof(Exception):
    pass


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.deadline = deadline

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("answer not finished in time")
        self.sock.settimeout(min(left, 5.0))
        try:
            piece = self.sock.recv(65536)
        except socket.timeout:
            return
        except (ConnectionResetError, BrokenPipeError):
            raise _Eof()
        if not piece:
            raise _Eof()
        self.buf += piece

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def some(self) -> bytes:
        if not self.buf:
            self._fill()
        out = bytes(self.buf)
        self.buf.clear()
        return out


def call(port: int, body: Any, key: str, path: str = "/v1/chat/completions", timeout: float = 30.0,
         leave_after_events: Optional[int] = None, headers: Optional[dict] = None) -> RawResult:
    """POSTs `body` and reads the whole answer (or leaves after `leave_after_events` SSE
    events, closing the socket abruptly)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Host": "127.0.0.1", "Content-Type": "application/json", "Authorization": f"Bearer {key}",
         "Content-Length": str(len(data))}
    h.update(headers or {})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    started = time.monotonic()
    res = RawResult()
    sse_buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + data)
        r = _Reader(s, started + timeout)

        def take(piece: bytes) -> bool:
            nonlocal sse_buf
            res.body += piece
            sse_buf += piece
            evs, sse_buf = parse_sse_events(sse_buf)
            res.events.extend(d for _, d in evs)
            return leave_after_events is not None and len(res.events) >= leave_after_events

        try:
            status_line = r.line().decode("latin-1")
            res.status = int(status_line.split(" ")[1])
            while True:
                line = r.line()
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                res.headers[k.strip().lower()] = v.strip()
            if "chunked" in res.headers.get("transfer-encoding", "").lower():
                while True:
                    size = int(r.line().split(b";")[0] or b"0", 16)
                    if size == 0:
                        r.line()
                        res.complete = True
                        break
                    if take(r.exact(size)):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        break
                    r.exact(2)
            elif "content-length" in res.headers:
                take(r.exact(int(res.headers["content-length"])))
                res.complete = True
            else:
                try:
                    while True:
                        take(r.some())
                except _Eof:
                    res.complete = True
        except _Eof:
            res.aborted = True
    res.elapsed = time.monotonic() - started
    return res
