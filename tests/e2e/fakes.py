"""Fake LLM providers for the end-to-end suite, and a standalone demo provider.

Each fake is an in-process ``ThreadingHTTPServer`` on 127.0.0.1 that speaks one provider's
wire format over HTTP/1.1 with keep-alive:

* :class:`OpenAIFake`    -- ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` (OpenAI
  and compatible servers)
* :class:`AnthropicFake` -- ``POST /v1/messages`` (Anthropic Messages API)
* :class:`GeminiFake`    -- ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent?alt=sse`` and ``:batchEmbedContents``
* :class:`CohereFake`    -- ``POST /v2/chat`` (Cohere v2 Chat API, JSON and SSE) and ``POST /v2/embed``

Embeddings follow https://platform.openai.com/docs/api-reference/embeddings/create,
https://ai.google.dev/api/embeddings#method:-models.batchembedcontents and
https://docs.cohere.com/reference/embed: each text gets a deterministic vector
(:func:`fake_vector`), ``base64`` is its little-endian float32 bytes.

Every request is recorded (:class:`Recorded`: method, path, lower-cased headers, raw body,
parsed JSON, how the body was framed). Answers come from a script: tests enqueue
:class:`Reply` objects (status, JSON or raw body, or a list of SSE :class:`Event` with
per-event delays, extra headers), or install a default handler. Without either, the fake
answers like the real provider would, echoing the last user message and the model.

JSON answers carry ``Content-Length``; streamed answers use ``Transfer-Encoding: chunked``
and are flushed event by event, and the time each event was written is recorded so that
tests can compare it with the time the client received it.

Run ``python3 tests/e2e/fakes.py demo --port 18080`` for a standalone, keyless
OpenAI-compatible demo provider (``--kind anthropic`` for an Anthropic-shaped one).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import re
import struct
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Event",
    "Reply",
    "Recorded",
    "FakeProvider",
    "OpenAIFake",
    "AnthropicFake",
    "GeminiFake",
    "CohereFake",
    "cohere_message",
    "cohere_stream",
    "cohere_error",
    "openai_completion",
    "openai_chunk",
    "openai_stream",
    "openai_error",
    "anthropic_message",
    "anthropic_stream",
    "anthropic_answer",
    "anthropic_error",
    "anthropic_event",
    "last_user_text",
    "fake_vector",
    "vector_base64",
]


# ---------------------------------------------------------------------------------------------
# Script items


@dataclass
class Event:
    """One server-sent event of a streamed reply.

    ``data`` is a JSON value (serialised) or a string (sent as is). ``delay`` is slept
    before the event is written. ``split_at`` writes the encoded event in two chunks, the
    second ``split_delay`` seconds later, to test that partial events are held back.
    ``raw`` bypasses the encoding entirely.
    """

    data: Any = None
    event: Optional[str] = None
    delay: float = 0.0
    split_at: Optional[int] = None
    split_delay: float = 0.05
    raw: Optional[bytes] = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        out = b""
        if self.event is not None:
            out += f"event: {self.event}\n".encode()
        data = self.data if isinstance(self.data, str) else json.dumps(self.data, ensure_ascii=False)
        for line in data.split("\n"):
            out += b"data: " + line.encode("utf-8") + b"\n"
        return out + b"\n"


@dataclass
class Reply:
    """A scripted answer.

    Exactly one of ``json``, ``body`` or ``events`` is normally set. ``events`` makes a
    streamed (chunked, ``text/event-stream``) answer. ``delay`` is slept before the status
    line. ``close`` closes the connection after the answer.
    """

    status: int = 200
    json: Any = None
    body: Optional[bytes] = None
    events: Optional[list] = None
    headers: dict = field(default_factory=dict)
    content_type: Optional[str] = None
    delay: float = 0.0
    close: bool = False

    @classmethod
    def sse(cls, events: list, status: int = 200, **kw) -> "Reply":
        return cls(status=status, events=list(events), **kw)


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    raw_path: str
    path: str
    query: dict
    headers: dict  # lower-cased name -> last value
    header_list: list  # [(lower-cased name, value)] in order
    body: bytes
    json: Any  # parsed body, or None when it is not JSON
    json_error: Optional[str]
    content_length: Optional[int]  # the Content-Length header, if any
    chunked: bool  # the body came with Transfer-Encoding: chunked
    received_at: float  # time.monotonic() when the body was complete
    peer: tuple  # (host, port) of the connection it came on
    connection_seq: int  # index of this request on its connection (0 = first)
    events_sent: list = field(default_factory=list)  # [(monotonic time, Event)]
    reply_status: Optional[int] = None

    def header_values(self, name: str) -> list:
        name = name.lower()
        return [v for (k, v) in self.header_list if k == name]


# ---------------------------------------------------------------------------------------------
# Server plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: "FakeProvider"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-provider/1"
    sys_version = ""
    timeout = 600  # idle keep-alive connections are dropped after this (longer than any run)

    def setup(self) -> None:
        super().setup()
        self._seq = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.fake.verbose:
            sys.stderr.write("[%s] %s\n" % (self.server.fake.name, format % args))

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def _read_body(self) -> tuple:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        cl_header = self.headers.get("Content-Length")
        if "chunked" in te:
            data = b""
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the blank line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data += self.rfile.read(size)
                self.rfile.readline(3)  # CRLF after the chunk
            return data, (int(cl_header) if cl_header else None), True
        length = int(cl_header) if cl_header else 0
        return (self.rfile.read(length) if length else b""), (int(cl_header) if cl_header else None), False

    def _dispatch(self) -> None:
        fake = self.server.fake
        body, content_length, chunked = self._read_body()
        split = urlsplit(self.path)
        parsed: Any = None
        json_error: Optional[str] = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError as e:
                json_error = str(e)
        header_list = [(k.lower(), v) for (k, v) in self.headers.items()]
        rec = Recorded(
            method=self.command,
            raw_path=self.path,
            path=split.path,
            query={k: v[-1] for k, v in parse_qs(split.query).items()},
            headers={k: v for (k, v) in header_list},
            header_list=header_list,
            body=body,
            json=parsed,
            json_error=json_error,
            content_length=content_length,
            chunked=chunked,
            received_at=time.monotonic(),
            peer=self.client_address,
            connection_seq=self._seq,
        )
        self._seq += 1
        fake._record(rec)
        try:
            reply = fake._next_reply(rec)
        except Exception as e:  # a broken script must not hang the gateway
            reply = Reply(status=500, json={"error": {"message": f"fake failed: {e!r}"}})
        rec.reply_status = reply.status
        try:
            self._send(reply, rec)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, reply: Reply, rec: Recorded) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        reason = {529: "Overloaded"}.get(reply.status)
        self.send_response(reply.status, reason)
        if reply.events is not None:
            self.send_header("Content-Type", reply.content_type or "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            for ev in reply.events:
                if not isinstance(ev, Event):
                    ev = Event(data=ev)
                if ev.delay:
                    time.sleep(ev.delay)
                data = ev.encode()
                if ev.split_at is not None and 0 < ev.split_at < len(data):
                    self._chunk(data[: ev.split_at])
                    time.sleep(ev.split_delay)
                    self._chunk(data[ev.split_at :])
                else:
                    self._chunk(data)
                rec.events_sent.append((time.monotonic(), ev))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if reply.body is not None:
            payload = reply.body
            ctype = reply.content_type or "text/plain; charset=utf-8"
        else:
            payload = json.dumps(reply.json if reply.json is not None else {}, ensure_ascii=False).encode()
            ctype = reply.content_type or "application/json"
        if self.server.fake.compress and "gzip" in (rec.headers.get("accept-encoding") or "") and payload:
            payload = gzip.compress(payload)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class FakeProvider:
    """Base class: a scripted, recording HTTP/1.1 server on 127.0.0.1.

    Subclasses set ``kind`` and implement :meth:`routes` (which requests they serve) and
    :meth:`default_reply` (the realistic answer when nothing is scripted).
    """

    kind = "base"

    def __init__(self, port: int = 0, host: str = "127.0.0.1", name: Optional[str] = None,
                 api_key: Optional[str] = None, verbose: bool = False) -> None:
        self.name = name or self.kind
        self.api_key = api_key  # when set, requests without it get the provider's 401
        # Like the real APIs, gzip JSON answers for clients that send `Accept-Encoding: gzip`.
        self.compress = False
        self.verbose = verbose
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: list = []
        self._script: deque = deque()
        self._default: Optional[Callable[[Recorded], Reply]] = None
        self._counter = 0
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle --

    def start(self) -> "FakeProvider":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting --

    def enqueue(self, *replies: Reply) -> None:
        """Answers the next requests with these replies, in order (then the default)."""
        with self._lock:
            self._script.extend(replies)

    def set_default(self, handler: Optional[Callable[[Recorded], Reply]]) -> None:
        """Answers every unscripted request with ``handler(request)``; None restores the
        realistic default."""
        with self._lock:
            self._default = handler

    def reset(self) -> None:
        """Forgets recorded requests, scripted replies and the default handler, and stops
        compressing."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._default = None
            self.compress = False

    # -- inspection --

    @property
    def requests(self) -> list:
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Recorded:
        reqs = self.requests
        assert reqs, f"the {self.name} fake received no request"
        return reqs[-1]

    def wait_for(self, count: int, timeout: float = 5.0) -> list:
        """Waits (bounded) until at least ``count`` requests were recorded."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self._requests)

    # -- internals --

    def _record(self, rec: Recorded) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _next_reply(self, rec: Recorded) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            default = self._default
        if scripted is not None:
            return scripted(rec) if callable(scripted) else scripted
        if self.routes(rec) is None:
            return self.not_found(rec)
        if default is not None:
            return default(rec)
        problem = self.auth_problem(rec)
        if problem is not None:
            return problem
        return self.default_reply(rec)

    # -- per provider --

    def routes(self, rec: Recorded) -> Optional[str]:
        """The name of the operation ``rec`` asks for, or None when the path is unknown."""
        raise NotImplementedError

    def default_reply(self, rec: Recorded) -> Reply:
        raise NotImplementedError

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        return None

    def not_found(self, rec: Recorded) -> Reply:
        return Reply(status=404, json={"error": {"message": f"no route {rec.method} {rec.path}"}})


# ---------------------------------------------------------------------------------------------
# Helpers shared by the formats


def last_user_text(messages: Any) -> str:
    """The text of the last user message (OpenAI or Anthropic shape), or ''."""
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            texts = [p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"]
            if texts:
                return " ".join(texts)
        return ""
    return ""


def fake_vector(text: str, dims: int = 8) -> list:
    """A deterministic vector for ``text``: what the embeddings fakes answer."""
    seed = sum(text.encode("utf-8")) % 97
    return [round(((seed + 7 * i) % 23 - 11) / 16.0, 4) for i in range(dims)]


def vector_base64(vector: list) -> str:
    """``vector`` as OpenAI's ``base64`` encoding: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _pieces(text: str) -> list:
    """Splits text into word-sized stream deltas that concatenate back to it."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [text]


# ---------------------------------------------------------------------------------------------
# OpenAI / OpenAI-compatible


def openai_completion(content: Optional[str] = "Hello!", model: str = "gpt-4o-mini",
                      finish_reason: str = "stop", usage: Optional[dict] = None,
                      tool_calls: Optional[list] = None, id: str = "chatcmpl-fake",
                      **extra: Any) -> dict:
    message: dict = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage if usage is not None else {
            "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_fake",
    }
    body.update(extra)
    return body


def openai_chunk(delta: Optional[dict] = None, finish_reason: Optional[str] = None,
                 model: str = "gpt-4o-mini", id: str = "chatcmpl-fake", usage: Any = None,
                 choices: Optional[list] = None, created: Optional[int] = None) -> dict:
    if choices is None:
        choices = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
    chunk = {"id": id, "object": "chat.completion.chunk", "created": created or int(time.time()),
             "model": model, "system_fingerprint": "fp_fake", "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def openai_stream(text: str = "Hello there!", model: str = "gpt-4o-mini", include_usage: bool = True,
                  usage: Optional[dict] = None, delay: float = 0.0, finish_reason: str = "stop",
                  id: str = "chatcmpl-fake", pieces: Optional[list] = None) -> list:
    """The events of a streamed OpenAI chat completion (role, text pieces, finish, usage, DONE)."""
    created = int(time.time())
    events = [Event(openai_chunk({"role": "assistant", "content": ""}, model=model, id=id, created=created), delay=delay)]
    for p in pieces if pieces is not None else _pieces(text):
        events.append(Event(openai_chunk({"content": p}, model=model, id=id, created=created), delay=delay))
    events.append(Event(openai_chunk({}, finish_reason=finish_reason, model=model, id=id, created=created), delay=delay))
    if include_usage:
        u = usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                      "prompt_tokens_details": {"cached_tokens": 0}}
        events.append(Event(openai_chunk(choices=[], usage=u, model=model, id=id, created=created), delay=delay))
    events.append(Event("[DONE]", delay=delay))
    return events


def openai_error(status: int, message: str, type: str = "invalid_request_error",
                 code: Any = None, param: Any = None) -> Reply:
    return Reply(status=status, json={"error": {"message": message, "type": type, "param": param, "code": code}})


class OpenAIFake(FakeProvider):
    """OpenAI-compatible provider: ``POST /v1/chat/completions`` (and ``GET /v1/models``)."""

    kind = "openai"

    def routes(self, rec: Recorded) -> Optional[str]:
        if rec.method == "POST" and rec.path.endswith("/chat/completions"):
            return "chat"
        if rec.method == "POST" and rec.path.endswith("/embeddings"):
            return "embeddings"
        if rec.method == "GET" and rec.path.endswith("/models"):
            return "models"
        return None

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if self.api_key is None:
            return None
        if rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        if self.routes(rec) == "models":
            return Reply(json={"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "fake"}]})
        if self.routes(rec) == "embeddings":
            return self.embeddings_reply(rec)
        body = rec.json
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return openai_error(400, "you must provide a model parameter and messages")
        model = str(body["model"])
        text = f"echo: {last_user_text(body['messages'])}"
        n = self._next_id()
        cid = f"chatcmpl-fake{n}"
        if body.get("stream") is True:
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Reply.sse(openai_stream(text, model=model, include_usage=wants_usage, id=cid))
        return Reply(json=openai_completion(text, model=model, id=cid))

    @staticmethod
    def embeddings_reply(rec: Recorded) -> Reply:
        """OpenAI's embeddings answer: one vector per input (strings or token arrays)."""
        body = rec.json
        if not isinstance(body, dict) or not body.get("model") or "input" not in body:
            return openai_error(400, "you must provide a model parameter and input")
        items = body["input"]
        if isinstance(items, str) or (isinstance(items, list) and items and isinstance(items[0], int)):
            items = [items]
        if not isinstance(items, list) or not items:
            return openai_error(400, "'$.input' is invalid.", param="input")
        dims = int(body.get("dimensions") or 8)
        b64 = body.get("encoding_format") == "base64"
        data, tokens = [], 0
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += len(text.split()) if isinstance(item, str) else len(item)
            v = fake_vector(text, dims)
            data.append({"object": "embedding", "index": i, "embedding": vector_base64(v) if b64 else v})
        return Reply(json={"object": "list", "data": data, "model": str(body["model"]),
                           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# ---------------------------------------------------------------------------------------------
# Azure OpenAI (https://learn.microsoft.com/azure/ai-foundry/openai/reference)

AZURE_SAFE = {"hate": {"filtered": False, "severity": "safe"},
              "self_harm": {"filtered": False, "severity": "safe"},
              "sexual": {"filtered": False, "severity": "safe"},
              "violence": {"filtered": False, "severity": "safe"}}


def azure_prompt_filter_chunk() -> dict:
    """The first chunk of an Azure stream: prompt-filter results and no choices."""
    return {"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": AZURE_SAFE}]}


