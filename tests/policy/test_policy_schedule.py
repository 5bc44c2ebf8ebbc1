"""Schedule windows: weekdays, across midnight, DST spring-forward and fall-back in Paris."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from guardian.policy.schedule import Schedule, parse_clock, wall_to_epoch

PARIS = ZoneInfo("Europe/Paris")


def paris(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, fold: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=PARIS, fold=fold).timestamp()


def utc(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


BEDTIME = Schedule("Bedtime", ("sun", "mon", "tue", "wed", "thu"), "21:00", "07:00")
HOMEWORK = Schedule("Homework", ("mon", "tue", "wed", "thu", "fri"), "16:00", "18:00", ("games", "social"))
DAY = Schedule("All day", ("sat",), "00:00", "00:00")
# 2024-03-24 is a Sunday; the 31st is the spring-forward Sunday (02:00 -> 03:00),
# 2024-10-27 the fall-back Sunday (03:00 CEST -> 02:00 CET).


@pytest.mark.parametrize(
    ("schedule", "when", "active"),
    [
        (BEDTIME, paris(2024, 3, 24, 20, 59, 59), False),
        (BEDTIME, paris(2024, 3, 24, 21, 0), True),  # Sunday evening
        (BEDTIME, paris(2024, 3, 25, 6, 59, 59), True),  # Sunday's window, Monday morning
        (BEDTIME, paris(2024, 3, 25, 7, 0), False),
        (BEDTIME, paris(2024, 3, 29, 6, 0), True),  # Thursday's window into Friday
        (BEDTIME, paris(2024, 3, 29, 22, 0), False),  # Friday is not a bedtime day
        (BEDTIME, paris(2024, 3, 30, 6, 0), False),  # so Saturday morning is free
        (BEDTIME, paris(2024, 3, 24, 6, 0), False),  # Saturday had no window
        (HOMEWORK, paris(2024, 3, 27, 16, 30), True),
        (HOMEWORK, paris(2024, 3, 27, 18, 0), False),
        (HOMEWORK, paris(2024, 3, 30, 16, 30), False),  # Saturday
        (DAY, paris(2024, 3, 30, 0, 0), True),  # equal from/to: the whole day
        (DAY, paris(2024, 3, 30, 23, 59), True),
        (DAY, paris(2024, 3, 31, 0, 0), False),
        (DAY, paris(2024, 3, 29, 23, 59), False),
    ],
)
def test_active(schedule: Schedule, when: float, active: bool) -> None:
    assert schedule.active(when, PARIS) is active


@pytest.mark.parametrize(
    ("schedule", "when", "expected"),
    [
        (BEDTIME, paris(2024, 3, 24, 22, 0), paris(2024, 3, 25, 7, 0)),
        (BEDTIME, paris(2024, 3, 25, 7, 0), paris(2024, 3, 25, 21, 0)),
        (BEDTIME, paris(2024, 3, 29, 8, 0), paris(2024, 3, 31, 21, 0)),  # Fri -> Sun (after the DST change)
        (HOMEWORK, paris(2024, 3, 29, 18, 0), paris(2024, 4, 1, 16, 0)),  # Fri evening -> Mon
        # windows on consecutive days merge: no boundary at Sunday midnight
        (Schedule("Weekend", ("sat", "sun"), "00:00", "00:00"), paris(2024, 3, 30, 12, 0), paris(2024, 4, 1, 0, 0)),
    ],
)
def test_next_change(schedule: Schedule, when: float, expected: float) -> None:
    assert schedule.next_change(when, PARIS) == expected


def test_no_days_never_changes() -> None:
    never = Schedule("Never", (), "10:00", "11:00")
    assert never.active(paris(2024, 3, 27, 10, 30), PARIS) is False
    assert never.next_change(paris(2024, 3, 27, 10, 30), PARIS) is None


def test_spring_forward_window_starting_in_the_gap_starts_at_the_first_existing_instant() -> None:
    early = Schedule("Early", ("sun",), "02:30", "04:00")
    transition = utc(2024, 3, 31, 1, 0)  # 02:00 CET becomes 03:00 CEST
    assert wall_to_epoch(datetime(2024, 3, 31).date(), parse_clock("02:30"), PARIS) == transition
    assert early.active(transition - 1, PARIS) is False
    assert early.active(transition, PARIS) is True
    assert early.next_change(transition - 3600, PARIS) == transition
    assert early.next_change(transition, PARIS) == paris(2024, 3, 31, 4, 0) == utc(2024, 3, 31, 2, 0)


def test_spring_forward_night_window_is_an_hour_shorter() -> None:
    night = Schedule("Night", ("sat",), "21:00", "07:00")
    start = paris(2024, 3, 30, 21, 0)
    end = night.next_change(start, PARIS)
    assert end == utc(2024, 3, 31, 5, 0)  # 07:00 CEST
    assert end is not None and end - start == 9 * 3600
    assert night.active(end - 1, PARIS) and not night.active(end, PARIS)


def test_window_wholly_inside_the_gap_never_starts() -> None:
    ghost = Schedule("Ghost", ("sun",), "02:10", "02:50")
    assert not any(ghost.active(utc(2024, 3, 31, 0, 0) + m * 60, PARIS) for m in range(180))


def test_fall_back_night_window_is_an_hour_longer() -> None:
    night = Schedule("Night", ("sat",), "21:00", "07:00")
    start = paris(2024, 10, 26, 21, 0)
    end = night.next_change(start, PARIS)
    assert end == utc(2024, 10, 27, 6, 0)  # 07:00 CET
    assert end is not None and end - start == 11 * 3600


def test_fall_back_repeated_hour_uses_the_first_occurrence() -> None:
    window = Schedule("Repeat", ("sun",), "02:30", "03:30")
    first_0230 = utc(2024, 10, 27, 0, 30)  # 02:30 CEST
    assert window.active(first_0230 - 1, PARIS) is False
    assert window.active(first_0230, PARIS) is True
    assert window.active(utc(2024, 10, 27, 1, 45), PARIS) is True  # 02:45 CET, the second time round
    assert window.next_change(first_0230, PARIS) == utc(2024, 10, 27, 2, 30)  # 03:30 CET


@pytest.mark.parametrize("bad", ["7", "25:00", "10:60", "ab:cd"])
def test_bad_clock(bad: str) -> None:
    with pytest.raises(ValueError):
        Schedule("Bad", ("mon",), bad, "10:00")


def test_bad_day() -> None:
    with pytest.raises(ValueError, match="unknown day"):
        Schedule("Bad", ("monday",), "09:00", "10:00")
