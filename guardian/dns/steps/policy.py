"""Identify and policy steps: who is asking, and what their profile allows.

Identify maps the client address (and its MAC from the kernel's neighbour table) to a
device and its profile; unknown devices get the household's default profile. Policy
asks the pure ``decide()`` on the current snapshot and turns the Decision into an
answer: a block (NXDOMAIN, null address, block page or NODATA), a safe-search CNAME
with the target's addresses resolved through the cache and upstreams, or the upstream
answer — checked once more for a CNAME chain leading into a blocked domain.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dnslib import CNAME, EDNS0, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord

from ... import netlink
from ...names import text_to_wire
from ...netlink import ARP_PATH, arp_entries
from ...policy.decide import Decision, DecisionMemo, check_cname_chain
from ...policy.household import Profile
from ...policy.snapshot import PolicyHolder, Snapshot
from ...verdicts import Action
from ..chain import Answer, Next, Query, then
from ..messages import POINTER_TO_QNAME, record, reply_with, soa_record
from ..wire import HEADER, NOERROR, NXDOMAIN, T_A, T_AAAA, U32, WireError, parse_query, parse_reply
from .local import LocalNames

log = logging.getLogger(__name__)

BLOCK_TTL = 10  # seconds a device may cache a block: a parent's unblock applies soon
REWRITE_TTL = 300


class Neighbours:
    """Client address -> MAC from the kernel's neighbour tables, read at query time.

    IPv4 from /proc/net/arp (re-read at most every ``refresh`` seconds); IPv6 from the
    IPv6 neighbour table over netlink (``guardian.netlink``), kept ``refresh6`` seconds
    and re-read on a miss at most every ``miss_interval`` seconds: a device's new
    temporary address or its link-local one is known as soon as the kernel knows it.
    A miss may also ``probe``: a one-byte UDP datagram to the client's discard port
    makes the kernel resolve the address (neighbour discovery), so even the first
    query from an address the kernel never saw names the device.
    """

    def __init__(self, path: str = ARP_PATH, refresh: float = 10.0, *, refresh6: float = 3.0,
                 miss_interval: float = 0.2, read6: Callable[[], dict[str, str]] | None = None,
                 probe_wait: float = 0.25, probe_every: float = 60.0) -> None:
        self.path = Path(path)
        self.refresh = refresh
        self.refresh6 = refresh6  # seconds an IPv6 table read is kept
        self.miss_interval = miss_interval  # seconds between re-reads caused by misses
        self.probe_wait = probe_wait  # seconds a probed query waits for the kernel at most
        self.probe_every = probe_every  # seconds before the same address is probed again
        self._read6 = read6 or _kernel_table6
        self._table: dict[str, str] = {}
        self._read_at = -1e9
        self._table6: dict[str, str] = {}
        self._read6_at = -1e9
        self._probed: dict[str, float] = {}
        self._v6_broken = False

    def mac(self, ip: str) -> str | None:
        if ":" in ip:
            return self._mac6(ip)
        return self._mac4(ip)

    def _mac4(self, ip: str) -> str | None:
        now = time.monotonic()
        if now - self._read_at > self.refresh:
            self._read_at = now
            try:
                self._table = {ip: mac for ip, mac, _dev in arp_entries(self.path.read_text())}
            except OSError:
                self._table = {}
        return self._table.get(ip)

    def _mac6(self, ip: str) -> str | None:
        address = ip.split("%", 1)[0]
        if address.startswith("::ffff:") and "." in address:
            return self._mac4(address[7:])
        if address == "::1" or self._v6_broken:
            return None
        found = self._table6.get(address)  # "": the kernel is resolving it
        now = time.monotonic()
        age = now - self._read6_at
        if found and age <= self.refresh6:
            return found
        if found or age > self.miss_interval:
            self._reread6(now)
            return self._table6.get(address) or None
        return None

    def _reread6(self, now: float) -> None:
        self._read6_at = now
        try:
            self._table6 = {address.lower(): mac for address, mac in self._read6().items()}
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                self._v6_broken = True  # no netlink here: discovery's table is all there is
            log.debug("dns: cannot read the IPv6 neighbour table: %s", exc)

    def may_probe(self, ip: str) -> bool:
        """True when a miss for ``ip`` is worth a probe: a LAN IPv6 address not probed
        in the last ``probe_every`` seconds (bounded memory, a few probes a second)."""
        if ":" not in ip or self._v6_broken or self.probe_wait <= 0:
            return False
        address = ip.split("%", 1)[0]
        if address == "::1" or address.startswith("::ffff:"):
            return False
        now = time.monotonic()
        last = self._probed.get(ip)
        if last is not None and now - last < self.probe_every:
            return False
        if len(self._probed) >= 4096:
            self._probed = {k: t for k, t in self._probed.items() if now - t < self.probe_every}
            if len(self._probed) >= 4096:
                return False
        self._probed[ip] = now
        return True

    async def probe(self, ip: str) -> str | None:
        """Make the kernel resolve ``ip`` and wait (``probe_wait`` s at most) for its MAC."""
        address = ip.split("%", 1)[0]
        if "%" in ip or not address.lower().startswith(("fe8", "fe9", "fea", "feb")):
            try:
                targets = [socket.getaddrinfo(ip, DISCARD_PORT, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]]
            except OSError as exc:
                log.debug("dns: cannot probe %s: %s", ip, exc)
                return None
        else:  # a link-local client; the listener's address has no scope: ask on every link
            targets = [(address, DISCARD_PORT, 0, index) for index, name in socket.if_nameindex() if name != "lo"]
        sent = False
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for target in targets:
                try:
                    sock.sendto(b"\0", target)
                    sent = True
                except OSError as exc:
                    log.debug("dns: cannot probe %s: %s", ip, exc)
        if not sent:
            return None
        deadline = time.monotonic() + self.probe_wait
        while True:
            now = time.monotonic()
            self._reread6(now)
            found = self._table6.get(address)
            # None: no entry even now that the kernel sent to it, so the address is not
            # on the link (a routed client, a failed one): waiting would not help.
            if found is None or found or now >= deadline:
                return found or None
            await asyncio.sleep(0.003)


DISCARD_PORT = 9  # RFC 863: a probe's datagram is thrown away (or answered "unreachable")


def _kernel_table6() -> dict[str, str]:
    return netlink.neighbours(incomplete=True)


DeviceHint = Callable[[str], tuple[str | None, str | None]]  # ip -> (MAC, hostname) from discovery


class Identify:
    """Client address -> device and profile: MAC from the kernel's neighbour tables
    (ARP, and IPv6 over netlink at query time), or from device discovery (which also
    knows DHCP hostnames)."""

    def __init__(self, holder: PolicyHolder, neighbours: Neighbours | None = None,
                 hint: DeviceHint | None = None) -> None:
        self.holder = holder
        self.neighbours = neighbours or Neighbours()
        self.hint = hint

    def resolve(self, query: Query, nxt: Next) -> Answer:
        client = query.client
        mac = self.neighbours.mac(client)
        if mac is None and self.neighbours.may_probe(client):
            return self._probed(query, nxt)
        self._name(query, mac)
        return nxt(query)

    def _name(self, query: Query, mac: str | None) -> None:
        client = query.client
        hostname = None
        if self.hint is not None:
            known_mac, hostname = self.hint(client)
            mac = mac or known_mac
        query.device, query.profile = self.holder.current.resolve(client, mac, hostname)

    async def _probed(self, query: Query, nxt: Next) -> bytes:
        """An IPv6 address the kernel does not know yet: resolve it, then name the device."""
        self._name(query, await self.neighbours.probe(query.client))
        answer = nxt(query)
        return answer if isinstance(answer, bytes) else await answer


class Policy:
    """``filtered_max_ttl`` (seconds) caps every answer's TTL for profiles that filter
    anything, so a parent's block, pause or schedule change reaches a device within
    minutes instead of after the upstream's TTL (up to a day)."""

    def __init__(self, holder: PolicyHolder, local: LocalNames, observe: Any = None,
                 clock: Callable[[], float] = time.time, filtered_max_ttl: int | None = None) -> None:
        self.holder = holder
        self.local = local
        self.observe = observe  # (profile name, target, epoch) -> None: the usage meter
        self.clock = clock  # epoch seconds: "now" for schedules, overrides and budgets
        self.filtered_max_ttl = filtered_max_ttl
        # decide() remembered per snapshot: most queries repeat a (name, device) decided
        # moments ago; a new snapshot (any change a parent makes) empties it.
        self.decisions = DecisionMemo()
        self._filtering: dict[int, tuple[Any, bool]] = {}  # id(profile) -> (profile, filters(profile))

    def ttl_cap(self, query: Query, decision: Decision) -> int | None:
        """The answer's TTL bound: the decision's (a schedule boundary, a budget) and,
        for a filtering profile, ``filtered_max_ttl``."""
        cap = decision.ttl_cap
        limit = self.filtered_max_ttl
        if limit is not None and self._filters(query.profile):
            cap = limit if cap is None else min(cap, limit)
        return cap

    def _filters(self, profile: Any) -> bool:
        """``filters(profile)``, worked out once per profile (profiles are immutable)."""
        found = self._filtering.get(id(profile))
        if found is None or found[0] is not profile:
            if len(self._filtering) >= 1024:  # old snapshots' profiles
                self._filtering.clear()
            found = self._filtering[id(profile)] = (profile, filters(profile))
        return found[1]

    def resolve(self, query: Query, nxt: Next) -> Answer:
        snap = self.holder.current
        now = self.clock()
        q = query.q
        profile = query.profile
        assert profile is not None, "Identify names the profile before Policy"
        decision = self.decisions.decide(q.name, q.qtype, query.device, profile, now, snap)
        query.decision = decision
        if decision.action is Action.BLOCK:
            query.source = "policy"
            cap = decision.ttl_cap
            # Reusable for a second, never past a boundary (the end of a pause, a window).
            query.reuse_until = query.received + (1 if cap is None or cap > 2 else 0)
            return self.blocked(query, decision)
        if decision.action is Action.REWRITE:
            query.source = "policy"
            return self._rewrite(query, decision, nxt, now)

        answer = nxt(query)
        if isinstance(answer, bytes):  # answered without waiting (the cache): no closure, no then()
            return self._allowed(query, decision, profile, now, snap, answer)
        return then(answer, lambda ready: self._allowed(query, decision, profile, now, snap, ready))

    def _allowed(self, query: Query, decision: Decision, profile: Profile, now: float, snap: Snapshot,
                 answer: bytes) -> bytes:
        """What comes back for an allowed name: its CNAME chain checked, its budgets
        counted, its TTLs capped."""
        if query.cnames:
            chained = check_cname_chain(list(query.cnames), query.device, profile, now, snap)
            if chained is not None:
                query.decision = chained
                query.source = "policy"
                return self.blocked(query, chained)
        if decision.budget_targets and self.observe is not None and query.profile is not None:
            for target in decision.budget_targets:
                self.observe(query.profile.name, target, now)
            query.reuse_until = 0.0  # each query counts toward the budget: no packet reuse
        cap = self.ttl_cap(query, decision)
        if cap is not None:
            answer = cap_ttls(answer, cap, query.ttls, query.ttl_base)
            # The packet cache may resend these bytes for up to a second: fine while
            # the boundary is further off than that, which is nearly always.
            if cap <= 2:
                query.reuse_until = 0.0
        return answer

    def blocked(self, query: Query, decision: Decision) -> bytes:
        q = query.q
        query.rcode = NOERROR
        mode = decision.block_mode or "nxdomain"
        ttl = min(BLOCK_TTL, decision.ttl_cap or BLOCK_TTL)
        soa = [_block_soa(ttl)]
        if mode == "nxdomain":
            query.rcode = NXDOMAIN
            return reply_with(q, NXDOMAIN, authority=soa, aa=True)
        if mode in ("null", "blockpage") and q.qtype in (T_A, T_AAAA):
            if mode == "null":
                addresses = ["0.0.0.0"] if q.qtype == T_A else ["::"]
            else:
                addresses = self.local.addresses(query.client, q.qtype)
            rtype = q.qtype
            from ipaddress import ip_address

            answers = [record(rtype, ttl, ip_address(a).packed) for a in addresses]
            return reply_with(q, NOERROR, answers, aa=True)
        return reply_with(q, NOERROR, authority=soa, aa=True)  # NODATA

    async def _rewrite(self, query: Query, decision: Decision, nxt: Next, now: float) -> bytes:
        """Safe search: CNAME to the engine's enforced host, plus that host's records.

        The enforced host and its own CNAME chain are checked as any CNAME target is (a
        parent may block ``forcesafesearch.google.com``); the answer's TTLs keep the
        decision's bound (a schedule boundary, a budget) and the filtered-profile cap;
        a rewritten name counts toward its budgets as an allowed one does.
        """
        q = query.q
        target = decision.target
        snap = self.holder.current
        profile = query.profile
        assert profile is not None, "Identify names the profile before Policy"
        blocked = check_cname_chain([target], query.device, profile, now, snap)
        if blocked is not None:
            query.decision = blocked
            return self.blocked(query, blocked)
        sub_data = HEADER.pack(q.id, 0x0100, 1, 0, 0, 0) + text_to_wire(target) + q.question[len(q.qname):]
        try:
            sub = Query(sub_data, parse_query(sub_data), query.client, query.transport)
        except WireError:
            return reply_with(q, 2)
        sub.device, sub.profile = query.device, query.profile
        pending = nxt(sub)
        sub_answer = pending if isinstance(pending, bytes) else await pending
        if sub.cnames:
            blocked = check_cname_chain(list(sub.cnames), query.device, profile, now, snap)
            if blocked is not None:
                query.decision = blocked
                return self.blocked(query, blocked)
        if decision.budget_targets and self.observe is not None and query.profile is not None:
            for budget_target in decision.budget_targets:
                self.observe(query.profile.name, budget_target, now)
        cap = self.ttl_cap(query, decision)
        reply = DNSRecord(DNSHeader(id=q.id, qr=1, rd=bool(q.flags & 0x0100), ra=1), q=DNSQuestion(q.name or ".", q.qtype))
        reply.questions[0].qname = _dnslib_name(q.qname)
        reply.add_answer(RR(_dnslib_name(q.qname), QTYPE.CNAME, ttl=min(REWRITE_TTL, cap or REWRITE_TTL),
                            rdata=CNAME(target)))
        try:
            for rr in DNSRecord.parse(sub_answer).rr:
                reply.add_answer(rr)
        except Exception:  # noqa: BLE001 - a bad upstream answer still leaves the CNAME
            pass
        if q.edns:
            reply.add_ar(EDNS0(udp_len=1232))
        query.rcode = NOERROR
        packed = bytes(reply.pack())
        return cap_ttls(packed, cap) if cap is not None else packed


