"""The device registry: sightings merged into devices (saved to the store by persist.py).

Identity rules:
- a device is its MAC; its addresses (IPv4, IPv6, link-local) all belong to it, so a
  device seen on IPv4 and IPv6 is one device;
- an address belongs to one device at a time: seen from another MAC, it moves;
- a private (locally administered) MAC changes per network or over time, so a new
  private MAC that sends a DHCP client id, or the hostname, of a known private-MAC device
  becomes that device (its old MAC kept in ``macs``). The hostname alone only links when
  the old MAC has been quiet for ``HOSTNAME_QUIET`` seconds: two phones both called
  "iPhone" that are on at the same time stay two devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .packets import Sighting
from .vendors import UNKNOWN, Vendors, is_random

MAX_ADDRESSES = 16  # per device; IPv6 privacy addresses churn daily: the oldest go
HOSTNAME_QUIET = 600.0  # seconds

# (ip, mac, hostname) -> (household device name or None, profile name or None)
Identify = Callable[[str | None, str, str | None], tuple[str | None, str | None]]


@dataclass
class Device:
    """One device of the registry (mutable; owned by the event loop's thread)."""

    mac: str
    first_seen: float
    last_seen: float
    addresses: dict[str, float] = field(default_factory=dict)  # ip -> last seen
    macs: list[str] = field(default_factory=list)  # earlier private MACs, oldest first
    hostname: str | None = None
    vendor: str = UNKNOWN
    vendor_class: str | None = None
    client_id: str | None = None
    fingerprint: str | None = None
    interface: str | None = None
    sources: set[str] = field(default_factory=set)
    name: str = ""
    profile: str | None = None
    announced: bool = False
    id: int | None = None

    @property
    def random_mac(self) -> bool:
        return is_random(self.mac)

    def label(self, household_name: str | None = None) -> str:
        """What a parent sees: the household's name, the hostname, or maker and MAC."""
        if household_name:
            return household_name
        if self.hostname:
            return self.hostname
        if self.vendor != UNKNOWN:
            return f"{self.vendor} ({self.mac})"
        return f"private-address device ({self.mac})" if self.random_mac else self.mac

    def ips(self) -> list[str]:
        """Addresses, most recently seen first."""
        return sorted(self.addresses, key=lambda ip: -self.addresses[ip])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name or self.label(),
            "mac": self.mac,
            "ips": self.ips(),
            "hostname": self.hostname,
            "vendor": self.vendor,
            "random_mac": self.random_mac,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "profile": self.profile,
            "previous_macs": list(self.macs),
            "client_id": self.client_id,
            "vendor_class": self.vendor_class,
            "fingerprint": self.fingerprint,
            "interface": self.interface,
            "sources": sorted(self.sources),
        }


