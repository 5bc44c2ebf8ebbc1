"""The device registry's rows in the store's file: read them all, save the changed ones.

SQLAlchemy work for discovery (discovery/persist.py), here in the store so the writer
process can do it without importing the discovery service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

Rows = tuple[list[dict[str, Any]], list[tuple[str, int, float]]]  # devices, (ip, device id, last seen)
Item = tuple[int | None, dict[str, Any], dict[str, float]]


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
