"""The daily rollups answer the 7- and 30-day questions exactly as the raw rows do.

Real SQLite files written by a real Recorder (the writer the daemon runs), events over two
weeks across a DST change, answers compared with the same questions asked of the raw
query log (``queries``) and of a copy of the file without the daily rollups (the hourly
rows alone, as before), after a writer restart, a zone change, retention's cut-off, the
size cap, anonymous mode, the backfill of an older file and a crash in the middle of it.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_store_support import blocked, rec, sql, write

from guardian.config import PrivacySettings, Settings, StoreSettings
from guardian.reset import factory_reset
from guardian.store import QueryRecord, Recorder, queries
from guardian.store.days import ceil_hour, day_key, floor_hour
from guardian.store.db import DB_NAME, open_database
from guardian.store.queries import Counts, StoreReader
from guardian.store.retention import Retention
from guardian.web.history import History

PARIS = ZoneInfo("Europe/Paris")  # CEST -> CET on 2025-10-26 at 01:00 UTC (a 25-hour day)
ST_JOHNS = ZoneInfo("America/St_Johns")  # -02:30 -> -03:30 on 2025-11-02: half-hour offset and DST
START = datetime(2025, 10, 19, 9, 17, tzinfo=PARIS).timestamp()
SPAN = 16 * 86_400
ROOT = Path(__file__).resolve().parents[2]

DEVICES = [("192.168.1.20", "Sam's tablet", "aa:bb:cc:dd:ee:01", "Child"),
           ("192.168.1.21", "Alex's phone", "aa:bb:cc:dd:ee:02", "Teen"),
           ("192.168.1.22", None, None, "Child"),  # known only by its address
           ("192.168.1.23", "Living room TV", "aa:bb:cc:dd:ee:04", None)]
CATEGORIES = [None, None, "games", "social", "video", "education"]
SERVICES = [None, None, None, "youtube", "tiktok", "roblox"]
THREATS = ["gambling", "adult", "malware"]


def traffic(seed: int = 7, n: int = 3000, start: float = START, span: float = SPAN) -> list[QueryRecord]:
    """``n`` queries over ``span`` seconds, time-ordered: devices, categories, services, ~15% blocked."""
    rnd = random.Random(seed)
    out = []
    for t in sorted(start + rnd.random() * span for _ in range(n)):
        ip, device, mac, profile = DEVICES[rnd.randrange(len(DEVICES))]
        who: dict[str, Any] = {"client": ip, "device": device, "mac": mac, "profile": profile}
        if rnd.random() < 0.15:
            threat = THREATS[rnd.randrange(3)]
            out.append(blocked(t, f"{threat}{rnd.randrange(12)}.example", category=threat, **who))
        else:
            out.append(rec(t, f"site{rnd.randrange(40)}.example", category=CATEGORIES[rnd.randrange(6)],
                           service=SERVICES[rnd.randrange(6)], **who))
    return out


def ranges(start: float = START, span: float = SPAN) -> Iterator[tuple[float, float]]:
    """Ranges of every shape: within an hour, cut days at both ends, whole days, weeks, all."""
    rnd = random.Random(3)
    for hours in (1, 5, 23, 24, 25, 49, 7 * 24, 7 * 24 + 13, 30 * 24):
        for _ in range(3):
            since = start - 3 * 3600 + rnd.random() * span
            yield since, since + hours * 3600
    yield start - 86_400, start + span + 86_400  # everything
    yield start + span - 7 * 86_400, start + span  # "the last 7 days", ending with the data
    yield start + span - 30 * 86_400, start + span + 600


def local_midnights(zone: ZoneInfo) -> Iterator[float]:
    day = datetime.fromtimestamp(START, zone).date()
    for i in range(17):
        yield datetime.combine(day + timedelta(days=i), datetime.min.time(), zone).timestamp()


# -- the raw rows' answers (the query log itself, same hour rule: every hour starting in the range) --


def raw(path: Path, since: float, until: float, what: str, profile: str | None = None,
        limit: int = 10) -> list[Any]:
    lo, hi = floor_hour(since), ceil_hour(until)
    where, params = "q.time >= ? AND q.time < ?", [lo, hi]
    if profile is not None:
        where += " AND p.text = ?"
        params.append(profile)
    base = (" FROM queries q JOIN labels a ON a.id = q.action_id LEFT JOIN labels p ON p.id = q.profile_id"
            " LEFT JOIN clients c ON c.id = q.client_id LEFT JOIN labels cat ON cat.id = q.category_id"
            " LEFT JOIN labels svc ON svc.id = q.service_id JOIN domains d ON d.id = q.domain_id WHERE " + where)
    counts = "count(*), sum(a.text = 'blocked')"
    if what == "device":
        merged: dict[tuple[Any, Any], list[int]] = {}
        for name, prof, q, b in sql(path, f"SELECT coalesce(nullif(c.device, ''), c.ip), p.text, {counts}{base}"
                                          " GROUP BY q.client_id, q.profile_id", tuple(params)):
            acc = merged.setdefault((name, prof), [0, 0])
            acc[0] += q
            acc[1] += b
        return sorted((Counts(n, q, b, p) for (n, p), (q, b) in merged.items()),
                      key=lambda c: (-c.queries, str(c.key), str(c.profile)))
    if what in ("category", "service", "profile"):
        column = {"category": "cat.text", "service": "svc.text", "profile": "p.text"}[what]
        rows = sql(path, f"SELECT {column}, {counts}{base} GROUP BY {column}", tuple(params))
        return sorted((Counts(k, q, b) for k, q, b in rows), key=lambda c: (-c.queries, c.key is not None, c.key or ""))
    assert what == "blocked"
    rows = sql(path, f"SELECT q.domain_id, d.name, count(*){base} AND a.text = 'blocked' GROUP BY q.domain_id",
               tuple(params))
    top = sorted(rows, key=lambda r: (-r[2], r[0]))[:limit]
    return [Counts(name, n, n) for _id, name, n in sorted(top, key=lambda r: (-r[2], r[1]))]


def answers(reader: StoreReader, since: float, until: float) -> dict[str, Any]:
    return {"device": reader.per_device(since, until), "category": reader.per_category(since, until),
            "service": reader.per_category(since, until, column="service_id"),
            "profile": reader.per_profile(since, until), "blocked": reader.top_blocked(since, until, limit=5),
            "child's categories": reader.per_category(since, until, profile="Child"),
            "child's blocked": reader.top_blocked(since, until, limit=3, profile="Child")}


def raw_answers(path: Path, since: float, until: float) -> dict[str, Any]:
    return {"device": raw(path, since, until, "device"), "category": raw(path, since, until, "category"),
            "service": raw(path, since, until, "service"), "profile": raw(path, since, until, "profile"),
            "blocked": raw(path, since, until, "blocked", limit=5),
            "child's categories": raw(path, since, until, "category", "Child"),
            "child's blocked": raw(path, since, until, "blocked", "Child", limit=3)}


def hourly_only(path: Path) -> Path:
    """A copy of the file whose daily rollups are marked unbuilt: readers use the hourly rows."""
    copy = path.with_name("hourly-only.db")
    src, dst = sqlite3.connect(path), sqlite3.connect(copy)
    try:
        src.backup(dst)
        dst.execute("DELETE FROM settings")
        dst.commit()
    finally:
        src.close()
        dst.close()
    return copy


def daily_sums(path: Path, zone: ZoneInfo) -> tuple[dict[Any, int], dict[Any, int]]:
    """(what ``daily`` should hold, what it holds): the hourly rows summed per local day."""
    want: dict[Any, int] = {}
    for hour, client, profile, category, action, n in sql(
            path, "SELECT hour, client_id, profile_id, category_id, action_id, count FROM hourly"):
        key = (day_key(hour, zone), client, profile, category, action)
        want[key] = want.get(key, 0) + n
    have = {tuple(r[:5]): r[5] for r in sql(path, "SELECT day, client_id, profile_id, category_id, action_id, count"
                                                  " FROM daily")}
    return want, have


def blocked_sums(path: Path, zone: ZoneInfo) -> tuple[dict[Any, int], dict[Any, int]]:
    want: dict[Any, int] = {}
    for hour, domain, profile, n in sql(path, "SELECT hour, domain_id, profile_id, count FROM blocked_hourly"):
        key = (domain, profile, day_key(hour, zone))
        want[key] = want.get(key, 0) + n
    have = {tuple(r[:3]): r[3] for r in sql(path, "SELECT domain_id, profile_id, day, count FROM blocked_daily")}
    return want, have


def totals(path: Path) -> tuple[dict[Any, int], dict[Any, int]]:
    want = dict(sql(path, "SELECT domain_id, sum(count) FROM blocked_hourly GROUP BY domain_id"))
    return want, dict(sql(path, "SELECT domain_id, count FROM blocked_totals"))


def assert_exact(path: Path, zone: ZoneInfo) -> None:
    """The daily rollups are the hourly rows' sums, and every question answers as from the hourly rows."""
    for want, have in (daily_sums(path, zone), blocked_sums(path, zone), totals(path)):
        assert have == want
    assert sql(path, "SELECT value FROM settings WHERE key = 'daily_zone'") == [(zone.key,)]
    reader, before = StoreReader.open(path, zone), StoreReader.open(hourly_only(path), zone)
    try:
        for since, until in ranges():
            assert answers(reader, since, until) == answers(before, since, until), (since, until)
        first = datetime.fromtimestamp(START, zone).date()
        for device in (None, "Sam's tablet", "192.168.1.22"):
            assert reader.daily(first, 17, device=device) == before.daily(first, 17, device=device)
        assert reader.daily(first, 17, profile="Teen", column="service_id") == before.daily(
            first, 17, profile="Teen", column="service_id")
        for week in (first, first + timedelta(days=7), first + timedelta(days=14)):
            assert reader.weekly_digest("Child", week) == before.weekly_digest("Child", week)
    finally:
        reader.close()
        before.close()


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [PARIS, ST_JOHNS], ids=["Europe/Paris", "America/St_Johns"])
def test_rollup_answers_equal_the_raw_rows_across_days_dst_and_a_writer_restart(tmp_path: Path,
                                                                                zone: ZoneInfo) -> None:
    path = tmp_path / DB_NAME
    records = traffic()
    middle = datetime(2025, 10, 26, 14, 40, tzinfo=zone).timestamp()  # the DST day in Paris, mid-hour
    write(path, [r for r in records if r.time < middle], zone=zone)
    # A restart mid-hour: the second writer adds to the same hour's and day's rows.
    write(path, [r for r in records if r.time >= middle], zone=zone)
    assert sql(path, "SELECT count(*) FROM queries") == [(len(records),)]
    assert sql(path, "SELECT count(DISTINCT day) FROM daily") == [(17,)]
    assert_exact(path, zone)
    reader = StoreReader.open(path, zone)
    try:
        for since, until in [*ranges(), *zip(local_midnights(zone), list(local_midnights(zone))[1:], strict=False)]:
            assert answers(reader, since, until) == raw_answers(path, since, until), (since, until)
        # The 25-hour day of the DST change in Paris is one day, all its hours in it.
        if zone is PARIS:
            lo, hi = datetime(2025, 10, 26, tzinfo=PARIS).timestamp(), datetime(2025, 10, 27, tzinfo=PARIS).timestamp()
            assert hi - lo == 25 * 3600
            day = int(day_key(int(lo), PARIS))
            assert sum(n for (n,) in sql(path, "SELECT count FROM daily WHERE day = ?", (day,))) == sum(
                1 for r in records if lo <= r.time < hi)
    finally:
        reader.close()


