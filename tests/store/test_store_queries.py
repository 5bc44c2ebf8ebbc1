"""The dashboard's questions, the weekly digest, the anonymous export and the CLI output."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date
from pathlib import Path

import pytest
from test_store_support import PARIS, blocked, rec, write

from guardian.config import PrivacySettings, Settings
from guardian.store import StoreError
from guardian.store.commands import anonymous_export, events, parse_since, stats
from guardian.store.db import DB_NAME
from guardian.store.queries import StoreReader

NOW = time.time()
ALEX = {"device": "Alex's phone", "client": "192.168.1.21", "mac": None}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / DB_NAME
    records = [rec(NOW - 3600 * 2 + i, f"site{i % 4}.example", category="games") for i in range(40)]
    records += [blocked(NOW - 3600 + i * 10, f"bet{i % 3}.example") for i in range(14)]
    records += [blocked(NOW - 600, "porn.example", category="adult", severity="critical", **ALEX)]
    records += [rec(NOW - 300, "dns.google", action="refused", reason="bypass", category="bypass", **ALEX)]
    records += [rec(NOW - 30 * 3600, "old.example", category="video")]  # outside 24 h
    write(path, records, side=[("system_event", ("upstream", "all upstreams are down", "high", NOW - 100))])
    return path


def settings_for(path: Path, anonymous_stats: bool = False) -> Settings:
    return Settings(data_dir=path.parent, timezone="Europe/Paris",
                    privacy=PrivacySettings(anonymous_stats=anonymous_stats))


def test_overview_questions(store: Path) -> None:
    reader = StoreReader.open(store, PARIS)
    hours = reader.last_24h(NOW)
    assert len(hours) == 24 and hours[-1].key == int(NOW // 3600) * 3600
    assert sum(h.queries for h in hours) == 56 and sum(h.blocked for h in hours) == 15
    top = reader.top_blocked(NOW - 86_400, NOW)
    assert [(c.key, c.queries) for c in top][:3] == [("bet0.example", 5), ("bet1.example", 5), ("bet2.example", 4)]
    assert top[-1].key == "porn.example"
    devices = {c.key: (c.queries, c.blocked, c.profile) for c in reader.per_device(NOW - 86_400, NOW)}
    assert devices == {"Sam's tablet": (54, 14, "Child"), "Alex's phone": (2, 1, "Child")}
    cats = {c.key: (c.queries, c.blocked) for c in reader.per_category(NOW - 86_400, NOW)}
    assert cats == {"games": (40, 0), "gambling": (14, 14), "adult": (1, 1), "bypass": (1, 0)}
    assert {c.key: c.queries for c in reader.per_profile(NOW - 86_400, NOW)} == {"Child": 56}
    today = date.fromtimestamp(NOW)
    daily = reader.daily(today, 1, device="Alex's phone")
    assert list(daily) == [today.isoformat()]
    assert {c.key for c in daily[today.isoformat()]} <= {"adult", "bypass"}  # never Sam's categories
    reader.close()


def test_event_state_and_digest(store: Path) -> None:
    reader = StoreReader.open(store, PARIS, readonly=False)
    found = reader.events(NOW - 86_400)
    assert [e.kind for e in found] == ["system", "bypass", "blocked", "blocked"]  # newest first
    assert reader.set_event_state(found[0].id, "dismissed")
    assert reader.events(NOW - 86_400, states=("new",))[0].kind == "bypass"
    with pytest.raises(ValueError):
        reader.set_event_state(found[0].id, "deleted")
    digest = reader.weekly_digest("Child", date.fromtimestamp(NOW), budgets={"games": 60, "video": 30})
    assert digest["queries"] >= 56
    assert digest["top_categories"][0] == {"category": "games", "queries": 40, "blocked": 0}
    assert {e["kind"] for e in digest["events"]} == {"bypass", "blocked"}
    usage = {u["target"]: u for u in digest["usage"]}
    assert usage["games"]["minutes"] >= 1 and usage["games"]["budget"] == 60
    assert "video" in usage
    json.dumps(digest)  # the API serves it as is
    reader.close()


def test_events_command_json_and_text(store: Path) -> None:
    out = json.loads(events(settings_for(store), "24h", as_json=True, now=NOW))
    assert [e["kind"] for e in out] == ["system", "bypass", "blocked", "blocked"]
    required = {"time", "device", "profile", "kind", "threat", "category", "severity", "count", "example"}
    assert all(required <= set(e) for e in out)
    gambling = next(e for e in out if e["category"] == "gambling")
    assert gambling == {**gambling, "device": "Sam's tablet", "profile": "Child", "threat": "gambling",
                        "severity": "high", "count": 14, "example": "bet0.example", "state": "new"}
    assert gambling["time"].endswith(("+01:00", "+02:00"))
    text = events(settings_for(store), "24h", now=NOW)
    assert "Alex's phone (Child)" in text and "x14" in text and "all upstreams are down" in text
    assert json.loads(events(settings_for(store), "1m", as_json=True, now=NOW)) == []
    assert events(settings_for(store), "30s", now=NOW).startswith("no risk events")


def test_stats_command(store: Path) -> None:
    out = json.loads(stats(settings_for(store), "24h", as_json=True, now=NOW))
    assert {d["device"]: (d["queries"], d["blocked"]) for d in out["devices"]} == {
        "Sam's tablet": (54, 14), "Alex's phone": (2, 1)}
    assert {c["category"]: c["blocked"] for c in out["categories"]}["gambling"] == 14
    assert out["top_blocked"][0] == {"domain": "bet0.example", "blocked": 5}
    text = stats(settings_for(store), "7d", now=NOW)
    assert "Sam's tablet (Child)" in text and "video" in text


def test_commands_without_a_database_do_not_create_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, timezone="Europe/Paris")
    assert json.loads(events(settings, as_json=True)) == []
    assert json.loads(stats(settings, as_json=True))["devices"] == []
    assert not (tmp_path / DB_NAME).exists()


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("24h", 86_400), ("7d", 604_800), ("90s", 90),
                                               ("2w", 1_209_600)])
def test_parse_since(text: str, seconds: float) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "1y", "1h30m"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(StoreError):
        parse_since(text)


def test_anonymous_export_has_counts_and_no_names(store: Path) -> None:
    settings = settings_for(store)
    with pytest.raises(StoreError, match="off"):
        anonymous_export(settings, {"Child": "child-9-12"})
    settings = settings_for(store, anonymous_stats=True)
    text = anonymous_export(settings, {"Child": "child-9-12"}, "4w", "csv", now=NOW)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["week", "age_group", "kind", "threat", "events", "attempts"]
    by = {(r["kind"], r["threat"]): r for r in rows}
    assert by[("blocked", "gambling")]["attempts"] == "14" and by[("blocked", "gambling")]["events"] == "1"
    assert by[("blocked", "adult")]["attempts"] == "1"
    assert ("bypass", "") in by
    assert sum(int(r["attempts"]) for r in rows if r["kind"] == "queries") == 57
    assert {r["age_group"] for r in rows} == {"child-9-12"}
    doc = anonymous_export(settings, {}, "4w", "json", now=NOW)
    parsed = json.loads(doc)
    assert parsed["format"] == "guardian-anonymous-stats" and {r["age_group"] for r in parsed["rows"]} == {
        "unspecified"}
    for forbidden in ("Sam", "Alex", "tablet", "192.168", "aa:bb", "example", "Child", "google", "upstreams"):
        assert forbidden not in text and forbidden not in doc, forbidden
