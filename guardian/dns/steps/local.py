"""Local names: the box answers for itself (``guardian.lan`` by default).

Parents type the name into a browser to reach the dashboard. The address given is the
one the asking device reaches the box on: the kernel picks it when a UDP socket is
connected towards the client (connect() on UDP sends nothing).
"""

from __future__ import annotations

import ipaddress
import socket

from ...names import text_to_wire
from ..chain import Answer, Next, Query
from ..messages import address_reply, reply_with
from ..wire import NOERROR, T_A, T_AAAA

LOCAL_TTL = 60


def address_towards(client: str, family: int) -> str | None:
    """Our source address for packets to ``client`` in ``family``, or None."""
    target = client.split("%", 1)[0]
    try:
        client_family = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
    except ValueError:
        return None
    if client_family != family:
        target = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        if not ipaddress.ip_address(client.split("%", 1)[0]).is_loopback:
            return _any_address(family)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 53))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _any_address(family: int) -> str | None:
    """A non-loopback address of ``family`` on this host, if there is one."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_DGRAM)
    except OSError:
        return None
    for info in infos:
        address = str(info[4][0])
        if not ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
            return address
    return None


class LocalNames:
    def __init__(self, names: list[str], fixed_addresses: list[str] | None = None) -> None:
        self.names = {n.lower().rstrip(".") for n in names if n}
        self.wire_names = {text_to_wire(n) for n in self.names}
        self.fixed = [ipaddress.ip_address(a) for a in (fixed_addresses or [])]
        self._seen: dict[tuple[str, int], str | None] = {}

    def addresses(self, client: str, qtype: int) -> list[str]:
        family = socket.AF_INET if qtype == T_A else socket.AF_INET6
        version = 4 if qtype == T_A else 6
        fixed = [str(a) for a in self.fixed if a.version == version]
        if self.fixed:
            return fixed
        key = (client, family)
        if key not in self._seen:
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[key] = address_towards(client, family)
        found = self._seen[key]
        return [found] if found else []

    def resolve(self, query: Query, nxt: Next) -> Answer:
        q = query.q
        if not self.wire_names or q.lname not in self.wire_names:
            return nxt(query)
        query.source = "local"
        if q.qtype in (T_A, T_AAAA):
            return address_reply(q, self.addresses(query.client, q.qtype), LOCAL_TTL)
        return reply_with(q, NOERROR)  # the name exists: NODATA for other types
