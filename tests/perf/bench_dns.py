"""Guardian vs dnsmasq under dnsperf on loopback: throughput, latency, memory.

One run starts a fake upstream (dnsmasq answering every name itself), a caching
dnsmasq forwarder (the engine inside Pi-hole) and Guardian, both forwarding to that
upstream, then measures each with dnsperf for two mixes: cache hits (~1,000 names
asked over and over, caches warmed first) and cache misses (names never asked
before). For each: queries/s at saturation (outstanding queries raised until the rate
stops growing or queries get lost) and p50/p99 latency at a fixed 2,000 queries/s,
then the servers' RSS. Targets are printed next to the figures; a missed target is
marked MISSED but the exit status stays 0 (this is a measurement, not a test).

    .venv/bin/python tests/perf/bench_dns.py [--seconds 10] [--quick]

Needs dnsperf and dnsmasq on PATH (or /usr/sbin). Only loopback and high ports.
Not collected by pytest (setup.cfg: norecursedirs = tests/perf).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARDIAN = ROOT / ".venv" / "bin" / "guardian"
HOST = "127.0.0.1"
ZONE = "bench.test"
HIT_HOSTS = [f"host{i}.{ZONE}" for i in range(1000)]
MISS_TTL = 2  # seconds; see start_upstream
LATENCY_QPS = 2000
MAX_LOSS = 0.1  # % of queries lost above which a saturation run does not count
MISS_QPS_CEILING = 150_000  # miss files hold this many names per second of run
DNSMASQ_CACHE_SIZES = (150_000, 10_000)  # wanted, then the old versions' maximum

# Targets from issue 2 (cache-hit mix).
TARGET_RATIO = 0.5
TARGET_P50_MS = 0.3
TARGET_P99_MS = 3.0
TARGET_RSS_MB = 60.0


class BenchError(Exception):
    """The harness itself failed (a server did not start, dnsperf broke)."""


# -- processes -----------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts, so all can be ended by PID on the way out."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def run(self, argv: list[str], timeout: float) -> str:
        """Run to completion and return stdout+stderr (dnsperf)."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.started.append(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            self.end(proc)
        return out.decode(errors="replace")

    def end(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.started:
            self.started.remove(proc)

    def end_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.end(proc)


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    note: str = ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}:\n{tail}")


def free_port() -> int:
    """A loopback port free for both UDP and TCP (the servers bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        if port >= 1024:
            return port
    raise BenchError("no free loopback port")


def dns_query(name: str, qid: int) -> bytes:
    """A minimal A query, RD set."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)


