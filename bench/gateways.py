#!/usr/bin/env python3
"""`make bench-gateways`: the gateway against other LLM gateways, per core, in one run.

The same requests (bench fixtures), the same fake provider and the same load generator as
`make bench`, on 127.0.0.1. Each target runs on core 0 as one worker; the fake provider and
wrk share core 1:

* plain Envoy (bench/floor.yaml), the floor: the same body proxied untranslated;
* the gateway (bootstrap rendered from bench/gateway.yaml);
* LiteLLM's proxy (PyPI `litellm[proxy]`, bench/gateways/requirements.txt), one uvicorn
  worker, configured by bench/gateways/litellm.yaml with the gateway's aliases;
* Portkey's gateway (npm `@portkey-ai/gateway`), one Node.js process; it keeps no provider
  config, so each request names its provider and address in `x-portkey-*` headers.

Per scenario and target: a correctness check of one answer (an OpenAI chat.completion or a
stream of 200 deltas with usage; for the fallback, the target's own sign that it fell
back), throughput in a closed loop, the process's CPU per request (all threads), latency at
a fixed light rate every target sustains, and at the end each process's RSS. Targets
alternate in rounds. Writes bench/out/gateways.json and bench/out/gateways.md.

Every process started here is stopped by PID at exit; every wait is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the load test's helpers: fixtures, configs, processes, wrk)
from run import BENCH, PORTS, PROCS, PROVIDER_KEY, log  # noqa: E402

LITELLM_PORT = 14100
PORTKEY_PORT = 14200

SCENARIOS = ["openai-1k", "anthropic-1k", "anthropic-tools", "anthropic-stream", "fallback"]

# Where Portkey sends each scenario (it has no config of its own): provider and base URL.
PORTKEY_ROUTES = {
    "openai-1k": ("openai", "http://127.0.0.1:18001/openai/v1"),
    "anthropic-1k": ("anthropic", "http://127.0.0.1:18001/anthropic/v1"),
    "anthropic-tools": ("anthropic", "http://127.0.0.1:18001/anthropic-tools/v1"),
    "anthropic-stream": ("anthropic", "http://127.0.0.1:18001/anthropic-stream/v1"),
}
# Portkey's fallback: a config with two targets, falling back on 429 as the others do.
PORTKEY_FALLBACK = {
    "strategy": {"mode": "fallback", "on_status_codes": [429]},
    "targets": [
        {"provider": "openai", "api_key": PROVIDER_KEY, "custom_host": "http://127.0.0.1:18002/v1"},
        {"provider": "anthropic", "api_key": PROVIDER_KEY,
         "custom_host": "http://127.0.0.1:18001/anthropic/v1"},
    ],
}

TARGETS = ("floor", "gateway", "litellm", "portkey")
TITLES = {"floor": "plain Envoy", "gateway": "this gateway", "litellm": "LiteLLM proxy",
          "portkey": "Portkey gateway"}


def portkey_headers(name: str) -> dict:
    if name == "fallback":
        return {"x-portkey-config": json.dumps(PORTKEY_FALLBACK, separators=(",", ":"))}
    provider, host = PORTKEY_ROUTES[name]
    return {"x-portkey-provider": provider, "x-portkey-custom-host": host}


def fell_back(target: str, headers: dict) -> str | None:
    """None when the answer says the target fell back to its second deployment."""
    if target == "litellm":
        got = headers.get("x-litellm-attempted-fallbacks")
        return None if got == "1" else f"x-litellm-attempted-fallbacks {got!r}, expected '1'"
    if target == "portkey":
        got = headers.get("x-portkey-last-used-option-index", "")
        return None if "targets[1]" in got else f"x-portkey-last-used-option-index {got!r}"
    return None


def wait_http(port: int, proc, what: str, path: str, timeout: float = 60) -> None:
    """Waits until `GET path` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            status = c.getresponse().status
            c.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s")


