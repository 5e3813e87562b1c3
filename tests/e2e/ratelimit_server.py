"""A rate limit service for the end-to-end suite: Envoy's global rate limit protocol
(``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` over gRPC), with the
counting rules of the reference implementation (envoyproxy/ratelimit), in memory.

The reference service is a Go program backed by Redis; this one stands in for it in the
tests. It speaks the real wire format, encoded and decoded by hand below from the field
numbers of Envoy's protos:

* ``envoy/service/ratelimit/v3/rls.proto``::

      RateLimitRequest  { string domain = 1; repeated RateLimitDescriptor descriptors = 2;
                          uint32 hits_addend = 3; }
      RateLimitResponse { Code overall_code = 1; repeated DescriptorStatus statuses = 2;
                          repeated HeaderValue response_headers_to_add = 3; bytes raw_body = 5; }
      DescriptorStatus  { Code code = 1; RateLimit current_limit = 2; uint32 limit_remaining = 3;
                          google.protobuf.Duration duration_until_reset = 4; }
      RateLimit         { uint32 requests_per_unit = 1; Unit unit = 2; string name = 3; }
      Code              { UNKNOWN = 0; OK = 1; OVER_LIMIT = 2; }

* ``envoy/extensions/common/ratelimit/v3/ratelimit.proto``::

      RateLimitDescriptor { repeated Entry entries = 1; RateLimitOverride limit = 2;
                            google.protobuf.UInt64Value hits_addend = 3; }
      Entry               { string key = 1; string value = 2; }
      RateLimitOverride   { uint32 requests_per_unit = 1; RateLimitUnit unit = 2; }

Counting follows the reference service: the configuration is its YAML (``domain``, a tree
of ``descriptors`` with ``key``, optional ``value``, ``rate_limit: {unit,
requests_per_unit}`` or ``unlimited``); a descriptor's entries walk the tree, an exact
``key``+``value`` first, then ``key`` alone (one counter per distinct value); the limit is
the one on the node the last entry reaches. Windows are fixed and aligned to the epoch
(month = 30 days). A descriptor's hits are its own ``hits_addend`` when present (0 means
"check only, count nothing"), else the request's ``hits_addend``, at least 1. A descriptor
is over its limit when its counter, after adding the hits, exceeds the limit; the hits
are counted either way.

Every request is recorded (:attr:`RateLimitServer.calls`) with its decoded descriptors and
the answer given.

Run ``python3 tests/e2e/ratelimit_server.py --port 8081 --config envoy/ratelimit/config.yaml``
for a standalone service.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import grpc
import yaml

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
METHOD = "ShouldRateLimit"

OK = 1
OVER_LIMIT = 2

# RateLimitResponse.RateLimit.Unit, and the window length the reference service uses.
UNITS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6, "week": 7}
UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400, 5: 30 * 86400, 6: 365 * 86400, 7: 7 * 86400}


# ---------------------------------------------------------------------------------------------
# Protobuf wire format (varint and length-delimited fields only: all these messages need)


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple:
    shift = 0
    value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yields (field number, wire type, value): an int for varints, bytes for
    length-delimited fields; fixed-width fields are skipped."""
    i = 0
    while i < len(buf):
        tag, i = _read_varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
            yield number, wire, value
        elif wire == 2:
            length, i = _read_varint(buf, i)
            if i + length > len(buf):
                raise ValueError("truncated field")
            yield number, wire, buf[i:i + length]
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


@dataclass
class Descriptor:
    """One decoded RateLimitDescriptor."""

    entries: list  # [(key, value)]
    hits_addend: Optional[int] = None  # the UInt64Value wrapper; None when absent
    limit: Optional[tuple] = None  # (requests_per_unit, unit) override

    def get(self, key: str) -> Optional[str]:
        for k, v in self.entries:
            if k == key:
                return v
        return None


@dataclass
class Request:
    """One decoded RateLimitRequest."""

    domain: str
    descriptors: list
    hits_addend: int = 0


def decode_request(data: bytes) -> Request:
    req = Request(domain="", descriptors=[])
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            req.domain = value.decode()
        elif number == 2 and wire == 2:
            req.descriptors.append(_decode_descriptor(value))
        elif number == 3 and wire == 0:
            req.hits_addend = value
    return req


