"""The Discovery service: neighbour table, passive capture and sweeps feeding one registry.

Runs on the event loop; everything that blocks (capture, sweeps, SQLite) runs in threads.
Without CAP_NET_RAW (or libpcap, or the interface) capture and sweeps are off, said once
in the log and in ``problems``; the neighbour table keeps the registry going.

Where bypass detection works: Guardian must see the devices' packets to other resolvers,
so it works when Guardian is the LAN's gateway (the packets cross its LAN interface) or
its interface gets a copy (a switch's mirror port). On an ordinary switched LAN where
Guardian is only the DNS server, a device's packets to the router or to 8.8.8.8 never
reach it: nothing can be seen, and only DNS-level protection (the bypass category's
blocked DoH/VPN names, the Firefox canary) applies. DoH is recognised only when a device
connects to port 443 of an address that a DNS answer seen on the wire gave for a known
DoH name (the rule packs' bypass list); DoH to hard-coded addresses, or to a name
resolved over an already encrypted channel, is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from ..config import DiscoverySettings, Settings
from ..errors import GuardianError
from ..printable import printable
from ..store.records import DB_NAME
from .neighbours import Interface, interfaces, neighbours
from .packets import Bypass, DohAnswer, DohNames, Found, Sighting
from .persist import LocalPersist, Persist
from .registry import Device, Identify, Registry
from .vendors import Vendors

log = logging.getLogger(__name__)

BYPASS_REPEAT = 600.0  # seconds before the same device/server/kind is reported again
MAX_DOH_ADDRESSES = 64


class OnNewDevice(Protocol):
    def __call__(self, *, mac: str | None, ip: str | None, name: str | None, detail: str) -> None: ...


OnBypass = Callable[[str, str, str], None]  # (mac, ip, detail)


def default_doh_names() -> list[str]:
    """The bypass rule pack's names (DoH/DoT resolvers among VPNs and proxies)."""
    from ..policy.rulepacks import default_rules_dir

    path = default_rules_dir() / "lists" / "bypass.txt"
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    except OSError:
        return []


