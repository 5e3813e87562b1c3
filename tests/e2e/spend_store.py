"""Debian's redis-server and webdis (its HTTP interface) on 127.0.0.1, started by the tests
on allocated ports and stopped by their PIDs: the gateway's shared spend store.

webdis's config format and command URLs: https://github.com/nicolasff/webdis#readme
(`POST /` with `COMMAND/arg0/.../argN` in the body; `/` and `.` in arguments as `%2f`,
`%2e`). Redis keeps its data in an append-only file fsynced on every write, so a store
stopped and started again has lost nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from harness import free_port, stop_process


def binaries_available() -> bool:
    return bool(shutil.which("redis-server") and shutil.which("webdis"))


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout}s")


class SpendStore:
    """Redis with webdis in front, in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.http_port = free_port()
        self.redis: Optional[subprocess.Popen] = None
        self.webdis: Optional[subprocess.Popen] = None
        self.webdis_paused = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> "SpendStore":
        self.start_redis()
        config = {
            "redis_host": "127.0.0.1", "redis_port": self.redis_port,
            "http_host": "127.0.0.1", "http_port": self.http_port,
            "threads": 2, "daemonize": False, "database": 0,
            "verbosity": 1, "logfile": str(self.workdir / "webdis.log"),
        }
        (self.workdir / "webdis.json").write_text(json.dumps(config))
        out = open(self.workdir / "webdis.out", "ab")
        try:
            self.webdis = subprocess.Popen(["webdis", str(self.workdir / "webdis.json")], stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        _wait_port(self.http_port, self.webdis, "webdis")
        return self

    def start_redis(self) -> None:
        out = open(self.workdir / "redis.out", "ab")
        try:
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir),
                 "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        _wait_port(self.redis_port, self.redis, "redis-server")

    def stop_redis(self) -> None:
        if self.redis is not None:
            stop_process(self.redis)
            self.redis = None

    def pause_webdis(self) -> None:
        """A store that accepts connections and never answers: SIGSTOP."""
        assert self.webdis is not None
        os.kill(self.webdis.pid, signal.SIGSTOP)
        self.webdis_paused = True

    def resume_webdis(self) -> None:
        assert self.webdis is not None
        os.kill(self.webdis.pid, signal.SIGCONT)
        self.webdis_paused = False

    def stop(self) -> None:
        if self.webdis is not None:
            if self.webdis_paused:
                self.resume_webdis()
            stop_process(self.webdis)
            self.webdis = None
        self.stop_redis()

    def command(self, *args: str):
        """Runs one Redis command through webdis; its JSON value."""
        body = "/".join(urllib.parse.quote(a, safe="").replace(".", "%2e") for a in args)
        # http.client, not urllib: webdis 0.1.9 can leave a `Connection: close` request
        # unanswered.
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            conn.request("POST", "/", body=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            return json.loads(conn.getresponse().read())[args[0]]
        finally:
            conn.close()

    def get_int(self, key: str) -> int:
        v = self.command("GET", key)
        return int(v) if v is not None else 0

    def keys(self, pattern: str) -> list:
        return sorted(self.command("KEYS", pattern))


# ---- replicas of one rendered gateway, for the tests that run several Envoys

def replica_copy(rendered: Path, out: Path, port: int, admin: int) -> Path:
    """`rendered` with its own listener and admin ports, written to `out`."""
    import yaml
    doc = yaml.safe_load(rendered.read_text())
    listener = doc["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    listener["enable_reuse_port"] = False
    doc["admin"]["address"]["socket_address"]["port_value"] = admin
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def stats(admin: int) -> dict:
    """The Envoy's stats by name; the module's without Envoy's `wasmcustom.` prefix."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=5) as r:
        doc = json.load(r)
    return {s["name"].removeprefix("wasmcustom."): s.get("value") for s in doc["stats"] if "value" in s}


def access_log(replica: dict) -> list:
    """The JSON access-log lines the replica's Envoy wrote so far."""
    lines = []
    for line in replica["envoy"].stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines
