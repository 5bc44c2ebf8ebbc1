"""The control socket tells callers apart by peer credentials (SO_PEERCRED): root and the
daemon's user keep every action; another user who may open the socket (the dashboard's
user, in the daemon's group) gets the parents' actions only, never ``import``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": exc.strerror})); raise SystemExit
s.sendall(sys.argv[2].encode() + b"\n")
print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
"""

NOBODY = 65534


def as_user(path: Path, payload: dict, gid: int) -> dict:
    """One request from uid ``nobody`` with primary group ``gid`` (no other groups)."""
    out = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups", sys.executable,
                          "-I", "-c", CLIENT, str(path), json.dumps(payload)], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def daemon(make_guardian, upstream):
    if os.geteuid() != 0:
        pytest.fail("needs root to run a client as another user")
    data = Path(tempfile.mkdtemp(prefix="guardian-peers-"))
    data.chmod(0o755)  # traversable by the other user (pytest's own tmp dirs are not); the socket's mode decides
    running = make_guardian([f"udp://127.0.0.1:{upstream.port}"], f"data_dir: {data}\n"
                            "household:\n  profiles: [{name: Child}, {name: Adult}]\n  default_profile: Adult\n")
    yield running, data / "control.sock"
    running.stop()
    shutil.rmtree(data, ignore_errors=True)


def test_the_daemons_group_gets_the_parents_actions_only(daemon) -> None:
    running, sock = daemon
    mode = os.stat(sock)
    assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == os.getegid()
    group = os.getegid()
    assert as_user(sock, {"action": "ping"}, group)["ok"]
    assert as_user(sock, {"action": "pause", "target": "Child", "for": 600}, group)["ok"]
    assert "Child" in running.daemon.policy.current.paused_profiles
    state = as_user(sock, {"action": "state"}, group)
    assert state["ok"] and state["data"]["profiles"][0]["paused"]
    refused = as_user(sock, {"action": "import", "text": "household: {profiles: [{name: X}]}"}, group)
    assert not refused["ok"] and "not allowed" in refused["error"]
    assert {p.name for p in running.daemon.policy.current.household.profiles} == {"Child", "Adult"}
    # Outside the group the socket does not even open.
    assert as_user(sock, {"action": "ping"}, NOBODY) == {"connect": "Permission denied"}
