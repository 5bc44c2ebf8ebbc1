"""The systemd units: they verify, score at most 2.5 in systemd-analyze security, and say
what the README promises (notify + watchdog, own users, no capabilities for the dashboard)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = ["guardian.service", "guardian-web.service"]


def directives(unit: str) -> dict[str, list[str]]:
    """Every KEY=value of a unit file (a key may repeat), comments left out."""
    found: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_both_units_verify():
    """systemd-analyze verify checks ExecStart's binary exists: in a private mount
    namespace /opt/guardian/.venv is this checkout's venv (the host's /opt is untouched)."""
    script = ("mount -t tmpfs tmpfs /opt && mkdir -p /opt/guardian && "
              f"ln -s {REPO}/.venv /opt/guardian/.venv && "
              "exec systemd-analyze verify " + " ".join(str(REPO / "systemd" / u) for u in UNITS))
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either


def exposure(unit: str) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                             str(REPO / "systemd" / unit)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_at_most_2_5(unit):
    assert exposure(unit) <= 2.5


@pytest.mark.parametrize("unit", UNITS)
def test_notify_with_a_watchdog_and_always_restarted(unit):
    d = directives(unit)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] and d["Restart"] == ["always"]
    assert d["UMask"] == ["0027"] and d["StateDirectoryMode"] == ["0750"]
    assert d["NoNewPrivileges"] == ["yes"] and d["ProtectSystem"] == ["strict"]
    assert d["SystemCallFilter"][0] == "@system-service" and d["SystemCallArchitectures"] == ["native"]
    assert d["MemoryDenyWriteExecute"] == ["yes"] and d["MemoryMax"]


def test_each_process_has_its_own_user_and_the_dashboard_may_only_bind_port_80():
    dns, web = directives("guardian.service"), directives("guardian-web.service")
    assert dns["User"] == ["guardian"] and web["User"] == ["guardian-web"]
    assert set(dns["CapabilityBoundingSet"][0].split()) == {"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    # The child's block page is on port 80: that one capability, no raw sockets, nothing else.
    assert web["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert web["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert "AF_PACKET" not in web["RestrictAddressFamilies"][0]
    # The dashboard writes only its own folder; it reads the rest through group guardian.
    assert web["StateDirectory"] == ["guardian/web"] and web["SupplementaryGroups"] == ["guardian"]
    assert dns["ConfigurationDirectoryMode"] == ["0750"]


def test_memory_deny_write_execute_is_safe_no_process_maps_writable_code(tmp_path):
    """MemoryDenyWriteExecute=yes kills a process that maps memory writable and executable:
    the real daemon, its writer and its dashboard map none (CPython has no JIT; uvloop,
    marisa-trie, scapy, argon2-cffi bring none)."""
    import os
    import signal
    import socket
    import sys
    import time

    from support import dig, free_port

    dns, web = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(f"dns:\n  listen: [\"127.0.0.1:{dns}\"]\n  upstreams: [\"udp://127.0.0.1:9\"]\n"
                      f"dashboard:\n  listen: [\"127.0.0.1:{web}\"]\ndata_dir: ./var\n")
    proc = subprocess.Popen([sys.executable, "-m", "guardian", "run", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while dig(dns, "guardian.lan").status not in ("NOERROR", "NXDOMAIN", "SERVFAIL"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        while True:  # the dashboard child is up (it serves pages with Jinja2)
            try:
                socket.create_connection(("127.0.0.1", web), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        pids = [proc.pid]
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        assert len(pids) >= 3  # the daemon, its store writer, its dashboard
        for pid in pids:
            writable_code = [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                             if line.split()[1][1:3] == "wx"]
            assert writable_code == [], (pid, writable_code)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
