"""The neighbour tables the Identify step reads: netlink parsing and the IPv6 cache's
re-read rules (tests/test_identify_ipv6.py runs the whole thing in namespaces)."""

from __future__ import annotations

import socket
import struct

import pytest

from guardian.dns.steps.policy import Neighbours
from guardian.netlink import NLMSG_DONE, NUD_INCOMPLETE, RTM_NEWNEIGH, neighbours, parse_neighbours

NUD_REACHABLE = 0x02
NUD_STALE = 0x04


def _attr(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _neigh(address: str, mac: str | None, state: int, family: int = socket.AF_INET6) -> bytes:
    body = struct.pack("=BBHiHBB", family, 0, 0, 2, state, 0, 1)
    body += _attr(1, socket.inet_pton(family, address))
    if mac is not None:
        body += _attr(2, bytes.fromhex(mac.replace(":", "")))
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWNEIGH, 2, 1, 0) + body


DONE = struct.pack("=IHHII", 20, NLMSG_DONE, 2, 1, 0) + b"\0" * 4


def test_parse_keeps_resolved_entries_only():
    data = (_neigh("fd78::2", "B8:27:EB:12:34:56", NUD_REACHABLE) + _neigh("fe80::1", "b8:27:eb:00:00:01", NUD_STALE)
            + _neigh("fd78::9", None, NUD_INCOMPLETE) + _neigh("fd78::8", "b8:27:eb:00:00:08", NUD_INCOMPLETE)
            + _neigh("10.0.0.1", "b8:27:eb:00:00:02", NUD_REACHABLE, socket.AF_INET))
    found, done = parse_neighbours(data)
    assert found == {"fd78::2": "b8:27:eb:12:34:56", "fe80::1": "b8:27:eb:00:00:01"} and not done
    assert parse_neighbours(data + DONE) == (found, True)


def test_parse_refuses_a_truncated_message():
    with pytest.raises(OSError):
        parse_neighbours(_neigh("fd78::2", "b8:27:eb:12:34:56", NUD_REACHABLE)[:-3])


def test_the_real_kernel_table_can_be_read():
    assert isinstance(neighbours(), dict)  # no privilege needed; this host's table may be empty


class FakeTable:
    def __init__(self) -> None:
        self.table: dict[str, str] = {}
        self.reads = 0

    def __call__(self) -> dict[str, str]:
        self.reads += 1
        return dict(self.table)


def test_a_new_address_is_found_on_a_miss_and_misses_are_rate_limited(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]
    monkeypatch.setattr("guardian.dns.steps.policy.time.monotonic", lambda: clock[0])
    table = FakeTable()
    n = Neighbours(read6=table, refresh6=3.0, miss_interval=0.2)
    assert n.mac("fd78::2") is None and table.reads == 1
    table.table["fd78::2"] = "b8:27:eb:12:34:56"
    assert n.mac("fd78::2") is None and table.reads == 1  # a miss right after a read: no re-read
    clock[0] += 0.25
    assert n.mac("fd78::2") == "b8:27:eb:12:34:56" and table.reads == 2  # a later miss re-reads
    clock[0] += 1
    assert n.mac("fd78::2") == "b8:27:eb:12:34:56" and table.reads == 2  # a hit is served from the copy
    assert n.mac("fe80::ba27:ebff:fe12:3456%br0") is None  # scope ignored; unknown
    table.table["fe80::ba27:ebff:fe12:3456"] = "b8:27:eb:12:34:56"
    clock[0] += 0.25
    assert n.mac("fe80::ba27:ebff:fe12:3456%br0") == "b8:27:eb:12:34:56"
    del table.table["fd78::2"]
    clock[0] += 3.5
    assert n.mac("fd78::2") is None  # an old copy is not trusted for a hit past refresh6


def test_loopback_never_reads_or_probes():
    table = FakeTable()
    n = Neighbours(read6=table)
    assert n.mac("::1") is None and table.reads == 0
    assert not n.may_probe("::1") and not n.may_probe("127.0.0.1") and not n.may_probe("::ffff:10.0.0.2")


def test_an_address_is_probed_once_a_minute():
    n = Neighbours(read6=FakeTable())
    assert n.may_probe("fd78::5") and not n.may_probe("fd78::5")
    assert n.may_probe("fd78::6")


def test_parse_keeps_addresses_being_resolved_when_asked():
    data = _neigh("fd78::9", None, NUD_INCOMPLETE) + _neigh("fd78::2", "b8:27:eb:12:34:56", NUD_REACHABLE) + DONE
    assert parse_neighbours(data, incomplete=True) == ({"fd78::9": "", "fd78::2": "b8:27:eb:12:34:56"}, True)


def test_an_address_being_resolved_is_a_miss():
    table = FakeTable()
    table.table["fd78::9"] = ""
    assert Neighbours(read6=table).mac("fd78::9") is None


def test_a_probe_waits_for_the_kernel_only_while_it_resolves():
    import asyncio
    import time

    class Resolving(FakeTable):
        def __call__(self) -> dict[str, str]:
            self.reads += 1
            return {"::1": "b8:27:eb:12:34:56" if self.reads >= 3 else ""}

    on_link = Resolving()
    assert asyncio.run(Neighbours(read6=on_link).probe("::1")) == "b8:27:eb:12:34:56" and on_link.reads == 3
    off_link = FakeTable()  # no entry even after the probe went out: not on the link
    started = time.monotonic()
    assert asyncio.run(Neighbours(read6=off_link, probe_wait=1.0).probe("::1")) is None
    assert off_link.reads == 1 and time.monotonic() - started < 0.5
    never = FakeTable()
    never.table["::1"] = ""  # the kernel never gets an answer: the wait is bounded
    started = time.monotonic()
    assert asyncio.run(Neighbours(read6=never, probe_wait=0.05).probe("::1")) is None
    assert time.monotonic() - started < 0.5
