"""The lists service on its own (no daemon): real list files and snapshots in tmp_path,
a config ``path:`` list as the source, the live policy holder it swaps matchers into."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from guardian import config
from guardian.lists.compile import IN_PROCESS_BYTES
from guardian.lists.service import ListService, subscriptions_for
from guardian.policy.household import household_from_config
from guardian.policy.matcher import Matcher
from guardian.policy.rulepacks import Rules, load_rules
from guardian.policy.snapshot import PolicyHolder, build_from_rules

CONFIG = """\
data_dir: {var}
pack_lists: false
household:
  default_profile: Kid
  profiles:
    - {{name: Kid, categories: [gambling]}}
lists:
  - {{name: Family list, category: gambling, path: family.txt}}
"""
SECOND = "  - {name: Second list, category: gambling, path: second.txt}\n"


class Events:
    """Stands in for the store's Recorder: keeps the system events it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def system_event(self, kind: str, message: str, severity: str = "high", at: float | None = None) -> None:
        self.seen.append((kind, message, severity))


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def settings_for(tmp_path: Path, extra: str = "") -> config.Settings:
    return config.parse(CONFIG.format(var=tmp_path / "var") + extra, "guardian.yaml", base=tmp_path)


def make_service(tmp_path: Path, settings: config.Settings, rules: Rules) -> tuple[ListService, Events, list[int]]:
    household, problems = household_from_config(settings.household, rules.template_profiles(),
                                                categories=rules.categories, services=rules.services)
    assert problems == []
    policy = PolicyHolder(build_from_rules(household, Matcher.empty(), rules, zone=settings.zone))
    events, swaps = Events(), []
    service = ListService(settings, rules, subscriptions_for(settings, rules, household), policy, events,
                          on_swap=lambda: swaps.append(1))
    return service, events, swaps


def listed_by(service: ListService, name: str) -> set[str]:
    """The names of the lists in the live matcher that hold ``name``."""
    matcher = service.policy.current.matcher
    return {matcher.lists[hit.list_id].name for hit in matcher.lookup(name)}


def test_load_compiles_the_lists_and_swaps_the_matcher_in(tmp_path: Path) -> None:
    (tmp_path / "family.txt").write_text("casino.example\n")
    rules = load_rules()
    service, events, swaps = make_service(tmp_path, settings_for(tmp_path), rules)
    assert listed_by(service, "casino.example") == set()  # an empty matcher until the lists load

    run(service.load())

    assert listed_by(service, "www.casino.example") == {"Family list"}
    assert service.policy.current.matcher.lists  # the rule packs' bundled lists too
    assert swaps == [1] and events.seen == []
    assert (tmp_path / "var" / "lists" / "sources.stamp").is_file()
    # A second start serves the snapshot on disk: nothing is compiled again.
    pointer = (tmp_path / "var" / "lists" / "CURRENT").read_text()
    again, _, _ = make_service(tmp_path, settings_for(tmp_path), rules)
    run(again.load())
    assert listed_by(again, "casino.example") == {"Family list"}
    assert (tmp_path / "var" / "lists" / "CURRENT").read_text() == pointer


def test_a_recompile_after_the_list_file_changes_swaps_in_the_new_matcher(tmp_path: Path) -> None:
    family = tmp_path / "family.txt"
    family.write_text("casino.example\n")
    service, events, swaps = make_service(tmp_path, settings_for(tmp_path), load_rules())
    run(service.load())
    first = service.list_set
    assert first is not None and not first.changed()

    family.write_text("poker.example\nslots.example\n")
    assert first.changed()  # what the minute's file watch sees
    run(service.recompile())

    assert listed_by(service, "poker.example") == {"Family list"}
    assert listed_by(service, "slots.example") == {"Family list"}
    assert listed_by(service, "casino.example") == set()
    assert service.list_set is not None and not service.list_set.changed()
    assert swaps == [1, 1] and events.seen == []


