# ruff: noqa: F811 - the store fixture imported from test_store_queries is the tests' parameter
"""The opt-in anonymous weekly file: written for the ended ISO week, counts only, no names."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from test_store_queries import NOW, settings_for, store  # noqa: F401 - fixture

from guardian.anonstats import write_due


def test_off_writes_nothing(store: Path) -> None:
    assert write_due(settings_for(store), {"Child": "child-9-12"}, NOW + 7 * 86400) == []
    assert not (store.parent / "anonymous-stats").exists()


def test_the_ended_week_is_written_once_with_counts_and_no_names(store: Path) -> None:
    settings = settings_for(store, anonymous_stats=True)
    iso = datetime.fromtimestamp(NOW, settings.zone).isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    path = store.parent / "anonymous-stats" / f"{week}.json"
    assert path not in write_due(settings, {"Child": "child-9-12"}, NOW)  # this week has not ended yet
    written = write_due(settings, {"Child": "child-9-12"}, NOW + 7 * 86400)
    assert path in written and all(p.parent == path.parent for p in written)  # (an older week with rows too)
    assert path.stat().st_mode & 0o777 == 0o640
    doc = json.loads(path.read_text())
    assert doc["format"] == "guardian-anonymous-stats" and doc["week"] == week
    rows = doc["rows"]
    assert {r["week"] for r in rows} == {week} and {r["age_group"] for r in rows} == {"child-9-12"}
    by = {(r["kind"], r["threat"]): r for r in rows}
    assert by[("blocked", "gambling")]["attempts"] == 14
    text = path.read_text()
    for forbidden in ("Sam", "Alex", "tablet", "192.168", "aa:bb", "example", "Child", "google"):
        assert forbidden not in text, forbidden
    assert write_due(settings, {"Child": "child-9-12"}, NOW + 7 * 86400) == []  # written once


def test_the_daemon_writes_last_weeks_file_when_provisioning_turns_it_on(tmp_path, upstream) -> None:
    from support import Running, dig, free_port

    from guardian import config

    port = free_port()
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(f"data_dir: ./var\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{port}']\n"
                   f"  upstreams: ['{upstream.url}']\n")
    (tmp_path / "provision.yaml").write_text("anonymous_stats: true\n")
    running = Running(config.load(cfg))
    try:
        assert dig(port, "example.com").status == "NOERROR"
        assert running.daemon is not None
        running.call(running.daemon._anonymous_stats())
    finally:
        running.stop()
    files = list((tmp_path / "var" / "anonymous-stats").glob("*.json"))
    assert len(files) == 1  # last week's, even with nothing in it: the collector sees the box
    assert json.loads(files[0].read_text())["week"] == files[0].stem
