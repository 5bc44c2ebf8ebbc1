"""The parents' action table (guardian/household/actions.py): every action of it is
served on the control socket and reachable from the command line, its answers carry
the change as data beside the English sentence, and bad arguments get clear errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from guardian import cli
from guardian.control import ControlServer, request
from guardian.household.actions import ACTIONS
from guardian.household.service import HouseholdService
from guardian.household.storage import HOUSEHOLD_DB, HouseholdStore, load_household, seed_digest
from guardian.policy.household import household_from_config
from guardian.policy.matcher import Matcher
from guardian.policy.rulepacks import load_rules
from guardian.policy.snapshot import PolicyHolder, build_from_rules
from guardian.usage import UsageMeter

ZONE = ZoneInfo("Europe/London")
NOW = 1_717_300_800.0  # 2024-06-02 05:00 in London
SEED: dict[str, Any] = {
    "default_profile": "Guest",
    "profiles": [{"name": "Child", "categories": ["adult"]}, {"name": "Guest", "categories": []}],
    "devices": [{"name": "tablet", "mac": "aa:bb:cc:dd:ee:01", "profile": "Child"}],
}
IMPORTED = "household:\n  default_profile: Guest\n  profiles:\n    - name: Guest\n    - name: Teen\n"

# One command line per action of the table: a new action without one fails the first test.
COMMAND_LINES = {
    "pause": ["pause", "tablet", "--for", "30m"],
    "resume": ["resume", "tablet"],
    "bonus": ["bonus", "Child", "--for", "1h"],
    "allow": ["allow", "Example.COM", "--profile", "Child"],
    "block": ["block", "games.example", "-p", "Child", "--until", "20:30"],
    "usage": ["usage", "Child"],
    "export": ["export"],
    "import": ["import", "{file}"],
}


def service_for(data_dir: Path) -> HouseholdService:
    rules = load_rules()
    seed, problems = household_from_config(SEED, rules.template_profiles(), categories=rules.categories,
                                           services=rules.services)
    assert not problems
    store = HouseholdStore(data_dir / HOUSEHOLD_DB)
    loaded = load_household(store, seed, seed_digest(SEED), NOW, categories=rules.categories,
                            services=rules.services)
    holder = PolicyHolder(build_from_rules(loaded.household, Matcher.empty(), rules, zone=ZONE))
    return HouseholdService(holder, store, UsageMeter(5), zone=ZONE, clock=lambda: NOW, origin=loaded.origin,
                            seed=loaded.seed, templates=rules.template_profiles(), categories=rules.categories,
                            services=rules.services)


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    """A real control socket over a real household.db, served by a loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(service_for(tmp_path), tmp_path / "control.sock")
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server.path
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def ask(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    return request(path, payload, 10.0)


def test_every_action_of_the_table_is_served_and_reachable_from_the_cli(socket_path, tmp_path):
    assert set(COMMAND_LINES) == set(ACTIONS)
    commands = cli._parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(ACTIONS) <= set(commands)
    assert set(ACTIONS) <= set(cli.PARENT_COMMANDS)
    household = tmp_path / "household.yaml"
    household.write_text(IMPORTED)
    answers = {}
    for name in ACTIONS:  # the table's order: import comes last, so the others find Child and tablet
        argv = [a.replace("{file}", str(household)) for a in COMMAND_LINES[name]]
        payload = cli.request_payload(cli._parser().parse_args(argv))
        answers[name] = ask(socket_path, payload)
        assert answers[name]["ok"], (name, payload, answers[name])
    assert answers["pause"]["message"].startswith("Paused tablet until ")
    assert (answers["pause"]["kind"], answers["pause"]["target"]) == ("paused", "tablet")
    assert answers["pause"]["until"] == NOW + 30 * 60
    assert (answers["resume"]["kind"], answers["resume"]["target"]) == ("resumed", "tablet")
    assert (answers["bonus"]["kind"], answers["bonus"]["until"]) == ("bonus", NOW + 3600)
    assert answers["allow"] == {"ok": True, "message": "Allowed example.com for Child (until changed)",
                                "kind": "allowed", "target": "Child", "domain": "example.com", "until": None}
    assert (answers["block"]["kind"], answers["block"]["domain"]) == ("blocked", "games.example")
    assert answers["block"]["until"] is not None and answers["block"]["until"] > NOW
    assert (answers["usage"]["message"], answers["usage"]["data"]) == ("No budgets set and nothing counted today.", [])
    assert answers["export"]["data"].startswith("# Guardian household")
    assert (answers["import"]["kind"], answers["import"]["profiles"]) == ("imported", 2)


def test_cancel_ends_what_the_table_says(socket_path):
    ask(socket_path, {"action": "block", "domain": "games.example", "profile": "Child", "for": 600})
    answer = ask(socket_path, {"action": "block", "domain": "games.example", "profile": "Child",
                                     "cancel": True})
    assert (answer["kind"], answer["domain"]) == ("block-ended", "games.example"), answer
    answer = ask(socket_path, {"action": "bonus", "profile": "Child", "cancel": True})
    assert (answer["kind"], answer["message"]) == ("no-bonus", "Child had no bonus time")


def test_a_pause_without_duration_lasts_until_resumed(socket_path):
    answer = ask(socket_path, {"action": "pause", "target": "Child"})
    assert answer["until"] is None and answer["message"] == "Paused Child until resumed"


BAD = [
    ({"action": "pause"}, "pause needs 'target': a device or profile name"),
    ({"action": "pause", "target": 7}, "'target' must be a device or profile name, not 7"),
    ({"action": "pause", "target": ""}, "'target' must be a device or profile name"),
    ({"action": "allow", "profile": "Child"}, "allow needs 'domain': a domain name"),
    ({"action": "allow", "domain": "example.com"}, "allow needs 'profile': a profile name"),
    ({"action": "allow", "domain": ["x"], "profile": "Child"}, "'domain' must be a domain name"),
    ({"action": "block", "domain": "no-dot", "profile": "Child"}, "is not a domain name"),
    ({"action": "bonus", "profile": "Child"}, "say for how long"),
    ({"action": "bonus", "profile": "Child", "for": "soon"}, "'for' must be a number of seconds, not 'soon'"),
    ({"action": "bonus", "profile": "Child", "for": True}, "'for' must be a number of seconds"),
    ({"action": "bonus", "profile": "Child", "for": -5}, "the duration must be positive"),
    ({"action": "bonus", "profile": "Child", "for": 31 * 86400}, "longer than 30 days"),
    ({"action": "bonus", "profile": "Child", "at": "25:99"}, "25:99"),
    ({"action": "bonus", "profile": "Child", "at": 2030}, "'at' must be a time of day like 20:30"),
    ({"action": "bonus", "profile": "Child", "for": 60, "at": "20:00"}, "not both"),
    ({"action": "resume", "target": "tablet", "for": 60}, "resume takes no duration"),
    ({"action": "bonus", "profile": "Kid", "for": 60}, "no profile is called 'Kid'"),
    ({"action": "usage", "profile": 3}, "'profile' must be a profile name, not 3"),
    ({"action": "import"}, "import needs 'text'"),
    ({"action": "dance"}, "unknown action 'dance'"),
]


@pytest.mark.parametrize(("payload", "error"), BAD, ids=[f"{p['action']}-{i}" for i, (p, _e) in enumerate(BAD)])
def test_bad_arguments_get_clear_errors(socket_path, payload, error):
    answer = ask(socket_path, payload)
    assert answer["ok"] is False, answer
    assert error in answer["error"], answer
    assert "KeyError" not in answer["error"] and "Traceback" not in answer["error"]


def test_an_empty_optional_argument_is_unsaid(socket_path):
    answer = ask(socket_path, {"action": "import", "text": "household:\n  profiles: [{name: Kid}]\n", "filename": ""})
    assert answer["ok"] and answer["kind"] == "imported", answer
    bad = ask(socket_path, {"action": "import", "text": "household:\n  profiles: 7\n", "filename": ""})
    assert not bad["ok"] and all(p.startswith("<import>:") for p in bad["problems"]), bad
