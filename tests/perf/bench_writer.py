"""The store's writer process alone (issue 14; not collected by pytest): CPU and bytes per row.

    .venv/bin/python tests/perf/bench_writer.py [--rows 300000] [--batch 5000] [--rate 9000]

Starts ``python -m guardian.store`` on a fresh guardian.db as the daemon does and feeds it
rows shaped like bench_mix.py's mixed mix (70 % of 12,000 cached names, 20 % blocked names
from 100,000 listed ones, 10 % never asked before; 4 clients), shipped 200 at a time and
committed every ``--batch`` rows (the daemon's BATCH_ROWS at saturation), with the rows'
times advancing at ``--rate`` per second. Prints the writer process's CPU per row
(/proc/PID/stat), its write_bytes per row (/proc/PID/io: WAL frames and checkpoints) and
the growth of guardian.db + WAL per row, after a warm-up of ``--warm`` rows.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guardian.config import PrivacySettings, StoreSettings  # noqa: E402
from guardian.store.child import LENGTH, pack  # noqa: E402
from guardian.store.process import options  # noqa: E402

CLIENTS = [f"127.0.0.{i}" for i in range(1, 5)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def rows(n: int, start: float, rate: float, seed: int, unique_from: int) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = start + i / rate
        client = CLIENTS[i % 4]
        pick = rnd.random()
        if pick < 0.7:
            name = f"site{rnd.randrange(12_000)}.example.com"
            out.append((t, client, None, None, "Guest", name, 1, "allowed", 0, "cache", "", None, None, None, None,
                        None, None, None, 0.05))
        elif pick < 0.9:
            name = f"ads{rnd.randrange(100_000)}.tracker.example.net"
            out.append((t, client, None, None, "Guest", name, 1, "blocked", 3, "policy", "category", "ads", None,
                        "big-list", name, None, None, None, 0.04))
        else:
            name = f"new{unique_from + i}.example.org"
            out.append((t, client, None, None, "Guest", name, 1, "allowed", 0, "upstream", "", None, None, None,
                        None, None, None, None, 0.4))
    return out


def call(proc: subprocess.Popen[bytes], message: Any) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(pack(message))
    proc.stdin.flush()
    size = LENGTH.unpack(proc.stdout.read(LENGTH.size))[0]
    answer: dict[str, Any] = pickle.loads(proc.stdout.read(size))
    return answer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--warm", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=9000.0)
    parser.add_argument("--mode", default="full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guardian-bench-writer-") as tmp:
        path = Path(tmp) / "guardian.db"
        hello = options(path, PrivacySettings(mode=args.mode), ZoneInfo("Europe/Paris"), StoreSettings(), 5, 3600.0)
        proc = subprocess.Popen([sys.executable, "-m", "guardian.store"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        try:
            call(proc, ("hello", hello))
            start = time.time() - (args.rows + args.warm) / args.rate
            done = 0
            cpu0 = io0 = disk0 = 0.0
            wall0 = 0.0
            for part in range(0, args.warm + args.rows, args.batch):
                if part == args.warm:
                    cpu0, io0, disk0, wall0 = cpu_seconds(proc.pid), write_bytes(proc.pid), disk(path), time.time()
                batch = rows(args.batch, start + part / args.rate, args.rate, part, part)
                for i in range(0, len(batch), 200):
                    assert proc.stdin is not None
                    proc.stdin.write(pack(("add", batch[i:i + 200])))
                counters = call(proc, ("commit", []))["counters"]
                done += len(batch)
            n = args.rows
            cpu = cpu_seconds(proc.pid) - cpu0
            print(f"rows {n:,} after {args.warm:,} (batch {args.batch:,}, mode {args.mode}); "
                  f"written {counters['written']:,} in {counters['commits']} commits; load {os.getloadavg()[0]:.1f}")
            print(f"writer CPU per row      {cpu / n * 1e6:7.1f} us  (wall {time.time() - wall0:.1f} s)")
            print(f"write_bytes per row     {(write_bytes(proc.pid) - io0) / n:7.0f}")
            print(f"db + WAL growth per row {(disk(path) - disk0) / n:7.0f}")
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
