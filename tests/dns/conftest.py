"""Fixtures for driving one chain step on its own: a query as the listener makes it, a
fake ``nxt`` that records what reached it, a small household's policy snapshot, and
upstream-style answers built with dnslib."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SOA, A, DNSRecord

from guardian.dns.chain import Answer, Query
from guardian.dns.wire import parse_query, parse_reply
from guardian.lists.compile import compile_snapshot
from guardian.policy.household import household_from_config
from guardian.policy.lists import parse_text
from guardian.policy.matcher import ListSource, Matcher
from guardian.policy.snapshot import CategoryInfo, PolicyHolder, build_snapshot

HOUSEHOLD: dict[str, Any] = {
    "default_profile": "Guest",
    "profiles": [
        {"name": "Child", "categories": ["adult", "games"], "block_mode": "nxdomain", "deny": ["denied.example"]},
        {"name": "Guest", "categories": []},
    ],
    "devices": [
        {"name": "tablet", "mac": "aa:bb:cc:dd:ee:01", "profile": "Child"},
        {"name": "console", "ip": "192.168.1.30", "profile": "Child"},
    ],
}
LISTS = [
    (1, "adult list", "adult", "deny", "adult.example\n"),
    (2, "games list", "games", "deny", "games.example\n"),
]
CATEGORIES = {"adult": CategoryInfo("adult", ("pornography",), "high"), "games": CategoryInfo("games", (), "low")}


def make_query(name: str, qtype: str = "A", client: str = "192.168.1.20", transport: str = "udp") -> Query:
    """A client's query as the listener hands it to the chain."""
    data = bytes(DNSRecord.question(name, qtype).pack())
    return Query(data, parse_query(data), client, transport)


def answer_for(query: Query, records: list[tuple[str, str]] = (), rcode: int = RCODE.NOERROR, ttl: int = 300,
               soa: bool = False) -> bytes:
    """An upstream's answer to ``query``: (type, value) records for its name."""
    request = DNSRecord.parse(query.data)
    reply = request.reply()
    reply.header.rcode = rcode
    for rtype, value in records:
        rdata = {"A": A, "AAAA": AAAA, "CNAME": CNAME}[rtype](value)
        reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), ttl=ttl, rdata=rdata))
    if soa:
        reply.add_auth(RR("example.", QTYPE.SOA, ttl=ttl, rdata=SOA("a.example.", "b.example.", (1, 2, 3, 4, 60))))
    return bytes(reply.pack())


class FakeNext:
    """The rest of the chain: records each query that reached it and answers with
    ``answer(query)`` (bytes; or raises what it returns when that is an exception)."""

    def __init__(self, answer: Callable[[Query], bytes | BaseException] | None = None, *,
                 wait: bool = False, upstream: bool = False) -> None:
        self.seen: list[Query] = []
        self.answer = answer or (lambda q: answer_for(q, [("A", "93.184.216.34")]))
        self.wait = wait  # answer with an awaitable, as the upstream side does
        self.upstream = upstream  # fill query.reply and its TTLs, as Forward does

    def __call__(self, query: Query) -> Answer:
        self.seen.append(query)
        out = self.answer(query)
        if isinstance(out, BaseException):
            if self.wait:
                return _raise(out)
            raise out
        if self.upstream:
            reply = parse_reply(out)
            query.reply, query.cnames = reply, tuple(reply.cnames)
            query.ttls, query.ttl_base, query.rcode, query.source = reply.ttls, reply.question_end, reply.rcode, "upstream"
        return _ready(out) if self.wait else out


async def _ready(data: bytes) -> bytes:
    return data


async def _raise(exc: BaseException) -> bytes:
    raise exc


def finish(answer: Answer) -> bytes:
    """The bytes of an answer, waiting for it if the step returned an awaitable."""
    if isinstance(answer, bytes):
        return answer
    return asyncio.run(_await(answer))


async def _await(answer: Awaitable[bytes]) -> bytes:
    return await answer


def parsed(answer: Answer) -> DNSRecord:
    return DNSRecord.parse(finish(answer))


@pytest.fixture
def query() -> Callable[..., Query]:
    return make_query


@pytest.fixture
def answer() -> Callable[..., bytes]:
    return answer_for


@pytest.fixture
def fake_next() -> type[FakeNext]:
    return FakeNext


@pytest.fixture
def run() -> Callable[[Answer], DNSRecord]:
    """Wait for a step's answer and parse it."""
    return parsed


@pytest.fixture(scope="session")
def household_matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    sources = [ListSource(i, name, cat, kind, parse_text(text)) for i, name, cat, kind, text in LISTS]  # type: ignore[arg-type]
    return Matcher.load(compile_snapshot(sources, tmp_path_factory.mktemp("lists")))


@pytest.fixture
def holder(household_matcher: Matcher) -> PolicyHolder:
    """The policy snapshot of a small household: a Child profile (adult and games lists,
    a deny list) on the tablet (by MAC) and the console (by address), Guest for the rest."""
    household, problems = household_from_config(HOUSEHOLD, categories=CATEGORIES, services={})
    assert problems == []
    return PolicyHolder(build_snapshot(household, household_matcher, zone=ZoneInfo("UTC"), categories=CATEGORIES))
