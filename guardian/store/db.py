"""The store's SQLite file: open or create it, migrate it, set aside a corrupt one.

- The schema version is SQLite's ``user_version``; ``MIGRATIONS`` are the ordered steps
  from the first release, frozen (a step never changes once released; a new schema is a
  new step). All pending steps run in one transaction, after a copy of the file is made
  with SQLite's backup API (``guardian.db.vN.bak``): a failed migration leaves the
  database at its old version, and the copy restorable besides.
- A file that is not a database, or fails ``PRAGMA quick_check``, is moved aside as
  ``guardian.db.corrupt-YYYYmmdd-HHMMSS`` and a fresh one created; the caller raises
  the returned problems as system events.
- WAL with ``synchronous=NORMAL``, checkpointed every ``WAL_CHECKPOINT_PAGES`` pages (a
  page written by several commits is copied into the file once): a killed process never loses a committed batch
  (a power cut may lose the last ones, never the file's consistency), and the SD card
  sees one fsync per checkpoint instead of one per commit.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, event

from ..errors import GuardianError
from . import rollup
from .days import built_zone
from .records import DB_NAME as DB_NAME  # where it always was, for callers

log = logging.getLogger(__name__)

BUSY_MS = 5000  # how long a connection waits for the write lock before failing
MAGIC = b"SQLite format 3\x00"
WAL_CHECKPOINT_PAGES = 10_000  # pages in the WAL before a checkpoint copies them into the file (SQLite: 1,000)


class StoreError(GuardianError):
    """The store cannot open, migrate or use its database."""


Step = Sequence[str] | Callable[[sqlite3.Connection], None]

# v1: the first release — the normalised query log, hourly counts, risk events.
_V1: list[str] = [
    "CREATE TABLE labels (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)",
    "CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE clients (id INTEGER PRIMARY KEY, ip TEXT NOT NULL, mac TEXT NOT NULL DEFAULT '',
        device TEXT NOT NULL DEFAULT '', first_seen FLOAT, UNIQUE (ip, mac, device))""",
    """CREATE TABLE queries (id INTEGER PRIMARY KEY, time FLOAT NOT NULL, client_id INTEGER, profile_id INTEGER,
        domain_id INTEGER NOT NULL, qtype INTEGER NOT NULL, action_id INTEGER NOT NULL, rcode INTEGER NOT NULL,
        source_id INTEGER, reason_id INTEGER, category_id INTEGER, service_id INTEGER, list_id INTEGER,
        rule_id INTEGER, schedule_id INTEGER, threat_id INTEGER, severity_id INTEGER, duration_ms FLOAT)""",
    "CREATE INDEX queries_time ON queries (time)",
    "CREATE INDEX queries_client_time ON queries (client_id, time)",
    """CREATE TABLE hourly (hour INTEGER NOT NULL, client_id INTEGER NOT NULL, profile_id INTEGER NOT NULL,
        category_id INTEGER NOT NULL, service_id INTEGER NOT NULL, action_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, client_id, profile_id, category_id, service_id, action_id)) WITHOUT ROWID""",
    """CREATE TABLE risk_events (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        first FLOAT NOT NULL, last FLOAT NOT NULL, device TEXT, client TEXT, profile TEXT, threat TEXT,
        category TEXT, service TEXT, severity TEXT NOT NULL, examples TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '', count INTEGER NOT NULL)""",
    "CREATE INDEX risk_events_last ON risk_events (last)",
]

# v2: the parent's state on events, blocked domains per hour (filled from the log kept so
# far), and usage minutes.
_V2: list[str] = [
    "ALTER TABLE risk_events ADD COLUMN state TEXT NOT NULL DEFAULT 'new'",
    """CREATE TABLE blocked_hourly (hour INTEGER NOT NULL, domain_id INTEGER NOT NULL,
        client_id INTEGER NOT NULL, profile_id INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (hour, domain_id, client_id, profile_id)) WITHOUT ROWID""",
    """INSERT INTO blocked_hourly (hour, domain_id, client_id, profile_id, count)
        SELECT CAST(time / 3600 AS INTEGER) * 3600, domain_id, coalesce(client_id, 0), coalesce(profile_id, 0),
               count(*)
        FROM queries WHERE action_id = (SELECT id FROM labels WHERE text = 'blocked') GROUP BY 1, 2, 3, 4""",
    """CREATE TABLE usage_hourly (day TEXT NOT NULL, hour INTEGER NOT NULL, profile TEXT NOT NULL,
        target TEXT NOT NULL, minutes INTEGER NOT NULL, PRIMARY KEY (day, profile, target, hour)) WITHOUT ROWID""",
]