def filters(profile: Any) -> bool:
    """True when ``profile`` filters anything (its devices get short TTLs)."""
    return profile is not None and bool(
        profile.categories or profile.services or profile.deny or profile.schedules or profile.budgets
        or profile.safe_search or profile.youtube != "off" or profile.bypass_protection
    )


_SOAS: dict[int, bytes] = {}


def _block_soa(ttl: int) -> bytes:
    """The SOA of a block's answer, owned by the query name (a pointer to the question:
    the blocked name is answered as a zone of its own), built once per TTL."""
    found = _SOAS.get(ttl)
    if found is None:
        found = _SOAS[ttl] = POINTER_TO_QNAME + soa_record(".", ttl)[1:]
    return found


def _dnslib_name(wire: bytes) -> str:
    from ..wire import wire_to_text

    return wire_to_text(wire) + "."


def cap_ttls(answer: bytes, cap: int, ttls: Sequence[tuple[int, int]] | None = None, base: int = 0) -> bytes:
    """``answer`` with no record TTL above ``cap`` seconds (schedule boundaries, the
    filtered-profile cap). ``ttls`` (offset from ``base``, TTL) says where the TTLs
    are when the step that made the answer knows; else the answer is parsed."""
    if ttls is not None:
        body: bytearray | None = None
        for off, _ttl in ttls:
            at = base + off
            if U32.unpack_from(answer, at)[0] > cap:
                if body is None:
                    body = bytearray(answer)
                U32.pack_into(body, at, cap)
        return answer if body is None else bytes(body)
    try:
        reply = parse_reply(answer)
    except WireError:
        return answer
    if reply.min_ttl is None or all(ttl <= cap for _off, ttl in reply.ttls):
        return answer
    body = bytearray(answer)
    base = reply.question_end
    for off, ttl in reply.ttls:
        if ttl > cap:
            U32.pack_into(body, base + off, cap)
    return bytes(body)
