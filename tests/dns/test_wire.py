"""The hand-written wire reader against dnslib, and against anything at all (hypothesis)."""

from __future__ import annotations

import struct

from dnslib import EDNS0, QTYPE, RR, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardian.dns.cache import Cache, fresh_entry, render
from guardian.dns.wire import FORMERR, WireError, error_reply, parse_query, parse_reply

names = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-ABCDEF", min_size=1, max_size=20),
                 min_size=1, max_size=6).map(".".join)


@given(names, st.sampled_from(["A", "AAAA", "MX", "TXT", "HTTPS", "SVCB"]), st.booleans(), st.integers(512, 4096))
def test_question_read_from_bytes_matches_dnslib(name, qtype, edns, size):
    record = DNSRecord.question(name, qtype)
    if edns:
        record.add_ar(EDNS0(udp_len=size))
    q = parse_query(record.pack())
    assert q.name == name.lower()
    assert q.qtype == getattr(QTYPE, qtype)
    assert q.id == record.header.id
    assert q.edns is edns and q.payload == (size if edns else 512)
    upper = parse_query(DNSRecord.question(name.upper(), qtype).pack())
    assert upper.key[:-2] == q.key[:-2]  # case-insensitive key, same type


def test_https_and_a_do_not_share_a_cache_key():
    # Type 65 is 0x0041 ('A'): lower-casing the whole question would turn it into 97.
    a = parse_query(DNSRecord.question("x.example", "HTTPS").pack())
    other = DNSRecord.question("x.example")
    other.q.qtype = 97
    b = parse_query(other.pack())
    assert a.key != b.key


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_any_bytes_as_a_query_only_raise_wire_errors(data):
    try:
        parse_query(data)
    except WireError as exc:
        assert exc.rcode in (None, 1, 4, 16)
    reply = error_reply(data, FORMERR)
    if reply is not None:
        assert reply[:2] == data[:2] and len(reply) <= 512


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_any_bytes_as_a_reply_only_raise_wire_errors(data):
    try:
        parse_reply(data)
    except WireError:
        pass


def _answer(name: str, ttls: list[int]) -> bytes:
    reply = DNSRecord.question(name).reply()
    for i, ttl in enumerate(ttls):
        reply.add_answer(*RR.fromZone(f"{name} {ttl} IN A 192.0.2.{i + 1}"))
    reply.add_ar(EDNS0(udp_len=1232))
    return reply.pack()


@given(st.lists(st.integers(0, 100_000), min_size=1, max_size=5), st.integers(0, 50))
def test_cached_answer_is_the_upstream_answer_with_ttls_counted_down(ttls, elapsed):
    raw = _answer("cached.example", ttls)
    reply = parse_reply(raw)
    cache = Cache(max_ttl=86_400)
    query = DNSRecord.question("Cached.Example")
    q = parse_query(query.pack())
    cache.put(q.key, reply, now=1000.0)
    entry = cache.get(q.key, 1000.0 + elapsed)
    ttls = [min(t, 86_400) for t in ttls]  # the max_ttl clamp
    if min(ttls) <= elapsed:
        assert entry is None
        return
    served = DNSRecord.parse(render(entry, q, 1000.0 + elapsed))
    assert served.header.id == query.header.id
    assert str(served.q.qname) == "Cached.Example."
    assert [str(r.rdata) for r in served.rr] == [f"192.0.2.{i + 1}" for i in range(len(ttls))]
    assert [r.ttl for r in served.rr] == [max(t - elapsed, 0) for t in ttls]
    assert not served.ar  # no EDNS0 in the query, so no OPT in the answer


def test_negative_answer_lives_for_soa_minimum():
    reply = DNSRecord.question("gone.example").reply()
    reply.header.rcode = 3
    reply.add_auth(*RR.fromZone("example. 3600 IN SOA ns. host. 1 2 3 4 60"))
    parsed = parse_reply(reply.pack())
    assert parsed.negative_ttl == 60
    cache = Cache()
    assert cache.lifetime(parsed) == 60
    no_soa = DNSRecord.question("gone.example").reply()
    no_soa.header.rcode = 3
    assert Cache().lifetime(parse_reply(no_soa.pack())) is None


def test_rendering_an_uncached_reply_keeps_it_intact():
    raw = _answer("x.example", [42, 43])
    reply = parse_reply(raw)
    q = parse_query(DNSRecord.question("x.example").pack())
    out = DNSRecord.parse(render(fresh_entry(reply, 5.0), q, 5.0))
    assert [r.ttl for r in out.rr] == [42, 43]


def test_header_only_error_reply_for_unreadable_question():
    data = struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x3f"
    reply = error_reply(data, FORMERR)
    assert reply is not None and reply[:2] == b"\xbe\xef"
    assert struct.unpack(">H", reply[4:6])[0] == 0  # no question echoed


def _raw_query(labels: list[bytes]) -> bytes:
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack(">6H", 7, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">2H", 1, 1)


def test_a_name_asked_again_reads_the_same_text_escapes_included():
    """Question.name remembers the text of names asked lately (issue 14): asked again,
    in any case, a name reads exactly as the first time, unprintable bytes escaped."""
    odd = [b"a.b", b"sp ce\x07", b"EXAMPLE"]
    first = parse_query(_raw_query(odd)).name
    assert first == "a\\046b.sp\\032ce\\007.example"
    assert parse_query(_raw_query([b"A.B", b"SP CE\x07", b"example"])).name == first
    assert parse_query(_raw_query([b"www", b"example", b"com"])).name == "www.example.com"


def test_the_remembered_names_stay_bounded():
    from guardian.dns import wire

    for i in range(wire._TEXTS_MAX * 2):
        assert parse_query(_raw_query([f"n{i}".encode(), b"example"])).name == f"n{i}.example"
        assert len(wire._TEXTS) <= wire._TEXTS_MAX
