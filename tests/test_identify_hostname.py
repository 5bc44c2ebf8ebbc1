"""Identifying a device by its DHCP hostname: exact names only, and never a way out of
the default profile's filtering (the hostname is whatever the device says it is)."""

from __future__ import annotations

import pytest

from guardian.config import ConfigError, parse
from guardian.policy.household import Profile, at_least_as_filtered, household_from_config, household_to_dict

GUEST = {"name": "Guest", "categories": ["adult", "bypass"], "safe_search": True}


def _household(local_domain: str | None = None, devices: list[dict[str, str]] | None = None):
    data: dict[str, object] = {
        "default_profile": "Guest",
        "profiles": [
            GUEST,
            {"name": "Adult", "categories": []},
            {"name": "Child", "categories": ["adult", "gambling", "bypass"], "safe_search": True,
             "youtube": "strict"},
        ],
        "devices": devices or [
            {"name": "Dad's laptop", "hostname": "dads-laptop", "profile": "Adult"},
            {"name": "Kid's tablet", "hostname": "kids-tablet", "profile": "Child"},
        ],
    }
    if local_domain is not None:
        data["local_domain"] = local_domain
    household, problems = household_from_config(data)
    assert problems == []
    return household


@pytest.mark.parametrize("hostname", ["dads-laptop", "DADS-LAPTOP", "dads-laptop.lan", "DADS-LAPTOP.evil",
                                      "dads-laptop.evil.lan", "dads-laptop."])
def test_a_hostname_never_lifts_the_default_filtering(hostname):
    household = _household(local_domain="lan")
    device = household.identify("192.168.1.50", "02:00:00:00:00:99", hostname)
    assert household.profile_of(device).name == "Guest"


@pytest.mark.parametrize(("hostname", "expected"), [
    ("kids-tablet", "Child"),
    ("KIDS-TABLET", "Child"),
    ("kids-tablet.", "Child"),
    ("kids-tablet.lan", "Child"),  # the configured local domain
    ("kids-tablet.evil", "Guest"),  # any other suffix: not the device
    ("kids-tablet.lan.evil", "Guest"),
    ("kids-tablet-2", "Guest"),
    ("kids", "Guest"),
])
def test_hostnames_match_exactly_with_the_local_domain_only(hostname, expected):
    household = _household(local_domain="lan")
    device = household.identify("192.168.1.50", None, hostname)
    assert household.profile_of(device).name == expected


def test_without_a_local_domain_only_the_bare_name_matches():
    household = _household()
    assert household.profile_of(household.identify("192.168.1.50", None, "kids-tablet")).name == "Child"
    assert household.profile_of(household.identify("192.168.1.50", None, "kids-tablet.lan")).name == "Guest"


def test_a_configured_name_with_the_local_domain_matches_the_bare_one():
    household = _household("lan", [{"name": "Tablet", "hostname": "Kids-Tablet.lan", "profile": "Child"}])
    assert household.profile_of(household.identify("192.168.1.50", None, "kids-tablet")).name == "Child"


def test_mac_and_ip_still_give_any_profile():
    household = _household(devices=[{"name": "Dad's laptop", "mac": "aa:bb:cc:00:00:01", "hostname": "dads-laptop",
                                     "profile": "Adult"}])
    assert household.profile_of(household.identify("192.168.1.5", "aa:bb:cc:00:00:01", None)).name == "Adult"
    assert household.profile_of(household.identify("192.168.1.6", None, "dads-laptop")).name == "Guest"


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, True),
    ({"categories": ("adult", "bypass", "gambling")}, True),
    ({"categories": ("adult",), "bypass_protection": False}, False),  # bypass protection off
    ({"safe_search": False}, False),
    ({"allow": ("pornhub.com",)}, False),  # an allow the default does not have
    ({"deny": ("tiktok.com",)}, True),
])
def test_at_least_as_filtered(changes, expected):
    guest = household_from_config({"profiles": [GUEST]})[0].profiles[0]
    fields = {
        "name": "Other", "categories": guest.categories, "safe_search": guest.safe_search,
        "bypass_protection": guest.bypass_protection, **changes,
    }
    assert at_least_as_filtered(Profile(**fields), guest) is expected  # type: ignore[arg-type]


def test_local_domain_is_read_from_the_config_and_exported():
    settings = parse("household:\n  local_domain: Home.Arpa.\n  profiles: [{name: Guest}]\n", "g.yaml")
    household = household_from_config(settings.household)[0]
    assert household.local_domain == "home.arpa"
    assert household_to_dict(household)["local_domain"] == "home.arpa"
    with pytest.raises(ConfigError, match="local_domain"):
        parse("household:\n  local_domain: 'bad domain!'\n", "g.yaml")
