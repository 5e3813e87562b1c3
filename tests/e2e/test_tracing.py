"""OpenTelemetry traces through Envoy's own tracer, read back from a real Arize Phoenix.

Phoenix (installed by `make setup` in target/phoenix-venv) runs on 127.0.0.1 in a temporary
working directory; the gateway, rendered with `general_settings.opentelemetry`, exports
OTLP/HTTP to it. After a known mix of requests (non-streamed with the client's
`traceparent`, streamed, a fallback, a provider error, a virtual key in a team) the spans
are read back from Phoenix's REST API and checked: the GenAI attributes, one client span
with one child per upstream attempt, and the client's trace id.

A second test stands in for Langfuse: an OTLP/HTTP endpoint that records the path and the
basic-auth header the export arrives with (read by Envoy from its environment)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import harness
from fakes import openai_error
from harness import ANTHROPIC_KEY_ENV, OPENAI_KEY_ENV, key_sha256, start_gateway

REPO = Path(__file__).resolve().parents[2]
SPAN_TIMEOUT = 30.0
ALICE_KEY = "sk-gw-tracing-alice-0123456789abcdef"
CAROL_KEY = "sk-gw-tracing-carol-0123456789abcdef"
# A key a user pasted into a prompt: masked wherever the capture puts it.
LEAKED_KEY = "sk-proj-LEAKED0123456789abcdefXYZ"
CAPTURE_MAX = 2048
ROOTS = 9
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def phoenix_bin() -> str:
    found = os.environ.get("PHOENIX_BIN") or str(REPO / "target" / "phoenix-venv" / "bin" / "phoenix")
    if not Path(found).is_file():
        pytest.fail("Arize Phoenix is missing: `make setup` installs it into target/phoenix-venv")
    return found


class Phoenix:
    """`phoenix serve` on 127.0.0.1 with its own working directory, stopped by its PID."""

    def __init__(self, tmp: Path) -> None:
        self.port = harness.free_port()
        self.grpc_port = harness.free_port()
        env = dict(os.environ)
        env.update({
            "PHOENIX_WORKING_DIR": str(tmp / "phoenix"),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        })
        self.log = (tmp / "phoenix.log").open("w")
        self.proc = subprocess.Popen([phoenix_bin(), "serve"], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=tmp, start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        harness.wait_http_ok(self.url("/healthz"), "phoenix", self.proc, timeout)

    def spans(self) -> list:
        """Every span of the default project, via Phoenix's REST API."""
        out: list = []
        cursor = None
        while True:
            q = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            with urllib.request.urlopen(self.url("/v1/projects/default/spans?" + urllib.parse.urlencode(q)),
                                        timeout=10) as r:
                doc = json.load(r)
            out.extend(doc["data"])
            cursor = doc.get("next_cursor")
            if not cursor:
                return out

    def stop(self) -> None:
        harness.stop_process(self.proc, timeout=15)
        self.log.close()


def _model(alias: str, provider: str, model: str, url: str) -> dict:
    env = OPENAI_KEY_ENV if provider == "openai" else ANTHROPIC_KEY_ENV
    base = f"{url}/v1" if provider == "openai" else url
    return {"model_name": alias, "litellm_params": {
        "model": f"{provider}/{model}", "api_base": base, "api_key": f"os.environ/{env}"}}


def ask(model: str, **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}


