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
from array import array
from bisect import bisect_left
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
    """OUI -> maker name, read once (lazily, ~33k registrations, ~0.1 s) from the first file found.

    Kept compact, since it lives as long as the daemon: the OUIs in one sorted array,
    each pointing at its maker in a list of distinct names (~19k; one maker registers
    many OUIs). About 4 MB less than a dict of strings built from the whole file.
    """

    def __init__(self, paths: tuple[Path, ...] = OUI_PATHS) -> None:
        self.paths = paths
        self._ouis: array[int] | None = None
        self._makers = array("I")
        self._names: list[str] = []
        self._lock = threading.Lock()
        self.source: Path | None = None

    def load(self) -> int:
        """Read the registry now (discovery does it off the event loop); the number of OUIs."""
        with self._lock:
            if self._ouis is None:
                self._read()
            assert self._ouis is not None
            return len(self._ouis)

    def _read(self) -> None:
        self._ouis = array("I")
        for path in self.paths:
            try:
                table = _parse(path)
            except OSError:
                continue
            if table:
                names: dict[str, int] = {}
                for oui in sorted(table):
                    self._ouis.append(oui)
                    self._makers.append(names.setdefault(table[oui], len(names)))
                self._names = list(names)
                self.source = path
                return
        log.warning("discovery: no OUI database (install Debian's ieee-data): device makers will show as unknown")

    def vendor(self, mac: str) -> str:
        """The maker registered for ``mac``'s OUI; "unknown" for private addresses and unregistered ones."""
        if is_random(mac):
            return UNKNOWN  # a locally administered address names no maker
        self.load()
        assert self._ouis is not None
        oui = int(mac.replace(":", "")[:6], 16)
        at = bisect_left(self._ouis, oui)
        if at < len(self._ouis) and self._ouis[at] == oui:
            return self._names[self._makers[at]]
        return UNKNOWN


def _parse(path: Path) -> dict[int, str]:
    """OUI (24-bit int) -> maker from an oui.txt or manuf file, read line by line."""
    table: dict[int, str] = {}
    makers: dict[str, str] = {}  # one str object per maker, however many OUIs it holds
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            m = _IEEE_LINE.match(line)
            if m:
                maker = m.group(4)
            else:
                m = _MANUF_LINE.match(line)
                if not m:
                    continue
                maker = m.group(5) or m.group(4)
            table[int(m.group(1) + m.group(2) + m.group(3), 16)] = makers.setdefault(maker, maker)
    return table
