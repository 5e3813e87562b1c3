"""Stats and access log: a real Prometheus scrapes the real Envoy's /stats/prometheus, and
after a known mix of requests (streamed and not, two providers, one fallback, one error) the
expected series carry the expected labels and values; the JSON access log adds up to the
same totals."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import harness
from fakes import Reply, openai_error
from harness import anthropic_deployment, openai_deployment, start_gateway

SCRAPE_TIMEOUT = 40.0


def prometheus_bin() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not found:
        pytest.fail("the `prometheus` binary is missing: `make e2e` installs Debian's prometheus package")
    return found


class Prometheus:
    def __init__(self, tmp: Path, target_port: int):
        self.port = harness.free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: envoy\n"
            "    metrics_path: /stats/prometheus\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [prometheus_bin(), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        harness.wait_http_ok(self.url("/-/ready"), "prometheus", self.proc, timeout)

    def query(self, q: str) -> list:
        with urllib.request.urlopen(self.url("/api/v1/query?" + urllib.parse.urlencode({"query": q})), timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def stop(self) -> None:
        harness.stop_process(self.proc, timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def observed(tmp_path_factory, openai_fake, anthropic_fake):
    """Runs the known mix once, then scrapes; yields (gateway, prometheus)."""
    tmp = tmp_path_factory.mktemp("metrics")
    models = [openai_deployment("m-first", "gpt-first", openai_fake.url),
              anthropic_deployment("m-second", "claude-second", anthropic_fake.url)]
    g = start_gateway(tmp, openai_fake, anthropic_fake, extra_models=models,
                      router_settings={"fallbacks": [{"m-first": ["m-second"]}]})
    prom = Prometheus(tmp, g.admin_port)
    try:
        openai_fake.reset()
        anthropic_fake.reset()
        ask = lambda model, **kw: {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}  # noqa: E731
        # Two OpenAI answers (11 + 7 tokens each), one Anthropic answer (12 + 6).
        for _ in range(2):
            assert g.chat(ask("gpt-test")).status == 200
        assert g.chat(ask("claude-test")).status == 200
        # One fallback: the OpenAI deployment answers 429, the Anthropic one answers.
        openai_fake.enqueue(openai_error(429, "Rate limit reached", type="requests"))
        r = g.chat(ask("m-first"))
        assert r.status == 200 and r.header("x-llm-attempts") == "2", (r.status, r.body)
        # One client error from the provider (not retried).
        openai_fake.enqueue(openai_error(400, "bad parameter"))
        assert g.chat(ask("gpt-test")).status == 400
        # One streamed Anthropic answer with usage.
        s = g.stream(ask("claude-test", stream=True, stream_options={"include_usage": True}))
        assert s.status == 200 and s.done_count == 1, s.raw[:300]
        prom.wait_ready()
        yield g, prom
    finally:
        prom.stop()
        g.envoy.stop()


def _value(result: list) -> float:
    return sum(float(r["value"][1]) for r in result)


def wait_for(prom: Prometheus, q: str, expected: float) -> list:
    """Polls until the query sums to `expected` (scrapes and stats flushes take seconds)."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT
    result: list = []
    while time.monotonic() < deadline:
        result = prom.query(q)
        if result and abs(_value(result) - expected) < 1e-9:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{q}: expected {expected}, got {result}")


def test_request_counts_by_model_provider_and_status(observed):
    _, prom = observed
    r = wait_for(prom, 'llm_requests_total{model="gpt-test",provider="openai",status_class="2xx"}', 2)
    assert r[0]["metric"]["upstream_model"] == "gpt-4o-mini"
    assert r[0]["metric"]["key"] == "master"
    wait_for(prom, 'llm_requests_total{model="gpt-test",provider="openai",status_class="4xx"}', 1)
    wait_for(prom, 'llm_requests_total{model="claude-test",provider="anthropic",status_class="2xx"}', 2)
    r = wait_for(prom, 'llm_requests_total{model="m-first",status_class="2xx"}', 1)
    assert r[0]["metric"]["provider"] == "anthropic"
    assert r[0]["metric"]["upstream_model"] == "claude-second"


def test_fallbacks_and_provider_errors(observed):
    _, prom = observed
    wait_for(prom, 'llm_fallbacks_total{model="m-first",provider="anthropic"}', 1)
    r = wait_for(prom, 'llm_provider_errors_total{provider="openai",status="429"}', 1)
    assert r[0]["metric"]["model"] == "m-first"
    wait_for(prom, 'llm_provider_errors_total{model="gpt-test",status="400"}', 1)


def test_token_counters(observed):
    _, prom = observed
    wait_for(prom, 'llm_tokens_total{model="gpt-test",token_type="input"}', 22)
    wait_for(prom, 'llm_tokens_total{model="gpt-test",token_type="output"}', 14)
    # One JSON and one streamed Anthropic answer: 12 + 6 tokens each.
    wait_for(prom, 'llm_tokens_total{model="claude-test",token_type="input"}', 24)
    wait_for(prom, 'llm_tokens_total{model="claude-test",token_type="output"}', 12)


