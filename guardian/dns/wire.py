"""DNS wire format on the hot path, read straight from the bytes.

dnslib costs tens of microseconds per parse, which would cap Guardian far below the
speed of the resolvers households compare it with. Here only what the proxy needs is
read: the header, the one question, the client's EDNS0 record; and for upstream
replies the offsets of every TTL so that cached answers can be served as bytes with
their TTLs counted down. dnslib is used elsewhere, where a message is synthesized.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct(">HHHHHH")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength

# Header flag bits.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# Response codes.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16  # extended rcode, carried partly in OPT

# Types used by the proxy itself.
T_A = 1
T_NS = 2
T_CNAME = 5
T_SOA = 6
T_PTR = 12
T_HINFO = 13
T_MX = 15
T_AAAA = 28
T_SRV = 33
T_DNAME = 39
T_OPT = 41
T_SVCB = 64
T_HTTPS = 65
T_ANY = 255
C_IN = 1

EDNS_DO = 0x8000
# The payload size Guardian offers on every EDNS0 reply and upstream query
# (DNS Flag Day 2020: 1232 bytes avoids IP fragmentation on almost every path).
EDNS_PAYLOAD = 1232
MIN_UDP = 512


class WireError(Exception):
    """A message Guardian cannot act on; ``rcode`` is what to answer, None to drop."""

    def __init__(self, rcode: int | None, why: str) -> None:
        super().__init__(why)
        self.rcode = rcode


@dataclass(slots=True)
class Question:
    """The parts of a client query the proxy needs, read without a full parse.

    ``qname`` is the name in wire form as the client sent it (case kept, for 0x20);
    ``key`` is the cache key: lower-cased name, type, class, and the DO/CD bits.
    ``payload`` is the UDP size the client accepts (512 without EDNS0).
    """

    id: int
    flags: int
    qname: bytes
    lname: bytes  # qname lower-cased (ASCII), as matched and cached
    question: bytes  # name, type and class exactly as sent
    qtype: int
    qclass: int
    edns: bool
    payload: int
    do: bool
    key: bytes
    end: int  # offset just past the question section
    text: str | None = None  # ``name``, once worked out

    @property
    def name(self) -> str:
        """The name as lower-case text without the trailing dot ("" for the root)."""
        text = self.text
        if text is None:
            text = _TEXTS.get(self.lname)
            if text is None:
                text = wire_to_text(self.lname)
                if len(_TEXTS) >= _TEXTS_MAX:
                    _TEXTS.clear()
                _TEXTS[self.lname] = text
            self.text = text
        return text


# Names asked lately, wire form -> text: most queries repeat one of them, and a dict
# lookup costs a tenth of reading the labels again. Emptied whole when full.
_TEXTS: dict[bytes, str] = {}
_TEXTS_MAX = 8192


_PLAIN_OR_DOT = bytes(b for b in range(33, 127) if b != 0x5C)  # bytes written as they are


def wire_to_text(wire: bytes) -> str:
    """Uncompressed wire name -> dotted text, escaping bytes that are not printable."""
    labels = []
    pos = 0
    while True:
        length = wire[pos]
        if length == 0:
            break
        labels.append(wire[pos + 1 : pos + 1 + length])
        pos += 1 + length
    joined = b".".join(labels)
    if not joined.translate(None, _PLAIN_OR_DOT) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii")
    return ".".join("".join(chr(b) if 33 <= b < 127 and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in raw)
                    for raw in labels)


def _read_plain_name(data: bytes, pos: int) -> int:
    """Offset past an uncompressed name at ``pos``; FORMERR on anything else."""
    start = pos
    n = len(data)
    while True:
        if pos >= n:
            raise WireError(FORMERR, "name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            raise WireError(FORMERR, "compressed or oversized label in question")
        pos += 1 + length
    if pos - start > 255:
        raise WireError(FORMERR, "name longer than 255 bytes")
    return pos


def skip_name(data: bytes, pos: int) -> int:
    """Offset past a possibly compressed name at ``pos``."""
    n = len(data)
    while True:
        if pos >= n:
            raise WireError(FORMERR, "name runs past the end")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise WireError(FORMERR, "truncated pointer")
            return pos + 2
        if length > 63:
            raise WireError(FORMERR, "bad label type")
        pos += 1 + length


def read_name(data: bytes, pos: int) -> tuple[str, int]:
    """(lower-case dotted name, offset past it) of a possibly compressed name."""
    labels: list[str] = []
    end = -1
    hops = 0
    n = len(data)
    while True:
        if pos >= n:
            raise WireError(FORMERR, "name runs past the end")
        length = data[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise WireError(FORMERR, "truncated pointer")
            if end < 0:
                end = pos + 2
            hops += 1
            if hops > 64:
                raise WireError(FORMERR, "compression loop")
            pos = ((length & 0x3F) << 8) | data[pos + 1]
            continue
        if length > 63:
            raise WireError(FORMERR, "bad label type")
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "backslashreplace").lower())
        pos += 1 + length
    return ".".join(labels), end


def parse_query(data: bytes) -> Question:
    """Read a client query. Raises WireError with the rcode to answer (None: drop)."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < 12:
        raise WireError(None, "shorter than a DNS header")
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & QR:
        raise WireError(None, "a response, not a query")
    opcode = (flags >> 11) & 0xF
    if qd != 1:
        raise WireError(FORMERR if opcode == 0 else NOTIMP, f"{qd} questions")
    qend = _read_plain_name(data, 12)
    if qend + 4 > len(data):
        raise WireError(FORMERR, "question truncated")
    qtype, qclass = struct.unpack_from(">HH", data, qend)
    end = qend + 4
    if opcode != 0:
        raise WireError(NOTIMP, f"opcode {opcode}")
    edns = False
    payload = MIN_UDP
    do = False
    if ar:
        pos = end
        try:
            for _ in range(an + ns + ar):
                pos = skip_name(data, pos)
                rtype, rclass, rttl, rdlen = RR_FIXED.unpack_from(data, pos)
                pos += 10 + rdlen
                if pos > len(data):
                    raise WireError(FORMERR, "record runs past the end")
                if rtype == T_OPT:
                    if edns:
                        raise WireError(FORMERR, "two OPT records")
                    edns = True
                    payload = max(MIN_UDP, rclass)
                    do = bool(rttl & EDNS_DO)
                    if (rttl >> 16) & 0xFF:
                        raise WireError(BADVERS, "EDNS version not supported")
        except struct.error:
            raise WireError(FORMERR, "record truncated") from None
    qname = data[12:qend]
    lname = qname.lower()
    key = lname + data[qend:end] + _KEY_BITS[do][bool(flags & CD)]
    return Question(qid, flags, qname, lname, data[12:end], qtype, qclass, edns, payload, do, key, end)