def test_today_is_read_from_its_daily_rows_and_stays_exact_while_the_writer_adds_to_it(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    now = datetime(2025, 11, 3, 15, 20, tzinfo=PARIS).timestamp()
    records = traffic(n=1500, start=now - 10 * 86_400, span=10 * 86_400 - 60)
    write(path, records[:1000])
    reader = StoreReader.open(path, PARIS)
    try:
        for days in (7, 30):
            assert answers(reader, now - days * 86_400, now) == raw_answers(path, now - days * 86_400, now)
        write(path, records[1000:])  # more of today, by a restarted writer
        for days in (1, 7, 30):
            assert answers(reader, now - days * 86_400, now) == raw_answers(path, now - days * 86_400, now)
    finally:
        reader.close()
    assert_exact(path, PARIS)


def test_a_restart_in_another_zone_rebuilds_the_daily_rollups_in_it(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    records = traffic()
    write(path, records[:2000], zone=PARIS)
    write(path, records[2000:], zone=ST_JOHNS)  # the household moved its clock
    assert_exact(path, ST_JOHNS)


@pytest.mark.parametrize("cutoff_hour", [0, 13], ids=["at-midnight", "mid-day"])
def test_retention_cut_off_keeps_the_daily_rollups_exact(tmp_path: Path, cutoff_hour: int) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic())
    cutoff = datetime(2025, 10, 24, cutoff_hour, 30, tzinfo=PARIS).timestamp()
    now = cutoff + 5 * 86_400
    Retention(path, StoreSettings(query_days=5, usage_days=5), PARIS, chunk=300).run_once(now=now)
    assert sql(path, "SELECT min(hour) FROM hourly")[0][0] >= floor_hour(cutoff)
    assert sql(path, "SELECT min(time) FROM queries")[0][0] >= cutoff
    assert_exact(path, PARIS)
    reader = StoreReader.open(path, PARIS)
    try:
        # The raw rows are complete from the hour after the cut-off on.
        for since, until in ranges():
            since = max(since, ceil_hour(cutoff))
            if since < until:
                assert answers(reader, since, until) == raw_answers(path, since, until), (since, until)
    finally:
        reader.close()


def test_the_size_cap_takes_hours_out_of_the_daily_rollups_too(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic(n=6000))
    retention = Retention(path, StoreSettings(query_days=0, usage_days=0), PARIS)
    used = retention.used_bytes()
    Retention(path, StoreSettings(query_days=0, usage_days=0), PARIS, max_bytes=used // 3).run_once()
    assert sql(path, "SELECT count(*) FROM queries") == [(0,)]  # the log went first, then the oldest hours
    assert sql(path, "SELECT min(hour) FROM hourly")[0][0] > floor_hour(START) + 3600
    assert_exact(path, PARIS)


def test_anonymous_mode_keeps_no_device_in_the_daily_rollups(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    records = traffic()
    write(path, records[:2000])  # written in full mode, with devices
    assert sql(path, "SELECT count(*) FROM daily WHERE client_id != 0")[0][0] > 0
    write(path, records[2000:], mode="anonymous")
    Retention(path, StoreSettings(query_days=0, usage_days=0), PARIS, privacy_mode="anonymous").run_once()
    for table in ("hourly", "daily", "daily_services", "blocked_hourly"):
        assert sql(path, f"SELECT count(*) FROM {table} WHERE client_id != 0") == [(0,)], table
    assert sql(path, "SELECT count(*) FROM clients") == [(0,)]
    assert_exact(path, PARIS)
    reader = StoreReader.open(path, PARIS)
    try:
        devices = reader.per_device(START - 3600, START + SPAN)
        assert {(c.key, c.profile) for c in devices} == {(None, "Child"), (None, "Teen"), (None, None)}
        assert sum(c.queries for c in devices) == len(records)
    finally:
        reader.close()


def older_file(path: Path) -> dict[str, list[Any]]:
    """Turn a written file into what the previous release left (schema v4: no daily rollups);
    returns what it stores, to check nothing is lost."""
    conn = sqlite3.connect(path)
    try:
        for table in ("daily", "daily_services", "blocked_daily", "settings", "blocked_totals"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
    finally:
        conn.close()
    return stored(path)


def stored(path: Path) -> dict[str, list[Any]]:
    return {t: sorted(sql(path, f"SELECT * FROM {t}"), key=repr) for t in (
        "queries", "hourly", "blocked_hourly", "usage_hourly", "risk_events", "clients", "domains", "labels")}


def test_an_older_file_is_migrated_and_backfilled_losing_nothing(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic())
    kept = older_file(path)
    open_database(path, zone=PARIS).close()
    assert sql(path, "PRAGMA user_version") == [(7,)]
    assert (tmp_path / f"{DB_NAME}.v4.bak").exists()
    assert stored(path) == kept
    assert_exact(path, PARIS)
    # And the writer carries on adding to the backfilled days.
    write(path, traffic(seed=8, n=500))
    assert_exact(path, PARIS)


CRASHING_BACKFILL = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from zoneinfo import ZoneInfo
    sys.path.insert(0, sys.argv[3])
    from guardian.store import db, rollup
    real, calls = rollup.day_of_hour, []
    def day_of_hour(hour, zone):
        calls.append(hour)
        if len(calls) == 6:  # five days inserted, the transaction open: the power goes
            os.kill(os.getpid(), signal.SIGKILL)
        return real(hour, zone)
    rollup.day_of_hour = day_of_hour
    db.backfill(Path(sys.argv[1]), ZoneInfo(sys.argv[2]))
""")


def test_a_crash_in_the_middle_of_the_backfill_loses_nothing_and_the_next_start_finishes_it(
        tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic())
    kept = older_file(path)
    from guardian.store.db import migrate
    migrate(path)  # the schema step; the backfill is the part that takes time
    child = subprocess.run([sys.executable, "-c", CRASHING_BACKFILL, str(path), "Europe/Paris", str(ROOT)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    assert sql(path, "SELECT count(*) FROM daily") == [(0,)]  # the five days were never committed
    assert sql(path, "SELECT * FROM settings") == []  # so readers use the hourly rows meanwhile
    assert stored(path) == kept
    reader = StoreReader.open(path, PARIS)
    try:
        for since, until in ranges():
            assert answers(reader, since, until) == raw_answers(path, since, until)
    finally:
        reader.close()
    write(path, traffic(seed=9, n=300))  # the next start of the writer builds them, then adds
    assert_exact(path, PARIS)


def test_the_dashboards_week_reads_the_daily_rollup_with_the_same_answer(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic())
    before = History(tmp_path)
    before.path = hourly_only(path)
    history = History(tmp_path)
    monday = date(2025, 10, 20)
    for zone in (PARIS, ST_JOHNS):
        for week in range(3):
            since = datetime.combine(monday + timedelta(days=7 * week), datetime.min.time(), zone).timestamp()
            for until in (since + 7 * 86_400, since + 3.5 * 86_400 + 1234):
                got = history.week(since, until)
                assert got == before.week(since, until)
                queries = sql(path, "SELECT count(*) FROM queries WHERE time >= ? AND time < ?",
                              (ceil_hour(since), ceil_hour(until)))[0][0]
                assert sum(p["queries"] for p in got.values()) == queries


def test_a_reader_of_a_file_not_yet_migrated_answers_from_the_hourly_rows(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    write(path, traffic(n=800))
    older_file(path)
    reader = StoreReader.open(path, PARIS)
    try:
        since, until = START, START + 7 * 86_400
        assert answers(reader, since, until) == raw_answers(path, since, until)
    finally:
        reader.close()
    assert History(tmp_path).week(START, START + 7 * 86_400)


def test_days_are_the_runs_of_hours_starting_in_them() -> None:
    # The 25-hour day in Paris, and St John's half-hour offset: the hour straddling local
    # midnight belongs to the day it starts in.
    paris = datetime(2025, 10, 26, tzinfo=PARIS).timestamp()
    assert day_key(int(paris), PARIS) == paris
    assert day_key(int(paris) + 24 * 3600, PARIS) == paris  # the 25th hour
    assert day_key(int(paris) + 25 * 3600, PARIS) == paris + 25 * 3600
    midnight = datetime(2025, 11, 5, tzinfo=ST_JOHNS).timestamp()  # 03:30 UTC
    assert day_key(int(midnight) - 1800, ST_JOHNS) == day_key(int(midnight) - 1800 - 12 * 3600, ST_JOHNS)
    assert day_key(int(midnight) + 1800, ST_JOHNS) == midnight + 1800


def test_a_factory_reset_keeping_the_network_erases_the_daily_rollups_too(tmp_path: Path) -> None:
    write(tmp_path / DB_NAME, traffic(n=300))
    assert sql(tmp_path / DB_NAME, "SELECT count(*) FROM blocked_daily")[0][0] > 0
    factory_reset(Settings(data_dir=tmp_path, timezone="Europe/Paris"), keep_network=True)
    for table in ("daily", "daily_services", "blocked_daily", "blocked_totals", "hourly"):
        assert sql(tmp_path / DB_NAME, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_a_zone_change_on_reload_rebuilds_the_daily_rollups_with_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    records = traffic()

    async def main() -> None:
        r = Recorder(path, StoreSettings(), PrivacySettings(), PARIS)
        await r.start()
        for x in records[:1500]:
            r.record(x)
        await r.flush()
        r.apply(Settings(data_dir=tmp_path, timezone="America/St_Johns"))  # a reload, the writer still open
        for x in records[1500:]:
            r.record(x)
        await r.stop()

    asyncio.run(main())
    assert sql(path, "SELECT count(*) FROM queries") == [(len(records),)]
    assert_exact(path, ST_JOHNS)


@pytest.mark.parametrize("probe", [1, 4, 12, 30])
def test_top_blocked_looks_at_the_busiest_domains_first_and_answers_the_same(tmp_path: Path, probe: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Few domains looked at first: the bound (the probe-th busiest total) decides whether
    # they are the answer or every domain of the range is counted; both must answer alike.
    path = tmp_path / DB_NAME
    write(path, traffic())
    monkeypatch.setattr(queries, "TOP_PROBE", probe)
    reader = StoreReader.open(path, PARIS)
    try:
        for since, until in ranges():
            for limit in (1, 3, 10):
                assert reader.top_blocked(since, until, limit) == raw(path, since, until, "blocked", limit=limit)
    finally:
        reader.close()
