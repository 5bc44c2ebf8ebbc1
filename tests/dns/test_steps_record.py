"""The record step on its own: one query-log record per answer, as the parent will see
it (device, profile, outcome and the reason that decided), handed to a fake sink; a
failing sink never costs the device its answer."""

from __future__ import annotations

import asyncio

import pytest
from dnslib import QTYPE, RCODE

from guardian.dns.chain import Query
from guardian.dns.steps.record import Record
from guardian.policy.decide import Decision
from guardian.store.records import QueryRecord
from guardian.verdicts import Action, Outcome, Reason

NOW = 1_765_000_000.0  # the daemon's epoch "now"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Sink:
    """The store's recorder: keeps what it is given; ``broken`` makes it raise."""

    def __init__(self, broken: BaseException | None = None) -> None:
        self.records: list[QueryRecord] = []
        self.repeats: list[tuple[QueryRecord, float]] = []
        self.broken = broken

    def record(self, rec: QueryRecord) -> None:
        if self.broken is not None:
            raise self.broken
        self.records.append(rec)

    def repeat(self, rec: QueryRecord, epoch: float) -> None:
        if self.broken is not None:
            raise self.broken
        self.repeats.append((rec, epoch))


def deciding(decision: Decision | None, rcode: int = RCODE.NOERROR, source: str = "upstream", answer=None):
    """A fake lower chain that decides as Policy would, then answers."""

    def below(q: Query) -> bytes:
        q.decision, q.rcode, q.source = decision, rcode, source
        return answer(q, [] if rcode else [("A", "93.184.216.34")], rcode=rcode)

    return below


def test_each_answer_is_logged_once_with_who_asked_and_what_they_got(query, answer, fake_next, run, holder):
    sink, clock = Sink(), Clock()
    step = Record(sink, clock)
    q = query("Games.Example", "AAAA", client="192.168.1.30")
    q.device, q.profile = holder.current.resolve("192.168.1.30", None, None)  # as Identify named them
    nxt = fake_next(deciding(Decision(Action.ALLOW), answer=answer))
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.NOERROR and nxt.seen == [q]
    [rec] = sink.records
    assert (rec.time, rec.client, rec.device, rec.profile, rec.name, rec.qtype) == (
        NOW, "192.168.1.30", "console", "Child", "games.example", QTYPE.AAAA)
    assert (rec.action, rec.rcode, rec.source, rec.reason) == (Outcome.ALLOWED, RCODE.NOERROR, "upstream", Reason.NONE)
    assert rec.duration_ms >= 0


def test_a_stranger_is_logged_without_a_device(query, answer, fake_next, run):
    sink = Sink()
    run(Record(sink, Clock()).resolve(query("example.com", client="192.168.1.99"), fake_next()))
    [rec] = sink.records
    assert rec.device is None and rec.mac is None and rec.profile is None and rec.client == "192.168.1.99"


def test_a_block_is_logged_with_the_reason_list_and_threat_that_decided_it(query, answer, fake_next, run):
    sink = Sink()
    decision = Decision(Action.BLOCK, Reason.CATEGORY, profile="Child", category="adult", list_name="adult list",
                        rule="adult.example", threat="pornography", severity="high", block_mode="nxdomain")
    q = query("www.adult.example")
    run(Record(sink, Clock()).resolve(q, fake_next(deciding(decision, RCODE.NXDOMAIN, "policy", answer))))
    [rec] = sink.records
    assert (rec.action, rec.reason, rec.category, rec.list_name, rec.rule, rec.threat, rec.severity) == (
        Outcome.BLOCKED, Reason.CATEGORY, "adult", "adult list", "adult.example", "pornography", "high")
    assert rec.source == "policy" and rec.rcode == RCODE.NXDOMAIN


@pytest.mark.parametrize(
    ("decision", "rcode", "source", "outcome"),
    [
        (None, RCODE.NOERROR, "local", Outcome.ALLOWED),
        (Decision(Action.ALLOW), RCODE.NXDOMAIN, "upstream", Outcome.ALLOWED),  # the name does not exist
        (Decision(Action.BLOCK, Reason.SCHEDULE, schedule="bedtime"), RCODE.NOERROR, "policy", Outcome.BLOCKED),
        (Decision(Action.REWRITE, Reason.SAFE_SEARCH, target="forcesafesearch.google.com"), RCODE.NOERROR, "policy",
         Outcome.REWRITTEN),
        (None, RCODE.REFUSED, "guard", Outcome.REFUSED),
        (Decision(Action.ALLOW), RCODE.SERVFAIL, "servfail", Outcome.ERROR),  # every upstream failed
    ],
)
def test_the_outcome_logged_is_what_the_device_got(query, answer, fake_next, run, decision, rcode, source, outcome):
    sink = Sink()
    run(Record(sink, Clock()).resolve(query("example.com"), fake_next(deciding(decision, rcode, source, answer))))
    [rec] = sink.records
    assert rec.action == outcome and rec.source == source and rec.rcode == rcode
    assert rec.reason == (decision.reason if decision else Reason.NONE)


@pytest.mark.parametrize(("target", "category", "service"), [("youtube", None, "youtube"), ("games", "games", None)])
def test_an_allowed_name_counting_toward_a_budget_is_logged_with_its_target(query, answer, fake_next, run, target,
                                                                             category, service):
    # The store's usage minutes (what a restart reloads) must be the ones the budget counted.
    sink = Sink()
    decision = Decision(Action.ALLOW, budget_targets=(target,))
    run(Record(sink, Clock(), services={"youtube"}).resolve(query("v.example"), fake_next(deciding(decision, answer=answer))))
    [rec] = sink.records
    assert (rec.category, rec.service) == (category, service)


def test_an_answer_still_on_its_way_is_logged_when_it_arrives(query, fake_next):
    async def main() -> None:
        sink = Sink()
        pending = Record(sink, Clock()).resolve(query("example.com"), fake_next(wait=True))
        assert not isinstance(pending, bytes) and sink.records == []  # nothing logged before the answer
        assert await pending  # type: ignore[misc]
        assert len(sink.records) == 1

    asyncio.run(main())


def test_a_packet_cache_repeat_logs_the_same_record_at_its_own_time(query, fake_next, run):
    sink, clock = Sink(), Clock()
    q = query("example.com")
    run(Record(sink, clock).resolve(q, fake_next()))
    assert q.repeat is not None
    clock.now = NOW + 42
    q.repeat(0.0)
    assert sink.repeats == [(sink.records[0], NOW + 42)]


@pytest.mark.parametrize("wait", [False, True])
def test_a_failing_sink_never_costs_the_device_its_answer(query, fake_next, run, wait):
    step = Record(Sink(broken=RuntimeError("the store's queue is gone")), Clock())
    q = query("example.com")
    reply = run(step.resolve(q, fake_next(wait=wait)))
    assert reply.header.rcode == RCODE.NOERROR and [str(rr.rdata) for rr in reply.rr] == ["93.184.216.34"]
    assert step.failed == 1
    assert q.repeat is None  # nothing to repeat: the packet cache resends without logging


def test_a_failing_repeat_is_counted_not_raised_into_the_listener(query, fake_next, run):
    sink = Sink()
    step = Record(sink, Clock())
    q = query("example.com")
    run(step.resolve(q, fake_next()))
    sink.broken = OSError("gone")
    assert q.repeat is not None
    q.repeat(NOW)
    assert step.failed == 1 and len(sink.records) == 1
