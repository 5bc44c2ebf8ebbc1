"""The words a query's fate is told in: what a decision does, why, and what the query
log stores. ``StrEnum`` members are the strings themselves (``Action.BLOCK == "block"``),
so guardian.db, the CLI's JSON and the dashboard keep the same values; code compares
with the members, never with raw strings.

Below policy/, store/ and dns/ (all three speak these words); imports nothing.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a decision does with a query (``Decision.action``)."""

    ALLOW = "allow"
    BLOCK = "block"
    REWRITE = "rewrite"


class Reason(StrEnum):
    """What decided (``Decision.reason``, stored as the query's reason)."""

    NONE = ""  # nothing matched (or an allowlist did: its list is named)
    ALLOW = "allow"  # the profile's allow list
    DENY = "deny"  # the profile's deny list
    CATEGORY = "category"
    SERVICE = "service"
    SCHEDULE = "schedule"
    BUDGET = "budget"
    OVERRIDE_ALLOW = "override-allow"
    OVERRIDE_BLOCK = "override-block"
    PAUSE = "pause"
    BYPASS = "bypass"
    SAFE_SEARCH = "safe-search"


# How grave a risk event or a category is, lowest first (rule packs, the store, metrics).
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")


class Outcome(StrEnum):
    """What the query log stores as a query's action (``QueryRecord.action``)."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    REWRITTEN = "rewritten"
    REFUSED = "refused"
    ERROR = "error"
