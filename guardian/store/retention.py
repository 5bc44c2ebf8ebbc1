"""Retention: age limits per kind, a hard cap on the file size, and privacy applied to the past.

``Retention.run_once()`` is blocking; run it from an APScheduler job (a plain function
job runs in the scheduler's thread pool, off the event loop). It deletes in chunks of
``chunk`` rows, one short transaction each, so the recorder's writer — which takes the
same write lock — waits at most one chunk (milliseconds), never the whole clean-up.

Limits (days; 0 = no age limit, only the size cap):
- ``query_days``: the raw query log;
- ``event_days``: risk events (by last occurrence);
- ``usage_days``: usage minutes and the hourly counts the statistics come from.
Size cap (``max_mb``): while the live data exceeds it, the oldest query-log rows go
first, then the oldest hourly counts (an hour leaves the daily rollups with it, so they
stay the exact sums of the hourly ones; the same for the age limit); free pages are then handed back so the file
shrinks (the WAL, at most 32 MB after a checkpoint, comes on top).
Privacy: in ``anonymous`` mode per-device detail written under a laxer mode is erased
(rows keep their counts, without the device, in the hourly and daily rollups alike; the stored device registry goes too); in ``risks-only`` the non-risk rows of the
raw log are deleted. Domain names no row uses any more are deleted too; the writer, which
caches ids, sees ``meta.ids_generation`` change and forgets them. Labels are kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from ..config import StoreSettings
from . import rollup
from .days import Execute
from .db import make_engine

log = logging.getLogger(__name__)
DAY = 86_400


@dataclass
class RetentionReport:
    """Rows deleted per kind by one run, and the database size (bytes) around it."""

    queries: int = 0
    events: int = 0
    usage: int = 0
    hourly: int = 0
    domains: int = 0  # domain names no row uses any more
    capped: int = 0  # rows deleted to honour max_mb
    scrubbed: int = 0  # rows changed or deleted to honour the privacy mode
    size_before: int = 0
    size_after: int = 0


class Retention:
    """Prunes the store file at ``path`` (see the module docstring)."""

    def __init__(self, path: Path, store: StoreSettings, zone: ZoneInfo, privacy_mode: str = "full",
                 chunk: int = 5000, max_bytes: int | None = None) -> None:
        self.path = path
        self.store = store
        self.zone = zone
        self.mode = privacy_mode
        self.chunk = chunk
        self.max_bytes = max_bytes if max_bytes is not None else store.max_mb * 1024 * 1024
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.path)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def run_once(self, now: float | None = None) -> RetentionReport:
        """One pass of every rule. Blocking; seconds at most on a Pi for a day's worth."""
        if not self.path.exists():
            return RetentionReport()
        now = time.time() if now is None else now
        report = RetentionReport(size_before=self.used_bytes())
        s = self.store
        if s.query_days:
            report.queries = self._chunked("DELETE FROM queries WHERE id IN (SELECT id FROM queries"
                                           " WHERE time < ? ORDER BY time LIMIT ?)", now - s.query_days * DAY)
        if s.event_days:
            report.events = self._chunked("DELETE FROM risk_events WHERE id IN (SELECT id FROM risk_events"
                                          " WHERE last < ? LIMIT ?)", now - s.event_days * DAY)
        if s.usage_days:
            cutoff = now - s.usage_days * DAY
            report.hourly = self._by_prefix("hourly", "hour", cutoff) + self._by_prefix("blocked_hourly", "hour", cutoff)
            day = datetime.fromtimestamp(cutoff, self.zone).date().isoformat()
            report.usage = self._by_prefix("usage_hourly", "day", day)
        report.scrubbed = self.apply_privacy()
        if report.queries or report.hourly or report.scrubbed:
            report.domains = self.prune_domains()
        report.capped = self.enforce_cap()
        report.size_after = self.used_bytes()
        if report.queries or report.events or report.hourly or report.capped or report.scrubbed:
            log.info("retention: %s", report)
        return report

    def used_bytes(self) -> int:
        """Bytes of live data in the file (pages in use, free pages not counted)."""
        with self.engine.connect() as conn:
            return _used(conn)

    def file_bytes(self) -> int:
        with self.engine.connect() as conn:
            page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            return int(conn.exec_driver_sql("PRAGMA page_count").scalar_one()) * page_size

    def enforce_cap(self) -> int:
        """Delete the oldest rows until the live data fits ``max_bytes``; shrink the file."""
        deleted = 0
        for _ in range(50):
            used = self.used_bytes()
            if used <= self.max_bytes:
                break
            with self.engine.connect() as conn:
                rows = int(conn.exec_driver_sql("SELECT count(*) FROM queries").scalar_one())
            if rows:
                # The excess share of the log (the domains it alone used go with it), in chunks.
                want = int(rows * (used - self.max_bytes) / used) + 1
                while want > 0:
                    with self.engine.begin() as conn:
                        n = conn.exec_driver_sql("DELETE FROM queries WHERE id IN (SELECT id FROM queries"
                                                 " ORDER BY time LIMIT ?)", (min(self.chunk, want),)).rowcount
                    deleted += n
                    want -= n
                    if not n:
                        break
                deleted += self.prune_domains()
                continue
            deleted += self.prune_domains()
            with self.engine.begin() as conn:
                oldest = conn.exec_driver_sql("SELECT min(hour) FROM hourly").scalar()
                if oldest is None:
                    break
                run = _runner(conn)
                rollup.forget_hours(run, "hourly", oldest, oldest + 1)
                deleted += conn.exec_driver_sql("DELETE FROM hourly WHERE hour = ?", (oldest,)).rowcount
                rollup.forget_hours(run, "blocked_hourly", 0, oldest + 1)
                deleted += conn.exec_driver_sql("DELETE FROM blocked_hourly WHERE hour <= ?", (oldest,)).rowcount
        self._shrink()
        return deleted

    def prune_domains(self) -> int:
        """Delete domains no log row or blocked count uses any more; tells the writer (meta)."""
        with self.engine.connect() as conn:
            # One read pass (no write lock held); rows written meanwhile are re-checked below.
            top = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM queries").scalar_one()
            used = {r[0] for r in conn.exec_driver_sql(
                "SELECT DISTINCT domain_id FROM queries UNION SELECT domain_id FROM blocked_hourly"
                " UNION SELECT domain_id FROM blocked_daily")}
            unused = [r[0] for r in conn.exec_driver_sql("SELECT id FROM domains") if r[0] not in used]
            conn.rollback()
        total = 0
        for start in range(0, len(unused), 500):
            part = unused[start:start + 500]
            marks = ", ".join("?" * len(part))
            with self.engine.begin() as conn:
                n = conn.exec_driver_sql(
                    f"DELETE FROM domains WHERE id IN ({marks})"
                    f" AND id NOT IN (SELECT domain_id FROM queries WHERE id > ? AND domain_id IN ({marks}))"
                    f" AND id NOT IN (SELECT domain_id FROM blocked_hourly WHERE domain_id IN ({marks}))"
                    f" AND id NOT IN (SELECT domain_id FROM blocked_daily WHERE domain_id IN ({marks}))",
                    (*part, top, *part, *part, *part)).rowcount
                if n:
                    conn.exec_driver_sql("UPDATE meta SET value = value + 1 WHERE key = 'ids_generation'")
            total += n
        return total

    def _shrink(self) -> None:
        """Hand free pages back to the file system while the file is above the cap."""
        for _ in range(1000):
            with self.engine.connect() as conn:
                free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
                page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
                total = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one()) * page_size
                conn.rollback()
                if not free or total <= self.max_bytes:
                    return
                # executescript runs the pragma to its end in its own transaction; execute()
                # would step it once, freeing a single page.
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.executescript("PRAGMA incremental_vacuum(2000)")

    def apply_privacy(self) -> int:
        """Erase detail the current privacy mode would not have stored."""
        if self.mode == "anonymous":
            n = self._chunked("UPDATE queries SET client_id = NULL WHERE id IN (SELECT id FROM queries"
                              " WHERE client_id IS NOT NULL LIMIT ?)")
            with self.engine.begin() as conn:
                n += conn.exec_driver_sql(
                    "UPDATE risk_events SET device = NULL, client = NULL"
                    " WHERE device IS NOT NULL OR client IS NOT NULL").rowcount
                for table, cols in (("hourly", "hour, client_id, profile_id, category_id, service_id, action_id"),
                                    ("blocked_hourly", "hour, domain_id, client_id, profile_id")):
                    moved = conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE client_id != 0").scalar_one()
                    if not moved:
                        continue
                    others = cols.replace("client_id", "0")
                    conn.exec_driver_sql(
                        f"INSERT INTO {table} ({cols}, count) SELECT {others}, sum(count) FROM {table}"
                        f" WHERE client_id != 0 GROUP BY {others.replace('0, ', '')}"
                        f" ON CONFLICT ({cols}) DO UPDATE SET count = count + excluded.count")
                    conn.exec_driver_sql(f"DELETE FROM {table} WHERE client_id != 0")
                    n += int(moved)
                n += rollup.fold_clients(_runner(conn))
                n += conn.exec_driver_sql("DELETE FROM clients").rowcount
                # The device registry too (MACs, names, addresses, when each was seen):
                # in anonymous mode discovery keeps it in memory only.
                n += conn.exec_driver_sql("DELETE FROM device_addresses").rowcount
                n += conn.exec_driver_sql("DELETE FROM devices").rowcount
            return n
        if self.mode == "risks-only":
            return self._chunked(
                "DELETE FROM queries WHERE id IN (SELECT q.id FROM queries AS q"
                " WHERE q.action_id != coalesce((SELECT id FROM labels WHERE text = 'blocked'), -1)"
                " AND q.threat_id IS NULL"
                " AND coalesce(q.reason_id, 0) != coalesce((SELECT id FROM labels WHERE text = 'bypass'), -1)"
                " AND coalesce(q.category_id, 0) != coalesce((SELECT id FROM labels WHERE text = 'bypass'), -1)"
                " LIMIT ?)")
        return 0

    def _chunked(self, sql: str, *params: object) -> int:
        """Run a DELETE/UPDATE ending in ``LIMIT ?`` until it touches nothing; rows touched."""
        total = 0
        while True:
            with self.engine.begin() as conn:
                n = conn.exec_driver_sql(sql, (*params, self.chunk)).rowcount
            total += n
            if n < self.chunk:
                return total

    def _by_prefix(self, table: str, column: str, cutoff: object) -> int:
        """Delete rows of a rollup (no rowid) with ``column < cutoff``, one key value per transaction."""
        total = 0
        while True:
            with self.engine.begin() as conn:
                oldest = conn.exec_driver_sql(f"SELECT min({column}) FROM {table}").scalar()
                if oldest is None or not oldest < cutoff:  # type: ignore[operator]
                    return total
                if table in ("hourly", "blocked_hourly"):  # the daily rollups stay their exact sums
                    rollup.forget_hours(_runner(conn), table, int(oldest), int(oldest) + 1)  # type: ignore[call-overload]
                total += conn.exec_driver_sql(f"DELETE FROM {table} WHERE {column} = ?", (oldest,)).rowcount


def _runner(conn: Connection) -> Execute:
    def run(sql: str, params: tuple[Any, ...]) -> list[Any]:
        result = conn.exec_driver_sql(sql, params)
        return list(result.fetchall()) if result.returns_rows else []
    return run


def _used(conn: Connection) -> int:
    page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
    return (pages - free) * page_size
