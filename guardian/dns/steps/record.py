"""Record step: every answered query goes to the store's queue, as the parent will see it.

Sits below the guard (refused floods are counted there, not logged row by row) and
above policy, so blocked and rewritten answers are logged with the reason that
decided them. ``record()`` is an O(1) append; the store writes in batches elsewhere.
A sink that fails loses the record, never the answer (counted, logged once a minute).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

from ...store.records import QueryRecord
from ...verdicts import Action, Outcome, Reason
from ..chain import Answer, Next, Query, then
from ..wire import REFUSED, SERVFAIL

log = logging.getLogger(__name__)


class Sink(Protocol):
    def record(self, rec: QueryRecord) -> None: ...
    def repeat(self, rec: QueryRecord, epoch: float) -> None: ...


def action_of(query: Query) -> Outcome:
    decision = query.decision
    if decision is not None and decision.action is not Action.ALLOW:
        return Outcome.BLOCKED if decision.action is Action.BLOCK else Outcome.REWRITTEN
    if query.rcode == REFUSED:
        return Outcome.REFUSED
    if query.rcode == SERVFAIL:
        return Outcome.ERROR
    return Outcome.ALLOWED


def record_of(query: Query, now: float, services: Collection[str] = ()) -> QueryRecord:
    device = query.device
    profile = query.profile
    d = query.decision
    category = getattr(d, "category", None) or None
    service = getattr(d, "service", None) or None
    if d is not None and not category and not service and d.budget_targets:
        # An allowed name that counts toward a budget: log its target, so the store's
        # usage minutes (what a restart reloads) are the ones the budget counted.
        target = d.budget_targets[0]
        if target in services:
            service = target
        else:
            category = target
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
        reason=d.reason if d is not None else Reason.NONE,
        category=category,
        service=service,
        list_name=getattr(d, "list_name", None),
        rule=getattr(d, "rule", None),
        schedule=getattr(d, "schedule", None),
        threat=getattr(d, "threat", None),
        severity=getattr(d, "severity", None),
        duration_ms=round((time.monotonic() - query.received) * 1000, 3),
    )


class Record:
    LOG_EVERY = 60.0  # seconds between log lines about a failing sink

    def __init__(self, sink: Sink, clock: Callable[[], float] = time.time, services: Collection[str] = ()) -> None:
        self.sink = sink
        self.clock = clock  # the daemon's "now", as the policy sees it
        self.services = frozenset(services)  # service ids (budget targets that are not categories)
        self.failed = 0  # records lost to a failing sink
        self._last_log = -1e9

    def resolve(self, query: Query, nxt: Next) -> Answer:
        def logged(answer: bytes) -> bytes:
            try:
                rec = record_of(query, self.clock(), self.services)
                self.sink.record(rec)
            except Exception:  # noqa: BLE001 - the query log never costs a device its answer
                self._lost()
                return answer
            query.repeat = lambda _epoch: self._repeat(rec)
            return answer

        return then(nxt(query), logged)

    def _repeat(self, rec: QueryRecord) -> None:
        try:
            self.sink.repeat(rec, self.clock())
        except Exception:  # noqa: BLE001 - as for record()
            self._lost()

    def _lost(self) -> None:
        self.failed += 1
        now = time.monotonic()
        if now - self._last_log >= self.LOG_EVERY:
            self._last_log = now
            log.exception("query log: a record was lost (%d so far); the answer was sent", self.failed)