_KEY_BITS = ((b"\x00\x00", b"\x00\x01"), (b"\x01\x00", b"\x01\x01"))  # [DO][CD]


def opt_record(do: bool = False, ext_rcode: int = 0) -> bytes:
    """Guardian's own OPT record for a reply to an EDNS0 client."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + RR_FIXED.pack(T_OPT, EDNS_PAYLOAD, ttl, 0)


def response_flags(client_flags: int, rcode: int, upstream_flags: int = RA) -> int:
    """Flags of a reply: client's RD and CD echoed, RA set, AD only if upstream set it."""
    return QR | (client_flags & (RD | CD | 0x7800)) | RA | (upstream_flags & AD) | (rcode & 0xF)


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A header-and-question reply with ``rcode`` to a query that may be malformed.

    Used for FORMERR/NOTIMP/REFUSED/SERVFAIL. The question is echoed when it can be
    read; otherwise the reply carries only the header (RFC 1035 allows this).
    """
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from(">HH", data)
    if flags & QR:
        return None
    question = b""
    qd = 0
    edns = b""
    try:
        q = parse_query(data)
        question = data[12 : q.end]
        qd = 1
        if q.edns:
            edns = opt_record(q.do)
    except WireError:
        pass
    ext = 0
    if rcode > 15:
        ext = rcode >> 4
        edns = opt_record(False, ext)
    header = HEADER.pack(qid, response_flags(flags, rcode, 0), qd, 0, 0, 1 if edns else 0)
    return header + question + edns


@dataclass(slots=True)
class Reply:
    """An upstream reply, walked once: TTL offsets kept so it can be served from bytes.

    ``body`` is the answer, authority and additional sections without any OPT record;
    ``ttls`` holds (offset into body, TTL) for every record in it.
    """

    flags: int
    rcode: int
    an: int
    ns: int
    ar: int
    body: bytes
    ttls: list[tuple[int, int]]
    min_ttl: int | None  # smallest TTL among the records; None when there are none
    negative_ttl: int | None  # RFC 2308: min(SOA TTL, SOA MINIMUM) for NXDOMAIN/NODATA
    cnames: list[str]  # targets of CNAME (and SVCB/HTTPS) records in the answer section, in order
    question_end: int


def parse_reply(data: bytes) -> Reply:
    """Walk an upstream reply. Raises WireError(FORMERR) on anything malformed."""
    try:
        return _parse_reply(data)
    except (struct.error, IndexError):
        raise WireError(FORMERR, "reply truncated") from None


def _parse_reply(data: bytes) -> Reply:
    if len(data) < 12:
        raise WireError(FORMERR, "short reply")
    _qid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if qd != 1:
        raise WireError(FORMERR, "reply without exactly one question")
    pos = skip_name(data, 12) + 4
    qend = pos
    if qend > len(data):
        raise WireError(FORMERR, "reply question truncated")
    ttls: list[tuple[int, int]] = []
    cnames: list[str] = []
    min_ttl: int | None = None
    negative: int | None = None
    opt_at: tuple[int, int] | None = None
    total = an + ns + ar
    for i in range(total):
        rr_start = pos
        pos = skip_name(data, pos)
        rtype, _rclass, ttl, rdlen = RR_FIXED.unpack_from(data, pos)
        ttl_at = pos + 4
        rdata = pos + 10
        pos = rdata + rdlen
        if pos > len(data):
            raise WireError(FORMERR, "record runs past the end")
        if rtype == T_OPT:
            if i < an + ns or opt_at is not None:
                raise WireError(FORMERR, "misplaced OPT record")
            opt_at = (rr_start, pos)
            continue
        if ttl > 0x7FFFFFFF:  # RFC 2181: treat as zero
            ttl = 0
        ttls.append((ttl_at, ttl))
        min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
        if i < an and rtype == T_CNAME:
            cnames.append(read_name(data, rdata)[0])
        elif i < an and rtype in (T_SVCB, T_HTTPS) and rdlen > 2:
            target = read_name(data, rdata + 2)[0]  # TargetName ("." = the owner itself)
            if target:
                cnames.append(target)
        if an <= i < an + ns and rtype == T_SOA and rdlen >= 20:
            minimum = U32.unpack_from(data, pos - 4)[0]
            negative = min(ttl, minimum)
    body_end = pos
    if opt_at is not None:
        start, stop = opt_at
        if stop != body_end:
            # Records after the OPT could point at names behind it; removing the OPT
            # would move them. Real servers put OPT last; refuse the odd one.
            raise WireError(FORMERR, "OPT record is not last")
        body_end = start
        ar -= 1
    body = data[qend:body_end]
    rel = [(off - qend, ttl) for off, ttl in ttls]
    return Reply(flags, flags & 0xF, an, ns, ar, body, rel, min_ttl, negative, cnames, qend)


# Record types whose RDATA holds names, and where they start (SOA has two, see below).
_NAMES_IN_RDATA = {T_NS: 0, T_CNAME: 0, T_PTR: 0, T_DNAME: 0, T_MX: 2, T_SRV: 6, T_SVCB: 2, T_HTTPS: 2}


def check_name(data: bytes, pos: int) -> int:
    """Offset past a well-formed, possibly compressed name at ``pos``.

    Every pointer must point before the name part it continues (RFC 1035 4.1.4: to a
    prior occurrence), so no pointer can loop; labels are at most 63 bytes and the
    name at most 255. Raises WireError(FORMERR) otherwise.
    """
    n = len(data)
    end = -1
    ceiling = pos  # a pointer must land below where the current run of labels began
    total = 0
    while True:
        if pos >= n:
            raise WireError(FORMERR, "name runs past the end")
        length = data[pos]
        if length == 0:
            return end if end >= 0 else pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise WireError(FORMERR, "truncated pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target < 12 or target >= ceiling:
                raise WireError(FORMERR, "compression pointer does not point back")
            if end < 0:
                end = pos + 2
            pos = ceiling = target
            continue
        if length > 63:
            raise WireError(FORMERR, "bad label type")
        total += 1 + length
        if total > 254:
            raise WireError(FORMERR, "name longer than 255 bytes")
        pos += 1 + length


def check_names(data: bytes) -> None:
    """Raise WireError(FORMERR) unless every name of the message is well formed: the
    question, every record's owner, and the names inside CNAME, NS, PTR, DNAME, MX,
    SRV, SOA, SVCB and HTTPS data. Upstream answers are checked before they are kept."""
    try:
        _qid, _flags, qd, an, ns, ar = HEADER.unpack_from(data)
        pos = 12
        for _ in range(qd):
            pos = check_name(data, pos) + 4
        for _ in range(an + ns + ar):
            pos = check_name(data, pos)
            rtype, _rclass, _ttl, rdlen = RR_FIXED.unpack_from(data, pos)
            rdata = pos + 10
            pos = rdata + rdlen
            if pos > len(data):
                raise WireError(FORMERR, "record runs past the end")
            at = _NAMES_IN_RDATA.get(rtype)
            if at is not None and rdlen > at:
                if check_name(data, rdata + at) > pos:
                    raise WireError(FORMERR, "name runs past its record")
            elif rtype == T_SOA:
                if check_name(data, check_name(data, rdata)) + 20 > pos:
                    raise WireError(FORMERR, "SOA record too short")
    except (struct.error, IndexError):
        raise WireError(FORMERR, "message truncated") from None


def build_query(qid: int, question: bytes, *, do: bool, cd: bool) -> bytes:
    """An upstream query: RD set, one question, EDNS0 with Guardian's payload size."""
    flags = RD | (CD if cd else 0)
    return HEADER.pack(qid, flags, 1, 0, 0, 1) + question + opt_record(do)


def question_matches(sent: bytes, reply: bytes, qid: int) -> bool:
    """True when ``reply`` answers the query ``sent`` (same ID and question)."""
    if len(reply) < 12 or U16.unpack_from(reply)[0] != qid:
        return False
    if not reply[2] & 0x80:  # QR
        return False
    try:
        qend = _read_plain_name(sent, 12) + 4
        rend = skip_name(reply, 12) + 4
    except WireError:
        return False
    if U16.unpack_from(reply, 4)[0] != 1:
        return False
    return sent[12:qend].lower() == reply[12:rend].lower()