def _decode_descriptor(data: bytes) -> Descriptor:
    d = Descriptor(entries=[])
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            key = val = ""
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    key = v.decode()
                elif n == 2 and w == 2:
                    val = v.decode()
            d.entries.append((key, val))
        elif number == 2 and wire == 2:
            rpu = unit = 0
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    rpu = v
                elif n == 2 and w == 0:
                    unit = v
            d.limit = (rpu, unit)
        elif number == 3 and wire == 2:
            d.hits_addend = 0
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    d.hits_addend = v
    return d


def encode_request(req: Request) -> bytes:
    """The client side, for tests of the codec itself."""
    out = _field_bytes(1, req.domain.encode()) if req.domain else b""
    for d in req.descriptors:
        body = b""
        for k, v in d.entries:
            body += _field_bytes(1, _field_bytes(1, k.encode()) + _field_bytes(2, v.encode()))
        if d.hits_addend is not None:
            body += _field_bytes(3, _field_varint(1, d.hits_addend))
        out += _field_bytes(2, body)
    return out + _field_varint(3, req.hits_addend)


@dataclass
class Status:
    """One DescriptorStatus of an answer."""

    code: int
    limit: Optional[tuple] = None  # (requests_per_unit, unit, name)
    remaining: int = 0
    reset_seconds: Optional[int] = None


@dataclass
class Response:
    overall_code: int
    statuses: list
    headers: list = field(default_factory=list)  # [(name, value)] response_headers_to_add


def encode_response(resp: Response) -> bytes:
    out = _field_varint(1, resp.overall_code)
    for s in resp.statuses:
        body = _field_varint(1, s.code)
        if s.limit is not None:
            rpu, unit, name = s.limit
            limit = _field_varint(1, rpu) + _field_varint(2, unit)
            if name:
                limit += _field_bytes(3, name.encode())
            body += _field_bytes(2, limit)
        body += _field_varint(3, s.remaining)
        if s.reset_seconds is not None:
            body += _field_bytes(4, _field_varint(1, s.reset_seconds))
        out += _field_bytes(2, body)
    for name, value in resp.headers:
        out += _field_bytes(3, _field_bytes(1, name.encode()) + _field_bytes(2, value.encode()))
    return out


def decode_response(data: bytes) -> Response:
    resp = Response(overall_code=0, statuses=[])
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            resp.overall_code = value
        elif number == 2 and wire == 2:
            s = Status(code=0)
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    s.code = v
                elif n == 2 and w == 2:
                    rpu = unit = 0
                    name = ""
                    for n2, w2, v2 in _fields(v):
                        if n2 == 1 and w2 == 0:
                            rpu = v2
                        elif n2 == 2 and w2 == 0:
                            unit = v2
                        elif n2 == 3 and w2 == 2:
                            name = v2.decode()
                    s.limit = (rpu, unit, name)
                elif n == 3 and w == 0:
                    s.remaining = v
                elif n == 4 and w == 2:
                    s.reset_seconds = 0
                    for n2, w2, v2 in _fields(v):
                        if n2 == 1 and w2 == 0:
                            s.reset_seconds = v2
            resp.statuses.append(s)
    return resp


# ---------------------------------------------------------------------------------------------
# Configuration and counting


@dataclass
class _Node:
    limit: Optional[tuple] = None  # (requests_per_unit, unit)
    unlimited: bool = False
    children: dict = field(default_factory=dict)  # "key_value" or "key" -> _Node


def _parse_descriptors(items: Any, where: str) -> dict:
    out: dict = {}
    for i, item in enumerate(items or []):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or not item.get("key"):
            raise ValueError(f"{at}: a descriptor needs a key")
        node = _Node(unlimited=bool(item.get("unlimited", False)))
        rl = item.get("rate_limit")
        if rl is not None:
            unit = UNITS.get(str(rl.get("unit", "")).lower())
            if unit is None:
                raise ValueError(f"{at}.rate_limit.unit: one of {', '.join(UNITS)}")
            node.limit = (int(rl["requests_per_unit"]), unit)
        node.children = _parse_descriptors(item.get("descriptors"), f"{at}.descriptors")
        name = item["key"] if item.get("value") in (None, "") else f"{item['key']}_{item['value']}"
        if name in out:
            raise ValueError(f"{at}: duplicate descriptor {name}")
        out[name] = node
    return out


@dataclass
class Call:
    """One ShouldRateLimit call as received, and the answer given."""

    request: Request
    response: Response
    received_at: float