def wait_answering(server: Server, timeout: float = 15.0) -> None:
    """Until ``server`` answers a query over UDP (it may have to forward it first)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            server.check_alive()
            qid = secrets.randbelow(65536)
            sock.sendto(dns_query(f"ready.{ZONE}", qid), (HOST, server.port))
            try:
                reply = sock.recv(4096)
            except OSError:
                continue
            if len(reply) >= 2 and struct.unpack_from("!H", reply)[0] == qid:
                return
    raise BenchError(f"{server.name} did not answer on {HOST}:{server.port} within {timeout:.0f} s")


def dnsmasq_argv(port: int, config: Path, *extra: str) -> list[str]:
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    return [
        binary,
        f"--conf-file={config}",  # never the system's /etc/dnsmasq.conf
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        f"--listen-address={HOST}",
        f"--port={port}",
        "--pid-file=",
        "--log-facility=-",  # startup lines to our log file; no --log-queries
        *extra,
    ]


def start_upstream(procs: Processes, tmp: Path) -> Server:
    """The fake upstream: answers every name itself, never caches, never the bottleneck.

    Hit names live an hour; every other name gets a short TTL, so the forwarders'
    caches never fill with live entries. (A dnsmasq cache full of live entries evicts
    slowly: its miss rate falls from ~15,000 to ~3,000 q/s, which would measure that
    corner instead of forwarding.)
    """
    port = free_port()
    config = tmp / "upstream.conf"
    records = [f"host-record={name},192.0.2.1,2001:db8::1,3600" for name in HIT_HOSTS]
    write_file(config, [*records, f"local-ttl={MISS_TTL}", "address=/#/192.0.2.1", "address=/#/2001:db8::1"])
    argv = dnsmasq_argv(port, config, "--cache-size=0")
    log = tmp / "upstream.log"
    server = Server("upstream", port, procs.start(argv, log), log)
    wait_answering(server)
    return server


def start_dnsmasq(procs: Processes, tmp: Path, upstream: int) -> Server:
    """dnsmasq as a caching forwarder, with the largest cache this version accepts."""
    for size in DNSMASQ_CACHE_SIZES:
        port = free_port()
        argv = dnsmasq_argv(
            port,
            Path(os.devnull),
            f"--server={HOST}#{upstream}",
            f"--cache-size={size}",
            "--dns-forward-max=1024",  # as Guardian's max_inflight; dnsmasq's default is 150
        )
        log = tmp / "dnsmasq.log"
        server = Server("dnsmasq", port, procs.start(argv, log), log)
        try:
            wait_answering(server, timeout=5)
        except BenchError:
            procs.end(server.proc)
            continue
        effective = re.search(r"cachesize (\d+)", log.read_text(errors="replace"))
        server.note = f"cache {effective.group(1) if effective else size}"
        return server
    raise BenchError(f"dnsmasq did not start as a forwarder; see {log}")


def start_guardian(procs: Processes, tmp: Path, upstream: int) -> Server:
    port = free_port()
    config = tmp / "guardian.yaml"
    config.write_text(
        "dns:\n"
        f'  listen: ["{HOST}:{port}"]\n'
        f'  upstreams: ["udp://{HOST}:{upstream}"]\n'
        "  rate_limit: 0          # one client flooding on purpose\n"
        "  cache_size: 10000      # the default\n"
        f"data_dir: {tmp / 'var'}\n"
        "pack_lists: false        # nothing downloaded: the fake upstream answers every name with 192.0.2.1\n"
        "log_level: warning\n"
    )
    log = tmp / "guardian.log"
    server = Server("Guardian", port, procs.start([str(GUARDIAN), "run", "--config", str(config)], log), log)
    wait_answering(server)
    return server


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(values["VmRSS"]) / 1024, int(values["VmHWM"]) / 1024


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Guardian's store writer runs as a child)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return found


@dataclass
class Memory:
    rss: float  # MB, the main process
    peak: float  # MB, its VmHWM
    tree_rss: float  # MB, the main process and its children, each counted whole
    tree_pss: float  # MB, the same with shared pages split between them (what they cost together)
    processes: int


def memory(pid: int) -> Memory:
    rss, peak = rss_mb(pid)
    tree_rss = tree_pss = 0.0
    pids = process_tree(pid)
    for each in pids:
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:  # a short-lived helper (a download, a compile) ended meanwhile
            continue
        values = dict(re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.M))
        tree_rss += int(values["Rss"]) / 1024
        tree_pss += int(values["Pss"]) / 1024
    return Memory(rss, peak, tree_rss, tree_pss, len(pids))


# -- query files -----------------------------------------------------------------------


def hit_names() -> list[str]:
    """~1,000 questions, A and AAAA alternating, asked over and over."""
    return [f"{name} {'A' if i % 2 else 'AAAA'}" for i, name in enumerate(HIT_HOSTS)]


def miss_names(count: int) -> Iterator[str]:
    """``count`` names nobody has asked before: a fresh random label per file."""
    tag = secrets.token_hex(6)
    return (f"m{i:x}-{tag}.{ZONE} A" for i in range(count))


def write_file(path: Path, lines: Iterator[str] | list[str]) -> Path:
    with path.open("w") as out:
        out.writelines(f"{line}\n" for line in lines)
    return path


# -- dnsperf ----------------------------------------------------------------------------


@dataclass
class PerfResult:
    sent: int
    completed: int
    lost_pct: float
    qps: float
    rcodes: str
    outstanding: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, with -v only

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in ms (nan without per-query latencies)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


def stat(text: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}:\s+(.*)$", text, re.M)
    if not found:
        raise BenchError(f"dnsperf output has no {label!r}:\n{text[-2000:]}")
    return found.group(1).strip()


def dnsperf(
    procs: Processes,
    server: Server,
    data: Path,
    *,
    seconds: float | None = None,
    outstanding: int = 100,
    qps: int | None = None,
    once: bool = False,
    verbose: bool = False,
) -> PerfResult:
    argv = ["dnsperf", "-s", HOST, "-p", str(server.port), "-d", str(data), "-c", "4", "-T", "1"]
    argv += ["-q", str(outstanding), "-t", "2"]
    if seconds is not None:
        argv += ["-l", str(seconds)]
    if qps is not None:
        argv += ["-Q", str(qps)]
    if once:
        argv += ["-n", "1"]  # stop at the end of the file: miss names are never reused
    if verbose:
        argv.append("-v")
    out = procs.run(argv, timeout=(seconds or 60) + 30)
    server.check_alive()
    if once and seconds is not None and "(end of file)" in out:
        print(f"  note: {data.name} ran out of names after {stat(out, 'Run time (s)')} s")
    sent = int(stat(out, "Queries sent"))
    completed = int(stat(out, "Queries completed").split()[0])
    latencies = [float(m) for m in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M)] if verbose else []
    return PerfResult(
        sent=sent,
        completed=completed,
        lost_pct=100.0 * (sent - completed) / sent if sent else 100.0,
        qps=float(stat(out, "Queries per second")),
        rcodes=stat(out, "Response codes") if completed else "none",
        outstanding=outstanding,
        latencies=latencies,
    )


# -- measurements ----------------------------------------------------------------------


@dataclass
class Mix:
    """How to get a query file for one dnsperf run of ``seconds`` at up to ``qps``."""

    title: str
    query_file: Callable[[Path, float], Path]
    once: bool  # stop at the end of the file instead of looping over it


@dataclass
class Figures:
    saturation: PerfResult
    latency: list[PerfResult] = field(default_factory=list)  # one per latency run

    def percentile(self, p: float) -> float:
        """The median over the latency runs of each run's ``p``-th percentile (ms)."""
        return statistics.median(run.percentile(p) for run in self.latency)

    def spread(self, p: float) -> str:
        values = [run.percentile(p) for run in self.latency]
        return f"{min(values):.2f}-{max(values):.2f}"

    def lost_pct(self) -> float:
        return max(run.lost_pct for run in self.latency)


