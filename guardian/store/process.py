"""The store's writer in its own process, so the query log never competes with DNS.

In the daemon, ``Recorder(process=True)`` starts ``python -m guardian.store``
and sends it each flush as one message on its stdin; the child prepares and commits
the batch with the same ``StoreWriter`` the thread mode uses, and answers with its
counters. Why a process and not a thread: on two cores, a writer thread holds the
interpreter's lock for ~30 µs of Python per record and its garbage adds to the DNS
loop's collections, which showed as 5-50 ms stalls in answers (p99 5-25 ms at
2,000 queries/s). A process runs on the other core and owns its own memory.

The wire: each message is a 4-byte big-endian length and a pickle, both ways, between
two processes of the same installation (the child is spawned by the daemon with its
own interpreter; nothing else writes to these pipes).

- parent -> child: ``("hello", options)`` first; ``("add", rows)`` every ``SHIP_SECONDS``
  (``rows`` are QueryRecord field tuples; no answer); ``("commit", side)`` every
  ``flush_seconds`` (side: system and new-device events); ``("settings", options)``
  after a reload.
- parent -> child, wanting an answer: ``("usage", day)`` (budgets after a restart).
- child -> parent: ``{"counters": the writer's counters, ...}`` after each message but ``add``.

The child ignores SIGINT and SIGTERM (systemd sends SIGTERM to the whole unit): the
daemon ends it by closing the pipe once the last batch is written; a daemon that dies
closes the pipe too, so the child never outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import random
import signal
import struct
import sys
import threading
import time
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from ..config import PrivacySettings, StoreSettings
from .records import QueryRecord

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_CUMULATIVE = ("written", "commits", "write_errors", "unsaved", "writer_cpu_seconds")
FIELDS = attrgetter(*(f.name for f in fields(QueryRecord)))  # QueryRecord -> tuple, in C
SHIP_SECONDS = 0.02
RETENTION_SECONDS = 3600.0  # the store's retention rules run this often, in the writer process
START_TIMEOUT = 60.0
COMMIT_TIMEOUT = 300.0  # a commit stuck this long means a wedged child: restart it  # opening may migrate or set aside a large database
STOP_TIMEOUT = 30.0


def pack(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def options(path: Path, privacy: PrivacySettings, zone: ZoneInfo, store: StoreSettings, session_gap: int,
            risk_window: float) -> dict[str, Any]:
    return {"path": str(path), "mode": privacy.mode, "zone": zone.key, "max_waiting": store.queue_size,
            "store": dataclasses.asdict(store), "session_gap": session_gap, "risk_window": risk_window,
            "log_level": logging.getLogger("guardian").getEffectiveLevel()}


class StoreUnavailable(Exception):
    """The writer process answered, but could not do what was asked (the file is unusable)."""


def lower_priority() -> None:
    """Let the calling thread run only on CPU time DNS leaves over.

    SCHED_IDLE where the kernel has it (Linux): the scheduler runs this thread only when
    nothing else wants the core and takes the core back at once when the DNS loop wakes
    up; a normal priority at nice +10 still takes its turn, long enough to delay answers
    on a 2-core Pi. Falls back to nice +10.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class WorkerGone(Exception):
    """The writer process ended or stopped answering."""