@pytest.fixture(scope="module")
def traced(tmp_path_factory, openai_fake, anthropic_fake):
    """Phoenix, a gateway exporting to it, and the known mix of requests; yields the
    requests' responses by name and Phoenix. `m-captured` (by its model entry) and Carol's
    key capture their prompts and answers; nothing else does."""
    tmp = tmp_path_factory.mktemp("tracing")
    phoenix = Phoenix(tmp)
    g = None
    try:
        phoenix.wait_ready()
        models = [_model("m-first", "openai", "gpt-first", openai_fake.url),
                  _model("m-second", "anthropic", "claude-second", anthropic_fake.url),
                  {**_model("m-captured", "openai", "gpt-captured", openai_fake.url),
                   "model_info": {"capture_content": True}}]
        g = start_gateway(
            tmp, openai_fake, anthropic_fake, extra_models=models,
            router_settings={"fallbacks": [{"m-first": ["m-second"]}]},
            general_extra={"opentelemetry": {
                "endpoint": phoenix.url("/v1/traces"),
                "service_name": "llm-gateway-e2e",
                "headers": {"x-gateway-test": "tracing"},
                "capture_max_bytes": CAPTURE_MAX,
            }, "access_log_numbers": True},
            config_extra={
                "virtual_keys": [{"name": "alice", "key_sha256": key_sha256(ALICE_KEY), "team": "research"},
                                 {"name": "carol", "key_sha256": key_sha256(CAROL_KEY), "capture_content": True}],
                "teams": [{"name": "research"}],
            })
        openai_fake.reset()
        anthropic_fake.reset()
        seen = {}
        seen["plain"] = g.chat(ask("gpt-test", max_tokens=50, temperature=0.3),
                               headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        seen["stream"] = g.stream(ask("claude-test", stream=True, stream_options={"include_usage": True}))
        openai_fake.enqueue(openai_error(429, "Rate limit reached", type="requests"))
        seen["fallback"] = g.chat(ask("m-first"))
        openai_fake.enqueue(openai_error(400, "bad parameter"))
        seen["error"] = g.chat(ask("gpt-test"))
        seen["alice"] = g.chat(ask("gpt-test"), key=ALICE_KEY)
        seen["captured"] = g.chat({"model": "m-captured", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"my key is {LEAKED_KEY} ok"}]})
        seen["carol"] = g.stream(ask("claude-test", stream=True), key=CAROL_KEY)
        seen["long"] = g.chat({"model": "m-captured", "messages": [
            {"role": "user", "content": "long " + "\u00e9" * 3000}]})
        seen["messages"] = g.request("POST", "/v1/messages", {
            "model": "claude-test", "max_tokens": 50, "system": "Be kind.",
            "messages": [{"role": "user", "content": "hello"}]}, key=CAROL_KEY,
            headers={"anthropic-version": "2023-06-01"})
        assert seen["plain"].status == 200, seen["plain"].body
        assert seen["stream"].status == 200 and seen["stream"].done_count == 1
        assert seen["fallback"].status == 200 and seen["fallback"].header("x-llm-attempts") == "2"
        assert seen["error"].status == 400
        assert seen["alice"].status == 200, seen["alice"].body
        assert seen["captured"].status == 200 and seen["long"].status == 200
        assert seen["carol"].status == 200 and seen["carol"].done_count == 1
        assert seen["messages"].status == 200, seen["messages"].body
        yield g, phoenix, seen
    finally:
        if g is not None:
            g.envoy.stop()
        phoenix.stop()


def _traces(phoenix: Phoenix, expected_roots: int) -> dict:
    """Spans by trace id, once every client span and its children have arrived."""
    deadline = time.monotonic() + SPAN_TIMEOUT
    by_trace: dict = {}
    while time.monotonic() < deadline:
        by_trace = {}
        for s in phoenix.spans():
            by_trace.setdefault(s["context"]["trace_id"], []).append(s)
        roots = [s for spans in by_trace.values() for s in spans if s["name"] == "ingress"]
        complete = all(any(c["parent_id"] == r["context"]["span_id"] for c in by_trace[r["context"]["trace_id"]])
                       for r in roots)
        if len(roots) >= expected_roots and complete:
            return by_trace
        time.sleep(0.5)
    raise AssertionError(f"expected {expected_roots} traced requests in Phoenix, got {by_trace}")


def _one(traces: dict, where=lambda attributes: True, **attrs) -> tuple:
    """The trace whose client span has these attributes (and passes `where`): (client
    span, attempt spans)."""
    found = []
    for spans in traces.values():
        root = next((s for s in spans if s["name"] == "ingress"), None)
        if root and all(root["attributes"].get(k) == v for k, v in attrs.items()) and where(root["attributes"]):
            children = sorted((s for s in spans if s["parent_id"] == root["context"]["span_id"]),
                              key=lambda s: s["start_time"])
            found.append((root, children))
    assert len(found) == 1, (attrs, found)
    return found[0]


