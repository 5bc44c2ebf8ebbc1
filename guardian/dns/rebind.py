"""Rebinding protection: public names may not answer with the household's own addresses.

A web page on ``attacker.example`` whose name later resolves to 192.168.1.1 gets the
browser to talk to the router, the box itself or the dashboard as if it were the
same site (DNS rebinding). Like dnsmasq's ``stop-dns-rebind`` and Unbound's
``private-address``, upstream answers are screened before they are cached: A and
AAAA records holding a private, loopback, link-local, CGNAT or unspecified address
(IPv4-mapped and NAT64 forms included) are removed, and so are such addresses among
the ipv4hint/ipv6hint of HTTPS and SVCB records; the rest of the answer stays
(a name left with no address is answered NODATA, as Unbound does). Names the
household runs itself keep their addresses: single-label names, the LAN-only
domains (``lan``, ``home.arpa``, ``local``...), the box's own domain (of its local
names, and the household's ``local_domain``) and every domain in ``dns.rebind_allow``,
with their subdomains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from dnslib import QTYPE, DNSRecord

from .chain import Answer, Next, Query, then
from .upstreams.base import UpstreamFailure
from .wire import HEADER, RR_FIXED, T_A, T_AAAA, T_HTTPS, T_SVCB, U16, parse_reply, skip_name

log = logging.getLogger(__name__)

# Domains that only ever exist inside a home network (RFC 8375, RFC 6762, ICANN's
# .internal, and the names routers hand out by DHCP).
LAN_DOMAINS = ("lan", "home", "home.arpa", "local", "internal", "localdomain")

_NAT64 = bytes.fromhex("0064ff9b0000000000000000")  # 64:ff9b::/96 (RFC 6052)


def private_v4(b: bytes) -> bool:
    """0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.168/16."""
    first, second = b[0], b[1]
    return (
        first in (0, 10, 127)
        or (first == 192 and second == 168)
        or (first == 172 and 16 <= second <= 31)
        or (first == 169 and second == 254)
        or (first == 100 and 64 <= second <= 127)
    )


def private_v6(b: bytes) -> bool:
    """fc00::/7, fe80::/10, fec0::/10, ::, ::1, and the IPv4-mapped/NAT64 forms of private IPv4."""
    if b[0] & 0xFE == 0xFC or (b[0] == 0xFE and b[1] & 0x80):
        return True
    if not any(b[:10]):
        if b[10:12] == b"\xff\xff":
            return private_v4(b[12:])
        if not any(b[10:15]) and b[15] <= 1:
            return True
    return b[:12] == _NAT64 and private_v4(b[12:])


def private_records(data: bytes) -> bool:
    """True when the DNS message ``data`` holds an A/AAAA record with a private address."""
    _qid, _flags, qd, an, ns, ar = HEADER.unpack_from(data)
    pos = 12
    for _ in range(qd):
        pos = skip_name(data, pos) + 4
    for _ in range(an + ns + ar):
        pos = skip_name(data, pos)
        rtype, _rclass, _ttl, rdlen = RR_FIXED.unpack_from(data, pos)
        rdata = pos + 10
        pos = rdata + rdlen
        if rtype == T_A and rdlen == 4 and private_v4(data[rdata:pos]):
            return True
        if rtype == T_AAAA and rdlen == 16 and private_v6(data[rdata:pos]):
            return True
        if rtype in (T_SVCB, T_HTTPS) and rdlen > 2 and _private_hints(data, skip_name(data, rdata + 2), pos):
            return True
    return False


def _private_hints(data: bytes, at: int, end: int) -> bool:
    """True when the SvcParams in ``data[at:end]`` hint at a private address."""
    while at + 4 <= end:
        key, length = U16.unpack_from(data, at)[0], U16.unpack_from(data, at + 2)[0]
        value = data[at + 4 : at + 4 + length]
        at += 4 + length
        if key == _IPV4HINT and any(private_v4(value[i : i + 4]) for i in range(0, len(value) - 3, 4)):
            return True
        if key == _IPV6HINT and any(private_v6(value[i : i + 16]) for i in range(0, len(value) - 15, 16)):
            return True
    return False


_IPV4HINT, _IPV6HINT = 4, 6  # SvcParamKeys (RFC 9460)


def _without_private_hints(rr: object) -> None:
    """Drop private addresses from an HTTPS/SVCB record's hints (a hint left empty goes)."""
    rdata = getattr(rr, "rdata", None)
    params = getattr(rdata, "params", None)
    if getattr(rr, "rtype", 0) not in (QTYPE.HTTPS, QTYPE.SVCB) or params is None:
        return
    kept = []
    for key, value in params:
        value = bytes(value)
        if key == _IPV4HINT:
            value = b"".join(value[i : i + 4] for i in range(0, len(value) - 3, 4) if not private_v4(value[i : i + 4]))
        elif key == _IPV6HINT:
            value = b"".join(value[i : i + 16] for i in range(0, len(value) - 15, 16)
                             if not private_v6(value[i : i + 16]))
        if value or key not in (_IPV4HINT, _IPV6HINT):
            kept.append((key, bytearray(value)))
    rdata.params = kept  # type: ignore[union-attr]


