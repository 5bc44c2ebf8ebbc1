"""``guardian reset [--keep-network]``: the box as provisioned again, with the real daemon."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support import Running, dig, free_port

from guardian import config

GUARDIAN = [sys.executable, "-m", "guardian"]
PROVISION = """\
profiles:
  - {name: Kid, template: Young child}
  - {name: Grown, template: Adult}
default_profile: Kid
"""
FAMILY = "household:\n  profiles:\n    - {name: Family, template: Adult}\n  default_profile: Family\n"


def setup(tmp_path: Path, upstream_url: str) -> tuple[Path, int]:
    port = free_port()
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(f"data_dir: ./var\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{port}']\n"
                   f"  upstreams: ['{upstream_url}']\nstore:\n  flush_seconds: 0.2\n")
    (tmp_path / "provision.yaml").write_text(PROVISION)
    return cfg, port


def profiles(running: Running) -> list[str]:
    assert running.daemon is not None
    return [p.name for p in running.daemon.policy.current.household.profiles]


async def _import(running: Running) -> None:
    assert running.daemon is not None
    running.daemon.household.import_(FAMILY)


def used_box(cfg: Path, port: int) -> None:
    """A box a family has used: its own household, queries in the log, a device in the registry."""
    running = Running(config.load(cfg))
    try:
        assert profiles(running) == ["Kid", "Grown"]  # first boot: the provisioning
        running.call(_import(running))
        assert profiles(running) == ["Family"]
        assert dig(port, "example.com").status == "NOERROR"
        (cfg.parent / "var" / "web").mkdir(exist_ok=True)
        (cfg.parent / "var" / "web.db").write_text("accounts")
        (cfg.parent / "var" / "web" / "sessions").write_text("x")
        from guardian import audit
        audit.record(cfg.parent / "var", {"action": "pause", "target": "Family"}, None)  # who did what
        (cfg.parent / "var" / "anonymous-stats").mkdir(exist_ok=True)
        (cfg.parent / "var" / "anonymous-stats" / "2026-W49.json").write_text("{}")
        # guardian reset refuses while the daemon runs.
        refused = reset(cfg, "--yes")
        assert refused.returncode == 1 and "Guardian is running: stop it first" in refused.stderr
        time.sleep(1)
    finally:
        running.stop()
    with sqlite3.connect(cfg.parent / "var" / "guardian.db") as db:
        assert db.execute("SELECT count(*) FROM queries").fetchone()[0] >= 1
        db.execute("INSERT INTO devices (mac, name, profile, first_seen, last_seen) "
                   "VALUES ('aa:bb:cc:dd:ee:01', 'Sam''s tablet', 'Family', 1, 2)")
    db.close()


def reset(cfg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARDIAN, "reset", "--config", str(cfg), *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_reset_erases_the_household_and_history_and_provisioning_applies_again(tmp_path, upstream):
    cfg, port = setup(tmp_path, upstream.url)
    used_box(cfg, port)
    result = reset(cfg, "--yes")
    assert result.returncode == 0, result.stderr
    assert "the query log, the risk events and the screen-time usage" in result.stdout
    var = tmp_path / "var"
    assert not (var / "guardian.db").exists() and not (var / "web.db").exists()
    assert (var / "web").is_dir() and list((var / "web").iterdir()) == []
    # Nothing of the family's is left in the data directory: not the audit trail, not a stray file.
    assert sorted(p.name for p in var.iterdir()) == ["web"], sorted(p.name for p in var.iterdir())
    running = Running(config.load(cfg))
    try:
        assert profiles(running) == ["Kid", "Grown"]  # seeded again from provisioning
    finally:
        running.stop()


def test_keep_network_keeps_the_device_registry_without_the_familys_labels(tmp_path, upstream):
    cfg, port = setup(tmp_path, upstream.url)
    used_box(cfg, port)
    result = reset(cfg, "--keep-network", "--yes")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "var" / "guardian.db") as db:
        assert db.execute("SELECT count(*) FROM queries").fetchone()[0] == 0
        devices = db.execute("SELECT mac, name, profile FROM devices").fetchall()
        assert ("aa:bb:cc:dd:ee:01", "", None) in devices  # (this host's own neighbours may be there too)
        assert {(name, profile) for _mac, name, profile in devices} == {("", None)}
    db.close()
    assert not (tmp_path / "var" / "household.db").exists()
    assert not (tmp_path / "var" / "audit.db").exists() and not (tmp_path / "var" / "anonymous-stats").exists()


def test_reset_asks_first(tmp_path):
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text("data_dir: ./var\n")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "household.db").write_text("kept")
    result = reset(cfg)  # no terminal, no --yes
    assert result.returncode == 1 and "not confirmed: run it in a terminal, or add --yes" in result.stderr
    assert (tmp_path / "var" / "household.db").read_text() == "kept"
