"""The risk rules: which queries are worth telling a parent about, aggregated (pure).

Kinds:
- ``bypass``: the query was refused as a bypass attempt (``reason == "bypass"``, or the
  name is in the rule packs' ``bypass`` category: DoH/VPN/proxy names, canaries);
- ``budget``: blocked because a budget was used up — one event per profile, target
  and local day;
- ``schedule``: blocked inside a schedule's blocked window, the name on no threat list;
- ``blocked``: a blocked name on a threat list (``record.threat``), whatever decided the
  block: a category, a schedule, a pause, the deny list or a parent's one-domain block
  (the policy names the threat on every block, so the threat is preferred);
- ``new-device`` and ``system`` come in through their own entry points.

Severity and threat come from the record (the rule packs set them), so a new category
needs no code here. Repeated occurrences by one device on one topic become one event:
an event stays open while its occurrences are less than ``window`` seconds apart and
collects a count, the last time, the worst severity and a few example names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from ..usage import local_day
from ..verdicts import Outcome, Reason
from .records import (
    BLOCKED,
    BUDGET,
    BYPASS,
    NEW_DEVICE,
    R_ACTION,
    R_CATEGORY,
    R_CLIENT,
    R_DEVICE,
    R_NAME,
    R_PROFILE,
    R_REASON,
    R_SCHEDULE,
    R_SERVICE,
    R_SEVERITY,
    R_THREAT,
    R_TIME,
    SCHEDULE,
    SEVERITY_RANK,
    SYSTEM,
    QueryRecord,
    RiskEvent,
    row_of_record,
)

MAX_EXAMPLES = 5
SEP = "\x1f"  # joins the parts of an event key; never part of a name
DEFAULT_SEVERITY = {BLOCKED: "medium", BYPASS: "high", SCHEDULE: "low", BUDGET: "info", NEW_DEVICE: "medium",
                    SYSTEM: "high"}


def classify(rec: QueryRecord) -> tuple[str, str] | None:
    """(kind, topic) of the risk this query shows, or None. Topic groups the aggregation."""
    return classify_row(row_of_record(rec))


def classify_row(row: tuple[Any, ...]) -> tuple[str, str] | None:
    """``classify`` for a row (a QueryRecord's fields in order, records.R_*)."""
    reason, action, category = row[R_REASON], row[R_ACTION], row[R_CATEGORY]
    if reason == Reason.BYPASS or (category == "bypass" and action in (Outcome.BLOCKED, Outcome.REFUSED)):
        return BYPASS, category or row[R_SERVICE] or "bypass"
    if action != Outcome.BLOCKED:
        return None
    if reason == Reason.BUDGET:
        return BUDGET, row[R_SERVICE] or category or ""
    if row[R_THREAT]:
        # The threat wins whatever decided first (a schedule, a pause, the deny list):
        # pornography at bedtime is an adult event of the adult severity.
        return BLOCKED, category or row[R_SERVICE] or row[R_THREAT]
    if reason == Reason.SCHEDULE:
        return SCHEDULE, row[R_SCHEDULE] or ""
    return None


def is_risk(rec: QueryRecord) -> bool:
    """Kept in detail in ``risks-only`` privacy mode: blocked, threats and risk events."""
    return is_risk_row(row_of_record(rec))


def is_risk_row(row: tuple[Any, ...]) -> bool:
    """``is_risk`` for a row."""
    return row[R_ACTION] == Outcome.BLOCKED or bool(row[R_THREAT]) or classify_row(row) is not None


def worse(a: str, b: str) -> str:
    """The more severe of two severities (unknown names rank lowest)."""
    return a if SEVERITY_RANK.get(a, -1) >= SEVERITY_RANK.get(b, -1) else b


@dataclass(slots=True)
class _Open:
    """An aggregated event still open, with what changed since the last drain."""

    key: str
    kind: str
    first: float
    last: float
    severity: str
    device: str | None
    client: str | None
    profile: str | None
    threat: str | None
    category: str | None
    service: str | None
    examples: list[str] = field(default_factory=list)
    message: str = ""
    pending: int = 0  # occurrences not yet drained
    day: date | None = None  # budget events: the local day they belong to


class RiskRules:
    """Turns records into aggregated ``RiskEvent`` deltas; one instance per writer.

    Call ``observe`` per record (and ``system``/``new_device``), then ``drain`` once per
    batch to get one delta per event touched.
    """

    def __init__(self, zone: ZoneInfo, window: float = 3600.0) -> None:
        self.zone = zone
        self.window = window  # seconds an event stays open after its latest occurrence
        self._open: dict[tuple[str, str, str], _Open] = {}
        self._touched: dict[str, _Open] = {}

    def rename(self, kind: str, old: str, new: str) -> None:
        """A profile or device renamed: open events carry the new name from now on (the
        stored rows are renamed by store/rename.py)."""
        for ev in self._open.values():
            if kind == "profile" and ev.profile == old:
                ev.profile = new
            elif kind == "device" and ev.device == old:
                ev.device = new

    def observe(self, rec: QueryRecord) -> None:
        self.observe_row(row_of_record(rec))

    def observe_row(self, row: tuple[Any, ...]) -> None:
        """``observe`` for a row (a QueryRecord's fields in order, records.R_*)."""
        found = classify_row(row)
        if found is None:
            return
        kind, topic = found
        at, client, device, profile = row[R_TIME], row[R_CLIENT], row[R_DEVICE], row[R_PROFILE]
        severity = row[R_SEVERITY]
        who = device or client or profile or ""
        if kind == BUDGET:
            day = local_day(at, self.zone)
            slot = (kind, f"{profile or who}:{topic}", day.isoformat())
            ev = self._open.get(slot)
            if ev is None:
                ev = self._start(slot, SEP.join(slot), kind, at, severity, device, client or None, profile,
                                 row[R_THREAT], row[R_CATEGORY], row[R_SERVICE])
                ev.day = day
        else:
            slot = (kind, who, topic)
            ev = self._open.get(slot)
            if ev is None or at - ev.last >= self.window:
                ev = self._start(slot, SEP.join((*slot, f"{at:.3f}")), kind, at, severity, device, client or None,
                                 profile, row[R_THREAT], row[R_CATEGORY], row[R_SERVICE])
        self._hit(ev, at, severity, row[R_NAME])

    def system(self, what: str, message: str, severity: str, time: float) -> None:
        """A system problem (``what``: storage, upstream, lists, ...), aggregated like the rest."""
        slot = (SYSTEM, what, message)
        ev = self._open.get(slot)
        if ev is None or time - ev.last >= self.window:
            ev = self._start(slot, SEP.join((*slot, f"{time:.3f}")), SYSTEM, time, severity, None, None, None,
                             what, None, None)
            ev.message = message
        self._hit(ev, time, severity, None)

    def bypass(self, time: float, mac: str | None, ip: str | None, name: str | None, profile: str | None,
               detail: str) -> None:
        """A device seen talking to another resolver (discovery), aggregated with the DNS
        side's bypass attempts of the same device; ``detail`` ("DNS to 192.0.2.53:53") is
        the example."""
        who = name or ip or ""
        slot = (BYPASS, who, "bypass")
        ev = self._open.get(slot)
        if ev is None or time - ev.last >= self.window:
            ev = self._start(slot, SEP.join((*slot, f"{time:.3f}")), BYPASS, time, "high", name, ip, profile, None,
                             "bypass", None)
        self._hit(ev, time, "high", detail or None)

    def new_device(self, time: float, mac: str | None, ip: str | None, name: str | None, profile: str | None,
                   detail: str = "", severity: str | None = None) -> None:
        """A device joined the network (one event per MAC, or per address without one)."""
        who = mac or ip or name or "?"
        slot = (NEW_DEVICE, who, "")
        if slot in self._open:
            return
        ev = self._start(slot, SEP.join(slot), NEW_DEVICE, time, severity, name, ip, profile, None, None, None)
        ev.message = detail
        self._hit(ev, time, severity, ip or mac)

    def drain(self, now: float | None = None) -> list[RiskEvent]:
        """Deltas of every event touched since the last drain; forgets long-closed events."""
        out = [
            RiskEvent(key=ev.key, kind=ev.kind, first=ev.first, last=ev.last, count=ev.pending, severity=ev.severity,
                      device=ev.device, client=ev.client, profile=ev.profile, threat=ev.threat,
                      category=ev.category, service=ev.service, examples=tuple(ev.examples), message=ev.message)
            for ev in self._touched.values()
        ]
        for ev in self._touched.values():
            ev.pending = 0
        self._touched.clear()
        if now is not None and len(self._open) > 1000:
            self.forget(now)
        return out

    def forget(self, now: float) -> None:
        """Close events idle for more than a window (budget events: after their day)."""
        today = local_day(now, self.zone)
        self._open = {
            slot: ev for slot, ev in self._open.items()
            if (now - ev.last < self.window if ev.day is None else ev.day == today) or ev.pending
        }

    def seed(self, events: Iterable[RiskEvent]) -> None:
        """Reopen events from the store after a restart, so aggregation continues."""
        for e in events:
            parts = e.key.split(SEP)
            if len(parts) < 3:
                continue
            slot = (parts[0], parts[1], parts[2])
            ev = self._open[slot] = _Open(e.key, e.kind, e.first, e.last, e.severity, e.device, e.client, e.profile,
                                     e.threat, e.category, e.service, list(e.examples), e.message)
            if e.kind == BUDGET:
                ev.day = date.fromisoformat(parts[2])

    def _start(self, slot: tuple[str, str, str], key: str, kind: str, time: float, severity: str | None,
               device: str | None, client: str | None, profile: str | None, threat: str | None,
               category: str | None, service: str | None) -> _Open:
        ev = _Open(key, kind, time, time, severity or DEFAULT_SEVERITY[kind], device, client, profile, threat,
                   category, service)
        self._open[slot] = ev
        return ev

    def _hit(self, ev: _Open, time: float, severity: str | None, example: str | None) -> None:
        ev.pending += 1
        if time > ev.last:
            ev.last = time
        if severity:
            ev.severity = worse(ev.severity, severity)
        if example and len(ev.examples) < MAX_EXAMPLES and example not in ev.examples:
            ev.examples.append(example)
        self._touched[ev.key] = ev
