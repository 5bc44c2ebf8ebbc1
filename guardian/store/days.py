"""Local days as runs of UTC-aligned hours, for the daily rollups (pure; stdlib only).

The ``hourly`` rollup counts per UTC-aligned hour (``hour`` = epoch second of its start).
The daily rollups (``daily``, ``blocked_daily``) are exact sums of those hours per local
day of the household's zone: an hour belongs to the local day its start falls in, so day
D holds the hours ``[day_start(D), day_start(D + 1))`` — 24 of them, 23 or 25 across a
DST change, and for a zone with a half-hour offset the hour that straddles midnight goes
to the day it starts in. A day is stored under ``day_start(D)``, the epoch second of its
first hour, so a reader can split any run of hours into whole days (from the daily rows)
and the hours left at either end (from the hourly rows, added or subtracted), and get the
very sums the hourly rows alone would give. The dashboard's process imports this too (no
SQLAlchemy here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR = 3600
ZONE_KEY = "daily_zone"  # settings row: the zone the daily rollups are kept in (absent: not built)


@lru_cache(maxsize=4096)
def day_start(day: date, zone: ZoneInfo) -> int:
    """Epoch second of the first UTC-aligned hour starting at or after local midnight of ``day``."""
    midnight = datetime.combine(day, time(0), zone).timestamp()
    return math.ceil(midnight / HOUR) * HOUR


@lru_cache(maxsize=8192)
def day_of_hour(hour: int, zone: ZoneInfo) -> date:
    """The local day the hour starting at epoch second ``hour`` belongs to (see the module docstring)."""
    day = datetime.fromtimestamp(hour, zone).date()
    if hour < day_start(day, zone):  # a half-hour zone's hour that starts before midnight
        day -= timedelta(days=1)
    elif hour >= day_start(day + timedelta(days=1), zone):
        day += timedelta(days=1)
    return day


def day_key(hour: int, zone: ZoneInfo) -> int:
    """The ``day`` column for the hour starting at ``hour``: its local day's first hour."""
    return day_start(day_of_hour(hour, zone), zone)


@dataclass(frozen=True, slots=True)
class Split:
    """Hours ``[start, end)`` as whole days plus signed hour ranges.

    The sum over the hours equals the sum of the daily rows with ``day`` in
    ``[days_from, days_to)`` plus, for each ``(sign, lo, hi)`` in ``hours``, ``sign`` times
    the hourly rows with ``hour`` in ``[lo, hi)``.
    """

    days_from: int
    days_to: int
    hours: tuple[tuple[int, int, int], ...]


def split(start: int, end: int, zone: ZoneInfo, data_from: int | None = None, data_to: int | None = None) -> Split:
    """Split the hours ``[start, end)`` (multiples of an hour) into days and hour ranges.

    A day cut by ``start`` or ``end`` is read from the cheaper side: its hours inside the
    range added, or the whole day taken and its hours outside subtracted. ``data_from`` /
    ``data_to`` (the first hour with data, one past the last) tell which hours cost
    nothing: today's hours still to come, for one, so today is read from its daily rows.
    """
    if end <= start:
        return Split(start, start, ())
    lo_data = start if data_from is None else data_from
    hi_data = end if data_to is None else data_to

    def cost(lo: int, hi: int) -> int:  # hours with data in [lo, hi)
        return max(0, min(hi, hi_data) - max(lo, lo_data))

    first = day_of_hour(start, zone)
    last = day_of_hour(end - HOUR, zone)
    first_start, first_end = day_start(first, zone), day_start(first + timedelta(days=1), zone)
    last_start, last_end = day_start(last, zone), day_start(last + timedelta(days=1), zone)
    hours: list[tuple[int, int, int]] = []
    if first == last:
        if start == first_start and end == first_end:
            return Split(first_start, first_end, ())
        inside = cost(start, end)
        outside = cost(first_start, start) + cost(end, first_end)
        if inside <= outside:
            return Split(first_start, first_start, ((1, start, end),) if inside else ())
        hours = [(-1, lo, hi) for lo, hi in ((first_start, start), (end, first_end)) if cost(lo, hi)]
        return Split(first_start, first_end, tuple(hours))
    days_from, days_to = first_end, last_start
    if start > first_start:
        if cost(start, first_end) <= cost(first_start, start):
            if cost(start, first_end):
                hours.append((1, start, first_end))
        else:
            days_from = first_start
            if cost(first_start, start):
                hours.append((-1, first_start, start))
    else:
        days_from = first_start
    if end < last_end:
        if cost(last_start, end) <= cost(end, last_end):
            if cost(last_start, end):
                hours.append((1, last_start, end))
        else:
            days_to = last_end
            if cost(end, last_end):
                hours.append((-1, end, last_end))
    else:
        days_to = last_end
    return Split(days_from, max(days_from, days_to), tuple(hours))


