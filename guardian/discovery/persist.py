"""Where the device registry is kept: the ``devices`` tables of the store's SQLite file.

Two ways to reach it, one interface (``open``, ``load``, ``save``, ``close``, all async):

- ``LocalPersist``: SQLAlchemy in a worker thread of this process (the discovery tool,
  tests);
- ``RemotePersist``: messages to the store's writer process, which owns the file
  (the daemon, so its DNS process never loads SQLAlchemy).

``save`` takes ``(id or None, column values, {address: last seen})`` per changed device
and returns each device's row id (new rows get one).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..store.process import RemoteWriter

Rows = tuple[list[dict[str, Any]], list[tuple[str, int, float]]]  # devices, (ip, device id, last seen)
Item = tuple[int | None, dict[str, Any], dict[str, float]]


class Persist(Protocol):
    async def open(self) -> None: ...
    async def load(self) -> Rows: ...
    async def save(self, items: list[Item]) -> list[int]: ...
    async def close(self) -> None: ...


def read_rows(engine: Engine) -> Rows:
    from sqlalchemy import select

    from ..store.tables import device_addresses, devices

    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(devices)).mappings()]
        addresses = [(ip, int(device_id), float(seen)) for ip, device_id, seen in conn.execute(
            select(device_addresses.c.ip, device_addresses.c.device_id, device_addresses.c.last_seen))]
    return rows, addresses


def save_rows(engine: Engine, items: list[Item]) -> list[int]:
    """Write changed devices and their addresses in one transaction; their row ids."""
    from sqlalchemy import delete, insert, select, update

    from ..store.tables import device_addresses, devices

    ids: list[int] = []
    with engine.begin() as conn:
        for device_id, values, addresses in items:
            if device_id is None:
                # A row for this MAC from an earlier run not loaded (or a MAC moved back): take it over.
                row = conn.execute(select(devices.c.id).where(devices.c.mac == values["mac"])).first()
                if row is None:
                    key = conn.execute(insert(devices).values(**values)).inserted_primary_key
                    assert key is not None
                    device_id = int(key[0])
                else:
                    device_id = int(row[0])
            # A MAC taken over from another row (a private MAC recognised): that row gives it up.
            conn.execute(delete(devices).where(devices.c.mac == values["mac"], devices.c.id != device_id))
            conn.execute(update(devices).where(devices.c.id == device_id).values(**values))
            conn.execute(delete(device_addresses).where(device_addresses.c.device_id == device_id))
            if addresses:
                conn.execute(delete(device_addresses).where(device_addresses.c.ip.in_(list(addresses))))
                conn.execute(insert(device_addresses),
                             [{"ip": ip, "device_id": device_id, "last_seen": seen} for ip, seen in addresses.items()])
            ids.append(device_id)
    return ids


class LocalPersist:
    """The store file opened here (created and migrated if needed), used from threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._engine: Engine | None = None

    async def open(self) -> None:
        from ..store.db import open_database

        db = await asyncio.to_thread(open_database, self.path)
        self._engine = db.engine

    async def load(self) -> Rows:
        assert self._engine is not None
        return await asyncio.to_thread(read_rows, self._engine)

    async def save(self, items: list[Item]) -> list[int]:
        if self._engine is None:
            raise RuntimeError("the device store is closed")
        return await asyncio.to_thread(save_rows, self._engine, items)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class RemotePersist:
    """The store's writer process does the reading and writing (see store/process.py)."""

    def __init__(self, remote: RemoteWriter) -> None:
        self.remote = remote

    async def open(self) -> None:
        return None  # the writer process opened (created, migrated) the file at its start

    async def load(self) -> Rows:
        rows: Rows = await self.remote.ask(("devices-load",), "devices")
        return rows

    async def save(self, items: list[Item]) -> list[int]:
        ids: list[int] = await self.remote.ask(("devices-save", items), "ids")
        return ids

    async def close(self) -> None:
        return None
