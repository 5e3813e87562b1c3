#!/usr/bin/env python3
"""`make bench`: what the gateway costs on top of plain Envoy, per core.

Everything runs on 127.0.0.1 on one machine:

* the Envoy under test (the gateway, or plain Envoy as the floor) on core 0, one worker;
* the fake provider (a second Envoy answering canned bodies with `direct_response`), the
  paced SSE provider (`sse_server.rs`) and the load generator (wrk) on core 1.

For every scenario the floor (plain Envoy proxying the same request body to the same fake
answer, untranslated) and the gateway are measured back to back in the same run:

* throughput: wrk, 1 thread, C connections, closed loop, after a warm-up, in short rounds
  that alternate the targets; the figure counts only if every answer was 2xx and there was
  no socket error;
* a no-op wasm filter on plain Envoy (noop-filter/) for a few scenarios: the platform's
  share; optionally a candidate .wasm measured in the same rounds;
* latency at a fixed moderate rate: wrk, 4 connections each waiting 10 ms between
  requests (about 400 req/s, far below saturation), p50/p90/p99 over the run;
* Envoy CPU per request from /proc/<pid>/task/*/schedstat, which stays right even when
  something other than the Envoy core limits the throughput;
* paced streams (one event per write, 200 µs apart): Envoy CPU per upstream event.

Then Envoy RSS (VmRSS) at 1 worker after the run, and at 2 workers idle, right after load
and a few seconds later (the figure judged against the target, also split into private
anonymous memory and pages of files);
the `.wasm` size; and the native instruction counts of the translation core under
callgrind. Writes bench/out/results.json and bench/out/results.md.

Every process started here is stopped by PID at exit (also on Ctrl-C / SIGTERM); every
wait is bounded.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

MASTER_KEY = "sk-bench-master"
PROVIDER_KEY = "sk-provider-bench"

PORTS = {
    "gateway": 14000,
    "gateway_admin": 14901,
    "floor": 15000,
    "floor_admin": 15901,
    "noop": 16000,
    "noop_admin": 16901,
    "candidate": 17000,
    "candidate_admin": 17901,
    "fake": 18001,
    "fake_429": 18002,
    "paced": 18003,
    "fake_admin": 18901,
}

# Fake AWS credentials every Envoy under test gets in its environment, as Envoy's AWS
# credential chain reads them in production: the gateway's signer signs Bedrock requests
# with them (the fake provider answers only signed ones). No instance metadata lookups.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHFAKE0000001",
    "AWS_SECRET_ACCESS_KEY": "bench-fake-secret-key-0123456789abcdefghij",
    "AWS_EC2_METADATA_DISABLED": "true",
}

# The access token the fake provider hands out for Vertex AI (gcp_token_url in
# bench/gateway.yaml), and the only one its Vertex AI routes accept.
GCP_TOKEN = "ya29.bench-fake-access-token"
GCP_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


def envoy_env() -> dict:
    """The environment of every Envoy under test (the floor's too, which ignores it)."""
    return {"LLM_GATEWAY_MASTER_KEY": MASTER_KEY, "BENCH_PROVIDER_KEY": PROVIDER_KEY, **AWS_ENV}


ENVOY_CORE = "0"
LOAD_CORE = "1"
# Seconds between the end of the load and the settled RSS reading.
RSS_SETTLE_SECONDS = 3

# Scheduling priority of every process the bench starts (`nice -n`). On a machine shared
# with other work a high priority keeps that work from taking the measured cores; a
# negative value needs root and is ignored otherwise.
NICE = 0


def wanted(sc: dict, only: set) -> bool:
    """Whether a run measures `sc`: the named ones, or all but the optional ones."""
    return sc["name"] in only if only else not sc.get("optional")


def pinned(core: str, argv: list[str]) -> list[str]:
    """argv pinned to `core`, at the bench's priority."""
    prefix = ["nice", "-n", str(NICE)] if NICE else []
    return prefix + ["taskset", "-c", core] + argv

# name, title, gateway alias, request fixture, floor path, expected provider, check kind;
# `token`: the gateway answers it once its first Vertex AI token fetch is done; `optional`:
# measured only when named (--only / BENCH_ONLY).
SCENARIOS = [
    dict(name="openai-1k", title="OpenAI → OpenAI-compatible, 1 KB prompt",
         alias="bench-openai", body="request-1k.json",
         floor_path="/openai/v1/chat/completions", provider="openai", check="json"),
    dict(name="anthropic-1k", title="OpenAI → Anthropic, 1 KB prompt",
         alias="bench-anthropic", body="request-1k.json",
         floor_path="/anthropic/v1/messages", provider="anthropic", check="json"),
    dict(name="anthropic-10k", title="OpenAI → Anthropic, 10 KB prompt",
         alias="bench-anthropic", body="request-10k.json",
         floor_path="/anthropic/v1/messages", provider="anthropic", check="json"),
    dict(name="anthropic-100k", title="OpenAI → Anthropic, 100 KB prompt",
         alias="bench-anthropic", body="request-100k.json",
         floor_path="/anthropic/v1/messages", provider="anthropic", check="json"),
    dict(name="bedrock-1k", title="OpenAI → AWS Bedrock Converse (SigV4 by Envoy), 1 KB prompt",
         alias="bench-bedrock", body="request-1k.json",
         floor_path="/bedrock-floor/model/anthropic.claude-bench-v1%3A0/converse",
         provider="bedrock", check="json"),
    # The same deployment with a Bedrock API key instead of SigV4: no signing, so
    # bedrock-1k minus this is what Envoy's signer costs.
    dict(name="bedrock-key-1k", title="OpenAI → AWS Bedrock Converse (API key, unsigned), 1 KB prompt",
         alias="bench-bedrock-key", body="request-1k.json",
         floor_path="/bedrock-floor/model/anthropic.claude-bench-v1%3A0/converse",
         provider="bedrock", check="json", optional=True),
    dict(name="vertex-1k", title="OpenAI → Gemini on Vertex AI, 1 KB prompt",
         alias="bench-vertex-gemini", body="request-1k.json",
         floor_path="/vertex-floor/gemini-bench:generateContent", provider="vertex_ai",
         check="json", token=True),
    dict(name="vertex-claude-1k", title="OpenAI → Claude on Vertex AI, 1 KB prompt",
         alias="bench-vertex-claude", body="request-1k.json",
         floor_path="/anthropic/v1/messages", provider="vertex_ai_anthropic", check="json",
         token=True),
    dict(name="anthropic-tools", title="OpenAI → Anthropic, tool calling (3 tools, 1 call)",
         alias="bench-anthropic-tools", body="request-tools.json",
         floor_path="/anthropic-tools/v1/messages", provider="anthropic", check="tools"),
    dict(name="openai-stream", title="OpenAI → OpenAI-compatible, streamed, 200 deltas",
         alias="bench-openai-stream", body="request-stream.json",
         floor_path="/openai-stream/v1/chat/completions", provider="openai", check="stream"),
    dict(name="anthropic-stream", title="OpenAI → Anthropic, streamed, 200 deltas",
         alias="bench-anthropic-stream", body="request-stream.json",
         floor_path="/anthropic-stream/v1/messages", provider="anthropic", check="stream"),
    dict(name="fallback", title="Fallback: OpenAI-compatible 429 → Anthropic 200, 1 KB",
         alias="bench-fallback", body="request-1k.json",
         floor_path="/fallback/v1/messages", provider="anthropic", check="json", attempts=2),
]

PACED = [
    dict(name="openai-paced", title="OpenAI-compatible stream, one event per chunk",
         alias="bench-openai-paced", body="request-stream.json",
         floor_path="/paced/openai-stream/v1/chat/completions", provider="openai",
         check="stream", answer="answer-openai-stream.sse"),
    dict(name="anthropic-paced", title="Anthropic stream, one event per chunk",
         alias="bench-anthropic-paced", body="request-stream.json",
         floor_path="/paced/anthropic-stream/v1/messages", provider="anthropic",
         check="stream", answer="answer-anthropic-stream.sse"),
]

# Scenarios also measured with plain Envoy + a no-op body-buffering wasm filter in the
# gateway's two positions: the platform's share of the gateway's cost.
NOOP_SCENARIOS = {"openai-1k", "anthropic-1k", "anthropic-100k"}

FLOOR_ANSWER = {
    "openai-1k": "answer-openai.json",
    "anthropic-1k": "answer-anthropic.json",
    "anthropic-10k": "answer-anthropic.json",
    "anthropic-100k": "answer-anthropic.json",
    "bedrock-1k": "answer-bedrock.json",
    "bedrock-key-1k": "answer-bedrock.json",
    "vertex-1k": "answer-gemini.json",
    "vertex-claude-1k": "answer-anthropic.json",
    "anthropic-tools": "answer-anthropic-tools.json",
    "openai-stream": "answer-openai-stream.sse",
    "anthropic-stream": "answer-anthropic-stream.sse",
    "fallback": "answer-anthropic.json",
}

# Callgrind cases: (case, phase, iterations).
NATIVE_COUNTS = [
    ("openai-1k", "full", 200), ("openai-10k", "full", 40), ("openai-100k", "full", 6),
    ("anthropic-1k", "downstream", 200), ("anthropic-1k", "upstream", 200),
    ("anthropic-1k", "response", 200), ("anthropic-1k", "full", 200),
    ("anthropic-10k", "full", 40), ("anthropic-100k", "downstream", 6),
    ("anthropic-100k", "upstream", 6), ("anthropic-100k", "full", 6),
    ("anthropic-tools", "full", 100), ("anthropic-1k", "metrics", 200),
    ("openai-stream", "upstream", 100), ("openai-stream", "stream", 10),
    ("anthropic-stream", "upstream", 100), ("anthropic-stream", "stream", 10),
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    """Every process this run started, stopped by PID at exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
              stdout_devnull: bool = False) -> subprocess.Popen:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        err = open(log_path, "wb")
        out = subprocess.DEVNULL if stdout_devnull else err
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, cwd=ROOT)
        self.procs[name] = p
        return p

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            try:
                self.stop(name)
            except Exception as e:  # keep stopping the others
                print(f"bench: could not stop {name}: {e}", file=sys.stderr)


PROCS = Procs()
atexit.register(PROCS.stop_all)


def _on_signal(signum, _frame):
    raise SystemExit(f"bench: stopped by signal {signum}")


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(admin_port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            c.request("GET", "/ready")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and b"LIVE" in body:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s")


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_split_kib(pid: int) -> dict | None:
    """The process's RSS split into private anonymous memory and pages mapped from files.

    Most of the file-backed part is Envoy's own binary (V8's compiler among it): shared by
    every process started from the same file and reclaimable, unlike the anonymous part."""
    fields = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # kernels before 4.14: no split, the RSS rows still stand
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Anonymous:"):
            fields[parts[0].rstrip(":").lower()] = int(parts[1])
    rss, anon = fields.get("rss", 0), fields.get("anonymous", 0)
    return {"anonymous": anon, "file_backed": rss - anon}


def cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of a process, in ns."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def core_times() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per cpuN."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            f = line.split()
            vals = [int(x) for x in f[1:]]
            idle = vals[3] + vals[4]
            out[f[0]] = (sum(vals) - idle, sum(vals))
    return out


def busy_pct(a: dict, b: dict, cpu: str) -> float | None:
    if cpu not in a or cpu not in b:
        return None
    busy = b[cpu][0] - a[cpu][0]
    total = b[cpu][1] - a[cpu][1]
    return round(100.0 * busy / total, 1) if total else None


# ---------------------------------------------------------------- configs

def fake_provider_yaml(fx: Path) -> str:
    def route(prefix: str, answer: str, ctype: str, status: int = 200, *, path: str = "",
              headers: str = "", inline: str = "") -> str:
        match = f'path: "{path}"' if path else f'prefix: "{prefix}"'
        if headers:
            match += f", headers: [{headers}]"
        body = f"inline_string: '{inline}'" if inline else f'filename: "{fx / answer}"'
        return f"""              - match: {{{match}}}
                direct_response:
                  status: {status}
                  body: {{{body}}}
                response_headers_to_add:
                - header: {{key: content-type, value: "{ctype}"}}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
"""

    def listener(name: str, port: int, routes: str) -> str:
        return f"""  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: AUTO
          http_filters:
          # The whole request is read before the canned answer is sent: an answer sent
          # while the body is still arriving makes Envoy close the connection, and every
          # request would then open a new one, which a real provider's keep-alive does not.
          - name: envoy.filters.http.buffer
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 4194304
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            name: {name}
            max_direct_response_body_size_bytes: 4194304
            virtual_hosts:
            - name: {name}
              domains: ['*']
              routes:
{routes}"""

    js, sse = "application/json", "text/event-stream"
    # Bedrock answers only requests signed by SigV4 over the body's SHA-256 (Envoy's signer,
    # use_unsigned_payload: false); it does not recompute the signature.
    sigv4 = ("{name: authorization, string_match: {prefix: 'AWS4-HMAC-SHA256 Credential="
             + AWS_ENV["AWS_ACCESS_KEY_ID"] + "/'}}, "
             "{name: x-amz-content-sha256, string_match: {safe_regex: {regex: '[0-9a-f]+'}}}")
    bearer = f"{{name: authorization, string_match: {{exact: 'Bearer {GCP_TOKEN}'}}}}"
    vertex = "/vertex/v1/projects/bench-project/locations/us-central1/publishers"
    token = json.dumps({"access_token": GCP_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
    ok_routes = (
        # Vertex AI's access tokens, as the metadata server serves them.
        route("", "", js, path=GCP_TOKEN_PATH, inline=token,
              headers="{name: metadata-flavor, string_match: {exact: Google}}")
        + route("/bedrock/", "answer-bedrock.json", js, headers=sigv4)
        + route("/bedrock/", "answer-bedrock.json", js,
                headers=f"{{name: authorization, string_match: {{exact: 'Bearer {PROVIDER_KEY}'}}}}")
        + route("/bedrock/", "", js, status=403,
                inline='{"message":"Missing Authentication Token"}')
        + route("/bedrock-floor/", "answer-bedrock.json", js)
        + route("", "answer-gemini.json", js, headers=bearer,
                path=f"{vertex}/google/models/gemini-bench:generateContent")
        + route("", "answer-anthropic.json", js, headers=bearer,
                path=f"{vertex}/anthropic/models/claude-bench:rawPredict")
        + route("/vertex/", "", js, status=401,
                inline='{"error":{"code":401,"status":"UNAUTHENTICATED"}}')
        + route("/vertex-floor/", "answer-gemini.json", js)
        + route("/openai-stream/", "answer-openai-stream.sse", sse)
        + route("/openai/", "answer-openai.json", js)
        + route("/anthropic-tools/", "answer-anthropic-tools.json", js)
        + route("/anthropic-stream/", "answer-anthropic-stream.sse", sse)
        + route("/anthropic/", "answer-anthropic.json", js)
    )
    fail_routes = route("/", "answer-openai-429.json", js, status=429)
    return (
        "# Fake provider for `make bench` (generated): canned answers by path.\n"
        f"admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {PORTS['fake_admin']}}}}}\n"
        "static_resources:\n  listeners:\n"
        + listener("fake", PORTS["fake"], ok_routes)
        + listener("fake_429", PORTS["fake_429"], fail_routes)
    )


def noop_yaml(floor_cfg: Path, wasm: Path) -> str:
    """The floor bootstrap with the no-op wasm filter where the gateway's instances sit."""
    import yaml  # from the venv (tests/requirements.txt)

    cfg = yaml.safe_load(floor_cfg.read_text())
    cfg["admin"]["address"]["socket_address"]["port_value"] = PORTS["noop_admin"]
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = PORTS["noop"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]

    def wasm_filter(role: str) -> dict:
        return {"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": f"noop_{role}", "root_id": f"noop_{role}",
                "allow_on_headers_stop_iteration": True,
                "failure_policy": "FAIL_RELOAD",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": role},
                "vm_config": {"vm_id": "noop", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(wasm)}}},
            }}}

    router = hcm["http_filters"][-1]
    router["typed_config"]["upstream_http_filters"] = [
        wasm_filter("upstream"),
        {"name": "envoy.filters.http.upstream_codec", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
    ]
    hcm["http_filters"] = [wasm_filter("downstream"), router]
    return "# Generated by bench/run.py: bench/floor.yaml + the no-op wasm filter.\n" + yaml.safe_dump(cfg)


def build_noop_wasm() -> Path:
    manifest = BENCH / "noop-filter" / "Cargo.toml"
    target_dir = ROOT / "target" / "bench-noop"
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "--manifest-path",
                    str(manifest), "--target-dir", str(target_dir)], check=True, timeout=900,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    return target_dir / "wasm32-wasip1" / "release" / "bench_noop_filter.wasm"


