"""systemd's notify protocol: READY=1 once DNS answers, WATCHDOG=1 from the event loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dig, free_port

from guardian import sdnotify

GUARDIAN = [sys.executable, "-m", "guardian"]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_to_the_socket(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    assert sdnotify.notify("READY=1\nSTATUS=answering")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=answering"


def test_abstract_socket_names_start_with_an_at_sign(monkeypatch):
    name = f"guardian-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    assert sdnotify.watchdog_seconds() is None


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("30000000", None, 30.0),
    ("30000000", "self", 30.0),
    ("30000000", "1", None),  # meant for another process (the unit's main one)
    ("0", None, None),
    ("nonsense", None, None),
])
def test_watchdog_interval_from_the_environment(monkeypatch, usec, pid, expected):
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert sdnotify.watchdog_seconds() == expected


def test_the_real_daemon_says_ready_once_it_answers_then_feeds_the_watchdog(tmp_path, upstream, notify_socket):
    port = free_port()
    config = tmp_path / "guardian.yaml"
    config.write_text(f"dns:\n  listen: [\"127.0.0.1:{port}\"]\n  upstreams: [\"{upstream.url}\"]\n"
                      "dashboard: {enabled: false}\ndata_dir: ./var\n")
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([*GUARDIAN, "run", "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        messages = [notify_socket.recv(4096).decode()]
        assert "READY=1" in messages[0].splitlines()
        # Ready means ready: the listeners are bound and answer.
        answer = dig(port, "example.com")
        assert answer.values == ["93.184.216.34"], answer.text
        start = time.monotonic()
        pings = 0
        while pings < 4:
            message = notify_socket.recv(4096).decode()
            messages.append(message)
            pings += message == "WATCHDOG=1"
        # Every half of WATCHDOG_USEC (0.2 s): four pings in well under the 30 s timeout.
        assert time.monotonic() - start < 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        notify_socket.settimeout(1)
        with pytest.raises(TimeoutError):
            while True:
                messages.append(notify_socket.recv(4096).decode())
        assert "STOPPING=1" in messages
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


def test_a_hung_loop_stops_feeding_the_watchdog(notify_socket, monkeypatch):
    """The pings come from a loop timer, so a blocked loop (what systemd must restart) sends none."""
    import asyncio

    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    notify_socket.setblocking(False)

    async def main() -> tuple[list[bytes], list[bytes], list[bytes]]:
        watchdog = sdnotify.start_watchdog(asyncio.get_running_loop())
        assert watchdog is not None
        await asyncio.sleep(0.5)
        running = _drain(notify_socket)
        time.sleep(1.0)  # the loop hangs
        hung = _drain(notify_socket)
        await asyncio.sleep(0.3)
        watchdog.cancel()
        resumed = _drain(notify_socket)
        await asyncio.sleep(0.3)
        return running, hung, resumed + _drain(notify_socket)

    running, hung, resumed = asyncio.run(main())
    assert 5 <= len(running) <= 12 and set(running) == {b"WATCHDOG=1"}  # every 50 ms
    assert hung == []
    assert 1 <= len(resumed) <= 7  # back once the loop runs again, none after cancel()


def test_the_dashboard_says_ready_once_it_listens(tmp_path, notify_socket):
    import urllib.error
    import urllib.request

    port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(f"dashboard:\n  listen: [\"127.0.0.1:{port}\"]\ndata_dir: ./var\n")
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([*GUARDIAN, "web", "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert "READY=1" in notify_socket.recv(4096).decode().splitlines()
        try:  # no daemon here: /healthz answers 503 "down", but it answers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        assert code in (200, 503)
        assert notify_socket.recv(4096) == b"WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
