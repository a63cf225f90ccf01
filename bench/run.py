#!/usr/bin/env python3
"""Every Meridian benchmark in one run, against the peers measured in the same run.

Runs each benchmark as its own program (each can also be run alone: the commands are listed below and in
bench/RESULTS.md), streams its output to stderr and to bench/out/NAME.log, collects the `@result {json}`
lines it prints, then prints one table of figures and ratios with the machine's description and rewrites
the generated section of bench/RESULTS.md (between the `bench/run` markers; the narrative sections below
it are kept). With `--only`, the rows of the benchmarks run are replaced and the others kept, each marked
"(earlier run, DATE)".

Usage: bench/run [--only steer,propagation,dns,proxy,tls,health,drill] [--no-write]
Everything runs on loopback, bounded in time (the whole suite takes about 20 minutes on 2 cores).
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN = "<!-- bench/run: begin (generated; edit bench/run.py, not this section) -->"
END = "<!-- bench/run: end -->"
EXAMPLES = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release" / "examples"

# name -> (what it measures, command, time limit in seconds)
BENCHES = {
    "steer": ("steering decision latency (no peer runs this code)",
              [str(EXAMPLES / "steer_time")], 120),
    "propagation": ("state change → snapshot in every watcher (embedded, embedded+disk, etcd)",
                    [str(EXAMPLES / "store_propagation"), "300", "4"], 180),
    "dns": ("GeoDNS vs gdnsd and PowerDNS (dnsperf, ECS with a distinct /24 per query)",
            ["python3", "bench/dns/run.py", "--rounds", "8", "--seconds", "5"], 700),
    "proxy": ("L7 proxy vs nginx and HAProxy (wrk, one pinned worker each)",
              ["python3", "bench/proxy/run.py", "--only", "plain", "--rounds", "5", "--seconds", "8"], 480),
    "tls": ("HTTPS edge vs nginx (wrk and h2load over TLS, new connections, 10,000 idle connections)",
            ["python3", "bench/proxy/run.py", "--only", "tls", "--rounds", "5", "--seconds", "5"], 720),
    "health": ("endpoint death → region down → DNS answer moved (3 probers)",
               [str(EXAMPLES / "health_failover"), "10"], 240),
    "drill": ("`drill start` → DNS answer changed (admin API, real DNS server)",
              [str(EXAMPLES / "drill_convergence"), "30"], 180),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def stop(proc):
    """SIGTERM first, so that a benchmark stops the servers it started (bench/proxy's do), then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(name: str) -> tuple[list[dict], str | None]:
    _, cmd, limit = BENCHES[name]
    if not Path(cmd[0]).exists() and not cmd[0].startswith("python"):
        return [], f"{cmd[0]} is missing (bench/run builds it)"
    if cmd[0] == "python3" and not (ROOT / cmd[1]).exists():
        return [], f"{cmd[1]} is missing"
    log(f"\n=== {name}: {shlex.join(cmd)}")
    OUT.mkdir(parents=True, exist_ok=True)
    figures, started = [], time.monotonic()
    with open(OUT / f"{name}.log", "w") as logf:
        logf.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                if line.startswith("@result "):
                    figures.append(json.loads(line[len("@result "):]))
                else:
                    sys.stderr.write(line)
                if time.monotonic() - started > limit:
                    stop(proc)
                    return figures, f"stopped after its {limit} s limit"
            code = proc.wait(timeout=max(1, limit - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            stop(proc)
            return figures, f"stopped after its {limit} s limit"
    if code != 0:
        return figures, f"exited with status {code} (see bench/out/{name}.log)"
    if not figures:
        return figures, "printed no results"
    return figures, None


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    distro = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                   if l.startswith("PRETTY_NAME")), "?")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} × {cpu}, {mem / 1048576:.0f} GiB, {distro}, Linux {platform.release()}; "
            f"{rustc}, release profile")


def fmt(v: float, unit: str) -> str:
    if unit in ("x", "x better"):
        return f"**{v:.2f}{unit[0]}**" + (" better" if unit == "x better" else "")
    if unit == "ns":
        return f"{v:,.0f} ns"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:,.0f} {unit}"


def kept_rows(names: list[str]) -> list[str]:
    """Rows of the recorded table for benchmarks other than `names`, each marked with the command and date
    of the run that measured it (so a partial run never passes off older figures as its own)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN not in text or END not in text:
        return []
    block = text[text.index(BEGIN):text.index(END)]
    origin = next((l for l in block.splitlines() if l.startswith("Command: ")), "")
    date = origin.rsplit("Date: ", 1)[-1].rstrip(".") if "Date: " in origin else "?"
    out = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("benchmark", "---") or cells[0] in names:
            continue
        case = cells[1] if "(earlier run" in cells[1] else f"{cells[1]} (earlier run, {date})"
        out.append(f"| {cells[0]} | {case} | {cells[2]} | {cells[3]} | {cells[4]} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--no-write", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"bench/run: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    started = time.monotonic()
    rows, failures = [], []
    for n in names:
        t = time.monotonic()
        figures, problem = run_one(n)
        rows += figures
        if problem:
            failures.append(f"{n}: {problem}")
            log(f"=== {n}: FAILED: {problem}")
        else:
            log(f"=== {n}: {len(figures)} figures in {time.monotonic() - t:.0f} s")
    took = time.monotonic() - started
    lines = [
        f"Command: `bench/run{'' if args.only == ','.join(BENCHES) else ' --only ' + args.only}` "
        f"({took / 60:.1f} minutes). Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| benchmark | case | Meridian | goal | met |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['case']} | {fmt(r['value'], r['unit'])} | {r['goal']} | "
                     f"{'-' if r['met'] is None else 'yes' if r['met'] else '**no**'} |")
    kept = kept_rows(names) if args.only != ",".join(BENCHES) else []
    if kept:
        # A partial run replaces its own benchmarks' rows and keeps the others, marked with their run.
        lines += kept
    lines.append("")
    lines.append("Each benchmark alone: `bench/run --only NAME` (" + ", ".join(BENCHES) +
                 "); the program each runs is logged to bench/out/NAME.log.")
    for f in failures:
        lines.append(f"- **{f}**")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        text = RESULTS.read_text()
        block = f"{BEGIN}\n## Latest full run (`bench/run`)\n\n{table}\n{END}"
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            head, sep, rest = text.partition("\n## ")
            text = f"{head}\n{block}\n\n## {rest}" if sep else f"{text}\n{block}\n"
        RESULTS.write_text(text)
        log(f"bench/run: rewrote the generated section of {os.path.relpath(RESULTS, ROOT)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