class RateLimitServer:
    """The service on 127.0.0.1 (an ephemeral port unless given), in a background thread."""

    def __init__(self, config: Optional[dict] = None, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._domains: dict = {}
        self._counters: dict = {}
        self._calls: list = []
        self._requested_port = port
        self._port = 0
        self._server: Optional[grpc.Server] = None
        self.clock = time.time
        if config is not None:
            self.load(config)

    # -- configuration --

    def load(self, *configs: dict) -> None:
        """Replaces the configuration with these reference-service YAML documents (one
        per domain); counters are kept, as the reference service keeps them."""
        domains = {}
        for doc in configs:
            domain = doc.get("domain")
            if not domain:
                raise ValueError("a rate limit config needs a domain")
            domains[domain] = _parse_descriptors(doc.get("descriptors"), "descriptors")
        with self._lock:
            self._domains = domains

    def load_file(self, path: Path) -> None:
        self.load(*[d for d in yaml.safe_load_all(Path(path).read_text()) if d])

    # -- lifecycle --

    def start(self) -> "RateLimitServer":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        handler = grpc.unary_unary_rpc_method_handler(
            self._should_rate_limit, request_deserializer=decode_request,
            response_serializer=encode_response)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
        port = server.add_insecure_port(f"127.0.0.1:{self._requested_port or self._port}")
        if not port:
            raise RuntimeError("could not bind the rate limit service")
        self._port = port
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stops answering (a later :meth:`start` serves on the same port again)."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> "RateLimitServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    # -- records --

    @property
    def calls(self) -> list:
        with self._lock:
            return list(self._calls)

    def descriptors(self) -> list:
        """Every descriptor received, in order, with the hits it counted."""
        return [d for c in self.calls for d in c.request.descriptors]

    def reset(self) -> None:
        """Forgets calls and counters (not the configuration)."""
        with self._lock:
            self._calls.clear()
            self._counters.clear()

    def wait_for(self, predicate, timeout: float = 5.0) -> list:
        """Waits until ``predicate(descriptors())`` holds; returns the descriptors."""
        deadline = time.monotonic() + timeout
        while True:
            ds = self.descriptors()
            if predicate(ds) or time.monotonic() > deadline:
                return ds
            time.sleep(0.05)

    def counter(self, domain: str, entries: list) -> int:
        """The current window's count for a descriptor (0 when it has no limit)."""
        with self._lock:
            limit = self._limit_for(domain, Descriptor(entries=list(entries)))
            if limit is None:
                return 0
            return self._counters.get(self._cache_key(domain, entries, limit), 0)

    # -- the service --

    def _limit_for(self, domain: str, d: Descriptor) -> Optional[tuple]:
        if d.limit is not None:
            return d.limit
        level = self._domains.get(domain)
        node = None
        for key, value in d.entries:
            if level is None:
                return None
            node = level.get(f"{key}_{value}") or level.get(key)
            if node is None:
                return None
            level = node.children
        if node is None or node.unlimited:
            return None
        return node.limit

    def _cache_key(self, domain: str, entries: list, limit: tuple) -> tuple:
        window = UNIT_SECONDS[limit[1]]
        now = int(self.clock())
        return domain, tuple(entries), now - now % window

    def _should_rate_limit(self, request: Request, context: Any) -> Response:
        return self.check(request)

    def check(self, request: Request) -> Response:
        """Answers and records one request, as a call over gRPC would."""
        statuses = []
        overall = OK
        with self._lock:
            for d in request.descriptors:
                hits = d.hits_addend if d.hits_addend is not None else max(1, request.hits_addend)
                limit = self._limit_for(request.domain, d)
                if limit is None:
                    statuses.append(Status(code=OK))
                    continue
                key = self._cache_key(request.domain, d.entries, limit)
                after = self._counters.get(key, 0) + hits
                self._counters[key] = after
                window = UNIT_SECONDS[limit[1]]
                reset = window - int(self.clock()) % window
                if after > limit[0]:
                    overall = OVER_LIMIT
                    statuses.append(Status(OVER_LIMIT, (limit[0], limit[1], ""), 0, reset))
                else:
                    statuses.append(Status(OK, (limit[0], limit[1], ""), limit[0] - after, reset))
            response = Response(overall_code=overall, statuses=statuses)
            self._calls.append(Call(request, response, time.monotonic()))
        return response


# ---------------------------------------------------------------------------------------------
# Standalone


def _main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--config", type=Path, required=True,
                        help="rate limit config in the reference service's YAML format")
    args = parser.parse_args(argv)
    server = RateLimitServer(port=args.port)
    server.load_file(args.config)
    server.start()
    print(f"rate limit service on {server.address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
