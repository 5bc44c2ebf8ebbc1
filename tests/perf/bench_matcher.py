"""Benchmark: the compiled matcher with a million domains, beside a Python set and dnsmasq.

    .venv/bin/python tests/perf/bench_matcher.py [--domains 1000000] [--lookups 200000]

Generates distinct random domains (seeded), writes them as a hosts list in a temporary
directory, then measures, each in a fresh subprocess so one measurement cannot inflate
another: compile time and peak RSS, snapshot size, start time (interpreter + import +
load), RSS added by loading and by serving lookups, lookup latency for 4-label names
(half hits, half misses); the same for a Python set of strings; and dnsmasq's RSS
holding the same names. Only loopback and the temporary directory are touched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DNSMASQ = "/usr/sbin/dnsmasq"

# Roughly the make-up of public blocklists: mostly .com, many ad/tracker subdomains.
TLDS = [
    ("com", 45),
    ("net", 10),
    ("org", 5),
    ("info", 4),
    ("ru", 4),
    ("de", 3),
    ("xyz", 4),
    ("top", 4),
    ("io", 3),
    ("co.uk", 2),
    ("com.br", 2),
    ("online", 2),
    ("site", 2),
    ("club", 2),
    ("pl", 2),
    ("fr", 2),
    ("cn", 2),
    ("in", 2),
]
SUBS = ["www", "ads", "ad", "cdn", "m", "static", "track", "tracking", "api", "img", "pixel", "stats", "t", "go"]
SYLLABLES = (
    "ad bet bit box buy cam cash chat click cloud code date deal dot fast film fun game go hot hub "
    "info lab land line link live love max media mega net news pay pix play porn pro sex shop site "
    "smart snap soft spin star stream sun tech top track tube up vid view web win world zone"
).split()
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _label(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.55:  # dictionary-like: "hotcashzone", "play-tube24"
        words = [rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))]
        label = ("-" if rng.random() < 0.15 else "").join(words)
        if rng.random() < 0.3:
            label += str(rng.randint(0, 999))
        return label
    # random-looking, as generated tracker and malware names are
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(5, 16)))


def generate_domains(count: int, seed: int) -> list[str]:
    """``count`` distinct, realistic-looking names (2 to 4 labels, about 20 characters)."""
    rng = random.Random(seed)
    tlds = [t for t, _ in TLDS]
    weights = [w for _, w in TLDS]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        name = _label(rng) + "." + rng.choices(tlds, weights)[0]
        roll = rng.random()
        if roll < 0.35:
            name = rng.choice(SUBS) + "." + name
        elif roll < 0.45:
            name = _label(rng) + "." + name
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def make_queries(domains: list[str], count: int, seed: int) -> list[str]:
    """4-label names: half under a listed domain (hits), half not in the list (misses)."""
    rng = random.Random(seed + 1)
    listed = set(domains)
    queries: list[str] = []
    while len(queries) < count:
        if len(queries) % 2 == 0:
            base = rng.choice(domains)
            while base.count(".") < 3:
                base = rng.choice(SUBS) + "." + base
            queries.append(base)
        else:
            name = f"{rng.choice(SUBS)}.{_label(rng)}.{_label(rng)}.{rng.choice(['com', 'net', 'org', 'de'])}"
            labels = name.split(".")
            if not any(".".join(labels[i:]) in listed for i in range(len(labels))):
                queries.append(name)
    return queries


# --- children: each measurement runs in a fresh interpreter --------------------------


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def timed_lookups(call: Callable[[str], object], queries: list[str]) -> dict[str, float]:
    """Per-call latency in ns (timer overhead measured and reported separately)."""
    pc = time.perf_counter_ns
    for q in queries:  # warm up: fault the pages in, fill caches
        call(q)
    samples = []
    for q in queries:
        t0 = pc()
        call(q)
        samples.append(pc() - t0)
    overhead = []
    for _ in queries[:20000]:
        t0 = pc()
        overhead.append(pc() - t0)
    hits = samples[0::2]
    misses = samples[1::2]
    t0 = pc()
    for q in queries:
        call(q)
    batch = (pc() - t0) / len(queries)
    samples.sort()
    return {
        "median": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99)],
        "median_hit": statistics.median(hits),
        "median_miss": statistics.median(misses),
        "mean_batch": batch,
        "timer": statistics.median(overhead),
    }


def child_compile(hosts: str, root: str) -> None:
    import resource

    sys.path.insert(0, str(REPO))
    from guardian.lists.compile import compile_snapshot
    from guardian.policy.matcher import ListFile, ListSource

    before = rss_kb()
    t0 = time.perf_counter()
    snap = compile_snapshot([ListSource(1, "bench", "ads", "deny", ListFile(Path(hosts), "hosts"))], root)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    size = sum(p.stat().st_size for p in snap.iterdir())
    print(json.dumps({"seconds": seconds, "peak_kb": peak, "base_kb": before, "size": size}))


def child_load(root: str, queries_file: str) -> None:
    sys.path.insert(0, str(REPO))
    import marisa_trie  # noqa: F401 - imported before the baseline so it is not counted

    from guardian.policy.matcher import Matcher, decide_hits

    queries = Path(queries_file).read_text().split()
    before = rss_kb()
    t0 = time.perf_counter()
    matcher = Matcher.load(root)
    load_s = time.perf_counter() - t0
    after_load = rss_kb()
    for q in queries:  # fault in every page the queries reach, before timing allocates
        matcher.lookup(q)
    after_lookups = rss_kb()
    hits = sum(1 for q in queries if decide_hits(matcher.lookup(q), {1}))
    timing = timed_lookups(matcher.lookup, queries)
    print(
        json.dumps(
            {
                "load_s": load_s,
                "added_load_kb": after_load - before,
                "added_serving_kb": after_lookups - before,
                "hits": hits,
                "timing": timing,
            }
        )
    )


def child_set(domains_file: str, queries_file: str) -> None:
    queries = Path(queries_file).read_text().split()
    before = rss_kb()
    t0 = time.perf_counter()
    names: set[str] = set()
    with open(domains_file) as handle:
        for line in handle:
            names.add(line.rstrip("\n"))
    load_s = time.perf_counter() - t0
    after_load = rss_kb()

    def lookup(name: str) -> bool:
        # the same suffix walk as the matcher: the name, then each parent
        if name in names:
            return True
        dot = name.find(".")
        while dot >= 0:
            if name[dot + 1 :] in names:
                return True
            dot = name.find(".", dot + 1)
        return False

    for q in queries:
        lookup(q)
    after_lookups = rss_kb()
    hits = sum(1 for q in queries if lookup(q))
    timing = timed_lookups(lookup, queries)
    print(
        json.dumps(
            {
                "load_s": load_s,
                "added_load_kb": after_load - before,
                "added_serving_kb": after_lookups - before,
                "hits": hits,
                "timing": timing,
            }
        )
    )


# --- dnsmasq -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dns_query(port: int, name: str, timeout: float = 0.5) -> bytes | None:
    """A bare A query to 127.0.0.1:port; the raw answer or None."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, ("127.0.0.1", port))
            return s.recv(4096)
        except OSError:
            return None