def floor_hour(epoch: float) -> int:
    return int(epoch // HOUR) * HOUR


def ceil_hour(epoch: float) -> int:
    """One past the last hour whose start is before ``epoch`` (the hourly rows' ``hour < until``)."""
    return math.ceil(epoch / HOUR) * HOUR


# The daily rollups: each one's hourly source and the key columns it keeps (besides day and count).
ROLLUPS = {
    "daily": ("hourly", ("client_id", "profile_id", "category_id", "action_id")),
    "daily_services": ("hourly", ("client_id", "profile_id", "service_id", "action_id")),
    "blocked_daily": ("blocked_hourly", ("domain_id", "profile_id")),
}

Execute = Callable[[str, tuple[Any, ...]], list[Any]]


def built_zone(execute: Execute) -> ZoneInfo | None:
    """The zone the daily rollups are kept in, or None while they are not built (older file,
    first open not done yet, or a zone change the writer has not caught up with)."""
    if not execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'", ()):
        return None  # a file from before the daily rollups
    rows = execute("SELECT value FROM settings WHERE key = ?", (ZONE_KEY,))
    if not rows:
        return None
    try:
        return _zone(str(rows[0][0]))
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def grouped(execute: Execute, rollup: str, start: int, end: int, keys: str, sums: str,
            sum_params: tuple[Any, ...] = (), where: str = "", params: tuple[Any, ...] = ()) -> tuple[str, tuple[Any, ...]]:
    """SQL of ``keys, <sums>`` grouped by ``keys`` over the hours ``[start, end)`` of
    ``rollup``'s hourly source, read mostly from ``rollup`` itself, with the very sums the
    hourly rows alone give.

    ``sums`` are ``sum(...) AS name`` terms written with ``{n}`` for the row's count (the
    first one counts rows: a group it leaves at zero is dropped, as the hourly rows would
    not list it); ``sum_params`` are their parameters. ``where`` (`` AND ...`` on key
    columns) and ``params`` filter every part. Run the result in the same read
    transaction as ``execute``'s probes. Each part is grouped on its own (a rollup keyed
    by its group columns streams without a sort) and the parts are then added up.
    """
    table = ROLLUPS[rollup][0]
    zone = built_zone(execute) if end > start else None
    parts: list[tuple[str, int, int, int]] = []  # (table, sign, lo, hi)
    if zone is None:
        parts.append((table, 1, start, end))
    else:
        # Two statements: SQLite answers a lone min() or max() from the index, not both at once.
        lo = execute(f"SELECT min(hour) FROM {table}", ())[0][0]
        hi = execute(f"SELECT max(hour) FROM {table}", ())[0][0]
        if lo is not None and hi is not None:
            cut = split(start, end, zone, int(lo), int(hi) + HOUR)
            if cut.days_to > cut.days_from:
                parts.append((rollup, 1, cut.days_from, cut.days_to))
            parts += [(table, sign, a, b) for sign, a, b in cut.hours]
    names = [term.rsplit(" AS ", 1)[1].strip() for term in _terms(sums)]
    if not parts:
        empty = ", ".join(f"0 AS {name}" for name in names)
        return f"SELECT {keys}, {empty} FROM {table} WHERE 0", ()
    arms: list[str] = []
    values: list[Any] = []
    for name, sign, a, b in parts:
        column = "hour" if name == table else "day"
        arms.append(f"SELECT {keys}, {sums.format(n='count' if sign > 0 else '-count')} FROM {name}"
                    f" WHERE {column} >= ? AND {column} < ?{where} GROUP BY {keys}")
        values += [*sum_params, a, b, *params]
    totals = ", ".join(f"sum({name}) AS {name}" for name in names)
    return (f"SELECT {keys}, {totals} FROM ({' UNION ALL '.join(arms)}) GROUP BY {keys} HAVING sum({names[0]}) > 0",
            tuple(values))


def _terms(sums: str) -> list[str]:
    """``sums`` split at its top-level commas."""
    out, depth, current = [], 0, ""
    for ch in sums:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [*out, current]
