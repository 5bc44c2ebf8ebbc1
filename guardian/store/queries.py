"""The dashboard's and CLI's questions, answered from the rollup tables.

Every overview question reads the rollups through their primary key, never the raw query
log: the per-hour chart ``hourly``; the questions over a range of hours (24 h, 7 or 30
days, a week's digest) the daily rollups for the whole local days in it and ``hourly`` /
``blocked_hourly`` only for the hours of a day cut by the range (store/days.py), with the
very answers the hourly rows alone give (tests/store/test_store_daily.py), so a 30-day
question costs about what one day does (see tests/perf/bench_store.py). Times are epoch
seconds; a range takes every hour that starts in it, the hour it starts in included;
hours are UTC-aligned, days are the household's local days (for zones with a half-hour
offset a day's hourly counts are off by those 30 minutes).

Anonymous statistics export (opt-in, ``privacy.anonymous_stats``): rows of
``week, age_group, kind, threat, events, attempts`` where ``week`` is the ISO week
(``2026-W48``) of the event's first occurrence in the household zone, ``age_group`` the
profile's template (never the profile's own name; ``unspecified`` when it has none),
``kind`` a risk-event kind or ``queries``/``blocked`` (weekly totals), ``threat`` the
rule packs' threat name (empty for kinds without one), ``events`` the number of
aggregated risk events and ``attempts`` the occurrences they count. No device, client,
profile or domain name ever appears. CSV has that header line; JSON is
``{"format": "guardian-anonymous-stats", "version": 1, "rows": [{...}, ...]}``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from .days import Execute, built_zone, ceil_hour, grouped
from .db import make_engine
from .records import BLOCKED, BUDGET, BYPASS, SCHEDULE, STATES, StoredEvent

HOUR = 3600
TOP_PROBE = 400  # domains top_blocked looks at first (blocked_totals' busiest)
ANON_KINDS = (BLOCKED, BYPASS, SCHEDULE, BUDGET)
ANON_FIELDS = ("week", "age_group", "kind", "threat", "events", "attempts")


@dataclass(frozen=True, slots=True)
class Counts:
    """Queries and how many of them were blocked, for one key (hour, device, category...)."""

    key: Any
    queries: int
    blocked: int
    profile: str | None = None

    def to_json(self, name: str = "key") -> dict[str, Any]:
        out = {name: self.key, "queries": self.queries, "blocked": self.blocked}
        if self.profile is not None:
            out["profile"] = self.profile
        return out


class StoreReader:
    """Read-side of the store over one engine (read-only when opened with ``open``)."""

    def __init__(self, engine: Engine, zone: ZoneInfo, path: Path | None = None) -> None:
        self.engine = engine
        self.zone = zone
        self.path = path
        self._writable: Engine | None = None

    @classmethod
    def open(cls, path: Path, zone: ZoneInfo, readonly: bool = True) -> StoreReader:
        """Reads on a read-only connection (never holding the writer's lock); with
        ``readonly=False`` the few writes (event state) get their own engine."""
        return cls(make_engine(path, readonly=True), zone, None if readonly else path)

    def close(self) -> None:
        self.engine.dispose()
        if self._writable is not None:
            self._writable.dispose()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.exec_driver_sql(sql, params).fetchall())

    def _label(self, text: str) -> int:
        rows = self._rows("SELECT id FROM labels WHERE text = ?", (text,))
        return int(rows[0][0]) if rows else -1

    # -- overview -----------------------------------------------------------------

    def hours(self, since: float, until: float) -> list[Counts]:
        """Per hour in [since, until): every hour present, zero-filled; key = hour start."""
        start = int(since // HOUR) * HOUR
        blocked = self._label("blocked")
        found = {int(h): (int(q), int(b)) for h, q, b in self._rows(
            "SELECT hour, sum(count), sum(CASE WHEN action_id = ? THEN count ELSE 0 END) FROM hourly"
            " WHERE hour >= ? AND hour < ? GROUP BY hour", (blocked, start, until))}
        return [Counts(h, *found.get(h, (0, 0))) for h in range(start, int(until), HOUR)]

    def last_24h(self, now: float) -> list[Counts]:
        """The 24 hours up to and including the current one."""
        this_hour = int(now // HOUR) * HOUR
        return self.hours(this_hour - 23 * HOUR, this_hour + HOUR)

    def _read(self, ask: Any) -> Any:
        """``ask(execute)`` in one read transaction (the rollup's probes and its query see
        the same snapshot)."""
        with self.engine.connect() as conn:
            def execute(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
                return list(conn.exec_driver_sql(sql, params).fetchall())
            return ask(execute)

    def _counts(self, execute: Execute, rollup: str, start: int, end: int, keys: str, where: str = "",
                params: tuple[Any, ...] = ()) -> tuple[str, tuple[Any, ...]]:
        """SQL (and params) of ``keys, q, b``: queries and blocked per ``keys`` over the hours
        [start, end), mostly from the daily rollup ``rollup`` (store/days.py)."""
        blocked = self._label("blocked")
        return grouped(execute, rollup, start, end, keys,
                       "sum({n}) AS q, sum(CASE WHEN action_id = ? THEN {n} ELSE 0 END) AS b", (blocked,),
                       where, params)

    def top_blocked(self, since: float, until: float, limit: int = 10, profile: str | None = None) -> list[Counts]:
        """Most blocked domains (key = domain, queries = blocked = count); ties by domain id."""
        where: str = ""
        params: tuple[Any, ...] = ()
        if profile is not None:
            where, params = " AND profile_id = ?", (self._label(profile),)

        start, end = _floor(since), ceil_hour(until)

        def top(execute: Execute, where: str, params: tuple[Any, ...]) -> list[Any]:
            sql, values = grouped(execute, "blocked_daily", start, end, "domain_id", "sum({n}) AS n", (), where, params)
            return execute(f"SELECT domain_id, n FROM ({sql}) ORDER BY n DESC, domain_id LIMIT ?", (*values, limit))

        def ask(execute: Execute) -> list[Any]:
            found = None
            if profile is None and built_zone(execute) is not None and _covers_most(execute, start, end):
                # The domains blocked most over everything kept first: one outside them was
                # blocked at most ``bound`` times in any range, so when the range's top
                # ``limit`` among them all beat that, they are the answer (exactly). Worth
                # it when the range holds most of what is kept (30 days of 30, say).
                busiest = execute("SELECT domain_id, count FROM blocked_totals ORDER BY count DESC LIMIT ?",
                                  (TOP_PROBE,))
                ids = tuple(int(i) for i, _n in busiest)
                bound = int(busiest[-1][1]) if len(busiest) == TOP_PROBE else 0
                if ids:
                    found = top(execute, f" AND domain_id IN ({', '.join('?' * len(ids))})", ids)
                    if bound and not (len(found) == limit and int(found[-1][1]) > bound):
                        found = None
            if found is None:  # every (domain, day) pair of the range
                found = top(execute, where, params)
            names = dict(execute(f"SELECT id, name FROM domains WHERE id IN ({', '.join('?' * len(found))})",
                                 tuple(i for i, _n in found))) if found else {}
            return sorted(((names[i], n) for i, n in found if i in names), key=lambda r: (-r[1], r[0]))
        return [Counts(name, int(n), int(n)) for name, n in self._read(ask)]

    def per_device(self, since: float, until: float) -> list[Counts]:
        """Per device (its name, else its address; None = anonymous), busiest first."""
        def ask(execute: Execute) -> list[Any]:
            sql, values = self._counts(execute, "daily", _floor(since), ceil_hour(until), "client_id, profile_id")
            return execute(
                "SELECT coalesce(nullif(c.device, ''), c.ip), p.text, t.q, t.b FROM"
                f" ({sql}) AS t LEFT JOIN clients AS c ON c.id = t.client_id LEFT JOIN labels AS p ON p.id = t.profile_id",
                values)
        merged: dict[tuple[str | None, str | None], list[int]] = {}
        for name, profile, q, b in self._read(ask):
            acc = merged.setdefault((name, profile), [0, 0])
            acc[0] += int(q)
            acc[1] += int(b)
        out = [Counts(name, q, b, profile) for (name, profile), (q, b) in merged.items()]
        return sorted(out, key=lambda c: (-c.queries, str(c.key), str(c.profile)))

    def per_category(self, since: float, until: float, profile: str | None = None,
                     column: str = "category_id") -> list[Counts]:
        """Per category (or per service with ``column="service_id"``); None = uncategorised.
        Busiest first, ties by name (None first)."""
        if column not in ("category_id", "service_id"):
            raise ValueError(column)
        return self._per_label(_floor(since), ceil_hour(until), column, profile)

    def _per_label(self, start: int, end: int, column: str, profile: str | None = None,
                   device: str | None = None) -> list[Counts]:
        where: str = ""
        params: tuple[Any, ...] = ()
        if profile is not None:
            where, params = " AND profile_id = ?", (self._label(profile),)
        if device is not None:
            where += " AND client_id IN (SELECT id FROM clients WHERE device = ? OR (device = '' AND ip = ?))"
            params += (device, device)
        rollup = "daily" if column == "category_id" else "daily_services"

        def ask(execute: Execute) -> list[Any]:
            sql, values = self._counts(execute, rollup, start, end, column, where, params)
            return execute(f"SELECT l.text, t.q, t.b FROM ({sql}) AS t LEFT JOIN labels AS l ON l.id = t.{column}"
                           " ORDER BY t.q DESC, l.text", values)
        return [Counts(name, int(q), int(b)) for name, q, b in self._read(ask)]

    def per_profile(self, since: float, until: float) -> list[Counts]:
        def ask(execute: Execute) -> list[Any]:
            sql, values = self._counts(execute, "daily", _floor(since), ceil_hour(until), "profile_id")
            return execute(f"SELECT l.text, t.q, t.b FROM ({sql}) AS t LEFT JOIN labels AS l ON l.id = t.profile_id"
                           " ORDER BY t.q DESC, l.text", values)
        return [Counts(name, int(q), int(b)) for name, q, b in self._read(ask)]

    def daily(self, first: date, days: int, profile: str | None = None, device: str | None = None,
              column: str = "category_id") -> dict[str, list[Counts]]:
        """Per local day (ISO date) -> per category (or service) counts, for a profile/device."""
        if column not in ("category_id", "service_id"):
            raise ValueError(column)
        out: dict[str, list[Counts]] = {}
        for i in range(days):
            day = first + timedelta(days=i)
            since, until = self.day_bounds(day)
            # The hours starting within the local day (hour >= midnight).
            out[day.isoformat()] = self._per_label(ceil_hour(since), ceil_hour(until), column, profile, device)
        return out

    def day_bounds(self, day: date) -> tuple[float, float]:
        """Epoch seconds of local midnight starting ``day`` and the next (23..25 h apart)."""
        start = datetime.combine(day, time(0), self.zone).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(0), self.zone).timestamp()
        return start, end

    # -- risk events --------------------------------------------------------------

    def events(self, since: float, until: float | None = None, kinds: tuple[str, ...] = (),
               profile: str | None = None, states: tuple[str, ...] = STATES, limit: int = 500) -> list[StoredEvent]:
        """Risk events last seen in [since, until), newest first by last occurrence."""
        where = "last >= ?"
        params: list[Any] = [since]
        if until is not None:
            where += " AND last < ?"
            params.append(until)
        if kinds:
            where += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += kinds
        if profile is not None:
            where += " AND profile = ?"
            params.append(profile)
        where += f" AND state IN ({', '.join('?' * len(states))})"
        params += states
        rows = self._rows(
            "SELECT id, kind, first, last, count, severity, state, device, client, profile, threat, category, service,"
            f" examples, message FROM risk_events WHERE {where} ORDER BY last DESC, id DESC LIMIT ?",
            (*params, limit))
        return [StoredEvent(id=r[0], kind=r[1], first=r[2], last=r[3], count=r[4], severity=r[5], state=r[6],
                            device=r[7], client=r[8], profile=r[9], threat=r[10], category=r[11], service=r[12],
                            examples=tuple(r[13].split()), message=r[14]) for r in rows]

    def set_event_state(self, event_id: int, state: str) -> bool:
        """Mark an event seen or dismissed (needs a writable engine). False if no such event."""
        if state not in STATES:
            raise ValueError(f"state is one of {', '.join(STATES)}")
        if self.path is None:
            raise ValueError("this reader was opened read-only")
        if self._writable is None:
            self._writable = make_engine(self.path)
        with self._writable.begin() as conn:
            return conn.exec_driver_sql("UPDATE risk_events SET state = ? WHERE id = ?",
                                        (state, event_id)).rowcount > 0

    # -- usage ----------------------------------------------------------------------

    def usage(self, day: date, profile: str | None = None) -> dict[tuple[str, str], int]:
        """(profile, target) -> estimated active minutes on the local ``day``."""
        sql, params = "SELECT profile, target, sum(minutes) FROM usage_hourly WHERE day = ?", [day.isoformat()]
        if profile is not None:
            sql += " AND profile = ?"
            params.append(profile)
        return {(p, t): int(m) for p, t, m in self._rows(sql + " GROUP BY profile, target", tuple(params))}

    # -- reports --------------------------------------------------------------------

    def weekly_digest(self, profile: str, week_start: date, budgets: Mapping[str, int] | None = None,
                      top: int = 5) -> dict[str, Any]:
        """A child's week: top categories, risk events, usage per day against budgets (minutes)."""
        monday = week_start - timedelta(days=week_start.weekday())
        since = self.day_bounds(monday)[0]
        until = self.day_bounds(monday + timedelta(days=6))[1]
        categories = [c for c in self.per_category(since, until, profile) if c.key is not None][:top]
        services = [c for c in self.per_category(since, until, profile, "service_id") if c.key is not None][:top]
        events = self.events(since, until, profile=profile, limit=100)
        days = [(monday + timedelta(days=i)) for i in range(7)]
        usage: dict[str, dict[str, int]] = {}
        for day in days:
            for (_p, target), minutes in self.usage(day, profile).items():
                usage.setdefault(target, {})[day.isoformat()] = minutes
        budgets = dict(budgets or {})
        usage_rows = []
        for target in sorted(set(usage) | set(budgets)):
            per_day = {d.isoformat(): usage.get(target, {}).get(d.isoformat(), 0) for d in days}
            budget = budgets.get(target)
            usage_rows.append({
                "target": target,
                "minutes": sum(per_day.values()),
                "per_day": per_day,
                "budget": budget,
                "days_over_budget": sum(1 for m in per_day.values() if budget is not None and m >= budget),
            })
        totals = [c for c in self.per_profile(since, until) if c.key == profile]
        return {
            "profile": profile,
            "week": f"{monday.isocalendar().year}-W{monday.isocalendar().week:02d}",
            "from": monday.isoformat(),
            "to": days[-1].isoformat(),
            "queries": totals[0].queries if totals else 0,
            "blocked": totals[0].blocked if totals else 0,
            "top_categories": [c.to_json("category") for c in categories],
            "top_services": [c.to_json("service") for c in services],
            "events": [e.to_json() for e in events],
            "usage": usage_rows,
        }

    def anonymous_stats(self, since: float, until: float, templates: Mapping[str, str]) -> list[dict[str, Any]]:
        """Rows for the opt-in export (see the module docstring); no names of any kind."""
        def group(profile: str | None) -> str:
            return templates.get(profile or "", "") or "unspecified"

        acc: dict[tuple[str, str, str, str], list[int]] = {}
        rows = self._rows(
            f"SELECT first, profile, kind, threat, count FROM risk_events WHERE first >= ? AND first < ?"
            f" AND kind IN ({', '.join('?' * len(ANON_KINDS))})", (since, until, *ANON_KINDS))
        for first, profile, kind, threat, count in rows:
            key = (self._week(first), group(profile), kind, threat or "")
            a = acc.setdefault(key, [0, 0])
            a[0] += 1
            a[1] += int(count)
        blocked = self._label("blocked")
        for hour, profile, q, b in self._rows(
                "SELECT t.hour, l.text, t.q, t.b FROM (SELECT hour, profile_id, sum(count) AS q,"
                " sum(CASE WHEN action_id = ? THEN count ELSE 0 END) AS b FROM hourly WHERE hour >= ? AND hour < ?"
                " GROUP BY hour, profile_id) AS t LEFT JOIN labels AS l ON l.id = t.profile_id",
                (blocked, _floor(since), until)):
            week, g = self._week(hour), group(profile)
            for kind, n in (("queries", q), ("blocked", b)):
                a = acc.setdefault((week, g, kind, ""), [0, 0])
                a[1] += int(n)
        return [dict(zip(ANON_FIELDS, (*k, v[0], v[1]), strict=True)) for k, v in sorted(acc.items())]

    def _week(self, epoch: float) -> str:
        iso = datetime.fromtimestamp(epoch, self.zone).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"


def anonymous_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ANON_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def anonymous_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"format": "guardian-anonymous-stats", "version": 1, "fields": list(ANON_FIELDS),
                       "rows": rows}, indent=1)


def _covers_most(execute: Execute, start: int, end: int) -> bool:
    """Whether the hours [start, end) hold at least half the span of the blocked counts kept."""
    lo = execute("SELECT min(hour) FROM blocked_hourly", ())[0][0]
    hi = execute("SELECT max(hour) FROM blocked_hourly", ())[0][0]
    if lo is None or hi is None:
        return False
    span = int(hi) + HOUR - int(lo)
    return 2 * (min(end, int(hi) + HOUR) - max(start, int(lo))) >= span


def _floor(epoch: float) -> int:
    """The start of the hour ``epoch`` falls in (a range starting mid-hour takes that hour whole)."""
    return int(epoch // HOUR) * HOUR
