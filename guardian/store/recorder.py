"""The recorder: DNS hands it every query without waiting; a writer commits batches.

``Recorder.record`` is an O(1) append to a bounded in-memory list, called on the event
loop for every query; when the list is full the record is dropped and counted
(``dropped``) — DNS never waits on the store. In the daemon the records go to the
writer process (process.py) every 0.1 s and are committed there every
``flush_seconds``; in tests and tools a single worker thread runs the same
``StoreWriter`` (writer.py). Either way the writer derives rollups, usage and risk
events and commits each flush in one transaction, so the event loop never touches the
disk and the SD card sees one commit per interval, not one per query.

This module imports no SQLAlchemy: the DNS process stays without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..config import PrivacySettings, Settings, StoreSettings
from ..verdicts import Outcome
from .child import lower_priority
from .process import FIELDS, SHIP_SECONDS, RemoteWriter, WorkerGone, options
from .records import DB_NAME, QueryRecord

if TYPE_CHECKING:
    from .writer import StoreWriter

log = logging.getLogger(__name__)

# A busy network fills a batch before flush_seconds: commit it then. Under a flood this
# bounds what both processes hold (and what a crash can lose) at a few thousand
# records, instead of every record of the interval up to queue_size.
BATCH_ROWS = 5000
BATCH_CHECK_SECONDS = 0.25  # thread mode: how often the batch size is looked at
TROUBLE_LOG_SECONDS = 60.0  # the writer process's trouble: one log line (and system event) per minute at most
_FIELD_NAMES = [f.name for f in dataclasses.fields(QueryRecord)]
_ACTION, _CATEGORY = _FIELD_NAMES.index("action"), _FIELD_NAMES.index("category")  # places in a row


class Recorder:
    """The store's front: ``record`` on the event loop, batches committed by one worker thread.

    ``start()`` opens the database and runs the flush loop; ``stop()`` flushes what is left.
    ``record`` must be called from the event loop's thread; ``system_event`` and
    ``new_device`` may be called from any thread.
    """

    def __init__(self, path: Path, store: StoreSettings | None = None, privacy: PrivacySettings | None = None,
                 zone: ZoneInfo | None = None, session_gap: int = 5, risk_window: float = 3600.0,
                 process: bool = False) -> None:
        store = store or StoreSettings()
        self.store = store
        self.path = path
        self.flush_seconds = store.flush_seconds
        self.queue_size = store.queue_size
        self.dropped = 0  # records refused because the queue was full
        self.lost = 0  # records the writer process could not take (it died twice)
        self.results: dict[str, int] = {}  # answers by action: allowed, blocked, rewritten, refused, error
        self.blocked: dict[str, int] = {}  # blocked answers by category
        self._settings_changed = False
        self._next_trouble = 0.0  # monotonic: when the writer's trouble may be logged again
        self._quiet_lost = 0  # records lost since the last line about them
        self._room = self.queue_size  # records ``record`` may still queue (less what the child holds unwritten)
        self._pending: list[tuple[Any, ...]] = []  # rows: a QueryRecord's fields in order (FIELDS)
        self._side: list[tuple[Any, ...]] = []
        self._side_lock = threading.Lock()
        self.mode = (privacy or PrivacySettings()).mode
        self.zone = zone or ZoneInfo("UTC")
        self.session_gap = session_gap
        self.risk_window = risk_window
        # process=True (the daemon): the writer runs in a child process (process.py), and
        # this process never imports SQLAlchemy for it. Otherwise (tests, tools) a thread.
        self.remote: RemoteWriter | None = None
        self._writer: Any = None
        if process:
            self.remote = RemoteWriter(self._options())
        else:
            from .writer import StoreWriter

            self._writer = StoreWriter(path, privacy or PrivacySettings(), self.zone, store.queue_size, session_gap,
                                       risk_window)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="guardian-store", initializer=lower_priority)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def writer(self) -> StoreWriter:
        """The in-process writer (thread mode only: tests and tools)."""
        if self._writer is None:
            raise AttributeError("the writer runs in its own process")
        return self._writer  # type: ignore[no-any-return]

    def _options(self) -> dict[str, Any]:
        return options(self.path, PrivacySettings(mode=self.mode), self.zone, self.store, self.session_gap,
                       self.risk_window)

    @classmethod
    def from_settings(cls, settings: Settings, session_gap: int = 5, process: bool = False) -> Recorder:
        return cls(settings.data_dir / DB_NAME, settings.store, settings.privacy, settings.zone, session_gap,
                   process=process)

    def apply(self, settings: Settings) -> None:
        """Take reloaded settings (flush interval, queue size, privacy mode, zone) at once.

        The database path is not changed by a reload; a new ``data_dir`` needs a restart.
        """
        self.store = settings.store
        self.flush_seconds = settings.store.flush_seconds
        self.queue_size = settings.store.queue_size
        self._room = settings.store.queue_size
        self.mode = settings.privacy.mode
        self.zone = settings.zone
        if self.remote is not None:
            self._settings_changed = True  # sent with the next flush, in turn with the batches
        else:
            self.writer.max_waiting = settings.store.queue_size
            self.writer.mode = settings.privacy.mode  # read once per batch by the worker
            self.writer.zone = settings.zone
            self.writer.risk.zone = settings.zone

    def set_session_gap(self, minutes: int) -> None:
        """The household's session gap changed (an import): the writer's meter follows it.
        Any thread; the writer process gets it with the next flush."""
        self.session_gap = minutes
        if self.remote is not None:
            self._settings_changed = True
        else:
            self.writer.meter.session_gap = minutes

    # -- the DNS side: never blocks --------------------------------------------------

    def record(self, rec: QueryRecord) -> None:
        """Queue one query for the log: O(1), no I/O; dropped (and counted) when full."""
        self.record_row(FIELDS(rec))

    def repeat(self, rec: QueryRecord, epoch: float) -> None:
        """Queue ``rec`` again as asked at ``epoch`` (a packet-cache hit): O(1)."""
        self.repeat_row(FIELDS(rec), epoch)

    def record_row(self, row: tuple[Any, ...]) -> None:
        """``record`` for a row: a QueryRecord's fields in order (``FIELDS``), which is what
        the writer process is sent. The record step builds rows: a tuple costs a few
        hundredths of a microsecond, the frozen 19-field QueryRecord several microseconds."""
        self._count(row)
        pending = self._pending
        if len(pending) >= self._room:
            self.dropped += 1
            return
        pending.append(row)

    def repeat_row(self, row: tuple[Any, ...], epoch: float) -> None:
        """``repeat`` for a row (see ``record_row``)."""
        self._count(row)
        pending = self._pending
        if len(pending) >= self._room:
            self.dropped += 1
            return
        pending.append((epoch, *row[1:]))

    def _count(self, row: tuple[Any, ...]) -> None:
        """Answers by result and blocks by category since start (/metrics), kept or not."""
        results = self.results
        action = row[_ACTION]
        results[action] = results.get(action, 0) + 1
        if action == Outcome.BLOCKED:
            key = row[_CATEGORY] or "other"
            self.blocked[key] = self.blocked.get(key, 0) + 1

    def system_event(self, kind: str, message: str, severity: str = "high", at: float | None = None) -> None:
        """A system problem for the parent: ``kind`` like upstream, lists, storage."""
        with self._side_lock:
            if len(self._side) < 1000:
                self._side.append(("system", kind, message, severity, at or time.time()))

    def new_device(self, mac: str | None, ip: str | None, name: str | None = None, profile: str | None = None,
                   detail: str = "", at: float | None = None) -> None:
        """A device joined the network (``detail``: vendor, hostname, ... as text)."""
        with self._side_lock:
            if len(self._side) < 1000:
                self._side.append(("new-device", at or time.time(), mac, ip, name, profile, detail))

    def bypass_seen(self, mac: str | None, ip: str | None, name: str | None, profile: str | None, detail: str,
                    at: float | None = None) -> None:
        """A device seen talking to another resolver (discovery): a bypass risk event, not a
        query (``detail``: "DNS to 192.0.2.53:53")."""
        with self._side_lock:
            if len(self._side) < 1000:
                self._side.append(("bypass", at or time.time(), mac, ip, name, profile, detail))

    # -- the writer task -------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (off the loop) and start flushing every ``flush_seconds``."""
        if self.remote is not None:
            await self.remote.start()
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.writer.open)
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="guardian-store-writer")

    async def run(self) -> None:
        """Flush every ``flush_seconds``, or as soon as ``BATCH_ROWS`` records wait, until ``stop()``
        (to a writer process: ship often)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.flush_seconds
        while not self._stopping.is_set():
            wait = min(due - loop.time(), SHIP_SECONDS if self.remote is not None else BATCH_CHECK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(wait, 0.0))
            if self.remote is not None:
                self._ship()
            if loop.time() < due and not self._stopping.is_set() and self._held() < BATCH_ROWS:
                continue
            due = loop.time() + self.flush_seconds
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any bug in one batch
                log.exception("store: a batch failed")

    def _held(self) -> int:
        """Records taken but not yet committed (in memory here or in the writer process)."""
        return len(self._pending) + (len(self.remote.unacked) if self.remote is not None else 0)

    async def flush(self) -> None:
        """Hand what was recorded so far to the writer and wait for its commit (or failure)."""
        with self._side_lock:
            side, self._side = self._side, []
        if self.remote is not None:
            self._ship()
            hello = None
            if self._settings_changed:
                self._settings_changed = False
                hello = self._options()
            restarts = self.remote.restarts
            try:
                await self.remote.commit(side, hello)
            except WorkerGone as exc:
                lost = len(self.remote.unacked)
                self.remote.unacked.clear()
                self.lost += lost
                self._writer_trouble(f"{exc}; {lost:,} queries were not saved", lost)
                with self._side_lock:  # kept for the next writer, which records the events
                    self._side[:0] = side[-1000:]
            else:
                if self.remote.restarts != restarts:
                    self._writer_trouble("the store's writer process ended and was started again; "
                                         "no queries were lost", 0)
            self._room = self.queue_size
            return
        records, self._pending = self._pending, []
        job = asyncio.get_running_loop().run_in_executor(self._executor, self._process, records, side)
        # Shielded: cancelling the caller must not cancel a queued job, which would lose the batch.
        await asyncio.shield(job)

    def _writer_trouble(self, message: str, lost: int) -> None:
        """The writer process ended or failed: one log line and one storage system event a
        minute at most (a dead writer is met at every flush, up to 50 a second)."""
        self._quiet_lost += lost
        now = time.monotonic()
        if now < self._next_trouble:
            return
        self._next_trouble = now + TROUBLE_LOG_SECONDS
        total, self._quiet_lost = self._quiet_lost, 0
        if total:
            log.error("store: %s (%s lost since the last report, %s since start)", message, f"{total:,}",
                      f"{self.lost:,}")
            self.system_event("storage", "the store's writer process ended: some queries were not saved "
                              "('guardian status' counts them as lost)", "high")
        else:
            log.error("store: %s", message)
            self.system_event("storage", message, "medium")

    async def run_retention(self) -> None:
        """Apply the retention rules now (the writer process also does it every hour)."""
        if self.remote is not None:
            await self.remote.ask(("retention",), "counters")
            return
        from .retention import Retention

        retention = Retention(self.path, self.store, self.zone, self.mode)
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, retention.run_once)
        finally:
            retention.close()

    async def usage_on(self, day: str) -> dict[tuple[str, str], int]:
        """Minutes per (profile, target) stored for ``day``, so a restart does not refill budgets."""
        if self.remote is not None:
            try:
                return dict(await self.remote.ask(("usage", day), "usage"))
            except WorkerGone as exc:
                log.warning("today's usage could not be read from the store: %s", exc)
                return {}
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.writer.usage_on, day)

    async def set_event_state(self, state: str, event_id: int | None = None) -> int:
        """Mark one risk event (or every new one) seen or dismissed, by the one process that
        writes guardian.db (the dashboard's "mark seen", through the control socket)."""
        if self.remote is not None:
            return int(await self.remote.ask(("events-state", state, event_id), "changed"))
        from .child import StoreUnavailable, set_event_state

        def change() -> int:
            db = self.writer.db if self.writer.open() else None
            if db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            return set_event_state(db.engine, state, event_id)

        return await asyncio.get_running_loop().run_in_executor(self._executor, change)

    async def rename(self, kind: str, old: str, new: str) -> int:
        """A parent renamed a profile or device: its stored history goes with it (written
        by the one process that writes guardian.db). How many stored rows changed."""
        await self.flush()  # records made under the old name are written under it first
        if self.remote is not None:
            return int(await self.remote.ask(("rename", kind, old, new), "changed"))
        from .child import StoreUnavailable
        from .rename import rename

        def change() -> int:
            if not self.writer.open() or self.writer.db is None:
                raise StoreUnavailable(self.writer.last_error or "the database cannot be opened")
            return rename(self.writer, kind, old, new)

        return await asyncio.get_running_loop().run_in_executor(self._executor, change)

    def _ship(self) -> None:
        """Send what was recorded since the last ship to the writer process (no wait)."""
        records, self._pending = self._pending, []
        if not records or self.remote is None:
            return
        # Plain tuples pickle in C: a few hundred records cost well under a millisecond.
        self.remote.add(records)
        # Shipped is not written: until the next commit, what the child holds counts against the queue.
        self._room = max(self.queue_size - len(self.remote.unacked), 0)

    def _process(self, records: list[tuple[Any, ...]], side: list[Any]) -> None:
        self.writer.process([QueryRecord(*r) for r in records], side)

    async def stop(self) -> None:
        """Stop the flush loop, write what is left, close the database."""
        if self._task is not None:
            self._stopping.set()
            await self._task  # its last flush included
            self._task = None
        await self.flush()
        if self.remote is not None:
            await self.remote.stop()
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        """Counters for health/metrics (records unless named otherwise)."""
        writer = self.remote.totals() if self.remote is not None else self.writer.counters()
        return {"queued": len(self._pending), "dropped": self.dropped, "lost": self.lost, **writer,
                "results": dict(self.results), "blocked_by_category": dict(self.blocked)}
