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
from typing import TYPE_CHECKING, Protocol

from ..store.devices import Item, Rows, read_rows, save_rows

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..store.process import RemoteWriter


class Persist(Protocol):
    async def open(self) -> None: ...
    async def load(self) -> Rows: ...
    async def save(self, items: list[Item]) -> list[int]: ...
    async def close(self) -> None: ...


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
