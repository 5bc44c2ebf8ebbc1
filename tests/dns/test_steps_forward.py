"""The forward step on its own, over a fake upstream pool: what the upstreams are asked,
identical questions in flight merged into one, the cap on distinct ones, and every
failure (a timeout, a malformed or looping answer, a bug) raised as UpstreamFailure,
which the cache step above turns into a stale answer or SERVFAIL."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from guardian.dns.chain import Query
from guardian.dns.steps.forward import Forward
from guardian.dns.upstreams.base import UpstreamFailure
from guardian.dns.wire import parse_query

UPSTREAM = SimpleNamespace(name="udp://192.0.2.53:53")


def upstream_reply(question: bytes, address: str = "93.184.216.34", ttl: int = 300,
                   rcode: int = RCODE.NOERROR) -> bytes:
    """What an upstream answers to ``question`` (name, type and class, as the pool gets it)."""
    request = DNSRecord.parse(struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + question)
    reply = request.reply()
    reply.header.rcode = rcode
    if rcode == RCODE.NOERROR:
        reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=ttl, rdata=A(address)))
    return bytes(reply.pack())


class Pool:
    """The upstream pool: records each question, answers ``reply(question)`` (or raises
    what it returns), once ``gate`` is open when one is set."""

    def __init__(self, reply=upstream_reply, gate: asyncio.Event | None = None) -> None:
        self.asked: list[tuple[bytes, bool, bool]] = []
        self.reply = reply
        self.gate = gate

    async def resolve(self, question: bytes, *, do: bool = False, cd: bool = False):
        self.asked.append((question, do, cd))
        if self.gate is not None:
            await self.gate.wait()
        out = self.reply(question)
        if isinstance(out, BaseException):
            raise out
        return out, UPSTREAM


def client_query(name: str, qtype: str = "A", *, qid: int | None = None, do: bool = False, cd: bool = False) -> Query:
    request = DNSRecord.question(name, qtype)
    if qid is not None:
        request.header.id = qid
    if do:
        request.add_ar(EDNS0(flags="do", udp_len=1232))
    request.header.cd = int(cd)
    data = bytes(request.pack())
    return Query(data, parse_query(data), "192.168.1.20", "udp")


def never(query: Query) -> bytes:
    raise AssertionError("Forward is the last step: it never calls nxt")


def test_the_upstream_is_asked_the_lower_cased_question_and_the_client_gets_its_own(run):
    pool = Pool()
    step = Forward(pool)
    q = client_query("ExAmple.COM", qid=4242)
    reply = run(step.resolve(q, never))
    assert pool.asked == [(b"\x07example\x03com\x00\x00\x01\x00\x01", False, False)]
    assert reply.header.id == 4242 and str(reply.q.qname) == "ExAmple.COM."  # 0x20 case kept for the client
    assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [("93.184.216.34", 300)]  # TTLs as the upstream gave
    assert q.source == "upstream" and q.upstream == UPSTREAM.name and q.rcode == RCODE.NOERROR
    assert q.reply is not None and q.reply.min_ttl == 300  # what the cache step above keeps


def test_an_upstream_nxdomain_is_passed_on_as_it_came(run):
    step = Forward(Pool(lambda question: upstream_reply(question, rcode=RCODE.NXDOMAIN)))
    q = client_query("nothing.example")
    assert run(step.resolve(q, never)).header.rcode == RCODE.NXDOMAIN
    assert q.rcode == RCODE.NXDOMAIN and q.source == "upstream"


@pytest.mark.parametrize(("do", "cd"), [(True, False), (False, True), (True, True)])
def test_the_dnssec_bits_of_the_client_reach_the_upstream(run, do, cd):
    pool = Pool()
    run(Forward(pool).resolve(client_query("example.com", do=do, cd=cd), never))
    assert [(d, c) for _q, d, c in pool.asked] == [(do, cd)]


def test_identical_questions_in_flight_cost_one_upstream_query():
    async def main() -> None:
        pool = Pool(gate=asyncio.Event())
        step = Forward(pool)
        queries = [client_query(name, qid=100 + i) for i, name in enumerate(["example.com", "EXAMPLE.com", "example.COM"])]
        waiting = [asyncio.ensure_future(step.resolve(q, never)) for q in queries]
        await asyncio.sleep(0.01)
        assert len(pool.asked) == 1 and not any(w.done() for w in waiting)
        pool.gate.set()
        replies = [DNSRecord.parse(data) for data in await asyncio.gather(*waiting)]
        assert [r.header.id for r in replies] == [100, 101, 102]
        assert [str(r.q.qname) for r in replies] == ["example.com.", "EXAMPLE.com.", "example.COM."]
        assert all(str(r.rr[0].rdata) == "93.184.216.34" for r in replies)
        assert all(q.source == "upstream" for q in queries)
        # Once answered, the next one asks again: the cache, not Forward, keeps answers.
        await step.resolve(client_query("example.com"), never)
        assert len(pool.asked) == 2

    asyncio.run(main())


@pytest.mark.parametrize("other", [{"qtype": "AAAA"}, {"do": True}, {"name": "www.example.com"}])
def test_different_questions_in_flight_are_asked_separately(other):
    async def main() -> None:
        pool = Pool(gate=asyncio.Event())
        step = Forward(pool)
        first = asyncio.ensure_future(step.resolve(client_query("example.com"), never))
        second = asyncio.ensure_future(step.resolve(client_query(**{"name": "example.com", **other}), never))
        await asyncio.sleep(0.01)
        assert len(pool.asked) == 2
        pool.gate.set()
        await asyncio.gather(first, second)

    asyncio.run(main())


def test_an_upstream_failure_reaches_every_waiter_and_the_next_query_asks_again():
    async def main() -> None:
        gate = asyncio.Event()
        pool = Pool(lambda question: UpstreamFailure("udp://192.0.2.53:53: timed out"), gate)
        step = Forward(pool)
        waiting = [asyncio.ensure_future(step.resolve(client_query("example.com", qid=i), never)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, UpstreamFailure) and "timed out" in str(r) for r in results), results
        assert len(pool.asked) == 1
        pool.reply = upstream_reply
        assert DNSRecord.parse(await step.resolve(client_query("example.com"), never)).rr
        assert len(pool.asked) == 2

    asyncio.run(main())


def _looping(question: bytes) -> bytes:
    """An answer whose record's owner name is a pointer to itself."""
    good = upstream_reply(question)
    at = 12 + len(question)
    assert good[at:at + 2] == b"\xc0\x0c"  # the owner: a pointer to the question's name
    return good[:at] + struct.pack(">H", 0xC000 | at) + good[at + 2:]


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (lambda question: upstream_reply(question)[:-3], "malformed"),  # truncated record
        (_looping, "malformed"),  # a compression loop is never cached or passed on
        (lambda question: RuntimeError("a bug in an upstream"), "a bug in an upstream"),
    ],
)
def test_a_malformed_answer_or_an_unexpected_error_is_an_upstream_failure(run, reply, why):
    step = Forward(Pool(reply))
    q = client_query("example.com")
    with pytest.raises(UpstreamFailure, match=why):
        run(step.resolve(q, never))
    assert q.reply is None and q.source == ""


