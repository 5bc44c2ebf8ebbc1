"""Schema versions of the small SQLite files (household.db, web.db): upgrade at start, refuse newer.

The version is SQLite's ``user_version``. ``steps`` are ``(version, sql)`` in order; a new
file (version 0, no tables) runs them all. An older file is first copied aside with
SQLite's backup API (``household.db.v1.bak``: a failed or regretted upgrade can be undone
by hand) and then upgraded in one transaction, so it is either all old or all new. A file
written by a newer Guardian is refused with a message saying what to do, and left as it is.
(guardian.db, the big one, has its own migrations with the same rules: guardian/store/db.py.)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .errors import GuardianError

log = logging.getLogger(__name__)


def newer_message(path: Path, version: int, newest: int) -> str:
    return (f"{path} was written by a newer Guardian (schema {version}; this one reads up to schema {newest}): "
            "upgrade Guardian again, or restore a backup made with this version ('guardian restore')")


def upgrade(conn: sqlite3.Connection, path: Path, steps: Sequence[tuple[int, str]]) -> int:
    """Bring the open file at ``path`` to the last step's version; the version it had."""
    newest = steps[-1][0]
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > newest:
        raise GuardianError(newer_message(path, version, newest))
    if version == newest:
        return version
    if version > 0:
        backup = path.with_name(f"{path.name}.v{version}.bak")
        copy = sqlite3.connect(backup)
        try:
            conn.backup(copy)
        finally:
            copy.close()
        log.info("upgrading %s from schema v%d to v%d (the old file is kept as %s)", path, version, newest,
                 backup.name)
    in_transaction = conn.in_transaction
    try:
        if not in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        again = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have done it
        for number, sql in steps:
            if number > again:
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(newest)}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise GuardianError(f"{path}: upgrading it from schema v{version} to v{newest} failed: {exc} "
                            "(the file is unchanged)") from exc
    return version
