"""Device discovery: who is on the network, by name and maker, and who bypasses Guardian.

- ``Discovery`` (service.py): the running service (neighbour table, passive scapy
  capture, ARP sweeps) keeping the registry in the store's database.
- ``devices_report`` (report.py): ``guardian devices`` output, read-only.
- packets.py, registry.py, vendors.py: pure parts (frame reading, identity, makers).
"""

from .report import devices_report, read_devices
from .service import Discovery

__all__ = ["Discovery", "devices_report", "read_devices"]
