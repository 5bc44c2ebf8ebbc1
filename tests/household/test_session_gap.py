"""One source for the session gap: the household in force (household.db once a parent
changed it), read by both usage meters, the DNS side's (budgets) and the query-log
writer's (the usage the dashboard shows). After an import with another gap, and after a
restart on that stored household, the two count the same minutes."""

from __future__ import annotations

import sqlite3
import time
from zoneinfo import ZoneInfo

from guardian.store.records import DB_NAME, QueryRecord
from guardian.usage import local_day

CONFIG = """
data_dir: {var}
timezone: UTC
store:
  flush_seconds: 0.2
household:
  session_gap_minutes: 5
  default_profile: Adult
  profiles:
    - name: Child
      categories: []
    - name: Adult
      categories: []
"""

IMPORTED = CONFIG.split("household:\n", 1)[1].replace("session_gap_minutes: 5", "session_gap_minutes: 30")
IMPORTED = "household:\n" + IMPORTED


def two_visits(start: float) -> list[QueryRecord]:
    """Child on games.example twice, 20 minutes apart (one session with a 30-minute gap)."""
    return [QueryRecord(start + offset, "192.168.1.20", "tablet", None, "Child", "games.example", 1, "allowed", 0,
                        "upstream", category="games") for offset in (0.0, 1200.0)]


def minutes_counted(running, start: float) -> tuple[int, int]:
    """(the DNS meter's minutes, the writer's stored minutes) for the same two visits."""
    daemon = running.daemon
    zone = ZoneInfo("UTC")
    for rec in two_visits(start):  # as the DNS side does for an allowed answer
        daemon.meter.observe("Child", "games", rec.time, zone)
    day = local_day(start, zone)
    dns = daemon.meter.day_totals(day).get(("Child", "games"), 0)

    async def record() -> None:
        for rec in two_visits(start):
            daemon.recorder.record(rec)
        await daemon.recorder.flush()

    running.call(record())
    with sqlite3.connect(running.settings.data_dir / DB_NAME) as conn:
        stored = conn.execute("SELECT coalesce(sum(minutes), 0) FROM usage_hourly WHERE profile = 'Child' AND "
                              "target = 'games' AND day = ?", (day.isoformat(),)).fetchone()[0]
    return dns, stored


def test_both_meters_count_with_the_imported_session_gap(make_guardian, upstream, tmp_path):
    config = CONFIG.format(var=tmp_path / "var")
    today = int(time.time() // 86400) * 86400  # UTC midnight: both visits on one day
    first = make_guardian([upstream.url], config)
    first.daemon.household.import_(IMPORTED)
    assert first.daemon.household.household.session_gap_minutes == 30
    assert minutes_counted(first, today + 3600) == (21, 21)  # 20 bridged minutes and the last one
    first.stop()
    again = make_guardian([upstream.url], config)  # the stored household (a parent's import) wins
    assert again.daemon.household.household.session_gap_minutes == 30
    assert minutes_counted(again, today + 3 * 3600) == (42, 42)  # restarted: today's usage read back, then 21 more
