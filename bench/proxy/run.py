#!/usr/bin/env python3
"""HTTP proxy benchmark: Meridian's regional proxy against nginx and HAProxy, same origin, same run.

The origin is nginx serving a static 200 ("ok\n"), one worker. Each proxy has one worker thread (nginx
`worker_processes 1` with upstream keep-alive, HAProxy `nbthread 1`, `meridian proxy --threads 1`) and is
pinned with all its threads to CPU 0; the origin and wrk share CPU 1 (as in
/work/shared/research/peer-baselines.md). Load: `wrk -t1 -c32 -d{S}s --latency` with keep-alive, the
proxies taking turns within each round, the order rotated by one each round (round 1 starts with meridian,
round 2 with pingora, ...): on this VM the first turn after a pause runs slower, and a fixed order gave
that handicap to the same target every round. Two references,
not peers: `pingora` is pingora's proxy with nothing of Meridian in it (proxy/examples/bare_pingora.rs),
what pingora's HTTP pipeline costs here (Meridian hands it the requests its fast path does not take);
`tokio` is a plain tokio HTTP/1.1 forwarder (proxy/examples/raw_tokio.rs), what the kernel and the
runtime cost with no HTTP framework. Reported: median req/s and p99
over the rounds, and Meridian's ratios to each peer; errors and non-2xx responses are counted and must be 0.
Each turn first waits for a quiet machine (tls.wait_quiet): a build beside a turn takes CPU from one side.

Usage: bench/proxy/run [--only plain,tls] [--rounds N] [--seconds S] [--connections C] [--meridian BINARY]
`--only plain` is the benchmark above; `--only tls` is the HTTPS edge against nginx (bench/proxy/tls.py, see
its header; `--idle N` idle connections for its memory test); both by default, plain first.
Needs: nginx, haproxy, wrk, taskset, and for tls h2load, gcc, openssl (bench/proxy/run installs them) and a
release build of meridian.
Everything listens on 127.0.0.1; every process started is stopped by PID.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tls import child_signals, meridian_config, on_signals, wait_quiet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOST = "bench.gslb.example"
PORTS = {"origin": 18081, "nginx": 18091, "haproxy": 18092, "meridian": 18093, "pingora": 18094, "tokio": 18095}
# Measured in turns within each round. `pingora` is the floor under Meridian: pingora's proxy with nothing of
# Meridian in it (proxy/examples/bare_pingora.rs, same allocator and runtime settings), so the report can
# tell what pingora itself costs on this machine from what Meridian's routing adds.
# `tokio` is the other floor: a plain tokio HTTP/1.1 forwarder (proxy/examples/raw_tokio.rs), what the
# kernel and the runtime cost per request here with no HTTP framework at all.
TARGETS = ("meridian", "pingora", "tokio", "nginx", "haproxy")


def wait_port(port, timeout=20.0):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def write_configs(d: Path, target_dir: Path):
    (d / "logs").mkdir(exist_ok=True)
    common = f"worker_processes 1;\ndaemon off;\npid {d}/%s.pid;\nerror_log {d}/%s.err warn;\n"
    (d / "origin.conf").write_text(common % ("origin", "origin") + f"""
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{PORTS['origin']}; location / {{ return 200 "ok\\n"; }} }}
}}
""")
    (d / "nginx.conf").write_text(common % ("nginx", "nginx") + f"""
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream origin {{ server 127.0.0.1:{PORTS['origin']}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    (d / "haproxy.cfg").write_text(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend be
backend be
  http-reuse safe
  server o1 127.0.0.1:{PORTS['origin']}
""")
    (d / "meridian.toml").write_text(meridian_config(PORTS["origin"]))


def start(cmd, cpu):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=child_signals)
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(p.pid)], stdout=subprocess.DEVNULL, check=False)
    return p


def pin_again(p, cpu):
    # Threads started after the first pinning (runtimes) are pinned too.
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(p.pid)], stdout=subprocess.DEVNULL, check=False)


def wrk(port, seconds, conns):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
         "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = 0
    for pat in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?(\d+)"):
        e = re.search(pat, out)
        if e and pat.startswith("Non"):
            errors += int(e.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return rps, p99, errors


def cpu_seconds(pid):
    """CPU time of the process and its children (nginx's worker is a child of its master)."""
    total = 0.0
    for d in Path(f"/proc/{pid}/task").iterdir():
        f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        children = d / "children"
        if children.exists():
            for child in children.read_text().split():
                total += cpu_seconds(int(child))
    return total


def main():
    on_signals()
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="plain,tls", help="plain (HTTP/1.1 vs nginx and HAProxy), tls (HTTPS vs nginx)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3)")
    ap.add_argument("--seconds", type=int, help="seconds per turn (default: plain 10, tls 5)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--idle", type=int, help="tls: idle connections for the memory test (default 10,000; 0 skips)")
    ap.add_argument("--meridian", help="the meridian binary to measure (default: the release build)")
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = set(parts) - {"plain", "tls"}
    if unknown:
        ap.error(f"--only: unknown {', '.join(sorted(unknown))} (plain, tls)")
    if "plain" in parts:
        plain(argparse.Namespace(rounds=args.rounds or 3, seconds=args.seconds or 10,
                                 connections=args.connections, meridian=args.meridian))
    if "tls" in parts:
        import tls
        argv = ["--connections", str(args.connections)]
        for flag, value in (("--rounds", args.rounds), ("--seconds", args.seconds), ("--idle", args.idle),
                            ("--meridian", args.meridian)):
            if value is not None:
                argv += [flag, str(value)]
        sys.stdout.flush()
        tls.main(argv)


def plain(args):
    meridian = ROOT / "target" / "release" / "meridian"
    if os.environ.get("CARGO_TARGET_DIR"):
        meridian = Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "meridian"
    if args.meridian:
        meridian = Path(args.meridian)
    bare = meridian.parent / "examples" / "bare_pingora"
    raw = meridian.parent / "examples" / "raw_tokio"
    procs = {}
    with tempfile.TemporaryDirectory(prefix="meridian-proxy-bench-") as tmp:
        d = Path(tmp)
        write_configs(d, meridian)
        try:
            procs["origin"] = start(["nginx", "-c", str(d / "origin.conf"), "-p", str(d)], 1)
            procs["nginx"] = start(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], 0)
            procs["haproxy"] = start(["haproxy", "-db", "-f", str(d / "haproxy.cfg")], 0)
            procs["meridian"] = start([str(meridian), "proxy", "--region", "waw", "--listen",
                                       f"127.0.0.1:{PORTS['meridian']}", "--config", str(d / "meridian.toml"),
                                       "--data-dir", str(d / "data"), "--threads", "1", "--grace-period", "0"], 0)
            procs["pingora"] = start([str(bare), f"127.0.0.1:{PORTS['pingora']}",
                                      f"127.0.0.1:{PORTS['origin']}", "1"], 0)
            procs["tokio"] = start([str(raw), f"127.0.0.1:{PORTS['tokio']}", f"127.0.0.1:{PORTS['origin']}"], 0)
            for name, port in PORTS.items():
                wait_port(port)
            time.sleep(0.5)
            for name in TARGETS:
                pin_again(procs[name], 0)
            for name in TARGETS:
                wrk(PORTS[name], 2, args.connections)  # warm-up
            results = {n: [] for n in TARGETS + ("origin",)}
            for r in range(args.rounds):
                for name in TARGETS[r % len(TARGETS):] + TARGETS[:r % len(TARGETS)]:
                    wait_quiet()  # a build or test suite beside a turn takes CPU from one side
                    before = cpu_seconds(procs[name].pid)
                    rps, p99, errors = wrk(PORTS[name], args.seconds, args.connections)
                    cpu = (cpu_seconds(procs[name].pid) - before) / args.seconds
                    results[name].append((rps, p99, errors, cpu))
                    print(f"round {r + 1} {name:9} {rps:10.0f} req/s  p99 {p99:.3f} ms  errors {errors}  "
                          f"cpu {cpu * 100:.0f}%", file=sys.stderr)
            rps, p99, errors = wrk(PORTS["origin"], args.seconds, args.connections)
            results["origin"].append((rps, p99, errors, 0.0))
        finally:
            for p in procs.values():
                rust = (procs.get("meridian"), procs.get("pingora"), procs.get("tokio"))
                p.send_signal(signal.SIGINT if p in rust else signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    med = {n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
               sum(x[2] for x in v), statistics.median(x[3] for x in v)) for n, v in results.items() if v}
    print(f"| target | req/s (median of {args.rounds} x {args.seconds} s) | p99 ms | errors | SUT CPU |")
    print("|---|---|---|---|---|")
    labels = {"origin": "origin (direct, 1 run)", "pingora": "pingora, bare (reference)",
              "tokio": "tokio forwarder (reference)"}
    for n in TARGETS + ("origin",):
        rps, p99, err, cpu = med[n]
        cpu_txt = f"{cpu * 100:.0f}%" if n != "origin" else "-"
        print(f"| {labels.get(n, n)} | {rps:,.0f} | {p99:.3f} | {err} | {cpu_txt} |")
    m = med["meridian"]
    b = med["pingora"]
    # The same-round ratios show the spread the medians hide.
    for peer in ("nginx", "haproxy"):
        per_round = [a[0] / p[0] for a, p in zip(results["meridian"], results[peer])]
        print(f"Meridian / {peer} throughput per round: {', '.join(f'{x:.2f}' for x in per_round)} "
              f"(median {statistics.median(per_round):.2f})")
    for peer in ("nginx", "haproxy"):
        p = med[peer]
        print(f"\nMeridian / {peer}: throughput {m[0] / p[0]:.2f}x, p99 {m[1] / p[1]:.2f}x "
              f"({'better' if m[1] <= p[1] else 'worse'} p99)", end="")
    t = med["tokio"]
    print(f"\nMeridian / bare pingora: throughput {m[0] / b[0]:.2f}x; bare pingora / nginx: "
          f"{b[0] / med['nginx'][0]:.2f}x (the ceiling of any proxy built on pingora's HTTP proxy here)")
    print(f"Meridian / tokio forwarder: throughput {m[0] / t[0]:.2f}x; tokio forwarder / nginx: "
          f"{t[0] / med['nginx'][0]:.2f}x")
    import json
    for peer in ("nginx", "haproxy"):
        p = med[peer]
        print("@result " + json.dumps({
            "bench": "proxy", "case": f"throughput vs {peer} ({m[0]:,.0f} vs {p[0]:,.0f} req/s, wrk -c{args.connections})",
            "value": round(m[0] / p[0], 2), "unit": "x", "goal": ">= 1.0x", "met": m[0] >= p[0]}))
        print("@result " + json.dumps({
            "bench": "proxy", "case": f"p99 vs {peer} ({m[1]:.3f} vs {p[1]:.3f} ms)",
            "value": round(p[1] / m[1], 2), "unit": "x better", "goal": ">= 1.0x", "met": m[1] <= p[1]}))
    print("@result " + json.dumps({
        "bench": "proxy", "case": f"throughput vs bare pingora, reference ({m[0]:,.0f} vs {b[0]:,.0f} req/s)",
        "value": round(m[0] / b[0], 2), "unit": "x", "goal": "-", "met": None}))
    print("@result " + json.dumps({
        "bench": "proxy", "case": f"bare pingora vs nginx, reference ({b[0]:,.0f} vs {med['nginx'][0]:,.0f} req/s)",
        "value": round(b[0] / med["nginx"][0], 2), "unit": "x", "goal": "-", "met": None}))
    print("@result " + json.dumps({
        "bench": "proxy", "case": f"throughput vs tokio forwarder, reference ({m[0]:,.0f} vs {t[0]:,.0f} req/s)",
        "value": round(m[0] / t[0], 2), "unit": "x", "goal": "-", "met": None}))


if __name__ == "__main__":
    main()
