"""Schema versions of household.db and web.db: a file made at an older schema is upgraded
at start (the old file copied aside first), one from a newer Guardian is refused with a
clear message and left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardian.errors import GuardianError
from guardian.household import storage
from guardian.web.accounts import HASHER, Accounts

GUARDIAN = [sys.executable, "-m", "guardian"]
# web.db as Guardian wrote it before API tokens (schema 1, commit 7ceb7b5^).
WEB_V1 = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  hash TEXT NOT NULL, language TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE sessions (id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, csrf TEXT NOT NULL,
  created REAL NOT NULL, last_seen REAL NOT NULL, client TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '');
CREATE TABLE failures (key TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX failures_key ON failures (key, time);
CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, account TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
PRAGMA user_version = 1;
"""


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_schema_1_web_db_is_upgraded_and_its_accounts_still_sign_in(tmp_path):
    path = tmp_path / "web" / "web.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(WEB_V1)
    conn.execute("INSERT INTO accounts (name, hash, created) VALUES (?, ?, ?)",
                 ("mum", HASHER.hash("correct horse battery"), time.time()))
    conn.commit()
    conn.close()
    accounts = Accounts(path)
    assert version(path) == 2
    assert accounts.check("mum", "correct horse battery") is not None
    mum = accounts.find("mum")
    assert mum is not None and accounts.create_token(mum, "phone")  # the new table works
    backup = path.with_name("web.db.v1.bak")
    assert backup.is_file() and version(backup) == 1  # the old file, copied aside first
    conn = sqlite3.connect(backup)
    assert conn.execute("SELECT name FROM accounts").fetchall() == [("mum",)]
    conn.close()


def test_a_web_db_from_a_newer_guardian_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "web.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE accounts (id INTEGER); PRAGMA user_version = 9;")
    conn.close()
    before = digest(path)
    with pytest.raises(GuardianError, match=r"web.db was written by a newer Guardian \(schema 9; this one reads "
                                            r"up to schema 2\): upgrade Guardian again, or restore a backup"):
        Accounts(path)
    assert digest(path) == before


def test_a_household_db_from_a_newer_guardian_stops_the_daemon_with_a_clear_message(tmp_path, upstream):
    from support import free_port

    var = tmp_path / "var"
    var.mkdir()
    path = var / "household.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE household (id INTEGER); PRAGMA user_version = 5;")
    conn.close()
    before = digest(path)
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(f"data_dir: ./var\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{free_port()}']\n"
                   f"  upstreams: ['{upstream.url}']\n")
    result = subprocess.run([*GUARDIAN, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "household.db was written by a newer Guardian (schema 5; this one reads up to schema" in result.stderr
    assert digest(path) == before and not list(var.glob("household.db.damaged-*"))


def test_an_older_household_db_is_upgraded_with_a_copy_aside(tmp_path, monkeypatch):
    # Schema 1 is the first household.db; its upgrade path is checked with a next step added
    # here (the real steps list is extended the same way when schema 2 comes).
    path = tmp_path / "household.db"
    conn = sqlite3.connect(path)  # household.db as schema 1 writes it
    conn.executescript("CREATE TABLE household (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL,"
                       " origin TEXT NOT NULL, seed TEXT NOT NULL, updated REAL NOT NULL);"
                       "CREATE TABLE overrides (kind TEXT NOT NULL, target TEXT NOT NULL,"
                       " domain TEXT NOT NULL DEFAULT '', until REAL, created REAL NOT NULL);"
                       "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO household (id, data, origin, seed, updated) VALUES (1, '{}', 'config', '', 0)")
    conn.commit()
    conn.close()
    assert version(path) == storage.SCHEMA_VERSION == 1
    monkeypatch.setattr(storage, "MIGRATIONS",
                        [*storage.MIGRATIONS, (2, "ALTER TABLE household ADD COLUMN note TEXT NOT NULL DEFAULT ''")])
    assert storage.HouseholdStore(path).load() is not None
    assert version(path) == 2 and version(path.with_name("household.db.v1.bak")) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT origin, note FROM household").fetchall() == [("config", "")]
    conn.close()
