"""The README's commands, run verbatim: every `sh` and `console` block, and the Python
example, against the gateway `make run` starts (started as the README says, stopped by
its PID at the end). `make test` is the suite this test runs in, so it is the one command
not run again.

In `console` blocks, lines starting with `$ ` are commands and the lines after them the
output the README shows: each shown line must appear, in order (`...` stands for any
lines, a line ending in `...` for any line starting with what precedes it)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import harness
from harness import REPO_ROOT

README = REPO_ROOT / "README.md"
# The ports `make run` uses (envoy/gateway.yaml, the Makefile's DEMO_PORT).
GATEWAY_PORT, ADMIN_PORT, DEMO_PORT = 4000, 9901, 18080
NOT_RUN = {"make test": "the suite this test is part of"}
RUN_TIMEOUT = 300.0


def blocks(lang: str) -> list:
    """The bodies of the README's fenced blocks of one language, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def join_continuations(lines: list) -> list:
    out: list = []
    for line in lines:
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1] + "\n" + line
        else:
            out.append(line)
    return out


def shell_commands() -> list:
    """Every command of the `sh` blocks, trailing comments removed."""
    commands = []
    for block in blocks("sh"):
        for line in join_continuations(block.splitlines()):
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def console_commands() -> list:
    """(command, shown output lines) of the `console` blocks."""
    found = []
    for block in blocks("console"):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            lines = join_continuations(chunk.splitlines())
            found.append((lines[0], lines[1:]))
    return found


def env() -> dict:
    e = dict(os.environ)
    # The venv's python and pip first, as after `make run` has made it.
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    # The README's commands assume no key of one's own.
    e.pop("LLM_GATEWAY_MASTER_KEY", None)
    return e


def run(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env(), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """`make run`, as the README says, until it serves; stopped by its PID (its process
    group: make, the demo provider and Envoy)."""
    harness.require_artefacts()
    busy = [p for p in (GATEWAY_PORT, ADMIN_PORT, DEMO_PORT) if port_in_use(p)]
    if busy:
        pytest.fail(f"ports {busy} are taken on 127.0.0.1: `make run` needs them")
    log_path = tmp_path_factory.mktemp("make-run") / "make-run.log"
    log = log_path.open("w")
    proc = subprocess.Popen(["bash", "-c", "make run"], cwd=REPO_ROOT, env=env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            assert proc.poll() is None, f"`make run` exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"`make run` not ready:\n{log_path.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/ready", timeout=1) as r:
                    if r.status == 200 and port_in_use(DEMO_PORT):
                        break
            except OSError:
                pass
            time.sleep(0.2)
        yield log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    deadline = time.monotonic() + 10
    while any(port_in_use(p) for p in (GATEWAY_PORT, DEMO_PORT)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_in_use(GATEWAY_PORT), "Envoy outlived `make run`"


def test_the_readme_shows_commands():
    commands = shell_commands()
    assert "make run" in commands and "make test" in commands
    assert any(c.startswith("curl ") for c in commands)
    assert "pip install openai" in commands
    assert blocks("python") and console_commands()


def test_make_run_says_each_unreachable_model_once(make_run):
    log = make_run.read_text()
    warnings = [line for line in log.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(set(warnings)), log
    assert "has no key" not in log
    assert "gateway: http://127.0.0.1:4000/v1" in log


@pytest.mark.parametrize("command", [c for c in shell_commands() if c != "make run"])
def test_shell_command_runs_verbatim(make_run, command):
    if command in NOT_RUN:
        pytest.skip(f"`{command}`: {NOT_RUN[command]}")
    r = run(command)
    assert r.returncode == 0, f"`{command}` exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    if command.startswith("curl "):
        assert "Hello from the demo provider" in r.stdout, r.stdout


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs_verbatim(make_run, tmp_path, index):
    script = tmp_path / "example.py"
    script.write_text(blocks("python")[index])
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Hello from the demo provider" in r.stdout, r.stdout


def shown_lines_appear(shown: list, actual: list) -> bool:
    """Each shown line appears in `actual`, in order (`...` lines and `...` suffixes are
    wildcards)."""
    at = 0
    for line in shown:
        if line.strip() == "...":
            continue
        prefix = line[:-3] if line.endswith("...") else None
        while at < len(actual) and not (actual[at].startswith(prefix) if prefix is not None else actual[at] == line):
            at += 1
        if at == len(actual):
            return False
        at += 1
    return True


@pytest.mark.parametrize("command,shown", console_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_console_command_prints_what_the_readme_shows(command, shown):
    r = run(command)
    actual = (r.stdout + r.stderr).splitlines()
    refused = any("invalid gateway config" in line for line in shown)
    assert (r.returncode != 0) == refused, f"`{command}` exited {r.returncode}:\n{r.stderr}"
    assert shown_lines_appear(shown, actual), f"`{command}` printed:\n{r.stdout}{r.stderr}\nREADME shows:\n" + \
        "\n".join(shown)
