"""The recorder: batching, a bounded queue that never blocks DNS, privacy modes, disk trouble."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from test_store_support import PARIS, T0, blocked, rec, sql, write

from guardian.config import StoreSettings
from guardian.store import Recorder


def test_5000_records_take_a_handful_of_commits(tmp_path: Path) -> None:
    async def main() -> tuple[int, Recorder]:
        r = Recorder(tmp_path / "guardian.db", StoreSettings(flush_seconds=0.1), zone=PARIS)
        await r.start()
        assert r.writer.db is not None
        commits: list[int] = []
        event.listen(r.writer.db.engine, "commit", lambda conn: commits.append(1))
        for i in range(5000):
            r.record(rec(T0 + i * 0.01, f"d{i % 300}.example"))
            if i % 1000 == 999:
                await asyncio.sleep(0.12)  # a few flush intervals pass while DNS is busy
        await r.stop()
        return len(commits), r

    commits, r = asyncio.run(main())
    path = tmp_path / "guardian.db"
    assert sql(path, "SELECT count(*) FROM queries") == [(5000,)]
    assert 1 <= commits <= 25, commits  # one transaction per flush (~7 here), never one per query
    assert r.writer.commits == commits
    assert sql(path, "SELECT sum(count) FROM hourly") == [(5000,)]
    assert sql(path, "SELECT count(*) FROM domains") == [(300,)]
    assert sql(path, "SELECT count(*) FROM clients") == [(1,)]


def test_full_queue_drops_and_counts_in_constant_time(tmp_path: Path) -> None:
    r = Recorder(tmp_path / "guardian.db", StoreSettings(queue_size=100))
    one = rec()
    for _ in range(1000):
        r.record(one)
    assert r.dropped == 900
    assert r.health()["queued"] == 100
    started = time.perf_counter()
    for _ in range(200_000):
        r.record(one)
    per_call = (time.perf_counter() - started) / 200_000
    assert per_call < 20e-6  # O(1): no I/O, no lock, no growth
    assert r.dropped == 200_900


def test_record_never_waits_for_a_slow_disk(tmp_path: Path) -> None:
    async def main() -> tuple[float, float]:
        r = Recorder(tmp_path / "guardian.db", StoreSettings(flush_seconds=0.1))
        await r.start()
        real = r.writer.process

        def slow(*args: Any) -> None:
            time.sleep(0.6)  # a stalled SD card
            real(*args)

        r.writer.process = slow  # type: ignore[method-assign]
        r.record(rec())
        await asyncio.sleep(0.15)  # a flush is now stuck in the worker thread
        worst_record = worst_tick = 0.0
        for i in range(50):
            t = time.perf_counter()
            r.record(rec(T0 + i))
            worst_record = max(worst_record, time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            worst_tick = max(worst_tick, time.perf_counter() - t)
        r.writer.process = real  # type: ignore[method-assign]
        await r.stop()
        return worst_record, worst_tick

    worst_record, worst_tick = asyncio.run(main())
    assert worst_record < 0.005
    assert worst_tick < 0.1  # the event loop kept running while the disk was stuck
    assert sql(tmp_path / "guardian.db", "SELECT count(*) FROM queries") == [(51,)]


def test_disk_full_keeps_records_retries_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"

    async def main() -> Recorder:
        r = Recorder(path, StoreSettings(flush_seconds=0.05))
        await r.start()
        assert r.writer.db is not None
        engine = r.writer.db.engine
        for i in range(10):
            r.record(rec(T0 + i, f"before{i}.example"))
        await r.flush()
        pages = sql(path, "PRAGMA page_count")[0][0]

        def full(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"

        event.listen(engine, "connect", full)
        engine.dispose()
        for i in range(2000):
            r.record(rec(T0 + 10 + i, f"during{i}.example" + "x" * 60))
        await r.flush()
        await r.flush()
        assert r.writer.write_errors >= 1
        assert "full" in (r.writer.last_error or "")
        assert r.health()["waiting"] == 2000
        r.record(rec(T0 + 3000, "dns.still.works"))
        event.remove(engine, "connect", full)
        engine.dispose()
        await r.stop()
        return r

    r = asyncio.run(main())
    assert sql(path, "SELECT count(*) FROM queries") == [(2011,)]
    assert r.writer.unsaved == 0 and r.dropped == 0
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    events = sql(path, "SELECT kind, threat, message FROM risk_events")
    assert len(events) == 1
    assert events[0][0] == "system" and events[0][1] == "storage" and "full" in events[0][2]


def test_refused_batches_are_bounded_by_queue_size(tmp_path: Path) -> None:
    r = Recorder(tmp_path / "guardian.db", StoreSettings(queue_size=100))
    r.writer.open = lambda: False  # type: ignore[method-assign]  # the disk never comes back
    for round_ in range(5):
        r.writer.process([rec(T0 + round_ * 100 + i) for i in range(60)], [])
    assert r.health()["waiting"] <= 120
    assert r.writer.unsaved >= 180


@pytest.mark.parametrize("mode", ["full", "risks-only", "anonymous"])
def test_privacy_modes(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "guardian.db"
    records = [rec(T0 + i, f"ok{i}.example", category="games") for i in range(20)]
    records += [blocked(T0 + 100 + i) for i in range(5)]
    write(path, records, mode=mode, side=[("new_device", ("11:22:33:44:55:66", "192.168.1.77", "Guest phone"))])
    raw = sql(path, "SELECT client_id FROM queries")
    hourly_clients = {r[0] for r in sql(path, "SELECT client_id FROM hourly")}
    assert sql(path, "SELECT sum(count) FROM hourly") == [(25,)]  # counts are always kept
    assert sql(path, "SELECT sum(count) FROM blocked_hourly") == [(5,)]
    devices = {r[0] for r in sql(path, "SELECT device FROM risk_events")}
    stored_names = {r[0] for r in sql(path, "SELECT d.name FROM queries q JOIN domains d ON d.id = q.domain_id")}
    if mode == "full":
        assert len(raw) == 25 and all(r[0] is not None for r in raw)
        assert devices == {"Sam's tablet", "Guest phone"}
    elif mode == "risks-only":
        assert len(raw) == 5 and stored_names == {"bet.example"}
        assert all(r[0] is not None for r in raw)
    else:
        assert len(raw) == 25 and all(r[0] is None for r in raw)
        assert hourly_clients == {0}
        assert sql(path, "SELECT count(*) FROM clients") == [(0,)]
        assert devices == {None}
        assert sql(path, "SELECT count(*) FROM risk_events WHERE client IS NOT NULL OR examples LIKE '%192.168%'") \
            == [(0,)]
    # Usage and risk events exist in every mode (per profile).
    assert sql(path, "SELECT sum(minutes) FROM usage_hourly WHERE profile = 'Child' AND target = 'games'") == [(1,)]
    assert sql(path, "SELECT count FROM risk_events WHERE kind = 'blocked'") == [(5,)]


def test_lowering_privacy_later_reveals_nothing_unstored(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    write(path, [rec(T0 + i, f"secret{i}.example") for i in range(5)], mode="anonymous")
    write(path, [rec(T0 + 10, "later.example")], mode="full")
    rows = sql(path, "SELECT d.name, q.client_id FROM queries q JOIN domains d ON d.id = q.domain_id ORDER BY q.time")
    assert [r[1] is None for r in rows] == [True] * 5 + [False]


def test_system_and_new_device_events(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    side = [("system_event", ("upstream", "all upstreams are down", "high", T0)),
            ("system_event", ("upstream", "all upstreams are down", "high", T0 + 60)),
            ("new_device", ("11:22:33:44:55:66", "192.168.1.77", None, None, "vendor Apple", T0))]
    write(path, [], side=side)
    rows = sql(path, "SELECT kind, threat, message, count, severity, examples FROM risk_events ORDER BY kind")
    assert rows == [("new-device", None, "vendor Apple", 1, "medium", "192.168.1.77"),
                    ("system", "upstream", "all upstreams are down", 2, "high", "")]


def test_apply_reloaded_settings_switches_privacy_at_once(tmp_path: Path) -> None:
    import dataclasses

    from guardian.config import PrivacySettings, Settings

    path = tmp_path / "guardian.db"

    async def main() -> None:
        r = Recorder(path, StoreSettings(flush_seconds=60), zone=PARIS)
        await r.start()
        r.record(rec(T0, "before.example"))
        await r.flush()
        settings = dataclasses.replace(Settings(data_dir=tmp_path, timezone="Europe/Paris"),
                                       privacy=PrivacySettings(mode="risks-only"),
                                       store=StoreSettings(flush_seconds=0.5, queue_size=100))
        r.apply(settings)
        assert (r.flush_seconds, r.queue_size) == (0.5, 100)
        r.record(rec(T0 + 1, "after.example"))
        r.record(blocked(T0 + 2))
        await r.stop()

    asyncio.run(main())
    names = sql(path, "SELECT d.name FROM queries q JOIN domains d ON d.id = q.domain_id ORDER BY q.time")
    assert names == [("before.example",), ("bet.example",)]