def test_client_trace_is_joined_with_genai_attributes(traced):
    _, phoenix, _ = traced
    traces = _traces(phoenix, ROOTS)
    root, attempts = _one(traces, **{"gen_ai.request.model": "gpt-test", "http.status_code": "200",
                                     "llm_gateway.key_name": "master"})
    # The client's traceparent: same trace, the client's span is the parent.
    assert root["context"]["trace_id"] == CLIENT_TRACE
    assert root["parent_id"] == CLIENT_SPAN
    a = root["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == "50" and a["gen_ai.request.temperature"] == "0.3"
    assert a["gen_ai.usage.input_tokens"] == "11" and a["gen_ai.usage.output_tokens"] == "7"
    assert a["llm_gateway.cost_usd"] == "0.000006"
    assert a["llm_gateway.deployment"] == "gpt-test"
    assert a["llm_gateway.attempts"] == "1"
    # One child span for the one upstream attempt, with the provider's own attributes.
    assert len(attempts) == 1, attempts
    assert attempts[0]["attributes"]["gen_ai.provider.name"] == "openai"
    assert attempts[0]["attributes"]["http.status_code"] == "200"


def test_streamed_answer_is_traced_with_its_usage(traced):
    _, phoenix, _ = traced
    root, attempts = _one(_traces(phoenix, ROOTS), **{"gen_ai.request.model": "claude-test",
                                                      "llm_gateway.key_name": "master"})
    a = root["attributes"]
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.response.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.usage.input_tokens"] == "12" and a["gen_ai.usage.output_tokens"] == "6"
    assert a["llm_gateway.cost_usd"] == "0.000126"
    assert len(attempts) == 1
    # Not set by the client: not written, no attribute.
    assert "gen_ai.request.temperature" not in a and "gen_ai.request.max_tokens" not in a
    # A fresh trace: no client traceparent.
    assert root["parent_id"] is None


def test_fallback_has_one_child_span_per_attempt(traced):
    _, phoenix, _ = traced
    root, attempts = _one(_traces(phoenix, ROOTS), **{"gen_ai.request.model": "m-first"})
    assert root["attributes"]["llm_gateway.attempts"] == "2"
    assert root["attributes"]["gen_ai.provider.name"] == "anthropic"
    assert root["attributes"]["llm_gateway.deployment"] == "m-second"
    assert [s["attributes"]["gen_ai.provider.name"] for s in attempts] == ["openai", "anthropic"]
    assert [s["attributes"]["llm_gateway.deployment"] for s in attempts] == ["m-first", "m-second"]
    assert [s["attributes"]["llm_gateway.attempts"] for s in attempts] == ["1", "2"]
    assert [s["attributes"]["http.status_code"] for s in attempts] == ["429", "200"]
    assert attempts[0]["status_code"] == "ERROR"
    assert all(s["context"]["trace_id"] == root["context"]["trace_id"] for s in attempts)


def test_provider_error_is_traced(traced):
    _, phoenix, _ = traced
    root, attempts = _one(_traces(phoenix, ROOTS), **{"gen_ai.request.model": "gpt-test", "http.status_code": "400"})
    # A 4xx is the client's error on the server span, a failed call on the attempt's
    # (OpenTelemetry's HTTP conventions).
    assert root["status_code"] == "UNSET"
    assert len(attempts) == 1 and attempts[0]["attributes"]["http.status_code"] == "400"
    assert attempts[0]["status_code"] == "ERROR"
    assert "gen_ai.usage.input_tokens" not in root["attributes"]


def test_virtual_key_name_and_team_never_the_key(traced):
    _, phoenix, _ = traced
    traces = _traces(phoenix, ROOTS)
    root, _ = _one(traces, **{"llm_gateway.key_name": "alice"})
    assert root["attributes"]["llm_gateway.team"] == "research"
    text = json.dumps(traces)
    for secret in (ALICE_KEY, harness.MASTER_KEY, harness.OPENAI_KEY, harness.ANTHROPIC_KEY):
        assert secret not in text


def test_answer_id_and_finish_reasons(traced):
    """`gen_ai.response.id` and `gen_ai.response.finish_reasons` (a JSON array in a string:
    Envoy's tracer tags with strings) for JSON, streamed and fallen-back answers, and none
    for a failed request."""
    _, phoenix, seen = traced
    traces = _traces(phoenix, ROOTS)
    plain, _ = _one(traces, **{"gen_ai.request.model": "gpt-test", "http.status_code": "200",
                               "llm_gateway.key_name": "master"})
    assert plain["attributes"]["gen_ai.response.id"] == seen["plain"].json["id"]
    assert plain["attributes"]["gen_ai.response.finish_reasons"] == '["stop"]'
    streamed, _ = _one(traces, **{"gen_ai.request.model": "claude-test", "llm_gateway.key_name": "master"})
    assert streamed["attributes"]["gen_ai.response.id"] == seen["stream"].chunks[0]["id"]
    assert streamed["attributes"]["gen_ai.response.id"].startswith("chatcmpl-msg_fake")
    assert json.loads(streamed["attributes"]["gen_ai.response.finish_reasons"]) == seen["stream"].finish_reasons()
    fallback, _ = _one(traces, **{"gen_ai.request.model": "m-first"})
    assert fallback["attributes"]["gen_ai.response.id"] == seen["fallback"].json["id"]
    assert fallback["attributes"]["gen_ai.response.finish_reasons"] == '["stop"]'
    error, _ = _one(traces, **{"gen_ai.request.model": "gpt-test", "http.status_code": "400"})
    assert "gen_ai.response.id" not in error["attributes"]
    assert "gen_ai.response.finish_reasons" not in error["attributes"]


def _io(span: dict) -> dict:
    """The span's OpenInference input and output attributes."""
    return {k: v for k, v in span["attributes"].items() if k.startswith(("input.", "output."))}


def test_content_is_not_captured_by_default(traced):
    """Only `m-captured` and Carol's key capture: no other span carries a prompt or an
    answer (Phoenix itself may show the answer's id and model as its output)."""
    _, phoenix, seen = traced
    traces = _traces(phoenix, ROOTS)
    for attrs in ({"gen_ai.request.model": "gpt-test", "http.status_code": "200", "llm_gateway.key_name": "master"},
                  {"gen_ai.request.model": "claude-test", "llm_gateway.key_name": "master"},
                  {"llm_gateway.key_name": "alice"}):
        root, attempts = _one(traces, **attrs)
        for span in [root, *attempts]:
            io = _io(span)
            assert "input.value" not in io, (attrs, io)
            assert "echo:" not in json.dumps(io), (attrs, io)


def test_prompt_and_completion_captured_per_model(traced):
    """`model_info.capture_content`: the request as the client sent it (JSON) and the
    answer's text, as OpenInference's input and output, which Phoenix shows as the
    span's; a key in the prompt (and echoed in the answer) is masked."""
    _, phoenix, seen = traced
    traces = _traces(phoenix, ROOTS)
    root, attempts = _one(traces, where=lambda a: "Be brief" in a.get("input.value", ""),
                          **{"gen_ai.request.model": "m-captured"})
    io = _io(root)
    assert io["input.mime_type"] == "application/json" and io["output.mime_type"] == "text/plain"
    # Written as the answer ends, after the attempt's span is finished: not repeated there.
    assert len(attempts) == 1
    assert "input.value" not in attempts[0]["attributes"] and "echo:" not in json.dumps(_io(attempts[0]))
    sent = json.loads(io["input.value"])
    assert sent["model"] == "m-captured"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "my key is sk-*** ok"}]
    assert seen["captured"].json["choices"][0]["message"]["content"] == f"echo: my key is {LEAKED_KEY} ok"
    assert io["output.value"] == "echo: my key is sk-*** ok"
    assert LEAKED_KEY not in json.dumps(traces)


