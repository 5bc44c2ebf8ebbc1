"""The risk rules, pure: each kind, aggregation windows, and the stored result."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store_support import PARIS, T0, blocked, rec, sql, write

from guardian.store.records import BLOCKED, BUDGET, BYPASS, NEW_DEVICE, SCHEDULE, SYSTEM
from guardian.store.risk import RiskRules, classify


def block(t: float = T0, name: str = "porn.example", **kw: object) -> object:
    """A blocked record whatever decided it (``reason``), with the name's threat if given."""
    kw.setdefault("severity", "high" if kw.get("threat") else None)
    return rec(t, name, action="blocked", rcode=3, source="policy", **kw)


@pytest.mark.parametrize(("record", "expected"), [
    (rec(), None),
    (rec(category="gambling", threat="gambling"), None),  # allowed: not an event
    (blocked(), (BLOCKED, "gambling")),
    (blocked(threat=None, category="ads"), None),  # blocked, but no threat: no event
    (rec(action="refused", reason="bypass", category="bypass", name="mask.icloud.com"), (BYPASS, "bypass")),
    (rec(action="blocked", reason="category", category="bypass", name="dns.google"), (BYPASS, "bypass")),
    (rec(action="blocked", reason="schedule", schedule="Bedtime", category="games"), (SCHEDULE, "Bedtime")),
    (rec(action="blocked", reason="budget", category="games"), (BUDGET, "games")),
    (rec(action="blocked", reason="budget", service="tiktok", category="social"), (BUDGET, "tiktok")),
    # The threat wins over whatever decided first: pornography at bedtime is an adult event.
    (block(reason="schedule", schedule="Bedtime", category="adult", threat="pornography"), (BLOCKED, "adult")),
    (block(reason="pause", category="adult", threat="pornography"), (BLOCKED, "adult")),
    (block(reason="deny", rule="porn.example", category="adult", threat="pornography"), (BLOCKED, "adult")),
    (block(reason="override-block", category="malware", threat="malware"), (BLOCKED, "malware")),
    (block(reason="pause", category="", threat=""), None),  # a pause of a harmless name
    (block(reason="deny", category="", threat=""), None),
])
def test_classify(record: object, expected: tuple[str, str] | None) -> None:
    assert classify(record) == expected  # type: ignore[arg-type]


def test_300_blocked_attempts_make_one_event_with_a_count() -> None:
    rules = RiskRules(PARIS)
    for i in range(300):
        rules.observe(blocked(T0 + i * 10, f"bet{i % 7}.example"))
    events = rules.drain()
    assert len(events) == 1
    e = events[0]
    assert (e.kind, e.count, e.first, e.last) == (BLOCKED, 300, T0, T0 + 2990)
    assert (e.device, e.profile, e.threat, e.category, e.severity) == ("Sam's tablet", "Child", "gambling",
                                                                        "gambling", "high")
    assert len(e.examples) == 5 and e.examples[0] == "bet0.example"


def test_aggregation_is_per_device_per_category_within_the_window() -> None:
    rules = RiskRules(PARIS, window=3600)
    rules.observe(blocked(T0))
    rules.observe(blocked(T0 + 10, device="Alex's phone", client="192.168.1.21"))
    rules.observe(blocked(T0 + 20, "porn.example", category="adult", severity="critical"))
    rules.observe(blocked(T0 + 3000))  # still within an hour of the previous one
    rules.observe(blocked(T0 + 3000 + 3600))  # an hour of quiet: a new event
    events = rules.drain()
    keys = sorted((e.device, e.category, e.first, e.count) for e in events)
    assert keys == [("Alex's phone", "gambling", T0 + 10, 1), ("Sam's tablet", "adult", T0 + 20, 1),
                    ("Sam's tablet", "gambling", T0, 2), ("Sam's tablet", "gambling", T0 + 6600, 1)]


def test_severity_keeps_the_worst_seen() -> None:
    rules = RiskRules(PARIS)
    rules.observe(blocked(T0, severity="low"))
    rules.observe(blocked(T0 + 1, severity="critical"))
    rules.observe(blocked(T0 + 2, severity="medium"))
    assert rules.drain()[0].severity == "critical"


def test_budget_once_per_profile_target_and_local_day() -> None:
    rules = RiskRules(PARIS)
    budget = dict(action="blocked", reason="budget", category="games")
    late = T0 + 12 * 3600  # 23:00 in Paris
    rules.observe(rec(late, "game.example", **budget))
    rules.observe(rec(late + 1800, "game2.example", device="Alex's phone", **budget))  # same profile, same day
    rules.observe(rec(late + 3600 + 60, "game.example", **budget))  # 00:01: a new day
    events = sorted(rules.drain(), key=lambda e: e.first)
    assert [(e.kind, e.count) for e in events] == [(BUDGET, 2), (BUDGET, 1)]
    assert events[0].severity == "info"


def test_schedule_and_bypass_kinds() -> None:
    rules = RiskRules(PARIS)
    for i in range(3):
        rules.observe(rec(T0 + i, "game.example", action="blocked", reason="schedule", schedule="Bedtime",
                          category="games"))
    rules.observe(rec(T0, "mask.icloud.com", action="refused", reason="bypass", category="bypass"))
    rules.observe(rec(T0 + 5, "dns.google", action="blocked", reason="category", category="bypass",
                      severity="critical"))
    by_kind = {e.kind: e for e in rules.drain()}
    assert by_kind[SCHEDULE].count == 3 and by_kind[SCHEDULE].severity == "low"
    assert by_kind[BYPASS].count == 2 and by_kind[BYPASS].severity == "critical"
    assert by_kind[BYPASS].examples == ("mask.icloud.com", "dns.google")


def test_new_device_and_system_events() -> None:
    rules = RiskRules(PARIS)
    rules.new_device(T0, "11:22:33:44:55:66", "192.168.1.77", None, None, "Apple")
    rules.new_device(T0 + 5, "11:22:33:44:55:66", "192.168.1.77", None, None, "Apple")  # the same device
    rules.system("lists", "refreshing Big adult list fails: HTTP 404", "medium", T0)
    rules.system("lists", "refreshing Big adult list fails: HTTP 404", "medium", T0 + 600)
    by_kind = {e.kind: e for e in rules.drain()}
    assert by_kind[NEW_DEVICE].count == 1 and by_kind[NEW_DEVICE].examples == ("192.168.1.77",)
    assert by_kind[SYSTEM].count == 2 and by_kind[SYSTEM].threat == "lists"


def test_aggregation_spans_batches_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    import time
    now = time.time()
    write(path, [blocked(now - 100 + i * 0.1) for i in range(150)])
    write(path, [blocked(now - 50 + i * 0.1) for i in range(150)])  # a restart in between
    rows = sql(path, "SELECT kind, count, state FROM risk_events")
    assert rows == [("blocked", 300, "new")]


def test_a_threat_at_bedtime_is_one_event_of_the_threats_severity() -> None:
    rules = RiskRules(PARIS)
    rules.observe(block(T0, "porn.example", category="adult", threat="pornography", reason="schedule",  # type: ignore[arg-type]
                        schedule="Bedtime"))
    rules.observe(rec(T0 + 5, "kids.example", action="blocked", reason="schedule", schedule="Bedtime"))
    events = sorted(rules.drain(), key=lambda e: e.kind)
    assert [(e.kind, e.category, e.threat, e.severity) for e in events] == [
        (BLOCKED, "adult", "pornography", "high"), (SCHEDULE, None, None, "low")]
