"""The store file: created when missing, set aside when corrupt, migrated with a copy kept."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from test_store_support import T0, blocked, rec, sql, write

from guardian.config import StoreSettings
from guardian.store import Recorder, StoreError
from guardian.store.db import CURRENT_VERSION, MIGRATIONS, check_file, migrate, open_database


def test_missing_database_and_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "guardian.db"
    write(path, [rec()])
    assert sql(path, "SELECT count(*) FROM queries") == [(1,)]
    assert sql(path, "PRAGMA auto_vacuum") == [(2,)]  # incremental: retention can shrink the file


def _ruin_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for p in range(2, len(data) // page):  # keep page 1 (header and schema), trash the rest
        data[p * page: p * page + 200] = b"\xa5" * 200
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "truncated-header", "broken-pages"])
def test_corrupt_database_is_set_aside_and_reported(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "guardian.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all" * 100)
    elif damage == "truncated-header":
        path.write_bytes(b"SQLite format")
    else:
        write(path, [rec(T0 + i, f"n{i}.example") for i in range(3000)])
        _ruin_middle(path)
    assert check_file(path) is not None
    original = path.read_bytes()
    r = write(path, [blocked()])
    aside = list(tmp_path.glob("guardian.db.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert any(p.read_bytes() == original for p in aside)  # kept as it was, for forensics
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    assert sql(path, "SELECT count(*) FROM queries") == [(1,)]
    rows = sql(path, "SELECT kind, threat, message FROM risk_events WHERE kind = 'system'")
    assert len(rows) == 1 and rows[0][1] == "storage" and "moved to guardian.db.corrupt-" in rows[0][2]
    assert r.writer.written == 1


def _v1_with_data(path: Path) -> None:
    assert migrate(path, target=1) == 1
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO labels (id, text) VALUES (?, ?)", [(1, "allowed"), (2, "blocked"), (3, "Child")])
        conn.executemany("INSERT INTO domains (id, name) VALUES (?, ?)", [(1, "ok.example"), (2, "bet.example")])
        conn.execute("INSERT INTO clients (id, ip, mac, device) VALUES (1, '192.168.1.20', '', 'Tab')")
        conn.executemany(
            "INSERT INTO queries (time, client_id, profile_id, domain_id, qtype, action_id, rcode) VALUES (?, 1, 3, ?, 1, ?, 0)",
            [(T0, 1, 1), (T0 + 1, 2, 2), (T0 + 2, 2, 2), (T0 + 4000, 2, 2)])
        conn.execute("INSERT INTO risk_events (key, kind, first, last, severity, count) VALUES ('k', 'blocked', ?, ?, 'high', 3)",
                     (T0, T0 + 2))
    conn.close()


def test_migration_from_v1_keeps_data_and_fills_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    _v1_with_data(path)
    db = open_database(path)
    db.close()
    assert sql(path, "PRAGMA user_version") == [(CURRENT_VERSION,)]
    assert sql(path, "SELECT count(*) FROM queries") == [(4,)]
    assert sql(path, "SELECT key, count, state FROM risk_events") == [("k", 3, "new")]
    hour = int(T0 // 3600) * 3600
    assert sql(path, "SELECT hour, domain_id, client_id, profile_id, count FROM blocked_hourly ORDER BY hour") == [
        (hour, 2, 1, 3, 2), (hour + 3600, 2, 1, 3, 1)]
    backup = tmp_path / "guardian.db.v1.bak"
    assert sql(backup, "PRAGMA user_version") == [(1,)]
    assert sql(backup, "SELECT count(*) FROM queries") == [(4,)]
    # The migrated file takes new records, reusing the old ids.
    write(path, [blocked(T0 + 10, "bet.example", device="Tab", client="192.168.1.20", mac=None)])
    assert sql(path, "SELECT count(*) FROM domains") == [(2,)]
    assert sql(path, "SELECT sum(count) FROM blocked_hourly WHERE domain_id = 2") == [(4,)]


def test_failed_migration_leaves_the_old_database_whole_and_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    _v1_with_data(path)
    before = sql(path, "SELECT * FROM queries ORDER BY id")
    v2 = list(MIGRATIONS[1][1])  # type: ignore[arg-type]
    broken = [MIGRATIONS[0], (2, [*v2, "CREATE TABLE broken ("]), MIGRATIONS[2]]
    with pytest.raises(StoreError, match="migration to schema v3 failed.*unchanged at v1"):
        open_database(path, broken)
    assert sql(path, "PRAGMA user_version") == [(1,)]
    assert sql(path, "SELECT * FROM queries ORDER BY id") == before
    assert sql(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('blocked_hourly', 'usage_hourly')") == [(0,)]
    assert sql(path, "SELECT name FROM pragma_table_info('risk_events') WHERE name = 'state'") == []
    backup = tmp_path / "guardian.db.v1.bak"
    assert sql(backup, "SELECT * FROM queries ORDER BY id") == before


def test_a_newer_schema_is_refused_and_dns_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_database(path)

    async def main() -> Recorder:
        r = Recorder(path, StoreSettings(flush_seconds=0.05))
        await r.start()  # does not raise: the daemon keeps serving DNS
        r.record(rec())
        await r.stop()
        return r

    r = asyncio.run(main())
    assert "newer" in (r.writer.last_error or "")
    assert r.health()["waiting"] == 1
    assert sql(path, "PRAGMA user_version") == [(99,)]