def test_streamed_completion_captured_per_key(traced):
    """`virtual_keys[].capture_content`: a streamed answer's text, joined from its deltas."""
    _, phoenix, seen = traced
    root, _ = _one(_traces(phoenix, ROOTS), where=lambda a: "Be kind" not in a.get("input.value", ""),
                   **{"llm_gateway.key_name": "carol"})
    io = _io(root)
    assert json.loads(io["input.value"])["messages"] == [{"role": "user", "content": "hi"}]
    assert io["output.value"] == seen["carol"].content() == "echo: hi"
    assert root["attributes"]["gen_ai.response.finish_reasons"] == '["stop"]'


def test_messages_api_answer_in_anthropic_shape(traced):
    """A Messages client's answer, in Anthropic's shape: its message id, its `stop_reason`
    and its text blocks; the request as sent, its `system` included."""
    _, phoenix, seen = traced
    root, _ = _one(_traces(phoenix, ROOTS), where=lambda a: "Be kind" in a.get("input.value", ""),
                   **{"llm_gateway.key_name": "carol"})
    a = root["attributes"]
    assert a["gen_ai.response.id"] == seen["messages"].json["id"]
    assert a["gen_ai.response.finish_reasons"] == '["end_turn"]'
    assert json.loads(a["input.value"])["system"] == "Be kind."
    assert a["output.value"] == seen["messages"].json["content"][0]["text"] == "echo: hello"


