#!/usr/bin/env python3
"""HTTPS edge benchmark: Meridian's proxy (`--https-listen`, rustls on ring) against nginx (OpenSSL), same
origin, same certificate, same run.

Both terminate TLS with one ECDSA P-256 certificate made here by openssl (SAN bench.gslb.example, signed by a
throw-away P-256 CA; the chain sent is the leaf alone), offer TLS 1.2 and 1.3 and ALPN h2, http/1.1, and
forward to the origin of the plain benchmark (nginx, static 200 "ok\\n", one worker) over keep-alive
upstream connections. nginx: `worker_processes 1`, `listen ... ssl http2`, `ssl_protocols TLSv1.2 TLSv1.3`,
upstream `keepalive 64`, its defaults otherwise (session tickets on, no session cache). Meridian:
`meridian proxy --threads 1 --https-listen`, its defaults otherwise (stateless session tickets). Each server
is pinned with all its threads to CPU 0; the origin and every load generator run on CPU 1. Idle timeouts
are 300 s on both (the memory test holds connections open for longer than the 60 s defaults would allow).

Scenarios, the targets taking turns within each round and the order rotated each round:
- `keepalive`: `wrk -t1 -c32 --latency` over TLS, keep-alive (HTTP/1.1; wrk offers no ALPN). wrk sends the
  SNI "127.0.0.1", which neither server matches: both serve their default (only) certificate.
- `new-full`: `wrk -t1 -c32 -H 'Connection: close'`: every request on a new connection, and every connection
  a full handshake. wrk keeps the TLS session of a closed connection and offers it on the next one
  (SSL_clear keeps it), so both servers would resume by ticket; a 30-line LD_PRELOAD shim (compiled here
  with gcc, SHIM below) drops the session before each new handshake and counts, from inside wrk, how many
  handshakes were resumed (0 here; the table shows the counts).
- `new-resumed`: the same without the shim: wrk's own behaviour, TLS 1.3 resumption by session ticket
  (PSK with (EC)DHE: no certificate, no signature, still a key exchange). For reference.
- `h2`: `h2load -t1 -c32 -m10` over TLS with ALPN h2, `:authority: bench.gslb.example`.
Reported per scenario: the median over the rounds of the rate, p99 (wrk) or mean (h2load) latency, errors,
the server's CPU (all its processes and threads) and the load generator's, the rate per server CPU-second
(the figure that still compares the servers when the load generator, which verifies a signature per full
handshake, is the bottleneck), and the CPU anything else used during the turn (noise; each turn first
waits for a quiet machine). Ratios Meridian / nginx are the median of the per-round ratios: the two turns
of a round are adjacent in time, so their ratio is the least disturbed by the VM's drift.

Memory: for each server and each protocol, a fresh server process; a small Python asyncio client on CPU 1
opens 20 connections with one request each and closes them (warm-up), reads the server's RSS (all its
processes: nginx master + worker, the meridian process), opens 10,000 TLS connections (full handshakes,
SNI bench.gslb.example, ALPN http/1.1 or h2; for h2 also the connection preface and SETTINGS exchange),
reads the RSS again, sends one request on each and reads its answer, and reads the RSS a third time. Per
idle connection = (RSS after - RSS before) / connections open, both after the handshake and after one
request; the server's open descriptors confirm the connections are held.

Usage: bench/proxy/run --only tls [--rounds N] [--seconds S] [--connections C] [--idle N] [--meridian BINARY]
   or: python3 bench/proxy/tls.py (same flags, and --scenarios keepalive,new-full,new-resumed,h2 to run some;
   --scenarios none --idle 10000 measures memory only). Needs nginx, wrk, h2load (nghttp2-client), gcc, openssl,
   and an open-file hard limit of at least idle + 2,000.
Everything listens on 127.0.0.1; every process started is stopped by PID; the temp dir is removed.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "bench.gslb.example"
PORTS = {"origin": 18181, "nginx": 18191, "meridian": 18193, "meridian-http": 18183}
TARGETS = ("meridian", "nginx")
SCENARIOS = ("keepalive", "new-full", "new-resumed", "h2")

# LD_PRELOAD for wrk: counts, for each connection wrk closes, whether its handshake was resumed, and with
# NOSESS_DROP=1 drops the session kept from the previous connection before each new handshake, so that every
# handshake is a full one. Writes "full resumed" to $NOSESS_OUT at exit.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_session_reused(const SSL *s);
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);
static long full, resumed;
static int (*real_set_fd)(SSL *, int);
static int (*real_shutdown)(SSL *);
/* wrk calls SSL_set_fd before every SSL_connect attempt; before a handshake starts, drop the session that
   SSL_clear kept from the previous connection. */
int SSL_set_fd(SSL *s, int fd) {
    if (!real_set_fd) real_set_fd = dlsym(RTLD_NEXT, "SSL_set_fd");
    const char *d = getenv("NOSESS_DROP");
    if (d && d[0] == '1' && SSL_in_before(s)) SSL_set_session(s, NULL);
    return real_set_fd(s, fd);
}
/* wrk calls SSL_shutdown once per connection it closes, after its handshake. */
int SSL_shutdown(SSL *s) {
    if (!real_shutdown) real_shutdown = dlsym(RTLD_NEXT, "SSL_shutdown");
    if (SSL_session_reused(s)) resumed++; else full++;
    return real_shutdown(s);
}
__attribute__((destructor)) static void report(void) {
    const char *out = getenv("NOSESS_OUT");
    FILE *f = out ? fopen(out, "w") : NULL;
    if (f) { fprintf(f, "%ld %ld\n", full, resumed); fclose(f); }
}
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


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


def pin(pid, cpu):
    # -a: every thread, including those a runtime starts later when called again.
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], stdout=subprocess.DEVNULL, check=False)


def tree(pid):
    """pid and its descendants (nginx's worker is a child of its master)."""
    out = [pid]
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            c = t / "children"
            if c.exists():
                for child in c.read_text().split():
                    out += tree(int(child))
    except FileNotFoundError:
        pass
    return out


def pin_tree(pid, cpu):
    for p in tree(pid):
        pin(p, cpu)


def cpu_seconds(pid):
    total = 0.0
    for p in tree(pid):
        for d in Path(f"/proc/{p}/task").iterdir():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def open_fds(pid):
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in tree(pid))