# v3: a generation number retention bumps when it deletes unused domains, so the writer
# knows to forget the ids it cached.
_V3: list[str] = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (key, value) VALUES ('ids_generation', 0)",
]

# v4: the device registry discovery keeps (neighbour table, DHCP, ARP/NDP, sweeps); an
# address belongs to one device at a time, so a moved address moves with one row.
_V4: list[str] = [
    """CREATE TABLE devices (id INTEGER PRIMARY KEY, mac TEXT NOT NULL UNIQUE, macs TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '', hostname TEXT, vendor TEXT NOT NULL DEFAULT 'unknown', vendor_class TEXT,
        client_id TEXT, fingerprint TEXT, random_mac INTEGER NOT NULL DEFAULT 0, profile TEXT, interface TEXT,
        sources TEXT NOT NULL DEFAULT '', first_seen FLOAT NOT NULL, last_seen FLOAT NOT NULL,
        announced INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX devices_last_seen ON devices (last_seen)",
    """CREATE TABLE device_addresses (ip TEXT PRIMARY KEY, device_id INTEGER NOT NULL, last_seen FLOAT NOT NULL)
        WITHOUT ROWID""",
    "CREATE INDEX device_addresses_device ON device_addresses (device_id)",
]

# v5: daily rollups per local day of the household's zone (store/days.py), for the 7- and
# 30-day questions: exact sums of the hourly ones. They are filled by ``backfill`` when the
# writer opens the file with its zone (the zone is not the file's to know), and
# ``settings.daily_zone`` says in which zone they are kept (no row: not built, read hourly).
_V5: list[str] = [
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE daily (day INTEGER NOT NULL, client_id INTEGER NOT NULL, profile_id INTEGER NOT NULL,
        category_id INTEGER NOT NULL, action_id INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (day, client_id, profile_id, category_id, action_id)) WITHOUT ROWID""",
    """CREATE TABLE daily_services (day INTEGER NOT NULL, client_id INTEGER NOT NULL, profile_id INTEGER NOT NULL,
        service_id INTEGER NOT NULL, action_id INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (day, client_id, profile_id, service_id, action_id)) WITHOUT ROWID""",
    """CREATE TABLE blocked_daily (domain_id INTEGER NOT NULL, profile_id INTEGER NOT NULL, day INTEGER NOT NULL,
        count INTEGER NOT NULL, PRIMARY KEY (domain_id, profile_id, day)) WITHOUT ROWID""",
]

# v6: blocked counts per domain over everything kept (the sum of blocked_hourly), filled
# from it here: an upper bound per domain that lets "most blocked over 30 days" look at a
# few hundred domains instead of every (domain, day) pair (queries.top_blocked).
_V6: list[str] = [
    "CREATE TABLE blocked_totals (domain_id INTEGER PRIMARY KEY, count INTEGER NOT NULL)",
    "INSERT INTO blocked_totals (domain_id, count) SELECT domain_id, sum(count) FROM blocked_hourly GROUP BY domain_id",
]

# v7: blocked_daily by day too (covering), so a range of a few days reads only its days;
# the primary key (domain first) serves "these 400 domains over 30 days".
_V7: list[str] = [
    "CREATE INDEX blocked_daily_day ON blocked_daily (day, domain_id, profile_id, count)",
]

MIGRATIONS: list[tuple[int, Step]] = [(1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5), (6, _V6), (7, _V7)]
CURRENT_VERSION = MIGRATIONS[-1][0]


@dataclass
class Database:
    """An opened, migrated store file; ``problems`` are (what, message, severity) to report."""

    path: Path
    engine: Engine
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def close(self) -> None:
        self.engine.dispose()


