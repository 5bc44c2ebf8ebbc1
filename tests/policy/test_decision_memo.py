"""DecisionMemo (the DNS side's memo of decide()): at every moment it gives exactly what
decide() gives, across pause and override ends, schedule boundaries, bonus time, TTL caps
counting down and a used-up budget, and a new snapshot (a parent's action) applies to the
very next query."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from guardian.lists.compile import compile_snapshot
from guardian.policy.decide import DecisionMemo, decide
from guardian.policy.household import Household, Override, household_from_config
from guardian.policy.lists import parse_text
from guardian.policy.matcher import ListSource, Matcher
from guardian.policy.snapshot import CategoryInfo, MeterBudgets, Snapshot, build_snapshot, with_override
from guardian.usage import UsageMeter

PARIS = ZoneInfo("Europe/Paris")


def paris(h: int, mi: int = 0, s: float = 0.0) -> float:
    return datetime(2024, 3, 27, h, mi, tzinfo=PARIS).timestamp() + s  # a Wednesday


CATEGORIES = {
    "adult": CategoryInfo("adult", ("pornography",), "high"),
    "games": CategoryInfo("games", ("gaming-addiction",), "low"),
}
LISTS = [
    (1, "adult list", "adult", "deny", "adult.example\n"),
    (2, "games list", "games", "deny", "games.example\nplay.example\n"),
]
HOUSEHOLD = {
    "default_profile": "Guest",
    "profiles": [
        {"name": "Child", "categories": ["adult"], "deny": ["denied.example"], "allow": ["allowed.example"],
         "schedules": [
             {"name": "Bedtime", "days": ["wed"], "from": "21:00", "to": "23:00", "block": "all"},
             {"name": "Homework", "days": ["wed"], "from": "16:00", "to": "18:00", "block": ["games"]},
         ],
         "budgets": [{"target": "games", "minutes": 2}]},
        {"name": "Guest", "categories": ["adult"]},
    ],
    "devices": [
        {"name": "tablet", "mac": "aa:bb:cc:dd:ee:ff", "profile": "Child"},
        {"name": "phone", "ip": "192.168.1.23", "profile": "Child"},
    ],
}
NAMES = ["unlisted.example", "www.adult.example", "games.example", "denied.example", "allowed.example",
         "site.example", "www.site.example"]


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    sources = [ListSource(i, name, cat, kind, parse_text(text)) for i, name, cat, kind, text in LISTS]  # type: ignore[arg-type]
    return Matcher.load(compile_snapshot(sources, tmp_path_factory.mktemp("lists")))


@pytest.fixture(scope="module")
def household() -> Household:
    household, problems = household_from_config(HOUSEHOLD, categories=CATEGORIES)
    assert problems == []
    return household


def snapshot(household: Household, matcher: Matcher, *overrides: Override, meter: UsageMeter | None = None) -> Snapshot:
    snap = build_snapshot(household, matcher, zone=PARIS, categories=CATEGORIES,
                          budgets=MeterBudgets(meter or UsageMeter(), PARIS))
    for override in overrides:
        snap = with_override(snap, override)
    return snap


def same_as_decide(memo: DecisionMemo, snap: Snapshot, times: list[float]) -> int:
    """Ask every name for every device (and no device) at each of ``times`` through the
    memo and through decide(); they must agree. Returns how many answers the memo kept."""
    who = [(snap.household.device(d), snap.household.profile_of(snap.household.device(d))) for d in ("tablet", "phone")]
    who.append((None, snap.household.by_name["Guest"]))
    for t in times:
        for device, profile in who:
            for name in NAMES:
                for qtype in (1, 28):
                    expected = decide(name, qtype, device, profile, t, snap)
                    assert memo.decide(name, qtype, device, profile, t, snap) == expected, (name, device, t)
    return len(memo)


def steps(start: float, end: float, step: float) -> list[float]:
    out, t = [], start
    while t < end:
        out.append(t)
        t += step
    return out


# Each window crosses the boundaries of what it sets up (and the 120 s / whole-minute
# steps of the TTL caps counting down to them), in steps that do not divide a second.
WINDOWS = {
    "pause of a device, fractional end": ([Override("pause-device", "tablet", paris(12, 10, 0.3), paris(12))],
                                          steps(paris(12, 7), paris(12, 11), 0.7)),
    "pause of a profile": ([Override("pause-profile", "Child", paris(12, 5, 0.5), paris(12))],
                           steps(paris(12, 2), paris(12, 6), 0.9)),
    "allow and block one domain": ([Override("allow-domain", "Child", paris(12, 3, 0.25), paris(12), "adult.example"),
                                    Override("block-domain", "Child", paris(12, 4, 0.75), paris(12), "site.example")],
                                   steps(paris(12, 0), paris(12, 6), 0.55)),
    "a schedule opens and closes": ([], steps(paris(15, 57), paris(16, 1), 0.65) + steps(paris(17, 58), paris(18, 1), 0.8)),
    "block-all bedtime": ([], steps(paris(20, 57), paris(21, 1), 0.6)),
    "bonus time ends": ([Override("bonus", "Child", paris(21, 30, 0.4), paris(21))],
                        steps(paris(21, 27), paris(21, 31), 0.7)),
    "nothing timed (kept the whole time)": ([], steps(paris(12), paris(12, 1), 1.3)),
}


@pytest.mark.parametrize("title", list(WINDOWS))
def test_the_memo_answers_what_decide_answers_at_every_moment(household: Household, matcher: Matcher,
                                                               title: str) -> None:
    overrides, times = WINDOWS[title]
    snap = snapshot(household, matcher, *overrides)
    memo = DecisionMemo()
    kept = same_as_decide(memo, snap, times)
    assert kept > 0  # it does remember (only the budgeted games names are never kept)
    same_as_decide(memo, snap, list(reversed(times[: len(times) // 3])))  # a clock that steps back


def test_the_memo_keeps_the_time_it_may_and_no_longer(household: Household, matcher: Matcher) -> None:
    snap = snapshot(household, matcher)
    memo = DecisionMemo()
    tablet = snap.household.device("tablet")
    child = snap.household.by_name["Child"]
    first = memo.decide("unlisted.example", 1, tablet, child, paris(12, 0, 10), snap)
    assert first.ttl_cap == 4 * 3600 - 60  # the homework window at 16:00, in whole minutes
    assert memo.decide("unlisted.example", 1, tablet, child, paris(12, 0, 59), snap) is first  # kept
    assert memo.decide("unlisted.example", 1, tablet, child, paris(12, 1, 1), snap).ttl_cap == 4 * 3600 - 120


def test_a_used_up_budget_is_never_answered_from_the_memo(household: Household, matcher: Matcher) -> None:
    meter = UsageMeter(session_gap=5)
    snap = snapshot(household, matcher, meter=meter)
    memo = DecisionMemo()
    tablet = snap.household.device("tablet")
    child = snap.household.by_name["Child"]
    start = paris(9)
    for second in range(0, 300, 7):
        t = start + second
        d = memo.decide("games.example", 1, tablet, child, t, snap)
        assert d == decide("games.example", 1, tablet, child, t, snap)
        if d.action == "allow":
            for target in d.budget_targets:
                meter.observe("Child", target, t, PARIS)
    assert memo.decide("games.example", 1, tablet, child, start + 300, snap).reason == "budget"  # 2 minutes used


def test_a_new_snapshot_applies_to_the_next_query(household: Household, matcher: Matcher) -> None:
    memo = DecisionMemo()
    old = snapshot(household, matcher)
    tablet = old.household.device("tablet")
    child = old.household.by_name["Child"]
    now = paris(12)
    assert memo.decide("www.adult.example", 1, tablet, child, now, old).reason == "category"
    assert memo.decide("site.example", 1, tablet, child, now, old).action == "allow"
    allowed = with_override(old, Override("allow-domain", "Child", now + 3600, now, "adult.example"))
    assert memo.decide("www.adult.example", 1, tablet, child, now + 1, allowed).reason == "override-allow"
    blocked = with_override(allowed, Override("block-domain", "Child", now + 3600, now, "site.example"))
    assert memo.decide("site.example", 1, tablet, child, now + 2, blocked).reason == "override-block"
    paused = with_override(blocked, Override("pause-profile", "Child", now + 600, now))
    assert memo.decide("allowed.example", 1, tablet, child, now + 3, paused).reason == "pause"


def test_the_memo_stays_bounded(household: Household, matcher: Matcher) -> None:
    snap = snapshot(household, matcher)
    memo = DecisionMemo(size=100)
    child = snap.household.by_name["Child"]
    for i in range(1000):
        memo.decide(f"n{i}.example", 1, None, child, paris(12), snap)
        assert len(memo) <= 100


def test_names_asked_all_the_time_outlive_a_burst_of_names_asked_once(household: Household, matcher: Matcher,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import guardian.policy.decide as module

    snap = snapshot(household, matcher)
    memo = DecisionMemo(size=100)
    child = snap.household.by_name["Child"]
    decided: list[str] = []
    real = module._decide
    monkeypatch.setattr(module, "_decide", lambda name, *rest: decided.append(name) or real(name, *rest))
    for i in range(1000):
        memo.decide("www.adult.example", 1, None, child, paris(12, 0, 10), snap)  # the family's everyday name
        memo.decide(f"once{i}.example", 1, None, child, paris(12, 0, 10), snap)
    assert decided.count("www.adult.example") == 1 and len(decided) == 1001
