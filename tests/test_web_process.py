"""``guardian run`` starts the dashboard as its own process and stops it; ``guardian web
reset-password`` sets a forgotten password on the box's shell and signs the account out."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from fakedns import FakeDns
from support import ZONE, dig, free_port
from webdash import CONFIG, wait_http

from guardian.web.accounts import Accounts, db_path

pytestmark = pytest.mark.slow


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_guardian_run_starts_the_dashboard_process_and_stops_it(tmp_path: Path) -> None:
    upstream = FakeDns(zone=dict(ZONE)).start()
    dns_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port,
                                    data=tmp_path / "var"))
    run = subprocess.Popen([sys.executable, "-m", "guardian", "run", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(web_port, run, 60)
        assert dig(dns_port, "kids.example").values == ["198.51.100.7"]
        conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
        conn.request("GET", "/healthz", headers={"Host": f"127.0.0.1:{web_port}"})
        health = json.loads(conn.getresponse().read())
        assert health["dns"] is True and health["upstream"] is True and health["store"] is True
        web = [c for c in children_of(run.pid) if b"web" in Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")]
        assert len(web) == 1, "the dashboard is not a child of guardian run"
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
        time.sleep(0.2)
        assert not Path(f"/proc/{web[0]}").exists() or b"zombie" in Path(f"/proc/{web[0]}/status").read_bytes()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        upstream.stop()


def test_a_killed_guardian_run_takes_its_dashboard_with_it(tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, a crashed unit) of ``guardian run``: the dashboard it started
    must not live on as an orphan holding the port, so the next start can bind it."""
    upstream = FakeDns(zone=dict(ZONE)).start()
    dns_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port,
                                    data=tmp_path / "var"))
    run = subprocess.Popen([sys.executable, "-m", "guardian", "run", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    web: list[int] = []
    try:
        wait_http(web_port, run, 60)
        web = children_of(run.pid)  # the dashboard and the store's writer
        assert len([c for c in web if b"web" in Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")]) == 1
        run.kill()
        run.wait(10)
        end = time.monotonic() + 30  # the writer flushes what it holds first; a loaded machine is slow
        for pid in web:
            while Path(f"/proc/{pid}").exists() and b"zombie" not in Path(f"/proc/{pid}/status").read_bytes():
                assert time.monotonic() < end, f"{Path(f'/proc/{pid}/cmdline').read_bytes()!r} outlived guardian run"
                time.sleep(0.1)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in web:  # a failed run must not leave the orphan behind either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        upstream.stop()


def test_dashboard_enabled_false_starts_none(tmp_path: Path) -> None:
    upstream = FakeDns(zone=dict(ZONE)).start()
    dns_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    text = CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port, data=tmp_path / "var")
    config.write_text(text.replace("dashboard:\n", "dashboard:\n  enabled: false\n"))
    run = subprocess.Popen([sys.executable, "-m", "guardian", "run", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        while dig(dns_port, "kids.example").status != "NOERROR":
            assert time.monotonic() < end
            time.sleep(0.2)
        assert [c for c in children_of(run.pid)
                if b"web" in Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")] == []
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", web_port), timeout=2).close()
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(30)
        upstream.stop()


def test_reset_password_on_the_shell(tmp_path: Path) -> None:
    data = tmp_path / "var"
    config = tmp_path / "guardian.yaml"
    config.write_text(f"data_dir: {data}\n")
    data.mkdir()
    accounts = Accounts(db_path(data))
    account = accounts.create("Alex", "correct horse battery")
    accounts.open_session(account, "127.0.0.1", "test")
    cmd = [sys.executable, "-m", "guardian", "web", "reset-password"]
    missing = subprocess.run([*cmd, "Nobody", "--config", str(config)], input="another good secret\n", capture_output=True, text=True)
    assert missing.returncode == 1 and "no dashboard account is called 'Nobody' (accounts: 'Alex')" in missing.stderr
    weak = subprocess.run([*cmd, "Alex", "--config", str(config)], input="short\n", capture_output=True, text=True)
    assert weak.returncode == 1 and "10 characters" in weak.stderr
    done = subprocess.run([*cmd, "Alex", "--config", str(config)], input="another good secret\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert accounts.check("Alex", "another good secret") is not None
    assert accounts.check("Alex", "correct horse battery") is None
    assert accounts.sessions(account.id) == []  # signed out everywhere
    assert accounts.audit_log()[0]["action"] == "password reset"


def test_changes_from_the_command_line_are_in_the_dashboards_audit_log(tmp_path: Path) -> None:
    from guardian import audit

    upstream = FakeDns(zone=dict(ZONE)).start()
    dns_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port,
                                    data=tmp_path / "var"))
    run = subprocess.Popen([sys.executable, "-m", "guardian", "run", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(web_port, run, 60)
        cli = [sys.executable, "-m", "guardian"]
        done = subprocess.run([*cli, "pause", "Child", "--for", "10m", "--config", str(config)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        subprocess.run([*cli, "usage", "--config", str(config)], capture_output=True, check=True)  # a read
        rows = audit.read(tmp_path / "var")
        assert [(r["account"], r["action"], r["target"]) for r in rows] == [("cli root", "pause", "Child")]
        assert "for=600" in rows[0]["detail"]
        Accounts(db_path(tmp_path / "var")).create("Alex", "correct horse battery")
        conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
        host = {"Host": f"127.0.0.1:{web_port}"}
        conn.request("GET", "/login", headers=host)
        r = conn.getresponse()
        page = r.read().decode()
        cookie = r.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        body = urllib.parse.urlencode({"csrf": token, "name": "Alex", "password": "correct horse battery"})
        conn.request("POST", "/login", body=body, headers={**host, "Cookie": cookie,
                                                           "Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        r.read()
        session = r.getheader("Set-Cookie", "").split(";", 1)[0]
        conn.request("GET", "/settings", headers={**host, "Cookie": session})
        settings = conn.getresponse().read().decode()
        assert "<td>cli root</td><td>pause Child for=600</td>" in settings
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(30)
        upstream.stop()