def version_of(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (p.stdout or p.stderr).strip().splitlines()[-1]
    except Exception:
        return "unknown"


def version_number(text: str) -> str:
    """`LiteLLM: Current Version = 1.2.3` -> `1.2.3`."""
    m = re.search(r"\d+\.\d+\S*", text)
    return m.group(0) if m else text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--litellm", required=True, help="the `litellm` executable")
    ap.add_argument("--portkey", required=True, help="Portkey's build/start-server.js")
    ap.add_argument("--node", default="node")
    ap.add_argument("--out", default=str(BENCH / "out"))
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 6)),
                    help="seconds of closed-loop load per target and scenario")
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", 2)))
    ap.add_argument("--latency-duration", type=float,
                    default=float(os.environ.get("BENCH_LATENCY_DURATION", 6)))
    ap.add_argument("--connections", type=int,
                    default=int(os.environ.get("BENCH_GATEWAYS_CONNECTIONS", 16)))
    ap.add_argument("--latency-connections", type=int, default=2)
    ap.add_argument("--latency-delay-ms", type=int, default=50,
                    help="think time per connection: 2 x 50 ms is about 40 req/s, light for all")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 2)))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""))
    ap.add_argument("--max-seconds", type=float,
                    default=float(os.environ.get("BENCH_MAX_SECONDS", 900)))
    args = ap.parse_args()

    started = time.monotonic()
    deadline = started + args.max_seconds
    out = Path(args.out)
    logs, fx, raw = out / "logs", out / "fixtures", out / "raw"
    for d in (logs, fx, raw):
        d.mkdir(parents=True, exist_ok=True)
    only = {s for s in args.only.split(",") if s}
    scenarios = [sc for sc in run.SCENARIOS if sc["name"] in SCENARIOS
                 and (not only or sc["name"] in only)]
    ports = {"floor": PORTS["floor"], "gateway": PORTS["gateway"], "litellm": LITELLM_PORT,
             "portkey": PORTKEY_PORT}
    busy = [f"{k}={v}" for k, v in {**PORTS, "litellm": LITELLM_PORT,
                                     "portkey": PORTKEY_PORT}.items() if run.port_open(v)]
    if busy:
        log(f"ports already in use: {', '.join(busy)}; stop whatever listens there")
        return 2

    results: dict = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": run.machine_info(args.envoy),
        "versions": {
            "litellm": version_number(version_of([args.litellm, "--version"])),
            "portkey": json.loads((Path(args.portkey).parent.parent / "package.json")
                                  .read_text()).get("version", "unknown"),
            "node": version_of([args.node, "--version"]),
        },
        "method": {
            "core": "Every target on core 0 (one worker or process), fake provider and wrk on core 1",
            "throughput": f"wrk -t1 -c{args.connections}, {args.duration:g}s in all after a "
                          f"{args.warmup:g}s warm-up",
            "latency": f"wrk -t1 -c{args.latency_connections}, each connection waits "
                       f"{args.latency_delay_ms} ms between requests, {args.latency_duration:g}s in all",
            "rounds": args.rounds,
        },
        "scenarios": [], "rss_kib": {},
    }

    log("building the native driver and writing fixtures")
    driver = run.build_driver()
    subprocess.run([str(driver), "fixtures", str(fx)], check=True, timeout=60)
    bodies: dict[str, Path] = {}
    for sc in scenarios:
        body = (fx / sc["body"]).read_bytes().replace(b'"__MODEL__"',
                                                      json.dumps(sc["alias"]).encode())
        bodies[sc["name"]] = raw / f"body-{sc['name']}.json"
        bodies[sc["name"]].write_bytes(body)
    headers_files: dict[str, Path] = {}
    for sc in scenarios:
        f = raw / f"portkey-headers-{sc['name']}.txt"
        f.write_text("".join(f"{k}: {v}\n" for k, v in portkey_headers(sc["name"]).items()))
        headers_files[sc["name"]] = f

    gw_cfg = out / "gateway-envoy.yaml"
    subprocess.run([args.cli, "render", "--config", str(BENCH / "gateway.yaml"), "--wasm",
                    str(Path(args.wasm).resolve()), "--out", str(gw_cfg)], check=True, timeout=60)
    fake_cfg = out / "fake-provider.yaml"
    fake_cfg.write_text(run.fake_provider_yaml(fx.resolve()))

    fake = PROCS.start("fake", run.pinned(run.LOAD_CORE, [
        args.envoy, "-c", str(fake_cfg), "--concurrency", "1", "--disable-hot-restart",
        "-l", "warning"]), logs / "fake.log")
    run.wait_ready(PORTS["fake_admin"], fake, "fake provider")

    log("starting plain Envoy, the gateway, LiteLLM and Portkey (core 0, one worker each)")
    procs = {
        "floor": run.start_envoy("floor", args.envoy, BENCH / "floor.yaml", 1,
                                 PORTS["floor_admin"], logs),
        "gateway": run.start_envoy("gateway", args.envoy, gw_cfg, 1, PORTS["gateway_admin"], logs),
    }
    procs["litellm"] = PROCS.start("litellm", run.pinned(run.ENVOY_CORE, [
        args.litellm, "--config", str(BENCH / "gateways" / "litellm.yaml"), "--host",
        "127.0.0.1", "--port", str(LITELLM_PORT), "--num_workers", "1"]),
        logs / "litellm.log", stdout_devnull=True, env={
            "LLM_GATEWAY_MASTER_KEY": run.MASTER_KEY, "BENCH_PROVIDER_KEY": PROVIDER_KEY,
            # The price map ships in the package; LiteLLM would otherwise fetch it.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
    procs["portkey"] = PROCS.start("portkey", run.pinned(run.ENVOY_CORE, [
        args.node, args.portkey, f"--port={PORTKEY_PORT}", "--headless"]),
        logs / "portkey.log", stdout_devnull=True)
    wait_http(LITELLM_PORT, procs["litellm"], "LiteLLM", "/health/liveliness", timeout=120)
    run.wait_port(PORTKEY_PORT, procs["portkey"], "Portkey", timeout=60)
    results["rss_kib"]["idle"] = {t: run.rss_kib(p.pid) for t, p in procs.items()}

    def request_kw(target: str, sc: dict) -> dict:
        kw: dict = dict(port=ports[target], body_file=bodies[sc["name"]],
                        path="/v1/chat/completions")
        if target == "floor":
            kw["path"] = sc["floor_path"]
        elif target == "portkey":
            kw["key"] = PROVIDER_KEY  # Portkey passes the client's key to the provider
            kw["headers_file"] = headers_files[sc["name"]]
        return kw

    def preflight(target: str, sc: dict) -> str | None:
        kw = request_kw(target, sc)
        extra = portkey_headers(sc["name"]) if target == "portkey" else None
        try:
            status, headers, body = run.post(kw["port"], kw["path"], kw["body_file"].read_bytes(),
                                             timeout=30, key=kw.get("key", run.MASTER_KEY),
                                             headers=extra)
        except OSError as e:
            return f"request failed: {e}"
        if target == "floor":
            answer = run.FLOOR_ANSWER[sc["name"]]
            ok = status == 200 and body == (fx / answer).read_bytes()
            return None if ok else f"answered {status}, not the canned answer"
        if target == "gateway":
            return run.check_gateway(sc, status, headers, body)
        why = run.check_openai_answer(sc, status, body)
        if why is None and sc.get("attempts", 1) > 1:
            why = fell_back(target, headers)
        return why

    for sc in scenarios:
        name = sc["name"]
        row: dict = {"name": name, "title": sc["title"]}
        live = []
        for t in TARGETS:
            if time.monotonic() > deadline:
                row[t] = {"status": "skipped (time budget)"}
                continue
            why = preflight(t, sc)
            if why:
                log(f"{name} {t}: FAILED its check: {why}")
                row[t] = {"status": "failed", "reason": why}
            else:
                live.append(t)
        log(f"{name}: {' / '.join(live)}, {args.rounds} alternating rounds")
        row.update(run.alternate(raw, f"gw-{name}", {t: procs[t].pid for t in live},
                                 {t: request_kw(t, sc) for t in live}, args))
        compare(row)
        results["scenarios"].append(row)
        log(f"{name}: " + ", ".join(
            f"{t} {row[t]['throughput']['capacity_rps_per_core'] or 0:,} req/s/core"
            for t in live if "throughput" in row.get(t, {})))

    results["rss_kib"]["after_load"] = {t: run.rss_kib(p.pid) for t, p in procs.items()}
    PROCS.stop_all()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "gateways.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md = render_markdown(results)
    (out / "gateways.md").write_text(md)
    print(md)
    log(f"done in {results['elapsed_s']} s: {out / 'gateways.md'}, {out / 'gateways.json'}")
    return 0


def compare(row: dict) -> None:
    """Each target against the floor: per-core capacity ratio, added CPU and latency."""
    f = row.get("floor", {})
    if f.get("status") != "ok":
        return
    ft, fl = f["throughput"], f["latency"]["latency_us"]
    for t in TARGETS[1:]:
        r = row.get(t, {})
        if r.get("status") not in ("ok", "errors"):
            continue
        rt, rl = r["throughput"], r["latency"]["latency_us"]
        if rt.get("capacity_rps_per_core") and ft.get("capacity_rps_per_core"):
            r["capacity_ratio"] = round(rt["capacity_rps_per_core"] / ft["capacity_rps_per_core"], 4)
        if rt.get("envoy_cpu_us_per_req") is not None and ft.get("envoy_cpu_us_per_req") is not None:
            r["added_cpu_us_per_req"] = round(rt["envoy_cpu_us_per_req"] - ft["envoy_cpu_us_per_req"], 1)
        r["added_latency_ms"] = {p: round((rl[p] - fl[p]) / 1e3, 3) for p in ("p50", "p90", "p99")}


def render_markdown(res: dict) -> str:
    m, v = res["machine"], res["versions"]
    L = [f"### The gateway against other LLM gateways ({res['generated_at']}, commit {m['commit']})",
         "",
         f"Machine: {m['nproc']} cores, {m['cpu_model']}, Linux {m['kernel']}. Envoy {m['envoy']}, "
         f"LiteLLM {v['litellm']}, Portkey gateway {v['portkey']} on Node.js {v['node']}. "
         f"{res['method']['core']}.",
         "",
         "| scenario | target | req/s (measured) | CPU µs/req | per-core capacity req/s | × plain Envoy | "
         "added CPU µs/req | p50 / p90 / p99 ms at a light rate | added p99 ms |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in res["scenarios"]:
        for t in TARGETS:
            r = row.get(t, {})
            label = f"{row['title']}" if t == "floor" else ""
            if r.get("status") not in ("ok", "errors"):
                L.append(f"| {label} | {TITLES[t]} | **{r.get('status', 'n/a').upper()}** "
                         f"{r.get('reason', '')[:120]} | | | | | | |")
                continue
            tp, lat = r["throughput"], r["latency"]["latency_us"]
            errs = "" if r["status"] == "ok" else f" ⚠ {tp['errors_total'] + r['latency']['errors_total']} err"
            ratio = "1" if t == "floor" else run.fmt(r.get("capacity_ratio"), digits=3)
            added = "" if t == "floor" else run.fmt(r.get("added_cpu_us_per_req"), digits=0)
            added_p99 = "" if t == "floor" else f"{r['added_latency_ms']['p99']:+.2f}"
            L.append(f"| {label} | {TITLES[t]} | {tp['rps']:,.0f}{errs} | "
                     f"{run.fmt(tp['envoy_cpu_us_per_req'], digits=0)} | "
                     f"{tp['capacity_rps_per_core'] or 0:,} | {ratio} | {added} | "
                     f"{lat['p50']/1e3:.2f} / {lat['p90']/1e3:.2f} / {lat['p99']/1e3:.2f} | {added_p99} |")
    rss = res.get("rss_kib", {})
    if rss.get("after_load"):
        L += ["", "| memory | " + " | ".join(TITLES[t] for t in TARGETS) + " |",
              "|---|" + "---:|" * len(TARGETS)]
        for key, label in (("idle", "RSS, idle"), ("after_load", "RSS after the run")):
            vals = rss.get(key, {})
            L.append(f"| {label} | " + " | ".join(
                f"{vals[t] / 1024:.0f} MiB" if t in vals else "–" for t in TARGETS) + " |")
    L += ["", f"Method: throughput = {res['method']['throughput']}; latency = "
          f"{res['method']['latency']}; {res['method']['rounds']} alternating rounds. CPU = the "
          "process's on-CPU time (all threads) / requests; per-core capacity = 1 s / CPU per "
          "request. Plain Envoy proxies the same body untranslated to the same canned answer.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