def busy_seconds():
    """CPU-seconds all CPUs spent in user, nice, system and steal time (not interrupts) since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (v[0] + v[1] + v[2] + v[7]) / os.sysconf("SC_CLK_TCK")


def meridian_config(origin_port, extra=""):
    """The benchmarks' deployment: one region whose proxy serves HOST from the origin on `origin_port`,
    and `extra` TOML (the HTTPS benchmark's [proxy] and [tls])."""
    return f"""schema-version = 1
[regions.waw]
name = "Warsaw"
lat = 52.23
lon = 21.01
country = "PL"
ipv4 = ["192.0.2.1"]
capacity = 1000000
[zones."gslb.example"]
ns = ["ns1.gslb.example."]
[zones."gslb.example".soa]
mname = "ns1.gslb.example."
rname = "hostmaster.gslb.example."
[[zones."gslb.example".records]]
name = "ns1"
type = "A"
data = "203.0.113.53"
[services.bench]
hostname = "{HOST}"
policy = "nearest"
regions = ["waw"]
[services.bench.backends]
waw = ["127.0.0.1:{origin_port}"]
{extra}"""


def wait_quiet(threshold=0.10, limit=900):
    """Waits until the machine is quiet: this is a shared 2-CPU machine, and a compiler or a test suite
    running beside a turn takes CPU from whichever side it lands on. Returns the seconds waited."""
    started = time.monotonic()
    said = False
    while True:
        before = busy_seconds()
        time.sleep(0.5)
        load = (busy_seconds() - before) / 0.5
        if load < threshold or time.monotonic() - started > limit:
            return time.monotonic() - started
        if not said:
            log(f"  (waiting for a quiet machine: {load * 100:.0f}% of a CPU busy elsewhere)")
            said = True
        time.sleep(2.0)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_certs(d: Path):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (d / "leaf.ext").write_text(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n"
                                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "key.pem", "-out", "leaf.csr", "-subj", f"/CN={HOST}")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "cert.pem", "-days", "30", "-extfile", "leaf.ext")


