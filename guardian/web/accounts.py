"""The dashboard's own database (``data_dir/web/web.db``, stdlib sqlite3): parents'
accounts, sessions, API tokens, login failures and the audit log of the changes made
here. Its own directory, the one place the dashboard's user writes (systemd's
``StateDirectory=guardian/web`` in guardian-web.service).

- Passwords: argon2id with explicit parameters (19 MiB, t=2, p=1, OWASP's floor), hashed
  one at a time (a lock) so a burst of logins cannot eat the Pi's memory.
- Sessions: 256-bit random ids; only their SHA-256 is stored, so a copy of this file
  opens no session. Idle and absolute expiry; revoked at logout and password change.
- Login failures per client address and per account: ``LOCK_AFTER`` failures within
  ``LOCK_SECONDS`` lock further attempts until the oldest of them is that old.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import GuardianError
from ..migrations import upgrade

DB_NAME = "web.db"
DIR_NAME = "web"  # under data_dir
SCHEMA_VERSION = 2  # 2: API tokens
IDLE_SECONDS = 12 * 3600  # a session unused this long ends
ABSOLUTE_SECONDS = 30 * 86400  # and every session ends after this
LOCK_AFTER = 5
LOCK_SECONDS = 15 * 60
MIN_PASSWORD = 10  # the messages below say 10


def N_(message: str) -> str:  # noqa: N802 - marked for translation, translated where shown
    return message


HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
_HASH_LOCK = threading.Lock()
# Passwords nobody should use, whatever their length (the strength floor's second half).
_COMMON = {"password", "passw0rd", "123456", "qwerty", "letmein", "iloveyou", "admin", "guardian", "welcome",
           "monkey", "dragon", "football", "azerty", "abc123"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  hash TEXT NOT NULL, language TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, csrf TEXT NOT NULL,
  created REAL NOT NULL, last_seen REAL NOT NULL, client TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, time);
CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, name TEXT NOT NULL,
  created REAL NOT NULL, last_used REAL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, account TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
"""
# (version, SQL) in order, _SCHEMA being their sum; a new schema is one more step, never an edit.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  hash TEXT NOT NULL, language TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, csrf TEXT NOT NULL,
  created REAL NOT NULL, last_seen REAL NOT NULL, client TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, time);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, account TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
"""),
    (2, "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, name TEXT NOT NULL,"
        " created REAL NOT NULL, last_used REAL)"),
]


def db_path(data_dir: Path) -> Path:
    """Where web.db lives: its own folder under data_dir."""
    return data_dir / DIR_NAME / DB_NAME


class WeakPassword(GuardianError):
    """A password under the strength floor."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    language: str


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # the stored digest, never the cookie's value
    account: Account
    csrf: str
    created: float
    last_seen: float
    client: str
    agent: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _big_blocks_mapped() -> None:
    """Each argon2 hash allocates a 19 MiB block. glibc's dynamic mmap threshold would grow
    after the first is freed and keep the next ones in a thread's heap for good (+20 MB
    RSS); a fixed threshold keeps blocks over 1 MiB in their own mappings, returned to the
    system when freed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_big_blocks_mapped()


def hash_password(password: str) -> str:
    with _HASH_LOCK:
        return HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    with _HASH_LOCK:
        try:
            return HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def check_strength(password: str, account: str = "") -> None:
    """The floor: MIN_PASSWORD characters, several different ones, not a common word
    nor the account's name."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(N_("a password needs at least 10 characters"))
    if len(set(password)) < 5:
        raise WeakPassword(N_("a password needs more different characters"))
    folded = password.casefold()
    core = folded.strip("0123456789!?.,-_ @#$%*")
    if folded in _COMMON or core in _COMMON:
        raise WeakPassword(N_("that password is too common"))
    if account and account.casefold() in folded:
        raise WeakPassword(N_("a password must not contain the account's name"))


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 40 or any(ord(c) < 32 for c in name):
        raise GuardianError("an account name is 1 to 40 printable characters")
    return name


