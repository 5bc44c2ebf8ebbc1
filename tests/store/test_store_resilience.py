"""The store under trouble, as the real daemon (``guardian run``, on uvloop) meets it:
its writer process killed mid-load, a read-only data_dir, the files' permissions, a
damaged household.db, and what ``guardian status`` says about records not saved."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from support import dig, free_port

GUARDIAN = [sys.executable, "-m", "guardian"]


def _config(tmp_path: Path, port: int, upstream: str, extra: str = "") -> Path:
    config = tmp_path / "guardian.yaml"
    config.write_text(f"dns:\n  listen: [\"127.0.0.1:{port}\"]\n  upstreams: [\"{upstream}\"]\n  rate_limit: 0\n"
                      f"data_dir: {tmp_path / 'var'}\nlog_level: info\ndashboard:\n  enabled: false\n{extra}")
    return config


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*GUARDIAN, "run", "--config", str(config)], stderr=log.open("wb"))
    deadline = time.monotonic() + 60  # a first start compiles the bundled lists
    while dig(port, "example.com").status != "NOERROR":
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def _writer_pid(daemon: int) -> int:
    children = [int(c) for t in Path(f"/proc/{daemon}/task").iterdir() for c in (t / "children").read_text().split()]
    writers = [c for c in children if b"guardian.store" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(writers) == 1, writers
    return writers[0]


def _status(config: Path) -> dict[str, Any]:
    out = subprocess.run([*GUARDIAN, "status", "--config", str(config), "--json"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)


class Sender:
    """Asks q<N>.load.example at ``rate`` queries/s over UDP on loopback; counts the answers."""

    def __init__(self, port: int, rate: float) -> None:
        self.port, self.rate = port, rate
        self.answered: set[str] = set()
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", self.port))
            s.settimeout(0.0)
            asked: dict[int, str] = {}
            start = time.monotonic()
            while not self._stop.is_set():
                while self.sent < (time.monotonic() - start) * self.rate:
                    qid = random.getrandbits(16)
                    name = f"q{self.sent}.load.example"
                    asked[qid] = name
                    s.send(_query(qid, name))
                    self.sent += 1
                time.sleep(0.002)
                while True:
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        break
                    name_ = asked.pop(struct.unpack(">H", data[:2])[0], None)
                    if name_ is not None:
                        self.answered.add(name_)
            deadline = time.monotonic() + 2  # the last answers
            s.settimeout(0.2)
            while asked and time.monotonic() < deadline:
                try:
                    data = s.recv(4096)
                except TimeoutError:
                    continue
                name_ = asked.pop(struct.unpack(">H", data[:2])[0], None)
                if name_ is not None:
                    self.answered.add(name_)

    def start(self) -> Sender:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def _stored_names(db: Path, like: str) -> set[str]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return {r[0] for r in conn.execute(
            "SELECT d.name FROM queries q JOIN domains d ON d.id = q.domain_id WHERE d.name LIKE ?", (like,))}
    finally:
        conn.close()


def test_writer_killed_under_load_on_uvloop_is_restarted_and_losses_are_counted(tmp_path, upstream):
    """SIGKILL of ``python -m guardian.store`` while the real daemon (uvloop) answers a few
    hundred queries/s: a new writer takes over, every answered query but a bounded few is
    in guardian.db, whatever was lost is counted in ``guardian status``, a storage system
    event tells the parents, and the log says so in a few lines, not a traceback per write."""
    port = free_port()
    config = _config(tmp_path, port, upstream.url, "store:\n  flush_seconds: 1\n")
    log = tmp_path / "daemon.log"
    proc = _start(config, port, log)
    try:
        assert b"uvloop" not in log.read_bytes()  # "uvloop is not installed" would mean the stdlib loop
        first = _writer_pid(proc.pid)
        sender = Sender(port, 300).start()
        time.sleep(2.5)
        os.kill(first, signal.SIGKILL)
        time.sleep(4.0)
        sender.stop()
        time.sleep(2.5)  # the last flush (flush_seconds: 1)
        second = _writer_pid(proc.pid)
        assert second != first
        store = _status(config)["store"]
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    db = tmp_path / "var" / "guardian.db"
    saved = _stored_names(db, "q%.load.example")
    answered = sender.answered
    assert len(answered) > 0.9 * sender.sent > 1500, (len(answered), sender.sent)
    missing = answered - saved
    assert len(missing) <= store["lost"] + store.get("unsaved", 0), (len(missing), store)
    assert len(missing) <= 50, (len(missing), len(answered), store)
    assert store["writer_restarts"] == 1, store
    assert text.count("Traceback") == 0, text[-3000:]
    assert sum("store" in line for line in text.splitlines()) <= 5, text[-3000:]
    events = subprocess.run([*GUARDIAN, "events", "--config", str(config), "--since", "1h", "--json"],
                            capture_output=True, text=True, timeout=30)
    assert events.returncode == 0, events.stderr
    storage = [e for e in json.loads(events.stdout) if e["kind"] == "system" and e["threat"] == "storage"]
    assert storage and "writer" in json.dumps(storage), events.stdout


LOSS = """
import asyncio, logging, os, signal, sys, time
from pathlib import Path
import uvloop
from guardian.config import StoreSettings
from guardian.store import QueryRecord, Recorder
from guardian.store import process

