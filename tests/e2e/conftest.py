"""Fixtures: fake providers, one rendered gateway config and one Envoy for the session.

`gw` is what most tests use: the running gateway with both fakes reset before the test.
When a test that used Envoy fails, the tail of Envoy's log is attached to the report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Everything goes to 127.0.0.1: never through a proxy the environment may name.
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))

import harness  # noqa: E402
from fakes import AnthropicFake, OpenAIFake  # noqa: E402
from harness import ANTHROPIC_KEY, OPENAI_KEY, Gateway, start_gateway  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def openai_fake():
    with OpenAIFake(name="openai", api_key=OPENAI_KEY) as f:
        yield f


@pytest.fixture(scope="session")
def anthropic_fake():
    with AnthropicFake(name="anthropic", api_key=ANTHROPIC_KEY) as f:
        yield f


@pytest.fixture(scope="session")
def gateway_session(tmp_path_factory, openai_fake, anthropic_fake):
    tmp = tmp_path_factory.mktemp("gateway")
    g = start_gateway(tmp, openai_fake, anthropic_fake)
    try:
        yield g
    finally:
        g.envoy.stop()


@pytest.fixture
def gw(gateway_session: Gateway, request) -> Gateway:
    """The session's gateway, with the fakes' scripts and records reset."""
    gateway_session.reset()
    if gateway_session.envoy.proc is not None and gateway_session.envoy.proc.poll() is not None:
        pytest.fail(f"Envoy has exited ({gateway_session.envoy.proc.returncode})\n"
                    f"{gateway_session.envoy.log_tail()}")
    request.node._envoys = [gateway_session.envoy]
    yield gateway_session
    gateway_session.reset()


@pytest.fixture
def envoys(request):
    """For tests that start their own Envoy: register it so its log is shown on failure."""
    started: list = []
    request.node._envoys = started
    yield started
    for e in started:
        e.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for e in getattr(item, "_envoys", []) or []:
            rep.sections.append((f"Envoy log tail ({e.log_path})", e.log_tail(80)))


def pytest_report_header(config):
    lines = []
    try:
        lines.append(f"envoy: {harness.envoy_bin()}")
    except FileNotFoundError as e:
        lines.append(f"envoy: {e}")
    lines.append(f"wasm: {harness.wasm_path()} ({'present' if harness.wasm_path().is_file() else 'MISSING'})")
    lines.append(f"cli: {harness.gateway_bin()} ({'present' if harness.gateway_bin().is_file() else 'MISSING'})")
    return lines