# ---------------------------------------------------------------- HTTP checks

def post(port: int, path: str, body: bytes, timeout: float = 10, key: str = MASTER_KEY,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={
            "content-type": "application/json",
            "authorization": f"Bearer {key}",
            **(headers or {}),
        })
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def sse_payloads(body: bytes) -> list[str]:
    return [line[5:].strip() for line in body.decode("utf-8", "replace").splitlines()
            if line.startswith("data:")]


def check_gateway(sc: dict, status: int, headers: dict, body: bytes) -> str | None:
    """None when the gateway's answer is right, else why not."""
    if status == 200 and headers.get("x-llm-provider") != sc["provider"]:
        return f"x-llm-provider {headers.get('x-llm-provider')!r}, expected {sc['provider']!r}"
    want_attempts = str(sc.get("attempts", 1))
    if status == 200 and headers.get("x-llm-attempts", "1") != want_attempts:
        return f"x-llm-attempts {headers.get('x-llm-attempts')!r}, expected {want_attempts}"
    return check_openai_answer(sc, status, body)


def check_openai_answer(sc: dict, status: int, body: bytes) -> str | None:
    """None when `body` is the OpenAI answer the scenario asks for (any gateway's), else why
    not: a chat.completion with content or the expected tool call, or a stream of 200
    content deltas with a usage chunk and [DONE]."""
    snippet = body[:300].decode("utf-8", "replace")
    if status != 200:
        return f"status {status}: {snippet}"
    if sc["check"] == "stream":
        data = sse_payloads(body)
        if not data or data[-1] != "[DONE]":
            return f"stream does not end with [DONE] ({len(data)} events): {snippet}"
        deltas, usage = 0, False
        for d in data[:-1]:
            try:
                chunk = json.loads(d)
            except ValueError:
                return f"stream event is not JSON: {d[:200]}"
            if chunk.get("object") != "chat.completion.chunk":
                return f"stream event is not a chat.completion.chunk: {d[:200]}"
            for ch in chunk.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    deltas += 1
            usage = usage or bool(chunk.get("usage"))
        if deltas != 200:
            return f"stream carried {deltas} content deltas, expected 200"
        if not usage:
            return "stream has no usage chunk although the client asked for one"
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return f"answer is not JSON: {snippet}"
    if doc.get("object") != "chat.completion":
        return f"answer is not a chat.completion: {snippet}"
    msg = (doc.get("choices") or [{}])[0].get("message") or {}
    if sc["check"] == "tools":
        calls = msg.get("tool_calls") or []
        if not calls or calls[0].get("function", {}).get("name") != "create_ticket":
            return f"no create_ticket tool call in the answer: {snippet}"
    elif not msg.get("content"):
        return f"answer has no content: {snippet}"
    return None


