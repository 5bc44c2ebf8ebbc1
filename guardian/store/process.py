"""The store's writer in its own process, so the query log never competes with DNS:
the daemon's side (``RemoteWriter``); the child's side is child.py.

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
  ``flush_seconds`` or when a batch is full (side: system and new-device events);
  ``("settings", options)`` after a reload.
- parent -> child, wanting an answer: ``("usage", day)`` (budgets after a restart),
  ``("retention",)`` (now), ``("devices-load",)`` and ``("devices-save", items)`` (the
  device registry).
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
import pickle
import sys
import time
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..config import PrivacySettings, StoreSettings
from .child import LENGTH, StoreUnavailable, pack
from .records import QueryRecord

log = logging.getLogger(__name__)

_CUMULATIVE = ("written", "commits", "write_errors", "unsaved", "writer_cpu_seconds")
FIELDS = attrgetter(*(f.name for f in fields(QueryRecord)))  # QueryRecord -> tuple, in C
SHIP_SECONDS = 0.02
START_TIMEOUT = 60.0
COMMIT_TIMEOUT = 300.0  # a commit stuck this long means a wedged child: restart it (opening may migrate a big file)
STOP_TIMEOUT = 30.0
RESTART_BACKOFF = (1.0, 60.0)  # a writer that cannot be started again is tried after 1 s, 2 s, 4 s ... 60 s
# Every form a dead child's pipe takes: EPIPE/ECONNRESET (OSError), a short read, no answer
# in time, and uvloop's RuntimeError("unable to perform operation on <WriteUnixTransport
# closed=True ...>; the handler is closed"), where the stdlib loop raises nothing at all.
PIPE_GONE = (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError, EOFError)


def options(path: Path, privacy: PrivacySettings, zone: ZoneInfo, store: StoreSettings, session_gap: int,
            risk_window: float) -> dict[str, Any]:
    return {"path": str(path), "mode": privacy.mode, "zone": zone.key, "max_waiting": store.queue_size,
            "store": dataclasses.asdict(store), "session_gap": session_gap, "risk_window": risk_window,
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
        self.restarts = 0  # writer processes started again after one ended or stopped answering
        self.alive = False  # False from the moment its pipe fails until a new one answers its hello
        self._before: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._backoff = RESTART_BACKOFF[0]
        self._next_start = 0.0  # monotonic: no new writer before this (it failed to start)

    def totals(self) -> dict[str, Any]:
        """The counters of every writer process so far (a restarted child counts from zero)."""
        out = dict(self.counters)
        for key, value in self._before.items():
            out[key] = out.get(key, 0) + value
        out["writer_restarts"] = self.restarts
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
        self.alive = True

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Ship rows to the child now (no wait); they are written by the next ``commit``
        (a dead child's rows are kept and shipped to the next one)."""
        self.unacked.extend(rows)
        if self.alive:
            self._send(("add", rows))

    def _send(self, message: Any) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing() or proc.returncode is not None:
            self.alive = False
            return
        try:
            proc.stdin.write(pack(message))
        except PIPE_GONE:
            self.alive = False  # the next commit finds out, and starts a new writer

    async def _restart(self, why: str) -> None:
        """A new writer process for the one that ended, given every row not yet committed;
        WorkerGone while a failed start waits out its back-off."""
        await self.stop()
        now = time.monotonic()
        if now < self._next_start:
            raise WorkerGone(f"{why}; the next try to start it is in {self._next_start - now:.0f} s")
        self.restarts += 1
        try:
            await self.start()
        except (WorkerGone, OSError) as exc:
            await self.stop()
            self._next_start = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, RESTART_BACKOFF[1])
            raise WorkerGone(f"{why}; starting it again failed: {exc}") from exc
        self._backoff = RESTART_BACKOFF[0]
        if self.unacked:
            self._send(("add", self.unacked))

    async def commit(self, side: list[tuple[Any, ...]], hello: dict[str, Any] | None = None) -> None:
        """Write what was shipped (and ``side`` events); a dead child is replaced (once per
        commit, then with a back-off) and given the rows it had not committed."""
        if hello is not None:
            self.hello = hello
        for attempt in (1, 2):
            try:
                if not self.alive:
                    await self._restart("the store's writer process ended")
                if hello is not None:
                    await self._call(("settings", hello))
                await self._call(("commit", side), timeout=COMMIT_TIMEOUT)
                self.unacked.clear()
                return
            except WorkerGone:
                self.alive = False
                if attempt == 2:
                    raise

    async def _call(self, message: Any, timeout: float | None = None) -> dict[str, Any]:
        async with self._lock:
            proc = self.proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise WorkerGone("the store's writer process is not running")
            if proc.returncode is not None or proc.stdin.is_closing():
                self.alive = False
                raise WorkerGone(f"the store's writer process ended (exit status {proc.returncode})")
            try:
                proc.stdin.write(pack(message))
                await proc.stdin.drain()
                head = await asyncio.wait_for(proc.stdout.readexactly(LENGTH.size), timeout)
                body = await asyncio.wait_for(proc.stdout.readexactly(LENGTH.unpack(head)[0]), timeout)
            except PIPE_GONE as exc:
                self.alive = False
                raise WorkerGone(f"the store's writer process ended or stopped answering ({exc!r})") from exc
            answer: dict[str, Any] = pickle.loads(body)
            self.counters = answer["counters"]
            if "error" in answer:
                raise StoreUnavailable(f"the store's writer process: {answer['error']}")
            return answer

    async def ask(self, message: Any, key: str) -> Any:
        """Send a question (usage, devices) and return ``key`` from the answer."""
        if not self.alive and self.proc is not None:
            await self._restart("the store's writer process ended")
        return (await self._call(message, timeout=COMMIT_TIMEOUT))[key]

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        self.alive = False
        if proc is None:
            return
        async with self._lock:
            if proc.stdin is not None:
                with contextlib.suppress(*PIPE_GONE):
                    proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("store: the writer process did not end in %.0f s; killing it", STOP_TIMEOUT)
                proc.kill()
                await proc.wait()
