"""The query log seen from the DNS side: real queries end up in the store, DNS never waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import dig


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
