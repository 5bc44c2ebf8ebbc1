"""Issue 14: Guardian on a household's mix of queries, with dnsmasq and unbound in the same run.

One run starts a fake upstream (dnsmasq answering every name itself with a one-hour TTL,
no cache), then Guardian (a 1M-name list on, dashboard included), dnsmasq (the same list
as ``address=/d/`` lines) and unbound (the same list as ``local-zone: d always_nxdomain``),
all three forwarding to that upstream with a 150,000-entry cache. Each mix is sent by 4
dnsperf processes at once from 127.0.0.1-4 (4 client addresses, so Guardian's per-client
packet cache helps as little as it does in a house):

- cache hits: >= 10,000 distinct names (warmed first) asked uniformly at random;
- blocked: names drawn at random from the list (or their www. subdomain);
- mixed 70/20/10: cache hits / blocked / names never asked before.

Printed in one table, with the targets of issue 14 and the peers of the same run: CPU per
answered query (user+system CPU of every process of the server, from /proc/PID/stat,
divided by the answers dnsperf counted), saturation q/s, p50/p99 latency at a fixed
2,000 q/s on the mixed mix, the DNS process RSS (a Guardian without the list too), the
RSS a 1M list adds (after a restart, after lookups), the first blocked answer on the first
start with the list and on a restart, the peak memory of compiling the list (RSS and PSS
of all processes, sampled every 0.1 s), PSS of all Guardian processes incl. the dashboard,
bytes written to disk per logged query (``full`` mode: write_bytes of all Guardian
processes from /proc/PID/io, and growth of guardian.db + WAL), and the 7/30-day store
questions on a synthetic 10M-row guardian.db (made by bench_store.build with the store's
own schema, kept under /tmp/guardian-bench-store-ROWS/ between runs).

    .venv/bin/python tests/perf/bench_mix.py [--seconds 10] [--repeat 2] [--quick]

``--quick``: a 100,000-name list, 3 s runs, one repetition, 1M store rows (a smoke run).
Only loopback and high ports; nothing leaves the machine. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dns as dns  # noqa: E402 - the harness: processes, dnsperf, memory
import bench_matcher as names  # noqa: E402 - the domain generator
import bench_policy as policy  # noqa: E402 - the household

CLIENTS = 4  # dnsperf processes, one per source address 127.0.0.1..4
CACHE = 150_000
HIT_NAMES = 12_000
BLOCKED_DISTINCT = 100_000
PER_CLIENT_Q = 50  # outstanding queries per dnsperf process at saturation
LATENCY_QPS = 2000
UPSTREAM_A = bytes([192, 0, 2, 1])

TARGETS = {
    "cpu hits": 25.0, "cpu blocked": 30.0, "cpu mixed": 40.0, "p99": 1.0, "rss": 50.0, "list rss": 12.0,
    "first blocked": 4.0, "compile peak": 120.0, "pss all": 150.0, "bytes/query": 200.0, "store": 100.0,
}


# -- servers -------------------------------------------------------------------------------


def start_upstream(procs: dns.Processes, tmp: Path) -> dns.Server:
    """Every name answered with 192.0.2.1 and a one-hour TTL, no cache: the forwarders'
    caches keep what they were given for the whole run."""
    port = dns.free_port()
    config = dns.write_file(tmp / "upstream.conf", ["local-ttl=3600", "address=/#/192.0.2.1", "address=/#/2001:db8::1"])
    log = tmp / "upstream.log"
    server = dns.Server("upstream", port, procs.start(dns.dnsmasq_argv(port, config, "--cache-size=0"), log), log)
    dns.wait_answering(server)
    return server


def guardian_config(tmp: Path, upstream: int, extra: str) -> tuple[Path, int]:
    tmp.mkdir(parents=True, exist_ok=True)
    port, web = dns.free_port(), dns.free_port()
    config = tmp / "guardian.yaml"
    config.write_text(
        "dns:\n"
        f'  listen: ["{dns.HOST}:{port}"]\n'
        f'  upstreams: ["udp://{dns.HOST}:{upstream}"]\n'
        "  rate_limit: 0\n"
        f"  cache_size: {CACHE}\n"
        f'dashboard: {{listen: ["{dns.HOST}:{web}"]}}\n'
        "privacy: {mode: full}\n"
        f"data_dir: {tmp / 'var'}\n"
        "pack_lists: false\n"
        "timezone: Europe/Paris\n"
        "log_level: warning\n" + extra
    )
    return config, port


def start_guardian(procs: dns.Processes, config: Path, port: int, name: str) -> dns.Server:
    log = config.with_name(f"guardian-{secrets.token_hex(3)}.log")
    return dns.Server(name, port, procs.start([str(dns.GUARDIAN), "run", "--config", str(config)], log), log)


def start_dnsmasq(procs: dns.Processes, tmp: Path, upstream: int, domains: list[str]) -> dns.Server:
    config = dns.write_file(tmp / "dnsmasq-list.conf", (f"address=/{d}/" for d in domains))
    port = dns.free_port()
    argv = dns.dnsmasq_argv(port, config, f"--server={dns.HOST}#{upstream}", f"--cache-size={CACHE}",
                            "--dns-forward-max=1024")
    log = tmp / "dnsmasq.log"
    server = dns.Server("dnsmasq", port, procs.start(argv, log), log)
    dns.wait_answering(server, timeout=300)
    found = re.search(r"cachesize (\d+)", log.read_text(errors="replace"))
    server.note = f"cache {found.group(1) if found else CACHE}"
    return server


def start_unbound(procs: dns.Processes, tmp: Path, upstream: int, domains: list[str]) -> dns.Server | None:
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(binary).exists():
        print("unbound is not installed (apt-get install unbound): left out")
        return None
    port = dns.free_port()
    zones = dns.write_file(tmp / "unbound-list.conf", (f'local-zone: "{d}." always_nxdomain' for d in domains))
    config = dns.write_file(tmp / "unbound.conf", [
        "server:",
        f"  interface: {dns.HOST}@{port}",
        "  outgoing-interface: 127.0.0.1",
        "  do-daemonize: no", 'chroot: ""', 'username: ""', 'pidfile: ""', f'directory: "{tmp}"',
        "  use-syslog: no", '  logfile: ""', "  verbosity: 0", "  num-threads: 1",
        "  access-control: 127.0.0.0/8 allow",
        "  local-zone: \"test.\" nodefault",  # a default always_nxdomain zone (RFC 6761); the bench zone is in it
        "  do-not-query-localhost: no",  # the upstream is on loopback
        "  msg-cache-size: 64m", "  rrset-cache-size: 128m", "  key-cache-size: 1m",
        "  module-config: \"iterator\"", "  harden-referral-path: no",
        "  qname-minimisation: no", "  prefetch: no", "  num-queries-per-thread: 1024",
        "  outgoing-range: 2048",
        f'  include: "{zones}"',
        "remote-control:", "  control-enable: no",
        "forward-zone:", '  name: "."', f"  forward-addr: {dns.HOST}@{upstream}",
    ])
    log = tmp / "unbound.log"
    server = dns.Server("unbound", port, procs.start([binary, "-d", "-c", str(config)], log), log,
                        note="msg/rrset cache 64/128 MB")
    dns.wait_answering(server, timeout=300)
    return server


# -- query files ---------------------------------------------------------------------------


@dataclass
class Mixes:
    hit: list[str]  # dnsperf lines
    blocked: list[str]


def mix_file(path: Path, mixes: Mixes, count: int, shares: tuple[float, float, float], seed: int) -> Path:
    """``count`` lines: hits / blocked / never-asked names in ``shares``, uniformly at random."""
    rng = random.Random(seed)
    tag = secrets.token_hex(4)
    hit_share, blocked_share, _ = shares

    def lines():  # type: ignore[no-untyped-def]
        for i in range(count):
            r = rng.random()
            if r < hit_share:
                yield mixes.hit[rng.randrange(len(mixes.hit))]
            elif r < hit_share + blocked_share:
                yield mixes.blocked[rng.randrange(len(mixes.blocked))]
            else:
                yield f"u{i:x}-{tag}-{seed}.{dns.ZONE} A"

    return dns.write_file(path, lines())


SHARES = {"cache hits": (1.0, 0.0, 0.0), "blocked": (0.0, 1.0, 0.0), "mixed 70/20/10": (0.7, 0.2, 0.1)}


# -- measuring -----------------------------------------------------------------------------


def cpu(server: dns.Server) -> float:
    return dns.cpu_seconds(server.proc.pid)


def write_bytes(pid: int) -> int:
    total = 0
    for each in dns.process_tree(pid):
        try:
            text = Path(f"/proc/{each}/io").read_text()
        except OSError:
            continue
        total += int(re.search(r"^write_bytes: (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    return total


@dataclass
class Run:
    answers: int = 0
    sent: int = 0
    qps: float = 0.0
    cpu_us: float = 0.0  # per answer
    latencies: list[float] = field(default_factory=list)
    rcodes: list[str] = field(default_factory=list)

    def pct(self, p: float) -> float:
        return dns.PerfResult(0, 0, 0, 0, "", latencies=self.latencies).percentile(p)


def parallel(procs: dns.Processes, server: dns.Server, files: list[Path], seconds: float, *,
             qps: int | None = None, verbose: bool = False, once: bool = False) -> Run:
    """CLIENTS dnsperf processes at once, each from its own 127.0.0.N, summed."""
    results: list[dns.PerfResult | BaseException] = [RuntimeError("not run")] * len(files)

    def one(i: int) -> None:
        argv = ["dnsperf", "-s", dns.HOST, "-p", str(server.port), "-a", f"127.0.0.{i + 1}", "-d", str(files[i]),
                "-c", "1", "-T", "1", "-q", str(PER_CLIENT_Q), "-t", "2", "-l", str(seconds)]
        if qps:
            argv += ["-Q", str(qps // len(files))]
        if once:
            argv += ["-n", "1"]
        if verbose:
            argv.append("-v")
        try:
            out = procs.run(argv, timeout=seconds + 60)
            results[i] = dns.PerfResult(
                sent=int(dns.stat(out, "Queries sent")),
                completed=int(dns.stat(out, "Queries completed").split()[0]), lost_pct=0.0,
                qps=float(dns.stat(out, "Queries per second")),
                rcodes=dns.stat(out, "Response codes") if "Response codes" in out else "none",
                latencies=[float(m) for m in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M)] if verbose else [],
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    before = cpu(server)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = cpu(server) - before
    server.check_alive()
    run = Run()
    for r in results:
        if isinstance(r, BaseException):
            raise dns.BenchError(f"dnsperf failed against {server.name}: {r}")
        run.answers += r.completed
        run.sent += r.sent
        run.qps += r.qps
        run.latencies += r.latencies
        run.rcodes.append(r.rcodes)
    run.cpu_us = used / max(run.answers, 1) * 1e6
    return run


def tree_memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of ``pid`` and its descendants."""
    m = dns.memory(pid)
    return m.tree_rss, m.tree_pss


