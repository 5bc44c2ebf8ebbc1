"""Helpers shared by the store tests (imported as ``test_store_support``), and schema checks."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from guardian.config import PrivacySettings, StoreSettings
from guardian.store import QueryRecord, Recorder
from guardian.store.db import CURRENT_VERSION, open_database
from guardian.store.tables import metadata

T0 = 1_764_324_000.0  # 2025-11-28 10:00:00 UTC, a Friday
PARIS = ZoneInfo("Europe/Paris")


def rec(t: float = T0, name: str = "example.com", **kw: Any) -> QueryRecord:
    fields: dict[str, Any] = {"client": "192.168.1.20", "device": "Sam's tablet", "mac": "aa:bb:cc:dd:ee:ff",
                              "profile": "Child", "qtype": 1, "action": "allowed", "rcode": 0, "source": "upstream"}
    fields.update(kw)
    return QueryRecord(time=t, name=name, **fields)


def blocked(t: float = T0, name: str = "bet.example", category: str = "gambling", **kw: Any) -> QueryRecord:
    kw.setdefault("threat", category)
    kw.setdefault("severity", "high")
    return rec(t, name, action="blocked", rcode=3, source="policy", reason="category", category=category, **kw)


def write(path: Path, records: Iterable[QueryRecord], mode: str = "full", zone: ZoneInfo = PARIS,
          side: Iterable[tuple[str, tuple[Any, ...]]] = (), **store: Any) -> Recorder:
    """Record ``records`` through a real Recorder (start, record, stop) and return it."""
    async def main() -> Recorder:
        r = Recorder(path, StoreSettings(**store), PrivacySettings(mode=mode), zone)
        await r.start()
        for x in records:
            r.record(x)
        for method, args in side:
            getattr(r, method)(*args)
        await r.stop()
        return r
    return asyncio.run(main())


def sql(path: Path, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def test_migrations_build_what_tables_py_describes(tmp_path: Path) -> None:
    db = open_database(tmp_path / "guardian.db")
    db.close()
    path = tmp_path / "guardian.db"
    assert sql(path, "PRAGMA user_version") == [(CURRENT_VERSION,)]
    assert sql(path, "PRAGMA journal_mode") == [("wal",)]
    for table in metadata.sorted_tables:
        columns = [row[1] for row in sql(path, f"PRAGMA table_info({table.name})")]
        assert columns == [c.name for c in table.columns], table.name
        indexes = {row[1] for row in sql(path, f"PRAGMA index_list({table.name})") if not row[1].startswith("sqlite_")}
        assert indexes == {i.name for i in table.indexes}, table.name
