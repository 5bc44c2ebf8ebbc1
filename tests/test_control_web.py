"""The dashboard's control actions (guardian/control_web.py) on a real daemon: structured
state, explain, and fine-grained writes checked like the config, with a revision."""

from __future__ import annotations

import pytest
from support import dig

CONFIG = """
household:
  default_profile: Adult
  profiles:
    - {name: Child, categories: [adult], deny: [example.com]}
    - {name: Adult, categories: []}
  devices:
    - {name: Sam's tablet, ip: 127.0.0.2, profile: Child}
"""


@pytest.fixture
def home(make_guardian, upstream):
    return make_guardian([f"udp://127.0.0.1:{upstream.port}"], CONFIG)


def call(home, **payload):
    return home.call(home.daemon.control.handle(payload))


def ok(home, **payload):
    answer = call(home, **payload)
    assert answer["ok"], answer
    return answer.get("data")


def test_state_is_structured_data(home) -> None:
    ok(home, action="pause", target="Child")  # until resumed
    state = ok(home, action="state")
    child = next(p for p in state["profiles"] if p["name"] == "Child")
    assert child["paused"] is True and child["paused_until"] is None and child["devices"] == ["Sam's tablet"]
    assert {p["name"] for p in state["household"]["profiles"]} == {"Child", "Adult"}
    assert state["default_profile"] == "Adult"
    assert [o["kind"] for o in state["overrides"]] == ["pause-profile"]
    assert any(c["id"] == "adult" and c["description"] for c in state["categories"])
    assert {t["id"] for t in state["templates"]} >= {"young-child", "teen"}
    assert len(state["revision"]) == 16 and state["zone"] and state["now"] > 0


def test_a_write_based_on_an_old_revision_is_refused(home) -> None:
    old = ok(home, action="state")["revision"]
    new = ok(home, action="profile-list", profile="Child", list="allow", op="add", domain="kids.example",
             revision=old)["revision"]
    assert new != old
    answer = call(home, action="profile-list", profile="Child", list="deny", op="add", domain="other.example",
                  revision=old)
    assert not answer["ok"] and "changed meanwhile" in answer["error"]
    child = next(p for p in ok(home, action="state")["household"]["profiles"] if p["name"] == "Child")
    assert child["allow"] == ["kids.example"] and child["deny"] == ["example.com"]


def test_devices_assign_rename_and_forget(home) -> None:
    port = home.port()
    assert dig(port, "example.com", source="127.0.0.3", tool="kdig").status == "NOERROR"
    ok(home, action="device-set", name="Robin's phone", ip="127.0.0.3", profile="Child")
    assert dig(port, "example.com", source="127.0.0.3", tool="kdig").status == "NXDOMAIN"
    ok(home, action="pause", target="Robin's phone", **{"for": 600})
    ok(home, action="device-set", was="Robin's phone", name="Robin's old phone")
    assert "Robin's old phone" in home.daemon.policy.current.paused_devices  # the pause follows the rename
    names = [d["name"] for d in ok(home, action="state")["household"]["devices"]]
    assert names == ["Sam's tablet", "Robin's old phone"]
    assert "already called" in call(home, action="device-set", was="Robin's old phone", name="Sam's tablet")["error"]
    assert "unknown profile 'Nobody'" in str(call(home, action="device-set", name="X", ip="127.0.0.9",
                                                        profile="Nobody"))
    ok(home, action="device-remove", name="Robin's old phone")
    assert dig(port, "example.com", source="127.0.0.3", tool="kdig").status == "NOERROR"
    assert "no device is called" in call(home, action="device-remove", name="Robin's old phone")["error"]


def test_profiles_from_templates_and_their_removal(home) -> None:
    ok(home, action="profile-add", name="Lou", template="young-child")
    lou = next(p for p in ok(home, action="state")["household"]["profiles"] if p["name"] == "Lou")
    assert "adult" in lou["categories"] and lou["safe_search"] is True
    assert "already called" in call(home, action="profile-add", name="lou", template="teen")["error"]
    assert "unknown template" in str(call(home, action="profile-add", name="Max", template="martian"))
    assert "is the profile of unknown devices" in call(home, action="profile-remove", name="Adult")["error"]
    assert "still has devices: Sam's tablet" in call(home, action="profile-remove", name="Child")["error"]
    ok(home, action="profile-remove", name="Lou")
    assert "Lou" not in {p["name"] for p in ok(home, action="state")["profiles"]}


def test_filters_schedules_and_budgets(home) -> None:
    ok(home, action="profile-set", profile="Child", set={"categories": ["adult", "gambling"], "safe_search": True,
                                                         "youtube": "strict"})
    assert "cannot set 'youtube' to 'loud'" in call(home, action="profile-set", profile="Child",
                                                     set={"youtube": "loud"})["error"]
    assert "unknown" in str(call(home, action="profile-set", profile="Child",
                                 set={"categories": ["no-such-category"]})).lower()
    ok(home, action="schedule-add", profile="Child", days=["mon", "sun"], **{"from": "21:00", "to": "07:00"},
       name="Bedtime")
    assert "days must be" in call(home, action="schedule-add", profile="Child", days=["monday"],
                                  **{"from": "21:00", "to": "07:00"})["error"]
    assert "HH:MM" in call(home, action="schedule-add", profile="Child", days=["mon"],
                           **{"from": "9pm", "to": "07:00"})["error"]
    ok(home, action="budget-set", profile="Child", target="games", minutes=60)
    child = next(p for p in ok(home, action="state")["household"]["profiles"] if p["name"] == "Child")
    assert child["schedules"][0]["name"] == "Bedtime" and child["schedules"][0]["days"] == ["mon", "sun"]
    assert child["budgets"] == [{"target": "games", "minutes": 60}] and child["youtube"] == "strict"
    ok(home, action="schedule-remove", profile="Child", index=0)
    ok(home, action="budget-set", profile="Child", target="games", minutes=0)
    child = next(p for p in ok(home, action="state")["household"]["profiles"] if p["name"] == "Child")
    assert child["schedules"] == [] and child["budgets"] == []


def test_explain_runs_the_decision_now(home) -> None:
    why = ok(home, action="explain", ip="127.0.0.2", name="www.example.com")
    assert why["device"] == "Sam's tablet" and why["identified"] == "by its address" and why["profile"] == "Child"
    assert why["decision"]["action"] == "block" and why["decision"]["reason"] == "deny"
    assert why["decision"]["rule"] == "example.com"
    other = ok(home, action="explain", ip="127.0.0.9", name="example.com")
    assert other["device"] is None and other["profile"] == "Adult" and other["decision"]["action"] == "allow"
    assert "not a domain name" in call(home, action="explain", name="<script>")["error"]
