"""The operator's side: check-config messages, and the daemon's signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import dig, free_port

GUARDIAN = [sys.executable, "-m", "guardian"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARDIAN, *args], capture_output=True, text=True, timeout=30)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("guardian ")


def test_check_config_accepts_the_contract_example(tmp_path):
    example = Path(__file__).parent / "data" / "contract.yaml"
    result = run_cli("check-config", "--config", str(example))
    assert result.returncode == 0, result.stderr


def test_check_config_reports_every_problem_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "dns:\n"
        "  listen: [\"127.0.0.1:99999\"]\n"      # line 2
        "  upstreams: [\"udp://dns.google:53\"]\n"  # line 3
        "  allow_clients: [10.0.0.0/33]\n"       # line 4
        "  rate_limit: lots\n"                    # line 5
        "  colour: blue\n"                        # line 6
        "timezone: Mars/Olympus\n"                # line 7
        "privacy:\n"
        "  mode: everything\n"                    # line 9
    )
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    for line_no, words in [(2, "port"), (3, "IP address"), (4, "10.0.0.0/33"), (5, "whole number"),
                           (6, "unknown key"), (7, "time zone"), (9, "not one of")]:
        assert any(line.startswith(f"{bad}:{line_no}: ") and words in line for line in lines), (line_no, lines)
    assert len(lines) == 7


def test_check_config_yaml_syntax_error_has_a_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("dns:\n  listen: [\"127.0.0.1:53\"\n  upstreams: x\n")
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{bad}:") and "YAML" in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run_cli("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "cannot read" in result.stderr


def _config(path: Path, port: int, upstream: str, extra: str = "") -> None:
    path.write_text(
        f"dns:\n  listen: [\"127.0.0.1:{port}\"]\n  upstreams: [\"{upstream}\"]\n{extra}"
        f"data_dir: ./var\nlog_level: info\n"
    )


@pytest.fixture
def daemon(tmp_path, upstream):
    port = free_port()
    config = tmp_path / "guardian.yaml"
    _config(config, port, upstream.url)
    proc = subprocess.Popen([*GUARDIAN, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30  # first start compiles the bundled lists
    while dig(port, "example.com").status != "NOERROR":
        assert time.monotonic() < deadline and proc.poll() is None, "daemon did not start"
        time.sleep(0.1)
    yield proc, config, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_stops_cleanly_and_data_dir_is_made(daemon, tmp_path):
    proc, _config_path, _port = daemon
    assert (tmp_path / "var").is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    log = proc.stderr.read()
    assert "Traceback" not in log
    assert " running (config " in log  # log_level info...
    assert "apscheduler" not in log  # ...without the scheduler's lines about every job run


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_memory_split_the_dns_process_carries_neither_sqlalchemy_nor_aiohttp(daemon):
    """On plain upstreams the DNS process loads no HTTP stack and no SQL toolkit (their
    C extensions would be mapped); the store's writer process owns SQLAlchemy, and
    loads nothing of the DNS side."""
    proc, _config_path, port = daemon
    assert dig(port, "example.com").status == "NOERROR"
    dns_maps = _mapped(proc.pid)
    assert "/sqlalchemy/" not in dns_maps
    assert "/aiohttp/" not in dns_maps
    children = [int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir() for c in (t / "children").read_text().split()]
    writer = [c for c in children if b"guardian.store" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(writer) == 1
    deadline = time.monotonic() + 10  # it opens the database (and imports SQLAlchemy) after its hello
    while "/sqlalchemy/" not in _mapped(writer[0]):
        assert time.monotonic() < deadline, "the writer process never loaded SQLAlchemy"
        time.sleep(0.1)
    assert "/aiohttp/" not in _mapped(writer[0])
    assert "uvloop" not in _mapped(writer[0])


def test_status_shows_what_the_running_daemon_is_doing(daemon, upstream):
    import json

    proc, config, port = daemon
    for _ in range(3):
        assert dig(port, "example.com").status == "NOERROR"
    text = run_cli("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert f"listening on udp 127.0.0.1:{port}, tcp 127.0.0.1:{port}" in text.stdout
    assert f"upstream {upstream.url}: up" in text.stdout
    data = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    assert data["queries"]["udp_queries"] >= 4  # the fixture's own query too
    assert data["cache"]["entries"] >= 1 and data["cache"]["hits"] + data["queries"]["packet_reuses"] >= 2
    assert data["upstreams"][0]["answered"] >= 1 and data["upstreams"][0]["up"] is True
    assert data["memory_mb"]["dns_process"] > 10 and data["memory_mb"]["other_processes"] > 10  # the writer
    assert data["lists"]["compiled"] >= 1  # the bundled rule packs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    stopped = run_cli("status", "--config", str(config))
    assert stopped.returncode == 1 and "not running" in stopped.stderr


def test_sighup_reloads_without_dropping_queries(daemon, tmp_path, upstream, upstream2):
    proc, config, port = daemon
    assert dig(port, "kids.example").values == ["198.51.100.7"]
    _config(config, port, upstream2.url, extra="  rate_limit: 0\n")
    os.kill(proc.pid, signal.SIGHUP)
    failures = 0
    deadline = time.monotonic() + 5
    switched = False
    while time.monotonic() < deadline:
        result = dig(port, "example.com")
        failures += result.status != "NOERROR"
        if result.values == ["93.185.216.34"]:  # upstream2's answer: the new config is live
            switched = True
            break
    assert switched and failures == 0


def test_sighup_applies_a_new_log_level(tmp_path, upstream):
    port = free_port()
    config = tmp_path / "guardian.yaml"
    config.write_text(f"dns:\n  listen: [\"127.0.0.1:{port}\"]\n  upstreams: [\"{upstream.url}\"]\n"
                      "data_dir: ./var\nlog_level: warning\n")
    proc = subprocess.Popen([*GUARDIAN, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while dig(port, "example.com").status != "NOERROR":
            assert time.monotonic() < deadline and proc.poll() is None, "daemon did not start"
            time.sleep(0.1)
        config.write_text(config.read_text().replace("log_level: warning", "log_level: info"))
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(4)  # the reload waits for the old chain's queries (3 x upstream_timeout)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log = proc.stderr.read()
        assert "configuration reloaded from" in log  # an info line: the new level is live
        assert "DNS listening" not in log  # info lines before the reload were not shown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_with_a_broken_file_keeps_the_running_config(daemon, tmp_path):
    proc, config, port = daemon
    config.write_text("dns:\n  listen: nonsense\n")
    os.kill(proc.pid, signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None
    assert dig(port, "kids.example").values == ["198.51.100.7"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    assert "reload refused" in proc.stderr.read()


def test_run_reports_a_port_in_use(tmp_path, upstream):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        config = tmp_path / "g.yaml"
        _config(config, taken.getsockname()[1], upstream.url)
        result = run_cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr


@pytest.mark.parametrize("shipped", ["guardian.yaml", "guardian.local.yaml"])
def test_shipped_configurations_are_valid(shipped):
    path = Path(__file__).parents[1] / "systemd" / shipped
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr


def _serve_list(names: int) -> Any:
    """A list of ``names`` hosts lines (bad0.example, ...) over HTTP on 127.0.0.1, in a thread."""
    import http.server
    import threading

    body = b"# test list\n" + b"".join(f"0.0.0.0 bad{i}.example\n".encode() for i in range(names))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_lists_refresh_downloads_with_progress_and_shows_the_status(tmp_path):
    server = _serve_list(500)
    try:
        config = tmp_path / "g.yaml"
        config.write_text(f"data_dir: ./var\nlists_allow_private_hosts: [127.0.0.1]\nlists:\n  - {{name: Test list, category: adult, "
                          f"url: 'http://127.0.0.1:{server.server_port}/list.txt'}}\n")
        result = run_cli("lists", "--config", str(config), "--refresh")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "Test list: updated" in result.stderr
    assert "Test list" in result.stdout and "500" in result.stdout


def test_lists_refresh_with_the_daemon_running_is_done_by_the_daemon_and_applies_at_once(
        make_guardian, upstream, tmp_path):
    server = _serve_list(50)
    upstream.zone["bad7.example"] = [("A", "198.51.100.77")]
    config = tmp_path / "g.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\npack_lists: false\nlists_allow_private_hosts: [127.0.0.1]\nlists:\n"
                      f"  - {{name: Test list, category: adult, url: 'http://127.0.0.1:{server.server_port}/l.txt'}}\n"
                      "household:\n  default_profile: Kid\n  profiles:\n    - {name: Kid, categories: [adult]}\n")
    try:
        g = make_guardian([upstream.url], config=config.read_text())
        assert dig(g.port(), "bad7.example").values == ["198.51.100.77"]  # not downloaded yet
        result = run_cli("lists", "--config", str(config), "--refresh")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "refreshed by the running daemon" in result.stderr and "Test list: updated" in result.stderr
    assert dig(g.port(), "bad7.example").status == "NXDOMAIN"  # in use as soon as the command returns


def test_reading_the_config_again_keeps_nothing_of_the_last_read():
    """SIGHUP reads the file again: months of reloads must not pile up memory."""
    import gc
    import tracemalloc

    from guardian import config

    example = Path(__file__).parent / "data" / "contract.yaml"
    config.load(example)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            config.load(example)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000, f"{grown:,} bytes kept after 20 reads"
