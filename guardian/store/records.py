"""What the DNS side hands the store, and what the risk rules make of it (pure; no SQL).

A ``QueryRecord`` is built once per query by the record step, so it is a frozen,
slotted dataclass: cheap to make, safe to pass to the writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..verdicts import SEVERITIES, Outcome

# Actions and the severities of the rule packs, in rising order (the rank is used to
# keep the worst severity seen by an aggregated event).
ACTIONS = tuple(Outcome)
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# Risk-event kinds (stable names: the CLI's JSON and the dashboard show them).
BLOCKED = "blocked"
BYPASS = "bypass"
SCHEDULE = "schedule"
BUDGET = "budget"
NEW_DEVICE = "new-device"
SYSTEM = "system"
DB_NAME = "guardian.db"  # in data_dir

KINDS = (BLOCKED, BYPASS, SCHEDULE, BUDGET, NEW_DEVICE, SYSTEM)

STATES = ("new", "seen", "dismissed")


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One answered query, as the record step saw it leave the chain."""

    time: float  # epoch seconds (time.time())
    client: str  # client IP as text
    device: str | None  # device name from the household registry, None if unknown
    mac: str | None
    profile: str | None
    name: str  # queried name, lowercase, no trailing dot
    qtype: int
    action: str  # an Outcome: allowed | blocked | rewritten | refused | error
    rcode: int
    source: str  # guard | local | policy | cache | stale | upstream | servfail
    reason: str = ""  # what decided: "" (nothing matched), category, service, deny, allow, schedule, ...
    category: str | None = None
    service: str | None = None
    list_name: str | None = None
    rule: str | None = None  # the domain/rule that matched
    schedule: str | None = None
    threat: str | None = None  # from the rule packs' threat set
    severity: str | None = None  # info|low|medium|high|critical
    duration_ms: float = 0.0


# A row is a QueryRecord's fields as a plain tuple, in this order (what the DNS side ships
# to the writer process; the writer reads rows by these indexes, without a QueryRecord).
(R_TIME, R_CLIENT, R_DEVICE, R_MAC, R_PROFILE, R_NAME, R_QTYPE, R_ACTION, R_RCODE, R_SOURCE, R_REASON, R_CATEGORY,
 R_SERVICE, R_LIST, R_RULE, R_SCHEDULE, R_THREAT, R_SEVERITY, R_DURATION) = range(19)


def row_of_record(rec: QueryRecord) -> tuple[Any, ...]:
    """A QueryRecord as a row (its fields in order)."""
    return (rec.time, rec.client, rec.device, rec.mac, rec.profile, rec.name, rec.qtype, rec.action, rec.rcode,
            rec.source, rec.reason, rec.category, rec.service, rec.list_name, rec.rule, rec.schedule, rec.threat,
            rec.severity, rec.duration_ms)


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A risk event as the rules emit it: ``count`` new occurrences of the event ``key``.

    The writer adds ``count`` to the stored row with the same ``key`` (or creates it),
    so one aggregated event is one row however many batches it spans.
    """

    key: str  # identity of the aggregated event (kind | who | topic | start)
    kind: str
    first: float  # epoch seconds of the first occurrence
    last: float  # epoch seconds of the latest occurrence
    count: int  # occurrences since the previous emission of this key
    severity: str
    device: str | None = None
    client: str | None = None
    profile: str | None = None
    threat: str | None = None
    category: str | None = None
    service: str | None = None
    examples: tuple[str, ...] = ()  # a few domains (or the device's address) as examples
    message: str = ""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A risk event as read back from the store (totals, and the parent's state)."""

    id: int
    kind: str
    first: float
    last: float
    count: int
    severity: str
    state: str
    device: str | None
    client: str | None
    profile: str | None
    threat: str | None
    category: str | None
    service: str | None
    examples: tuple[str, ...] = field(default=())
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The CLI/API shape: ``time`` is the last occurrence (epoch seconds)."""
        return {
            "id": self.id,
            "time": self.last,
            "first": self.first,
            "device": self.device,
            "client": self.client,
            "profile": self.profile,
            "kind": self.kind,
            "threat": self.threat,
            "category": self.category,
            "service": self.service,
            "severity": self.severity,
            "count": self.count,
            "example": self.examples[0] if self.examples else None,
            "examples": list(self.examples),
            "message": self.message,
            "state": self.state,
        }
