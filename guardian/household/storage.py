"""Where the household is kept: ``data_dir/household.db`` (stdlib sqlite3, one small
file of our own) holds the household as parents changed it and the overrides in force.

At first start the household is seeded from the config's ``household:`` section. While
no parent has changed it, a changed seed in the config replaces it (at start or SIGHUP);
once a parent has (an allow/block without ``--for``, or ``guardian import``), the stored
household wins and the config's section is only checked: a telco that ships a new seed
to such a box must use ``guardian import``. Overrides are reloaded at start, the expired
ones dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GuardianError
from ..migrations import upgrade
from ..policy.household import (
    Household,
    Override,
    household_from_config,
    household_to_dict,
    override_from_dict,
    override_to_dict,
)

log = logging.getLogger(__name__)

HOUSEHOLD_DB = "household.db"
SEED = "seed"  # the stored household is the config's seed, untouched by parents
PARENT = "parent"  # a parent changed it: it wins over the config from now on
SCHEMA_VERSION = 1
# (version, SQL) in order: a new schema is one more step here, never an edit of an old one.
MIGRATIONS: list[tuple[int, str]] = [
    (1, "CREATE TABLE IF NOT EXISTS household (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL,"
        " origin TEXT NOT NULL, seed TEXT NOT NULL, updated REAL NOT NULL);"
        "CREATE TABLE IF NOT EXISTS overrides (kind TEXT NOT NULL, target TEXT NOT NULL,"
        " domain TEXT NOT NULL DEFAULT '', until REAL, created REAL NOT NULL)"),
]
FOREVER = math.inf  # an override "until resumed"

# --- the file ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """What household.db holds: the household (plain data), where it came from, the
    digest of the config seed it was last compared with, and the overrides."""

    household: dict[str, Any]
    origin: str
    seed: str
    overrides: tuple[Override, ...]


class HouseholdStore:
    """household.db: one row for the household (JSON), one per override.

    A save replaces everything in one transaction (a household is a few kilobytes and
    parents act a few times a day), so the file never holds half a change. SQLite's
    default rollback journal with synchronous=FULL: a power cut keeps the last save.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.problems: list[str] = []  # what load() found that the parents must be told (a damaged file)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        try:
            upgrade(conn, self.path, MIGRATIONS)  # guardian/migrations.py: a copy aside first, newer refused
        except GuardianError:
            conn.close()
            raise
        return conn

    def load(self, repair: bool = True) -> Stored | None:
        """The stored state, or None before the first save. A damaged file is moved
        aside (``household.db.damaged-<time>``) and None returned, the seed taking over;
        with ``repair`` False it is left alone and GuardianError raised."""
        if not self.path.exists():
            return None
        with self._lock:
            try:
                conn = self._connect()
                try:
                    row = conn.execute("SELECT data, origin, seed FROM household WHERE id = 1").fetchone()
                    rows = conn.execute("SELECT kind, target, domain, until, created FROM overrides").fetchall()
                finally:
                    conn.close()
                if row is None:
                    return None
                data = json.loads(row[0])
            except (sqlite3.DatabaseError, ValueError) as exc:
                code = getattr(exc, "sqlite_errorcode", 11) & 0xFF
                if not repair or code not in (11, 26):  # only SQLITE_CORRUPT/NOTADB mean damaged, not locked or I/O
                    raise GuardianError(f"{self.path} is unreadable: {exc}") from exc
                aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
                try:
                    os.replace(self.path, aside)
                except OSError as move:  # a read-only card: it stays where it is
                    where = f"left in place (it cannot be moved: {move.strerror or move})"
                else:
                    where = f"kept as {aside.name}"
                log.error("%s is damaged and unreadable (%s): %s; the household is set up again from the "
                          "configuration", self.path, exc, where)
                self.problems.append(f"the household file {self.path.name} was damaged ({exc}) and is {where}: "
                                     "the household was set up again from the configuration, so the parents' "
                                     "changes since then are gone")
                return None
        overrides: list[Override] = []
        for kind, target, domain, until, created in rows:
            try:
                overrides.append(override_from_dict({"kind": kind, "target": target, "domain": domain,
                                                     "until": FOREVER if until is None else until,
                                                     "created": created}))
            except (KeyError, ValueError) as exc:
                log.warning("dropping a stored override %s/%s: %s", kind, target, exc)
        return Stored(data, str(row[1]), str(row[2]), tuple(overrides))

    def save(self, household: Household, overrides: Iterable[Override], origin: str, seed: str) -> None:
        """Replace the stored state with this one, atomically."""
        data = json.dumps(household_to_dict(household), ensure_ascii=False)
        rows = []
        for o in overrides:
            item = override_to_dict(o)
            rows.append((item["kind"], item["target"], item.get("domain", ""),
                         None if math.isinf(o.until) else o.until, o.created))
        with self._lock:
            try:
                conn = self._connect()
            except sqlite3.DatabaseError as exc:
                raise GuardianError(f"cannot save the household to {self.path}: {exc}") from exc
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO household (id, data, origin, seed, updated) VALUES (1, ?, ?, ?, ?)",
                             (data, origin, seed, time.time()))
                conn.execute("DELETE FROM overrides")
                conn.executemany("INSERT INTO overrides (kind, target, domain, until, created) VALUES (?, ?, ?, ?, ?)",
                                 rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise GuardianError(f"cannot save the household to {self.path}: {exc}") from exc
            finally:
                conn.close()


def seed_digest(section: Mapping[str, Any] | None) -> str:
    """A digest of the config's ``household:`` section, to notice that the seed changed."""
    text = json.dumps(section or {}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Loaded:
    """The household to start with, and its overrides still in force."""

    household: Household
    overrides: tuple[Override, ...]
    origin: str
    seed: str
    problems: tuple[str, ...] = ()  # for the parents, as system events: a damaged file set aside
    save_error: str = ""  # the disk refused the save (read-only or full): DNS runs on what was read


def load_household(
    store: HouseholdStore,
    seed: Household,
    digest: str,
    now: float,
    *,
    categories: Collection[str] | None = None,
    services: Collection[str] | None = None,
) -> Loaded:
    """The household at start: the stored one (a parent's changes win), or the seed
    (first start, or the seed changed while no parent had touched it). Saves the result."""
    stored = store.load()
    origin, household = SEED, seed
    overrides: tuple[Override, ...] = ()
    if stored is not None:
        overrides = tuple(o for o in stored.overrides if o.until > now)
        if stored.origin == PARENT or stored.seed == digest:
            household, problems = household_from_config(stored.household, None, categories=categories,
                                                        services=services)
            for problem in problems:  # e.g. a rule pack dropped a category since
                log.warning("%s: stored household: %s", store.path, problem)
            origin = stored.origin
            if stored.origin == PARENT and stored.seed != digest:
                log.warning("the config's household: section changed, but parents have changed the household "
                            "since: the stored one is kept (use 'guardian import' to replace it)")
        else:
            log.info("the config's household: section changed and no parent changed the household: seeding it again")
        overrides = tuple(filter(valid_in(household), overrides))
    save_error = ""
    try:
        store.save(household, overrides, origin, digest)
    except GuardianError as exc:
        # A card remounted read-only (or full) must not leave the house without DNS: run on
        # what could be read, and say so once.
        save_error = (f"{exc}: the data directory is read-only or full; DNS answers with the household read at "
                      "start, and parents' changes cannot be saved until the disk takes writes again")
        log.error("%s", save_error)
    return Loaded(household, overrides, origin, digest, tuple(store.problems), save_error)


def valid_in(household: Household) -> Callable[[Override], bool]:
    """Whether an override's device or profile exists in ``household``."""
    devices = {d.name for d in household.devices}

    def valid(o: Override) -> bool:
        return (o.target in devices) if o.kind == "pause-device" else (o.target in household.by_name)

    return valid
