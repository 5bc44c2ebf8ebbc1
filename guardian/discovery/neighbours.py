"""The kernel's neighbour tables: IPv4 from /proc/net/arp, IPv6 from ``ip -6 neigh``.

Cheap (no capture, no privilege) and always on: it is what discovery still has when it
may not sniff. The kernel only knows neighbours it talked to, so a device that never
talks to Guardian (or through it) shows up here only when Guardian is its gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .. import netlink
from .packets import Sighting
from .vendors import is_device_mac, normal_mac

log = logging.getLogger(__name__)

ARP_PATH = Path(netlink.ARP_PATH)
GOOD_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}


def read_arp(text: str, interfaces: Collection[str] = ()) -> list[Sighting]:
    """Sightings from /proc/net/arp's text (header line first)."""
    found = []
    for ip, hw, dev in netlink.arp_entries(text):
        mac = normal_mac(hw)
        if interfaces and dev not in interfaces:
            continue
        if mac is None or not is_device_mac(mac):
            continue
        found.append(Sighting(mac, ip, "neigh", dev))
    return found


def read_ip_neigh(text: str, interfaces: Collection[str] = ()) -> list[Sighting]:
    """Sightings from ``ip -6 neigh show`` lines (``ADDR dev IF lladdr MAC [router] STATE``)."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if "lladdr" not in parts or "dev" not in parts:
            continue
        dev = parts[parts.index("dev") + 1]
        mac = normal_mac(parts[parts.index("lladdr") + 1])
        if interfaces and dev not in interfaces:
            continue
        if mac is None or not is_device_mac(mac) or parts[-1] not in GOOD_STATES:
            continue
        found.append(Sighting(mac, parts[0].split("%")[0], "neigh", dev))
    return found


async def neighbours(interfaces: Collection[str] = (), arp_path: Path = ARP_PATH) -> list[Sighting]:
    """Both tables now (the IPv6 one through the ``ip`` tool, without blocking the loop)."""
    found: list[Sighting] = []
    try:
        found += read_arp(await asyncio.to_thread(arp_path.read_text), interfaces)
    except OSError as exc:
        log.debug("discovery: cannot read %s: %s", arp_path, exc)
    try:
        proc = await asyncio.create_subprocess_exec("ip", "-6", "neigh", "show", stdout=subprocess.PIPE,
                                                    stderr=subprocess.DEVNULL)
        out, _ = await proc.communicate()
        found += read_ip_neigh(out.decode("utf-8", "replace"), interfaces)
    except OSError as exc:
        log.debug("discovery: cannot run ip -6 neigh: %s", exc)
    return found


@dataclass(frozen=True)
class Interface:
    """One interface of this host: its MAC and addresses (``ip/prefix`` text)."""

    name: str
    mac: str | None
    addresses: tuple[str, ...]


def interfaces() -> list[Interface]:
    """This host's interfaces (from ``ip -j addr``); blocking, run it in a thread. [] on failure."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, check=True, timeout=10).stdout
        data = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("discovery: cannot list interfaces: %s", exc)
        return []
    result = []
    for item in data:
        addrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in item.get("addr_info", []) if "local" in a)
        result.append(Interface(item.get("ifname", ""), normal_mac(item.get("address") or ""), addrs))
    return result