# ---------------------------------------------------------------- wrk

def run_wrk(out_dir: Path, tag: str, port: int, path: str, body_file: Path, conns: int,
            seconds: float, delay_ms: int = 0, headers_file: Path | None = None,
            key: str = MASTER_KEY) -> dict:
    out = out_dir / f"wrk-{tag}.json"
    out.unlink(missing_ok=True)
    argv = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s",
                              "--timeout", "10s", "-s", str(BENCH / "wrk.lua"),
                              f"http://127.0.0.1:{port}"])
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_PATH": path,
           "BENCH_KEY": key, "BENCH_DELAY_MS": str(delay_ms), "BENCH_OUT": str(out),
           "BENCH_HEADERS": str(headers_file or "")}
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({p.returncode}): {(p.stderr + p.stdout).strip()[:500]}")
    r = json.loads(out.read_text())
    r["errors_total"] = sum(r["errors"].values())
    r["rps"] = round(r["requests"] / (r["duration_us"] / 1e6), 1) if r["duration_us"] else 0.0
    return r


def measured(out_dir: Path, tag: str, pid: int, **kw) -> dict:
    """A wrk run with the Envoy process's CPU time and both cores' load around it."""
    c0, t0, w0 = cpu_ns(pid), core_times(), time.monotonic()
    r = run_wrk(out_dir, tag, **kw)
    c1, t1, w1 = cpu_ns(pid), core_times(), time.monotonic()
    cpu = c1 - c0
    r["envoy_cpu_s"] = round(cpu / 1e9, 3)
    r["envoy_cpu_us_per_req"] = round(cpu / 1e3 / r["requests"], 2) if r["requests"] else None
    r["envoy_cpu_pct"] = round(100.0 * cpu / 1e9 / (w1 - w0), 1)
    r["core0_busy_pct"] = busy_pct(t0, t1, f"cpu{ENVOY_CORE}")
    r["core1_busy_pct"] = busy_pct(t0, t1, f"cpu{LOAD_CORE}")
    # What else ran on the Envoy core meanwhile (its busy time minus Envoy's own).
    if r["core0_busy_pct"] is not None:
        r["core0_other_pct"] = round(max(0.0, r["core0_busy_pct"] - r["envoy_cpu_pct"]), 1)
    return r


