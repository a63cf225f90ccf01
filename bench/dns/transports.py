#!/usr/bin/env python3
"""DNS transports benchmark (issue 21, benchmark 4): DNS-over-TLS and DNS-over-HTTPS queries answered per
server CPU-second, Meridian against Unbound (Debian), same run, same queries.

The peer: Unbound 1.17 (Debian's, built with nghttp2) serving the zone from `local-data` on its DoT
(`tls-port`) and DoH (`https-port`, `/dns-query`) listeners, one thread. It answers a static record, so it
does less work per query than Meridian (which steers every query by its ECS address): the ratio measures
Meridian's transports plus steering against Unbound's transports alone.

The queries: bench/dns/run.py's (`meet.gslb.example A`, an ECS option with a different random routable /24
per query), sent by dnsperf 2.10 in `-m dot` and `-m doh` (POST) over `--clients` connections, each
keeping up to 100 queries in flight. Both servers pinned to CPU 0, dnsperf to CPU 1; they take turns
(alternating which goes first), each turn `--seconds` long at saturation; CPU from /proc/PID/stat. The
median per-turn queries per server CPU-second is reported, with the ratio.

Meridian uses its bundled DB-IP Lite country database here (the GeoIP database is not what this measures).

Usage: bench/dns/run --transports [--rounds N] [--seconds S] [--clients C] [--out FILE]
Needs: dnsperf unbound openssl (bench/dns/run installs them), a release build. Loopback only; every process
started is stopped by PID.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (bench/dns/run.py: query files, dnsperf parsing, the server base class)

ROOT = base.ROOT


class MeridianTls(base.Server):
    name = "meridian"
    port = 5330
    dot = 5331
    doh = 5332

    def __init__(self, work: Path, cert: Path, key: Path, binary: Path):
        super().__init__(work, Path("/dev/null"))
        self.cert, self.key, self.binary = cert, key, binary

    def command(self):
        return [
            str(self.binary), "dns",
            "--config", str(ROOT / "bench" / "dns" / "meridian.toml"),
            "--listen", f"127.0.0.1:{self.port}",
            "--tls-listen", f"127.0.0.1:{self.dot}",
            "--https-listen", f"127.0.0.1:{self.doh}",
            "--dns-tls-cert", str(self.cert), "--dns-tls-key", str(self.key),
            "--data-dir", str(self.work / "state"),
            "--rrl-rate", "0",
        ]


class Unbound(base.Server):
    name = "unbound"
    port = 5340
    dot = 5341
    doh = 5342

    def __init__(self, work: Path, cert: Path, key: Path):
        super().__init__(work, Path("/dev/null"))
        self.cert, self.key = cert, key

    def command(self):
        conf = self.work / "unbound.conf"
        conf.write_text(f"""server:
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{self.work}"
  pidfile: "{self.work}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  interface: 127.0.0.1@{self.port}
  interface: 127.0.0.1@{self.dot}
  interface: 127.0.0.1@{self.doh}
  tls-port: {self.dot}
  https-port: {self.doh}
  http-endpoint: "/dns-query"
  tls-service-key: "{self.key}"
  tls-service-pem: "{self.cert}"
  access-control: 127.0.0.0/8 allow
  incoming-num-tcp: 1000
  minimal-responses: yes
  local-zone: "gslb.example." static
  local-data: "gslb.example. 3600 IN SOA ns1.gslb.example. hostmaster.gslb.example. 1 7200 1800 259200 900"
  local-data: "meet.gslb.example. 30 IN A 192.0.2.2"
remote-control:
  control-enable: no
""")
        return ["unbound", "-d", "-c", str(conf)]


def dnsperf_tls(mode: str, port: int, queries: Path, seconds: int, clients: int) -> str:
    cmd = ["taskset", "-c", "1", "dnsperf", "-m", mode, "-s", "127.0.0.1", "-p", str(port), "-B",
           "-d", str(queries), "-l", str(seconds), "-c", str(clients), "-q", "100"]
    if mode == "doh":
        cmd += ["-O", f"doh-uri=https://127.0.0.1:{port}/dns-query", "-O", "doh-method=POST"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def turn(server, mode: str, queries: Path, seconds: int, clients: int) -> dict:
    port = server.dot if mode == "dot" else server.doh
    cpu0 = server.cpu_seconds()
    summary = base.parse_summary(dnsperf_tls(mode, port, queries, seconds, clients))
    cpu = server.cpu_seconds() - cpu0
    done = summary.get("completed", 0)
    return {"qps": summary.get("qps", 0.0), "lost": summary.get("lost", 0), "cpu_s": cpu,
            "rcodes": summary.get("rcodes", ""), "per_cpu_s": done / cpu if cpu > 0 else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=200000)
    ap.add_argument("--meridian", help="the meridian binary to measure (default: the release build)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "dns-transports.md")
    args = ap.parse_args()
    binary = Path(args.meridian) if args.meridian else base.MERIDIAN_BIN
    queries = base.query_file(args.queries)
    with tempfile.TemporaryDirectory(prefix="meridian-bench-dot-") as tmp:
        work = Path(tmp)
        cert, key = work / "dns.pem", work / "dns.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        servers = [MeridianTls(work, cert, key, binary), Unbound(work, cert, key)]
        try:
            for s in servers:
                s.start()
            results = {(s.name, m): [] for s in servers for m in ("dot", "doh")}
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for mode in ("dot", "doh"):
                    for s in order:
                        res = turn(s, mode, queries, args.seconds, args.clients)
                        results[(s.name, mode)].append(res)
                        base.log(f"round {r + 1} {mode} {s.name}: {res['qps']:.0f} qps, "
                                 f"{res['per_cpu_s']:.0f} per CPU-s, lost {res['lost']}, {res['rcodes']}")
        finally:
            for s in servers:
                s.stop()
    lines = ["| transport | Meridian (queries per server CPU-s) | Unbound | ratio | Meridian qps | Unbound qps |",
             "|---|---|---|---|---|---|"]
    for mode in ("dot", "doh"):
        m = statistics.median(x["per_cpu_s"] for x in results[("meridian", mode)])
        u = statistics.median(x["per_cpu_s"] for x in results[("unbound", mode)])
        mq = statistics.median(x["qps"] for x in results[("meridian", mode)])
        uq = statistics.median(x["qps"] for x in results[("unbound", mode)])
        ratio = m / u if u else float("nan")
        lines.append(f"| {'DoT' if mode == 'dot' else 'DoH (POST)'} | {m:,.0f} | {u:,.0f} | {ratio:.2f}× | "
                     f"{mq:,.0f} | {uq:,.0f} |")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"Machine: {base.machine()}; {args.rounds} rounds of {args.seconds} s, "
                        f"{args.clients} connections.\n\n{text}\n")


if __name__ == "__main__":
    main()
