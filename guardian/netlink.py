"""The kernel's neighbour tables: IPv6 through rtnetlink (stdlib only, no ``ip``
process), IPv4 from /proc/net/arp (``arp_entries``: the one parser of that file, for
the DNS side and discovery alike).

One ``RTM_GETNEIGH`` dump over a raw ``AF_NETLINK`` socket: a few hundred microseconds
for a household's table, cheap enough to read on the DNS loop when a client's address
is not in the last copy (a new temporary address, a link-local one). No privilege is
needed to read the table.
"""

from __future__ import annotations

import socket
import struct

RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NDA_DST = 1
NDA_LLADDR = 2
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NUD_NOARP = 0x40

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NDMSG = struct.Struct("=BBHiHBB")  # family, pad, pad, ifindex, state, flags, type
_RTATTR = struct.Struct("=HH")  # len, type


ARP_PATH = "/proc/net/arp"
ATF_COM = 0x2  # the entry is complete: the kernel resolved the MAC


def arp_entries(text: str) -> list[tuple[str, str, str]]:
    """(IPv4 address, MAC in lower case, interface) of the complete entries of
    /proc/net/arp's text (header line first); incomplete ones name nobody."""
    found = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            complete = int(parts[2], 16) & ATF_COM
        except ValueError:
            continue
        mac = parts[3].lower()
        if complete and mac != "00:00:00:00:00:00":
            found.append((parts[0], mac, parts[5]))
    return found


class NetlinkError(OSError):
    """The kernel refused the dump, or its answer could not be read."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_neighbours(data: bytes, family: int = socket.AF_INET6,
                     incomplete: bool = False) -> tuple[dict[str, str], bool]:
    """Address -> MAC from a chunk of ``RTM_NEWNEIGH`` messages; True once the dump is done.

    Entries without a link-layer address, still being resolved (INCOMPLETE), failed, or
    NOARP (loopback, tunnels) are left out; with ``incomplete`` an entry being resolved
    is kept with the MAC "" (the kernel is asking: the address is on the link). MACs
    are lower case, colon separated.
    """
    found: dict[str, str] = {}
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError("a truncated netlink message")
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, body)[0] if length >= _NLMSGHDR.size + 4 else 0
            if code:
                raise NetlinkError(-code, "the kernel refused the neighbour dump")
        elif kind == RTM_NEWNEIGH and length >= _NLMSGHDR.size + _NDMSG.size:
            fam, _p1, _p2, _ifindex, state, _fl, _type = _NDMSG.unpack_from(data, body)
            address = mac = None
            at = body + _NDMSG.size
            end = offset + length
            while at + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, at)
                if alen < _RTATTR.size:
                    break
                value = data[at + _RTATTR.size : at + alen]
                if atype == NDA_DST:
                    if fam == socket.AF_INET6 and len(value) == 16:
                        address = socket.inet_ntop(socket.AF_INET6, value)
                    elif fam == socket.AF_INET and len(value) == 4:
                        address = socket.inet_ntop(socket.AF_INET, value)
                elif atype == NDA_LLADDR and len(value) == 6:
                    mac = value.hex(":")
                at += _align(alen)
            if fam != family or not address or state & (NUD_FAILED | NUD_NOARP):
                pass
            elif state & NUD_INCOMPLETE:
                if incomplete:  # a link-local address is one entry per interface: a MAC wins
                    found.setdefault(address, "")
            elif mac and mac != "00:00:00:00:00:00":
                found[address] = mac
        offset += _align(length)
    return found, False


def neighbours(family: int = socket.AF_INET6, timeout: float = 0.5, incomplete: bool = False) -> dict[str, str]:
    """The kernel's neighbour table of ``family`` now: address (no scope) -> MAC
    (with ``incomplete``, "" for an address being resolved).

    Blocking, but bounded by ``timeout`` seconds; raises OSError (NetlinkError) when
    netlink is not available or answers nonsense.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        request = _NDMSG.pack(family, 0, 0, 0, 0, 0, 0)
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                  + request)
        table: dict[str, str] = {}
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise NetlinkError("netlink closed during the neighbour dump")
            found, done = parse_neighbours(chunk, family, incomplete)
            for address, mac in found.items():
                if mac or address not in table:  # never let an INCOMPLETE entry on another link hide a MAC
                    table[address] = mac
            if done:
                return table
