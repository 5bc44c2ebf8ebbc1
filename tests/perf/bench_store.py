"""Store benchmark (not collected by pytest): logging rate, writer CPU, bytes written, dashboard reads.

    .venv/bin/python tests/perf/bench_store.py [--seconds 30] [--rate 2000] [--rows 10000000] [--dir DIR] [--reuse]

``--seconds 0`` skips part 1; ``--reuse`` keeps part 2's file under
/tmp/guardian-bench-store-ROWS/ between runs (the one bench_mix.py uses), migrating and
backfilling an older one first.

1. Sustained logging: synthetic records fed to a real Recorder at ``--rate`` per second for
   ``--seconds``, then as fast as the loop can make them; prints the committed rate, drops,
   the writer thread's and the whole process's CPU share, and the bytes written per million
   queries (growth of guardian.db + WAL, and /proc/self/io write_bytes).
2. Dashboard questions on ``--rows`` synthetic query-log rows spread over 30 days (made by
   SQL in big transactions, the hourly rollups built from them, then the daily ones by the
   store's own backfill, as the writer's open does for an older file): each question's
   time, first call and median of five, the 24-hour ones and the 7- and 30-day ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guardian.config import PrivacySettings, StoreSettings  # noqa: E402
from guardian.store import QueryRecord, Recorder  # noqa: E402
from guardian.store.db import DB_NAME, backfill, migrate, open_database  # noqa: E402
from guardian.store.queries import StoreReader  # noqa: E402
from guardian.web.history import History  # noqa: E402

ZONE = ZoneInfo("Europe/Paris")
CATEGORIES = ["games", "social", "video", "news", "shopping", "education", "ads", "tracking"]
THREATS = ["gambling", "adult", "malware", "phishing", "drugs", "violence"]
SERVICES = ["youtube", "tiktok", "roblox", "netflix", "instagram", "minecraft"]


def io_write_bytes() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


class Synth:
    """Plausible household traffic: 12 devices, 4 profiles, skewed domains, ~8% blocked."""

    def __init__(self, seed: int = 1) -> None:
        self.rnd = random.Random(seed)
        self.devices = [(f"192.168.1.{10 + i}", f"Device {i}", f"aa:bb:cc:00:00:{i:02x}", f"Profile{i % 4}")
                        for i in range(12)]
        self.domains = [f"host{i}.domain{i % 997}.example" for i in range(20_000)]

    def make(self, now: float, n: int) -> list[QueryRecord]:
        rnd, out = self.rnd, []
        for _ in range(n):
            ip, dev, mac, prof = self.devices[int(rnd.random() ** 2 * 12)]
            name = self.domains[int(rnd.random() ** 3 * 20_000)]
            r = rnd.random()
            if r < 0.08:
                threat = THREATS[int(rnd.random() * 6)]
                out.append(QueryRecord(now, ip, dev, mac, prof, name, 1, "blocked", 3, "policy", "category",
                                       threat, None, "packs", name, None, threat, "high", 0.1))
            else:
                cat = CATEGORIES[int(rnd.random() * 8)] if r < 0.6 else None
                svc = SERVICES[int(rnd.random() * 6)] if r < 0.2 else None
                out.append(QueryRecord(now, ip, dev, mac, prof, name, 1 if r < 0.7 else 28, "allowed", 0,
                                       "cache" if r < 0.5 else "upstream", "", cat, svc, duration_ms=3.0))
        return out


async def feed(path: Path, seconds: float, rate: float | None, flush: float) -> dict[str, float]:
    """Record for ``seconds`` at ``rate``/s (None: as fast as possible); measures the run."""
    synth = Synth()
    r = Recorder(path, StoreSettings(flush_seconds=flush, queue_size=50_000), PrivacySettings(), ZONE)
    await r.start()
    written0, cpu_w0 = r.writer.written, r.writer.cpu_seconds
    disk0, io0, cpu0, t0 = disk_bytes(path), io_write_bytes(), time.process_time(), time.perf_counter()
    made = 0
    if rate:
        tick = 0.01
        per_tick = rate * tick
        while (now := time.perf_counter()) - t0 < seconds:
            due = int((now - t0) * rate) - made + int(per_tick)
            for rec in synth.make(time.time(), max(0, due)):
                r.record(rec)
            made += max(0, due)
            await asyncio.sleep(tick)
    else:
        # As fast as the writer takes them: top the queue up whenever there is room.
        batch = synth.make(time.time(), 2000)
        while time.perf_counter() - t0 < seconds:
            if r.health()["queued"] + len(batch) <= r.queue_size:
                for rec in batch:
                    r.record(rec)
                made += len(batch)
            await asyncio.sleep(0.001)
    fed = time.perf_counter() - t0
    await r.stop()
    wall = time.perf_counter() - t0
    written = r.writer.written - written0
    disk = disk_bytes(path) - disk0
    io = io_write_bytes() - io0 if io0 >= 0 else -1
    return {"offered": made, "written": written, "dropped": r.dropped, "wall": wall,
            "rate": written / fed, "per_cpu": written / max(r.writer.cpu_seconds - cpu_w0, 1e-9), "writer_cpu": (r.writer.cpu_seconds - cpu_w0) / wall,
            "process_cpu": (time.process_time() - cpu0) / wall, "disk_per_m": disk / max(written, 1) * 1e6,
            "io_per_m": io / max(written, 1) * 1e6 if io >= 0 else -1, "commits": r.writer.commits}


def report_feed(title: str, m: dict[str, float]) -> None:
    print(f"{title}: offered {m['offered']:,.0f}, committed {m['written']:,.0f} in {m['wall']:.1f} s "
          f"= {m['rate']:,.0f} queries/s over the feeding time, dropped {m['dropped']:,.0f}, commits {m['commits']:.0f}")
    print(f"  writer capacity: {m['per_cpu']:,.0f} records per CPU-second of the writer thread")
    print(f"  CPU share: writer thread {m['writer_cpu'] * 100:.1f}% of one core, whole process "
          f"{m['process_cpu'] * 100:.1f}% (feeder included)")
    io = f"{m['io_per_m'] / 1e6:,.0f} MB" if m["io_per_m"] >= 0 else "n/a"
    print(f"  written per million queries: DB+WAL growth {m['disk_per_m'] / 1e6:,.0f} MB, "
          f"/proc/self/io write_bytes {io}")


def build(path: Path, rows: int, now: float) -> float:
    """``rows`` query-log rows over the 30 days before ``now``, and their rollups. Seconds taken."""
    t0 = time.perf_counter()
    db = open_database(path)
    db.close()
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    labels = ["allowed", "blocked", "refused", "cache", "upstream", "policy", "category", *CATEGORIES, *THREATS,
              *SERVICES, "Profile0", "Profile1", "Profile2", "Profile3", "high"]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO labels (id, text) VALUES (?, ?)", list(enumerate(labels, 1)))
    conn.executemany("INSERT INTO domains (id, name) VALUES (?, ?)",
                     [(i, f"host{i}.domain{i % 997}.example") for i in range(1, 50_001)])
    conn.executemany("INSERT INTO clients (id, ip, mac, device, first_seen) VALUES (?, ?, ?, ?, ?)",
                     [(i, f"192.168.1.{10 + i}", "", f"Device {i}", now - 40 * 86400) for i in range(1, 21)])
    conn.execute("COMMIT")
    lid = {t: i for i, t in enumerate(labels, 1)}
    cat0 = lid[CATEGORIES[0]]
    step = 30 * 86_400 / rows
    start = now - 30 * 86_400
    chunk = 1_000_000
    for base in range(0, rows, chunk):
        n = min(chunk, rows - base)
        conn.execute("BEGIN")
        # Mostly allowed; ~8% blocked with a threat category; domains skewed to low ids.
        conn.execute(f"""
            INSERT INTO queries (time, client_id, profile_id, domain_id, qtype, action_id, rcode, source_id,
                                 reason_id, category_id, service_id, threat_id, severity_id, duration_ms)
            WITH RECURSIVE c(x) AS (SELECT {base} UNION ALL SELECT x + 1 FROM c LIMIT {n}),
                 r(x, a, b, d) AS (SELECT x, abs(random()) % 100, abs(random()) % 20 + 1,
                                   abs(random()) % (abs(random()) % 50000 + 1) + 1 FROM c)
            SELECT {start} + x * {step}, b, {lid['Profile0']} + b % 4, d, 1,
                   CASE WHEN a < 8 THEN {lid['blocked']} ELSE {lid['allowed']} END,
                   CASE WHEN a < 8 THEN 3 ELSE 0 END,
                   CASE WHEN a < 8 THEN {lid['policy']} WHEN a < 50 THEN {lid['cache']} ELSE {lid['upstream']} END,
                   CASE WHEN a < 8 THEN {lid['category']} END,
                   CASE WHEN a < 8 THEN {lid[THREATS[0]]} + d % {len(THREATS)}
                        WHEN a < 60 THEN {cat0} + d % {len(CATEGORIES)} END,
                   CASE WHEN a BETWEEN 8 AND 19 THEN {lid[SERVICES[0]]} + d % {len(SERVICES)} END,
                   CASE WHEN a < 8 THEN {lid[THREATS[0]]} + d % {len(THREATS)} END,
                   CASE WHEN a < 8 THEN {lid['high']} END, 2.5
            FROM r""")
        conn.execute("COMMIT")
        print(f"  {base + n:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    conn.execute("BEGIN")
    conn.execute("""INSERT INTO hourly (hour, client_id, profile_id, category_id, service_id, action_id, count)
        SELECT CAST(time / 3600 AS INTEGER) * 3600, client_id, profile_id, coalesce(category_id, 0),
               coalesce(service_id, 0), action_id, count(*) FROM queries GROUP BY 1, 2, 3, 4, 5, 6""")
    conn.execute(f"""INSERT INTO blocked_hourly (hour, domain_id, client_id, profile_id, count)
        SELECT CAST(time / 3600 AS INTEGER) * 3600, domain_id, client_id, profile_id, count(*) FROM queries
        WHERE action_id = {lid['blocked']} GROUP BY 1, 2, 3, 4""")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    t1 = time.perf_counter()
    backfill(path, ZONE)
    print(f"  daily rollups backfilled in {time.perf_counter() - t1:.1f} s", flush=True)
    return time.perf_counter() - t0


def time_questions(path: Path, now: float) -> None:
    reader = StoreReader.open(path, ZONE)
    history = History(path.parent)
    day = now - 86_400
    week = datetime.fromtimestamp(now, ZONE).date() - timedelta(days=7)
    questions = {
        "last 24 h per hour": lambda: reader.last_24h(now),
        "top blocked domains (24 h)": lambda: reader.top_blocked(day, now),
        "per device (24 h)": lambda: reader.per_device(day, now),
        "per category (24 h)": lambda: reader.per_category(day, now),
        "per service (24 h)": lambda: reader.per_category(day, now, column="service_id"),
        "per device (7 days)": lambda: reader.per_device(now - 7 * 86_400, now),
        "top blocked domains (30 days)": lambda: reader.top_blocked(now - 30 * 86_400, now),
        "per device (30 days)": lambda: reader.per_device(now - 30 * 86_400, now),
        "per category (7 days)": lambda: reader.per_category(now - 7 * 86_400, now),
        "per category (30 days)": lambda: reader.per_category(now - 30 * 86_400, now),
        "per service (30 days)": lambda: reader.per_category(now - 30 * 86_400, now, column="service_id"),
        "per profile (30 days)": lambda: reader.per_profile(now - 30 * 86_400, now),
        "top blocked domains (7 days)": lambda: reader.top_blocked(now - 7 * 86_400, now),
        "weekly digest (last week)": lambda: reader.weekly_digest("Profile1", week),
        "per day and category (7 days)": lambda: reader.daily(week, 7, profile="Profile1"),
        "dashboard's week (History.week)": lambda: history.week(now - 7 * 86_400, now),
        "risk events (24 h)": lambda: reader.events(day),
        "a device's last 100 queries (raw log)": lambda: reader._rows(
            "SELECT q.time, d.name FROM queries q JOIN domains d ON d.id = q.domain_id"
            " WHERE q.client_id = 3 AND q.time < ? ORDER BY q.time DESC LIMIT 100", (now,)),
    }
    for name, ask in questions.items():
        t = time.perf_counter()
        ask()
        first = time.perf_counter() - t
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            ask()
            runs.append(time.perf_counter() - t)
        print(f"  {name:<40} first {first * 1000:7.1f} ms   median {statistics.median(runs) * 1000:7.1f} ms")
    reader.close()


def kept_file(rows: int) -> tuple[Path, float]:
    """The synthetic file kept under /tmp/guardian-bench-store-ROWS/ (built once; an older
    one migrated and backfilled, as the writer's open would) and the ``now`` it was built for."""
    directory = Path(f"/tmp/guardian-bench-store-{rows}")
    path = directory / DB_NAME
    stamp = directory / "built-at"
    if not stamp.exists():
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        now = time.time()
        print(f"  building {rows:,} synthetic query-log rows in {path} (kept for later runs)")
        build(path, rows, now)
        stamp.write_text(repr(now))
    else:
        t = time.perf_counter()
        migrate(path)
        if backfill(path, ZONE):
            print(f"  {path}: migrated, daily rollups backfilled in {time.perf_counter() - t:.1f} s")
    return path, float(stamp.read_text())


def questions_on_kept_file(rows: int) -> None:
    path, now = kept_file(rows)
    print(f"2. dashboard questions on {rows:,} query-log rows (30 days), {path}")
    time_questions(path, now)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--flush", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the 10M-row file in /tmp/guardian-bench-store-ROWS")
    args = ap.parse_args()
    if args.seconds == 0 and args.reuse:
        questions_on_kept_file(args.rows)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"1. logging ({args.seconds:.0f} s each, flush every {args.flush} s)")
        report_feed(f"  at {args.rate:,.0f}/s", asyncio.run(feed(base / "a" / DB_NAME, args.seconds, args.rate,
                                                                    args.flush)))
        report_feed("  at max rate", asyncio.run(feed(base / "b" / DB_NAME, min(args.seconds, 15), None,
                                                      args.flush)))
        if args.rows and args.reuse:
            questions_on_kept_file(args.rows)
        elif args.rows:
            now = time.time()
            path = base / "c" / DB_NAME
            print(f"2. dashboard questions on {args.rows:,} query-log rows (30 days)")
            took = build(path, args.rows, now)
            print(f"  built in {took:.0f} s; file {path.stat().st_size / 1e6:,.0f} MB")
            time_questions(path, now)


if __name__ == "__main__":
    main()