def alternate(raw: Path, name: str, pids: dict[str, int], kws: dict[str, dict],
              args: argparse.Namespace) -> dict:
    """Every target of a scenario measured after a warm-up: throughput (closed loop) and
    latency (a fixed light rate), in short rounds that alternate the targets so that a
    change in the machine's other load hits them alike. `kws` are each target's run_wrk
    arguments; returns {target: {status, throughput, latency}}."""
    for t in pids:
        run_wrk(raw, f"{name}-{t}-warmup", conns=args.connections, seconds=args.warmup, **kws[t])
    rounds: dict = {t: {"tput": [], "lat": []} for t in pids}
    for i in range(args.rounds):
        for t, pid in pids.items():
            rounds[t]["tput"].append(measured(
                raw, f"{name}-{t}-tput{i}", pid, conns=args.connections,
                seconds=args.duration / args.rounds, **kws[t]))
        for t, pid in pids.items():
            rounds[t]["lat"].append(measured(
                raw, f"{name}-{t}-latency{i}", pid, conns=args.latency_connections,
                seconds=args.latency_duration / args.rounds, delay_ms=args.latency_delay_ms,
                **kws[t]))
    out = {}
    for t in pids:
        tput, lat = combine(rounds[t]["tput"]), combine(rounds[t]["lat"])
        ok = tput["errors_total"] == 0 and lat["errors_total"] == 0
        out[t] = {"status": "ok" if ok else "errors", "throughput": tput, "latency": lat}
        if not ok:
            log(f"{name} {t}: errors {tput['errors']} / {lat['errors']}")
    return out


# ---------------------------------------------------------------- native

def build_driver() -> Path:
    # Symbols for callgrind; unwind so that the library is built once (see the Makefile).
    env = {**os.environ, "CARGO_PROFILE_BENCH_STRIP": "false",
           "CARGO_PROFILE_BENCH_DEBUG": "line-tables-only", "CARGO_PROFILE_BENCH_PANIC": "unwind"}
    p = subprocess.run(["cargo", "bench", "--bench", "driver", "--no-run",
                        "--message-format=json"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"building the bench driver failed:\n{p.stderr[-2000:]}")
    for line in p.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "driver" \
                and m.get("executable"):
            return Path(m["executable"])
    raise RuntimeError("cargo did not report the driver executable")


def count_instructions(driver: Path, out_dir: Path, deadline: float) -> dict:
    """Instructions per iteration of each (case, phase), counted only inside the loop."""
    if not shutil.which("valgrind"):
        return {"skipped": "valgrind not installed"}
    results = {}
    for case, phase, n in NATIVE_COUNTS:
        if time.monotonic() > deadline:
            results[f"{case}/{phase}"] = {"skipped": "time budget"}
            continue
        cg = out_dir / "callgrind" / f"{case}.{phase}.out"
        cg.parent.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=*measured_loop*",
                            f"--callgrind-out-file={cg}", str(driver), "count", case, phase,
                            str(n)], capture_output=True, text=True, timeout=300)
        m = re.search(r"Collected : (\d+)", p.stderr)
        if p.returncode != 0 or not m:
            results[f"{case}/{phase}"] = {"error": p.stderr.strip()[-300:]}
            continue
        results[f"{case}/{phase}"] = {"iterations": n,
                                      "instructions": round(int(m.group(1)) / n)}
    # Per streamed event: (request translation + stream) minus request translation alone.
    events = {}
    p = subprocess.run([str(driver), "list"], capture_output=True, text=True, timeout=60)
    for line in p.stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[2].isdigit():
            events[f[0]] = int(f[2])
    for case in ("openai-stream", "anthropic-stream"):
        s, u = results.get(f"{case}/stream", {}), results.get(f"{case}/upstream", {})
        if "instructions" in s and "instructions" in u and events.get(case):
            results[f"{case}/per_event"] = {
                "events": events[case],
                "instructions": round((s["instructions"] - u["instructions"]) / events[case])}
    return results


# ---------------------------------------------------------------- main

