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
from typing import Any, Protocol

from ...store.records import QueryRecord
from ...verdicts import Action, Outcome, Reason
from ..chain import Answer, Next, Query, then
from ..wire import REFUSED, SERVFAIL

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where records go. A sink that also has ``record_row(row)`` and ``repeat_row(row,
    epoch)`` (the store's Recorder) is given rows: a QueryRecord's fields as a tuple, in
    order, the form the writer process is sent anyway (a tuple costs a few hundredths of
    a microsecond to build, the frozen QueryRecord several microseconds)."""

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
    return QueryRecord(*row_of(query, now, services))


def row_of(query: Query, now: float, services: Collection[str] = ()) -> tuple[Any, ...]:
    """The query's record as a row: QueryRecord's fields in their order."""
    device = query.device
    profile = query.profile
    d = query.decision
    q = query.q
    head = (now, query.client, device.name if device is not None else None, device.mac if device is not None else None,
            profile.name if profile is not None else None, q.name, q.qtype, action_of(query), query.rcode, query.source)
    duration = round((time.monotonic() - query.received) * 1000, 3)
    if d is None:
        return (*head, Reason.NONE, None, None, None, None, None, None, None, duration)
    category = d.category or None
    service = d.service or None
    if not category and not service and d.budget_targets:
        # An allowed name that counts toward a budget: log its target, so the store's
        # usage minutes (what a restart reloads) are the ones the budget counted.
        target = d.budget_targets[0]
        if target in services:
            service = target
        else:
            category = target
    return (*head, d.reason, category, service, d.list_name, d.rule, d.schedule, d.threat, d.severity, duration)


class Record:
    LOG_EVERY = 60.0  # seconds between log lines about a failing sink

    def __init__(self, sink: Sink, clock: Callable[[], float] = time.time, services: Collection[str] = ()) -> None:
        self.sink = sink
        self.clock = clock  # the daemon's "now", as the policy sees it
        self.services = frozenset(services)  # service ids (budget targets that are not categories)
        self.failed = 0  # records lost to a failing sink
        self._last_log = -1e9
        # Rows when the sink takes both kinds (the store's Recorder), else QueryRecords.
        self._repeat_row: Callable[[tuple[Any, ...], float], None] | None = getattr(sink, "repeat_row", None)
        self._record_row: Callable[[tuple[Any, ...]], None] | None = (
            getattr(sink, "record_row", None) if self._repeat_row is not None else None)

    def resolve(self, query: Query, nxt: Next) -> Answer:
        if self._record_row is not None:
            answer = nxt(query)
            if isinstance(answer, bytes):  # answered without waiting: no closure, no then()
                return self._logged_row(query, answer)
            return then(answer, lambda ready: self._logged_row(query, ready))

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

    def _logged_row(self, query: Query, answer: bytes) -> bytes:
        try:
            row = row_of(query, self.clock(), self.services)
            self._record_row(row)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the query log never costs a device its answer
            self._lost()
            return answer
        query.repeat = lambda _epoch: self._repeat_of_row(row)
        return answer

    def _repeat_of_row(self, row: tuple[Any, ...]) -> None:
        try:
            self._repeat_row(row, self.clock())  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - as for record()
            self._lost()

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