def test_a_failing_compile_keeps_the_current_matcher_and_tells_the_parents(tmp_path: Path) -> None:
    family = tmp_path / "family.txt"
    family.write_text("casino.example\n")
    service, events, swaps = make_service(tmp_path, settings_for(tmp_path), load_rules())
    run(service.load())
    in_use = service.policy.current.matcher
    # A big list (compiled in a child process) and a file where the snapshots should go:
    # the compiler process fails. The matcher in use maps the snapshot moved aside.
    with family.open("w") as out:
        for i in range(IN_PROCESS_BYTES // 20):
            out.write(f"n{i:07d}.big.example\n")
    lists = tmp_path / "var" / "lists"
    lists.rename(tmp_path / "var" / "lists.old")
    lists.write_text("not a directory")

    run(service.recompile())

    assert service.policy.current.matcher is in_use
    assert listed_by(service, "casino.example") == {"Family list"}
    assert listed_by(service, "n0000001.big.example") == set()
    assert swaps == [1]
    assert len(events.seen) == 1
    kind, message, severity = events.seen[0]
    assert (kind, severity) == ("lists", "high")
    assert message.startswith("compiling the lists failed: the list compiler process failed")


def test_apply_recompiles_when_the_lists_changed_and_not_otherwise(tmp_path: Path) -> None:
    (tmp_path / "family.txt").write_text("casino.example\n")
    (tmp_path / "second.txt").write_text("bingo.example\n")
    rules = load_rules()
    service, events, swaps = make_service(tmp_path, settings_for(tmp_path), rules)
    run(service.load())
    in_use = service.policy.current.matcher
    pointer = (tmp_path / "var" / "lists" / "CURRENT").read_text()

    # A reload with the same lists (another setting changed): the matcher stays.
    unchanged = dataclasses.replace(settings_for(tmp_path), log_level="debug")
    run(service.apply(unchanged))
    assert service.policy.current.matcher is in_use and swaps == [1]
    assert (tmp_path / "var" / "lists" / "CURRENT").read_text() == pointer
    assert service.settings is unchanged

    # A reload that adds a path: list: compiled and in use when apply returns.
    added = settings_for(tmp_path, SECOND)
    run(service.apply(added))
    assert listed_by(service, "bingo.example") == {"Second list"}
    assert listed_by(service, "casino.example") == {"Family list"}
    assert swaps == [1, 1] and events.seen == []

    # ... and one that takes it away again.
    run(service.apply(settings_for(tmp_path)))
    assert listed_by(service, "bingo.example") == set()
    assert swaps == [1, 1, 1]


def test_apply_and_a_household_change_follow_the_subscriptions(tmp_path: Path) -> None:
    (tmp_path / "family.txt").write_text("casino.example\n")
    rules = load_rules()
    service, _, _ = make_service(tmp_path, settings_for(tmp_path), rules)
    assert service.subscriptions == []  # pack_lists: false and no url: list
    assert run(service.refresh_now({})) == {
        "ok": True, "message": "no lists to download (no url: lists, no rule-pack lists in use)"}

    async def reload_then_household() -> None:
        await service.load()
        await service.apply(dataclasses.replace(settings_for(tmp_path), pack_lists=True))
        assert {s.category for s in service.subscriptions} == {"gambling"}  # the pack's public lists
        # A household change (from a worker thread) that turns the category off.
        household = service.policy.current.household
        without = dataclasses.replace(
            household, profiles=tuple(dataclasses.replace(p, categories=()) for p in household.profiles))
        service.policy.update(lambda snap: build_from_rules(without, snap.matcher, rules, zone=service.settings.zone))
        thread = threading.Thread(target=service.household_changed)
        thread.start()
        thread.join()
        await asyncio.sleep(0.05)  # the new subscriptions land on the loop
        assert service.subscriptions == []

    run(reload_then_household())
