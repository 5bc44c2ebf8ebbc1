"""The query log seen from the DNS side: real queries end up in the store, DNS never waits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from support import dig


def test_queries_reach_the_store_and_the_stats_command(make_guardian, upstream, tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n")
    g = make_guardian([upstream.url], config=config.read_text())
    for _ in range(3):
        assert dig(g.port(), "example.com").status == "NOERROR"
    assert dig(g.port(), "nothing-here.example").status == "NXDOMAIN"
    time.sleep(0.8)
    out = subprocess.run([sys.executable, "-m", "guardian", "stats", "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert "127.0.0.1" in json.dumps(stats)
    assert g.daemon.recorder.health()["written"] >= 4


def test_a_full_store_queue_drops_and_counts_but_dns_answers(make_guardian, upstream, tmp_path):
    config = f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 60\n  queue_size: 100\n"
    g = make_guardian([upstream.url], config=config)
    for i in range(150):
        assert dig(g.port(), f"n{i}.example.org").status == "NXDOMAIN"
    health = g.daemon.recorder.health()
    assert health["dropped"] >= 50
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]


def test_the_log_is_written_by_a_child_process_restarted_if_it_dies(make_guardian, upstream, tmp_path):
    config = f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.3\n"
    g = make_guardian([upstream.url], config=config)
    remote = g.daemon.recorder.remote
    assert remote is not None and remote.proc is not None
    child = remote.proc.pid
    assert child != os.getpid()
    for i in range(5):
        assert dig(g.port(), f"before{i}.example.org").status == "NXDOMAIN"
    time.sleep(0.1)  # shipped to the child, not yet committed
    os.kill(child, signal.SIGKILL)
    for i in range(5):
        assert dig(g.port(), f"after{i}.example.org").status == "NXDOMAIN"
    deadline = time.monotonic() + 10
    while g.daemon.recorder.health().get("written", 0) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    health = g.daemon.recorder.health()
    assert health["written"] >= 10 and health["lost"] == 0
    assert remote.proc is not None and remote.proc.pid != child
    db = sqlite3.connect(tmp_path / "var" / "guardian.db")
    names = {row[0] for row in db.execute("SELECT name FROM domains")}
    assert {f"before{i}.example.org" for i in range(5)} <= names
    assert {f"after{i}.example.org" for i in range(5)} <= names


def test_retention_runs_in_the_writer_process(make_guardian, upstream, tmp_path):
    config = f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n  query_days: 2\n"
    g = make_guardian([upstream.url], config=config)
    assert dig(g.port(), "recent.example.org").status == "NXDOMAIN"
    path = tmp_path / "var" / "guardian.db"
    deadline = time.monotonic() + 10
    while g.daemon.recorder.health().get("written", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    db = sqlite3.connect(path, timeout=10)
    with db:
        domain = db.execute("SELECT domain_id FROM queries").fetchone()[0]
        db.execute("INSERT INTO queries (time, domain_id, qtype, action_id, rcode, duration_ms) "
                   "SELECT ?, domain_id, qtype, action_id, rcode, 0 FROM queries LIMIT 1", (time.time() - 5 * 86400,))
    assert db.execute("SELECT count(*) FROM queries").fetchone()[0] == 2
    asyncio.run_coroutine_threadsafe(g.daemon.recorder.run_retention(), g.loop).result(30)
    rows = db.execute("SELECT time, domain_id FROM queries").fetchall()
    assert len(rows) == 1 and rows[0][1] == domain and rows[0][0] > time.time() - 60  # the old one went


def test_a_busy_network_commits_full_batches_before_the_interval(make_guardian, upstream, tmp_path):
    """With a minute between flushes, 12,000 queries are still written within seconds, in
    batches of at most BATCH_ROWS: what the daemon holds unwritten stays bounded."""
    import socket

    from guardian.store.recorder import BATCH_ROWS

    config = f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 60\n"
    g = make_guardian([upstream.url], config=config)
    assert dig(g.port(), "example.com").status == "NOERROR"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", g.port()))
    query = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")  # example.com A
    sent = 12_000
    for _ in range(sent):
        sock.send(query)
        assert sock.recv(512)[:2] == b"\xab\xcd"
    sock.close()
    deadline = time.monotonic() + 15
    while g.daemon.recorder.health().get("written", 0) < 2 * BATCH_ROWS and time.monotonic() < deadline:
        time.sleep(0.1)
    health = g.daemon.recorder.health()
    assert health["written"] >= 2 * BATCH_ROWS, health  # not waiting for the minute
    assert health["dropped"] == 0 and health["lost"] == 0
    assert health["commits"] >= 2
