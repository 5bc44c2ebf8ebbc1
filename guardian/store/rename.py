"""A profile or a device renamed by a parent: its history goes with it.

The log and its rollups name profiles by a label id and devices by a client row, so a
rename re-points those to the new name (merging with rows the new name has gathered in
the meantime) instead of leaving "Sam" and "Samuel" as two children in the charts, the
weekly digest and today's budget. Run by the writer, the one process that writes
guardian.db; the raw log is re-pointed in id ranges, one short transaction each, so the
work a rename costs on a 10-million-row log never holds one long write lock.
"""

from __future__ import annotations

from typing import Any

CHUNK = 100_000  # log rows per transaction
KINDS = ("profile", "device")


def _one(conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
    row = conn.exec_driver_sql(sql, params).fetchone()
    return None if row is None else row[0]


def _label(conn: Any, text: str) -> int:
    conn.exec_driver_sql("INSERT OR IGNORE INTO labels (text) VALUES (?)", (text,))
    return int(_one(conn, "SELECT id FROM labels WHERE text = ?", (text,)))


def _columns(conn: Any, table: str) -> tuple[list[str], list[str]]:
    """A table's columns and its primary key's columns."""
    info = list(conn.exec_driver_sql(f"PRAGMA table_info({table})"))
    return [r[1] for r in info], [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]


def _rollups(conn: Any, column: str) -> list[tuple[str, list[str], list[str]]]:
    """Tables (besides the raw log) keyed by ``column`` with a primary key that holds it:
    the hourly and daily rollups, whatever rollups later versions add."""
    names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = []
    for name in names:
        if name == "queries":
            continue
        cols, key = _columns(conn, name)
        if column in key:
            out.append((name, cols, key))
    return out


def _merge(conn: Any, table: str, cols: list[str], key: list[str], column: str, old: Any, new: Any) -> int:
    """Move ``table``'s rows from ``column`` = old to new, adding counts (minutes capped
    at an hour's) into rows the new value already has."""
    summed = [c for c in cols if c not in key and c in ("count", "minutes", "queries", "blocked", "allowed")]
    select = ", ".join("?" if c == column else c for c in cols)
    updates = ", ".join(
        f"{c} = min(60, {c} + excluded.{c})" if c == "minutes" else f"{c} = {c} + excluded.{c}" for c in summed)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}" if updates else "ON CONFLICT DO NOTHING"
    cur = conn.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} WHERE {column} = ? {conflict}",
        (new, old))
    moved = max(int(cur.rowcount), 0)
    conn.exec_driver_sql(f"DELETE FROM {table} WHERE {column} = ?", (old,))
    return moved


def _log(engine: Any, column: str, old: int, new: int) -> int:
    """Re-point the raw log's ``column`` from ``old`` to ``new`` in id ranges."""
    with engine.begin() as conn:
        top = _one(conn, "SELECT max(id) FROM queries", ()) or 0
    changed = 0
    for start in range(0, int(top), CHUNK):
        with engine.begin() as conn:
            cur = conn.exec_driver_sql(
                f"UPDATE queries SET {column} = ? WHERE {column} = ? AND id > ? AND id <= ?",
                (new, old, start, start + CHUNK))
            changed += max(int(cur.rowcount), 0)
    return changed


def rename_profile(engine: Any, old: str, new: str) -> int:
    """The profile ``old`` is now called ``new``; how many stored rows changed."""
    with engine.begin() as conn:
        old_id = _one(conn, "SELECT id FROM labels WHERE text = ?", (old,))
        new_id = _label(conn, new)
        changed = 0
        if old_id is not None:
            for table, cols, key in _rollups(conn, "profile_id"):
                changed += _merge(conn, table, cols, key, "profile_id", old_id, new_id)
        for table, cols, key in _rollups(conn, "profile"):
            changed += _merge(conn, table, cols, key, "profile", old, new)
        for table in ("risk_events", "devices"):
            cur = conn.exec_driver_sql(f"UPDATE {table} SET profile = ? WHERE profile = ?", (new, old))
            changed += max(int(cur.rowcount), 0)
    if old_id is not None:
        changed += _log(engine, "profile_id", int(old_id), new_id)
    return changed


def rename_device(engine: Any, old: str, new: str) -> int:
    """The device ``old`` is now called ``new``; how many stored rows changed."""
    changed = 0
    moved: list[tuple[int, int]] = []
    with engine.begin() as conn:
        for cid, ip, mac in list(conn.exec_driver_sql("SELECT id, ip, mac FROM clients WHERE device = ?", (old,))):
            other = _one(conn, "SELECT id FROM clients WHERE ip = ? AND mac = ? AND device = ?", (ip, mac, new))
            if other is None:
                conn.exec_driver_sql("UPDATE clients SET device = ? WHERE id = ?", (new, cid))
                changed += 1
                continue
            # The new name already has a row for this address (queries since the rename).
            for table, cols, key in _rollups(conn, "client_id"):
                changed += _merge(conn, table, cols, key, "client_id", cid, other)
            moved.append((int(cid), int(other)))
        for table, column in (("risk_events", "device"), ("devices", "name")):
            cur = conn.exec_driver_sql(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))
            changed += max(int(cur.rowcount), 0)
    for cid, other in moved:
        with engine.begin() as conn:  # indexed (queries_client_time): no scan of the log
            cur = conn.exec_driver_sql("UPDATE queries SET client_id = ? WHERE client_id = ?", (other, cid))
            changed += max(int(cur.rowcount), 0)
            conn.exec_driver_sql("DELETE FROM clients WHERE id = ?", (cid,))
    return changed


def rename(writer: Any, kind: str, old: str, new: str) -> int:
    """Rename in the store the writer holds, and in what the writer keeps in memory
    (open risk events, the ids it remembers); how many stored rows changed."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {', '.join(KINDS)}")
    if old == new or not old or not new:
        return 0
    engine = writer.db.engine
    changed = rename_profile(engine, old, new) if kind == "profile" else rename_device(engine, old, new)
    writer.risk.rename(kind, old, new)
    writer._forget_ids()  # client rows merged away: ids are read again  # noqa: SLF001
    return changed
