#!/usr/bin/env python3
"""What latency sampling costs the proxy (issue 22, docs/latency.md): the same `meridian proxy` build and
configuration with and without `[services.bench.latency]`, taking turns, under the load that samples the
most — a new TCP connection per request (wrk with `Connection: close`), so every request pays the sampling
check (a GeoIP lookup of the peer, a short lock), and the area's samples, one `getsockopt(TCP_INFO)` each,
are as frequent as the proxy allows (20 a second per area). Goal: ≥ 0.97×.

Why a network namespace: a sample is attributed to the client's GeoIP area, and a loopback client
(127.0.0.1) has none, so the sample would stop after the lookup and the benchmark would measure less than
a real client costs. In the namespace this script makes (`mb-latency`, removed at the end) the proxies
listen on 83.0.0.1 (an address DB-IP places in Poland, on the namespace's own loopback device): wrk's
connections come from 83.0.0.1 too, and every one is located and recorded.

Each proxy has one worker thread pinned to CPU 0; the origin (nginx, one worker) and wrk share CPU 1.
Reported: requests per second and per proxy CPU-second, median over the rounds of the on/off ratio (turns
alternate, the order swapped each round). The proxies' `meridian_proxy_latency_samples_total` shows that
the "on" proxy sampled every connection and the "off" one none.

Usage: python3 bench/proxy/latency.py [--rounds 5] [--seconds 10] [--meridian BINARY]   (root: namespace)
"""

import argparse
import json
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
from run import cpu_seconds, wait_port  # noqa: E402
from tls import meridian_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NS = "mb-latency"
ADDR = "83.0.0.1"
PORTS = {"origin": 18181, "on": 18182, "off": 18183, "metrics-on": 18184, "metrics-off": 18185}


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def in_ns(*args):
    return ["ip", "netns", "exec", NS, *args]


def start(cmd, cpu):
    p = subprocess.Popen(in_ns("taskset", "-c", str(cpu), *cmd), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    return p


def wait_port_ns(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sh(*in_ns("python3", "-c", f"import socket; socket.create_connection(('{ADDR}', {port}), 0.3)"),
              check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {ADDR}:{port}")


def wrk(port, seconds):
    out = sh(*in_ns("taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", "-H", "Host: bench.gslb.example",
                    "-H", "Connection: close", f"http://{ADDR}:{port}/")).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, total, int(bad.group(1)) if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--meridian", default=str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
                                              / "release" / "meridian"))
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="meridian-bench-latency-"))
    procs = {}
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    try:
        sh(*in_ns("ip", "link", "set", "lo", "up"))
        sh(*in_ns("ip", "addr", "add", f"{ADDR}/32", "dev", "lo"))
        (d / "origin.conf").write_text(f"""worker_processes 1;
daemon off;
pid {d}/origin.pid;
error_log {d}/origin.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{PORTS['origin']}; location / {{ return 200 "ok\\n"; }} }} }}
""")
        base = meridian_config(PORTS["origin"])
        (d / "off.toml").write_text(base)
        (d / "on.toml").write_text(base + "[services.bench.latency]\n")
        procs["origin"] = start(["nginx", "-c", str(d / "origin.conf"), "-p", str(d)], 1)
        for kind in ("on", "off"):
            procs[kind] = start([args.meridian, "proxy", "--region", "waw", "--listen", f"{ADDR}:{PORTS[kind]}",
                                 "--config", str(d / f"{kind}.toml"), "--data-dir", str(d / f"data-{kind}"),
                                 "--threads", "1", "--grace-period", "0",
                                 "--metrics-listen", f"127.0.0.1:{PORTS['metrics-' + kind]}"], 0)
        for kind in ("on", "off"):
            wait_port_ns(PORTS[kind])
        for kind in ("on", "off"):
            wrk(PORTS[kind], 2)  # warm-up
        rows = []
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            got = {}
            for kind in order:
                pid = procs[kind].pid  # `ip netns exec` and taskset exec: the proxy itself
                before = cpu_seconds(pid)
                rps, total, bad = wrk(PORTS[kind], args.seconds)
                cpu = cpu_seconds(pid) - before
                got[kind] = {"rps": rps, "total": total, "per_cpu_s": total / max(cpu, 1e-9), "bad": bad}
            rows.append(got)
            print(f"round {r + 1}: on {got['on']['rps']:,.0f} req/s ({got['on']['per_cpu_s']:,.0f}/CPU-s), "
                  f"off {got['off']['rps']:,.0f} req/s ({got['off']['per_cpu_s']:,.0f}/CPU-s)", flush=True)
        def samples(kind):
            text = sh(*in_ns("curl", "-sf", f"http://127.0.0.1:{PORTS['metrics-' + kind]}/metrics")).stdout
            m = re.search(r'^meridian_proxy_latency_samples_total\{region="waw"\} (\d+)', text, re.M)
            return int(m.group(1)) if m else 0
        requests = sum(g["on"]["total"] for g in rows)
        # The "on" proxy sampled (at most 20 a second for the one area: proxy/src/latency.rs, MIN_SAMPLE_GAP);
        # the "off" one never.
        sampled = samples("on") > 0 and samples("off") == 0
        ratio = statistics.median(g["on"]["rps"] / g["off"]["rps"] for g in rows)
        ratio_cpu = statistics.median(g["on"]["per_cpu_s"] / g["off"]["per_cpu_s"] for g in rows)
        bad = sum(g[k]["bad"] for g in rows for k in ("on", "off"))
        print(f"sampling on/off: {ratio:.3f}x req/s, {ratio_cpu:.3f}x per proxy CPU-second (median of "
              f"{args.rounds} rounds); non-2xx {bad}; RTT samples: on {samples('on'):,} for {requests:,} "
              f"measured requests, off {samples('off')}")
        print("@result " + json.dumps({
            "bench": "proxy", "case": "throughput with latency sampling on vs off, a connection per request",
            "value": round(ratio_cpu, 3), "unit": "x per CPU-second", "goal": ">= 0.97x",
            "met": ratio_cpu >= 0.97 and sampled and bad == 0}))
        return 0 if sampled and bad == 0 else 1
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        sh("ip", "netns", "del", NS, check=False)


if __name__ == "__main__":
    sys.exit(main())
