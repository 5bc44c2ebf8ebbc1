"""MAC addresses: normal form, the private (locally administered) bit, and the maker's name.

Makers come from an offline copy of the IEEE registry shipped by a Debian package:
``ieee-data`` (``/usr/share/ieee-data/oui.txt``), else wireshark's ``manuf`` file
(``/usr/share/wireshark/manuf``, package ``libwireshark-data``). Without either, every
vendor is "unknown": discovery keeps working.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
OUI_PATHS = (Path("/usr/share/ieee-data/oui.txt"), Path("/usr/share/wireshark/manuf"))

_HEX = re.compile(r"[0-9a-f]{12}")
# oui.txt: "B8-27-EB   (hex)\t\tRaspberry Pi Foundation"
_IEEE_LINE = re.compile(r"^([0-9A-Fa-f]{2})-([0-9A-Fa-f]{2})-([0-9A-Fa-f]{2})\s+\(hex\)\s+(.+?)\s*$")
# manuf: "B8:27:EB\tRaspberr\tRaspberry Pi Foundation" (only 24-bit prefixes are read)
_MANUF_LINE = re.compile(r"^([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})\s+(\S+)(?:\s+(.+?))?\s*$")


def normal_mac(text: str) -> str | None:
    """``AA-BB-CC-DD-EE-FF`` / ``aabb.ccdd.eeff`` / ... -> ``aa:bb:cc:dd:ee:ff``; None if not a MAC."""
    digits = re.sub(r"[^0-9a-f]", "", text.lower())
    if not _HEX.fullmatch(digits):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def is_random(mac: str) -> bool:
    """The locally administered bit: private/random addresses (phones, laptops) set it."""
    return bool(int(mac[:2], 16) & 0x02)


def is_device_mac(mac: str) -> bool:
    """A unicast address a device can own (not broadcast, multicast or all zeroes)."""
    return not (int(mac[:2], 16) & 0x01) and mac != "00:00:00:00:00:00"


class Vendors:
    """OUI -> maker name, read once (lazily, ~40k lines, tens of ms) from the first file found."""

    def __init__(self, paths: tuple[Path, ...] = OUI_PATHS) -> None:
        self.paths = paths
        self._table: dict[str, str] | None = None
        self._lock = threading.Lock()
        self.source: Path | None = None

    def load(self) -> dict[str, str]:
        with self._lock:
            if self._table is None:
                self._table = self._read()
            return self._table

    def _read(self) -> dict[str, str]:
        for path in self.paths:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            table: dict[str, str] = {}
            for line in text.splitlines():
                m = _IEEE_LINE.match(line)
                if m:
                    table[(m.group(1) + m.group(2) + m.group(3)).lower()] = m.group(4)
                    continue
                m = _MANUF_LINE.match(line)
                if m:
                    table[(m.group(1) + m.group(2) + m.group(3)).lower()] = m.group(5) or m.group(4)
            if table:
                self.source = path
                return table
        log.warning("discovery: no OUI database (install Debian's ieee-data): device makers will show as unknown")
        return {}

    def vendor(self, mac: str) -> str:
        """The maker registered for ``mac``'s OUI; "unknown" for private addresses and unregistered ones."""
        if is_random(mac):
            return UNKNOWN  # a locally administered address names no maker
        return self.load().get(mac.replace(":", "")[:6], UNKNOWN)
