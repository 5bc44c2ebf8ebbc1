"""Record step: every answered query goes to the store's queue, as the parent will see it.

Sits below the guard (refused floods are counted there, not logged row by row) and
above policy, so blocked and rewritten answers are logged with the reason that
decided them. ``record()`` is an O(1) append; the store writes in batches elsewhere.
"""

from __future__ import annotations

import time
from typing import Protocol

from ...store.records import QueryRecord
from ..chain import Answer, Next, Query, then
from ..wire import REFUSED, SERVFAIL


class Sink(Protocol):
    def record(self, rec: QueryRecord) -> None: ...
    def repeat(self, rec: QueryRecord, epoch: float) -> None: ...


def action_of(query: Query) -> str:
    decision = query.decision
    if decision is not None and decision.action != "allow":
        return "blocked" if decision.action == "block" else "rewritten"
    if query.rcode == REFUSED:
        return "refused"
    if query.rcode == SERVFAIL:
        return "error"
    return "allowed"


def record_of(query: Query, now: float) -> QueryRecord:
    device = query.device
    profile = query.profile
    d = query.decision
    return QueryRecord(
        time=now,
        client=query.client,
        device=getattr(device, "name", None),
        mac=getattr(device, "mac", None),
        profile=getattr(profile, "name", None),
        name=query.q.name,
        qtype=query.q.qtype,
        action=action_of(query),
        rcode=query.rcode,
        source=query.source,
        reason=d.reason if d is not None else "",
        category=getattr(d, "category", None),
        service=getattr(d, "service", None),
        list_name=getattr(d, "list_name", None),
        rule=getattr(d, "rule", None),
        schedule=getattr(d, "schedule", None),
        threat=getattr(d, "threat", None),
        severity=getattr(d, "severity", None),
        duration_ms=round((time.monotonic() - query.received) * 1000, 3),
    )


class Record:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def resolve(self, query: Query, nxt: Next) -> Answer:
        def log(answer: bytes) -> bytes:
            rec = record_of(query, time.time())
            self.sink.record(rec)
            sink = self.sink
            query.repeat = lambda epoch: sink.repeat(rec, epoch)
            return answer

        return then(nxt(query), log)