def azure_content_filter_error(category: str = "hate") -> Reply:
    """Azure's 400 for a prompt its content filter blocked, with the verdict in `innererror`."""
    result = {k: dict(v) for k, v in AZURE_SAFE.items()}
    result[category] = {"filtered": True, "severity": "high"}
    return Reply(status=400, json={"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result}}})


class AzureFake(OpenAIFake):
    """Azure OpenAI: the deployment path (`/openai/deployments/<d>/chat/completions?api-version=`)
    and the v1 path (`/openai/v1/chat/completions`); the key in `api-key` or an Entra ID token
    as a bearer token; answers carry content-filter results and streams open with the
    prompt-filter chunk that has no choices."""

    kind = "azure"

    def __init__(self, *a: Any, token: Optional[str] = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.token = token

    def routes(self, rec: Recorded) -> Optional[str]:
        if rec.method != "POST":
            return None
        if rec.path == "/openai/v1/chat/completions" and "api-version" not in rec.query:
            return "chat"
        parts = rec.path.split("/")
        if (len(parts) == 6 and parts[1:3] == ["openai", "deployments"] and parts[4:] == ["chat", "completions"]
                and rec.query.get("api-version")):
            return "chat"
        return None

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if rec.headers.get("api-key") == self.api_key and self.api_key is not None:
            return None
        if self.token is not None and rec.headers.get("authorization") == f"Bearer {self.token}":
            return None
        if self.api_key is None and self.token is None:
            return None
        return Reply(status=401, json={"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})

    def default_reply(self, rec: Recorded) -> Reply:
        reply = super().default_reply(rec)
        if reply.status != 200:
            return reply
        if reply.events is not None:
            for e in reply.events:
                if isinstance(e.data, dict):
                    for c in e.data.get("choices", []):
                        c["content_filter_results"] = AZURE_SAFE
            reply.events.insert(0, Event(azure_prompt_filter_chunk()))
        elif isinstance(reply.json, dict):
            reply.json["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": AZURE_SAFE}]
            for c in reply.json["choices"]:
                c["content_filter_results"] = AZURE_SAFE
        return reply


# ---------------------------------------------------------------------------------------------
# Anthropic Messages


def anthropic_message(content: Any = "Hello!", model: str = "claude-sonnet-4-5",
                      stop_reason: str = "end_turn", usage: Optional[dict] = None,
                      id: str = "msg_fake", stop_sequence: Optional[str] = None) -> dict:
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage if usage is not None else {
            "input_tokens": 12, "output_tokens": 6,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        },
    }


def anthropic_event(kind: str, delay: float = 0.0, **fields: Any) -> Event:
    """An Anthropic SSE event: ``event: kind`` and ``data: {"type": kind, ...fields}``."""
    return Event(data={"type": kind, **fields}, event=kind, delay=delay)


def anthropic_stream(text: Any = "Hello there!", model: str = "claude-sonnet-4-5",
                     stop_reason: str = "end_turn", input_tokens: int = 12, output_tokens: int = 6,
                     cache_read: int = 0, cache_write: int = 0, delay: float = 0.0,
                     id: str = "msg_fake", ping: bool = True, pieces: Optional[list] = None,
                     blocks: Optional[list] = None) -> list:
    """The events of a streamed Anthropic message.

    By default one text block made of ``pieces`` (or ``text`` split into words). ``blocks``
    gives several content blocks instead, each ``("text", [pieces])``,
    ``("thinking", [pieces])`` or ``("tool_use", id, name, [json fragments])``.
    """
    if blocks is None:
        blocks = [("text", pieces if pieces is not None else _pieces(text))]
    events = [anthropic_event("message_start", delay=delay, message={
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                  "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read},
    })]
    for index, block in enumerate(blocks):
        kind = block[0]
        if kind == "text":
            events.append(anthropic_event("content_block_start", delay=delay, index=index,
                                          content_block={"type": "text", "text": ""}))
            for p in block[1]:
                events.append(anthropic_event("content_block_delta", delay=delay, index=index,
                                              delta={"type": "text_delta", "text": p}))
        elif kind == "thinking":
            events.append(anthropic_event("content_block_start", delay=delay, index=index,
                                          content_block={"type": "thinking", "thinking": "", "signature": ""}))
            for p in block[1]:
                events.append(anthropic_event("content_block_delta", delay=delay, index=index,
                                              delta={"type": "thinking_delta", "thinking": p}))
            events.append(anthropic_event("content_block_delta", delay=delay, index=index,
                                          delta={"type": "signature_delta", "signature": "sig-fake"}))
        elif kind == "tool_use":
            _, tool_id, name, fragments = block
            events.append(anthropic_event("content_block_start", delay=delay, index=index,
                                          content_block={"type": "tool_use", "id": tool_id, "name": name, "input": {}}))
            for f in fragments:
                events.append(anthropic_event("content_block_delta", delay=delay, index=index,
                                              delta={"type": "input_json_delta", "partial_json": f}))
        else:
            raise ValueError(f"unknown block kind {kind}")
        events.append(anthropic_event("content_block_stop", delay=delay, index=index))
    if ping:
        # The real API sends a ping right after the first content_block_start.
        at = next((i for i, e in enumerate(events) if e.event == "content_block_start"), 0) + 1
        events.insert(at, anthropic_event("ping", delay=delay))
    events.append(anthropic_event("message_delta", delay=delay,
                                  delta={"stop_reason": stop_reason, "stop_sequence": None},
                                  usage={"output_tokens": output_tokens}))
    events.append(anthropic_event("message_stop", delay=delay))
    return events


def anthropic_error(status: int, message: str, type: str = "invalid_request_error") -> Reply:
    return Reply(status=status, json={"type": "error", "error": {"type": type, "message": message}},
                 headers={"request-id": "req_fake"})


class AnthropicFake(FakeProvider):
    """Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
    (https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/messages-count-tokens).

    A request with ``thinking`` enabled is answered with a signed thinking block before the
    text, as the real API does."""

    kind = "anthropic"

    def routes(self, rec: Recorded) -> Optional[str]:
        if rec.method == "POST" and rec.path == "/v1/messages":
            return "messages"
        if rec.method == "POST" and rec.path == "/v1/messages/count_tokens":
            return "count_tokens"
        return None

    def not_found(self, rec: Recorded) -> Reply:
        return anthropic_error(404, f"Not found: {rec.path}", "not_found_error")

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if self.api_key is None:
            return None
        if rec.headers.get("x-api-key") != self.api_key:
            return anthropic_error(401, "invalid x-api-key", "authentication_error")
        if not rec.headers.get("anthropic-version"):
            return anthropic_error(400, "anthropic-version: header is required")
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        body = rec.json
        if not isinstance(body, dict):
            return anthropic_error(400, "invalid JSON body")
        required = ("model", "messages") if self.routes(rec) == "count_tokens" else ("model", "messages", "max_tokens")
        for f in required:
            if f not in body:
                return anthropic_error(400, f"{f}: Field required")
        msgs = body["messages"]
        if not isinstance(msgs, list) or not msgs:
            return anthropic_error(400, "messages: at least one message is required")
        for i, m in enumerate(msgs):
            # `system` between turns: what Claude Code 2.1 sends (instructions mid-conversation).
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
                return anthropic_error(400, f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
        if self.routes(rec) == "count_tokens":
            return Reply(json={"input_tokens": max(1, len(rec.body) // 4)})
        model = str(body["model"])
        text = f"echo: {last_user_text(msgs)}"
        return anthropic_answer(body, text, model, f"msg_fake{self._next_id()}")


def anthropic_answer(body: dict, text: str, model: str, mid: str = "msg_fake") -> Reply:
    """The answer to a Messages request ``body``: ``text``, after a signed thinking block
    when the request enables thinking; streamed when it asks for a stream."""
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    if body.get("stream") is True:
        blocks = [("text", _pieces(text))]
        if thinking:
            blocks.insert(0, ("thinking", ["Let me ", "think."]))
        return Reply.sse(anthropic_stream(text, model=model, id=mid, blocks=blocks))
    content = [{"type": "text", "text": text}]
    if thinking:
        content.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"})
    return Reply(json=anthropic_message(content, model=model, id=mid))


# ---------------------------------------------------------------------------------------------
# Gemini (for the provider that lands later)

_GEMINI_PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<op>generateContent|streamGenerateContent|batchEmbedContents)$")


def gemini_response(text: str = "Hello!", finish_reason: str = "STOP", prompt_tokens: int = 9,
                    output_tokens: int = 5, model: str = "gemini-2.5-flash") -> dict:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": finish_reason, "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                          "totalTokenCount": prompt_tokens + output_tokens},
        "modelVersion": model,
    }


class GeminiFake(FakeProvider):
    """Gemini API: ``POST /v1beta/models/{model}:generateContent`` and
    ``:streamGenerateContent?alt=sse``."""

    kind = "gemini"

    def routes(self, rec: Recorded) -> Optional[str]:
        m = _GEMINI_PATH.match(rec.path)
        if rec.method != "POST" or not m:
            return None
        if m.group("op") == "streamGenerateContent":
            return "stream" if rec.query.get("alt") == "sse" else "stream_json"
        if m.group("op") == "batchEmbedContents":
            return "embed"
        return "generate"

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if self.api_key is None:
            return None
        if rec.headers.get("x-goog-api-key") != self.api_key and rec.query.get("key") != self.api_key:
            return Reply(status=400, json={"error": {"code": 400, "message": "API key not valid.",
                                                      "status": "INVALID_ARGUMENT"}})
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        m = _GEMINI_PATH.match(rec.path)
        model = m.group("model") if m else "gemini"
        body = rec.json if isinstance(rec.json, dict) else {}
        if self.routes(rec) == "embed":
            return self.embed_reply(model, body)
        text = ""
        for c in reversed(body.get("contents") or []):
            if isinstance(c, dict) and c.get("role", "user") == "user":
                text = " ".join(p.get("text", "") for p in c.get("parts") or [] if isinstance(p, dict))
                break
        answer = f"echo: {text}"
        if self.routes(rec) == "stream":
            pieces = _pieces(answer)
            events = []
            for i, p in enumerate(pieces):
                last = i == len(pieces) - 1
                chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}],
                         "modelVersion": model}
                if last:
                    chunk["candidates"][0]["finishReason"] = "STOP"
                    chunk["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 5,
                                              "totalTokenCount": 14}
                events.append(Event(chunk))
            return Reply.sse(events)
        return Reply(json=gemini_response(answer, model=model))

    @staticmethod
    def embed_reply(model: str, body: dict) -> Reply:
        """``batchEmbedContents``: ``{"embeddings": [{"values": [...]}]}``, no usage; at most
        100 requests, each naming this model."""
        reqs = body.get("requests")
        bad = lambda m: Reply(status=400, json={"error": {"code": 400, "message": m, "status": "INVALID_ARGUMENT"}})
        if not isinstance(reqs, list) or not reqs:
            return bad("* BatchEmbedContentsRequest.requests: requests must not be empty")
        if len(reqs) > 100:
            return bad("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        out = []
        for i, r in enumerate(reqs):
            if not isinstance(r, dict) or r.get("model") != f"models/{model}":
                return bad(f"* BatchEmbedContentsRequest.requests[{i}].model: must be models/{model}")
            parts = ((r.get("content") or {}).get("parts")) or []
            text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
            out.append({"values": fake_vector(text, int(r.get("outputDimensionality") or 8))})
        return Reply(json={"embeddings": out})


# ---------------------------------------------------------------------------------------------
# Cohere v2 Chat (https://docs.cohere.com/reference/chat, .../chat-stream)


def cohere_usage(input_tokens: int = 9, output_tokens: int = 5) -> dict:
    """`usage` as Cohere reports it: billed units (what is charged) and processed tokens,
    which add the prompt template."""
    return {"billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "tokens": {"input_tokens": input_tokens + 200, "output_tokens": output_tokens},
            "cached_tokens": 0}


def cohere_message(text: Optional[str] = "Hello!", tool_calls: Optional[list] = None,
                   tool_plan: Optional[str] = None, finish_reason: str = "COMPLETE",
                   id: str = "c0c0c0c0-0000-4000-8000-000000000001", usage: Optional[dict] = None) -> dict:
    message: dict = {"role": "assistant"}
    if text is not None:
        message["content"] = [{"type": "text", "text": text}]
    if tool_plan is not None:
        message["tool_plan"] = tool_plan
    if tool_calls:
        message["tool_calls"] = [{"id": c.get("id", f"{c['name']}_{i}"), "type": "function",
                                  "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                                 for i, c in enumerate(tool_calls)]
    return {"id": id, "finish_reason": finish_reason, "message": message, "usage": usage or cohere_usage()}


def cohere_event(kind: str, **fields: Any) -> Event:
    return Event({"type": kind, **fields}, event=kind)


def cohere_stream(text: str = "Hello there!", tool_calls: Optional[list] = None,
                  finish_reason: str = "COMPLETE", id: str = "c0c0c0c0-0000-4000-8000-000000000002",
                  usage: Optional[dict] = None) -> list:
    """A v2 chat stream: message-start, one content block in pieces (or tool calls with
    their arguments in two pieces), message-end with usage."""
    events = [cohere_event("message-start", id=id, delta={"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}})]
    if text:
        events.append(cohere_event("content-start", index=0,
                                   delta={"message": {"content": {"type": "text", "text": ""}}}))
        for piece in _pieces(text):
            events.append(cohere_event("content-delta", index=0,
                                       delta={"message": {"content": {"text": piece}}}))
        events.append(cohere_event("content-end", index=0))
    for i, c in enumerate(tool_calls or []):
        args = json.dumps(c.get("arguments", {}))
        events.append(cohere_event("tool-call-start", index=i, delta={"message": {"tool_calls": {
            "id": c.get("id", f"{c['name']}_{i}"), "type": "function",
            "function": {"name": c["name"], "arguments": ""}}}}))
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            events.append(cohere_event("tool-call-delta", index=i,
                                       delta={"message": {"tool_calls": {"function": {"arguments": piece}}}}))
        events.append(cohere_event("tool-call-end", index=i))
    events.append(cohere_event("message-end", delta={"finish_reason": finish_reason,
                                                     "usage": usage or cohere_usage()}))
    return events


def cohere_error(status: int, message: str) -> Reply:
    return Reply(status=status, json={"id": "e0e0e0e0-0000-4000-8000-000000000000", "message": message})


class CohereFake(FakeProvider):
    """Cohere v2 Chat API: ``POST /v2/chat`` with ``Authorization: Bearer``."""

    kind = "cohere"

    def routes(self, rec: Recorded) -> Optional[str]:
        if rec.method == "POST" and rec.path == "/v2/chat":
            return "chat"
        if rec.method == "POST" and rec.path == "/v2/embed":
            return "embed"
        return None

    def not_found(self, rec: Recorded) -> Reply:
        return cohere_error(404, f"no route {rec.method} {rec.path}")

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if self.api_key is None:
            return None
        if rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return cohere_error(401, "invalid api token")
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        body = rec.json
        if not isinstance(body, dict):
            return cohere_error(400, "invalid request: body must be a JSON object")
        if self.routes(rec) == "embed":
            return self.embed_reply(body)
        for f in ("model", "messages"):
            if f not in body:
                return cohere_error(400, f"invalid request: {f} is required")
        msgs = body["messages"]
        if not isinstance(msgs, list) or not msgs:
            return cohere_error(400, "invalid request: messages must not be empty")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                return cohere_error(400, f"invalid request: messages[{i}].role must be system, user, assistant or tool")
        text = f"echo: {last_user_text(msgs)}"
        n = self._next_id()
        mid = f"c0c0c0c0-0000-4000-8000-{n:012d}"
        if body.get("stream") is True:
            return Reply.sse(cohere_stream(text, id=mid))
        return Reply(json=cohere_message(text, id=mid))

    @staticmethod
    def embed_reply(body: dict) -> Reply:
        """``/v2/embed``: ``embeddings`` by type, ``meta.billed_units.input_tokens``; at most
        96 texts; ``input_type`` required for v3+ models."""
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            return cohere_error(400, "invalid request: texts must not be empty")
        if len(texts) > 96:
            return cohere_error(400, f"invalid request: texts can only have up to 96 elements, but got {len(texts)}")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
            return cohere_error(400, "invalid request: valid input_type must be provided with the provided model")
        types = body.get("embedding_types") or ["float"]
        dims = int(body.get("output_dimension") or 8)
        vectors = [fake_vector(t, dims) for t in texts]
        embeddings = {}
        for t in types:
            if t == "float":
                embeddings["float"] = vectors
            elif t == "base64":
                embeddings["base64"] = [vector_base64(v) for v in vectors]
            else:
                return cohere_error(400, f"invalid request: embedding type {t} is not supported by the fake")
        tokens = sum(len(t.split()) for t in texts)
        return Reply(json={"id": "e1e1e1e1-0000-4000-8000-000000000001", "embeddings": embeddings,
                           "texts": texts, "meta": {"api_version": {"version": "2"},
                                                    "billed_units": {"input_tokens": tokens}},
                           "response_type": "embeddings_by_type"})


# ---------------------------------------------------------------------------------------------
# Standalone demo provider


def _demo_default(kind: str) -> Callable[[Recorded], Reply]:
    def handler(rec: Recorded) -> Reply:
        body = rec.json if isinstance(rec.json, dict) else {}
        model = str(body.get("model") or "unknown-model")
        question = last_user_text(body.get("messages"))
        text = (f"Hello from the demo provider! You are talking to {model}. "
                f"You said: {question!r}" if question else
                f"Hello from the demo provider! You are talking to {model}.")
        stream = body.get("stream") is True
        if rec.path.endswith("/responses"):
            from responses_fakes import last_input_text, message_item, responses_reply
            question = last_input_text(body)
            text = (f"Hello from the demo provider! You are talking to {model}. "
                    f"You said: {question!r}")
            return responses_reply([message_item(text)])(rec)
        if kind == "anthropic":
            if stream:
                return Reply.sse(anthropic_stream(text, model=model, delay=0.02))
            return Reply(json=anthropic_message(text, model=model))
        if stream:
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Reply.sse(openai_stream(text, model=model, include_usage=wants_usage, delay=0.02))
        return Reply(json=openai_completion(text, model=model))
    return handler


def _main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a keyless demo provider until interrupted")
    demo.add_argument("--port", type=int, default=18080)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--kind", choices=["openai", "anthropic"], default="openai")
    demo.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    # The OpenAI demo also speaks the Responses API (what Codex sends); run as a script,
    # this module is `__main__`, and the Responses fake must extend this very module.
    sys.modules.setdefault("fakes", sys.modules[__name__])
    from responses_fakes import ResponsesOpenAIFake
    cls = AnthropicFake if args.kind == "anthropic" else ResponsesOpenAIFake
    fake = cls(port=args.port, host=args.host, name=f"demo-{args.kind}", verbose=args.verbose)
    fake.set_default(_demo_default(args.kind))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    path = "/v1/messages" if args.kind == "anthropic" else "/v1/chat/completions, /v1/responses"
    print(f"demo {args.kind} provider listening on {fake.url} ({path})", flush=True)
    while not stop.wait(0.5):
        # keep memory bounded when it runs for a long time
        with fake._lock:
            if len(fake._requests) > 1000:
                del fake._requests[:-100]
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
