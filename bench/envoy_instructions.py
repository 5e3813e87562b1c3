#!/usr/bin/env python3
"""`make bench-instructions`: instructions Envoy executes per request, under callgrind.

The load test's CPU figures move with whatever else the machine does; instruction counts
do not. This runs each Envoy of the load test (plain Envoy, the no-op wasm filter, the
gateway, optionally a candidate .wasm or gateway config) under `valgrind --tool=callgrind`,
one worker, and counts every instruction of the process (Envoy, V8's compiled module, libc)
while it serves exactly N requests of a scenario, after a warm-up that lets V8 tier the
module up.
The same binaries and inputs give the same count to a fraction of a percent, so a change
of a few thousand instructions per request is visible on a busy machine.

User-space only: the kernel's share of a request (sockets, scheduling) is not counted,
so the gateway/floor ratio here is lower than the load test's CPU ratio.

Everything runs on 127.0.0.1; every process started is stopped by PID; every wait is
bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the load test's helpers: fixtures, configs, processes)

DEFAULT_SCENARIOS = ("openai-1k,anthropic-1k,anthropic-100k,anthropic-tools,anthropic-stream,"
                     "fallback,bedrock-1k,vertex-1k,vertex-claude-1k")


def send(port: int, path: str, body: bytes, n: int, deadline: float) -> int:
    """Sends `n` requests on one keep-alive connection; returns how many were not 2xx."""
    bad = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"content-type": "application/json",
               "authorization": f"Bearer {run.MASTER_KEY}"}
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                raise RuntimeError("out of time")
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if not 200 <= r.status < 300:
                bad += 1
    finally:
        conn.close()
    return bad


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)


def dumped_total(path: Path, deadline: float) -> int:
    """The instruction total of a callgrind dump, once the file is complete."""
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump at {path}")


def measure_target(name: str, envoy: str, config: Path, port: int, admin: int, paths: dict,
                   bodies: dict, scenarios: list[dict], args, out: Path,
                   deadline: float) -> dict:
    prefix = out / f"callgrind-{name}"
    argv = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
            f"--callgrind-out-file={prefix}.%p", envoy, "-c", str(config),
            "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]
    # The AWS credentials too (run.envoy_env): Bedrock requests are signed, as in production.
    proc = run.PROCS.start(name, argv, out / "logs" / f"callgrind-{name}.log", stdout_devnull=True,
                           env=run.envoy_env())
    results = {}
    try:
        run.wait_ready(admin, proc, f"{name} under callgrind", timeout=240)
        instrumented = False
        for part, sc in enumerate(scenarios, start=1):
            path, body = paths[sc["name"]], bodies[sc["name"]]
            if path == "/v1/chat/completions":
                if sc.get("token"):
                    # Vertex AI: the gateway's first token fetch, before anything is counted.
                    run.wait_answered(port, path, body, f"{name}/{sc['name']}", timeout=120)
                # What is counted is the right answer from the right provider.
                why = run.check_gateway(sc, *run.post(port, path, body, timeout=120))
                if why:
                    raise RuntimeError(f"{name}/{sc['name']}: {why}")
            # Warm-up: V8 compiles hot functions again with its optimizing tier.
            if send(port, path, body, args.warmup, deadline):
                raise RuntimeError(f"{name}/{sc['name']}: warm-up answers were not 2xx")
            if not instrumented:
                control(proc.pid, "-i", "on")
                instrumented = True
                send(port, path, body, 20, deadline)
            control(proc.pid, "-z")
            bad = send(port, path, body, args.requests, deadline)
            control(proc.pid, "-d")
            total = dumped_total(Path(f"{prefix}.{proc.pid}.{part}"), deadline)
            results[sc["name"]] = {"per_request": round(total / args.requests), "non_2xx": bad}
            run.log(f"{name:>9} {sc['name']:<16} {total / args.requests:>12,.0f} instructions per request")
    finally:
        run.PROCS.stop(name)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--out", default=str(run.BENCH / "out"))
    ap.add_argument("--requests", type=int, default=300, help="measured requests per scenario")
    ap.add_argument("--warmup", type=int, default=150, help="requests before each measurement")
    ap.add_argument("--only", default=DEFAULT_SCENARIOS, help="comma-separated scenario names")
    ap.add_argument("--candidate-wasm", default="",
                    help="a second .wasm, rendered from the same config, measured in the same run")
    ap.add_argument("--candidate-config", default="",
                    help="a second gateway config (default bench/gateway.yaml) for the candidate, "
                         "with --candidate-wasm or the same .wasm: A/B of a config change")
    ap.add_argument("--max-seconds", type=float, default=1500)
    args = ap.parse_args()
    deadline = time.monotonic() + args.max_seconds
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            run.log(f"{tool} not found (Debian's valgrind package)")
            return 2
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    fx = out / "fixtures"
    fx.mkdir(parents=True, exist_ok=True)
    busy = [f"{k}={v}" for k, v in run.PORTS.items() if run.port_open(v)]
    if busy:
        run.log(f"ports already in use: {', '.join(busy)}")
        return 2

    names = [s for s in args.only.split(",") if s]
    by_name = {s["name"]: s for s in run.SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        run.log(f"unknown scenarios {unknown}; known: {sorted(by_name)}")
        return 2
    scenarios = [by_name[n] for n in names]

    driver = run.build_driver()
    subprocess.run([str(driver), "fixtures", str(fx)], check=True, timeout=60)
    bodies = {sc["name"]: (fx / sc["body"]).read_bytes()
              .replace(b'"__MODEL__"', json.dumps(sc["alias"]).encode()) for sc in scenarios}

    gw_cfg = out / "gateway-envoy.yaml"
    subprocess.run([args.cli, "render", "--config", str(run.BENCH / "gateway.yaml"), "--wasm",
                    str(Path(args.wasm).resolve()), "--out", str(gw_cfg)], check=True, timeout=60)
    noop_cfg = out / "noop-envoy.yaml"
    noop_cfg.write_text(run.noop_yaml(run.BENCH / "floor.yaml", run.build_noop_wasm().resolve()))
    fake_cfg = out / "fake-provider.yaml"
    fake_cfg.write_text(run.fake_provider_yaml(fx.resolve()))

    gateway_paths = {sc["name"]: "/v1/chat/completions" for sc in scenarios}
    floor_paths = {sc["name"]: sc["floor_path"] for sc in scenarios}
    P = run.PORTS
    targets = [
        ("floor", run.BENCH / "floor.yaml", P["floor"], P["floor_admin"], floor_paths),
        ("noop", noop_cfg, P["noop"], P["noop_admin"], floor_paths),
        ("gateway", gw_cfg, P["gateway"], P["gateway_admin"], gateway_paths),
    ]
    candidate = bool(args.candidate_wasm or args.candidate_config)
    if candidate:
        cand_src = Path(args.candidate_config) if args.candidate_config else run.BENCH / "gateway.yaml"
        cand_yaml = out / "candidate-gateway.yaml"
        cand_yaml.write_text(cand_src.read_text()
                             .replace(f"listen_port: {P['gateway']}", f"listen_port: {P['candidate']}")
                             .replace(f"admin_port: {P['gateway_admin']}", f"admin_port: {P['candidate_admin']}"))
        cand_cfg = out / "candidate-envoy.yaml"
        subprocess.run([args.cli, "render", "--config", str(cand_yaml), "--wasm",
                        str(Path(args.candidate_wasm or args.wasm).resolve()), "--out", str(cand_cfg)],
                       check=True, timeout=60)
        targets.append(("candidate", cand_cfg, P["candidate"], P["candidate_admin"], gateway_paths))

    fake = run.PROCS.start("fake", [args.envoy, "-c", str(fake_cfg), "--concurrency", "1",
                                    "--disable-hot-restart", "-l", "warning"], out / "logs" / "fake.log")
    run.wait_ready(P["fake_admin"], fake, "fake provider")
    results = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "requests": args.requests,
               "warmup": args.warmup, "targets": {}}
    for name, cfg, port, admin, paths in targets:
        results["targets"][name] = measure_target(name, args.envoy, cfg, port, admin, paths,
                                                  bodies, scenarios, args, out, deadline)

    rows = ["| scenario | plain Envoy | + no-op wasm | gateway | gateway − plain | plain / gateway |"
            + (" candidate | candidate − gateway |" if candidate else ""),
            "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if candidate else "")]
    t = results["targets"]
    for sc in scenarios:
        n = sc["name"]
        floor, noop, gw = (t[k][n]["per_request"] for k in ("floor", "noop", "gateway"))
        row = f"| {n} | {floor:,} | {noop:,} | {gw:,} | +{gw - floor:,} | {floor / gw:.2f} |"
        if candidate:
            c = t["candidate"][n]["per_request"]
            row += f" {c:,} | {c - gw:+,} |"
        rows.append(row)
    md = ("### Envoy instructions per request (callgrind, user space, one worker)\n\n"
          f"{args.requests} measured requests per scenario after {args.warmup} of warm-up.\n\n"
          + "\n".join(rows) + "\n")
    (out / "envoy-instructions.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "envoy-instructions.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        run.PROCS.stop_all()
