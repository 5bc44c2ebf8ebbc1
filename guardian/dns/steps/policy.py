"""Identify and policy steps: who is asking, and what their profile allows.

Identify maps the client address (and its MAC from the kernel's neighbour table) to a
device and its profile; unknown devices get the household's default profile. Policy
asks the pure ``decide()`` on the current snapshot and turns the Decision into an
answer: a block (NXDOMAIN, null address, block page or NODATA), a safe-search CNAME
with the target's addresses resolved through the cache and upstreams, or the upstream
answer — checked once more for a CNAME chain leading into a blocked domain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import CNAME, EDNS0, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord

from ...policy.decide import Decision, check_cname_chain, decide
from ...policy.snapshot import PolicyHolder
from ..chain import Answer, Next, Query, then
from ..messages import POINTER_TO_QNAME, record, reply_with, soa_record
from ..wire import HEADER, NOERROR, NXDOMAIN, T_A, T_AAAA, U32, WireError, parse_query, parse_reply, text_to_wire
from .local import LocalNames

BLOCK_TTL = 10  # seconds a device may cache a block: a parent's unblock applies soon
REWRITE_TTL = 300


class Neighbours:
    """IPv4 address -> MAC from /proc/net/arp, re-read at most every ``refresh`` seconds."""

    def __init__(self, path: str = "/proc/net/arp", refresh: float = 10.0) -> None:
        self.path = Path(path)
        self.refresh = refresh
        self._table: dict[str, str] = {}
        self._read_at = -1e9

    def mac(self, ip: str) -> str | None:
        now = time.monotonic()
        if now - self._read_at > self.refresh:
            self._read_at = now
            table: dict[str, str] = {}
            try:
                for line in self.path.read_text().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) >= 4 and parts[3] != "00:00:00:00:00:00":
                        table[parts[0]] = parts[3].lower()
            except OSError:
                pass
            self._table = table
        return self._table.get(ip)


DeviceHint = Callable[[str], tuple[str | None, str | None]]  # ip -> (MAC, hostname) from discovery


class Identify:
    """Client address -> device and profile: MAC from the kernel's neighbour table, or
    from device discovery (which also knows IPv6 neighbours and DHCP hostnames)."""

    def __init__(self, holder: PolicyHolder, neighbours: Neighbours | None = None,
                 hint: DeviceHint | None = None) -> None:
        self.holder = holder
        self.neighbours = neighbours or Neighbours()
        self.hint = hint

    def resolve(self, query: Query, nxt: Next) -> Answer:
        client = query.client
        mac = self.neighbours.mac(client)
        hostname = None
        if self.hint is not None:
            known_mac, hostname = self.hint(client)
            mac = mac or known_mac
        query.device, query.profile = self.holder.current.resolve(client, mac, hostname)
        return nxt(query)


def filters(profile: Any) -> bool:
    """True when ``profile`` filters anything (its devices get short TTLs)."""
    return profile is not None and bool(
        profile.categories or profile.services or profile.deny or profile.schedules or profile.budgets
        or profile.safe_search or profile.youtube != "off" or profile.bypass_protection
    )


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

    def ttl_cap(self, query: Query, decision: Decision) -> int | None:
        """The answer's TTL bound: the decision's (a schedule boundary, a budget) and,
        for a filtering profile, ``filtered_max_ttl``."""
        cap = decision.ttl_cap
        limit = self.filtered_max_ttl
        if limit is not None and filters(query.profile):
            cap = limit if cap is None else min(cap, limit)
        return cap

    def resolve(self, query: Query, nxt: Next) -> Answer:
        snap = self.holder.current
        now = self.clock()
        q = query.q
        decision = decide(q.name, q.qtype, query.device, query.profile, now, snap)
        query.decision = decision
        if decision.action == "block":
            query.source = "policy"
            cap = decision.ttl_cap
            # Reusable for a second, never past a boundary (the end of a pause, a window).
            query.reuse_until = query.received + (1 if cap is None or cap > 2 else 0)
            return self.blocked(query, decision)
        if decision.action == "rewrite":
            query.source = "policy"
            return self._rewrite(query, decision, nxt, now)

        def after(answer: bytes) -> bytes:
            if query.cnames:
                chained = check_cname_chain(list(query.cnames), query.device, query.profile, now, snap)
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
                answer = cap_ttls(answer, cap)
                # The packet cache may resend these bytes for up to a second: fine while
                # the boundary is further off than that, which is nearly always.
                if cap <= 2:
                    query.reuse_until = 0.0
            return answer

        return then(nxt(query), after)

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
        blocked = check_cname_chain([target], query.device, query.profile, now, snap)
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
            blocked = check_cname_chain(list(sub.cnames), query.device, query.profile, now, snap)
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


def cap_ttls(answer: bytes, cap: int) -> bytes:
    """``answer`` with no record TTL above ``cap`` seconds (schedule boundaries)."""
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
