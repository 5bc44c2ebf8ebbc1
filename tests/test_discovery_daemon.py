"""Discovery inside the daemon: its findings reach the parent as risk events and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def test_a_bypass_seen_by_discovery_becomes_a_risk_event(make_guardian, upstream, tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n"
                      "household:\n  profiles: [{name: Child, categories: [adult]}]\n"
                      "  devices: [{name: Sam's tablet, mac: 'b8:27:eb:00:00:01', profile: Child}]\n")
    g = make_guardian([upstream.url], config=config.read_text())
    assert g.daemon.discovery is not None
    g.loop.call_soon_threadsafe(g.daemon._bypass_seen, "b8:27:eb:00:00:01", "127.0.0.5", "DNS to 192.0.2.53:53")
    time.sleep(1.0)
    out = subprocess.run([sys.executable, "-m", "guardian", "events", "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=30)
    events = json.loads(out.stdout)
    bypass = [e for e in events if e["kind"] == "bypass"]
    assert bypass and bypass[0]["device"] == "Sam's tablet" and bypass[0]["profile"] == "Child"
    devices = subprocess.run([sys.executable, "-m", "guardian", "devices", "--config", str(config), "--json"],
                             capture_output=True, text=True, timeout=30)
    assert devices.returncode == 0, devices.stderr
    assert isinstance(json.loads(devices.stdout), list)