def write_configs(d: Path):
    common = f"worker_processes 1;\ndaemon off;\npid {d}/%s.pid;\nerror_log {d}/%s.err warn;\n"
    (d / "origin.conf").write_text(common % ("origin", "origin") + f"""
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{PORTS['origin']}; location / {{ return 200 "ok\\n"; }} }}
}}
""")
    (d / "nginx.conf").write_text(common % ("nginx", "nginx") + f"""worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_header_timeout 300s;
  upstream origin {{ server 127.0.0.1:{PORTS['origin']}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} ssl http2 backlog=4096;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    (d / "meridian.toml").write_text(meridian_config(PORTS["origin"], f"""[proxy]
client-timeout-ms = 300000
[tls]
plain-http = "serve"
[[tls.certificates]]
cert = "{d}/cert.pem"
key = "{d}/key.pem"
"""))


class Servers:
    """The processes of one run, each stopped by PID."""

    def __init__(self, d: Path, meridian: Path):
        self.d, self.meridian, self.procs = d, meridian, {}

    def start(self, name):
        d = self.d
        if name == "origin":
            cmd = ["nginx", "-c", str(d / "origin.conf"), "-p", str(d)]
        elif name == "nginx":
            cmd = ["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)]
        else:
            cmd = [str(self.meridian), "proxy", "--region", "waw", "--listen", f"127.0.0.1:{PORTS['meridian-http']}",
                   "--https-listen", f"127.0.0.1:{PORTS['meridian']}", "--config", str(d / "meridian.toml"),
                   "--data-dir", str(d / f"data-{time.monotonic_ns()}"), "--threads", "1", "--grace-period", "0"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(d / f"{name}.stderr", "ab"),
                             preexec_fn=child_signals)
        self.procs[name] = p
        wait_port(PORTS[name])
        time.sleep(0.3)
        pin_tree(p.pid, 1 if name == "origin" else 0)
        return p

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        p.send_signal(signal.SIGINT if name == "meridian" else signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def latency_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, seconds, conns, close=False, shim=None, drop=False, out=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"https://127.0.0.1:{port}/")
    env = dict(os.environ)
    if shim:
        env.update(LD_PRELOAD=str(shim), NOSESS_DROP="1" if drop else "0", NOSESS_OUT=str(out))
        Path(out).unlink(missing_ok=True)
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    p99 = latency_ms(m.group(1), m.group(2))
    errors = 0
    e = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if e:
        errors += int(e.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    handshakes = None
    if shim and out and Path(out).exists():
        full, resumed = (int(x) for x in Path(out).read_text().split())
        handshakes = (full, resumed)
    return {"rate": rps, "lat": p99, "errors": errors, "handshakes": handshakes}


def h2load(port, seconds, conns, streams):
    cmd = ["taskset", "-c", "1", "h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(seconds),
           "--warm-up-time", "1", "-H", f":authority: {HOST}", f"https://127.0.0.1:{port}/"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Application protocol: h2" not in text:
        raise SystemExit(f"h2load did not negotiate h2 with port {port}:\n{text}")
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    r = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", text)
    s = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    errors = sum(int(x) for x in r.groups()) + sum(int(x) for x in s.groups())
    m = re.search(r"time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)\b", text)
    return {"rate": rps, "lat": latency_ms(m.group(1), m.group(2)), "errors": errors, "handshakes": None}


def measure(servers, name, scenario, seconds, conns, shim, d):
    pid, origin = servers.procs[name].pid, servers.procs["origin"].pid
    wait_quiet()
    before, client_before, started = cpu_seconds(pid), children_cpu(), time.monotonic()
    origin_before, busy_before = cpu_seconds(origin), busy_seconds()
    port = PORTS[name]
    if scenario == "keepalive":
        r = wrk(port, seconds, conns)
    elif scenario == "new-full":
        r = wrk(port, seconds, conns, close=True, shim=shim, drop=True, out=d / "shim.out")
    elif scenario == "new-resumed":
        r = wrk(port, seconds, conns, close=True, shim=shim, drop=False, out=d / "shim.out")
    else:
        r = h2load(port, seconds, conns, 10)
    # h2load's -D excludes its warm-up second from the rate; the CPU share is over the whole run.
    wall = time.monotonic() - started
    server, client = cpu_seconds(pid) - before, children_cpu() - client_before
    # CPU used during the turn by anything but the server, the origin and the load generator: noise.
    other = busy_seconds() - busy_before - server - client - (cpu_seconds(origin) - origin_before)
    r["cpu"], r["client_cpu"], r["other_cpu"] = server / wall, client / wall, max(0.0, other / wall)
    return r


# ---------------------------------------------------------------------------------------------------------
# The idle-connection client (runs as its own process on CPU 1: `tls.py --idle-client PORT N ALPN`).

def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


async def h2_read_until(reader, writer, done):
    """Reads HTTP/2 frames until `done(kind, flags, stream)`; acknowledges the server's SETTINGS."""
    while True:
        head = await reader.readexactly(9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        await reader.readexactly(length)
        if kind == 4 and not flags & 1:
            writer.write(h2_frame(4, 1, 0))
        if kind == 7:
            raise ConnectionError("GOAWAY")
        if done(kind, flags, stream):
            return


async def idle_client(port, count, alpn, concurrency=64):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    host = HOST.encode()
    # HPACK: :method GET, :scheme https, :path / (static table), :authority literal with indexed name.
    h2_request = h2_frame(1, 0x5, 1, b"\x82\x87\x84\x41" + bytes([len(host)]) + host)
    h1_request = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"

    async def connect():
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=HOST)
        got = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if got != alpn:
            raise ConnectionError(f"ALPN {got!r}, not {alpn}")
        if alpn == "h2":
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
            await h2_read_until(reader, writer, lambda k, f, s: k == 4 and not f & 1)
            await writer.drain()
        return reader, writer

    async def request(conn):
        reader, writer = conn
        if alpn == "h2":
            writer.write(h2_request)
            await h2_read_until(reader, writer, lambda k, f, s: s == 1 and k in (0, 1) and f & 1)
            await writer.drain()
            return
        writer.write(h1_request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        if not head.startswith("http/1.1 200"):
            raise ConnectionError(head.split("\r\n", 1)[0])
        m = re.search(r"content-length:\s*(\d+)", head)
        if m:
            await reader.readexactly(int(m.group(1)))
        else:
            await reader.readuntil(b"0\r\n\r\n")

    sem = asyncio.Semaphore(concurrency)

    async def limited(coro):
        async with sem:
            return await coro

    def report(**kw):
        print(json.dumps(kw), flush=True)

    async def command():
        return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()

    # Warm-up: a few connections with a request each, closed.
    warm = [await connect() for _ in range(20)]
    for c in warm:
        await request(c)
        c[1].close()
    report(phase="warm")
    await command()
    started = time.monotonic()
    results = await asyncio.gather(*(limited(connect()) for _ in range(count)), return_exceptions=True)
    conns = [c for c in results if not isinstance(c, BaseException)]
    errors = [repr(e) for e in results if isinstance(e, BaseException)]
    report(phase="open", ok=len(conns), failed=len(errors), first_error=errors[:1],
           seconds=round(time.monotonic() - started, 1))
    await command()
    started = time.monotonic()
    results = await asyncio.gather(*(limited(request(c)) for c in conns), return_exceptions=True)
    errors = [repr(e) for e in results if isinstance(e, BaseException)]
    report(phase="request", ok=len(conns) - len(errors), failed=len(errors), first_error=errors[:1],
           seconds=round(time.monotonic() - started, 1))
    await command()
    for _, w in conns:
        w.close()
    await asyncio.sleep(0.5)
    report(phase="closed")


def memory(servers, name, alpn, count, d):
    """Per-connection RSS of a fresh `name` server for `count` idle TLS connections with ALPN `alpn`."""
    p = servers.start(name)
    client = subprocess.Popen(["taskset", "-c", "1", sys.executable, __file__, "--idle-client",
                               str(PORTS[name]), str(count), alpn],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def step(expect):
        line = client.stdout.readline()
        if not line:
            raise SystemExit(f"the idle client stopped during {expect} ({name}, {alpn})")
        got = json.loads(line)
        assert got["phase"] == expect, got
        return got

    try:
        step("warm")
        time.sleep(1.0)
        base, base_fds = rss_kib(p.pid), open_fds(p.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        opened = step("open")
        time.sleep(2.0)
        after_open, fds_open = rss_kib(p.pid), open_fds(p.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        req = step("request")
        time.sleep(2.0)
        after_req, fds_req = rss_kib(p.pid), open_fds(p.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        step("closed")
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        servers.stop(name)
    n = opened["ok"]
    r = {"base_mib": base / 1024, "open": n, "open_failed": opened["failed"], "req_failed": req["failed"],
         "kib_open": (after_open - base) / n if n else float("nan"),
         "kib_req": (after_req - base) / n if n else float("nan"),
         "fds": (fds_open - base_fds, fds_req - base_fds), "open_s": opened["seconds"],
         "errors": opened["first_error"] + req["first_error"]}
    log(f"memory {name:8} {alpn:8} base {r['base_mib']:.1f} MiB; {n} open ({opened['failed']} failed, "
        f"{opened['seconds']} s): {r['kib_open']:.2f} KiB/conn; after a request each ({req['failed']} failed): "
        f"{r['kib_req']:.2f} KiB/conn; server fds +{r['fds'][0]}/+{r['fds'][1]} {r['errors'] or ''}")
    return r


def on_signals():
    """SIGTERM (bench/run at a time limit) and SIGINT end the run through the `finally` that stops every
    process started; a shell that started this in the background may have left SIGINT ignored."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)


def child_signals():
    # The servers stop on SIGINT (meridian) or SIGTERM (nginx): undo an inherited "ignore SIGINT".
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv=None):
    on_signals()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the memory test (0: skip)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--meridian", help="the meridian binary to measure (default: the release build)")
    ap.add_argument("--idle-client", nargs=3, metavar=("PORT", "N", "ALPN"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.idle_client:
        port, n, alpn = args.idle_client
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(idle_client(int(port), int(n), alpn))
        return
    meridian = ROOT / "target" / "release" / "meridian"
    if os.environ.get("CARGO_TARGET_DIR"):
        meridian = Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "meridian"
    if args.meridian:
        meridian = Path(args.meridian)
    scenarios = [s for s in args.scenarios.split(",") if s and s != "none"]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"--scenarios: unknown {', '.join(sorted(unknown))} ({', '.join(SCENARIOS)}, or none)")
    # 10,000 client connections and as many server sockets: servers inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.idle + 2000:
        raise SystemExit(f"the open-file hard limit ({hard}) is below {args.idle + 2000}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    results = {(s, t): [] for s in scenarios for t in TARGETS}
    mem = {}
    with tempfile.TemporaryDirectory(prefix="meridian-tls-bench-") as tmp:
        d = Path(tmp)
        make_certs(d)
        write_configs(d)
        check = subprocess.run([str(meridian), "config", "check", str(d / "meridian.toml")],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"meridian config check failed:\n{check.stdout}{check.stderr}")
        shim = d / "nosess.so"
        (d / "nosess.c").write_text(SHIM)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(d / "nosess.c"), "-ldl"], check=True)
        servers = Servers(d, meridian)
        try:
            servers.start("origin")
            if args.idle:
                # Fresh processes: an allocator that kept the memory of an earlier load would hide the cost.
                for alpn in ("http/1.1", "h2"):
                    for name in TARGETS:
                        mem[(name, alpn)] = memory(servers, name, alpn, args.idle, d)
            if scenarios:
                for name in TARGETS:
                    servers.start(name)
                time.sleep(0.5)
                for name in TARGETS:
                    pin_tree(servers.procs[name].pid, 0)
                for name in TARGETS:  # warm-up
                    wrk(PORTS[name], 2, args.connections)
                    h2load(PORTS[name], 1, args.connections, 10)
                for r in range(args.rounds):
                    order = TARGETS[r % len(TARGETS):] + TARGETS[:r % len(TARGETS)]
                    for s in scenarios:
                        for name in order:
                            x = measure(servers, name, s, args.seconds, args.connections, shim, d)
                            results[(s, name)].append(x)
                            hs = f"  handshakes full/resumed {x['handshakes'][0]}/{x['handshakes'][1]}" \
                                if x["handshakes"] else ""
                            log(f"round {r + 1} {s:11} {name:8} {x['rate']:9.0f}/s  "
                                f"{'p99' if s != 'h2' else 'mean'} {x['lat']:.3f} ms  errors {x['errors']}  "
                                f"server cpu {x['cpu'] * 100:.0f}%  client cpu {x['client_cpu'] * 100:.0f}%  "
                                f"other cpu {x['other_cpu'] * 100:.0f}%{hs}")
        finally:
            servers.stop_all()
    report(args, scenarios, results, mem)


def report(args, scenarios, results, mem):
    what = {"keepalive": ("HTTPS keep-alive, HTTP/1.1 (wrk)", "req/s", "p99"),
            "new-full": ("new connection per request, full handshake (wrk, Connection: close)", "conn/s", "p99"),
            "new-resumed": ("new connection per request, resumed by ticket (wrk, Connection: close)",
                            "conn/s", "p99"),
            "h2": ("HTTP/2, h2load -m10", "req/s", "mean")}
    med = {}
    for key, v in results.items():
        if v:
            med[key] = {k: statistics.median(x[k] for x in v)
                        for k in ("rate", "lat", "cpu", "client_cpu", "other_cpu")}
            med[key]["errors"] = sum(x["errors"] for x in v)
            med[key]["per_cpu"] = statistics.median(x["rate"] / x["cpu"] for x in v if x["cpu"] > 0)
            hs = [x["handshakes"] for x in v if x["handshakes"]]
            med[key]["handshakes"] = (sum(h[0] for h in hs), sum(h[1] for h in hs)) if hs else None
    # Meridian / nginx per round: the two turns of a round are adjacent in time, so their ratio is the
    # comparison least disturbed by this VM's drift between minutes; the figure reported is their median.
    ratio = {}
    for s in scenarios:
        a, b = results[(s, "meridian")], results[(s, "nginx")]
        rate = [x["rate"] / y["rate"] for x, y in zip(a, b)]
        per_cpu = [(x["rate"] / x["cpu"]) / (y["rate"] / y["cpu"]) for x, y in zip(a, b) if x["cpu"] > 0 < y["cpu"]]
        ratio[s] = {"rate": statistics.median(rate), "rounds": rate, "per_cpu": statistics.median(per_cpu),
                    "per_cpu_rounds": per_cpu}
    if scenarios:
        print(f"\n| scenario | target | rate (median of {args.rounds} x {args.seconds} s) | latency ms | errors | "
              f"server CPU | rate per server CPU-s | load generator CPU | other CPU (noise) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for s in scenarios:
            label, unit, lat = what[s]
            for t in TARGETS:
                m = med[(s, t)]
                hs = f" (full/resumed handshakes seen by wrk: {m['handshakes'][0]}/{m['handshakes'][1]})" \
                    if m["handshakes"] else ""
                print(f"| {label}{hs} | {t} | {m['rate']:,.0f} {unit} | {lat} {m['lat']:.3f} | {m['errors']} | "
                      f"{m['cpu'] * 100:.0f}% | {m['per_cpu']:,.0f} | {m['client_cpu'] * 100:.0f}% | "
                      f"{m['other_cpu'] * 100:.0f}% |")
        print()
        for s in scenarios:
            m, n, r = med[(s, "meridian")], med[(s, "nginx")], ratio[s]
            print(f"Meridian / nginx, {s}: rate {r['rate']:.2f}x (median of the rounds: "
                  f"{', '.join(f'{x:.2f}' for x in r['rounds'])}; ratio of the medians {m['rate'] / n['rate']:.2f}x), "
                  f"per server CPU-second {r['per_cpu']:.2f}x "
                  f"({', '.join(f'{x:.2f}' for x in r['per_cpu_rounds'])}), "
                  f"{what[s][2]} {m['lat']:.3f} vs {n['lat']:.3f} ms")
    if mem:
        print(f"\n| idle TLS connections ({args.idle:,}) | target | RSS before | per connection, after the handshake "
              f"| per connection, after one request | server fds added |")
        print("|---|---|---|---|---|---|")
        for alpn in ("http/1.1", "h2"):
            for t in TARGETS:
                r = mem[(t, alpn)]
                fail = f" ({r['open_failed']} failed to open, {r['req_failed']} requests failed)" \
                    if r["open_failed"] or r["req_failed"] else ""
                print(f"| {alpn}{fail} | {t} | {r['base_mib']:.1f} MiB | {r['kib_open']:.1f} KiB | "
                      f"{r['kib_req']:.1f} KiB | {r['fds'][0]}/{r['fds'][1]} |")
    out = []
    goals = {"keepalive": "HTTPS keep-alive", "new-full": "new TLS connections, full handshake",
             "new-resumed": "new TLS connections, resumed (reference)", "h2": "HTTP/2 (h2load -m10)"}
    for s in scenarios:
        m, n, r = med[(s, "meridian")], med[(s, "nginx")], ratio[s]
        ref = s == "new-resumed"
        unit = what[s][1]
        bound = min(m["client_cpu"], n["client_cpu"]) > 0.85
        note = f"; load generator saturated ({m['client_cpu'] * 100:.0f}% CPU): wrk's rate" if bound else ""
        out.append({"bench": "tls", "case": f"{goals[s]} vs nginx ({m['rate']:,.0f} vs {n['rate']:,.0f} {unit}, "
                                            f"{m['cpu'] * 100:.0f}% vs {n['cpu'] * 100:.0f}% CPU; "
                                            f"median same-round ratio{note})",
                    "value": round(r["rate"], 2), "unit": "x", "goal": "-" if ref else ">= 1.0x",
                    "met": None if ref else r["rate"] >= 1.0})
        if s in ("new-full", "h2"):
            out.append({"bench": "tls", "case": f"{goals[s]} per server CPU-second vs nginx "
                        f"({m['per_cpu']:,.0f} vs {n['per_cpu']:,.0f})",
                        "value": round(r["per_cpu"], 2), "unit": "x", "goal": ">= 1.0x", "met": r["per_cpu"] >= 1.0})
        if s == "keepalive":
            out.append({"bench": "tls", "case": f"HTTPS keep-alive p99 vs nginx ({m['lat']:.3f} vs {n['lat']:.3f} ms)",
                        "value": round(n["lat"] / m["lat"], 2), "unit": "x better", "goal": ">= 1.0x",
                        "met": m["lat"] <= n["lat"]})
    for alpn in ("http/1.1", "h2") if mem else ():
        m, n = mem[("meridian", alpn)], mem[("nginx", alpn)]
        out.append({"bench": "tls", "case": f"memory per idle TLS connection, {alpn}, after one request, vs nginx "
                    f"({m['kib_req']:.1f} vs {n['kib_req']:.1f} KiB; {args.idle:,} connections)",
                    "value": round(m["kib_req"] / n["kib_req"], 2), "unit": "x", "goal": "<= 1.0x",
                    "met": m["kib_req"] <= n["kib_req"]})
    for r in out:
        print("@result " + json.dumps(r))


if __name__ == "__main__":
    main()
