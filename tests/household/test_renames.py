"""Renaming a child's profile or a device (the dashboard's issue: "stable ids"): the id
stays, and so do the pause in force, today's minutes against a budget, the allowed
sites and the history in the store, on a real daemon with its real writer process."""

from __future__ import annotations

import sqlite3
import time
from datetime import date

import pytest
from support import dig

from guardian.store.queries import StoreReader
from guardian.store.records import DB_NAME

CONFIG = """
household:
  default_profile: Adult
  profiles:
    - {name: Sam, categories: [adult], budgets: [{target: roblox, minutes: 30}]}
    - {name: Adult, categories: []}
  devices:
    - {name: Sam's tablet, ip: 127.0.0.2, profile: Sam}
"""


@pytest.fixture
def home(make_guardian, upstream):
    return make_guardian([f"udp://127.0.0.1:{upstream.port}"], CONFIG)


def ok(home, **payload):
    answer = home.call(home.daemon.control.handle(payload))
    assert answer["ok"], answer
    return answer.get("data")


def profile(state, name):
    return next(p for p in state["profiles"] if p["name"] == name)


def household_profile(state, name):
    return next(p for p in state["household"]["profiles"] if p["name"] == name)


def reader(home) -> StoreReader:
    home.call(home.daemon.recorder.flush())
    return StoreReader.open(home.settings.data_dir / DB_NAME, home.settings.zone)


def test_a_renamed_profile_keeps_its_id_pause_minutes_allowances_and_history(home) -> None:
    port = home.port()
    assert dig(port, "roblox.com", source="127.0.0.2", tool="kdig").status != "REFUSED"
    before = ok(home, action="state")
    sam_id = household_profile(before, "Sam")["id"]
    assert sam_id == "p-sam"  # made from the name at first start, stored from then on
    assert [u["minutes"] for u in profile(before, "Sam")["usage"] if u["target"] == "roblox"] == [1]
    ok(home, action="allow", domain="pornhub.com", profile="Sam", **{"for": 3600})
    ok(home, action="pause", target="Sam", **{"for": 3600})
    assert dig(port, "example.com", source="127.0.0.2", tool="kdig").status == "NXDOMAIN"  # paused
    today = date.fromtimestamp(time.time())
    r = reader(home)
    try:
        assert r.usage(today, "Sam") == {("Sam", "roblox"): 1}
        queries_before = {c.key: c.queries for c in r.per_profile(0, time.time() + 60)}
    finally:
        r.close()
    assert queries_before.get("Sam", 0) >= 2

    ok(home, action="profile-rename", profile="Sam", name="Samuel")

    after = ok(home, action="state")
    samuel = household_profile(after, "Samuel")
    assert samuel["id"] == sam_id and "Sam" not in {p["name"] for p in after["household"]["profiles"]}
    assert profile(after, "Samuel")["paused"] is True  # the pause did not end
    assert profile(after, "Samuel")["devices"] == ["Sam's tablet"]
    assert [u["minutes"] for u in profile(after, "Samuel")["usage"] if u["target"] == "roblox"] == [1]
    assert {o["target"] for o in after["overrides"]} == {"Samuel"}  # the allowance and the pause
    assert dig(port, "example.com", source="127.0.0.2", tool="kdig").status == "NXDOMAIN"  # still paused
    r = reader(home)
    try:
        assert r.usage(today, "Samuel") == {("Samuel", "roblox"): 1}  # today's budget is not reset
        assert r.usage(today, "Sam") == {}
        counts = {c.key: c.queries for c in r.per_profile(0, time.time() + 60)}
    finally:
        r.close()
    assert "Sam" not in counts and counts["Samuel"] == queries_before["Sam"] + 1  # one history, not two
    with sqlite3.connect(home.settings.data_dir / DB_NAME) as db:  # the raw log too
        logged = dict(db.execute("SELECT l.text, count(*) FROM queries AS q JOIN labels AS l"
                                 " ON l.id = q.profile_id GROUP BY l.text"))
    assert "Sam" not in logged and logged["Samuel"] == counts["Samuel"]
    # The page a parent left open still addresses the profile by its id.
    ok(home, action="profile-set", profile=sam_id, set={"safe_search": True})
    assert household_profile(ok(home, action="state"), "Samuel")["safe_search"] is True


def test_a_renamed_device_keeps_its_history(home) -> None:
    port = home.port()
    dig(port, "example.com", source="127.0.0.2", tool="kdig")
    dig(port, "example.org", source="127.0.0.2", tool="kdig")
    device_id = ok(home, action="state")["household"]["devices"][0]["id"]
    ok(home, action="device-set", was="Sam's tablet", name="Sam's old tablet")
    dig(port, "example.net", source="127.0.0.2", tool="kdig")
    state = ok(home, action="state")
    assert [(d["name"], d["id"]) for d in state["household"]["devices"]] == [("Sam's old tablet", device_id)]
    r = reader(home)
    try:
        devices = {c.key: c.queries for c in r.per_device(0, time.time() + 60)}
    finally:
        r.close()
    assert devices == {"Sam's old tablet": 3}


def test_a_rename_to_a_name_in_use_changes_nothing(home) -> None:
    answer = home.call(home.daemon.control.handle({"action": "profile-rename", "profile": "Sam", "name": "adult"}))
    assert not answer["ok"] and "already called" in answer["error"]
    answer = home.call(home.daemon.control.handle({"action": "profile-rename", "profile": "Nobody", "name": "X"}))
    assert not answer["ok"] and "no profile is called 'Nobody'" in answer["error"]
    assert {p["name"] for p in ok(home, action="state")["household"]["profiles"]} == {"Sam", "Adult"}