def test_latency_histograms(observed):
    _, prom = observed
    wait_for(prom, 'gen_ai_client_operation_duration_ms_count{model="gpt-test"}', 3)
    wait_for(prom, 'gen_ai_server_time_to_first_token_ms_count{model="claude-test"}', 1)
    wait_for(prom, 'gen_ai_client_token_usage_count{model="claude-test",token_type="output"}', 2)


def test_no_label_carries_a_key_or_free_text(observed):
    _, prom = observed
    wait_for(prom, 'sum(llm_requests_total)', 6)
    for series in prom.query('{__name__=~"llm_.*|gen_ai_.*"}'):
        for name, value in series["metric"].items():
            assert "sk-" not in value, (name, value)
            assert "hi" != value, (name, value)


def test_access_log_adds_up(observed):
    g, _ = observed
    lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in g.envoy.log_text().splitlines() if l.startswith("{")]
        chat = [l for l in lines if l.get("method") == "POST"]
        if len(chat) >= 6:
            break
        time.sleep(0.3)
    chat = [l for l in lines if l.get("method") == "POST"]
    assert len(chat) == 6, chat
    prompt = sum(int(l["prompt_tokens"]) for l in chat if l.get("prompt_tokens"))
    completion = sum(int(l["completion_tokens"]) for l in chat if l.get("completion_tokens"))
    assert prompt == 22 + 24 + 12, chat
    assert completion == 14 + 12 + 6, chat
    assert all(l["key"] == "master" for l in chat), chat
    fallback = [l for l in chat if l["model"] == "m-first"]
    # Who answered comes from the last attempt's endpoint and Envoy's attempt count.
    assert fallback[0]["attempts"] == 2 and fallback[0]["provider"] == "anthropic"
    assert fallback[0]["upstream_model"] == "claude-second", fallback[0]
    assert fallback[0]["deployment"] == "m-second", fallback[0]
    # Known models are priced; claude-second is in no price table: no cost, not $0.
    priced = [l for l in chat if l["status"] == 200 and l["model"] in ("gpt-test", "claude-test")]
    assert priced and all(int(l["cost_micro_usd"]) > 0 for l in priced), priced
    assert fallback[0]["cost_micro_usd"] is None, fallback[0]
    # Tokens an answer had none of are not written: null, not "0".
    assert fallback[0]["cached_tokens"] is None and fallback[0]["reasoning_tokens"] is None, fallback[0]


def test_cost_counters(observed):
    _, prom = observed
    # gpt-4o-mini: 11 x $0.15/M + 7 x $0.60/M = $5.85e-6, rounded to 6 micro-USD, twice.
    wait_for(prom, 'llm_cost_micro_usd_total{model="gpt-test",key="master"}', 12)
    # claude-sonnet-4-5: 12 x $3/M + 6 x $15/M = 126 micro-USD, JSON and streamed.
    wait_for(prom, 'llm_cost_micro_usd_total{model="claude-test"}', 252)


@pytest.mark.parametrize("model,cost", [("gpt-test", "0.000006"), ("claude-test", "0.000126")])
def test_cost_header_on_json_answers(gw, model, cost):
    r = gw.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 200, r.body
    assert r.header("x-llm-cost-usd") == cost
    assert r.header("x-llm-prompt-tokens") and r.header("x-llm-completion-tokens")


@pytest.mark.parametrize("model,provider,cost", [("gpt-test", "openai", 0.000006), ("claude-test", "anthropic", 0.000126)])
def test_cost_in_the_stream_usage_chunk(gw, model, provider, cost):
    s = gw.stream({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "stream_options": {"include_usage": True}})
    assert s.status == 200 and s.done_count == 1
    usage_chunks = [c for c in s.chunks if c.get("usage")]
    assert len(usage_chunks) == 1, s.chunks
    chunk = usage_chunks[0]
    assert chunk["choices"] == []
    assert chunk["usage"]["cost_usd"] == pytest.approx(cost)
    assert chunk["llm_gateway"]["provider"] == provider
    assert chunk["llm_gateway"]["attempts"] == 1


def test_sdk_sees_stream_cost(gw):
    client = gw.client()
    stream = client.chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    last = None
    for chunk in stream:
        last = chunk
    assert last is not None and last.usage is not None
    assert last.usage.model_extra.get("cost_usd") == pytest.approx(0.000126)
    assert last.model_extra["llm_gateway"]["model"] == "claude-sonnet-4-5"


REPO = Path(__file__).resolve().parents[2]


def test_alert_rules_are_valid():
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    out = subprocess.run([promtool, "check", "rules", str(REPO / "envoy/observability/alerts.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_and_alert_queries_run_against_the_real_series(observed):
    _, prom = observed
    wait_for(prom, 'sum(llm_requests_total)', 6)
    dash = json.loads((REPO / "envoy/observability/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    import yaml
    rules = yaml.safe_load((REPO / "envoy/observability/alerts.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) > 10
    for e in exprs:
        prom.query(e)  # raises unless Prometheus accepts the query
    # The core panels have data after the mix of requests.
    for e in exprs[:4]:
        deadline = time.monotonic() + SCRAPE_TIMEOUT
        while not prom.query(e) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert prom.query(e), e