def saturate(procs: Processes, server: Server, mix: Mix, tmp: Path, seconds: float, ladder: list[int]) -> PerfResult:
    """The best rate without loss, raising outstanding queries along ``ladder``.

    Stops at the first run losing queries, or after two runs without a new best
    (+3%): one slow run on a busy machine must not end the search.
    """
    best: PerfResult | None = None
    stale = 0
    for outstanding in ladder:
        data = mix.query_file(tmp, seconds * MISS_QPS_CEILING)
        result = dnsperf(procs, server, data, seconds=seconds, outstanding=outstanding, once=mix.once)
        print(
            f"  {server.name:8} {mix.title:12} -q {outstanding:<4} {result.qps:>9,.0f} q/s  lost {result.lost_pct:.2f}%"
        )
        if result.lost_pct > MAX_LOSS:
            break
        stale = 0 if best is None or result.qps > best.qps * 1.03 else stale + 1
        if best is None or result.qps > best.qps:
            best = result
        if stale == 2:
            break
    return best or result  # lost queries even at the lowest depth: report that run, loss and all


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children so far."""
    total = 0.0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def settle(server: Server, limit: float = 120.0) -> None:
    """Wait until ``server`` is idle (under 5% of a core for a second), up to ``limit`` s.

    After a saturation run Guardian's store writer still has the flood's query log to
    commit; the latency runs measure a steady 2,000 q/s, not that catch-up. The time it
    took is printed.
    """
    started = time.monotonic()
    last = cpu_seconds(server.proc.pid)
    while time.monotonic() - started < limit:
        time.sleep(1.0)
        now = cpu_seconds(server.proc.pid)
        if now - last < 0.05:
            break
        last = now
    waited = time.monotonic() - started
    if waited > 1.5:
        print(f"  {server.name:8} busy for {waited:.0f} s after the saturation runs (writing its query log)")


def measure(procs: Processes, servers: list[Server], mix: Mix, tmp: Path, seconds: float, ladder: list[int],
            latency_runs: int) -> dict[str, Figures]:
    """Saturation for each server, then ``latency_runs`` latency runs taking turns
    (Guardian, dnsmasq, Guardian, ...), so a noisy moment on the machine hits both."""
    figures = {s.name: Figures(saturate(procs, s, mix, tmp, seconds, ladder)) for s in servers}
    for server in servers:
        settle(server)
    for _ in range(latency_runs):
        for server in servers:
            data = mix.query_file(tmp, seconds * LATENCY_QPS * 1.2)
            latency = dnsperf(procs, server, data, seconds=seconds, qps=LATENCY_QPS, once=mix.once, verbose=True)
            figures[server.name].latency.append(latency)
            print(
                f"  {server.name:8} {mix.title:12} at {LATENCY_QPS} q/s: p50 {latency.percentile(50):.3f} ms, "
                f"p99 {latency.percentile(99):.3f} ms, lost {latency.lost_pct:.2f}%"
            )
    return figures


def make_mixes(hits_file: Path) -> list[Mix]:
    def hits(_tmp: Path, _count: float) -> Path:
        return hits_file

    def misses(tmp: Path, count: float) -> Path:
        return write_file(tmp / "misses.txt", miss_names(int(count)))  # overwritten per run

    return [Mix("cache hits", hits, once=False), Mix("cache misses", misses, once=True)]


# -- report ----------------------------------------------------------------------------


def _target(text: str, ok: bool) -> str:
    return f"{text:18}{'ok' if ok else 'MISSED'}"


def print_report(
    results: dict[str, dict[str, Figures]],
    rss: dict[str, dict[str, Memory]],
    servers: list[Server],
    seconds: float,
    latency_runs: int,
) -> None:
    g, d = "Guardian", "dnsmasq"
    notes = ", ".join(f"{s.name} {s.note}".strip() for s in servers)
    print(f"\nResults: {seconds:g} s per dnsperf run, {os.cpu_count()} CPUs, loopback ({notes}); latency: median of "
          f"{latency_runs} runs per server, taking turns\n")
    head = f"{'mix':13}{'measure':24}{g:>12}{d:>12}{'ratio':>8}   {'target':22}"
    print(head)
    print("-" * len(head))
    for mix, figures in results.items():
        gs, ds = figures[g].saturation, figures[d].saturation
        ratio = gs.qps / ds.qps if ds.qps else math.nan
        hit = mix == "cache hits"
        target = _target(f">= {TARGET_RATIO}x dnsmasq", ratio >= TARGET_RATIO) if hit else ""
        print(f"{mix:13}{'saturation q/s':24}{gs.qps:>12,.0f}{ds.qps:>12,.0f}{ratio:>7.2f}x   {target}")
        print(f"{'':13}{'  lost, at -q':24}{_loss(gs):>12}{_loss(ds):>12}")
        for p, limit in ((50, TARGET_P50_MS), (99, TARGET_P99_MS)):
            gl, dl = figures[g].percentile(p), figures[d].percentile(p)
            target = _target(f"< {limit:g} ms", gl < limit) if hit else ""
            print(f"{'':13}{f'p{p} @{LATENCY_QPS} q/s (ms)':24}{gl:>12.3f}{dl:>12.3f}{'':8}   {target}")
            if len(figures[g].latency) > 1:
                print(f"{'':13}{'  range over runs':24}{figures[g].spread(p):>12}{figures[d].spread(p):>12}")
        gl_lost, dl_lost = figures[g].lost_pct(), figures[d].lost_pct()
        print(f"{'':13}{f'  lost @{LATENCY_QPS} q/s':24}{gl_lost:>11.2f}%{dl_lost:>11.2f}%")
    for when in rss[g]:
        gm, dm = rss[g][when], rss[d][when]
        target = _target(f"< {TARGET_RSS_MB:g} MB", gm.tree_rss < TARGET_RSS_MB)
        print(f"{'RSS (MB)':13}{when + ', all':24}{gm.tree_rss:>12.1f}{dm.tree_rss:>12.1f}{'':8}   {target}")
        print(f"{'':13}{f'  DNS process / {gm.processes}':24}{gm.rss:>12.1f}{dm.rss:>12.1f}")
        print(f"{'':13}{'  PSS, all processes':24}{gm.tree_pss:>12.1f}{dm.tree_pss:>12.1f}")
    print(f"{'':13}{'  DNS process peak':24}{gm.peak:>12.1f}{dm.peak:>12.1f}")
    for mix, figures in results.items():
        for name, fig in figures.items():
            for run in (fig.saturation, *fig.latency):
                if not re.fullmatch(r"NOERROR \d+ \(100\.00%\)", run.rcodes):
                    print(f"warning: {name}, {mix}: answers were not all NOERROR: {run.rcodes}")


def _loss(result: PerfResult) -> str:
    return f"{result.lost_pct:.2f}% q{result.outstanding}"


# -- main --------------------------------------------------------------------------------


def run(seconds: float, ladder: list[int], latency_runs: int, procs: Processes, tmp: Path) -> None:
    upstream = start_upstream(procs, tmp)
    servers = [start_guardian(procs, tmp, upstream.port), start_dnsmasq(procs, tmp, upstream.port)]
    print(f"fake upstream {HOST}:{upstream.port}; " + "; ".join(f"{s.name} {HOST}:{s.port}" for s in servers))
    hits_file = write_file(tmp / "hits.txt", hit_names())
    for server in servers:  # warm both caches: one pass over the hit names
        warm = dnsperf(procs, server, hits_file, once=True)
        if warm.completed != warm.sent:
            raise BenchError(f"{server.name} lost {warm.sent - warm.completed} queries while warming its cache")
    results: dict[str, dict[str, Figures]] = {}
    rss: dict[str, dict[str, Memory]] = {s.name: {} for s in servers}
    for mix in make_mixes(hits_file):
        results[mix.title] = measure(procs, servers, mix, tmp, seconds, ladder, latency_runs)
        for s in servers:
            rss[s.name][f"after {mix.title.split()[1]}"] = memory(s.proc.pid)
    print_report(results, rss, servers, seconds, latency_runs)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def harness(prefix: str, body: Callable[[Processes, Path], None]) -> int:
    """Run ``body(procs, tmp)`` with dnsperf/dnsmasq checked, then end every process it
    started and remove its temp dir, whatever happens. Returns the exit status."""
    for tool in ("dnsperf", "dnsmasq"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    # SIGTERM ends the run like Ctrl-C does, through the finally below (SIGINT too, even
    # when started in the background, where the shell has it ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        body(procs, tmp)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.end_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each dnsperf run (default 10)")
    parser.add_argument("--latency-runs", type=int, default=3, help="latency runs per server and mix (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 s runs and a short -q ladder: a smoke run")
    args = parser.parse_args()
    seconds, ladder = (2.0, [50, 200]) if args.quick else (args.seconds, [25, 50, 100, 200, 400])
    runs = 1 if args.quick else max(1, args.latency_runs)
    return harness("guardian-bench-", lambda procs, tmp: run(seconds, ladder, runs, procs, tmp))


if __name__ == "__main__":
    sys.exit(main())