def first_blocked(server: dns.Server, name: str, timeout: float, peak: list[float]) -> float:
    """Seconds from now until ``server`` answers ``name`` with anything but the upstream's
    192.0.2.1 (the list is in force); ``peak`` gets the max (RSS, PSS) of its processes."""
    started = time.monotonic()
    peak[:] = [0.0, 0.0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() - started < timeout:
            server.check_alive()
            rss, pss = tree_memory(server.proc.pid)
            peak[:] = [max(peak[0], rss), max(peak[1], pss)]
            qid = secrets.randbelow(65536)
            sock.sendto(dns.dns_query(name, qid), (dns.HOST, server.port))
            try:
                reply = sock.recv(4096)
            except OSError:
                continue
            if reply[:2] == qid.to_bytes(2, "big") and UPSTREAM_A not in reply[12:]:
                return time.monotonic() - started
            time.sleep(0.05)
    raise dns.BenchError(f"{server.name} did not block {name} within {timeout:.0f} s")


def settle(server: dns.Server) -> None:
    dns.settle(server)


# -- the store -----------------------------------------------------------------------------


def store_questions(rows: int) -> dict[str, float]:
    """Median of 5 (ms) of the 7- and 30-day questions on ``rows`` rows, built once and cached."""
    sys.path.insert(0, str(dns.ROOT))
    import bench_store as store  # the synthetic rows, with the store's own schema

    from guardian.store.queries import StoreReader

    path, now = store.kept_file(rows)  # built once; an older one migrated and its daily rollups backfilled
    reader = StoreReader.open(path, store.ZONE)
    questions = {
        "per device, 7 days": lambda: reader.per_device(now - 7 * 86_400, now),
        "per category, 7 days": lambda: reader.per_category(now - 7 * 86_400, now),
        "top blocked, 7 days": lambda: reader.top_blocked(now - 7 * 86_400, now),
        "per device, 30 days": lambda: reader.per_device(now - 30 * 86_400, now),
        "per category, 30 days": lambda: reader.per_category(now - 30 * 86_400, now),
        "top blocked, 30 days": lambda: reader.top_blocked(now - 30 * 86_400, now),
    }
    out = {}
    for title, ask in questions.items():
        ask()
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            ask()
            runs.append(time.perf_counter() - t)
        out[title] = statistics.median(runs) * 1000
    reader.close()
    return out


# -- the run -------------------------------------------------------------------------------


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def ok(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def run(args: argparse.Namespace, procs: dns.Processes, tmp: Path) -> None:
    t_start = time.monotonic()
    loads = [f"start: {load()}"]
    domains = names.generate_domains(args.domains, seed=7)
    hosts = dns.write_file(tmp / "bench.hosts", (f"0.0.0.0 {d}" for d in domains))
    rng = random.Random(11)
    mixes = Mixes(
        hit=[f"h{i}.{dns.ZONE} {'A' if i % 3 else 'AAAA'}" for i in range(HIT_NAMES)],
        blocked=[f"{'www.' + d if rng.random() < 0.5 else d} A"
                 for d in rng.sample(domains, min(BLOCKED_DISTINCT, len(domains)))],
    )
    probe = domains[len(domains) // 2]
    print(f"{len(domains):,} list names generated in {time.monotonic() - t_start:.0f} s; {load()}")

    upstream = start_upstream(procs, tmp)
    # Guardian without any list: the DNS process RSS target.
    bare_cfg, bare_port = guardian_config(tmp / "bare", upstream.port, "")
    bare = start_guardian(procs, bare_cfg, bare_port, "G-bare")
    dns.wait_answering(bare, timeout=60)

    # Guardian with the list: first start (compiling), then a restart (the compiled list).
    cfg, port = guardian_config(tmp / "list", upstream.port, policy.household_yaml(hosts))
    peak: list[float] = []
    g = start_guardian(procs, cfg, port, "Guardian")
    first_start = first_blocked(g, probe, 900, peak)
    compile_peak = list(peak)
    time.sleep(2)
    procs.end(g.proc)
    g = start_guardian(procs, cfg, port, "Guardian")
    restart = first_blocked(g, probe, 300, peak)
    print(f"Guardian: first blocked answer {first_start:.1f} s after the first start (peak RSS "
          f"{compile_peak[0]:.0f} MB, PSS {compile_peak[1]:.0f} MB), {restart:.1f} s after a restart; {load()}")
    servers = [g, start_dnsmasq(procs, tmp, upstream.port, domains)]
    unbound = start_unbound(procs, tmp, upstream.port, domains)
    if unbound:
        servers.append(unbound)
    print("servers: " + "; ".join(f"{s.name} {dns.HOST}:{s.port}" for s in [upstream, bare, *servers]))

    warm = dns.write_file(tmp / "warm.txt", mixes.hit)
    for server in [bare, *servers]:
        for _ in range(2):
            parallel(procs, server, [warm] * CLIENTS, 60, once=True)  # every client's cache (Guardian's per-client one too)

    results: dict[str, dict[str, list[Run]]] = {m: {s.name: [] for s in servers} for m in SHARES}
    latency: dict[str, list[Run]] = {s.name: [] for s in servers}
    bare_runs: list[Run] = []
    io: dict[str, float] = {}
    for rep in range(args.repeat):
        loads.append(f"repetition {rep + 1}: {load()}")
        for title, shares in SHARES.items():
            count = int(args.seconds * 60_000 / CLIENTS)
            for server in servers:
                files = [mix_file(tmp / f"q{i}.txt", mixes, count, shares, seed=rep * 100 + i) for i in range(CLIENTS)]
                settle(server)
                disk0 = _disk(cfg) if server is g else 0
                io0 = write_bytes(server.proc.pid)
                r = parallel(procs, server, files, args.seconds)
                results[title][server.name].append(r)
                if server is g and title.startswith("mixed"):
                    settle(server)  # the writer commits what it was given
                    io["write_bytes"] = (write_bytes(server.proc.pid) - io0) / max(r.answers, 1)
                    io["file growth"] = (_disk(cfg) - disk0) / max(r.answers, 1)
                print(f"  {server.name:8} {title:15} {r.qps:>9,.0f} q/s {r.cpu_us:6.1f} us CPU/answer  "
                      f"lost {r.sent - r.answers}  {';'.join(sorted(set(r.rcodes)))[:80]}")
            if title == "cache hits":
                files = [mix_file(tmp / f"q{i}.txt", mixes, count, shares, seed=rep * 100 + i) for i in range(CLIENTS)]
                bare_runs.append(parallel(procs, bare, files, args.seconds))
        for server in servers:
            files = [mix_file(tmp / f"l{i}.txt", mixes, int(args.seconds * LATENCY_QPS * 1.2 / CLIENTS),
                              SHARES["mixed 70/20/10"], seed=rep * 100 + 50 + i) for i in range(CLIENTS)]
            settle(server)
            r = parallel(procs, server, files, args.seconds, qps=LATENCY_QPS, verbose=True)
            latency[server.name].append(r)
            print(f"  {server.name:8} mixed at {LATENCY_QPS} q/s: p50 {r.pct(50):.3f} ms p99 {r.pct(99):.3f} ms, "
                  f"{r.cpu_us:.1f} us CPU/answer")

    mem = {s.name: dns.memory(s.proc.pid) for s in [bare, *servers]}
    web_pss = mem["Guardian"].tree_pss
    loads.append(f"end of the DNS runs: {load()}")
    store = store_questions(args.rows)
    loads.append(f"after the store questions: {load()}")

    # -- the table --
    names_ = [s.name for s in servers]
    width = 16

    def row(label: str, values: list[str], target: str = "") -> None:
        print(f"{label:44}" + "".join(f"{v:>{width}}" for v in values) + f"   {target}")

    def best(runs: list[Run]) -> Run:
        return min(runs, key=lambda r: r.cpu_us)

    def span(runs: list[Run], attr: str, fmt: str) -> str:
        vals = [getattr(r, attr) for r in runs]
        return fmt.format(min(vals)) if len(vals) == 1 else f"{fmt.format(min(vals))}-{fmt.format(max(vals))}"

    print(f"\nResults: {args.domains:,}-name list, {CLIENTS} clients (127.0.0.1-{CLIENTS}) x {PER_CLIENT_Q} outstanding, "
          f"{args.seconds:g} s per run, {args.repeat} repetition(s), cache {CACHE:,} each, {os.cpu_count()} CPUs, "
          f"{time.monotonic() - t_start:.0f} s in all")
    print("machine load: " + "; ".join(loads) + "\n")
    head = f"{'figure':44}" + "".join(f"{n:>{width}}" for n in names_) + "   target (Guardian)"
    print(head)
    print("-" * len(head))
    for title, key in (("mixed 70/20/10", "cpu mixed"), ("cache hits", "cpu hits"), ("blocked", "cpu blocked")):
        label = f"{title}{', 12,000 names' if title == 'cache hits' else ''}"
        g_cpu = best(results[title]["Guardian"]).cpu_us
        row(f"CPU per answer (us), {label}"[:44], [span(results[title][n], "cpu_us", "{:.1f}") for n in names_],
            f"<= {TARGETS[key]:g} us  {ok(g_cpu, TARGETS[key])}")
        row("  q/s at saturation", [span(results[title][n], "qps", "{:,.0f}") for n in names_])
    row("CPU per answer, cache hits, Guardian no list", [span(bare_runs, "cpu_us", "{:.1f}"), "", ""])
    p99 = statistics.median(r.pct(99) for r in latency["Guardian"])
    row(f"p50 at {LATENCY_QPS} q/s, mixed (ms)", [f"{statistics.median(r.pct(50) for r in latency[n]):.3f}"
                                                   for n in names_])
    row(f"p99 at {LATENCY_QPS} q/s, mixed (ms)", [f"{statistics.median(r.pct(99) for r in latency[n]):.3f}"
                                                   for n in names_], f"<= {TARGETS['p99']:g} ms  {ok(p99, TARGETS['p99'])}")
    row("  CPU per answer at 2,000 q/s (us)", [span(latency[n], "cpu_us", "{:.1f}") for n in names_])
    row("DNS process RSS after the runs, no list (MB)", [f"{mem['G-bare'].rss:.1f}", "", ""],
        f"<= {TARGETS['rss']:g} MB  {ok(mem['G-bare'].rss, TARGETS['rss'])}")
    row("DNS process RSS, with the list (MB)", [f"{mem[n].rss:.1f}" for n in names_])
    added = mem["Guardian"].rss - mem["G-bare"].rss
    row("  added by the list (restart, after lookups)", [f"+{added:.1f}", "", ""],
        f"<= {TARGETS['list rss']:g} MB  {ok(added, TARGETS['list rss'])}")
    row("first blocked answer, first start (s)", [f"{first_start:.1f}", "", ""],
        f"<= {TARGETS['first blocked']:g} s  {ok(first_start, TARGETS['first blocked'])}")
    row("  after a restart (s)", [f"{restart:.1f}", "", ""])
    row("peak while compiling, all processes, PSS (MB)", [f"{compile_peak[1]:.0f}", "", ""],
        f"<= {TARGETS['compile peak']:g} MB  {ok(compile_peak[1], TARGETS['compile peak'])}")
    row("  the same, RSS summed (MB)", [f"{compile_peak[0]:.0f}", "", ""])
    row("all processes, dashboard incl., PSS (MB)", [f"{mem[n].tree_pss:.1f}" for n in names_],
        f"<= {TARGETS['pss all']:g} MB  {ok(web_pss, TARGETS['pss all'])}")
    row("  processes counted", [str(mem[n].processes) for n in names_])
    wb = io.get("write_bytes", float("nan"))
    row("bytes written per logged query, full mode", [f"{wb:.0f}", "", ""],
        f"<= {TARGETS['bytes/query']:g}  {ok(wb, TARGETS['bytes/query'])}")
    row("  guardian.db + WAL growth per query", [f"{io.get('file growth', float('nan')):.0f}", "", ""])
    for title, ms in store.items():
        row(f"store, {args.rows / 1e6:g}M rows: {title} (ms)", [f"{ms:.1f}", "", ""],
            f"<= {TARGETS['store']:g} ms  {ok(ms, TARGETS['store'])}")
    version = subprocess.run([shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    peers = f"{version}; " + "; ".join(f"{s.name} {s.note}" for s in servers if s.note)
    print(f"({peers}; ranges are min-max over the repetitions; the target is checked on the best one)")


def _disk(config: Path) -> int:
    db = config.parent / "var" / "guardian.db"
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each dnsperf run (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions of every run (default 2)")
    parser.add_argument("--domains", type=int, default=1_000_000, help="list size (default 1,000,000)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="store rows (default 10,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 names, 3 s runs, once, 1M rows")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeat, args.domains, args.rows = 3.0, 1, 100_000, 1_000_000
    return dns.harness("guardian-mix-", lambda procs, tmp: run(args, procs, tmp))


if __name__ == "__main__":
    sys.exit(main())
