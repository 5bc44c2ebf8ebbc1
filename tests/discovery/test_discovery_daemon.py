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


def test_a_bypass_sighting_is_an_event_not_a_query(make_guardian, upstream, tmp_path):
    """What discovery saw is no DNS query: it is not in the query log, the hourly counts
    or the answers counted by result (/metrics), only a bypass risk event."""
    import sqlite3

    config = (f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n"
              "household:\n  profiles: [{name: Child, categories: [adult]}]\n"
              "  devices: [{name: Sam's tablet, mac: 'b8:27:eb:00:00:01', profile: Child}]\n")
    g = make_guardian([upstream.url], config=config)
    g.loop.call_soon_threadsafe(g.daemon._bypass_seen, "b8:27:eb:00:00:01", "127.0.0.5", "DNS to 192.0.2.53:53")
    time.sleep(0.2)
    g.call(g.daemon.recorder.flush())
    with sqlite3.connect(tmp_path / "var" / "guardian.db") as conn:
        events = conn.execute("SELECT kind, device, profile, severity, examples FROM risk_events "
                              "WHERE kind = 'bypass'").fetchall()
        queries = conn.execute("SELECT count(*) FROM queries").fetchone()[0]
        hourly = conn.execute("SELECT coalesce(sum(count), 0) FROM hourly").fetchone()[0]
    assert events == [("bypass", "Sam's tablet", "Child", "high", "DNS to 192.0.2.53:53")]
    assert (queries, hourly) == (0, 0)
    assert g.daemon.recorder.results == {}


def test_a_device_named_by_its_dhcp_hostname_gets_its_profile(make_guardian, upstream, tmp_path):
    from support import dig

    from guardian.discovery.registry import Device

    upstream.zone["1xbet.com"] = [("A", "198.51.100.20")]
    config = (f"data_dir: {tmp_path / 'var'}\n"
              "household:\n  default_profile: Adult\n"
              "  profiles: [{name: Child, categories: [gambling]}, {name: Adult}]\n"
              "  devices: [{name: Sam's iPad, hostname: sams-ipad, profile: Child}]\n")
    g = make_guardian([upstream.url], config=config)
    assert dig(g.port(), "1xbet.com", source="127.0.0.6").values == ["198.51.100.20"]  # not known yet
    seen = Device(mac="3a:11:22:33:44:55", first_seen=0.0, last_seen=0.0, addresses={"127.0.0.6": 0.0},
                  hostname="sams-ipad")
    g.loop.call_soon_threadsafe(g.daemon.discovery.registry.by_ip.__setitem__, "127.0.0.6", seen)
    g.loop.call_soon_threadsafe(g.daemon.server.invalidate)
    time.sleep(0.2)
    assert dig(g.port(), "www.1xbet.com", source="127.0.0.6").status == "NXDOMAIN"


def test_a_reload_with_new_discovery_settings_restarts_discovery_keeping_the_devices(
        make_guardian, upstream, tmp_path):
    """SIGHUP applies discovery.* too: the old service saves its registry and stops, the
    new one (new settings) loads the same devices back."""
    import dataclasses

    from support import dig

    from guardian import config as config_module
    from guardian.discovery.packets import Sighting

    text = f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n"
    g = make_guardian([upstream.url], config=text)
    old = g.daemon.discovery
    sighting = Sighting(mac="b8:27:eb:12:34:56", ip="127.0.0.9", source="dhcp", hostname="kids-pi")
    g.loop.call_soon_threadsafe(old._take, [sighting])
    time.sleep(0.2)
    changed = config_module.parse(text + "discovery:\n  sweep_minutes: 7\n", "g.yaml", base=tmp_path)
    g.call(g.daemon.reload(dataclasses.replace(changed, dns=g.daemon.settings.dns)))
    new = g.daemon.discovery
    assert new is not old and new.settings.sweep_minutes == 7
    assert old._task is None  # the old one stopped
    kept = new.registry.by_ip.get("127.0.0.9")
    assert kept is not None and kept.mac == "b8:27:eb:12:34:56" and kept.hostname == "kids-pi"
    assert dig(g.port(), "example.com").status == "NOERROR"


def test_in_anonymous_mode_the_device_registry_stays_in_memory(make_guardian, upstream, tmp_path):
    import sqlite3

    from guardian.discovery.packets import Sighting

    g = make_guardian([upstream.url], config=f"data_dir: {tmp_path / 'var'}\nprivacy:\n  mode: anonymous\n")
    discovery = g.daemon.discovery
    sighting = Sighting(mac="b8:27:eb:65:43:21", ip="127.0.0.8", source="dhcp", hostname="kids-laptop")
    g.loop.call_soon_threadsafe(discovery._take, [sighting])
    time.sleep(0.2)
    g.call(discovery.flush())
    assert discovery.registry.by_ip["127.0.0.8"].hostname == "kids-laptop"  # known while running
    db = sqlite3.connect(tmp_path / "var" / "guardian.db")
    assert db.execute("SELECT count(*) FROM devices").fetchone() == (0,)  # never written
