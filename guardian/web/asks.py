"""A child's "Ask a parent" requests: ``data_dir/web/requests.db`` (stdlib sqlite3), beside
the dashboard's web.db, where the dashboard's user may write.

A request records who asked (the device's name and the client address; neither in
``anonymous`` privacy mode, where only an unlinkable key of the address counts for the
limits), the profile, the blocked name, what to allow (the matched list rule, else the
name; and the service when one decided), why it was blocked, the child's note, when,
and the parent's answer: state (new, approved, declined, expired), who, when, until
when (None: for good), what it allowed (``rule``: the rule, ``service``: the whole service,
taken off the profile's blocked services) and an optional message.

Limits against flooding the parents: one open request per device and name, at most
``PER_HOUR`` a device an hour (every request counts, answered or not). A request no
parent answers within ``OPEN_SECONDS`` expires. Rows older than the events' retention
are deleted.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GuardianError
from ..migrations import upgrade

DB_NAME = "requests.db"
DIR_NAME = "web"  # the dashboard's own folder under data_dir (accounts.DIR_NAME)
STATES = ("new", "approved", "declined", "expired")
NOTE_MAX = 200  # characters of a child's note
MESSAGE_MAX = 200  # characters of a parent's answer
PER_HOUR = 5
OPEN_SECONDS = 24 * 3600

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, key TEXT NOT NULL, time REAL NOT NULL,
  asker TEXT NOT NULL, device TEXT NOT NULL DEFAULT '', client TEXT NOT NULL DEFAULT '', profile TEXT NOT NULL,
  name TEXT NOT NULL, rule TEXT NOT NULL, service TEXT NOT NULL DEFAULT '', category TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', state TEXT NOT NULL DEFAULT 'new',
  decided_by TEXT NOT NULL DEFAULT '', decided_at REAL, until REAL, message TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS requests_asker ON requests (asker, time);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, time);
"""),
    (2, "ALTER TABLE requests ADD COLUMN allowed TEXT NOT NULL DEFAULT '';"),
]
ALLOWED = ("rule", "service")  # what an approval allowed: the request's rule, or its whole service
_FIELDS = ("id", "key", "time", "asker", "device", "client", "profile", "name", "rule", "service", "category",
           "reason", "note", "state", "decided_by", "decided_at", "until", "message", "allowed")


class AlreadyAsked(GuardianError):
    """This device has an open request for this name (``ask`` is that request)."""

    def __init__(self, ask: Ask) -> None:
        super().__init__(f"already asked for {ask.name}")
        self.ask = ask


class TooMany(GuardianError):
    """This device made ``PER_HOUR`` requests in the last hour."""


class BadNote(GuardianError):
    """A note (or a parent's message) too long."""


class NotOpen(GuardianError):
    """An answer to a request that is not new any more (answered, expired) or unknown."""


@dataclass(frozen=True, slots=True)
class Ask:
    id: int
    key: str  # the secret in the child's "waiting for an answer" link
    time: float
    asker: str
    device: str
    client: str
    profile: str
    name: str
    rule: str
    service: str
    category: str
    reason: str
    note: str
    state: str
    decided_by: str
    decided_at: float | None
    until: float | None  # an approval's end (None: for good, or not approved)
    message: str
    allowed: str  # an approval's: "rule" (the rule) or "service" (the whole service); "" before

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _FIELDS if f != "key"}


def clean_text(text: str, limit: int, what: str = "note") -> str:
    """One line of plain text: control characters dropped, spaces squeezed; BadNote when
    longer than ``limit`` characters."""
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" and c not in "\u200d\u200c" else c for c in text)
    line = " ".join(kept.split())
    if len(line) > limit:
        raise BadNote(f"the {what} is {len(line)} characters long; at most {limit}")
    return line