logging.basicConfig(level=logging.INFO)

def rec(i):
    return QueryRecord(time.time(), "192.168.1.20", "Tab", None, "Child", f"r{i}.example", 1, "allowed", 0, "upstream")

async def main():
    r = Recorder(Path(sys.argv[1]), process=True, store=StoreSettings(flush_seconds=0.2))
    await r.start()
    for i in range(100):
        r.record(rec(i))
    await asyncio.sleep(0.5)  # written
    real = process.sys.executable
    process.sys.executable = "/bin/false"  # the next writer cannot start: it exits at once
    os.kill(r.remote.proc.pid, signal.SIGKILL)
    for i in range(100, 400):  # 3 s of queries with no writer
        r.record(rec(i))
        await asyncio.sleep(0.01)
    down = r.health()
    process.sys.executable = real
    await asyncio.sleep(5)  # the back-off ends (1 s, 2 s): a writer starts again
    for i in range(400, 500):
        r.record(rec(i))
    await asyncio.sleep(1)
    await r.stop()
    print("down", down["lost"], down["writer_restarts"], "after", r.health()["lost"], flush=True)

uvloop.run(main())
"""


def test_a_writer_that_cannot_start_again_counts_its_losses_backs_off_and_comes_back(tmp_path):
    """Under uvloop, a writer killed while a new one cannot start: the records that
    could not be saved are counted as lost (not "0 lost"), starts are retried with a
    back-off instead of at every flush, the log says it once, and once a writer can
    start again the queries are saved again."""
    db = tmp_path / "guardian.db"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", LOSS, str(db)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-3000:]
    _, lost_down, restarts, _, lost_after = out.stdout.split()
    saved = _stored_names(db, "r%.example")
    assert {f"r{i}.example" for i in range(100)} <= saved
    assert {f"r{i}.example" for i in range(400, 500)} <= saved
    missing = 500 - len(saved)
    assert int(lost_down) > 0 and int(lost_after) == missing, (lost_down, lost_after, missing)
    assert int(restarts) <= 3, restarts  # backed off: not one start per 20 ms flush
    assert out.stderr.count("Traceback") == 0, out.stderr[-3000:]
    assert out.stderr.count("store: ") <= 3, out.stderr[-3000:]
    conn = sqlite3.connect(db)
    events = conn.execute("SELECT message, severity FROM risk_events WHERE kind = 'system' AND threat = 'storage'")
    assert any("not saved" in m and s == "high" for m, s in events), out.stderr[-2000:]


HOUSEHOLD = """pack_lists: false
household:
  default_profile: Kid
  profiles:
    - name: Kid
      categories: [gambling]
      deny: [denied.example]
