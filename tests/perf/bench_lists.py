"""Issue 14's big-list rows alone: what a 1M-name list costs the daemon.

The same servers, mixes and measures as bench_mix.py (its functions), without dnsmasq,
unbound or the store questions:

- the first start with the list (nothing compiled yet): seconds until a name of the list
  is answered blocked, and the peak memory of all Guardian processes meanwhile (RSS
  summed and PSS, sampled every 0.1 s), which is the compile's peak;
- the same after a restart (the compiled snapshot);
- the DNS process RSS with the list (restarted, after lookups) against a Guardian with
  the same household and no list that got the same cache-hit runs; the list Guardian
  also answers the blocked mix (blocked answers never enter the answer cache). Note:
  bench_mix.py's row compares with a Guardian without the household either, so its
  figure holds the household's cost too (about 10 MB of heap).

    .venv/bin/python tests/perf/bench_lists.py [--domains 1000000] [--seconds 10] [--repeat 2]

Only loopback and high ports; nothing leaves the machine. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dns as dns  # noqa: E402 - the harness: processes, dnsperf, memory
import bench_matcher as names  # noqa: E402 - the domain generator
import bench_mix as mix  # noqa: E402 - servers, mixes, first_blocked
import bench_policy as policy  # noqa: E402 - the household


def rss_kinds(pid: int) -> str:
    """RssAnon / RssFile of ``pid`` in MB: the heap, and the files mapped (the snapshot's among them)."""
    status = dict(re.findall(r"^(RssAnon|RssFile):\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M))
    return f"{int(status['RssAnon']) / 1024:.1f} / {int(status['RssFile']) / 1024:.1f}"


def snapshot_rss(pid: int) -> float:
    """MB resident of the compiled snapshot's files (data_dir/lists/snap-*) mapped by ``pid``."""
    total, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            counting = "/lists/snap-" in line
        elif counting and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total / 1024


def run(args: argparse.Namespace, procs: dns.Processes, tmp: Path) -> None:
    t_start = time.monotonic()
    loads = [f"start: {mix.load()}"]
    domains = names.generate_domains(args.domains, seed=7)
    hosts = dns.write_file(tmp / "bench.hosts", (f"0.0.0.0 {d}" for d in domains))
    rng = random.Random(11)
    mixes = mix.Mixes(
        hit=[f"h{i}.{dns.ZONE} {'A' if i % 3 else 'AAAA'}" for i in range(mix.HIT_NAMES)],
        blocked=[f"{'www.' + d if rng.random() < 0.5 else d} A"
                 for d in rng.sample(domains, min(mix.BLOCKED_DISTINCT, len(domains)))],
    )
    probe = domains[len(domains) // 2]
    print(f"{len(domains):,} list names generated in {time.monotonic() - t_start:.0f} s; {mix.load()}")

    upstream = mix.start_upstream(procs, tmp)
    # The same household (5 profiles, 50 devices, the rule packs' categories) without the list.
    household = policy.household_yaml(hosts)
    assert household.startswith("lists:\n")
    bare_cfg, bare_port = mix.guardian_config(tmp / "bare", upstream.port, household.split("\n", 2)[2])
    bare = mix.start_guardian(procs, bare_cfg, bare_port, "G-bare")
    dns.wait_answering(bare, timeout=60)

    cfg, port = mix.guardian_config(tmp / "list", upstream.port, household)
    peak: list[float] = []
    loads.append(f"first start: {mix.load()}")
    g = mix.start_guardian(procs, cfg, port, "Guardian")
    first_start = mix.first_blocked(g, probe, 900, peak)
    compile_peak = list(peak)
    time.sleep(2)
    procs.end(g.proc)
    g = mix.start_guardian(procs, cfg, port, "Guardian")
    restart = mix.first_blocked(g, probe, 300, peak)
    print(f"Guardian: first blocked answer {first_start:.1f} s after the first start (peak RSS "
          f"{compile_peak[0]:.0f} MB, PSS {compile_peak[1]:.0f} MB), {restart:.1f} s after a restart; {mix.load()}")

    time.sleep(2)
    started = {s.name: rss_kinds(s.proc.pid) for s in (bare, g)}
    warm = dns.write_file(tmp / "warm.txt", mixes.hit)
    for server in (bare, g):
        for _ in range(2):
            mix.parallel(procs, server, [warm] * mix.CLIENTS, 60, once=True)
    count = int(args.seconds * 60_000 / mix.CLIENTS)
    for rep in range(args.repeat):
        loads.append(f"repetition {rep + 1}: {mix.load()}")
        for title, shares in (("cache hits", mix.SHARES["cache hits"]), ("blocked", mix.SHARES["blocked"])):
            for server in (bare, g) if title == "cache hits" else (g,):
                files = [mix.mix_file(tmp / f"q{i}.txt", mixes, count, shares, seed=rep * 100 + i)
                         for i in range(mix.CLIENTS)]
                mix.settle(server)
                r = mix.parallel(procs, server, files, args.seconds)
                print(f"  {server.name:8} {title:11} {r.qps:>9,.0f} q/s {r.cpu_us:6.1f} us CPU/answer  "
                      f"lost {r.sent - r.answers}")
    for server in (bare, g):
        mix.settle(server)
    mem = {s.name: dns.memory(s.proc.pid) for s in (bare, g)}
    kinds = {s.name: rss_kinds(s.proc.pid) for s in (bare, g)}
    mapped = snapshot_rss(g.proc.pid)
    loads.append(f"end: {mix.load()}")
    added = mem["Guardian"].rss - mem["G-bare"].rss
    targets = mix.TARGETS

    print(f"\nResults: {args.domains:,}-name list, {args.seconds:g} s per run, {args.repeat} repetition(s), "
          f"{os.cpu_count()} CPUs, {time.monotonic() - t_start:.0f} s in all")
    print("machine load: " + "; ".join(loads) + "\n")
    rows = [
        ("DNS process RSS, same household, no list (MB)", f"{mem['G-bare'].rss:.1f}", ""),
        ("  of it heap / files mapped (RssAnon / RssFile)", kinds["G-bare"], ""),
        ("DNS process RSS, with the list (MB)", f"{mem['Guardian'].rss:.1f}", ""),
        ("  of it heap / files mapped (RssAnon / RssFile)", kinds["Guardian"], ""),
        ("  of it the snapshot's mapped files (MB)", f"{mapped:.1f}", ""),
        ("  added by the list (restart, after lookups)", f"+{added:.1f}",
         f"<= {targets['list rss']:g} MB  {mix.ok(added, targets['list rss'])}"),
        ("first blocked answer, first start (s)", f"{first_start:.1f}",
         f"<= {targets['first blocked']:g} s  {mix.ok(first_start, targets['first blocked'])}"),
        ("  after a restart (s)", f"{restart:.1f}", ""),
        ("peak while compiling, all processes, PSS (MB)", f"{compile_peak[1]:.0f}",
         f"<= {targets['compile peak']:g} MB  {mix.ok(compile_peak[1], targets['compile peak'])}"),
        ("  the same, RSS summed (MB)", f"{compile_peak[0]:.0f}", ""),
        ("all processes with the list, PSS (MB)", f"{mem['Guardian'].tree_pss:.1f}", ""),
    ]
    rows[1:1] = [("  heap / files mapped, 2 s after its start", started["G-bare"], "")]
    rows[4:4] = [("  heap / files mapped, 2 s after the restart", started["Guardian"], "")]
    for label, value, target in rows:
        print(f"{label:48}{value:>10}   {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each dnsperf run (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions of every run (default 2)")
    parser.add_argument("--domains", type=int, default=1_000_000, help="list size (default 1,000,000)")
    args = parser.parse_args()
    return dns.harness("guardian-lists-", lambda procs, tmp: run(args, procs, tmp))


if __name__ == "__main__":
    sys.exit(main())
