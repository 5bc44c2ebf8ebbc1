"""Bypass protection is one switch: the ``bypass`` category and ``bypass_protection``
mean the same thing, whichever of the two a profile spells out (real dig queries)."""

from __future__ import annotations

import pytest
import yaml
from support import dig

from guardian.policy.household import household_from_config, household_to_dict

HOUSEHOLD = """
data_dir: {var}
pack_lists: false
household:
  default_profile: Open
  profiles:
    - {{name: Category only, categories: [adult, bypass]}}
    - {{name: Switch only, categories: [adult], bypass_protection: true}}
    - {{name: Open, categories: []}}
  devices:
    - {{name: Kid A, ip: 127.0.0.2, profile: Category only}}
    - {{name: Kid B, ip: 127.0.0.3, profile: Switch only}}
"""


@pytest.fixture
def household(make_guardian, upstream, tmp_path):
    upstream.zone["adguard-dns.com"] = [("A", "198.51.100.40")]
    return make_guardian([upstream.url], config=HOUSEHOLD.format(var=tmp_path / "var"))


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.3"])
@pytest.mark.parametrize("qtype", ["SVCB", "A", "HTTPS"])
def test_ddr_name_gets_nodata_with_either_spelling(household, upstream, source, qtype):
    result = dig(household.port(), "_dns.resolver.arpa", qtype, source=source)
    assert result.status == "NOERROR" and result.answers == [] and "aa" in result.flags
    assert not [q for q in upstream.queries if q[1] == "_dns.resolver.arpa"]  # never forwarded


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.3"])
def test_canaries_and_the_bypass_list_block_with_either_spelling(household, source):
    port = household.port()
    assert dig(port, "use-application-dns.net", source=source).status == "NXDOMAIN"
    assert dig(port, "mask.icloud.com", source=source).status == "NXDOMAIN"
    assert dig(port, "adguard-dns.com", source=source).status == "NXDOMAIN"  # the bundled bypass list


def test_a_profile_without_either_is_not_protected(household, upstream):
    assert dig(household.port(), "adguard-dns.com", source="127.0.0.1").values == ["198.51.100.40"]


def test_export_shows_one_consistent_state(household):
    exported = yaml.safe_load(household.daemon.household.export())
    profiles = {p["name"]: p for p in exported["household"]["profiles"]}
    for name in ("Category only", "Switch only"):
        assert profiles[name]["bypass_protection"] is True
        assert "bypass" in profiles[name]["categories"]
    assert profiles["Open"]["bypass_protection"] is False and "bypass" not in profiles["Open"]["categories"]


def test_the_model_normalises_both_ways_and_round_trips():
    household, problems = household_from_config({"profiles": [
        {"name": "A", "categories": ["bypass"]},
        {"name": "B", "bypass_protection": True},
        {"name": "C", "categories": ["adult"], "bypass_protection": False},
    ]})
    assert problems == []
    a, b, c = household.profiles
    assert (a.bypass_protection, a.categories) == (True, ("bypass",))
    assert (b.bypass_protection, b.categories) == (True, ("bypass",))
    assert (c.bypass_protection, c.categories) == (False, ("adult",))
    again, _ = household_from_config(household_to_dict(household))
    assert again == household


@pytest.mark.parametrize(("fields", "on"), [
    ({"bypass_protection": False}, False),  # the switch off: the category goes too
    ({"categories": ["adult"]}, False),  # the category off: the switch goes too
    ({"categories": ["adult"], "bypass_protection": True}, False),  # the dashboard form: the change wins
    ({"categories": ["adult", "bypass"], "bypass_protection": False}, False),
    ({"categories": ["adult", "bypass"], "bypass_protection": True}, True),
])
def test_a_parents_edit_turns_both_on_or_off(household, fields, on):
    from guardian.control_web import dashboard_actions

    act = dashboard_actions(household.daemon)["profile-set"]
    result = household.call(act({"profile": "Switch only", "set": fields}))
    assert result["ok"]
    profile = household.daemon.household.profile("Switch only")
    assert profile.bypass_protection is on and ("bypass" in profile.categories) is on
    expected = "NXDOMAIN" if on else "NOERROR"
    assert dig(household.port(), "adguard-dns.com", source="127.0.0.3").status == expected