def test_past_the_cap_of_distinct_questions_in_flight_a_query_fails_at_once():
    async def main() -> None:
        pool = Pool(gate=asyncio.Event())
        step = Forward(pool, max_inflight=2)
        waiting = [asyncio.ensure_future(step.resolve(client_query(f"n{i}.example"), never)) for i in (1, 2)]
        same = asyncio.ensure_future(step.resolve(client_query("n1.example", qid=7), never))
        await asyncio.sleep(0.01)
        with pytest.raises(UpstreamFailure, match="too many queries in flight"):
            await step.resolve(client_query("n3.example"), never)
        assert len(pool.asked) == 2  # the third was not sent; the repeat of n1 joined the first
        pool.gate.set()
        await asyncio.gather(*waiting, same)
        assert DNSRecord.parse(await step.resolve(client_query("n3.example"), never)).rr

    asyncio.run(main())


def test_a_client_that_gives_up_does_not_cancel_the_answer_for_the_others():
    async def main() -> None:
        pool = Pool(gate=asyncio.Event())
        step = Forward(pool)
        impatient = asyncio.ensure_future(step.resolve(client_query("example.com", qid=1), never))
        patient = asyncio.ensure_future(step.resolve(client_query("example.com", qid=2), never))
        await asyncio.sleep(0.01)
        impatient.cancel()
        await asyncio.sleep(0.01)
        pool.gate.set()
        assert DNSRecord.parse(await patient).header.id == 2
        assert impatient.cancelled() and len(pool.asked) == 1

    asyncio.run(main())
