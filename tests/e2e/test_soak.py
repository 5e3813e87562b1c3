"""Soak: mixed traffic with injected provider faults, bounded in time, on 127.0.0.1 only.

`SOAK_CLIENTS` (8) concurrent clients send streamed and non-streamed requests to an
OpenAI-compatible alias, an Anthropic alias and an alias that falls back from one to the
other, with the master key and with a virtual key allowed two parallel requests, for
`SOAK_SECONDS` (30; `make soak` runs 600). The providers answer normally most of the time
and otherwise with 429, 503/529, a reset before or in the middle of the answer, malformed
JSON or SSE, a truncated body, or unknown events.

At the end: no Wasm VM crashed or reloaded; every request the clients sent is in the JSON
access log exactly once and in `llm_requests_total`; every answer had its defined shape;
Envoy's RSS at the end is within a few MB of its RSS after the warm-up. The figures are
printed, and written as JSON to `SOAK_REPORT` when set.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import faults
import rawclient
from harness import (ANTHROPIC_KEY, ANTHROPIC_KEY_ENV, MASTER_KEY, OPENAI_KEY, OPENAI_KEY_ENV, Envoy,
                     free_port, gateway_config, provider_env, render, write_yaml)
from test_faults import access_log, admin_stats, requests_total, rss_kb, vm_health

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
WARMUP_SECONDS = min(10.0, max(3.0, SOAK_SECONDS / 6))
# RSS may grow this much between the end of the warm-up and the end of the soak.
RSS_SLACK_KB = int(os.environ.get("SOAK_RSS_SLACK_KB", str(8 * 1024)))
VKEY = "sk-soak-virtual-key-0123456789abcdef"


def fault_mix(kind: str) -> dict:
    overloaded = 529 if kind == "anthropic" else 503
    return {
        "normal": (80, faults.normal),
        "429": (4, faults.error_status(429, "slow down")),
        str(overloaded): (4, faults.error_status(overloaded, "overloaded")),
        "reset_before": (2, faults.reset_before_answer()),
        "reset_mid_stream": (3, faults.reset_mid_stream(events_first=3)),
        "malformed_json": (2, faults.malformed_json()),
        "malformed_sse": (2, faults.malformed_sse()),
        "truncated": (2, faults.truncated_body(declared=3000, sent=200)),
        "unknown_event": (1, faults.unknown_event("odd events")),
    }


def classify(r: rawclient.RawResult, stream: bool) -> str:
    """The outcome of one request, after checking it has its defined shape."""
    if r.status == 200 and not stream:
        assert r.complete, r.body[:200]
        assert isinstance(r.json["choices"][0]["message"]["content"], str), r.body[:300]
        return "200"
    if r.status == 200:
        if not r.complete:
            assert r.aborted and r.done_count == 0, r.events[-3:]
            return "200 stream cut"
        assert r.done_count == 1 and r.events[-1] == "[DONE]", r.events[-3:]
        if r.error_events():
            return "200 stream error event"
        assert r.finish_reasons(), r.events[-3:]
        return "200 stream"
    assert r.complete, (r.status, r.body[:200])
    err = r.json["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), r.body[:300]
    return str(r.status)


def test_soak(tmp_path):
    oa = faults.RawProvider("openai", api_key=OPENAI_KEY).start()
    an = faults.RawProvider("anthropic", api_key=ANTHROPIC_KEY).start()
    oa.set_default(faults.mixed(fault_mix("openai"), seed=1))
    an.set_default(faults.mixed(fault_mix("anthropic"), seed=2))
    port, admin = free_port(), free_port()
    models = [
        {"model_name": "gpt-s", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{oa.url}/v1",
                                                   "api_key": f"os.environ/{OPENAI_KEY_ENV}"}},
        {"model_name": "claude-s", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": an.url,
                                                      "api_key": f"os.environ/{ANTHROPIC_KEY_ENV}"}},
        {"model_name": "gpt-fb", "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{oa.url}/v1",
                                                    "api_key": f"os.environ/{OPENAI_KEY_ENV}"},
         "model_info": {"id": "fb-openai"}},
    ]
    cfg = gateway_config(None, None, port, admin, extra_models=models,
                         router_settings={"fallbacks": [{"gpt-fb": ["claude-s"]}]})
    cfg["general_settings"]["request_timeout"] = 20
    cfg["virtual_keys"] = [{"name": "soak", "key_sha256": hashlib.sha256(VKEY.encode()).hexdigest(),
                            "max_parallel_requests": 2}]
    env = provider_env()
    out = render(write_yaml(tmp_path / "gateway.yaml", cfg), tmp_path / "envoy.yaml", env=env)
    envoy = Envoy(out, tmp_path, admin, env=env).start()
    admin_url = f"http://127.0.0.1:{admin}"
    try:
        envoy.wait_ready()
        start_vm = vm_health(admin_stats(admin_url))
        outcomes: Counter = Counter()
        problems: list = []
        sent = [0]
        lock = threading.Lock()
        started = time.monotonic()
        stop_at = started + SOAK_SECONDS
        warm_at = started + WARMUP_SECONDS

        def client(i: int) -> None:
            rnd = random.Random(1000 + i)
            while time.monotonic() < stop_at:
                model = rnd.choice(["gpt-s", "claude-s", "gpt-fb"])
                stream = rnd.random() < 0.5
                key = VKEY if i < 2 else MASTER_KEY
                body = {"model": model, "messages": [{"role": "user", "content": f"soak {i}"}],
                        "max_tokens": 50}
                if stream:
                    body["stream"] = True
                    body["stream_options"] = {"include_usage": rnd.random() < 0.5}
                with lock:
                    sent[0] += 1
                try:
                    r = rawclient.call(port, body, key, timeout=30)
                    outcome = classify(r, stream)
                except Exception as e:  # noqa: BLE001 - every failure is reported below
                    with lock:
                        problems.append(f"{model} stream={stream}: {e!r}"[:500])
                    continue
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        while time.monotonic() < warm_at:
            time.sleep(0.1)
        rss_warm = rss_kb(envoy.proc.pid)
        for t in threads:
            t.join(SOAK_SECONDS + 60)
        elapsed = time.monotonic() - started
        drain = time.monotonic() - stop_at
        assert not any(t.is_alive() for t in threads), "a client is stuck"
        time.sleep(1.0)
        rss_end = rss_kb(envoy.proc.pid)

        # Accounting: every request once in the access log and in llm_requests_total. Envoy
        # flushes the access log every 10 s (its file_flush_interval), hence the wait.
        deadline = time.monotonic() + 20
        while True:
            posts = [e for e in access_log(envoy) if e.get("method") == "POST"]
            total = requests_total(admin_stats(admin_url))
            if (len(posts) >= sent[0] and total >= sent[0]) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        accounted_after = time.monotonic() - stop_at - drain
        stats = admin_stats(admin_url)
        report = {
            "seconds": round(elapsed, 1),
            "clients": CLIENTS,
            "requests": sent[0],
            "rps": round(sent[0] / elapsed, 1),
            "outcomes": dict(sorted(outcomes.items())),
            "client_problems": len(problems),
            "injected_openai": dict(sorted(oa.counts.items())),
            "injected_anthropic": dict(sorted(an.counts.items())),
            "access_log_entries": len(posts),
            "llm_requests_total": total,
            "fallbacks": sum(v for k, v in stats.items() if k.startswith("wasmcustom.llm_fallbacks_total")),
            "vm_stats_start": start_vm,
            "vm_stats_end": vm_health(stats),
            "rss_kb_after_warmup": rss_warm,
            "rss_kb_end": rss_end,
            "rss_growth_kb": rss_end - rss_warm,
            "drain_seconds": round(drain, 2),
            "accounting_wait_seconds": round(accounted_after, 2),
        }
        print("\nsoak report: " + json.dumps(report, indent=2))
        if os.environ.get("SOAK_REPORT"):
            Path(os.environ["SOAK_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")

        assert not problems, problems[:10]
        assert report["vm_stats_end"] == start_vm, report
        log = envoy.log_text()
        for sign in ("panicked", "wasm_fail_stream", "Uncaught", "RuntimeError"):
            assert sign not in log, sign
        assert len(posts) == sent[0], (len(posts), sent[0])
        assert total == sent[0], (total, sent[0])
        assert outcomes["200"] + outcomes["200 stream"] > sent[0] / 2, outcomes
        assert rss_end - rss_warm < RSS_SLACK_KB, (rss_warm, rss_end)
    finally:
        envoy.stop()
        oa.stop()
        an.stop()
