"""The dashboard's reads of ``guardian.db`` (the store writer's file): stdlib sqlite3,
read-only (``mode=ro``), one short transaction per question so the writer's WAL
checkpoints are never held up. No SQLAlchemy in this process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.days import Execute, ceil_hour, grouped

DB_NAME = "guardian.db"  # the store's file (guardian/store/records.py: DB_NAME)
PAGE = 50

_LOG = """
SELECT q.id, q.time, c.ip, c.mac, c.device, p.text, d.name, q.qtype, a.text, r.text, cat.text, svc.text,
       l.text, ru.text, s.text, t.text
FROM queries q
JOIN domains d ON d.id = q.domain_id
JOIN labels a ON a.id = q.action_id
LEFT JOIN clients c ON c.id = q.client_id
LEFT JOIN labels p ON p.id = q.profile_id
LEFT JOIN labels r ON r.id = q.reason_id
LEFT JOIN labels cat ON cat.id = q.category_id
LEFT JOIN labels svc ON svc.id = q.service_id
LEFT JOIN labels l ON l.id = q.list_id
LEFT JOIN labels ru ON ru.id = q.rule_id
LEFT JOIN labels s ON s.id = q.schedule_id
LEFT JOIN labels t ON t.id = q.threat_id
"""
_FIELDS = ("id", "time", "ip", "mac", "device", "profile", "domain", "qtype", "action", "reason", "category",
           "service", "list", "rule", "schedule", "threat")


@dataclass(frozen=True, slots=True)
class Filter:
    device: str = ""  # a device name or a client address
    domain: str = ""  # the name or any name under it
    decision: str = ""  # allowed | blocked | ...
    before: int | None = None  # keyset: rows with a smaller id


class History:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2)
        try:
            yield conn
        finally:
            conn.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._conn() as conn:
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError:  # no such table yet: the writer has not migrated
                return []

    def log(self, f: Filter, limit: int = PAGE) -> list[dict[str, Any]]:
        """Newest first; ``f.before`` pages on by id (keyset paging: constant cost per page)."""
        where: list[str] = []
        params: list[Any] = []
        if f.before is not None:
            where.append("q.id < ?")
            params.append(f.before)
        if f.decision:
            where.append("q.action_id = (SELECT id FROM labels WHERE text = ?)")
            params.append(f.decision)
        if f.domain:
            name = f.domain.strip().lower().rstrip(".")
            where.append("(d.name = ? OR d.name LIKE ? ESCAPE '\\')")
            params += [name, "%." + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")]
        if f.device:
            where.append("q.client_id IN (SELECT id FROM clients WHERE device = ? OR ip = ?)")
            params += [f.device, f.device]
        sql = _LOG + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY q.id DESC LIMIT ?"
        return [dict(zip(_FIELDS, r, strict=True)) for r in self._rows(sql, (*params, limit))]

    def clients(self, since: float) -> list[dict[str, Any]]:
        """Addresses that asked since ``since``, with the device name the log knew them by."""
        # One index lookup (queries_client_time) per client row: the clients table holds a
        # row per (address, MAC, device name), a few hundred, whatever the log's length.
        rows = self._rows(
            "SELECT ip, mac, device, last FROM (SELECT c.ip, c.mac, c.device,"
            " (SELECT max(q.time) FROM queries q WHERE q.client_id = c.id) AS last FROM clients c)"
            " WHERE last >= ? ORDER BY last DESC", (since,))
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for ip, mac, device, last in rows:  # newest first: the name it was last logged under wins
            newest.setdefault((ip, mac), {"ip": ip, "mac": mac, "device": device, "last_seen": last})
        return list(newest.values())[:200]

    def registry(self) -> list[dict[str, Any]]:
        """Discovery's device registry as the writer stored it."""
        rows = self._rows("SELECT id, mac, name, hostname, vendor, random_mac, first_seen, last_seen FROM devices"
                          " ORDER BY last_seen DESC LIMIT 500")
        ips: dict[int, list[str]] = {}
        for ip, device_id in self._rows("SELECT ip, device_id FROM device_addresses ORDER BY last_seen DESC"):
            ips.setdefault(device_id, []).append(ip)
        return [{"mac": r[1], "name": r[2], "hostname": r[3], "vendor": r[4], "random_mac": bool(r[5]),
                 "first_seen": r[6], "last_seen": r[7], "ips": ips.get(r[0], [])} for r in rows]

    def hourly(self, since: float) -> list[tuple[int, str, int]]:
        """(hour, action, count) since ``since`` from the rollup."""
        return [(int(r[0]), r[1], int(r[2])) for r in self._rows(
            "SELECT h.hour, a.text, sum(h.count) FROM hourly h JOIN labels a ON a.id = h.action_id"
            " WHERE h.hour >= ? GROUP BY h.hour, a.text", (since,))]

    def events(self, limit: int = 20, profile: str = "", device: str = "", threat: str = "",
               severity: str = "") -> list[dict[str, Any]]:
        """Risk events, newest first; each filter, when given, must match exactly."""
        where, params = [], []
        for column, value in (("profile", profile), ("device", device), ("threat", threat),
                              ("severity", severity)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        sql = ("SELECT id, kind, last, device, profile, threat, category, severity, count, examples,"
               " state, message FROM risk_events" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY last DESC LIMIT ?")
        rows = self._rows(sql, (*params, limit))
        keys = ("id", "kind", "last", "device", "profile", "threat", "category", "severity", "count", "examples",
                "state", "message")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def event_choices(self) -> dict[str, list[str]]:
        """The devices, threats and severities the kept risk events name (the filters' options)."""
        return {column: [str(r[0]) for r in self._rows(
            f"SELECT DISTINCT {column} FROM risk_events WHERE {column} IS NOT NULL AND {column} != ''"
            f" ORDER BY {column}")] for column in ("device", "threat", "severity")}

    def events_by_severity(self) -> dict[str, int]:
        """Risk events kept in guardian.db per severity (counts only: /metrics)."""
        return {str(r[0]): int(r[1]) for r in self._rows(
            "SELECT severity, count(*) FROM risk_events GROUP BY severity") if r[0]}

    def blocked_by_category(self, since: float) -> list[tuple[str, int]]:
        """(category, blocked queries) since ``since``, most first, from the hourly rollup."""
        return [(r[0] or "", int(r[1])) for r in self._rows(
            "SELECT cat.text, sum(h.count) FROM hourly h JOIN labels a ON a.id = h.action_id"
            " LEFT JOIN labels cat ON cat.id = h.category_id WHERE h.hour >= ? AND a.text = 'blocked'"
            " GROUP BY cat.text ORDER BY 2 DESC LIMIT 8", (since,))]

    def usage_days(self, first_day: str) -> dict[tuple[str, str, str], int]:
        """Estimated minutes per (local day, profile, target) from ``first_day`` (YYYY-MM-DD) on."""
        return {(r[0], r[1], r[2]): int(r[3]) for r in self._rows(
            "SELECT day, profile, target, sum(minutes) FROM usage_hourly WHERE day >= ?"
            " GROUP BY day, profile, target", (first_day,))}

    def _ask(self, ask: Callable[[Execute], list[Any]]) -> list[Any]:
        """``ask(execute)`` in one read transaction (a rollup's probes and its query see one snapshot)."""
        with self._conn() as conn:
            if conn is None:
                return []
            def execute(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
                return conn.execute(sql, params).fetchall()
            try:
                conn.execute("BEGIN")
                return ask(execute)
            except sqlite3.OperationalError:  # no such table yet: the writer has not migrated
                return []
            finally:
                conn.rollback()

    def week(self, since: float, until: float) -> dict[str, dict[str, Any]]:
        """Per profile: queries, blocked, and blocked per category between two instants
        (the hours starting in them): the daily rollup for the whole local days, the
        hourly one for the hours of a day cut by the range (guardian/store/days.py)."""
        def ask(execute: Execute) -> list[Any]:
            sql, params = grouped(execute, "daily", ceil_hour(since), ceil_hour(until),
                                  "profile_id, category_id, action_id", "sum({n}) AS n")
            return execute("SELECT p.text, cat.text, a.text, t.n FROM (" + sql + ") AS t"
                           " JOIN labels a ON a.id = t.action_id LEFT JOIN labels p ON p.id = t.profile_id"
                           " LEFT JOIN labels cat ON cat.id = t.category_id", params)
        out: dict[str, dict[str, Any]] = {}
        for profile, category, action, count in self._ask(ask):
            entry = out.setdefault(profile or "", {"queries": 0, "blocked": 0, "categories": {}})
            entry["queries"] += int(count)
            if action == "blocked":
                entry["blocked"] += int(count)
                if category:
                    entry["categories"][category] = entry["categories"].get(category, 0) + int(count)
        return out

    def events_between(self, since: float, until: float, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._rows("SELECT kind, last, device, profile, threat, category, severity, count, message"
                          " FROM risk_events WHERE last >= ? AND first < ? ORDER BY last DESC LIMIT ?",
                          (since, until, limit))
        keys = ("kind", "last", "device", "profile", "threat", "category", "severity", "count", "message")
        return [dict(zip(keys, r, strict=True)) for r in rows]
