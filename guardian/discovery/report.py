"""``guardian devices``: the device registry from the store's file, while the daemon runs.

Read-only (WAL lets it read beside the daemon's writers); without a database, or one
from before the registry existed, there is nothing to show yet.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ..config import Settings
from ..printable import printable
from ..store.db import make_engine
from ..store.records import DB_NAME
from ..store.tables import device_addresses, devices

PRIVATE_NOTE = ("* private (random) MAC address: the device may change it per network or over time; "
                "Guardian follows it by DHCP client id and hostname where it can, so rules set for it "
                "may not follow it everywhere.")


def read_devices(settings: Settings) -> list[dict[str, Any]]:
    """The registry's devices, most recently seen first (times in epoch seconds)."""
    path = settings.data_dir / DB_NAME
    if not path.exists():
        return []
    engine = make_engine(path, readonly=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(devices).order_by(devices.c.last_seen.desc())).mappings().all()
            addresses: dict[int, list[tuple[float, str]]] = {}
            for ip, device_id, seen in conn.execute(select(device_addresses.c.ip, device_addresses.c.device_id,
                                                           device_addresses.c.last_seen)):
                addresses.setdefault(device_id, []).append((seen, ip))
    except OperationalError:  # no devices table yet (the daemon has not migrated the file)
        return []
    finally:
        engine.dispose()
    out = []
    for r in rows:
        ips = [ip for _, ip in sorted(addresses.get(r["id"], []), reverse=True)]
        out.append({
            "name": r["name"] or r["hostname"] or r["mac"],
            "mac": r["mac"],
            "ips": ips,
            "hostname": r["hostname"],
            "vendor": r["vendor"],
            "random_mac": bool(r["random_mac"]),
            "first_seen": r["first_seen"],
            "last_seen": r["last_seen"],
            "profile": r["profile"],
            "previous_macs": (r["macs"] or "").split(),
            "client_id": r["client_id"],
            "vendor_class": r["vendor_class"],
            "fingerprint": r["fingerprint"],
            "interface": r["interface"],
            "sources": (r["sources"] or "").split(),
        })
    return out


def devices_report(settings: Settings, as_json: bool = False) -> str:
    """Text table or JSON list (``name, mac, ips, hostname, vendor, random_mac, first_seen,
    last_seen, profile`` and more; JSON times are ISO 8601 in the household's zone)."""
    found = read_devices(settings)
    zone = settings.zone

    def iso(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")

    if as_json:
        for d in found:
            d["first_seen"] = iso(d["first_seen"])
            d["last_seen"] = iso(d["last_seen"])
        return json.dumps(found, indent=1, ensure_ascii=False)
    if not found:
        return "no devices seen yet"
    lines = [f"{'name':<28} {'mac':<18} {'addresses':<32} {'maker':<24} {'profile':<10} last seen"]
    for d in found:
        mac = d["mac"] + ("*" if d["random_mac"] else "")
        ips = ", ".join(d["ips"][:3]) + (" ..." if len(d["ips"]) > 3 else "")
        # Names may be the device's own DHCP hostname: escaped, so it cannot drive the terminal.
        lines.append(f"{printable(d['name'])[:28]:<28} {mac:<18} {ips or '-':<32} {printable(d['vendor'])[:24]:<24} "
                     f"{printable(d['profile']) or '-':<10} {iso(d['last_seen'])[:16].replace('T', ' ')}")
    if any(d["random_mac"] for d in found):
        lines += ["", PRIVATE_NOTE]
    return "\n".join(lines)
