"""SIGKILL while recording: the file stays consistent and loses at most one flush interval.

The bound (documented in recorder.py and the README): what was recorded after the last committed batch,
i.e. at most ``flush_seconds`` plus the time one batch takes to write. The test allows
``flush_seconds`` + 0.5 s for the write and the scheduling of a loaded test machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_store_support import sql

FLUSH = 0.3

FEEDER = f"""
import asyncio, sys, time
from pathlib import Path
from guardian.config import StoreSettings
from guardian.store import QueryRecord, Recorder

async def main():
    r = Recorder(Path(sys.argv[1]), StoreSettings(flush_seconds={FLUSH}))
    await r.start()
    print("ready", flush=True)
    seq = 0
    while True:  # about 5,000 queries/s; seq (in qtype) shows any hole
        for _ in range(50):
            r.record(QueryRecord(time.time(), "192.168.1.20", "Tab", None, "Child", f"n{{seq % 5000}}.example",
                                 seq, "blocked" if seq % 7 == 0 else "allowed", 0, "upstream",
                                 category="games", threat="games" if seq % 7 == 0 else None))
            seq += 1
        await asyncio.sleep(0.01)

asyncio.run(main())
"""


def test_sigkill_mid_write_keeps_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / "guardian.db"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for round_ in range(2):  # the second round reopens a file that was killed mid-write
        proc = subprocess.Popen([sys.executable, "-c", FEEDER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(2.0 + round_ * 0.37)  # several flushes; the kill lands at an arbitrary point
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sql(path, "PRAGMA integrity_check") == [("ok",)]
        last = sql(path, "SELECT max(time) FROM queries")[0][0]
        assert killed_at - last <= FLUSH + 0.5, killed_at - last
        # No holes: every query of a run up to the last stored one is there.
        seqs = sql(path, "SELECT qtype FROM queries WHERE time > ? ORDER BY id", (killed_at - 60,))
        run = [s for (s,) in seqs]
        start = run.index(0, len(run) - run[::-1].index(0) - 1) if round_ else 0
        tail = run[start:]
        assert tail == list(range(len(tail)))
        # Rollups were committed in the same transactions as the rows.
        assert sql(path, "SELECT sum(count) FROM hourly")[0][0] == sql(path, "SELECT count(*) FROM queries")[0][0]


def test_sigkill_of_the_daemon_loses_only_what_was_not_yet_shipped(tmp_path: Path) -> None:
    """With the writer in its own process (as in the daemon): the killed daemon's pipe
    closes, and the writer commits everything it was sent before exiting."""
    path = tmp_path / "guardian.db"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    feeder = FEEDER.replace("StoreSettings(flush_seconds=", "process=True, store=StoreSettings(flush_seconds=")
    feeder = feeder.replace('print("ready", flush=True)', 'print("ready", r.remote.proc.pid, flush=True)')
    feeder = feeder.replace(f"flush_seconds={FLUSH}", "flush_seconds=10")  # no commit of its own in the run
    proc = subprocess.Popen([sys.executable, "-c", feeder, str(path)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    word, child = proc.stdout.readline().split()
    assert word == b"ready"
    time.sleep(1.5)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{int(child)}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{int(child)}").exists(), "the writer process outlived the daemon"
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    last = sql(path, "SELECT max(time) FROM queries")[0][0]
    assert killed_at - last <= 0.3, killed_at - last  # shipped every 20 ms; the rest is scheduling
    run = [s for (s,) in sql(path, "SELECT qtype FROM queries ORDER BY id")]
    assert run == list(range(len(run))) and len(run) > 5000