class Asks:
    """The requests file. Safe to call from any thread (one connection per call)."""

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time, retention_days: int = 90) -> None:
        self.path = data_dir / DIR_NAME / DB_NAME
        self.clock = clock
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._ready = False

    def _conn(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        if not self._ready:
            conn.execute("PRAGMA journal_mode=WAL")
            upgrade(conn, self.path, MIGRATIONS)
            self._ready = True
        return conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Ask]:
        conn = self._conn()
        try:
            return [Ask(*r) for r in conn.execute(f"SELECT {', '.join(_FIELDS)} FROM requests {sql}", params)]
        finally:
            conn.close()

    def _tidy(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("UPDATE requests SET state = 'expired' WHERE state = 'new' AND time < ?", (now - OPEN_SECONDS,))
        if self.retention_days > 0:
            conn.execute("DELETE FROM requests WHERE time < ?", (now - self.retention_days * 86400,))

    def create(self, *, asker: str, device: str, client: str, profile: str, name: str, rule: str,
               service: str = "", category: str = "", reason: str = "", note: str = "",
               per_hour: int = PER_HOUR) -> Ask:
        """A new request; AlreadyAsked, TooMany or BadNote instead when a limit says no."""
        note = clean_text(note, NOTE_MAX)
        now = self.clock()
        with self._lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._tidy(conn, now)
                    open_one = conn.execute(f"SELECT {', '.join(_FIELDS)} FROM requests WHERE asker = ? AND name = ?"
                                            " AND state = 'new' ORDER BY id DESC LIMIT 1", (asker, name)).fetchone()
                    if open_one is not None:
                        raise AlreadyAsked(Ask(*open_one))
                    recent = conn.execute("SELECT count(*) FROM requests WHERE asker = ? AND time >= ?",
                                          (asker, now - 3600)).fetchone()[0]
                    if recent >= per_hour:
                        raise TooMany(f"at most {per_hour} requests an hour from one device")
                    key = secrets.token_urlsafe(16)
                    cur = conn.execute(
                        "INSERT INTO requests (key, time, asker, device, client, profile, name, rule, service,"
                        " category, reason, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, now, asker, device, client, profile, name, rule, service, category, reason, note))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()
        found = self.get(int(cur.lastrowid or 0))
        assert found is not None
        return found

    def get(self, ident: int) -> Ask | None:
        rows = self._rows("WHERE id = ?", (ident,))
        return rows[0] if rows else None

    def by_key(self, ident: int, key: str) -> Ask | None:
        """The request ``ident`` when ``key`` is its secret (the child's link), else None."""
        found = self.get(ident)
        return found if found is not None and secrets.compare_digest(found.key, key) else None

    def of_asker(self, asker: str, since: float) -> list[Ask]:
        """One device's requests since ``since``, newest first."""
        self.expire()
        return self._rows("WHERE asker = ? AND time >= ? ORDER BY id DESC LIMIT 50", (asker, since))

    def listing(self, limit: int = 50, state: str | None = None) -> list[Ask]:
        """Open requests first (oldest first: the longest waiting), then the answered, newest
        first; only those in ``state`` (STATES) when given."""
        if state is not None and state not in STATES:
            raise GuardianError(f"a request's state is one of {', '.join(STATES)}, not {state!r}")
        self.expire()
        if state == "new":
            return self._rows("WHERE state = 'new' ORDER BY id LIMIT ?", (limit,))
        if state is not None:
            return self._rows("WHERE state = ? ORDER BY coalesce(decided_at, time) DESC LIMIT ?", (state, limit))
        return (self._rows("WHERE state = 'new' ORDER BY id LIMIT ?", (limit,))
                + self._rows("WHERE state != 'new' ORDER BY coalesce(decided_at, time) DESC LIMIT ?", (limit,)))

    def count_open(self) -> int:
        conn = self._conn()
        try:
            now = self.clock()
            return int(conn.execute("SELECT count(*) FROM requests WHERE state = 'new' AND time >= ?",
                                    (now - OPEN_SECONDS,)).fetchone()[0])
        finally:
            conn.close()

    def rename(self, kind: str, old: str, new: str) -> int:
        """A parent renamed a profile or a device: its requests follow (an open one can
        still be approved for the profile under its new name). How many changed."""
        column = {"profile": "profile", "device": "device"}[kind]
        with self._lock:
            conn = self._conn()
            try:
                with conn:
                    return int(conn.execute(f"UPDATE requests SET {column} = ? WHERE {column} = ?",
                                            (new, old)).rowcount)
            finally:
                conn.close()

    def expire(self) -> None:
        with self._lock:
            conn = self._conn()
            try:
                self._tidy(conn, self.clock())
            finally:
                conn.close()

    def decide(self, ident: int, state: str, who: str, until: float | None = None, message: str = "",
               allowed: str = "rule") -> Ask:
        """A parent's answer to an open request (``approved`` or ``declined``); ``allowed``
        says what an approval allowed (ALLOWED)."""
        if state not in ("approved", "declined"):
            raise GuardianError(f"an answer is approved or declined, not {state!r}")
        if allowed not in ALLOWED:
            raise GuardianError(f"an approval allows the rule or the service, not {allowed!r}")
        message = clean_text(message, MESSAGE_MAX, "message")
        now = self.clock()
        with self._lock:
            conn = self._conn()
            try:
                self._tidy(conn, now)
                cur = conn.execute("UPDATE requests SET state = ?, decided_by = ?, decided_at = ?, until = ?,"
                                   " message = ?, allowed = ? WHERE id = ? AND state = 'new'",
                                   (state, who, now, until, message, allowed if state == "approved" else "",
                                    ident))
            finally:
                conn.close()
        if cur.rowcount != 1:
            raise NotOpen("this request was answered already, has expired, or does not exist")
        found = self.get(ident)
        assert found is not None
        return found