class Accounts:
    """web.db. Each method is one short transaction; safe from any thread."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = self._connect()
        try:
            upgrade(conn, path, MIGRATIONS)  # guardian/migrations.py: a copy aside first, newer refused
        finally:
            conn.close()
        path.chmod(0o600)

    def _connect(self) -> sqlite3.Connection:
        # The default rollback journal: a few writes a day, and no -wal/-shm files beside it.
        return sqlite3.connect(self.path, timeout=5)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self._connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        conn.close()
        return rows

    # -- accounts -----------------------------------------------------------------------

    def count(self) -> int:
        return int(self._run("SELECT count(*) FROM accounts")[0][0])

    def accounts(self) -> list[Account]:
        return [Account(*r) for r in self._run("SELECT id, name, language FROM accounts ORDER BY id")]

    def create(self, name: str, password: str, language: str = "", *, first: bool = False) -> Account:
        """A new account; with ``first``, only while there is none (the first-run form)."""
        name = check_name(name)
        check_strength(password, name)
        hashed = hash_password(password)
        with self._lock, self._connect() as conn:
            if first and conn.execute("SELECT count(*) FROM accounts").fetchone()[0]:
                raise GuardianError("the first account exists already: sign in")
            try:
                cur = conn.execute("INSERT INTO accounts (name, hash, language, created) VALUES (?, ?, ?, ?)",
                                   (name, hashed, language, self.clock()))
            except sqlite3.IntegrityError:
                raise GuardianError(f"an account called {name!r} exists already") from None
            account_id = cur.lastrowid
        conn.close()
        assert account_id is not None
        return Account(account_id, name, language)

    def remove(self, account_id: int) -> None:
        with self._lock, self._connect() as conn:
            if conn.execute("SELECT count(*) FROM accounts").fetchone()[0] <= 1:
                raise GuardianError("the last account cannot be removed")
            conn.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM tokens WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
        conn.close()

    def find(self, name: str) -> Account | None:
        rows = self._run("SELECT id, name, language FROM accounts WHERE name = ?", (name.strip(),))
        return Account(*rows[0]) if rows else None

    def check(self, name: str, password: str) -> Account | None:
        rows = self._run("SELECT id, name, language, hash FROM accounts WHERE name = ?", (name.strip(),))
        if not rows:
            verify_password(_DUMMY, password)  # the same time whether or not the account exists
            return None
        if not verify_password(rows[0][3], password):
            return None
        return Account(*rows[0][:3])

    def set_password(self, account_id: int, password: str) -> None:
        """A new password; every session of the account ends."""
        rows = self._run("SELECT name FROM accounts WHERE id = ?", (account_id,))
        if not rows:
            raise GuardianError("no such account")
        check_strength(password, rows[0][0])
        hashed = hash_password(password)
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE accounts SET hash = ? WHERE id = ?", (hashed, account_id))
            conn.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))
        conn.close()

    def set_language(self, account_id: int, language: str) -> None:
        self._run("UPDATE accounts SET language = ? WHERE id = ?", (language, account_id))

    # -- sessions -----------------------------------------------------------------------

    def open_session(self, account: Account, client: str, agent: str) -> tuple[str, Session]:
        """A new session: (the cookie's value, the session)."""
        token = secrets.token_urlsafe(32)  # 256 bits
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        key = digest(token)
        self._run("INSERT INTO sessions (id, account_id, csrf, created, last_seen, client, agent)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)", (key, account.id, csrf, now, now, client, agent[:200]))
        return token, Session(key, account, csrf, now, now, client, agent[:200])

    def session(self, token: str) -> Session | None:
        """The live session of a cookie value (its last use bumped), or None."""
        if not token or len(token) > 100:
            return None
        now = self.clock()
        key = digest(token)
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE last_seen < ? OR created < ?",
                         (now - IDLE_SECONDS, now - ABSOLUTE_SECONDS))
            row = conn.execute(
                "SELECT s.id, a.id, a.name, a.language, s.csrf, s.created, s.last_seen, s.client, s.agent"
                " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.id = ?", (key,)).fetchone()
            if row is not None and now - row[6] > 60:
                conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, key))
        conn.close()
        if row is None:
            return None
        return Session(row[0], Account(row[1], row[2], row[3]), row[4], row[5], row[6], row[7], row[8])

    def sessions(self, account_id: int) -> list[Session]:
        rows = self._run(
            "SELECT s.id, a.id, a.name, a.language, s.csrf, s.created, s.last_seen, s.client, s.agent"
            " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE a.id = ? ORDER BY s.last_seen DESC",
            (account_id,))
        return [Session(r[0], Account(r[1], r[2], r[3]), *r[4:]) for r in rows]

    def close_session(self, key: str, account_id: int | None = None) -> None:
        if account_id is None:
            self._run("DELETE FROM sessions WHERE id = ?", (key,))
        else:
            self._run("DELETE FROM sessions WHERE id = ? AND account_id = ?", (key, account_id))

    # -- API tokens (scripts, a telco's app) ----------------------------------------------

    def create_token(self, account: Account, name: str) -> str:
        """A new API token for ``account``: its value (shown once; only its digest is kept)."""
        name = name.strip()[:40] or "token"
        token = "gdn_" + secrets.token_urlsafe(32)
        self._run("INSERT INTO tokens (id, account_id, name, created) VALUES (?, ?, ?, ?)",
                  (digest(token), account.id, name, self.clock()))
        return token

    def token(self, value: str) -> Session | None:
        """The account an API token acts as (as a session without CSRF token), or None."""
        if not value.startswith("gdn_") or len(value) > 100:
            return None
        key = digest(value)
        rows = self._run("SELECT t.id, a.id, a.name, a.language, t.created, t.name FROM tokens t"
                         " JOIN accounts a ON a.id = t.account_id WHERE t.id = ?", (key,))
        if not rows:
            return None
        now = self.clock()
        self._run("UPDATE tokens SET last_used = ? WHERE id = ?", (now, key))
        r = rows[0]
        return Session("token:" + r[0], Account(r[1], r[2], r[3]), "", r[4], now, "", f"API token {r[5]}")

    def tokens(self, account_id: int) -> list[dict[str, Any]]:
        rows = self._run("SELECT id, name, created, last_used FROM tokens WHERE account_id = ? ORDER BY created",
                         (account_id,))
        return [{"key": r[0], "name": r[1], "created": r[2], "last_used": r[3]} for r in rows]

    def revoke_token(self, key: str, account_id: int) -> None:
        self._run("DELETE FROM tokens WHERE id = ? AND account_id = ?", (key, account_id))

    # -- throttling ---------------------------------------------------------------------

    def locked_for(self, *keys: str) -> float:
        """Seconds until a login may be tried again for any of ``keys`` (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            rows = self._run("SELECT time FROM failures WHERE key = ? AND time > ? ORDER BY time DESC LIMIT ?",
                             (key, now - LOCK_SECONDS, LOCK_AFTER))
            if len(rows) >= LOCK_AFTER:
                wait = max(wait, rows[-1][0] + LOCK_SECONDS - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM failures WHERE time < ?", (now - LOCK_SECONDS,))
            conn.executemany("INSERT INTO failures (key, time) VALUES (?, ?)", [(k, now) for k in keys])
        conn.close()

    # -- audit ---------------------------------------------------------------------------

    def audit(self, account: str, action: str, target: str = "", detail: str = "") -> None:
        self._run("INSERT INTO audit (time, account, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                  (self.clock(), account, action, target, detail[:500]))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._run("SELECT time, account, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
                         (limit,))
        return [{"time": r[0], "account": r[1], "action": r[2], "target": r[3], "detail": r[4]} for r in rows]


_DUMMY = hash_password("not a password of anyone's")
