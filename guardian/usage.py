"""Estimated active minutes per (profile, category-or-service), from DNS activity alone.

One implementation, fed per query: the policy engine keeps one in memory for budgets,
the store keeps one to persist hourly usage rows — the same numbers either way.

The estimate:
- a minute counts when any device of the profile queries the target in it;
- a session goes on across gaps shorter than ``session_gap`` minutes, because devices
  cache DNS answers and keep using a service without asking again: queries at 10:00 and
  10:04 count 10:00..10:04 (5 minutes); at 10:00 and 10:20 they count 2 minutes.
  Precisely: minute m follows the last counted minute l; if ``m - l < session_gap`` the
  minutes l+1..m all count, otherwise only m does;
- minutes belong to the local day (household zone) they fall in, so a budget resets at
  local midnight, and a DST day simply has 23 or 25 hours of minutes.
Observations are expected in time order; one older than the last counted minute of
its (profile, target) is taken as already covered.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

# Every zone's offset is a multiple of 15 minutes, so a local day or hour never changes
# inside a quarter hour: the (zone, quarter) -> (day, hour) cache is exact.
_QUARTER = 15


class UsageMeter:
    """Incremental usage minutes per (profile, target) and local day; memory only."""

    def __init__(self, session_gap: int = 5) -> None:
        if session_gap < 1:
            raise ValueError("session_gap is at least 1 minute")
        self.session_gap = session_gap
        self._last: dict[tuple[str, str], int] = {}  # last counted epoch minute
        self._totals: dict[tuple[str, str, date], int] = {}
        self._slots: dict[tuple[str, int], tuple[date, int]] = {}

    def observe(self, profile: str, target: str, epoch: float, zone: ZoneInfo) -> tuple[int, ...]:
        """Note activity of ``profile`` on ``target`` at ``epoch`` (seconds).

        Returns the epoch minutes (epoch // 60) that this observation newly counted:
        usually () or one minute, up to ``session_gap`` minutes when it bridges a gap.
        """
        minute = int(epoch // 60)
        key = (profile, target)
        last = self._last.get(key)
        if last is not None and minute <= last:
            return ()
        self._last[key] = minute
        if last is not None and minute - last < self.session_gap:
            added = tuple(range(last + 1, minute + 1))
        else:
            added = (minute,)
        totals = self._totals
        for m in added:
            day = self.slot(m, zone)[0]
            tkey = (profile, target, day)
            totals[tkey] = totals.get(tkey, 0) + 1
        return added

    def minutes(self, profile: str, target: str, day: date) -> int:
        """Minutes counted for ``profile`` on ``target`` on the local ``day``."""
        return self._totals.get((profile, target, day), 0)

    def day_totals(self, day: date) -> dict[tuple[str, str], int]:
        """All (profile, target) -> minutes of one local day."""
        return {(p, t): n for (p, t, d), n in self._totals.items() if d == day}

    def load(self, profile: str, target: str, day: date, minutes: int) -> None:
        """Seed a day's total (e.g. from the store after a restart); keeps the larger."""
        key = (profile, target, day)
        self._totals[key] = max(self._totals.get(key, 0), minutes)

    def rename(self, old: str, new: str) -> None:
        """A profile renamed: its minutes and sessions go with it (today's budget holds).
        Called on the DNS loop, the one thread that observes."""
        for (p, t), minute in list(self._last.items()):
            if p == old:
                del self._last[(p, t)]
                self._last[(new, t)] = max(self._last.get((new, t), minute), minute)
        for (p, t, d), n in list(self._totals.items()):
            if p == old:
                del self._totals[(p, t, d)]
                self._totals[(new, t, d)] = self._totals.get((new, t, d), 0) + n

    def forget_before(self, day: date) -> None:
        """Drop totals of days before ``day`` (memory stays bounded)."""
        self._totals = {k: n for k, n in self._totals.items() if k[2] >= day}
        self._slots.clear()

    def slot(self, minute: int, zone: ZoneInfo) -> tuple[date, int]:
        """The local (day, hour) of an epoch minute in ``zone``."""
        quarter = minute // _QUARTER
        ck = (zone.key, quarter)
        found = self._slots.get(ck)
        if found is None:
            if len(self._slots) > 50_000:
                self._slots.clear()
            local = datetime.fromtimestamp(quarter * _QUARTER * 60, zone)
            found = self._slots[ck] = (local.date(), local.hour)
        return found


def local_day(epoch: float, zone: ZoneInfo) -> date:
    """The household's calendar day of ``epoch`` (seconds)."""
    return datetime.fromtimestamp(epoch, zone).date()
