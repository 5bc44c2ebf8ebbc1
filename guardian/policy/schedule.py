"""Weekly schedule windows in the household's time zone, DST-safe.

A window is written in local wall-clock time: ``days`` it starts on, ``start`` and
``end`` as "HH:MM". An ``end`` at or before ``start`` runs into the next day, so a
window ``sun 21:00-07:00`` belongs to Sunday and ends on Monday morning (and an equal
``start`` and ``end`` is a whole day). Wall times are turned into instants with
zoneinfo on the day they happen:

- a time skipped by a spring-forward (02:30 in Paris on the last Sunday of March)
  resolves to the first instant that exists after it (03:00 CEST);
- a time that happens twice in a fall-back (02:30 on the last Sunday of October)
  resolves to its first occurrence (fold=0).

``active`` and ``next_change`` cost a few microseconds (datetime work); the policy
snapshot memoises the result per profile until the next boundary, so a query pays
for them only once per window change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_INDEX = {day: i for i, day in enumerate(DAYS)}

# Windows looked at around ``now``: the day before (a window running past midnight)
# to a week ahead, so every weekly boundary after ``now`` is seen.
_LOOK_BEHIND = 1
_LOOK_AHEAD = 8


def parse_clock(text: str) -> int:
    """Minutes since local midnight of "HH:MM" (0..1440; "24:00" is 1440)."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 1440:
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    return value


def format_clock(minutes: int) -> str:
    """ "HH:MM" of minutes since midnight (inverse of ``parse_clock``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def wall_to_epoch(day: date, minutes: int, zone: ZoneInfo) -> float:
    """Epoch seconds of local wall time ``day`` + ``minutes`` in ``zone``.

    A skipped wall time (DST gap) gives the first instant after the gap; a repeated
    one (DST fold) gives its first occurrence.
    """
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    first = naive.replace(tzinfo=zone).timestamp()  # fold=0: offset before a transition
    if datetime.fromtimestamp(first, zone).replace(tzinfo=None) == naive:
        return first
    # In a gap, fold=0 lands after the gap and fold=1 before it: the transition lies
    # between; find the first whole second whose wall time is past ``naive``.
    lo = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(first)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) < naive:
            lo = mid
        else:
            hi = mid
    return float(hi)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named weekly window: blocks everything (``block="all"``, except ``allow``
    domains) or the listed category/service ids.

    ``start``/``end`` are "HH:MM" local wall-clock times; ``days`` are the days the
    window starts on (mon..sun).
    """

    name: str
    days: tuple[str, ...]
    start: str
    end: str
    block: str | tuple[str, ...] = "all"
    allow: tuple[str, ...] = ()
    _weekdays: frozenset[int] = field(init=False, repr=False, compare=False)
    _start: int = field(init=False, repr=False, compare=False)
    _end: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [d for d in self.days if d not in _DAY_INDEX]
        if unknown:
            raise ValueError(f"schedule {self.name!r}: unknown day(s) {', '.join(unknown)} (mon..sun)")
        start, end = parse_clock(self.start), parse_clock(self.end)
        if end <= start:
            end += 1440  # runs into the next day (equal: a whole day)
        object.__setattr__(self, "_weekdays", frozenset(_DAY_INDEX[d] for d in self.days))
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_end", end)

    @property
    def blocks_all(self) -> bool:
        return self.block == "all"

    def windows(self, now: float, zone: ZoneInfo) -> list[tuple[float, float]]:
        """The window instants (start, end) in epoch seconds from the day before ``now``
        to a week after it, overlapping windows merged, in time order."""
        if not self._weekdays:
            return []
        today = datetime.fromtimestamp(now, zone).date()
        spans: list[tuple[float, float]] = []
        for offset in range(-_LOOK_BEHIND, _LOOK_AHEAD):
            day = today + timedelta(days=offset)
            if day.weekday() not in self._weekdays:
                continue
            begin = wall_to_epoch(day, self._start, zone)
            finish = wall_to_epoch(day, self._end, zone)
            if finish > begin:  # a window wholly inside a DST gap is empty
                spans.append((begin, finish))
        merged: list[tuple[float, float]] = []
        for begin, finish in spans:  # already in start order
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
            else:
                merged.append((begin, finish))
        return merged

    def state(self, now: float, zone: ZoneInfo) -> tuple[bool, float | None]:
        """(active at ``now``, epoch of the next start or end after ``now`` or None)."""
        active = False
        upcoming: float | None = None
        for begin, finish in self.windows(now, zone):
            if begin <= now < finish:
                active = True
            for edge in (begin, finish):
                if edge > now and (upcoming is None or edge < upcoming):
                    upcoming = edge
        return active, upcoming

    def active(self, now: float, zone: ZoneInfo) -> bool:
        """Whether the window is on at ``now`` (epoch seconds)."""
        return self.state(now, zone)[0]

    def next_change(self, now: float, zone: ZoneInfo) -> float | None:
        """Epoch seconds of the next start or end boundary after ``now``; None if the
        schedule has no days (never changes)."""
        return self.state(now, zone)[1]
