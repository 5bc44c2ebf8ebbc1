"""The lists service: loads the compiled snapshot, recompiles when a list changes, swaps
the new matcher into the live policy, and keeps the refresh and watch jobs in step with
the subscriptions. app.py builds one and calls it; DNS never waits on any of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..config import Settings
from ..errors import GuardianError
from ..policy.household import Household
from ..policy.matcher import ListSource, Matcher, SnapshotError
from ..policy.rulepacks import Rules
from ..policy.snapshot import PolicyHolder, service_sources, with_matcher
from .compile import compile_in_background
from .subscriptions import (
    SERVICE_FIRST_ID,
    ListSet,
    ProcessDownloader,
    Refresher,
    Subscription,
    collect_subscriptions,
    local_list_sources,
    schedule_path_watch,
    schedule_refreshes,
)

log = logging.getLogger(__name__)

STAMP = "sources.stamp"  # beside the snapshot: the fingerprint of the files it was compiled from


class SystemEvents(Protocol):
    """Where a problem for the parents goes (the store's Recorder)."""

    def system_event(self, kind: str, message: str, severity: str = "high", at: float | None = None) -> None: ...


def subscriptions_for(settings: Settings, rules: Rules, household: Household) -> list[Subscription]:
    """Lists to download: the config's url: lists, and (unless ``pack_lists: false``) the
    rule packs' public lists of the categories some profile of the household turns on
    (nothing else is fetched)."""
    enabled = {c for p in household.profiles for c in p.categories} if settings.pack_lists else set()
    return collect_subscriptions(settings.lists, rules.categories.values(), fetch=enabled)


class ListService:
    """Owns the lists' lifecycle in the daemon: load, recompile, swap, refresh jobs.

    The compiled snapshot lives under ``data_dir/lists``; a matcher that compiled is
    swapped into ``policy`` with one reference, then ``on_swap`` runs (the daemon drops
    its answer cache there). A failed compile keeps the matcher in use and tells the
    parents through ``events``.
    """

    def __init__(self, settings: Settings, rules: Rules, subscriptions: list[Subscription], policy: PolicyHolder,
                 events: SystemEvents, *, on_swap: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.subscriptions = subscriptions
        self.policy = policy
        self.events = events
        self.on_swap = on_swap
        self.list_set: ListSet | None = None  # what the matcher in use was compiled from
        self.refresher: Refresher | None = None
        self.scheduler: Any = None  # an APScheduler AsyncIOScheduler, from start()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _list_set(self) -> ListSet:
        settings = self.settings
        return local_list_sources(self.rules.categories.values(), settings.lists, self.subscriptions,
                                  settings.data_dir / "lists" / "downloads",
                                  base_dir=settings.path.parent if settings.path else None)

    def _current_list_set(self) -> ListSet:
        return self.list_set if self.list_set is not None else self._list_set()

    def _sources(self, list_set: ListSet) -> list[ListSource]:
        return [*list_set.sources, *service_sources(self.rules.services.values(), SERVICE_FIRST_ID)]

    async def load(self) -> None:
        """Serve from the compiled snapshot on disk; compile it first if it is missing or stale.

        Compiling runs in a thread, or a child process for big lists: DNS keeps answering
        with the rules it has, and never waits for a download (those come later, from the
        refresh jobs).
        """
        self._loop = asyncio.get_running_loop()
        root = self.settings.data_dir / "lists"
        list_set = await asyncio.to_thread(self._list_set)
        marker = root / STAMP
        try:
            if marker.read_text() != list_set.fingerprint:
                raise SnapshotError("lists changed")
            matcher = Matcher.load(root)
        except (OSError, SnapshotError):
            matcher = await self._compile(list_set)
        self.list_set = list_set
        self._use(matcher)

    async def recompile(self) -> None:
        """A list changed (download, edited file): compile anew and swap the matcher in."""
        await self._recompile(await asyncio.to_thread(self._list_set))

    async def _recompile(self, list_set: ListSet) -> None:
        try:
            matcher = await self._compile(list_set)
        except GuardianError as exc:
            log.error("compiling the lists failed, keeping the current ones: %s", exc)
            self.events.system_event("lists", f"compiling the lists failed: {exc}")
            return
        self.list_set = list_set
        self._use(matcher)
        log.info("lists recompiled: %d lists", len(matcher.lists))

    async def _compile(self, list_set: ListSet) -> Matcher:
        root = self.settings.data_dir / "lists"
        await compile_in_background(self._sources(list_set), root)
        (root / STAMP).write_text(list_set.fingerprint)
        return Matcher.load(root)

    def _use(self, matcher: Matcher) -> None:
        self.policy.update(lambda snap: with_matcher(snap, matcher))
        if self.on_swap is not None:
            self.on_swap()

    def start(self, scheduler: Any) -> None:
        """Add the refresh and file-watch jobs to ``scheduler`` (started by the caller)."""
        self.scheduler = scheduler
        self._schedule()

    def _schedule(self) -> None:
        settings = self.settings
        # The list hosts are resolved through the upstreams, never through Guardian's own
        # filtering: a blocked list host must not leave the box without rules. Each
        # download runs in a child process (see ProcessDownloader).
        downloader = ProcessDownloader(settings.data_dir / "lists" / "downloads", settings.dns.plain_resolvers,
                                       ca_file=settings.dns.tls_ca_file,
                                       allow_private_hosts=settings.lists_allow_private_hosts)
        self.refresher = schedule_refreshes(self.scheduler, self.subscriptions, downloader, self.recompile)
        schedule_path_watch(self.scheduler, self._current_list_set, self.recompile)

    def resubscribe(self, subs: list[Subscription]) -> None:
        self.subscriptions = subs
        if self.scheduler is not None:
            self._schedule()  # replaces the jobs; missing lists are fetched a minute later

    def household_changed(self) -> None:
        """The household in ``policy`` changed (a parent's action, an import): when it now
        turns on a category whose public lists are not subscribed yet, subscribe on the
        loop. May run in a worker thread."""
        subs = subscriptions_for(self.settings, self.rules, self.policy.current.household)
        if subs != self.subscriptions and self._loop is not None:
            self._loop.call_soon_threadsafe(self.resubscribe, subs)

    async def apply(self, settings: Settings) -> None:
        """New settings (a reload): subscribe to what the config's lists and ``pack_lists``
        now ask for, and compile when the lists to compile are not those in use."""
        self.settings = settings
        subs = subscriptions_for(settings, self.rules, self.policy.current.household)
        if subs != self.subscriptions:  # url: lists or pack_lists changed
            self.resubscribe(subs)
        list_set = await asyncio.to_thread(self._list_set)
        current = self.list_set
        if current is None or (list_set.sources, list_set.watched) != (current.sources, current.watched):
            await self._recompile(list_set)  # a path: list added, moved or gone, a download dropped

    async def refresh_now(self, _payload: dict[str, Any]) -> dict[str, Any]:
        """``guardian lists --refresh`` with the daemon running: download every subscription
        now, as the daemon (its user, its download processes); answer once the lists that
        changed are compiled and in use."""
        if self.refresher is None or not self.refresher.subs:
            return {"ok": True, "message": "no lists to download (no url: lists, no rule-pack lists in use)"}
        statuses = await self.refresher.run()
        lines = [f"{s.name}: {s.outcome}" + (f" ({s.last_error})" if s.last_error else "") for s in statuses]
        return {"ok": True, "message": "\n".join(lines)}