class Registry:
    """Devices by MAC, address, DHCP client id; ``see`` merges a sighting, ``save`` writes changes."""

    def __init__(self, vendors: Vendors | None = None, identify: Identify | None = None) -> None:
        self.vendors = vendors or Vendors()
        self.identify = identify
        self.by_mac: dict[str, Device] = {}
        self.by_ip: dict[str, Device] = {}
        self.dirty: set[int] = set()  # id() of devices changed since the last save
        self._devices: list[Device] = []

    def devices(self) -> list[Device]:
        return list(self._devices)

    def find(self, s: Sighting, now: float) -> Device | None:
        """The known device this sighting belongs to (by MAC, or a private MAC's client id/hostname)."""
        device = self.by_mac.get(s.mac)
        if device is not None or not is_random(s.mac):
            return device
        if s.client_id:
            for d in self._devices:
                if d.client_id == s.client_id and d.random_mac:
                    return d
        if s.hostname:
            host = s.hostname.lower()
            for d in self._devices:
                if d.random_mac and d.hostname and d.hostname.lower() == host and now - d.last_seen >= HOSTNAME_QUIET:
                    return d
        return None

    def see(self, s: Sighting, now: float | None = None) -> tuple[Device, bool]:
        """Merge one sighting; returns the device and whether it is new to the registry."""
        now = time.time() if now is None else now
        device = self.find(s, now)
        new = device is None
        if device is None:
            device = Device(s.mac, now, now, vendor=self.vendors.vendor(s.mac))
            self._devices.append(device)
            self.by_mac[s.mac] = device
        elif device.mac != s.mac:
            self._move_mac(device, s.mac)
        device.last_seen = max(device.last_seen, now)
        device.sources.add(s.source)
        if s.interface:
            device.interface = s.interface
        for name in ("hostname", "client_id", "vendor_class", "fingerprint"):
            value = getattr(s, name)
            if value:
                setattr(device, name, value)
        if s.ip:
            self._take_address(device, s.ip, now)
        self.dirty.add(id(device))
        return device, new

    def _move_mac(self, device: Device, mac: str) -> None:
        self.by_mac.pop(device.mac, None)
        if device.mac not in device.macs:
            device.macs = [*device.macs, device.mac][-8:]
        device.mac = mac
        device.vendor = self.vendors.vendor(mac)
        self.by_mac[mac] = device

    def _take_address(self, device: Device, ip: str, now: float) -> None:
        holder = self.by_ip.get(ip)
        if holder is not None and holder is not device:
            holder.addresses.pop(ip, None)  # a new lease or a reused address: it moved
            self.dirty.add(id(holder))
        device.addresses[ip] = now
        self.by_ip[ip] = device
        if len(device.addresses) > MAX_ADDRESSES:
            for old in device.ips()[MAX_ADDRESSES:]:
                device.addresses.pop(old, None)
                if self.by_ip.get(old) is device:
                    del self.by_ip[old]

    def refresh_names(self, changed: Iterable[Device]) -> None:
        """Ask the household which device and profile each is (names are stored for the CLI)."""
        for d in changed:
            household_name: str | None = None
            profile: str | None = None
            if self.identify is not None:
                try:
                    household_name, profile = self.identify(d.ips()[0] if d.addresses else None, d.mac, d.hostname)
                except Exception:  # noqa: BLE001 - a household bug must not stop discovery
                    household_name, profile = None, None
            d.name = d.label(household_name)
            d.profile = profile

    def take_dirty(self) -> list[Device]:
        ids, self.dirty = self.dirty, set()
        return [d for d in self._devices if id(d) in ids]

    # -- persistence (call in a worker thread) ----------------------------------------

    def load_rows(self, rows: Iterable[dict[str, Any]], addresses: Iterable[tuple[str, int, float]]) -> None:
        """Fill an empty registry from stored rows (persist.py reads them)."""
        by_id: dict[int, Device] = {}
        for r in rows:
            d = Device(
                mac=r["mac"], first_seen=r["first_seen"], last_seen=r["last_seen"],
                macs=[m for m in (r["macs"] or "").split() if m], hostname=r["hostname"],
                vendor=r["vendor"] or UNKNOWN, vendor_class=r["vendor_class"], client_id=r["client_id"],
                fingerprint=r["fingerprint"], interface=r["interface"], sources=set((r["sources"] or "").split()),
                name=r["name"] or "", profile=r["profile"], announced=bool(r["announced"]), id=r["id"],
            )
            by_id[r["id"]] = d
            self._devices.append(d)
            self.by_mac[d.mac] = d
        for ip, device_id, seen in addresses:
            holder = by_id.get(device_id)
            if holder is not None:
                holder.addresses[ip] = seen
                self.by_ip[ip] = holder

    @staticmethod
    def snapshot(changed: Iterable[Device]) -> list[tuple[Device, dict[str, Any], dict[str, float]]]:
        """Copies of the changed devices' values, taken on the loop for the writer."""
        out = []
        for d in changed:
            values = {
                "mac": d.mac, "macs": " ".join(d.macs), "name": d.name, "hostname": d.hostname, "vendor": d.vendor,
                "vendor_class": d.vendor_class, "client_id": d.client_id, "fingerprint": d.fingerprint,
                "random_mac": int(d.random_mac), "profile": d.profile, "interface": d.interface,
                "sources": " ".join(sorted(d.sources)), "first_seen": d.first_seen, "last_seen": d.last_seen,
                "announced": int(d.announced),
            }
            out.append((d, values, dict(d.addresses)))
        return out
