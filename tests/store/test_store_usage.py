"""Usage minutes: the gap rule, local midnight, DST days, and the stored hourly rows."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_store_support import PARIS, rec, sql, write

from guardian.usage import UsageMeter

UTC = ZoneInfo("UTC")


def at(text: str, zone: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.mark.parametrize(("times", "minutes"), [
    (["10:00"], 1),
    (["10:00", "10:00:50"], 1),
    (["10:00", "10:04"], 5),  # a gap shorter than 5 minutes: one session 10:00..10:04
    (["10:00", "10:05"], 2),  # 5 minutes is not shorter than session_gap
    (["10:00", "10:20"], 2),
    (["10:00", "10:03", "10:06", "10:09"], 10),
    (["10:00", "10:04", "10:30", "10:31"], 7),
])
def test_gap_rule(times: list[str], minutes: int) -> None:
    meter = UsageMeter(session_gap=5)
    for t in times:
        meter.observe("Child", "games", at(f"2025-11-28T{t}"), PARIS)
    assert meter.minutes("Child", "games", date(2025, 11, 28)) == minutes


def test_targets_and_profiles_are_separate_and_devices_share() -> None:
    meter = UsageMeter()
    t = at("2025-11-28T10:00")
    assert meter.observe("Child", "games", t, PARIS) == (int(t // 60),)
    assert meter.observe("Child", "games", t + 10, PARIS) == ()  # another device of the profile, same minute
    meter.observe("Child", "tiktok", t, PARIS)
    meter.observe("Teen", "games", t, PARIS)
    assert meter.day_totals(date(2025, 11, 28)) == {("Child", "games"): 1, ("Child", "tiktok"): 1,
                                                   ("Teen", "games"): 1}


def test_local_midnight_resets_and_splits_a_session() -> None:
    meter = UsageMeter()
    meter.observe("Child", "games", at("2025-11-28T23:58"), PARIS)
    meter.observe("Child", "games", at("2025-11-29T00:02"), PARIS)
    assert meter.minutes("Child", "games", date(2025, 11, 28)) == 2  # 23:58, 23:59
    assert meter.minutes("Child", "games", date(2025, 11, 29)) == 3  # 00:00..00:02
    # The same instants fall on one UTC day (22:58..23:02 UTC): the zone decides.
    utc = UsageMeter()
    utc.observe("Child", "games", at("2025-11-28T23:58", PARIS), UTC)
    utc.observe("Child", "games", at("2025-11-29T00:02", PARIS), UTC)
    assert utc.minutes("Child", "games", date(2025, 11, 28)) == 5


@pytest.mark.parametrize(("day", "hours"), [(date(2025, 3, 30), 23), (date(2025, 10, 26), 25)])
def test_dst_days_count_real_minutes(day: date, hours: int) -> None:
    meter = UsageMeter()
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS).timestamp()
    t = start
    while t < start + 26 * 3600:
        meter.observe("Child", "video", t, PARIS)
        t += 120  # every 2 minutes: one unbroken session
    assert meter.minutes("Child", "video", day) == hours * 60


def test_slot_is_local_day_and_hour_even_for_half_hour_zones() -> None:
    meter = UsageMeter()
    india = ZoneInfo("Asia/Kolkata")
    minute = int(at("2025-11-28T23:59", india) // 60)
    assert meter.slot(minute, india) == (date(2025, 11, 28), 23)
    assert meter.slot(minute + 1, india) == (date(2025, 11, 29), 0)


def test_store_persists_hourly_usage(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    records = [rec(at("2025-11-28T10:58"), "game.example", category="games", service="roblox"),
               rec(at("2025-11-28T11:02"), "game.example", category="games", service="roblox"),
               rec(at("2025-11-28T11:03"), "game.example", category="games", action="blocked", reason="budget"),
               rec(at("2025-11-28T11:30"), "x.example", category="games", profile=None)]
    write(path, records)
    assert sql(path, "SELECT day, hour, profile, target, minutes FROM usage_hourly ORDER BY target, hour") == [
        ("2025-11-28", 10, "Child", "games", 2), ("2025-11-28", 11, "Child", "games", 3),
        ("2025-11-28", 10, "Child", "roblox", 2), ("2025-11-28", 11, "Child", "roblox", 3)]