class Discovery:
    """Keeps the device registry; ``start``/``stop`` on the event loop."""

    def __init__(
        self,
        settings: DiscoverySettings,
        data_dir: Path,
        on_new_device: OnNewDevice | None = None,
        on_bypass: OnBypass | None = None,
        identify: Identify | None = None,
        doh_names: Iterable[str] | None = None,
        vendors: Vendors | None = None,
        tick: float = 1.0,
        neighbour_seconds: float = 30.0,
        flush_seconds: float = 5.0,
        sweep_rate: float = 100.0,
        persist: Persist | None = None,
        remember: bool = True,
    ) -> None:
        self.settings = settings
        # False (privacy mode anonymous): the registry lives in memory only; nothing of
        # it is read from or written to the store.
        self.remember = remember
        self.path = data_dir / DB_NAME
        self.persist: Persist = persist or LocalPersist(self.path)
        self.on_new_device = on_new_device
        self.on_bypass = on_bypass
        self.registry = Registry(vendors or Vendors(), identify)
        self._doh_names_given = doh_names
        self.doh_names = DohNames()
        self.doh_addresses: dict[str, float] = {}  # learned DoH address -> when
        self.tick = tick
        self.neighbour_seconds = neighbour_seconds
        self.flush_seconds = flush_seconds
        self.sweep_rate = sweep_rate
        self.capture: Any = None  # a capture.Capture while passive capture runs
        self.problems: list[str] = []  # why parts are off (said once in the log too)
        self.own: list[Interface] = []
        self.bypasses: list[Bypass] = []  # reported, newest last (bounded)
        self._reported: dict[tuple[str, str, str], float] = {}
        self._saving = False  # the store takes device changes (between start and stop)
        self._task: asyncio.Task[None] | None = None
        self._sweeping = False
        self._capture_health: dict[str, Any] | None = None  # the last counters, kept after stop

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Discovery:
        kwargs.setdefault("remember", settings.privacy.mode != "anonymous")
        return cls(settings.discovery, settings.data_dir, **kwargs)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the registry and start the sources. Start it after the store's Recorder,
        which creates and migrates the database first."""
        if self.remember:
            await self.persist.open()
            try:
                self.registry.load_rows(*await self.persist.load())
            except Exception as exc:  # noqa: BLE001 - devices come back as they are seen; saving retries
                self._problem(f"the stored devices could not be read ({exc}); starting from the network")
            self._saving = True
        self.own = await asyncio.to_thread(interfaces)
        names = self._doh_names_given if self._doh_names_given is not None else default_doh_names()
        self.doh_names = DohNames(names)
        await asyncio.to_thread(self.registry.vendors.load)
        if self.settings.passive:
            await self._start_capture()
        self._task = asyncio.create_task(self._run(), name="guardian-discovery")

    async def _start_capture(self) -> None:
        from .capture import Capture, CaptureError

        wanted = list(self.settings.interfaces)
        if not wanted:
            self._problem("discovery.interfaces is empty: no passive capture (the neighbour table still works)")
            return
        capture = Capture(wanted, self.own_macs(), self.own_ips(), self.doh_names)
        try:
            await asyncio.to_thread(capture.open)
        except CaptureError as exc:
            self._problem(f"passive discovery is off: {exc}; the neighbour table still works")
            return
        capture.start()
        self.capture = capture

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)
            log.warning("discovery: %s", message)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.capture is not None:
            await asyncio.to_thread(self.capture.stop)
            self._take(self.capture.drain())
            self._capture_health = self.capture.health()
            self.capture = None
        await self.flush()
        if self._saving:
            self._saving = False
            await self.persist.close()

    async def _run(self) -> None:
        next_neigh = next_flush = next_sweep = time.monotonic()
        sweep_every = self.settings.sweep_minutes * 60
        while True:
            now = time.monotonic()
            try:
                if self.capture is not None:
                    self._take(self.capture.drain())
                if now >= next_neigh:
                    next_neigh = now + self.neighbour_seconds
                    self._take(await neighbours(self.settings.interfaces))
                if sweep_every and now >= next_sweep and not self._sweeping:
                    next_sweep = now + sweep_every
                    asyncio.get_running_loop().create_task(self.sweep())
                if now >= next_flush:
                    next_flush = now + self.flush_seconds
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - discovery must outlive one bad round
                log.exception("discovery: a round failed")
            await asyncio.sleep(self.tick)

    # -- what the sources found -----------------------------------------------------

    def own_macs(self) -> set[str]:
        return {i.mac for i in self.own if i.mac}

    def own_ips(self) -> set[str]:
        return {a.split("/")[0] for i in self.own for a in i.addresses}

    def _take(self, found: Iterable[Found]) -> None:
        now = time.time()
        own_macs = self.own_macs()
        learned = False
        for item in found:
            if isinstance(item, Sighting):
                if item.mac not in own_macs:
                    self.registry.see(item, now)
            elif isinstance(item, Bypass):
                self._bypass(item, now)
            elif isinstance(item, DohAnswer):
                for address in item.addresses:
                    learned |= address not in self.doh_addresses
                    self.doh_addresses[address] = now
        if learned and self.capture is not None:
            newest = sorted(self.doh_addresses, key=lambda a: -self.doh_addresses[a])[:MAX_DOH_ADDRESSES]
            self.doh_addresses = {a: self.doh_addresses[a] for a in newest}
            self.capture.set_doh_hosts(newest)

    def _bypass(self, item: Bypass, now: float) -> None:
        key = (item.mac, item.server, item.kind)
        if now - self._reported.get(key, -1e12) < BYPASS_REPEAT:
            return
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported[key] = now
        self.bypasses = [*self.bypasses[-99:], item]
        device = self.registry.by_mac.get(item.mac)
        who = device.label() if device is not None else item.mac
        log.info("discovery: bypass by %s (%s): %s", printable(who), item.ip, printable(item.detail()))
        if self.on_bypass is not None:
            try:
                self.on_bypass(item.mac, item.ip, item.detail())
            except Exception:  # noqa: BLE001
                log.exception("discovery: bypass callback failed")

    async def sweep(self) -> int:
        """One ARP sweep of each configured interface's IPv4 subnets; returns hosts found."""
        from .sweep import arp_sweep

        self._sweeping = True
        total = 0
        try:
            for iface in self.own:
                if iface.name not in self.settings.interfaces or not iface.mac:
                    continue
                for address in iface.addresses:
                    if not isinstance(ipaddress.ip_interface(address), ipaddress.IPv4Interface):
                        continue
                    try:
                        found = await asyncio.to_thread(arp_sweep, iface.name, address, iface.mac, self.sweep_rate)
                    except Exception as exc:  # noqa: BLE001 - PermissionError without CAP_NET_RAW, scapy errors
                        self._problem(f"ARP sweeps are off: {exc}")
                        return total
                    self._take(Sighting(mac, ip, "sweep", iface.name) for ip, mac in found)
                    total += len(found)
        finally:
            self._sweeping = False
        return total

    async def flush(self) -> None:
        """Announce new devices and write what changed (in a thread)."""
        changed = self.registry.take_dirty()
        if not changed:
            return
        self.registry.refresh_names(changed)
        for d in changed:
            if not d.announced:
                d.announced = True
                self._announce(d)
        if not self._saving:
            return
        snapshots = self.registry.snapshot(changed)
        try:
            ids = await self.persist.save([(d.id, values, addresses) for d, values, addresses in snapshots])
        except Exception as exc:  # noqa: BLE001 - the store may be busy, full or read-only: try again next time
            if not isinstance(exc, GuardianError):
                log.exception("discovery: cannot save the registry")
            elif str(exc) != getattr(self, "_save_error", None):  # the store said why: once, not every round
                self._save_error = str(exc)
                log.warning("discovery: cannot save the registry (kept in memory, tried again): %s", exc)
            self.registry.dirty.update(id(d) for d in changed)
            return
        for (d, _values, _addresses), device_id in zip(snapshots, ids, strict=True):
            d.id = device_id

    def _announce(self, d: Device) -> None:
        parts = [f"maker {d.vendor}"]
        if d.hostname:
            parts.append(f"hostname {d.hostname}")
        if d.vendor_class:
            parts.append(f"DHCP vendor class {d.vendor_class}")
        if d.random_mac:
            parts.append("private (random) MAC address: rules set for this device may not follow it "
                         "when it changes address or network")
        detail = "; ".join(parts)
        log.info("discovery: new device %s (%s): %s", printable(d.name), d.mac, printable(detail))
        if self.on_new_device is not None:
            ip = d.ips()[0] if d.addresses else None
            try:
                self.on_new_device(mac=d.mac, ip=ip, name=d.name, detail=detail)
            except Exception:  # noqa: BLE001
                log.exception("discovery: new-device callback failed")

    # -- readers --------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """The registry, most recently seen first (JSON-ready; times in epoch seconds)."""
        found = sorted(self.registry.devices(), key=lambda d: -d.last_seen)
        return [d.to_json() for d in found]

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"devices": len(self.registry.devices()), "problems": list(self.problems),
                               "doh_addresses": len(self.doh_addresses)}
        if self.capture is not None:
            out["capture"] = self.capture.health()
        elif self._capture_health is not None:
            out["capture"] = self._capture_health
        return out
