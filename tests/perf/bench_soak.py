"""Soak: does Guardian's memory settle over a long run, with parents acting and reloads?

A box runs for months; a leak of a few bytes a query would end it. This runs Guardian
(a household of 5 profiles and 50 devices, plus a 100,000-domain list it downloads by
URL from loopback a minute after start, in its download process, and compiles in its
compiler process) and dnsmasq (the same list as ``address=/d/`` lines) side by side, each under dnsperf at a steady
rate for ``--minutes``, on a mix of cached names, names never asked before and listed
(blocked) names. Every 30 s Guardian also gets what a household does to it: a SIGHUP
reload, a pause and resume of a profile, a one-domain allow for a minute (each one
builds a new policy snapshot and empties the packet cache). Both servers' memory is
sampled every ``--sample`` seconds (Guardian: all its processes, RSS and PSS).

Printed: the samples, and the growth over the second half of the run, when caches and
batches have reached their working size: a leak shows as steady growth there.
Target: Guardian's PSS grows by less than 5 MB over the second half.

    .venv/bin/python tests/perf/bench_soak.py [--minutes 10] [--qps 1000]

Only loopback and high ports. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dns as dns  # noqa: E402 - the harness: processes, dnsperf, memory
import bench_matcher as names  # noqa: E402 - the domain generator
import bench_policy as policy  # noqa: E402 - the household and the list-loaded servers

TARGET_GROWTH_MB = 5.0
LIST_SIZE = 100_000
ACTION_EVERY = 30.0  # seconds between a household's actions


def query_file(tmp: Path, listed: list[str], count: int) -> Path:
    """``count`` lines cycling: a cached name, a name never asked before, a listed name."""
    hits = dns.hit_names()
    rng = random.Random(5)

    def lines():  # type: ignore[no-untyped-def]
        for i in range(count):
            kind = i % 3
            if kind == 0:
                yield hits[i % len(hits)]
            elif kind == 1:
                yield f"soak{i:x}-{rng.getrandbits(24):06x}.{dns.ZONE} A"
            else:
                yield f"{listed[i % len(listed)]} A"

    return dns.write_file(tmp / "soak.txt", lines())


def serve_directory(root: Path) -> http.server.HTTPServer:
    """A plain HTTP server for ``root`` on loopback (a port the OS picks), in a thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((dns.HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def household_actions(config: Path, proc: subprocess.Popen[bytes], stop: threading.Event, log: list[str]) -> None:
    """What parents and operators do, every ACTION_EVERY seconds, until ``stop``."""
    cli = [str(dns.GUARDIAN)]
    round_ = 0
    while not stop.wait(ACTION_EVERY):
        round_ += 1
        steps = [
            ["pause", f"Kids{round_ % policy.PROFILES}", "--for", "1m"],
            ["allow", f"allow-soak-{round_}.example", "--profile", "Kids1", "--for", "1m"],
            ["resume", f"Kids{round_ % policy.PROFILES}"],
        ]
        for step in steps:
            done = subprocess.run([*cli, *step, "--config", str(config)], capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                log.append(f"{' '.join(step)}: {done.stderr.strip()}")
        proc.send_signal(signal.SIGHUP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--qps", type=int, default=1000, help="queries per second to each server")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between memory samples")
    args = parser.parse_args()
    seconds = args.minutes * 60
    procs = dns.Processes()
    with tempfile.TemporaryDirectory(prefix="guardian-soak-") as tmpdir:
        tmp = Path(tmpdir)
        web: http.server.HTTPServer | None = None
        try:
            domains = names.generate_domains(LIST_SIZE, seed=3)
            hosts = dns.write_file(tmp / "list.hosts", (f"0.0.0.0 {d}" for d in domains))
            listed = random.Random(4).sample(domains, 20_000)
            queries = query_file(tmp, listed, int(args.qps * seconds * 1.1) + 3)
            upstream = dns.start_upstream(procs, tmp)
            # The list comes by URL from loopback, as a household's lists come from the
            # internet: Guardian starts without it, downloads it a minute in (in its
            # download process) and compiles it (in its compiler process) during the run.
            web = serve_directory(tmp)
            household = policy.household_yaml(hosts).replace(
                f"path: {hosts}", f"url: 'http://{dns.HOST}:{web.server_port}/{hosts.name}'").rstrip("\n")
            household += f"\nlists_allow_private_hosts: ['{dns.HOST}']\n"  # a list server on loopback, listed
            guardian = policy.start_guardian(procs, tmp / "g", upstream.port, household, "Guardian", timeout=300)
            masq = policy.start_dnsmasq_with_list(procs, tmp, upstream.port, domains)
            stop = threading.Event()
            failures: list[str] = []
            actions = threading.Thread(target=household_actions,
                                       args=(tmp / "g" / "guardian.yaml", guardian.proc, stop, failures))
            results: dict[str, dns.PerfResult] = {}

            def load(server: dns.Server) -> None:
                results[server.name] = dns.dnsperf(procs, server, queries, seconds=seconds, qps=args.qps,
                                                   outstanding=200)

            runners = [threading.Thread(target=load, args=(s,)) for s in (guardian, masq)]
            for thread in [*runners, actions]:
                thread.start()
            samples: list[tuple[float, dns.Memory, float]] = []
            started = time.monotonic()
            print(f"{'minute':>7} {'Guardian RSS':>13} {'PSS':>7} {'DNS proc':>9} {'dnsmasq RSS':>12}")
            while any(t.is_alive() for t in runners):
                g_mem, m_mem = dns.memory(guardian.proc.pid), dns.memory(masq.proc.pid)
                at = time.monotonic() - started
                samples.append((at, g_mem, m_mem.tree_rss))
                print(f"{at / 60:>7.1f} {g_mem.tree_rss:>13.1f} {g_mem.tree_pss:>7.1f} {g_mem.rss:>9.1f} "
                      f"{m_mem.tree_rss:>12.1f}", flush=True)
                for thread in runners:
                    thread.join(timeout=args.sample / len(runners))
            stop.set()
            actions.join()
            guardian.check_alive()
            listed_now = subprocess.run([str(dns.GUARDIAN), "lists", "--config", str(tmp / "g" / "guardian.yaml")],
                                        capture_output=True, text=True, timeout=60).stdout
            list_note = next((line.strip() for line in listed_now.splitlines() if "Bench 1M" in line),
                             "not compiled")
        finally:
            procs.end_all()
            if web is not None:
                web.shutdown()

    half = [s for s in samples if s[0] >= seconds / 2]
    if len(half) < 2:
        print("run too short for a second-half comparison")
        return 1
    growth = half[-1][1].tree_pss - half[0][1].tree_pss
    dns_growth = half[-1][1].rss - half[0][1].rss
    masq_growth = half[-1][2] - half[0][2]
    print(f"\nResults ({args.minutes:g} min at {args.qps:,} q/s each; a household action round every "
          f"{ACTION_EVERY:g} s: SIGHUP, pause, allow, resume)\n")
    for name in ("Guardian", "dnsmasq"):
        r = results[name]
        print(f"{name:9} sent {r.sent:,}, answered {r.completed:,} ({r.lost_pct:.2f}% lost), {r.rcodes}")
    ok = "ok" if growth < TARGET_GROWTH_MB else "MISSED"
    print(f"Guardian PSS growth over the second half: {growth:+.1f} MB (DNS process RSS {dns_growth:+.1f} MB)"
          f"   target < {TARGET_GROWTH_MB:g} MB  {ok}")
    print(f"dnsmasq RSS growth over the second half: {masq_growth:+.1f} MB")
    if failures:
        print(f"household actions that failed ({len(failures)}): {failures[:3]}")
    print(f"the list by URL: {list_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