def machine_info(envoy: str) -> dict:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break

    def first_line(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except Exception:
            return "unknown"

    envoy_version = first_line([envoy, "--version"])
    m = re.search(r"version: (\S+)", envoy_version)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "envoy": m.group(1) if m else envoy_version,
        "wrk": first_line(["wrk", "-v"]),
        "rustc": first_line(["rustc", "-V"]),
        "commit": first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def start_envoy(name: str, envoy: str, config: Path, concurrency: int, admin_port: int,
                logs: Path, core: str = ENVOY_CORE) -> subprocess.Popen:
    argv = pinned(core, [envoy, "-c", str(config), "--concurrency", str(concurrency),
                         "--disable-hot-restart", "-l", "warning"])
    p = PROCS.start(name, argv, logs / f"{name}.log", stdout_devnull=True, env=envoy_env())
    wait_ready(admin_port, p, name)
    return p


def wait_answered(port: int, path: str, body: bytes, what: str, timeout: float = 60) -> None:
    """Waits until `path` is answered 2xx: a Vertex AI deployment is answered 503 until the
    gateway's first token fetch (about a second after start, longer under callgrind)."""
    deadline = time.monotonic() + timeout
    status, data = 0, b""
    while time.monotonic() < deadline:
        try:
            status, _, data = post(port, path, body, timeout=30)
        except OSError as e:
            status, data = 0, str(e).encode()
        if 200 <= status < 300:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not answered 2xx within {timeout:.0f} s "
                       f"(last {status}: {data[:200].decode('utf-8', 'replace')})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--out", default=str(BENCH / "out"))
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 8)))
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", 1)))
    ap.add_argument("--latency-duration", type=float,
                    default=float(os.environ.get("BENCH_LATENCY_DURATION", 8)))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 32)))
    ap.add_argument("--latency-connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 4)),
                    help="alternating rounds per scenario (the durations are split among them)")
    ap.add_argument("--latency-delay-ms", type=int, default=10)
    ap.add_argument("--paced-connections", type=int, default=16)
    ap.add_argument("--paced-gap-us", type=int, default=200)
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma-separated scenario names (default: all)")
    ap.add_argument("--skip-native", action="store_true")
    ap.add_argument("--candidate-wasm", default=os.environ.get("BENCH_CANDIDATE_WASM", ""),
                    help="a second .wasm (e.g. a branch's build) measured next to the gateway")
    ap.add_argument("--nice", type=int, default=int(os.environ.get("BENCH_NICE", -20)),
                    help="nice value of the processes started (default -20; needs root)")
    ap.add_argument("--max-seconds", type=float, default=float(os.environ.get("BENCH_MAX_SECONDS", 840)))
    args = ap.parse_args()

    global NICE
    NICE = args.nice if (args.nice >= 0 or os.geteuid() == 0) else 0
    started = time.monotonic()
    deadline = started + args.max_seconds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs, fx, raw = out / "logs", out / "fixtures", out / "raw"
    for d in (logs, fx, raw):
        d.mkdir(parents=True, exist_ok=True)
    wasm = Path(args.wasm)
    only = {s for s in args.only.split(",") if s}

    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores; Envoy and the load generator share a core")
    busy = [f"{k}={v}" for k, v in PORTS.items() if port_open(v)]
    if busy:
        log(f"ports already in use: {', '.join(busy)}; stop whatever listens there")
        return 2
    for tool in ("wrk", "taskset", "rustc", "cargo"):
        if not shutil.which(tool):
            log(f"{tool} not found")
            return 2

    t0 = core_times()
    time.sleep(2)
    t1 = core_times()
    background = {c: busy_pct(t0, t1, c) for c in sorted(t1)}
    if any((v or 0) > 15 for v in background.values()):
        log(f"warning: the machine is busy before the bench starts ({background} % per core); "
            "figures will be noisier (CPU per request and instruction counts hold up best)")

    results: dict = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(args.envoy),
        "method": {
            "envoy_core": int(ENVOY_CORE), "load_core": int(LOAD_CORE),
            "throughput": f"wrk -t1 -c{args.connections}, {args.duration:g}s in all after a "
                          f"{args.warmup:g}s warm-up; counted only with 0 non-2xx and 0 socket errors",
            "latency": f"wrk -t1 -c{args.latency_connections}, each connection waits "
                       f"{args.latency_delay_ms} ms between requests, {args.latency_duration:g}s in all",
            "rounds": args.rounds,
            "paced": f"wrk -t1 -c{args.paced_connections} -d{args.duration:g}s against a provider "
                     f"writing one event per chunk, {args.paced_gap_us} µs apart",
        },
        "background_busy_pct": background,
        "nice": NICE,
        "wasm_bytes": wasm.stat().st_size,
        "scenarios": [], "paced": [], "rss": {}, "native": {},
    }

    # Fixtures (same bytes as the native benches) and the paced provider.
    log("building the native driver and writing fixtures")
    driver = build_driver()
    subprocess.run([str(driver), "fixtures", str(fx)], check=True, timeout=60)
    sse_bin = out / "sse_server"
    src = BENCH / "sse_server.rs"
    if not sse_bin.exists() or sse_bin.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["rustc", "-O", "--edition", "2021", str(src), "-o", str(sse_bin)],
                       check=True, timeout=300)
    bodies = {}
    for sc in SCENARIOS + PACED:
        raw_body = (fx / sc["body"]).read_bytes()
        bodies[sc["name"]] = raw_body.replace(b'"__MODEL__"', json.dumps(sc["alias"]).encode())
        (raw / f"body-{sc['name']}.json").write_bytes(bodies[sc["name"]])

    # Configs.
    gw_cfg = out / "gateway-envoy.yaml"
    subprocess.run([args.cli, "render", "--config", str(BENCH / "gateway.yaml"),
                    "--wasm", str(wasm.resolve()), "--out", str(gw_cfg)], check=True, timeout=60)
    cand_cfg = None
    if args.candidate_wasm:
        cand_yaml = out / "candidate-gateway.yaml"
        cand_yaml.write_text((BENCH / "gateway.yaml").read_text()
                             .replace(f"listen_port: {PORTS['gateway']}", f"listen_port: {PORTS['candidate']}")
                             .replace(f"admin_port: {PORTS['gateway_admin']}", f"admin_port: {PORTS['candidate_admin']}"))
        cand_cfg = out / "candidate-envoy.yaml"
        subprocess.run([args.cli, "render", "--config", str(cand_yaml), "--wasm",
                        str(Path(args.candidate_wasm).resolve()), "--out", str(cand_cfg)],
                       check=True, timeout=60)
        results["candidate_wasm_bytes"] = Path(args.candidate_wasm).stat().st_size
    fake_cfg = out / "fake-provider.yaml"
    fake_cfg.write_text(fake_provider_yaml(fx.resolve()))
    floor_cfg = BENCH / "floor.yaml"
    noop_cfg = out / "noop-envoy.yaml"
    noop_wasm = build_noop_wasm().resolve()
    results["noop_wasm_bytes"] = noop_wasm.stat().st_size
    noop_cfg.write_text(noop_yaml(floor_cfg, noop_wasm))

    # Providers on the load core.
    fake = PROCS.start("fake", pinned(LOAD_CORE, [args.envoy, "-c", str(fake_cfg), "--concurrency",
                                                  "1", "--disable-hot-restart", "-l", "warning"]),
                       logs / "fake.log")
    wait_ready(PORTS["fake_admin"], fake, "fake provider")
    paced = PROCS.start("paced", pinned(LOAD_CORE, [
        str(sse_bin), "--port", str(PORTS["paced"]),
        "--openai", str(fx / "answer-openai-stream.sse"),
        "--anthropic", str(fx / "answer-anthropic-stream.sse"),
        "--gap-us", str(args.paced_gap_us), "--max-seconds", str(int(args.max_seconds) + 120)]),
        logs / "paced.log")
    wait_port(PORTS["paced"], paced, "paced provider")

    # The two Envoys under test, on the Envoy core, one worker each.
    log("starting the gateway and the floor (1 worker each, core 0)")
    targets = {
        "floor": dict(proc=start_envoy("floor", args.envoy, floor_cfg, 1, PORTS["floor_admin"], logs),
                      port=PORTS["floor"]),
        "noop": dict(proc=start_envoy("noop", args.envoy, noop_cfg, 1, PORTS["noop_admin"], logs),
                     port=PORTS["noop"]),
        "gateway": dict(proc=start_envoy("gateway", args.envoy, gw_cfg, 1, PORTS["gateway_admin"], logs),
                        port=PORTS["gateway"]),
    }
    if cand_cfg:
        targets["candidate"] = dict(proc=start_envoy("candidate", args.envoy, cand_cfg, 1,
                                                     PORTS["candidate_admin"], logs),
                                    port=PORTS["candidate"])
    results["rss"]["concurrency_1_idle_kib"] = {k: rss_kib(t["proc"].pid) for k, t in targets.items()}

    def path_for(target: str, sc: dict) -> str:
        return "/v1/chat/completions" if target in ("gateway", "candidate") else sc["floor_path"]

    def preflight(target: str, sc: dict) -> str | None:
        try:
            if sc.get("token") and target in ("gateway", "candidate"):
                wait_answered(targets[target]["port"], path_for(target, sc), bodies[sc["name"]],
                              f"{sc['name']} {target}")
            status, headers, body = post(targets[target]["port"], path_for(target, sc),
                                         bodies[sc["name"]])
        except (OSError, RuntimeError) as e:
            return f"request failed: {e}"
        if target in ("gateway", "candidate"):
            return check_gateway(sc, status, headers, body)
        # The floor and the no-op filter pass the canned answer through unchanged.
        answer = sc.get("answer") or FLOOR_ANSWER[sc["name"]]
        if status != 200 or body != (fx / answer).read_bytes():
            return f"{target} answered {status}, not the canned answer"
        return None

    # ------------------------------------------------ scenarios
    for sc in SCENARIOS:
        if not wanted(sc, only):
            continue
        row = {"name": sc["name"], "title": sc["title"], "request_bytes": len(bodies[sc["name"]])}
        body_file = raw / f"body-{sc['name']}.json"
        live = []
        for target in ("floor", "noop", "gateway", "candidate"):
            if target == "noop" and sc["name"] not in NOOP_SCENARIOS:
                continue
            if target not in targets:
                continue
            if time.monotonic() > deadline:
                row[target] = {"status": "skipped (time budget)"}
                continue
            why = preflight(target, sc)
            if why:
                log(f"{sc['name']} {target}: FAILED preflight: {why}")
                row[target] = {"status": "failed", "reason": why}
                continue
            live.append(target)
        if live:
            log(f"{sc['name']}: {' / '.join(live)}, {args.rounds} alternating rounds")
        kws = {t: dict(port=targets[t]["port"], path=path_for(t, sc), body_file=body_file)
               for t in live}
        row.update(alternate(raw, sc["name"], {t: targets[t]["proc"].pid for t in live}, kws, args))
        derive(row)
        results["scenarios"].append(row)
        log(f"{sc['name']}: " + summary_line(row))

    # ------------------------------------------------ paced streams: CPU per event
    for sc in PACED:
        if not wanted(sc, only):
            continue
        events = len([e for e in (fx / sc["answer"]).read_bytes().split(b"\n\n") if e.strip()])
        row = {"name": sc["name"], "title": sc["title"], "events_per_stream": events}
        body_file = raw / f"body-{sc['name']}.json"
        for target in [t for t in ("floor", "gateway", "candidate") if t in targets]:
            if time.monotonic() > deadline:
                row[target] = {"status": "skipped (time budget)"}
                continue
            why = preflight(target, sc)
            if why:
                log(f"{sc['name']} {target}: FAILED preflight: {why}")
                row[target] = {"status": "failed", "reason": why}
                continue
            t = targets[target]
            log(f"{sc['name']} {target}: paced streams")
            r = measured(raw, f"{sc['name']}-{target}", t["proc"].pid,
                         port=t["port"], path=path_for(target, sc), body_file=body_file,
                         conns=args.paced_connections, seconds=args.duration)
            r["envoy_cpu_us_per_event"] = (round(r["envoy_cpu_us_per_req"] / events, 3)
                                           if r["envoy_cpu_us_per_req"] else None)
            row[target] = {"status": "ok" if r["errors_total"] == 0 else "errors", "run": r}
        f, g = row.get("floor", {}), row.get("gateway", {})
        if f.get("status") == "ok" and g.get("status") == "ok":
            row["added_cpu_us_per_event"] = round(
                g["run"]["envoy_cpu_us_per_event"] - f["run"]["envoy_cpu_us_per_event"], 3)
            row["added_p50_ms"] = round((g["run"]["latency_us"]["p50"]
                                         - f["run"]["latency_us"]["p50"]) / 1e3, 3)
        cnd = row.get("candidate", {})
        if f.get("status") == "ok" and cnd.get("status") == "ok":
            row["candidate_added_cpu_us_per_event"] = round(
                cnd["run"]["envoy_cpu_us_per_event"] - f["run"]["envoy_cpu_us_per_event"], 3)
        results["paced"].append(row)
        log(f"{sc['name']}: added CPU per event {row.get('added_cpu_us_per_event', 'n/a')} µs")

    results["rss"]["concurrency_1_after_run_kib"] = {k: rss_kib(t["proc"].pid)
                                                     for k, t in targets.items()}
    PROCS.stop("gateway")
    PROCS.stop("candidate")
    PROCS.stop("noop")
    PROCS.stop("floor")

    # ------------------------------------------------ RSS at 2 workers
    if time.monotonic() < deadline:
        log("RSS at 2 workers: idle, then after every scenario once")
        t2 = {
            "floor": dict(proc=start_envoy("floor2", args.envoy, floor_cfg, 2, PORTS["floor_admin"],
                                           logs, core="0,1"), port=PORTS["floor"]),
            "noop": dict(proc=start_envoy("noop2", args.envoy, noop_cfg, 2, PORTS["noop_admin"],
                                          logs, core="0,1"), port=PORTS["noop"]),
            "gateway": dict(proc=start_envoy("gateway2", args.envoy, gw_cfg, 2,
                                             PORTS["gateway_admin"], logs, core="0,1"),
                            port=PORTS["gateway"]),
        }
        time.sleep(1)
        idle = {k: rss_kib(t["proc"].pid) for k, t in t2.items()}
        for sc in SCENARIOS:
            if sc.get("token") and wanted(sc, only):
                try:
                    wait_answered(t2["gateway"]["port"], "/v1/chat/completions",
                                  bodies[sc["name"]], f"rss {sc['name']}", timeout=20)
                except RuntimeError as e:
                    log(str(e))
                break
        for target, t in t2.items():
            for sc in SCENARIOS + PACED:
                if not wanted(sc, only):
                    continue
                if target == "noop" and sc["name"] not in NOOP_SCENARIOS:
                    continue
                try:
                    run_wrk(raw, f"rss-{sc['name']}-{target}", port=t["port"],
                            path=path_for(target, sc), body_file=raw / f"body-{sc['name']}.json",
                            conns=8, seconds=1)
                except Exception as e:  # a failing scenario must not stop the RSS figure
                    log(f"rss load {sc['name']} {target}: {e}")
        loaded = {k: rss_kib(t["proc"].pid) for k, t in t2.items()}
        # Every Envoy here releases free allocator pages each second (memory_allocator_manager
        # in the configs): what a server holds once the load stops, a few releases later.
        time.sleep(RSS_SETTLE_SECONDS)
        settled = {k: rss_kib(t["proc"].pid) for k, t in t2.items()}
        split = {k: memory_split_kib(t["proc"].pid) for k, t in t2.items()}
        if all(v is not None for v in split.values()):
            results["rss"]["concurrency_2_settled_anonymous_kib"] = {
                k: v["anonymous"] for k, v in split.items()}
            results["rss"]["concurrency_2_settled_file_backed_kib"] = {
                k: v["file_backed"] for k, v in split.items()}
        results["rss"]["concurrency_2_idle_kib"] = idle
        results["rss"]["concurrency_2_after_load_kib"] = loaded
        results["rss"]["concurrency_2_settled_kib"] = settled
        results["rss"]["concurrency_2_added_mib"] = round((settled["gateway"] - settled["floor"]) / 1024, 1)
        results["rss"]["concurrency_2_added_at_load_end_mib"] = round(
            (loaded["gateway"] - loaded["floor"]) / 1024, 1)
        PROCS.stop("gateway2")
        PROCS.stop("noop2")
        PROCS.stop("floor2")
    PROCS.stop_all()

    # ------------------------------------------------ native instruction counts
    if not args.skip_native and time.monotonic() < deadline:
        log("instruction counts of the translation core (callgrind)")
        results["native"] = count_instructions(driver, out, deadline)

    results["targets"] = evaluate_targets(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md = render_markdown(results)
    (out / "results.md").write_text(md)
    print(md)
    log(f"done in {results['elapsed_s']} s: {out / 'results.md'}, {out / 'results.json'}")
    return 0


# ---------------------------------------------------------------- figures

def combine(runs: list[dict]) -> dict:
    """Rounds of one target: totals for counts and CPU; latency quantiles averaged over the
    rounds (equal-length rounds); the rounds themselves are kept."""
    out = {"rounds": len(runs)}
    out["requests"] = sum(r["requests"] for r in runs)
    out["duration_us"] = sum(r["duration_us"] for r in runs)
    out["errors"] = {k: sum(r["errors"][k] for r in runs) for k in runs[0]["errors"]}
    out["errors_total"] = sum(out["errors"].values())
    out["rps"] = round(out["requests"] / (out["duration_us"] / 1e6), 1) if out["duration_us"] else 0.0
    rps = sorted(r["rps"] for r in runs)
    out["rps_median"] = rps[len(rps) // 2]
    cpu = sum(r["envoy_cpu_s"] for r in runs)
    out["envoy_cpu_s"] = round(cpu, 3)
    out["envoy_cpu_us_per_req"] = round(cpu * 1e6 / out["requests"], 2) if out["requests"] else None
    # What one core could serve if Envoy alone limited it.
    out["capacity_rps_per_core"] = round(1e6 / out["envoy_cpu_us_per_req"]) \
        if out["envoy_cpu_us_per_req"] else None
    out["latency_us"] = {q: round(sum(r["latency_us"][q] for r in runs) / len(runs))
                         for q in ("p50", "p90", "p99")}
    out["latency_us"]["max"] = max(r["latency_us"]["max"] for r in runs)
    for k in ("envoy_cpu_pct", "core0_busy_pct", "core1_busy_pct", "core0_other_pct"):
        vals = [r.get(k) for r in runs if r.get(k) is not None]
        out[k] = round(sum(vals) / len(vals), 1) if vals else None
    out["runs"] = runs
    return out


def derive(row: dict) -> None:
    f, g = row.get("floor", {}), row.get("gateway", {})
    if f.get("status") != "ok" or g.get("status") != "ok":
        return
    ft, gt = f["throughput"], g["throughput"]
    fl, gl = f["latency"]["latency_us"], g["latency"]["latency_us"]
    row["throughput_ratio"] = round(gt["rps"] / ft["rps"], 3) if ft["rps"] else None
    if gt.get("capacity_rps_per_core") and ft.get("capacity_rps_per_core"):
        row["capacity_ratio"] = round(gt["capacity_rps_per_core"] / ft["capacity_rps_per_core"], 3)
    row["added_latency_ms"] = {p: round((gl[p] - fl[p]) / 1e3, 3) for p in ("p50", "p90", "p99")}
    if gt["envoy_cpu_us_per_req"] is not None and ft["envoy_cpu_us_per_req"] is not None:
        row["added_cpu_us_per_req"] = round(gt["envoy_cpu_us_per_req"] - ft["envoy_cpu_us_per_req"], 1)
    c = row.get("candidate", {})
    if c.get("status") == "ok" and c["throughput"]["envoy_cpu_us_per_req"] is not None \
            and ft["envoy_cpu_us_per_req"] is not None:
        row["candidate_added_cpu_us_per_req"] = round(
            c["throughput"]["envoy_cpu_us_per_req"] - ft["envoy_cpu_us_per_req"], 1)
        row["candidate_added_latency_ms"] = {
            p: round((c["latency"]["latency_us"][p] - fl[p]) / 1e3, 3) for p in ("p50", "p90", "p99")}
    n = row.get("noop", {})
    if n.get("status") == "ok" and n["throughput"]["envoy_cpu_us_per_req"] is not None \
            and ft["envoy_cpu_us_per_req"] is not None:
        row["noop_added_cpu_us_per_req"] = round(
            n["throughput"]["envoy_cpu_us_per_req"] - ft["envoy_cpu_us_per_req"], 1)
        row["noop_throughput_ratio"] = round(n["throughput"]["rps"] / ft["rps"], 3) if ft["rps"] else None
        if n["throughput"].get("capacity_rps_per_core") and ft.get("capacity_rps_per_core"):
            row["noop_capacity_ratio"] = round(
                n["throughput"]["capacity_rps_per_core"] / ft["capacity_rps_per_core"], 3)


def summary_line(row: dict) -> str:
    parts = []
    for t in ("floor", "gateway"):
        r = row.get(t, {})
        if r.get("status") in ("ok", "errors"):
            parts.append(f"{t} {r['throughput']['rps']:.0f} req/s p99 "
                         f"{r['latency']['latency_us']['p99'] / 1e3:.2f} ms")
        else:
            parts.append(f"{t} {r.get('status')}")
    if "throughput_ratio" in row:
        parts.append(f"ratio {row['throughput_ratio']:.2f}")
    return ", ".join(parts)


def evaluate_targets(res: dict) -> list[dict]:
    out = []
    rows = {r["name"]: r for r in res["scenarios"]}
    a = rows.get("anthropic-1k", {})
    cap = a.get("capacity_ratio")
    out.append({"target": "OpenAI → Anthropic 1 KB: throughput ≥ 80% of plain Envoy per core",
                "measured": {"per_core_capacity_ratio": cap,
                             "measured_rps_ratio": a.get("throughput_ratio")},
                "met": cap is not None and cap >= 0.8})
    p99 = (a.get("added_latency_ms") or {}).get("p99")
    out.append({"target": "OpenAI → Anthropic 1 KB: added p99 < 0.3 ms at a moderate fixed rate",
                "measured": p99, "met": p99 is not None and p99 < 0.3})
    per_event = {r["name"]: r.get("added_cpu_us_per_event") for r in res["paced"]}
    worst = max([v for v in per_event.values() if v is not None], default=None)
    out.append({"target": "Streaming: added time per translated event < 10 µs",
                "measured": per_event, "met": worst is not None and worst < 10
                and all(v is not None for v in per_event.values())})
    out.append({"target": ".wasm < 1 MB", "measured": res["wasm_bytes"],
                "met": res["wasm_bytes"] < 1_000_000})
    added = res["rss"].get("concurrency_2_added_mib")
    out.append({"target": "RSS with the filter within 30 MB of plain Envoy at 2 workers",
                "measured": added, "met": added is not None and added <= 30})
    return out


def fmt(v, unit="", digits=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def render_markdown(res: dict) -> str:
    m = res["machine"]
    L = []
    L.append(f"### Gateway cost over plain Envoy ({res['generated_at']}, commit {m['commit']})")
    L.append("")
    L.append(f"Machine: {m['nproc']} cores, {m['cpu_model']}, Linux {m['kernel']}; Envoy {m['envoy']}; "
             f"{m['wrk']}. Envoy under test on core 0 with one worker; fake provider and wrk on core 1"
             + (f", all at nice {res.get('nice')}" if res.get("nice") else "") + ".")
    bg = res.get("background_busy_pct") or {}
    others = [r[k]["throughput"].get("core0_other_pct") for r in res["scenarios"]
              for k in ("floor", "gateway") if r.get(k, {}).get("status") in ("ok", "errors")]
    others = [o for o in others if o is not None]
    if bg:
        L.append("")
        L.append(f"Other work on the machine before the run: {', '.join(f'{c} {v}%' for c, v in bg.items())} busy"
                 + (f"; during throughput runs, other processes took up to {max(others):.0f}% of the Envoy core"
                    if others else "") + ".")
    L.append("")
    L.append("| scenario | floor req/s | gateway req/s | ratio | floor CPU µs/req | gateway CPU µs/req | added CPU µs/req | per-core capacity ratio | added p50 / p90 / p99 ms | gateway p50 / p90 / p99 ms |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["scenarios"]:
        f, g = r.get("floor", {}), r.get("gateway", {})

        def tp(x):
            if x.get("status") == "ok":
                return f"{x['throughput']['rps']:,.0f}"
            if x.get("status") == "errors":
                t = x["throughput"]
                return f"{t['rps']:,.0f} ⚠ {t['errors_total']} err"
            return f"**{x.get('status', 'n/a').upper()}**"

        def cpu(x):
            return fmt(x.get("throughput", {}).get("envoy_cpu_us_per_req"), digits=1) \
                if x.get("status") in ("ok", "errors") else "–"

        def lat(x):
            if x.get("status") not in ("ok", "errors"):
                return "–"
            l = x["latency"]["latency_us"]
            return f"{l['p50']/1e3:.2f} / {l['p90']/1e3:.2f} / {l['p99']/1e3:.2f}"

        added = r.get("added_latency_ms")
        added_s = f"{added['p50']:+.3f} / {added['p90']:+.3f} / {added['p99']:+.3f}" if added else "–"
        L.append(f"| {r['title']} ({r['request_bytes']:,} B) | {tp(f)} | {tp(g)} | "
                 f"{fmt(r.get('throughput_ratio'))} | {cpu(f)} | {cpu(g)} | "
                 f"{fmt(r.get('added_cpu_us_per_req'), digits=1)} | {fmt(r.get('capacity_ratio'))} | {added_s} | {lat(g)} |")
    failures = [(r["name"], t, r[t].get("reason")) for r in res["scenarios"] + res["paced"]
                for t in ("floor", "gateway") if r.get(t, {}).get("status") == "failed"]
    if failures:
        L.append("")
        for name, t, why in failures:
            L.append(f"- **{name} ({t}) failed its correctness check**: {why}")
    if res["paced"]:
        L.append("")
        L.append("Streams with one event per upstream chunk (200 µs apart), Envoy CPU per upstream event:")
        L.append("")
        L.append("| stream | events | floor CPU µs/event | gateway CPU µs/event | added µs/event | added p50 per stream ms |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r in res["paced"]:
            f, g = r.get("floor", {}), r.get("gateway", {})

            def ev(x):
                if x.get("status") in ("ok", "errors"):
                    return fmt(x["run"]["envoy_cpu_us_per_event"], digits=2)
                return f"**{x.get('status', 'n/a').upper()}**"
            L.append(f"| {r['title']} | {r['events_per_stream']} | {ev(f)} | {ev(g)} | "
                     f"{fmt(r.get('added_cpu_us_per_event'))} | {fmt(r.get('added_p50_ms'), digits=3)} |")
    rss = res["rss"]
    L.append("")
    L.append("| memory and size | plain Envoy | plain Envoy + no-op wasm filter | gateway | gateway − plain |")
    L.append("|---|---:|---:|---:|---:|")
    for key, label in (("concurrency_1_idle_kib", "RSS, 1 worker, idle"),
                       ("concurrency_1_after_run_kib", "RSS, 1 worker, after the run"),
                       ("concurrency_2_idle_kib", "RSS, 2 workers, idle"),
                       ("concurrency_2_after_load_kib", "RSS, 2 workers, after every scenario"),
                       ("concurrency_2_settled_kib",
                        f"RSS, 2 workers, {RSS_SETTLE_SECONDS} s after the load"),
                       ("concurrency_2_settled_anonymous_kib",
                        "of which private (anonymous) memory"),
                       ("concurrency_2_settled_file_backed_kib",
                        "of which pages of files (mostly Envoy's binary, shared)")):
        if key in rss:
            v = rss[key]
            noop = f"{v['noop']/1024:.1f} MiB" if "noop" in v else "–"
            L.append(f"| {label} | {v['floor']/1024:.1f} MiB | {noop} | {v['gateway']/1024:.1f} MiB | "
                     f"{(v['gateway']-v['floor'])/1024:+.1f} MiB |")
    L.append(f"| `.wasm` size | | {res.get('noop_wasm_bytes', 0):,} B | {res['wasm_bytes']:,} B | |")
    share = [r for r in res["scenarios"] if "noop_added_cpu_us_per_req" in r and "added_cpu_us_per_req" in r]
    if share:
        L.append("")
        L.append("Where the added CPU goes: plain Envoy + a no-op wasm filter that only buffers bodies, "
                 "in the gateway's two positions (V8 and proxy-wasm plumbing), vs the gateway:")
        L.append("")
        L.append("| scenario | no-op filter capacity ratio | no-op added CPU µs/req | gateway added CPU µs/req | gateway logic (gateway − no-op) µs/req |")
        L.append("|---|---:|---:|---:|---:|")
        for r in share:
            L.append(f"| {r['name']} | {fmt(r.get('noop_capacity_ratio'))} | {r['noop_added_cpu_us_per_req']:.1f} | "
                     f"{r['added_cpu_us_per_req']:.1f} | {r['added_cpu_us_per_req'] - r['noop_added_cpu_us_per_req']:.1f} |")
    cand = [r for r in res["scenarios"] if "candidate_added_cpu_us_per_req" in r]
    cand_p = [r for r in res["paced"] if "candidate_added_cpu_us_per_event" in r]
    if cand or cand_p:
        L.append("")
        L.append(f"Candidate `.wasm` ({res.get('candidate_wasm_bytes', 0):,} B) measured in the same rounds:")
        L.append("")
        L.append("| scenario | gateway added CPU | candidate added CPU | candidate − gateway |")
        L.append("|---|---:|---:|---:|")
        for r in cand:
            if "added_cpu_us_per_req" in r:
                L.append(f"| {r['name']} | {r['added_cpu_us_per_req']:.1f} µs/req | {r['candidate_added_cpu_us_per_req']:.1f} µs/req | "
                         f"{r['candidate_added_cpu_us_per_req'] - r['added_cpu_us_per_req']:+.1f} µs/req |")
        for r in cand_p:
            if r.get("added_cpu_us_per_event") is not None:
                L.append(f"| {r['name']} | {r['added_cpu_us_per_event']:.2f} µs/event | {r['candidate_added_cpu_us_per_event']:.2f} µs/event | "
                         f"{r['candidate_added_cpu_us_per_event'] - r['added_cpu_us_per_event']:+.2f} µs/event |")
    nat = res.get("native") or {}
    if nat and "skipped" not in nat:
        L.append("")
        L.append("Translation core, native x86-64 instructions (callgrind, same opt-level as the .wasm):")
        L.append("")
        L.append("| case / phase | instructions |")
        L.append("|---|---:|")
        for k, v in nat.items():
            val = f"{v['instructions']:,}" if "instructions" in v else v.get("error", v.get("skipped", "?"))
            unit = " per event" if k.endswith("per_event") else " per request"
            L.append(f"| {k} | {val}{unit if 'instructions' in v else ''} |")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for t in res.get("targets", []):
        L.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    L.append("")
    meth = res["method"]
    L.append(f"Method: throughput = {meth['throughput']}; latency = {meth['latency']}; "
             f"paced = {meth['paced']}. Targets alternate in {meth.get('rounds', 1)} rounds per scenario "
             "(latency quantiles are the mean of the rounds'). CPU = Envoy's on-CPU time (all threads) / requests; "
             "per-core capacity = 1 s / CPU per request, the rate one core sustains when Envoy alone limits it, "
             "and its ratio is the throughput target's figure (the measured req/s ratio follows the machine's other load).")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
