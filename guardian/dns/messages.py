"""Answers Guardian writes itself: refusals, blocks, local names, RFC 8482.

Built directly as bytes: the question is echoed as the client sent it and every
record's owner name is a pointer to it (0xC00C), which is all these answers need.
"""

from __future__ import annotations

import ipaddress
import struct

from ..names import text_to_wire
from .wire import (
    HEADER,
    RR_FIXED,
    T_A,
    T_AAAA,
    T_HINFO,
    T_SOA,
    Question,
    opt_record,
    response_flags,
)

POINTER_TO_QNAME = b"\xc0\x0c"


def record(rtype: int, ttl: int, rdata: bytes, owner: bytes = POINTER_TO_QNAME, rclass: int = 1) -> bytes:
    return owner + RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata


def reply_with(
    q: Question,
    rcode: int,
    answers: list[bytes] | None = None,
    authority: list[bytes] | None = None,
    aa: bool = False,
) -> bytes:
    """A reply to ``q`` with these records, EDNS0 echoed when the client used it."""
    answers = answers or []
    authority = authority or []
    flags = response_flags(q.flags, rcode) | (0x0400 if aa else 0)
    header = HEADER.pack(q.id, flags, 1, len(answers), len(authority), 1 if q.edns else 0)
    tail = opt_record(q.do) if q.edns else b""
    return b"".join((header, q.question, *answers, *authority, tail))


def address_reply(q: Question, addresses: list[str], ttl: int) -> bytes:
    """A/AAAA records for the question's name (NODATA when the list is empty)."""
    rtype = T_AAAA if q.qtype == T_AAAA else T_A
    answers = [record(rtype, ttl, ipaddress.ip_address(a).packed) for a in addresses
               if ipaddress.ip_address(a).version == (6 if rtype == T_AAAA else 4)]
    return reply_with(q, 0, answers, aa=True)


def rfc8482_hinfo(q: Question) -> bytes:
    """RFC 8482 section 4.2: answer ANY with one synthesized HINFO record."""
    return reply_with(q, 0, [record(T_HINFO, 3600, b"\x07RFC8482\x00")])


def soa_record(zone: str, ttl: int) -> bytes:
    """A SOA for negative answers Guardian gives itself (MINIMUM = ``ttl``)."""
    owner = text_to_wire(zone)
    rdata = text_to_wire("guardian.invalid") + text_to_wire("hostmaster.guardian.invalid") + struct.pack(">IIIII", 1, 3600, 600, 86400, ttl)
    return record(T_SOA, ttl, rdata, owner)