def test_captured_content_is_capped(traced):
    """Past `capture_max_bytes`, prompt and answer are cut at a character boundary and
    marked with their whole size; the cut prompt is no longer JSON, so it has no JSON
    mime type."""
    _, phoenix, seen = traced
    root, _ = _one(_traces(phoenix, ROOTS), where=lambda a: "Be brief" not in a.get("input.value", ""),
                   **{"gen_ai.request.model": "m-captured"})
    io = _io(root)
    assert "input.mime_type" not in io
    for name, whole in (("input.value", None), ("output.value", seen["long"].json["choices"][0]["message"]["content"])):
        kept, marker = io[name].rsplit("...[truncated: ", 1)
        assert marker.endswith(" bytes]") and int(marker[:-len(" bytes]")]) > CAPTURE_MAX, io[name]
        assert CAPTURE_MAX - 1 <= len(kept.encode()) <= CAPTURE_MAX, len(kept.encode())
        if whole is not None:
            assert whole.startswith(kept) and int(marker[:-len(" bytes]")]) == len(whole.encode())
    assert io["input.value"].startswith('{"model": "m-captured"')


def _access_log(g, expected: int) -> list:
    """The access-log lines of chat requests, once `expected` of them are written."""
    chat: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in g.envoy.log_text().splitlines() if l.startswith("{")]
        chat = [l for l in lines if l.get("method") == "POST"]
        if len(chat) >= expected:
            break
        time.sleep(0.3)
    assert len(chat) == expected, chat
    return chat


def test_access_log_carries_operation_and_trace_id(traced):
    g, _, _ = traced
    chat = _access_log(g, ROOTS)
    assert sorted(l["operation"] for l in chat) == ["chat"] * (ROOTS - 1) + ["messages"], chat
    assert all(isinstance(l["trace_id"], str) and len(l["trace_id"]) == 32 for l in chat), chat
    assert CLIENT_TRACE in [l["trace_id"] for l in chat]
    # With access_log_numbers, counts and cost are JSON numbers, null where the request has none.
    numbers = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
               "reasoning_tokens", "cost_micro_usd")
    for l in chat:
        assert all(l[f] is None or type(l[f]) is int for f in numbers), l
    assert any(type(l["prompt_tokens"]) is int and l["prompt_tokens"] > 0
               and type(l["cost_micro_usd"]) is int for l in chat), chat


class _OtlpStandIn(BaseHTTPRequestHandler):
    """Records every export: path, headers and body size; answers 200 like an OTLP server."""

    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                              "size": len(body), "body": body})
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def otlp_stand_in():
    """A local OTLP/HTTP endpoint; yields (port, the exports it received)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpStandIn)
    _OtlpStandIn.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _OtlpStandIn.received
    finally:
        server.shutdown()
        server.server_close()


def test_langfuse_style_export_path_and_basic_auth(tmp_path, openai_fake, anthropic_fake, envoys, otlp_stand_in):
    """The export goes to Langfuse's OTLP path with the basic-auth header Envoy reads from
    its environment (`os.environ/LANGFUSE_AUTH`); the rendered file does not hold it."""
    port, received = otlp_stand_in
    auth = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test-secret").decode()
    g = start_gateway(
        tmp_path, openai_fake, anthropic_fake, env_extra={"LANGFUSE_AUTH": auth},
        general_extra={"opentelemetry": {
            "endpoint": f"http://127.0.0.1:{port}/api/public/otel/v1/traces",
            "headers": {"Authorization": "os.environ/LANGFUSE_AUTH"},
        }})
    envoys.append(g.envoy)
    assert g.chat(ask("gpt-test")).status == 200
    deadline = time.monotonic() + SPAN_TIMEOUT
    while not any(e["size"] for e in received) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(e["size"] for e in received), received
    for export in received:
        assert export["path"] == "/api/public/otel/v1/traces"
        assert export["headers"]["authorization"] == auth
        assert export["headers"]["content-type"] == "application/x-protobuf"
    assert "sk-lf-test-secret" not in g.envoy_config_path.read_text()
    assert "%ENVIRONMENT(LANGFUSE_AUTH)%" in g.envoy_config_path.read_text()


def test_sampling_rate_zero_exports_nothing(tmp_path, openai_fake, anthropic_fake, envoys, otlp_stand_in):
    """`sampling_rate: 0` exports no span, not even for a client's sampled `traceparent`
    (Envoy's random sampling decides for every request), while the access log still names
    the client's trace."""
    port, received = otlp_stand_in
    g = start_gateway(tmp_path, openai_fake, anthropic_fake, general_extra={"opentelemetry": {
        "endpoint": f"http://127.0.0.1:{port}", "sampling_rate": 0}})
    envoys.append(g.envoy)
    assert g.chat(ask("gpt-test")).status == 200
    assert g.chat(ask("gpt-test"), headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}).status == 200
    # Envoy's tracer exports every 5 s: wait past one flush.
    time.sleep(6)
    assert not any(e["size"] for e in received), received
    assert CLIENT_TRACE in [l["trace_id"] for l in _access_log(g, 2)]


