"""The cache step on its own: repeated questions answered without the rest of the chain,
TTLs counted down on a fake clock, expiry, negative answers, serve-stale when the
upstreams fail, and what a question is keyed on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSRecord

import guardian.dns.cache
import guardian.dns.steps.cache
from guardian.dns.cache import Cache
from guardian.dns.chain import Query
from guardian.dns.steps.cache import CacheStep
from guardian.dns.upstreams.base import UpstreamFailure
from guardian.dns.wire import parse_query

T0 = 5_000.0  # monotonic seconds when the test starts


class Clock:
    """time.monotonic() for the cache and its step; the queries carry it as ``received``."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Pool:
    """The upstream pool as the cache step sees it: are they all down?"""

    def __init__(self, down: bool = False) -> None:
        self.down = down

    def all_down(self) -> bool:
        return self.down


class Upstream:
    """A fake ``nxt`` answer: the canned answer, or a failure while ``failing``."""

    def __init__(self, answer, records=(("A", "93.184.216.34"),), ttl: int = 300, rcode: int = RCODE.NOERROR,
                 soa: bool = False) -> None:
        self.make = answer
        self.records, self.ttl, self.rcode, self.soa = list(records), ttl, rcode, soa
        self.failing = False

    def __call__(self, q: Query) -> bytes | BaseException:
        if self.failing:
            return UpstreamFailure("every upstream timed out")
        return self.make(q, self.records, rcode=self.rcode, ttl=self.ttl, soa=self.soa)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(guardian.dns.cache, "time", SimpleNamespace(monotonic=fake))
    monkeypatch.setattr(guardian.dns.steps.cache, "time", SimpleNamespace(monotonic=fake))
    return fake


@pytest.fixture
def ask(query, clock):
    """A query received now on the fake clock."""

    def make(name: str = "example.com", qtype: str = "A", **kw) -> Query:
        q = query(name, qtype, **kw)
        q.received = clock.now
        return q

    return make


def raw_query(clock: Clock, name: str, qtype: str = "A", qclass: str = "IN", do: bool = False,
              cd: bool = False) -> Query:
    request = DNSRecord.question(name, qtype, qclass)
    if do:
        request.add_ar(EDNS0(flags="do", udp_len=1232))
    request.header.cd = int(cd)
    data = bytes(request.pack())
    q = Query(data, parse_query(data), "192.168.1.20", "udp")
    q.received = clock.now
    return q


def ttls(reply: DNSRecord) -> list[int]:
    return [rr.ttl for rr in reply.rr]


def test_a_repeated_question_is_answered_from_the_cache_without_asking_further(ask, answer, fake_next, run, clock):
    step, nxt = CacheStep(Cache()), fake_next(Upstream(answer), wait=True, upstream=True)
    first = run(step.resolve(ask("example.com"), nxt))
    assert [str(rr.rdata) for rr in first.rr] == ["93.184.216.34"] and len(nxt.seen) == 1

    clock.now += 5
    again = ask("EXAMPLE.com")  # another device, its own ID, 0x20 case
    reply = run(step.resolve(again, nxt))
    assert len(nxt.seen) == 1  # the rest of the chain was not asked
    assert again.source == "cache" and again.rcode == RCODE.NOERROR
    assert reply.header.id == DNSRecord.parse(again.data).header.id
    assert str(reply.q.qname) == "EXAMPLE.com."  # its question as it asked it
    assert [str(rr.rdata) for rr in reply.rr] == ["93.184.216.34"] and ttls(reply) == [295]
    assert step.cache.hits == 1


def test_ttls_count_down_on_the_clock_and_the_answer_expires(ask, answer, fake_next, run, clock):
    step, nxt = CacheStep(Cache()), fake_next(Upstream(answer, ttl=300), wait=True, upstream=True)
    assert ttls(run(step.resolve(ask(), nxt))) == [300]
    clock.now = T0 + 100
    assert ttls(run(step.resolve(ask(), nxt))) == [200]
    clock.now = T0 + 299.5
    assert ttls(run(step.resolve(ask(), nxt))) == [1]
    assert len(nxt.seen) == 1
    clock.now = T0 + 300  # expired: asked again, and the new answer starts from its full TTL
    q = ask()
    assert ttls(run(step.resolve(q, nxt))) == [300] and len(nxt.seen) == 2 and q.source == "upstream"
    clock.now = T0 + 310
    assert ttls(run(step.resolve(ask(), nxt))) == [290]


