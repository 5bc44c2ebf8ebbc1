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
- child -> parent: the writer's counters (a dict) after hello, commit and settings.

The child ignores SIGINT and SIGTERM (systemd sends SIGTERM to the whole unit): the
daemon ends it by closing the pipe once the last batch is written; a daemon that dies
closes the pipe too, so the child never outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import struct
import sys
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from ..config import PrivacySettings
from .records import QueryRecord

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_CUMULATIVE = ("written", "commits", "write_errors", "unsaved", "writer_cpu_seconds")
FIELDS = attrgetter(*(f.name for f in fields(QueryRecord)))  # QueryRecord -> tuple, in C
SHIP_SECONDS = 0.1
START_TIMEOUT = 60.0
COMMIT_TIMEOUT = 300.0  # a commit stuck this long means a wedged child: restart it  # opening may migrate or set aside a large database
STOP_TIMEOUT = 30.0


def pack(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def options(path: Path, privacy: PrivacySettings, zone: ZoneInfo, max_waiting: int, session_gap: int,
            risk_window: float) -> dict[str, Any]:
    return {"path": str(path), "mode": privacy.mode, "zone": zone.key, "max_waiting": max_waiting,
            "session_gap": session_gap, "risk_window": risk_window,
            "log_level": logging.getLogger("guardian").getEffectiveLevel()}


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
            self.counters = pickle.loads(body)
            return self.counters

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


def _configure(writer: Any, hello: dict[str, Any]) -> None:
    zone = ZoneInfo(hello["zone"])
    writer.mode = hello["mode"]
    writer.zone = zone
    writer.risk.zone = zone
    writer.max_waiting = hello["max_waiting"]


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .writer import StoreWriter, _lower_priority

    _lower_priority()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hello = _read(stdin)
    if hello is None or hello[0] != "hello":
        return 2
    opts = hello[1]
    logging.basicConfig(level=opts["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = StoreWriter(Path(opts["path"]), PrivacySettings(mode=opts["mode"]), ZoneInfo(opts["zone"]),
                         opts["max_waiting"], opts["session_gap"], opts["risk_window"])
    writer.open()
    try:
        stdout.write(pack(writer.counters()))
        stdout.flush()
        rows: list[tuple[Any, ...]] = []
        while (message := _read(stdin)) is not None:
            if message[0] == "add":
                rows.extend(message[1])
                continue  # no answer: the daemon does not wait for these
            if message[0] == "commit":
                records, rows = [QueryRecord(*row) for row in rows], []
                try:
                    writer.process(records, message[1])
                except Exception:  # noqa: BLE001 - the writer must outlive any bug in one batch
                    log.exception("store: a batch failed")
            elif message[0] == "settings":
                _configure(writer, message[1])
            stdout.write(pack(writer.counters()))
            stdout.flush()
        if rows:  # the daemon died between two commits: keep what it had shipped
            writer.process([QueryRecord(*row) for row in rows], [])
    except BrokenPipeError:
        pass  # the daemon is gone; what was committed stays
    finally:
        writer.close()
    return 0