def process_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def dnsmasq_rss(tmp: Path, args: list[str], probe: str | None, timeout: float = 300.0) -> tuple[int, float]:
    """Start dnsmasq with ``args``, wait until it answers ``probe`` with 0.0.0.0; (RSS KiB, seconds)."""
    port = free_port()
    cmd = [
        DNSMASQ,
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--pid-file=",
        "--cache-size=0",
        *args,
    ]
    if os.geteuid() == 0:
        cmd.append("--user=root")  # stay able to read the temp files
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not answer in time")
            answer = dns_query(port, probe or "probe.invalid")
            # A loaded rule answers NOERROR with 0.0.0.0 (00 00 00 00 at the end).
            if answer is not None and (probe is None or answer.endswith(b"\x00\x04\x00\x00\x00\x00")):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        time.sleep(0.5)  # let it settle after the first answer
        return process_rss_kb(proc.pid), seconds
    finally:
        proc.send_signal(signal.SIGTERM)  # our own child, by PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the parent ----------------------------------------------------------------------


def run_child(*args: str) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout), wall


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def us(ns: float) -> str:
    return f"{ns / 1000:.2f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-dnsmasq", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="guardian-bench-"))
    try:
        t0 = time.perf_counter()
        domains = generate_domains(args.domains, args.seed)
        queries = make_queries(domains, args.lookups, args.seed)
        hosts = tmp / "list.hosts"
        with open(hosts, "w") as out:
            out.write("# generated by tests/perf/bench_matcher.py\n")
            for name in domains:
                out.write(f"0.0.0.0 {name}\n")
        (tmp / "domains.txt").write_text("\n".join(domains) + "\n")
        (tmp / "queries.txt").write_text("\n".join(queries) + "\n")
        if not args.no_dnsmasq:
            with open(tmp / "dnsmasq.conf", "w") as out:
                for name in domains:
                    out.write(f"address=/{name}/0.0.0.0\n")
            (tmp / "empty.conf").write_text("")
        probe = domains[-1]
        del domains
        print(f"generated {args.domains:,} domains and {len(queries):,} queries in {time.perf_counter() - t0:.1f} s")
        print(
            f"hosts list: {hosts.stat().st_size / 1e6:.1f} MB; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )

        comp, _ = run_child("--child", "compile", str(hosts), str(tmp / "snap"))
        load, start_wall = run_child("--child", "load", str(tmp / "snap"), str(tmp / "queries.txt"))
        base, _ = run_child("--child", "set", str(tmp / "domains.txt"), str(tmp / "queries.txt"))
        # start time: a fresh interpreter importing the matcher and loading the snapshot
        starts = []
        for _ in range(5):
            t1 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from guardian.policy.matcher import Matcher; Matcher.load(sys.argv[1])",
                    str(tmp / "snap"),
                ],
                check=True,
                cwd=REPO,
            )
            starts.append(time.perf_counter() - t1)
        bare = []
        for _ in range(5):
            t1 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t1)

        dns: dict[str, tuple[int, float]] = {}
        if not args.no_dnsmasq and Path(DNSMASQ).exists():
            dns["empty"] = dnsmasq_rss(tmp, [f"--conf-file={tmp / 'empty.conf'}"], None)
            dns["address"] = dnsmasq_rss(tmp, [f"--conf-file={tmp / 'dnsmasq.conf'}"], probe)
            dns["addn-hosts"] = dnsmasq_rss(tmp, [f"--conf-file={tmp / 'empty.conf'}", f"--addn-hosts={hosts}"], probe)

        lt, bt = load["timing"], base["timing"]
        rows = [
            ("compile time", f"{comp['seconds']:.1f} s", "< 30 s", f"(set build {base['load_s']:.1f} s)"),
            ("compile peak RSS (whole process)", mb(float(comp["peak_kb"])), "< 300 MB", ""),
            ("snapshot size on disk", f"{int(comp['size']) / 1e6:.1f} MB", "", ""),
            ("Matcher.load()", f"{float(load['load_s']) * 1000:.2f} ms", "", ""),
            (
                "start: python + import + load",
                f"{statistics.median(starts) * 1000:.0f} ms",
                "< 2 s",
                f"(bare python {statistics.median(bare) * 1000:.0f} ms)",
            ),
        ]
        added_load = float(load["added_load_kb"])
        added_serving = float(load["added_serving_kb"])
        set_added = float(base["added_serving_kb"])
        rows += [
            ("RSS added by load", mb(added_load), "", ""),
            (
                "RSS added, serving lookups",
                mb(added_serving),
                "<= 20 MB",
                f"set: {mb(set_added)} ({set_added / max(added_serving, 1):.1f}x)",
            ),
            (
                "lookup median (4 labels)",
                us(lt["median"]),
                "< 5 µs",
                f"set: {us(bt['median'])} ({lt['median'] / bt['median']:.1f}x set)",
            ),
            ("lookup p99", us(lt["p99"]), "", f"set: {us(bt['p99'])}"),
            (
                "lookup median hit / miss",
                f"{us(lt['median_hit'])} / {us(lt['median_miss'])}",
                "",
                f"set: {us(bt['median_hit'])} / {us(bt['median_miss'])}",
            ),
            ("lookup mean, tight loop", us(lt["mean_batch"]), "", f"set: {us(bt['mean_batch'])}"),
            ("timer overhead in each sample", us(lt["timer"]), "", ""),
            ("hits among queries", f"{load['hits']:,} of {len(queries):,}", "", f"set: {base['hits']:,}"),
        ]
        if dns:
            empty_rss = dns["empty"][0]
            for mode in ("address", "addn-hosts"):
                rss, secs = dns[mode]
                label = "address=/name/0.0.0.0" if mode == "address" else "--addn-hosts (hosts file)"
                rows.append(
                    (
                        f"dnsmasq RSS, {label}",
                        mb(rss),
                        "",
                        f"added {mb(rss - empty_rss)} ({(rss - empty_rss) / max(added_serving, 1):.0f}x matcher), ready in {secs:.1f} s",
                    )
                )
            rows.append(("dnsmasq RSS, empty config", mb(empty_rss), "", ""))
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        print()
        print(f"{'measure':<{width}}  {'matcher':>{vwidth}}  {'target':<9} comparison")
        print("-" * (width + vwidth + 40))
        for name, value, target, note in rows:
            print(f"{name:<{width}}  {value:>{vwidth}}  {target:<9} {note}")
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        {"compile": child_compile, "load": child_load, "set": child_set}[kind](*rest)
    else:
        main()
