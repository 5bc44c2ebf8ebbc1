"""Device discovery: who is on the network, by name and maker, and who bypasses Guardian.

- ``Discovery`` (service.py): the running service (neighbour table, passive scapy
  capture, ARP sweeps) keeping the registry in the store's database.
- ``devices_report`` (report.py): ``guardian devices`` output, read-only.
- packets.py, registry.py, vendors.py: pure parts (frame reading, identity, makers).
"""

from __future__ import annotations

from typing import Any

from .service import Discovery

__all__ = ["Discovery", "devices_report", "read_devices"]


def __getattr__(name: str) -> Any:
    # report.py reads the file with SQLAlchemy: the CLI's business, not the daemon's.
    if name in ("devices_report", "read_devices"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
