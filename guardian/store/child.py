"""The store's writer process: ``python -m guardian.store`` (see process.py for the why).

Reads length-prefixed pickles on stdin, answers on stdout (the wire is described in
process.py). Imports only what writing needs (SQLAlchemy, the store's modules, the
settings), not asyncio's servers or the HTTP stack: it is a second interpreter on a
small box, and every module it loads is memory the household pays for twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import signal
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from ..config import PrivacySettings, StoreSettings
from ..errors import GuardianError

log = logging.getLogger(__name__)

LENGTH = struct.Struct(">I")
RETENTION_SECONDS = 3600.0  # the store's retention rules run this often, in the writer process


def pack(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


class StoreUnavailable(GuardianError):
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


def _read(stream: BinaryIO) -> Any | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None  # the daemon closed the pipe: done
    size = LENGTH.unpack(head)[0]
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
        writer.meter.session_gap = opts["session_gap"]  # the household's, after an import
        self.retention.close()
        self.retention = self._retention(opts)

    def commit(self, side: list[tuple[Any, ...]]) -> None:
        records, self.rows = self.rows, []
        try:
            self.writer.process_rows(records, side)  # the rows as shipped: no QueryRecord per row
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
            from .devices import read_rows, save_rows

            if not self.writer.open() or self.writer.db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            engine = self.writer.db.engine
            if kind == "devices-load":
                return {"counters": self.writer.counters(), "devices": read_rows(engine)}
            return {"counters": self.writer.counters(), "ids": save_rows(engine, message[1])}
        elif kind == "events-state":  # the dashboard's "mark seen": (state, event id or None for all new)
            if not self.writer.open() or self.writer.db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            return {"counters": self.writer.counters(),
                    "changed": set_event_state(self.writer.db.engine, message[1], message[2])}
        elif kind == "rename":  # a parent renamed a profile or device: (kind, old, new)
            from .rename import rename

            if not self.writer.open() or self.writer.db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            self.commit([])  # what was shipped before the rename is written under the old name first
            return {"counters": self.writer.counters(),
                    "changed": rename(self.writer, message[1], message[2], message[3])}
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


EVENT_STATES = ("new", "seen", "dismissed")


def set_event_state(engine: Any, state: str, event_id: int | None) -> int:
    """Set one risk event's state, or every new one's (``event_id`` None); how many changed."""
    if state not in EVENT_STATES:
        raise ValueError(f"state is one of {', '.join(EVENT_STATES)}")
    with engine.begin() as conn:
        if event_id is None:
            cur = conn.exec_driver_sql("UPDATE risk_events SET state = ? WHERE state = 'new'", (state,))
        else:
            cur = conn.exec_driver_sql("UPDATE risk_events SET state = ? WHERE id = ?", (state, int(event_id)))
        return int(cur.rowcount)


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
                except StoreUnavailable as exc:  # the disk's trouble: the writer already said it once
                    answer = {"counters": child.writer.counters(), "error": str(exc)}
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
