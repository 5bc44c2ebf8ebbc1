"""The recorder: DNS hands it every query without waiting; one writer commits batches.

``Recorder.record`` is an O(1) append to a bounded in-memory list, called on the event
loop for every query; when the list is full the record is dropped and counted
(``dropped``) — DNS never waits on the store. Every ``flush_seconds`` the list is swapped
for an empty one and handed to a single worker thread, which derives rollups, usage and
risk events and commits everything in one transaction, so the event loop never touches
the disk and the SD card sees one commit per interval, not one per query.

Loss bound: a SIGKILL (or crash) loses what was recorded since the last committed batch:
at most ``flush_seconds`` plus the time one batch takes to write. Committed batches
survive (WAL); the file always passes ``PRAGMA integrity_check``.

A write that fails (disk full, I/O error, lock timeout) is rolled back and its prepared
batch kept for the next interval (up to ``queue_size`` records waiting, oldest given up
first and counted in ``unsaved``); the trouble becomes a ``system`` risk event once the
disk takes writes again. A database found corrupt is set aside and recreated.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..config import PrivacySettings
from ..usage import UsageMeter, local_day
from ..verdicts import Outcome
from . import rollup
from .days import Execute, built_zone, day_key
from .db import Database, StoreError, open_database
from .records import (
    BUDGET,
    NEW_DEVICE,
    R_ACTION,
    R_CATEGORY,
    R_CLIENT,
    R_DEVICE,
    R_DURATION,
    R_LIST,
    R_MAC,
    R_NAME,
    R_PROFILE,
    R_QTYPE,
    R_RCODE,
    R_REASON,
    R_SERVICE,
    R_SOURCE,
    R_TIME,
    QueryRecord,
    RiskEvent,
    row_of_record,
)
from .risk import RiskRules, is_risk_row
from .tables import queries

log = logging.getLogger(__name__)

ClientKey = tuple[str, str, str]  # (ip, mac or "", device or "")
_USED = (Outcome.ALLOWED, Outcome.REWRITTEN)
ID_CACHE_MAX = 50_000  # names and labels whose ids the writer remembers between batches
_CORRUPT = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB  # actions that mean the device got to use the name

_QUERY_COLUMNS = [c.name for c in queries.columns if c.name != "id"]
_INSERT_QUERY = f"INSERT INTO queries ({', '.join(_QUERY_COLUMNS)}) VALUES ({', '.join('?' * len(_QUERY_COLUMNS))})"
_UPSERT_HOURLY = """INSERT INTO hourly (hour, client_id, profile_id, category_id, service_id, action_id, count)
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, client_id, profile_id, category_id, service_id, action_id)
    DO UPDATE SET count = count + excluded.count"""
_UPSERT_BLOCKED = """INSERT INTO blocked_hourly (hour, domain_id, client_id, profile_id, count) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (hour, domain_id, client_id, profile_id) DO UPDATE SET count = count + excluded.count"""
_UPSERT_DAILY = """INSERT INTO daily (day, client_id, profile_id, category_id, action_id, count) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, client_id, profile_id, category_id, action_id) DO UPDATE SET count = count + excluded.count"""
_UPSERT_DAILY_SERVICES = """INSERT INTO daily_services (day, client_id, profile_id, service_id, action_id, count)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, client_id, profile_id, service_id, action_id) DO UPDATE SET count = count + excluded.count"""
_UPSERT_BLOCKED_DAILY = """INSERT INTO blocked_daily (domain_id, profile_id, day, count) VALUES (?, ?, ?, ?)
    ON CONFLICT (domain_id, profile_id, day) DO UPDATE SET count = count + excluded.count"""
_UPSERT_BLOCKED_TOTAL = """INSERT INTO blocked_totals (domain_id, count) VALUES (?, ?)
    ON CONFLICT (domain_id) DO UPDATE SET count = count + excluded.count"""
_UPSERT_USAGE = """INSERT INTO usage_hourly (day, hour, profile, target, minutes) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (day, profile, target, hour) DO UPDATE SET minutes = minutes + excluded.minutes"""
# New occurrences bring a "seen" event back to "new"; "dismissed" stays dismissed.
_UPSERT_EVENT = """INSERT INTO risk_events (key, kind, first, last, device, client, profile, threat, category,
        service, severity, examples, message, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET last = max(last, excluded.last), count = count + excluded.count,
        severity = excluded.severity, examples = excluded.examples, message = excluded.message,
        state = CASE WHEN state = 'seen' THEN 'new' ELSE state END"""


@dataclass(slots=True)
class Batch:
    """One flush's records turned into rows and deltas (text not yet resolved to ids)."""

    records: int = 0
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    hourly: dict[tuple[int, ClientKey | None, str | None, str | None, str | None, str], int] = field(
        default_factory=dict)
    blocked: dict[tuple[int, str, ClientKey | None, str | None], int] = field(default_factory=dict)
    usage: dict[tuple[str, int, str, str], int] = field(default_factory=dict)
    events: list[RiskEvent] = field(default_factory=list)


class StoreWriter:
    """The blocking half: owns the database, the risk rules and the usage meter.

    Only ever used from one thread at a time (the recorder's single worker).
    """

    def __init__(self, path: Path, privacy: PrivacySettings, zone: ZoneInfo, max_waiting: int,
                 session_gap: int = 5, risk_window: float = 3600.0) -> None:
        self.path = path
        self.mode = privacy.mode
        self.zone = zone
        self.max_waiting = max_waiting
        self.risk = RiskRules(zone, risk_window)
        self.meter = UsageMeter(session_gap)
        self.db: Database | None = None
        self.waiting: list[Batch] = []  # prepared, not yet committed (the disk refused them)
        self.written = 0  # records committed
        self.commits = 0
        self.write_errors = 0
        self.unsaved = 0  # records given up after repeated write failures
        self.last_error: str | None = None
        self.cpu_seconds = 0.0  # thread CPU time spent preparing and writing
        self._failing_since: float | None = None
        self._next_open = 0.0
        self._today = local_day(time.time(), zone)
        self._generation: Any = None
        self._daily_zone: ZoneInfo | None = None  # the zone the file's daily rollups are kept in
        self._labels: dict[str, int] = {}
        self._domains: dict[str, int] = {}
        self._clients: dict[ClientKey, int] = {}

    # -- opening ---------------------------------------------------------------------

    def open(self) -> bool:
        """Open the database (create, migrate, set a corrupt one aside). False if it failed."""
        if self.db is not None:
            return True
        if time.monotonic() < self._next_open:
            return False
        try:
            self.db = open_database(self.path, zone=self.zone)  # the daily rollups kept in our zone
        except (StoreError, OSError) as exc:
            self._next_open = time.monotonic() + 30  # do not hammer a broken disk
            self._trouble(f"cannot open the database: {exc}")
            return False
        self._daily_zone = self.zone
        for what, message, severity in self.db.problems:
            self.risk.system(what, message, severity, time.time())
        self._forget_ids()
        with contextlib.suppress(SQLAlchemyError, sqlite3.Error):
            self._seed()
        return True

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _seed(self) -> None:
        """Reopen recent events and today's usage so a restart continues them."""
        assert self.db is not None
        now = time.time()
        today = local_day(now, self.zone)
        with self.db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT key, kind, first, last, count, severity, device, client, profile, threat, category, service,"
                " examples, message FROM risk_events WHERE last >= ? OR kind IN (?, ?)",
                (now - self.risk.window, BUDGET, NEW_DEVICE)).fetchall()
            self.risk.seed(
                RiskEvent(key=r[0], kind=r[1], first=r[2], last=r[3], count=0, severity=r[5], device=r[6],
                          client=r[7], profile=r[8], threat=r[9], category=r[10], service=r[11],
                          examples=tuple(r[12].split()), message=r[13])
                for r in rows if r[1] != BUDGET or r[0].endswith(today.isoformat()))
            for profile, target, minutes in conn.exec_driver_sql(
                    "SELECT profile, target, sum(minutes) FROM usage_hourly WHERE day = ? GROUP BY 1, 2",
                    (today.isoformat(),)):
                self.meter.load(profile, target, today, int(minutes))

    # -- preparing (pure work, in the worker thread) -------------------------------------

    def prepare(self, records: Sequence[QueryRecord], side: Sequence[tuple[Any, ...]]) -> Batch:
        """Rows, rollup deltas, usage minutes and risk events for one flush."""
        return self.prepare_rows([row_of_record(r) for r in records], side)

    def prepare_rows(self, records: Sequence[tuple[Any, ...]], side: Sequence[tuple[Any, ...]]) -> Batch:
        """``prepare`` for rows: QueryRecord's fields as tuples, in order (records.R_*),
        which is what the writer process is sent; read by index, no QueryRecord built."""
        batch = Batch(records=len(records))
        anonymous = self.mode == "anonymous"
        detail_all = self.mode != "risks-only"  # anonymous keeps every query, without the device
        rows, hourly, blocked, usage = batch.rows, batch.hourly, batch.blocked, batch.usage
        zone, meter, risk = self.zone, self.meter, self.risk
        observe, blocked_action = risk.observe_row, Outcome.BLOCKED
        for rec in records:
            if anonymous:
                rec = (rec[R_TIME], "", None, None, *rec[R_PROFILE:])
                ck: ClientKey | None = None
            else:
                ck = (rec[R_CLIENT], rec[R_MAC] or "", rec[R_DEVICE] or "")
            at, profile, name, action = rec[R_TIME], rec[R_PROFILE], rec[R_NAME], rec[R_ACTION]
            category, service = rec[R_CATEGORY], rec[R_SERVICE]
            hour = int(at // 3600) * 3600
            hk = (hour, ck, profile, category, service, action)
            hourly[hk] = hourly.get(hk, 0) + 1
            if action == blocked_action:
                bk = (hour, name, ck, profile)
                blocked[bk] = blocked.get(bk, 0) + 1
            if detail_all or is_risk_row(rec):
                rows.append((at, ck, profile, name, rec[R_QTYPE], action, rec[R_RCODE], rec[R_SOURCE],
                             rec[R_REASON] or None, category, service, *rec[R_LIST:R_DURATION + 1]))
            observe(rec)
            if profile is not None and action in _USED:
                for target in (category, service):
                    if target:
                        for minute in meter.observe(profile, target, at, zone):
                            day, local_hour = meter.slot(minute, zone)
                            uk = (day.isoformat(), local_hour, profile, target)
                            usage[uk] = usage.get(uk, 0) + 1
        for item in side:
            if item[0] == "system":
                _, what, message, severity, at = item
                risk.system(what, message, severity, at)
            else:
                kind, at, mac, ip, name, profile, detail = item
                if anonymous:
                    mac = ip = name = None
                    detail = "" if kind == "new-device" else detail  # bypass: the other resolver's address
                if kind == "bypass":
                    risk.bypass(at, mac, ip, name, profile, detail)
                else:
                    risk.new_device(at, mac, ip, name, profile, detail)
        now = time.time()
        batch.events = risk.drain(now)
        today = local_day(now, zone)
        if today != self._today:  # keep yesterday (late records), forget the rest
            self._today = today
            meter.forget_before(today - timedelta(days=1))
        return batch

    # -- writing ---------------------------------------------------------------------

    def process(self, records: Sequence[QueryRecord], side: Sequence[tuple[Any, ...]]) -> None:
        """Prepare and commit one flush (plus any batch the disk refused before)."""
        self.process_rows([row_of_record(r) for r in records], side)

    def process_rows(self, records: Sequence[tuple[Any, ...]], side: Sequence[tuple[Any, ...]]) -> None:
        """``process`` for rows (see ``prepare_rows``): what the writer process runs."""
        started = time.thread_time()
        try:
            if records or side:
                self.waiting.append(self.prepare_rows(records, side))
            self._trim_waiting()
            if self.waiting and self.open():
                self._commit_waiting()
        finally:
            self.cpu_seconds += time.thread_time() - started

    def _commit_waiting(self) -> None:
        assert self.db is not None
        try:
            with self.db.engine.begin() as conn:
                # The write lock is held from BEGIN IMMEDIATE: no prune can slip in after this check.
                generation = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'ids_generation'").scalar()
                if generation != self._generation:
                    self._forget_ids()
                    self._generation = generation
                if self.zone != self._daily_zone:
                    # The household's zone changed (a reload): its local days are other runs
                    # of hours, so the daily rollups are rebuilt in it, with this batch.
                    run = _runner(conn)
                    if built_zone(run) != self.zone:
                        rollup.rebuild(run, self.zone)
                    self._daily_zone = self.zone
                for batch in self.waiting:
                    self._write(conn, batch)
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            self._forget_ids()  # ids cached during the rolled-back transaction may not exist
            self._daily_zone = None  # a rebuild may have been rolled back: the file is asked again
            self.write_errors += 1
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            if getattr(orig, "sqlite_errorcode", 0) & 0xFF in _CORRUPT:
                # Corruption found while running: reopen, which sets the file aside.
                log.error("store: the database looks damaged (%s); reopening", orig)
                self.close()
            self._trouble(f"writing the query log fails: {orig}")
            return
        self.commits += 1
        self.written += sum(b.records for b in self.waiting)
        self.waiting.clear()
        if self._failing_since is not None:
            log.warning("store: writing works again after %.0f s", time.monotonic() - self._failing_since)
            self._failing_since = None

    def usage_on(self, day: str) -> dict[tuple[str, str], int]:
        """(profile, target) -> minutes stored for the local ``day`` (ISO date); {} if unreadable."""
        if self.db is None:
            return {}
        try:
            with self.db.engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT profile, target, sum(minutes) FROM usage_hourly WHERE day = ?"
                                            " GROUP BY profile, target", (day,)).fetchall()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("today's usage could not be read from the store: %s", exc)
            return {}
        return {(p, t): int(m) for p, t, m in rows}

    def counters(self) -> dict[str, Any]:
        """What ``Recorder.health`` reports from the writer's side (records unless named)."""
        return {
            "written": self.written,
            "commits": self.commits,
            "waiting": sum(b.records for b in self.waiting),
            "write_errors": self.write_errors,
            "unsaved": self.unsaved,
            "last_error": self.last_error,
            "writer_cpu_seconds": round(self.cpu_seconds, 3),
        }

    def _trouble(self, message: str) -> None:
        self.last_error = message
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("store: %s (DNS is unaffected; records are kept in memory and retried)", message)
            # Raised to the parent with the next batch that reaches the disk.
            self.risk.system("storage", message, "high", time.time())

    def _trim_waiting(self) -> None:
        """Give up the oldest refused batches beyond ``max_waiting`` records (memory bound)."""
        total = sum(b.records for b in self.waiting)
        while len(self.waiting) > 1 and total > self.max_waiting:
            old = self.waiting.pop(0)
            total -= old.records
            self.unsaved += old.records
            # Keep its risk events: they are few and matter most.
            self.waiting[0].events[:0] = old.events

    def _forget_ids(self) -> None:
        self._labels.clear()
        self._domains.clear()
        self._clients.clear()

    def _write(self, conn: Connection, batch: Batch) -> None:
        label, domain, client = self._label_ids, self._domain_ids, self._client_ids
        texts: set[str] = set()
        names: set[str] = set()
        cks: set[ClientKey] = set()
        for r in batch.rows:
            if r[1] is not None:
                cks.add(r[1])
            names.add(r[3])
            texts.update(t for t in (r[2], r[5], r[7], *r[8:16]) if t)
        for hk in batch.hourly:
            if hk[1] is not None:
                cks.add(hk[1])
            texts.update(t for t in hk[2:] if t)
        for bk in batch.blocked:
            names.add(bk[1])
            if bk[2] is not None:
                cks.add(bk[2])
            if bk[3]:
                texts.add(bk[3])
        first_seen = batch.rows[0][0] if batch.rows else time.time()
        labels = label(conn, texts)
        domains = domain(conn, names)
        clients = client(conn, cks, first_seen)

        def lid(text: str | None) -> int | None:
            return labels[text] if text else None

        if batch.rows:
            conn.exec_driver_sql(_INSERT_QUERY, [
                (r[0], clients[r[1]] if r[1] is not None else None, lid(r[2]), domains[r[3]], r[4], labels[r[5]],
                 r[6], lid(r[7]), lid(r[8]), lid(r[9]), lid(r[10]), lid(r[11]), lid(r[12]), lid(r[13]), lid(r[14]),
                 lid(r[15]), r[16])
                for r in batch.rows])
        zone = self.zone
        if batch.hourly:
            hourly = [(h, clients[ck] if ck is not None else 0, labels.get(p or "", 0), labels.get(c or "", 0),
                       labels.get(s or "", 0), labels[a], n)
                      for (h, ck, p, c, s, a), n in batch.hourly.items()]
            conn.exec_driver_sql(_UPSERT_HOURLY, hourly)
            # The same counts per local day, in the same transaction (store/days.py).
            daily: dict[tuple[int, int, int, int, int], int] = {}
            services: dict[tuple[int, int, int, int, int], int] = {}
            for h, ci, pi, cat, svc, ai, n in hourly:
                day = day_key(h, zone)
                dk = (day, ci, pi, cat, ai)
                daily[dk] = daily.get(dk, 0) + n
                sk = (day, ci, pi, svc, ai)
                services[sk] = services.get(sk, 0) + n
            conn.exec_driver_sql(_UPSERT_DAILY, [(*k, n) for k, n in daily.items()])
            conn.exec_driver_sql(_UPSERT_DAILY_SERVICES, [(*k, n) for k, n in services.items()])
        if batch.blocked:
            conn.exec_driver_sql(_UPSERT_BLOCKED, [
                (h, domains[d], clients[ck] if ck is not None else 0, labels.get(p or "", 0), n)
                for (h, d, ck, p), n in batch.blocked.items()])
            per_day: dict[tuple[int, int, int], int] = {}
            for (h, d, _ck, p), n in batch.blocked.items():
                key = (domains[d], labels.get(p or "", 0), day_key(h, zone))
                per_day[key] = per_day.get(key, 0) + n
            conn.exec_driver_sql(_UPSERT_BLOCKED_DAILY, [(*k, n) for k, n in per_day.items()])
            totals: dict[int, int] = {}
            for (domain_id, _p, _d), n in per_day.items():
                totals[domain_id] = totals.get(domain_id, 0) + n
            conn.exec_driver_sql(_UPSERT_BLOCKED_TOTAL, list(totals.items()))
        if batch.usage:
            conn.exec_driver_sql(_UPSERT_USAGE, [(*k, n) for k, n in batch.usage.items()])
        if batch.events:
            conn.exec_driver_sql(_UPSERT_EVENT, [
                (e.key, e.kind, e.first, e.last, e.device, e.client, e.profile, e.threat, e.category, e.service,
                 e.severity, " ".join(e.examples), e.message, e.count)
                for e in batch.events])

    def _label_ids(self, conn: Connection, texts: Iterable[str]) -> dict[str, int]:
        return _ids(conn, self._labels, texts, "labels", "text")

    def _domain_ids(self, conn: Connection, names: Iterable[str]) -> dict[str, int]:
        return _ids(conn, self._domains, names, "domains", "name")

    def _client_ids(self, conn: Connection, keys: Iterable[ClientKey], first_seen: float) -> dict[ClientKey, int]:
        cache = self._clients
        if len(cache) > ID_CACHE_MAX:
            cache.clear()
        missing = [k for k in keys if k not in cache]
        if missing:
            conn.exec_driver_sql("INSERT OR IGNORE INTO clients (ip, mac, device, first_seen) VALUES (?, ?, ?, ?)",
                                 [(*k, first_seen) for k in missing])
            for k in missing:
                row = conn.exec_driver_sql("SELECT id FROM clients WHERE ip = ? AND mac = ? AND device = ?",
                                           k).fetchone()
                assert row is not None
                cache[k] = int(row[0])
        return cache


def _ids(conn: Connection, cache: dict[str, int], texts: Iterable[str], table: str, column: str) -> dict[str, int]:
    """Integer ids for texts, inserting new ones; ``cache`` remembers them across batches
    (up to ``ID_CACHE_MAX``, then it starts again: memory stays bounded whatever is asked)."""
    if len(cache) > ID_CACHE_MAX:
        cache.clear()
    missing = [t for t in texts if t not in cache]
    if missing:
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", [(t,) for t in missing])
        for start in range(0, len(missing), 500):  # SQLite caps bound parameters per statement
            part = missing[start:start + 500]
            rows = conn.exec_driver_sql(
                f"SELECT {column}, id FROM {table} WHERE {column} IN ({', '.join('?' * len(part))})", tuple(part))
            cache.update((str(t), int(i)) for t, i in rows)
    return cache


def _runner(conn: Connection) -> Execute:
    def run(sql: str, params: tuple[Any, ...]) -> list[Any]:
        result = conn.exec_driver_sql(sql, params)
        return list(result.fetchall()) if result.returns_rows else []
    return run
