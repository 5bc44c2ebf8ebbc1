"""A household.db written by an older Guardian may hold a value today's checks refuse
(a stricter domain rule): the parents' household must still load, that one entry left
out with a warning, and nothing else lost (the profile, its devices, its other rules)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from guardian.household.storage import PARENT, HouseholdStore, load_household
from guardian.policy.household import household_from_config


def test_a_stored_domain_now_invalid_drops_only_that_entry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seed, _ = household_from_config({"profiles": [{"name": "Adult"}], "default_profile": "Adult"})
    path = tmp_path / "household.db"
    store = HouseholdStore(path)
    kept, _ = household_from_config({
        "default_profile": "Adult",
        "profiles": [{"name": "Adult"},
                     {"name": "Sam", "categories": ["adult"], "deny": ["tiktok.com", "games.example"],
                      "allow": ["school.example"]}],
        "devices": [{"name": "sams-tablet", "mac": "aa:bb:cc:dd:ee:01", "profile": "Sam"}],
    })
    store.save(kept, (), PARENT, "seed-1")
    # What an older version could store: a name today's checker refuses.
    conn = sqlite3.connect(path)
    data = json.loads(conn.execute("SELECT data FROM household WHERE id = 1").fetchone()[0])
    sam = next(p for p in data["profiles"] if p["name"] == "Sam")
    sam["deny"].append("bad name with spaces.example")
    conn.execute("UPDATE household SET data = ? WHERE id = 1", (json.dumps(data),))
    conn.commit()
    conn.close()

    with caplog.at_level(logging.WARNING):
        loaded = load_household(store, seed, "seed-2", 0.0)
    names = [p.name for p in loaded.household.profiles]
    assert "Sam" in names, "the whole profile was dropped for one bad entry"
    sam_profile = loaded.household.by_name["Sam"]
    assert sam_profile.deny == ("tiktok.com", "games.example") and sam_profile.allow == ("school.example",)
    assert sam_profile.categories == ("adult",)
    assert [d.name for d in loaded.household.devices] == ["sams-tablet"]
    assert "bad name with spaces" in caplog.text  # the parents' operator is told what was left out
    # ...and what was saved back keeps the profile too (nothing stored is lost by the load)
    again = HouseholdStore(path).load()
    assert again is not None and "Sam" in [p["name"] for p in again.household["profiles"]]