def _is_private_rr(rr: object) -> bool:
    rtype = getattr(rr, "rtype", 0)
    if rtype not in (QTYPE.A, QTYPE.AAAA):
        return False
    packed = bytes(getattr(rr.rdata, "data", b""))  # type: ignore[attr-defined]
    if rtype == QTYPE.A:
        return len(packed) == 4 and private_v4(packed)
    return len(packed) == 16 and private_v6(packed)


class Rebind:
    """Screens upstream answers (sits between the cache and the upstreams, so the cache
    holds the screened answer and a cache hit costs nothing more)."""

    LOG_EVERY = 10.0  # seconds between log lines about dropped answers

    def __init__(self, allow: Iterable[str] = (), local_names: Iterable[str] = (), holder: Any = None) -> None:
        domains = {d.lower().rstrip(".") for d in allow if d}
        domains.update(LAN_DOMAINS)
        for name in local_names:  # guardian.lan -> lan; guardian.home.example.net -> home.example.net
            _first, dot, parent = name.lower().rstrip(".").partition(".")
            if dot and parent:
                domains.add(parent)
        self.allow = frozenset(domains)
        self.holder = holder  # the policy's snapshot holder: the household's local_domain
        self.dropped = 0  # answers that lost records
        self._last_log = -1e9

    def allowed(self, name: str) -> bool:
        """True for names whose private addresses are the household's own."""
        if "." not in name:
            return True  # a single-label LAN name ("nas", "router")
        if self.holder is not None:
            own = self.holder.current.household.local_domain
            if own and (name == own or name.endswith("." + own)):
                return True
        allow = self.allow
        suffix = name
        while True:
            if suffix in allow:
                return True
            dot = suffix.find(".")
            if dot < 0:
                return False
            suffix = suffix[dot + 1 :]

    def resolve(self, query: Query, nxt: Next) -> Answer:
        if self.allowed(query.q.name):
            return nxt(query)
        return then(nxt(query), lambda answer: self.screen(query, answer))

    def screen(self, query: Query, answer: bytes) -> bytes:
        """``answer`` without its private addresses; ``query.reply`` follows suit."""
        if query.reply is None:
            return answer
        try:
            if not private_records(answer):
                return answer
            record = DNSRecord.parse(answer)
            record.rr = [rr for rr in record.rr if not _is_private_rr(rr)]
            record.auth = [rr for rr in record.auth if not _is_private_rr(rr)]
            record.ar = [rr for rr in record.ar if not _is_private_rr(rr)]
            for rr in (*record.rr, *record.auth, *record.ar):  # an alias's target may come as additional data
                _without_private_hints(rr)
            record.header.ad = 0  # no longer the answer as validated upstream
            screened = bytes(record.pack())
            reply = parse_reply(screened)
        except Exception as exc:  # noqa: BLE001 - an answer that cannot be screened is not passed on
            raise UpstreamFailure(f"cannot screen the answer for {query.q.name}: {exc}") from exc
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_log >= self.LOG_EVERY:
            self._last_log = now
            log.info("rebinding protection: dropped private addresses in the answer for %s "
                     "(add the domain to dns.rebind_allow if it is the household's own)", query.q.name)
        query.reply = reply
        query.cnames = tuple(reply.cnames)
        query.ttls, query.ttl_base = reply.ttls, reply.question_end
        return screened