def test_readme_example_config_is_valid(tmp_path):
    """The README's OpenTelemetry example passes `llm-gateway check`, and the bootstrap it
    renders passes Envoy's own validation."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- opentelemetry-example -->")
    block = readme[start:].split("```yaml", 1)[1].split("```", 1)[0]
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(block)
    env = harness.provider_env({"LLM_GATEWAY_MASTER_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-x",
                                "LANGFUSE_AUTH": "Basic eA=="})
    r = harness.run_cli("check", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    out = harness.render(cfg, tmp_path / "envoy.yaml", env=env)
    v = harness.envoy_validate(out)
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.parametrize("otel", [
    {"endpoint": "http://127.0.0.1:6006"},
    {"endpoint": "https://cloud.langfuse.com/api/public/otel/v1/traces",
     "headers": {"Authorization": "os.environ/LANGFUSE_AUTH"}, "sampling_rate": 0.1},
    {"endpoint": "https://otel-collector.example.com:4317", "protocol": "grpc",
     "headers": {"authorization": "os.environ/LANGFUSE_AUTH", "x-tenant": "a"},
     "access_log": True, "metrics": True},
], ids=["http", "langfuse", "grpc-logs-metrics"])
@pytest.mark.parametrize("form", ["static", "dynamic"])
def test_rendered_tracing_passes_envoy_validation(tmp_path, otel, form):
    """Every form of the section renders a bootstrap the real Envoy accepts, without a
    deprecated field."""
    cfg = harness.gateway_config("http://127.0.0.1:9", "http://127.0.0.1:9", 4000, 9901,
                                 general_extra={"opentelemetry": otel})
    path = harness.write_yaml(tmp_path / "gateway.yaml", cfg)
    env = harness.provider_env({"LANGFUSE_AUTH": "Basic eA=="})
    if form == "static":
        out = harness.render(path, tmp_path / "envoy.yaml", env=env)
    else:
        r = harness.run_cli("render", "--config", str(path), "--wasm", str(harness.wasm_path()),
                            "--dynamic", str(tmp_path / "dyn"), env=env)
        assert r.returncode == 0, r.stderr
        # Validate mode does not read xDS files: check the listener and clusters Envoy
        # would load from them, in a static bootstrap.
        dyn = tmp_path / "dyn"
        boot = yaml.safe_load((dyn / "envoy.yaml").read_text())
        boot.pop("dynamic_resources")
        boot.pop("node", None)
        strip = lambda docs: [{k: v for k, v in d.items() if k != "@type"} for d in docs]  # noqa: E731
        boot["static_resources"] = {
            "listeners": strip(yaml.safe_load((dyn / "lds.yaml").read_text())["resources"]),
            "clusters": strip(yaml.safe_load((dyn / "cds.yaml").read_text())["resources"]),
        }
        out = harness.write_yaml(tmp_path / "envoy.yaml", boot)
    v = harness.envoy_validate(out, cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "Deprecated" not in v.stdout + v.stderr, v.stdout + v.stderr


