"""Retention by age, the size cap, and a stricter privacy mode applied to what is stored."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from test_store_support import PARIS, T0, blocked, rec, sql, write

from guardian.config import StoreSettings
from guardian.store.retention import Retention

DAY = 86_400


def test_age_limits_per_kind_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    now = T0 + 100 * DAY
    old = [rec(now - 8 * DAY + i, f"old{i}.example", category="games") for i in range(1200)]
    recent = [rec(now - 6 * DAY + i, f"new{i}.example", category="games") for i in range(300)]
    ancient_risk = [blocked(now - 95 * DAY)]
    write(path, ancient_risk + old + recent + [blocked(now - DAY)])
    retention = Retention(path, StoreSettings(query_days=7, event_days=90, usage_days=90), PARIS, chunk=250)
    commits: list[int] = []
    event.listen(retention.engine, "commit", lambda conn: commits.append(1))
    report = retention.run_once(now)
    assert report.queries == 1201  # the 95-day-old blocked query is older than 7 days too
    assert len(commits) >= 1201 // 250  # chunks, each its own short transaction
    assert sql(path, "SELECT count(*) FROM queries") == [(301,)]
    assert sql(path, "SELECT min(time) FROM queries")[0][0] >= now - 7 * DAY
    assert report.events == 1
    assert sql(path, "SELECT count(*) FROM risk_events") == [(1,)]
    # Counts and usage are kept for usage_days: the 8-day-old hours are still there, the 95-day-old not.
    assert sql(path, "SELECT sum(count) FROM hourly") == [(1501,)]
    assert sql(path, "SELECT count(*) FROM blocked_hourly") == [(1,)]
    assert report.hourly == 2
    assert sql(path, "SELECT count(*) FROM usage_hourly WHERE day < '2026-01-01'") == [(0,)]
    assert sql(path, "SELECT count(*) FROM usage_hourly") != [(0,)]
    assert retention.run_once(now).queries == 0
    retention.close()


def test_zero_days_means_no_age_limit(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    write(path, [rec(T0)])
    Retention(path, StoreSettings(query_days=0, event_days=0, usage_days=0), PARIS).run_once(T0 + 1000 * DAY)
    assert sql(path, "SELECT count(*) FROM queries") == [(1,)]


def test_size_cap_removes_the_oldest_log_rows_first_and_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    write(path, [rec(T0 + i, f"host{i}.some-long-domain-name.example", category="games") for i in range(40_000)],
          queue_size=50_000)
    retention = Retention(path, StoreSettings(query_days=0, event_days=0, usage_days=0), PARIS, max_bytes=0)
    used = retention.used_bytes()
    file_before = path.stat().st_size
    cap = used // 2
    retention.max_bytes = cap
    report = retention.run_once(T0 + 50_000)
    assert report.capped > 0
    assert retention.used_bytes() <= cap
    left = sql(path, "SELECT count(*), min(time), max(time) FROM queries")[0]
    assert 0 < left[0] < 40_000
    assert left[1] == T0 + 40_000 - left[0] and left[2] == T0 + 39_999  # the newest are kept
    assert sql(path, "SELECT sum(count) FROM hourly") == [(40_000,)]  # counts survive the log
    assert sql(path, "PRAGMA wal_checkpoint(TRUNCATE)")[0][0] == 0
    assert path.stat().st_size < file_before
    assert path.stat().st_size <= cap + 64 * 1024
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    retention.close()


def test_switching_to_anonymous_erases_per_device_detail(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    write(path, [rec(T0 + i, f"d{i}.example", category="games") for i in range(30)]
          + [blocked(T0 + 40, device="Alex's phone", client="192.168.1.21")])
    before = sql(path, "SELECT hour, category_id, action_id, sum(count) FROM hourly GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    Retention(path, StoreSettings(), PARIS, privacy_mode="anonymous").run_once(T0 + 100)
    assert sql(path, "SELECT count(*) FROM queries WHERE client_id IS NOT NULL") == [(0,)]
    assert sql(path, "SELECT count(*) FROM queries") == [(31,)]
    assert sql(path, "SELECT DISTINCT client_id FROM hourly") == [(0,)]
    assert sql(path, "SELECT hour, category_id, action_id, sum(count) FROM hourly GROUP BY 1, 2, 3 ORDER BY 1, 2, 3") \
        == before
    assert sql(path, "SELECT count(*) FROM clients") == [(0,)]
    assert sql(path, "SELECT device, client FROM risk_events") == [(None, None)]


def test_switching_to_anonymous_erases_the_stored_device_registry(tmp_path: Path) -> None:
    from guardian.store.db import make_engine
    from guardian.store.devices import save_rows

    path = tmp_path / "guardian.db"
    write(path, [rec(T0)])
    engine = make_engine(path)
    save_rows(engine, [(None, {"mac": "b8:27:eb:12:34:56", "hostname": "kids-pi", "first_seen": T0, "last_seen": T0},
                        {"192.168.1.30": T0})])
    engine.dispose()
    assert sql(path, "SELECT count(*) FROM devices") == [(1,)]
    Retention(path, StoreSettings(), PARIS, privacy_mode="anonymous").run_once(T0 + 100)
    assert sql(path, "SELECT count(*) FROM devices") == [(0,)]
    assert sql(path, "SELECT count(*) FROM device_addresses") == [(0,)]


def test_switching_to_risks_only_keeps_only_risky_log_rows(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    write(path, [rec(T0 + i, f"d{i}.example") for i in range(30)]
          + [blocked(T0 + 40), rec(T0 + 41, "dns.google", action="refused", reason="bypass", category="bypass")])
    Retention(path, StoreSettings(), PARIS, privacy_mode="risks-only").run_once(T0 + 100)
    names = sql(path, "SELECT d.name FROM queries q JOIN domains d ON d.id = q.domain_id ORDER BY q.time")
    assert names == [("bet.example",), ("dns.google",)]
    assert sql(path, "SELECT sum(count) FROM hourly") == [(32,)]


def test_pruned_domains_are_forgotten_by_a_running_writer(tmp_path: Path) -> None:
    import asyncio

    from guardian.store import Recorder

    path = tmp_path / "guardian.db"

    async def main() -> None:
        r = Recorder(path, StoreSettings(flush_seconds=60), zone=PARIS)
        await r.start()
        r.record(rec(T0, "kept.example"))
        r.record(rec(T0, "gone.example"))
        await r.flush()
        retention = Retention(path, StoreSettings(query_days=1), PARIS)
        report = await asyncio.to_thread(retention.run_once, T0 + 2 * DAY)
        assert (report.queries, report.domains) == (2, 2)
        r.record(rec(T0 + 2 * DAY, "gone.example"))  # the writer had its id cached
        await r.stop()
        retention.close()

    asyncio.run(main())
    assert sql(path, "SELECT d.name FROM queries q JOIN domains d ON d.id = q.domain_id") == [("gone.example",)]
