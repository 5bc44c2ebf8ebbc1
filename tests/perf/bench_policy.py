"""Benchmark: what the family policy costs, per decision and for the whole daemon.

    .venv/bin/python tests/perf/bench_policy.py [--domains 1000000] [--seconds 5] [--quick]

1. ``decide()`` alone: median and p99 microseconds per call with a 1M-domain list
   (generated as bench_matcher.py does, compiled by Guardian's matcher: the very
   snapshot the benchmarked daemon compiled) and 50 devices in 5 profiles, each
   profile with categories, allow/deny domains, two schedules and a budget. Queries
   are 4-label names, half under a listed domain.
2. The daemon under dnsperf on loopback, with bench_dns.py's harness (a dnsmasq fake
   upstream, saturation search along a short -q ladder):
   a. cache hits with filtering off (no household, no list) against filtering on
      (a household whose default profile, the querying client's, has the 1M list on);
   b. a blocked-heavy mix: half the queries cached names, half names in the 1M list
      (100,000 distinct ones, so Guardian's one-second packet reuse rarely applies),
      Guardian against dnsmasq holding the same list as ``address=/domain/`` lines.

Targets (issue 4): decide() median < 20 us; cache-hit throughput drops <= 15% with
filtering on; blocked-heavy mix >= 2x dnsmasq. A missed target prints MISSED; the
exit status stays 0 (a measurement, not a test). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench_dns as dns  # noqa: E402 - the harness: processes, dnsperf, saturation search
import bench_matcher as names  # noqa: E402 - the 1M-domain generator

TARGET_DECIDE_US = 20.0
TARGET_DROP = 0.15
TARGET_BLOCKED_RATIO = 2.0
PROFILES = 5
DEVICES = 50
BLOCKED_DISTINCT = 100_000
ROUNDS = 2  # saturation runs per server for the filtering off/on comparison
CATEGORY = "ads"  # the category the generated list stands for


# -- the household -------------------------------------------------------------------


def household_yaml(list_path: Path) -> str:
    """5 profiles (the default one first, the list's category on in each), 50 devices.

    Bedtime is on every night but yesterday's and tonight's, so it is checked on each
    query but never blocks the run (the normal, allowed path is what is measured).
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Europe/Paris")).weekday()
    week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    nights = ", ".join(day for i, day in enumerate(week) if i not in (today, (today - 1) % 7))
    lines = ["household:", "  default_profile: Kids0", "  profiles:"]
    for p in range(PROFILES):
        lines += [
            f"    - name: Kids{p}",
            f"      categories: [{CATEGORY}, adult, gambling, bypass]",
            "      services: [tiktok]",
            "      safe_search: true",
            "      youtube: strict",
            "      bypass_protection: true",
            f"      deny: [{', '.join(f'deny{p}-{i}.example' for i in range(10))}]",
            f"      allow: [{', '.join(f'allow{p}-{i}.example' for i in range(10))}]",
            "      schedules:",
            f'        - {{name: Bedtime, days: [{nights}], from: "21:00", to: "07:00", block: all}}',
            '        - {name: Homework, days: [mon, tue, wed, thu, fri], from: "16:00", to: "18:00",'
            " block: [games, social]}",
            "      budgets:",
            "        - {target: video, minutes: 90}",
        ]
    lines.append("  devices:")
    for d in range(DEVICES):
        lines.append(f"    - {{name: Device {d}, ip: 10.9.{d // 250}.{d % 250 + 1}, profile: Kids{d % PROFILES}}}")
    lists = f"lists:\n  - {{name: Bench 1M, category: {CATEGORY}, path: {list_path}, format: hosts}}\n"
    return lists + "\n".join(lines) + "\n"


def start_guardian(procs: dns.Processes, tmp: Path, upstream: int, extra: str, name: str,
                   timeout: float) -> dns.Server:
    """Guardian as bench_dns starts it, plus ``extra`` config (lists, household)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = dns.free_port()
    config = tmp / "guardian.yaml"
    config.write_text(
        "dns:\n"
        f'  listen: ["{dns.HOST}:{port}"]\n'
        f'  upstreams: ["udp://{dns.HOST}:{upstream}"]\n'
        "  rate_limit: 0\n"
        "  cache_size: 10000\n"
        f"data_dir: {tmp / 'var'}\n"
        # No rule-pack downloads: the fake upstream answers every name with 192.0.2.1, and
        # benchmarks send nothing beyond loopback.
        "pack_lists: false\n"
        "timezone: Europe/Paris\n"
        "log_level: warning\n" + extra
    )
    log = tmp / "guardian.log"
    server = dns.Server(name, port, procs.start([str(dns.GUARDIAN), "run", "--config", str(config)], log), log)
    dns.wait_answering(server, timeout=timeout)  # the first start compiles the lists
    return server


def start_dnsmasq_with_list(procs: dns.Processes, tmp: Path, upstream: int, domains: list[str]) -> dns.Server:
    config = dns.write_file(tmp / "dnsmasq-list.conf", (f"address=/{d}/" for d in domains))
    port = dns.free_port()
    argv = dns.dnsmasq_argv(port, config, f"--server={dns.HOST}#{upstream}", "--cache-size=10000",
                            "--dns-forward-max=1024")
    log = tmp / "dnsmasq-list.log"
    server = dns.Server("dnsmasq", port, procs.start(argv, log), log, note="1M address=/d/ lines")
    dns.wait_answering(server, timeout=180)
    return server


# -- 1. decide() -----------------------------------------------------------------------


def bench_decide(lists_root: Path, guardian_config: Path, queries: list[str]) -> dict[str, float]:
    from zoneinfo import ZoneInfo

    from guardian.app import household_of
    from guardian.config import load
    from guardian.policy.decide import decide
    from guardian.policy.matcher import Matcher
    from guardian.policy.rulepacks import load_rules
    from guardian.policy.snapshot import MeterBudgets, build_from_rules
    from guardian.usage import UsageMeter

    settings = load(guardian_config)
    rules = load_rules()
    household = household_of(settings, rules)
    zone = ZoneInfo("Europe/Paris")
    t0 = time.perf_counter()
    matcher = Matcher.load(lists_root)
    load_s = time.perf_counter() - t0
    snap = build_from_rules(household, matcher, rules, zone=zone, budgets=MeterBudgets(UsageMeter(), zone))
    now = time.time()
    devices = list(household.devices)
    pairs = [(q, devices[i % len(devices)]) for i, q in enumerate(queries)]
    profiles = {d.name: household.profile_of(d) for d in devices}
    blocked = sum(decide(q, 1, d, profiles[d.name], now, snap).blocked for q, d in pairs[:2000])
    pc = time.perf_counter_ns
    for q, d in pairs:  # warm: fault the snapshot's pages in
        decide(q, 1, d, profiles[d.name], now, snap)
    samples = []
    for q, d in pairs:
        p = profiles[d.name]
        t1 = pc()
        decide(q, 1, d, p, now, snap)
        samples.append(pc() - t1)
    # Blocks decided before the matcher's category check (a pause; the profile's deny
    # list): each also asks the threat lists, so the block carries the name's threat.
    from guardian.policy.household import Override
    from guardian.policy.snapshot import with_override

    paused = snap
    for p in {profiles[d.name].name for d in devices}:
        paused = with_override(paused, Override("pause-profile", p, now + 3600, now - 1))
    denied = [(f"www.deny{i % PROFILES}-{i % 10}.example", devices[i % len(devices)]) for i in range(len(pairs))]
    paths: dict[str, list[int]] = {}
    for label, group, where in (("pause", pairs, paused), ("deny", denied, snap)):
        for q, d in group[:20000]:
            decide(q, 1, d, profiles[d.name], now, where)
        timed = []
        for q, d in group:
            p = profiles[d.name]
            t1 = pc()
            decide(q, 1, d, p, now, where)
            timed.append(pc() - t1)
        paths[label] = sorted(timed)
    overhead = []
    for _ in range(20000):
        t1 = pc()
        overhead.append(pc() - t1)
    timer = statistics.median(overhead)
    samples.sort()
    return {
        "load_s": load_s,
        "lists": float(len(matcher.lists)),
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "median_hit_us": statistics.median(sorted(samples[0::2])) / 1000,
        "timer_us": timer / 1000,
        "blocked_share": blocked / 2000,
        "pause_median_us": statistics.median(paths["pause"]) / 1000,
        "deny_median_us": statistics.median(paths["deny"]) / 1000,
    }


# -- main ---------------------------------------------------------------------------------


def _mix(title: str, path: Path) -> dns.Mix:
    def file(_tmp: Path, _count: float) -> Path:
        return path

    return dns.Mix(title, file, once=False)


def _ok(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def run(args: argparse.Namespace, procs: dns.Processes, tmp: Path) -> None:
    seconds, ladder = (2.0, [50, 200]) if args.quick else (args.seconds, [50, 100, 200])
    started = time.monotonic()
    domains = names.generate_domains(args.domains, seed=7)
    hosts = dns.write_file(tmp / "bench-1m.hosts", (f"0.0.0.0 {d}" for d in domains))
    rng = random.Random(11)
    blocked_names = [("www." + d if rng.random() < 0.5 else d) for d in rng.sample(domains, BLOCKED_DISTINCT)]
    hits = dns.hit_names()
    blocked_lines = []
    for i, name in enumerate(blocked_names):  # alternate: one cached name, one listed name
        blocked_lines += [hits[i % len(hits)], f"{name} A"]
    hits_file = dns.write_file(tmp / "hits.txt", hits)
    blocked_file = dns.write_file(tmp / "blocked-heavy.txt", blocked_lines)
    decide_queries = names.make_queries(domains, args.lookups, seed=7)
    print(f"generated {len(domains):,} domains in {time.monotonic() - started:.0f} s")

    upstream = dns.start_upstream(procs, tmp)
    t0 = time.monotonic()
    on = start_guardian(procs, tmp / "on", upstream.port, household_yaml(hosts), "G-on", timeout=600)
    compile_s = time.monotonic() - t0
    off = start_guardian(procs, tmp / "off", upstream.port, "", "G-off", timeout=120)
    t0 = time.monotonic()
    masq = None if args.decide_only else start_dnsmasq_with_list(procs, tmp, upstream.port, domains)
    masq_s = time.monotonic() - t0
    print(f"Guardian with the list started in {compile_s:.0f} s (compiling), dnsmasq with it in {masq_s:.0f} s")

    d = bench_decide(tmp / "on" / "var" / "lists", tmp / "on" / "guardian.yaml", decide_queries)
    print(f"decide(): {len(decide_queries):,} calls, {int(d['lists'])} lists, median {d['median_us']:.2f} us, "
          f"p99 {d['p99_us']:.2f} us; blocks by a pause {d['pause_median_us']:.2f} us, "
          f"by the deny list {d['deny_median_us']:.2f} us (medians)")
    if args.decide_only:
        return
    assert masq is not None

    for server in (off, on, masq):  # warm the caches: one pass over the cached names
        warm = dns.dnsperf(procs, server, hits_file, once=True)
        if warm.completed != warm.sent:
            raise dns.BenchError(f"{server.name} lost {warm.sent - warm.completed} queries while warming")
    results: dict[str, Any] = {}
    hit_mix, blocked_mix = _mix("cache hits", hits_file), _mix("blocked-heavy", blocked_file)
    # Off and on take turns, twice, and each keeps its best: single saturation runs on
    # this shared VM vary by +-20-30 %, enough to fake or hide a 15 % drop.
    for _ in range(ROUNDS):
        for key, server in (("off", off), ("on", on)):
            run = dns.saturate(procs, server, hit_mix, tmp, seconds, ladder)
            if key not in results or run.qps > results[key].qps:
                results[key] = run
    results["g-blocked"] = dns.saturate(procs, on, blocked_mix, tmp, seconds, ladder)
    results["m-blocked"] = dns.saturate(procs, masq, blocked_mix, tmp, seconds, ladder)
    g_mem = dns.memory(on.proc.pid)  # with the store writer process
    m_rss = dns.memory(masq.proc.pid).tree_rss

    drop = 1 - results["on"].qps / results["off"].qps
    ratio = results["g-blocked"].qps / results["m-blocked"].qps
    print(f"\nResults ({args.domains:,} domains, {seconds:g} s per dnsperf run, loopback, "
          f"{time.monotonic() - started:.0f} s in all)\n")
    print(f"{'measure':46}{'figure':>14}   target")
    print("-" * 80)
    print(f"{'decide() median':46}{d['median_us']:>11.2f} us   < {TARGET_DECIDE_US:g} us  "
          f"{_ok(d['median_us'] < TARGET_DECIDE_US)}")
    print(f"{'decide() p99':46}{d['p99_us']:>11.2f} us")
    print(f"{'decide() median, names under a listed domain':46}{d['median_hit_us']:>11.2f} us")
    print(f"{'matcher load (mmap)':46}{d['load_s'] * 1000:>11.1f} ms")
    print(f"{'cache hits, filtering off (q/s)':46}{results['off'].qps:>14,.0f}   lost {results['off'].lost_pct:.2f}%")
    print(f"{'cache hits, filtering on, 1M list (q/s)':46}{results['on'].qps:>14,.0f}   "
          f"lost {results['on'].lost_pct:.2f}%  {results['on'].rcodes}")
    print(f"{'  drop':46}{drop * 100:>13.1f}%   <= {TARGET_DROP * 100:g}%  {_ok(drop <= TARGET_DROP)}")
    print(f"{'blocked-heavy, Guardian (q/s)':46}{results['g-blocked'].qps:>14,.0f}   "
          f"lost {results['g-blocked'].lost_pct:.2f}%  {results['g-blocked'].rcodes}")
    print(f"{'blocked-heavy, dnsmasq address=/d/ (q/s)':46}{results['m-blocked'].qps:>14,.0f}   "
          f"lost {results['m-blocked'].lost_pct:.2f}%  {results['m-blocked'].rcodes}")
    print(f"{'  ratio':46}{ratio:>13.2f}x   >= {TARGET_BLOCKED_RATIO:g}x  {_ok(ratio >= TARGET_BLOCKED_RATIO)}")
    print(f"{'RSS after the runs (MB): Guardian / dnsmasq':46}{g_mem.tree_rss:>8.0f} / {m_rss:.0f}"
          f"   (Guardian's DNS process {g_mem.rss:.0f}, PSS of both {g_mem.tree_pss:.0f})")
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    print(f"({version.splitlines()[0] if version else 'dnsmasq'}; blocked names are 100,000 distinct list entries "
          "or their www. subdomains, alternating with cached names)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1_000_000, help="list size (default 1,000,000)")
    parser.add_argument("--lookups", type=int, default=200_000, help="decide() calls timed (default 200,000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each dnsperf run (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 s runs and a short -q ladder: a smoke run")
    parser.add_argument("--decide-only", action="store_true", help="only part 1 (decide()), no dnsperf")
    args = parser.parse_args()
    return dns.harness("guardian-bench-policy-", lambda procs, tmp: run(args, procs, tmp))


if __name__ == "__main__":
    sys.exit(main())