def test_each_record_counts_down_from_its_own_ttl(ask, answer, fake_next, run, clock):
    def two_ttls(q: Query) -> bytes:
        reply = DNSRecord.parse(answer(q, [("A", "93.184.216.34")], ttl=600))
        reply.add_answer(*DNSRecord.parse(answer(q, [("A", "93.184.216.35")], ttl=60)).rr)
        return bytes(reply.pack())

    step, nxt = CacheStep(Cache()), fake_next(two_ttls, wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    clock.now = T0 + 30
    assert ttls(run(step.resolve(ask(), nxt))) == [570, 30]
    clock.now = T0 + 60  # the entry lives for the smallest TTL
    run(step.resolve(ask(), nxt))
    assert len(nxt.seen) == 2


@pytest.mark.parametrize(
    ("min_ttl", "max_ttl", "upstream_ttl", "cached_for"),
    [
        (60, 86_400, 5, 60),  # dns cache min_ttl: a 5 s answer is kept a minute
        (0, 3_600, 172_800, 3_600),  # max_ttl: a two-day answer is kept an hour
    ],
)
def test_the_cache_bounds_clamp_how_long_an_answer_is_kept(ask, answer, fake_next, run, clock, min_ttl, max_ttl,
                                                            upstream_ttl, cached_for):
    step = CacheStep(Cache(min_ttl=min_ttl, max_ttl=max_ttl))
    nxt = fake_next(Upstream(answer, ttl=upstream_ttl), wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    clock.now = T0 + 1
    assert ttls(run(step.resolve(ask(), nxt))) == [cached_for - 1]
    clock.now = T0 + cached_for - 0.5
    run(step.resolve(ask(), nxt))
    assert len(nxt.seen) == 1
    clock.now = T0 + cached_for
    run(step.resolve(ask(), nxt))
    assert len(nxt.seen) == 2


@pytest.mark.parametrize(
    ("variant", "shares"),
    [
        ({"name": "Example.COM"}, True),  # names are matched without case
        ({"qtype": "AAAA"}, False),
        ({"qtype": "MX"}, False),
        ({"qclass": "CH"}, False),
        ({"do": True}, False),  # a validating client's answer carries its signatures
        ({"cd": True}, False),  # checking disabled: the upstream may answer what it would refuse
        ({"name": "www.example.com"}, False),
    ],
)
def test_answers_are_kept_per_name_type_class_and_dnssec_bits(answer, fake_next, run, clock, variant, shares):
    def zone(q: Query) -> bytes:  # an address for A, NODATA (with its SOA, so kept) for the rest
        return answer(q, [("A", "93.184.216.34")] if q.q.qtype == QTYPE.A else [], soa=q.q.qtype != QTYPE.A)

    step, nxt = CacheStep(Cache()), fake_next(zone, wait=True, upstream=True)
    run(step.resolve(raw_query(clock, "example.com"), nxt))
    other = raw_query(clock, **{"name": "example.com", **variant})
    reply = run(step.resolve(other, nxt))
    assert (len(nxt.seen) == 1) is shares
    assert (other.source == "cache") is shares
    assert reply.q.qtype == other.q.qtype and CLASS[reply.q.qclass] == variant.get("qclass", "IN")


def test_a_nonexistent_name_is_cached_for_its_soa_minimum(ask, answer, fake_next, run, clock):
    # RFC 2308: min(SOA TTL, SOA MINIMUM); the fake zone's MINIMUM is 60 s.
    step = CacheStep(Cache())
    nxt = fake_next(Upstream(answer, records=(), rcode=RCODE.NXDOMAIN, ttl=900, soa=True), wait=True, upstream=True)
    run(step.resolve(ask("nothing.example"), nxt))
    clock.now = T0 + 59
    q = ask("nothing.example")
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.NXDOMAIN and q.source == "cache" and q.rcode == RCODE.NXDOMAIN
    assert [rr.ttl for rr in reply.auth] == [1]
    clock.now = T0 + 60
    run(step.resolve(ask("nothing.example"), nxt))
    assert len(nxt.seen) == 2


@pytest.mark.parametrize(
    ("rcode", "soa"),
    [
        (RCODE.NXDOMAIN, False),  # no SOA: RFC 2308 says not to cache it
        (RCODE.SERVFAIL, False),
        (RCODE.REFUSED, False),
        (RCODE.SERVFAIL, True),
    ],
)
def test_failures_and_negative_answers_without_soa_are_not_kept(ask, answer, fake_next, run, clock, rcode, soa):
    step = CacheStep(Cache())
    nxt = fake_next(Upstream(answer, records=(), rcode=rcode, soa=soa), wait=True, upstream=True)
    assert run(step.resolve(ask("flaky.example"), nxt)).header.rcode == rcode
    clock.now += 1
    assert run(step.resolve(ask("flaky.example"), nxt)).header.rcode == rcode
    assert len(nxt.seen) == 2 and len(step.cache) == 0


def test_an_answer_that_did_not_come_from_upstream_is_not_kept(ask, fake_next, run, clock):
    step, nxt = CacheStep(Cache()), fake_next(wait=True)  # no query.reply: not an upstream answer
    run(step.resolve(ask(), nxt))
    run(step.resolve(ask(), nxt))
    assert len(nxt.seen) == 2 and len(step.cache) == 0


def test_an_expired_answer_is_served_stale_when_the_upstreams_fail(ask, answer, fake_next, run, clock):
    upstream = Upstream(answer, ttl=300)
    step, nxt = CacheStep(Cache(stale_seconds=3_600)), fake_next(upstream, wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    upstream.failing = True
    clock.now = T0 + 400
    q = ask()
    reply = run(step.resolve(q, nxt))
    assert len(nxt.seen) == 2  # it did try the upstreams first
    assert reply.header.rcode == RCODE.NOERROR and q.source == "stale"
    assert [str(rr.rdata) for rr in reply.rr] == ["93.184.216.34"] and ttls(reply) == [30]  # RFC 8767
    assert reply.header.id == DNSRecord.parse(q.data).header.id

    clock.now = T0 + 300 + 3_600  # past the stale window: nothing left to serve
    q = ask()
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.SERVFAIL and q.source == "servfail" and q.rcode == RCODE.SERVFAIL
    assert reply.rr == []


def test_without_a_stale_window_an_upstream_failure_is_servfail(ask, answer, fake_next, run, clock):
    upstream = Upstream(answer, ttl=300)
    step, nxt = CacheStep(Cache(stale_seconds=0)), fake_next(upstream, wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    upstream.failing = True
    clock.now = T0 + 300
    q = ask()
    assert run(step.resolve(q, nxt)).header.rcode == RCODE.SERVFAIL and q.source == "servfail"


def test_a_name_never_seen_is_servfail_when_the_upstreams_fail(ask, answer, fake_next, run):
    upstream = Upstream(answer)
    upstream.failing = True
    step, nxt = CacheStep(Cache()), fake_next(upstream, wait=True, upstream=True)
    q = ask("never.example")
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.SERVFAIL and q.rcode == RCODE.SERVFAIL
    assert reply.header.id == DNSRecord.parse(q.data).header.id and str(reply.q.qname) == "never.example."


def test_with_every_upstream_down_a_stale_answer_is_served_without_waiting(ask, answer, fake_next, run, clock):
    pool = Pool()
    step, nxt = CacheStep(Cache(), pool), fake_next(Upstream(answer), wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    pool.down = True
    clock.now = T0 + 600
    q = ask()
    answer_now = step.resolve(q, nxt)
    assert isinstance(answer_now, bytes)  # answered at once, no upstream timeout to sit through
    assert len(nxt.seen) == 1 and q.source == "stale" and ttls(run(answer_now)) == [30]
    # A name with nothing stale still goes to the upstreams (one may be back).
    other = ask("other.example")
    run(step.resolve(other, nxt))
    assert len(nxt.seen) == 2 and other.source == "upstream"


def test_a_fresh_answer_is_served_from_the_cache_even_with_every_upstream_down(ask, answer, fake_next, run, clock):
    pool = Pool()
    step, nxt = CacheStep(Cache(), pool), fake_next(Upstream(answer), wait=True, upstream=True)
    run(step.resolve(ask(), nxt))
    pool.down = True
    clock.now = T0 + 10
    q = ask()
    assert ttls(run(step.resolve(q, nxt))) == [290] and q.source == "cache"


@pytest.mark.parametrize("edns", [False, True])
def test_a_cached_answer_carries_edns_only_to_a_client_that_used_it(answer, fake_next, run, clock, edns):
    step, nxt = CacheStep(Cache()), fake_next(Upstream(answer), wait=True, upstream=True)
    run(step.resolve(raw_query(clock, "example.com", do=False), nxt))
    request = DNSRecord.question("example.com")
    if edns:
        request.add_ar(EDNS0(udp_len=4096))
    data = bytes(request.pack())
    q = Query(data, parse_query(data), "192.168.1.21", "udp")
    q.received = clock.now
    reply = run(step.resolve(q, nxt))
    assert q.source == "cache"
    assert [rr.rtype for rr in reply.ar] == ([QTYPE.OPT] if edns else [])