"""


def _in_namespace(config: Path, log: Path, read_only: list[Path]) -> subprocess.Popen[bytes]:
    """``guardian run`` in a private mount namespace where ``read_only`` are read-only bind
    mounts (an SD card remounted read-only); the rest of the machine sees nothing of it."""
    mounts = " && ".join(f"mount --bind '{p}' '{p}' && mount -o remount,ro,bind '{p}'" for p in read_only)
    argv = " ".join(f"'{a}'" for a in (*GUARDIAN, "run", "--config", str(config)))
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && exec {argv}"],
                            stderr=log.open("wb"))


def _answers(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while dig(port, "example.com").status != "NOERROR":
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)


def test_a_read_only_data_dir_still_gives_the_house_dns_with_its_rules(tmp_path, upstream):
    """The SD card remounted read-only: ``guardian run`` starts anyway and answers from the
    compiled lists and the household it can read (a parent's block made before stays);
    the log says once, clearly, that nothing can be saved."""
    upstream.zone["www.1xbet.com"] = [("A", "198.51.100.9")]
    upstream.zone["denied.example"] = [("A", "198.51.100.10")]
    upstream.zone["parent-blocked.example"] = [("A", "198.51.100.11")]
    port = free_port()
    config = _config(tmp_path, port, upstream.url, HOUSEHOLD)
    proc = _start(config, port, tmp_path / "first.log")
    try:
        block = subprocess.run([*GUARDIAN, "block", "parent-blocked.example", "--profile", "Kid", "--config",
                                str(config)], capture_output=True, text=True, timeout=30)
        assert block.returncode == 0, block.stderr
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = tmp_path / "ro.log"
    proc = _in_namespace(config, log, [tmp_path / "var"])
    try:
        _answers(port, proc, log)
        assert dig(port, "kids.example").values == ["198.51.100.7"]
        assert dig(port, "www.1xbet.com").status == "NXDOMAIN"  # the compiled gambling list
        assert dig(port, "denied.example").status == "NXDOMAIN"  # the profile's deny list
        assert dig(port, "parent-blocked.example").status == "NXDOMAIN"  # the parent's change, read back
        time.sleep(3)  # a flush or two fail to reach the disk
        assert proc.poll() is None
        assert dig(port, "example.com").values == ["93.184.216.34"]
    finally:
        _stop(proc)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "cannot save the household" in line]
    assert len(lines) == 1 and "read-only" in lines[0] and "DNS answers" in lines[0], text[-3000:]
    trouble = [line for line in text.splitlines() if (" ERROR " in line or " WARNING " in line)
               and "interfaces is empty" not in line]
    assert len(trouble) <= 6, trouble  # each part says it once, not per flush or per round


def test_status_shows_queries_waiting_for_a_disk_that_refuses_them(tmp_path, upstream):
    """guardian.db cannot be written (read-only here, as a full disk refuses writes):
    ``guardian status`` in words says how many queries wait, and that none were saved."""
    port = free_port()
    config = _config(tmp_path, port, upstream.url, "store:\n  flush_seconds: 0.3\n")
    proc = _start(config, port, tmp_path / "first.log")
    assert _stop(proc) == 0
    db = tmp_path / "var" / "guardian.db"
    log = tmp_path / "ro.log"
    proc = _in_namespace(config, log, [db])
    try:
        _answers(port, proc, log)
        for i in range(20):
            assert dig(port, f"w{i}.example.org").status == "NXDOMAIN"
        deadline = time.monotonic() + 20  # the writer retries on its own schedule: wait for the count, not a time
        while True:
            out = subprocess.run([*GUARDIAN, "status", "--config", str(config)], capture_output=True, text=True,
                                 timeout=30)
            assert out.returncode == 0, out.stderr
            line = next(line for line in out.stdout.splitlines() if line.startswith("store:"))
            found = re.search(r"([\d,]+) waiting", line)
            if (found and int(found.group(1).replace(",", "")) >= 20) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        data = _status(config)["store"]
    finally:
        _stop(proc)
    assert data["waiting"] >= 20, data
    assert found and int(found.group(1).replace(",", "")) >= 20, line
    assert "not saved" in line and "lost" in line, line
    assert "readonly" in line or "read-only" in line, line  # the last error, in words


def test_data_files_are_not_readable_by_everyone(tmp_path, upstream):
    """guardian.db (the browsing history), its WAL, household.db and data_dir itself: no
    access for other users, on a fresh install and on one made before (0755/0644)."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)
    port = free_port()
    config = _config(tmp_path, port, upstream.url, "store:\n  flush_seconds: 0.2\n")

    def modes() -> dict[str, int]:
        out = {}
        for path in [var, *var.rglob("*")]:
            if not path.is_socket():
                out[str(path.relative_to(tmp_path))] = path.stat().st_mode & 0o777
        return out

    for round_ in range(2):
        proc = _start(config, port, tmp_path / f"run{round_}.log")
        try:
            for i in range(5):
                assert dig(port, f"p{i}.example.org").status == "NXDOMAIN"
            time.sleep(1)
            seen = modes()
            assert {"var/guardian.db", "var/guardian.db-wal", "var/household.db"} <= set(seen), seen
            assert seen["var"] == 0o750, oct(seen["var"])
            for name, mode in seen.items():
                assert mode & 0o007 == 0, (name, oct(mode))
                assert mode & 0o020 == 0, (name, oct(mode))  # nor written by the group
            assert _stop(proc) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in [var, *var.rglob("*")]:  # as an older Guardian left them
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_a_damaged_household_file_is_kept_aside_and_told_to_the_parents(tmp_path, upstream):
    port = free_port()
    config = _config(tmp_path, port, upstream.url, HOUSEHOLD + "store:\n  flush_seconds: 0.2\n")
    var = tmp_path / "var"
    var.mkdir()
    (var / "household.db").write_bytes(b"this is not a database" * 200)
    log = tmp_path / "run.log"
    proc = _start(config, port, log)
    try:
        assert dig(port, "denied.example").status == "NXDOMAIN"  # seeded again from the config
        time.sleep(1)
        events = subprocess.run([*GUARDIAN, "events", "--config", str(config), "--since", "1h", "--json"],
                                capture_output=True, text=True, timeout=30)
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    aside = list(var.glob("household.db.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert events.returncode == 0, events.stderr
    system = [e for e in json.loads(events.stdout) if e["kind"] == "system" and e["threat"] == "household"]
    assert system and system[0]["severity"] == "high", events.stdout
    assert aside[0].name in json.dumps(system), system
    assert sum("household.db" in line and "damaged" in line for line in log.read_text().splitlines()) == 1
