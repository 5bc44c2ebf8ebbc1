"""Who changed the household, when, and what: ``data_dir/audit.db`` (stdlib sqlite3).

Every change reaches the household through the control socket, so its server writes one
row per successful write action, whoever called: the dashboard (it names the signed-in
parent's account in ``actor``) or the command line (``cli <unix user>``, from the
socket's peer credentials). Reads (``state``, ``usage``...) are not written. The
dashboard reads the file read-only for its Settings page; it keeps its own account
events (logins, accounts, tokens) in web.db.
"""

from __future__ import annotations

import json
import pwd
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

DB_NAME = "audit.db"
WRITES = frozenset({"pause", "resume", "bonus", "allow", "block", "import", "profile-set", "profile-list",
                    "profile-add", "profile-remove", "profile-rename", "schedule-add", "schedule-remove",
                    "budget-set", "device-set", "device-remove", "settings-set", "household-restore"})
_NOT_DETAIL = ("action", "actor", "revision", "text", "target", "profile", "name")
_SCHEMA = ("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, who TEXT NOT NULL,"
           " action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '')")
_lock = threading.Lock()


def who(payload: dict[str, Any], uid: int | None) -> str:
    actor = payload.get("actor")
    if isinstance(actor, str) and actor.strip():
        return actor.strip()[:40]
    try:
        user = pwd.getpwuid(uid).pw_name if uid is not None else "?"
    except KeyError:
        user = str(uid)
    return f"cli {user}"


def record(data_dir: Path, payload: dict[str, Any], uid: int | None, now: float | None = None) -> None:
    """Append one change (call off the DNS loop: it touches the disk)."""
    target = str(payload.get("target") or payload.get("profile") or payload.get("name") or "")[:100]
    detail = {k: v for k, v in payload.items() if k not in _NOT_DETAIL and (
        isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(isinstance(x, str) for x in v)))}
    if payload.get("action") in ("import", "household-restore"):
        detail["filename"] = str(payload.get("filename") or "")
    with _lock:
        conn = sqlite3.connect(data_dir / DB_NAME, timeout=5)
        try:
            with conn:
                conn.execute(_SCHEMA)
                conn.execute("INSERT INTO audit (time, who, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                             (now or time.time(), who(payload, uid), str(payload.get("action")), target,
                              json.dumps(detail, ensure_ascii=False, sort_keys=True)[:500]))
        finally:
            conn.close()


def read(data_dir: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The newest changes first (read-only; nothing before the first change)."""
    path = data_dir / DB_NAME
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        rows = conn.execute("SELECT time, who, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
                            (limit,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [{"time": r[0], "account": r[1], "action": r[2], "target": r[3], "detail": _words(r[4])} for r in rows]


def _words(detail: str) -> str:
    try:
        data = json.loads(detail)
    except ValueError:
        return detail
    return " ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else detail