class RemoteWriter:
    """The parent's handle on the writer process.

    ``add`` ships records as they come (every ``SHIP_SECONDS``, a few hundred at a time, so
    the loop never pickles a whole flush at once) without waiting; ``commit`` asks the
    child to write everything shipped so far and waits for its counters. Rows shipped but
    not yet committed are kept, so a child that dies is restarted and given them again.
    """

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.counters: dict[str, Any] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.unacked: list[tuple[Any, ...]] = []
        self._before: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def totals(self) -> dict[str, Any]:
        """The counters of every writer process so far (a restarted child counts from zero)."""
        out = dict(self.counters)
        for key, value in self._before.items():
            out[key] = out.get(key, 0) + value
        return out

    async def start(self) -> None:
        for key, value in self.counters.items():  # a previous child's totals
            if key in _CUMULATIVE:
                self._before[key] = self._before.get(key, 0) + value
        self.counters = {}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guardian.store", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        await self._call(("hello", self.hello), timeout=START_TIMEOUT)

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Ship rows to the child now (no wait); they are written by the next ``commit``."""
        self.unacked.extend(rows)
        proc = self.proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(pack(("add", rows)))

    async def commit(self, side: list[tuple[Any, ...]], hello: dict[str, Any] | None = None) -> None:
        """Write what was shipped (and ``side`` events); restart a dead child once."""
        for attempt in (1, 2):
            try:
                if hello is not None:
                    self.hello = hello
                    await self._call(("settings", hello))
                await self._call(("commit", side), timeout=COMMIT_TIMEOUT)
                self.unacked.clear()
                return
            except WorkerGone as exc:
                if attempt == 2:
                    raise
                log.error("store: %s; starting it again", exc)
                await self.stop()
                await self.start()
                if self.unacked:
                    assert self.proc is not None and self.proc.stdin is not None
                    self.proc.stdin.write(pack(("add", self.unacked)))

    async def _call(self, message: Any, timeout: float | None = None) -> dict[str, Any]:
        async with self._lock:
            proc = self.proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise WorkerGone("the store's writer process is not running")
            try:
                proc.stdin.write(pack(message))
                await proc.stdin.drain()
                head = await asyncio.wait_for(proc.stdout.readexactly(_LENGTH.size), timeout)
                body = await asyncio.wait_for(proc.stdout.readexactly(_LENGTH.unpack(head)[0]), timeout)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                raise WorkerGone(f"the store's writer process failed: {exc!r}") from exc
            answer: dict[str, Any] = pickle.loads(body)
            self.counters = answer["counters"]
            if "error" in answer:
                raise StoreUnavailable(f"the store's writer process: {answer['error']}")
            return answer

    async def ask(self, message: Any, key: str) -> Any:
        """Send a question (usage, devices) and return ``key`` from the answer."""
        return (await self._call(message, timeout=COMMIT_TIMEOUT))[key]

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        async with self._lock:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("store: the writer process did not end in %.0f s; killing it", STOP_TIMEOUT)
                proc.kill()
                await proc.wait()


# -- the child -------------------------------------------------------------------------


def _read(stream: BinaryIO) -> Any | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None  # the daemon closed the pipe: done
    size = _LENGTH.unpack(head)[0]
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


class _Child:
    """The writer process's side: the StoreWriter, retention, and the messages."""

    def __init__(self, opts: dict[str, Any]) -> None:
        from .retention import Retention
        from .writer import StoreWriter

        self.path = Path(opts["path"])
        self.writer = StoreWriter(self.path, PrivacySettings(mode=opts["mode"]), ZoneInfo(opts["zone"]),
                                  opts["max_waiting"], opts["session_gap"], opts["risk_window"])
        self.retention_class = Retention
        self.retention = self._retention(opts)
        # As the daemon's hourly job did: first an hour after start, give or take 5 minutes.
        self.next_retention = time.monotonic() + RETENTION_SECONDS + random.uniform(-300, 300)
        self.rows: list[tuple[Any, ...]] = []

    def _retention(self, opts: dict[str, Any]) -> Any:
        return self.retention_class(self.path, StoreSettings(**opts["store"]), ZoneInfo(opts["zone"]), opts["mode"])

    def configure(self, opts: dict[str, Any]) -> None:
        zone = ZoneInfo(opts["zone"])
        writer = self.writer
        writer.mode = opts["mode"]
        writer.zone = zone
        writer.risk.zone = zone
        writer.max_waiting = opts["max_waiting"]
        self.retention.close()
        self.retention = self._retention(opts)

    def commit(self, side: list[tuple[Any, ...]]) -> None:
        records, self.rows = [QueryRecord(*row) for row in self.rows], []
        try:
            self.writer.process(records, side)
        except Exception:  # noqa: BLE001 - the writer must outlive any bug in one batch
            log.exception("store: a batch failed")
        if time.monotonic() >= self.next_retention:
            self.next_retention = time.monotonic() + RETENTION_SECONDS
            try:
                self.retention.run_once()
            except Exception:  # noqa: BLE001 - pruning fails this hour; the log keeps being written
                log.exception("store: retention failed")

    def answer(self, message: Any) -> dict[str, Any]:
        """Act on one message that wants an answer; the answer (the writer's counters and more)."""
        kind = message[0]
        if kind == "hello":
            self.writer.open()
        elif kind == "usage":
            return {"counters": self.writer.counters(), "usage": self.writer.usage_on(message[1])}
        elif kind in ("devices-load", "devices-save"):
            from ..discovery.persist import read_rows, save_rows

            if not self.writer.open() or self.writer.db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            engine = self.writer.db.engine
            if kind == "devices-load":
                return {"counters": self.writer.counters(), "devices": read_rows(engine)}
            return {"counters": self.writer.counters(), "ids": save_rows(engine, message[1])}
        if kind == "commit":
            self.commit(message[1])
        elif kind == "settings":
            self.configure(message[1])
        elif kind == "retention":
            self.next_retention = 0.0
            self.commit([])
        return {"counters": self.writer.counters()}

    def close(self) -> None:
        if self.rows:  # the daemon died between two commits: keep what it had shipped
            self.commit([])
        self.retention.close()
        self.writer.close()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lower_priority()
    stdin = sys.stdin.buffer
    # The answers get their own descriptor; fd 1 becomes stderr, so a stray print (or a
    # library writing to stdout) goes to the log instead of corrupting the pipe.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    hello = _read(stdin)
    if hello is None or hello[0] != "hello":
        return 2
    opts = hello[1]
    logging.basicConfig(level=opts["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    child = _Child(opts)
    message: Any = hello
    try:
        while message is not None:
            if message[0] == "add":
                child.rows.extend(message[1])  # no answer: the daemon does not wait for these
            else:
                try:
                    answer = child.answer(message)
                except Exception as exc:  # noqa: BLE001 - one failed question is an error answer, not the end
                    log.exception("store: %s failed", message[0])
                    answer = {"counters": child.writer.counters(), "error": f"{type(exc).__name__}: {exc}"}
                stdout.write(pack(answer))
                stdout.flush()
            message = _read(stdin)
    except BrokenPipeError:
        pass  # the daemon is gone; what was committed stays
    finally:
        child.close()
    return 0