def open_database(path: Path, migrations: Sequence[tuple[int, Step]] = MIGRATIONS,
                  zone: ZoneInfo | None = None) -> Database:
    """Open (create, migrate, or replace a corrupt) store file for writing. Blocking.

    With ``zone`` (the writer's), the daily rollups are then built in that zone if they
    are not yet (``backfill``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    problems: list[tuple[str, str, str]] = []
    if path.exists():
        bad = check_file(path)
        if bad is not None:
            aside = set_aside(path)
            message = f"the database was damaged ({bad}); it was moved to {aside.name} and a fresh one started"
            log.error("%s: %s", path, message)
            problems.append(("storage", message, "high"))
    migrate(path, migrations)
    if zone is not None and migrations[-1][0] >= 5:
        backfill(path, zone)
    return Database(path, make_engine(path), problems)


def backfill(path: Path, zone: ZoneInfo) -> bool:
    """Build the daily rollups from the hourly ones unless they are kept in ``zone`` already;
    True if it built them. One transaction: a crash midway leaves them unbuilt (readers use
    the hourly rows meanwhile) and the next open starts again; nothing else is touched."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_MS / 1000)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            run = _runner(conn)
            if built_zone(run) == zone:
                conn.execute("ROLLBACK")
                return False
            started = time.monotonic()
            days = rollup.rebuild(run, zone)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: building the daily rollups failed: {exc} (the hourly ones are unchanged)") from exc
    finally:
        conn.close()
    log.info("%s: daily rollups built for %d days in %s in %.1f s", path.name, days, zone, time.monotonic() - started)
    return True


def _runner(conn: sqlite3.Connection) -> Callable[[str, tuple[Any, ...]], list[Any]]:
    return lambda sql, params: conn.execute(sql, params).fetchall()


_CORRUPT = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB: the only errors that mean a damaged file


def check_file(path: Path) -> str | None:
    """Why ``path`` is not a usable SQLite database, or None when it is."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None  # SQLite takes an empty file as a new database
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return "file is not a database"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", _CORRUPT[0]) & 0xFF not in _CORRUPT:
            # Read-only, full, locked, an I/O error: the file may be sound. Setting it aside
            # would lose the history; the writer tries again later.
            raise StoreError(str(exc)) from exc
        return str(exc)
    except OSError as exc:
        raise StoreError(f"cannot read it: {exc.strerror or exc}") from exc
    if rows != [("ok",)]:
        return "integrity check failed: " + "; ".join(str(r[0]) for r in rows[:3])
    return None


def set_aside(path: Path) -> Path:
    """Rename a bad database (and its WAL/SHM files) to ``NAME.corrupt-TIMESTAMP``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


def schema_version(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def migrate(path: Path, migrations: Sequence[tuple[int, Step]] = MIGRATIONS, target: int | None = None) -> int:
    """Bring the file at ``path`` to ``target`` (default: the newest); returns the version."""
    target = migrations[-1][0] if target is None else target
    conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > target:
            raise StoreError(f"{path}: schema v{version} is newer than this Guardian knows (v{target})")
        if version == target:
            return version
        if version == 0:
            # Must precede the first table; lets retention give freed pages back to the card.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        else:
            backup = path.with_name(f"{path.name}.v{version}.bak")
            copy_database(conn, backup)
            log.info("migrating %s from schema v%d to v%d (copy kept at %s)", path, version, target, backup.name)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for number, step in migrations:
                if version < number <= target:
                    if callable(step):
                        step(conn)
                    else:
                        for statement in step:
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(number)}")
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            where = f"; the database is unchanged at v{version}" + (
                f" and a copy is kept at {path.name}.v{version}.bak" if version else "")
            raise StoreError(f"{path}: migration to schema v{target} failed: {exc}{where}") from exc
        return target
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def copy_database(conn: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of an open database (WAL content included)."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    tmp.replace(target)


def make_engine(path: Path, readonly: bool = False) -> Engine:
    """An engine on the store file. Writers take the lock at BEGIN (IMMEDIATE), so two
    writers queue on busy_timeout instead of failing on a lock upgrade."""
    if readonly:
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        url = f"sqlite:///{path}"
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" hook below issues BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        if readonly:
            cur.execute("PRAGMA query_only = 1")
        else:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA journal_size_limit = 33554432")  # WAL shrinks back to 32 MB after checkpoints
            cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine
