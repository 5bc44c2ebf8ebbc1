"""Builds and wires every part of Guardian; the only module that knows them all."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import audit, sdnotify, status
from .config import Settings
from .control import SOCKET_NAME, ControlServer
from .control_web import dashboard_actions
from .discovery import Discovery
from .discovery.persist import RemotePersist
from .dns.cache import Cache
from .dns.chain import Answer, Next, Query, Step, build_chain
from .dns.rebind import Rebind
from .dns.server import DnsServer, ServerStats
from .dns.steps.cache import CacheStep
from .dns.steps.forward import Forward
from .dns.steps.guard import Guard, GuardStats
from .dns.steps.local import LocalNames
from .dns.steps.policy import DeviceHint, Identify, Policy
from .dns.steps.record import Record, Sink
from .dns.upstreams.base import Upstream, UpstreamStats
from .dns.upstreams.factory import make_upstream
from .dns.upstreams.pool import UpstreamPool, resolve_via
from .errors import ConfigError, GuardianError
from .household.service import HouseholdService
from .household.storage import HOUSEHOLD_DB, HouseholdStore, load_household, seed_digest
from .lists.service import ListService, subscriptions_for
from .lists.subscriptions import Subscription
from .policy.household import household_from_config
from .policy.matcher import Matcher
from .policy.rulepacks import Rules, load_rules
from .policy.snapshot import (
    MeterBudgets,
    PolicyHolder,
    build_from_rules,
    with_zone,
)
from .store import Recorder
from .usage import UsageMeter, local_day

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """The query chain's counters since start, outliving the chains a reload replaces."""

    guard: GuardStats = field(default_factory=GuardStats)
    server: ServerStats = field(default_factory=ServerStats)  # new listeners keep counting here
    upstreams: dict[str, UpstreamStats] = field(default_factory=dict)  # by URL


@dataclass
class Pipeline:
    """One generation of the query chain, built from one version of the settings."""

    guard: Guard
    local: LocalNames
    cache_step: CacheStep
    forward: Forward
    pool: UpstreamPool
    handler: Next


def build_pipeline(settings: Settings, cache: Cache, recorder: Sink, policy: PolicyHolder,
                   observe: Any = None, clock: Callable[[], float] = time.time,
                   hint: DeviceHint | None = None, services: Collection[str] = (),
                   stats: Counters | None = None) -> Pipeline:
    """The query chain for ``settings``; its counters go to ``stats`` (the daemon's, kept
    across reloads) when given."""
    dns = settings.dns
    plain: list[Upstream] = [make_upstream(s) for s in dns.plain_resolvers]

    async def resolve_host(name: str) -> str:
        return await resolve_via(plain, name)

    upstreams = [make_upstream(spec, dns.tls_ca_file, resolve_host if plain else None) for spec in dns.upstreams]
    stats = stats or Counters()
    for upstream in upstreams:  # the same URL after a reload: its counters carry on
        upstream.stats = stats.upstreams.setdefault(upstream.name, upstream.stats)
    pool = UpstreamPool(upstreams, timeout=dns.upstream_timeout, deadline=max(2.5, dns.upstream_timeout * 1.5))
    pool.on_event = getattr(recorder, "system_event", None)
    guard = Guard(dns.allow_clients, dns.rate_limit, stats.guard)
    local = LocalNames(list(dns.local_names), list(dns.local_addresses))
    cache_step = CacheStep(cache, pool)
    forward = Forward(pool, dns.max_inflight)
    steps: list[Step] = [
        guard,  # first: refuse strangers and floods before any work is spent on them
        Identify(policy, hint=hint),  # which device, which profile: the log and the policy need both
        Record(recorder, clock, services),  # above policy, so blocked answers are logged with their reason
        local,  # the box's own name never leaves the house
        Policy(policy, local, observe, clock, filtered_max_ttl=dns.filtered_max_ttl),  # the parent's rules
        cache_step,  # below policy (once it lands), so a parent's change applies at once
        Rebind(dns.rebind_allow, dns.local_names, policy),  # above the network: the cache keeps screened answers
        forward,  # last: the network
    ]
    return Pipeline(guard, local, cache_step, forward, pool, build_chain(steps))


def _server_limits(settings: Settings) -> dict[str, Any]:
    dns = settings.dns
    return {"tcp_idle": dns.tcp_idle_seconds, "tcp_max_connections": dns.tcp_max_connections,
            "tcp_message": dns.tcp_message_seconds, "tcp_max_per_client": dns.tcp_max_per_client}


def configure_cache(cache: Cache, settings: Settings) -> None:
    dns = settings.dns
    cache.size = dns.cache_size
    cache.min_ttl = dns.min_ttl
    cache.max_ttl = dns.max_ttl
    cache.max_negative_ttl = dns.negative_ttl
    cache.stale_seconds = dns.serve_stale


class Guardian:
    """The running daemon: DNS server, store, policy, the parents' control socket.

    ``clock`` (epoch seconds) is what the policy calls "now": schedules, overrides and
    budgets read it, so tests can drive them with a fake clock through real queries.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.server: DnsServer | None = None
        self.discovery: Discovery | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.control: ControlServer | None = None
        self.scheduler: Any = None
        self.watchdog: sdnotify.Watchdog | None = None
        self.started = time.monotonic()
        self.cache = Cache()
        configure_cache(self.cache, settings)
        self.rules = load_rules()
        seed = household_of(settings, self.rules)  # checked even when the stored household wins
        private_data_dir(settings.data_dir)
        store = HouseholdStore(settings.data_dir / HOUSEHOLD_DB)
        categories, services = self.rules.categories, self.rules.services
        loaded = load_household(store, seed, seed_digest(settings.household), clock(), categories=categories,
                                services=services)
        subscriptions = subscriptions_for(settings, self.rules, loaded.household)
        # The session gap is the household's in force (the stored one once a parent changed
        # it), for both meters: the writer's (stored usage) and the DNS side's (budgets).
        gap = loaded.household.session_gap_minutes
        # The query log is written by a child process: see store/process.py for why.
        self.recorder = Recorder.from_settings(settings, session_gap=gap, process=True)
        self.meter = UsageMeter(gap)
        self.policy = PolicyHolder(build_from_rules(loaded.household, Matcher.empty(), self.rules,
                                                    zone=settings.zone, overrides=loaded.overrides,
                                                    budgets=MeterBudgets(self.meter, settings.zone)))
        # Load, recompile and swap of the block lists, and their refresh jobs.
        self.lists = ListService(settings, self.rules, subscriptions, self.policy, self.recorder,
                                 on_swap=self._invalidate)
        self.household = HouseholdService(self.policy, store, self.meter, zone=settings.zone, clock=clock,
                                          origin=loaded.origin, seed=loaded.seed,
                                          templates=self.rules.template_profiles(), categories=categories,
                                          services=services, on_change=self._changed)
        for problem in loaded.problems:  # a damaged household.db set aside: the parents must know
            self.recorder.system_event("household", problem, "high")
        if loaded.save_error:  # kept until guardian.db takes writes again (it is on the same card)
            self.recorder.system_event("storage", loaded.save_error, "high")
        self.counters = Counters()  # since start: every generation of the chain counts here
        self.pipeline = build_pipeline(settings, self.cache, self.recorder, self.policy, self._observe, clock,
                                       self._device_hint, self.rules.services, self.counters)

    def _changed(self) -> None:
        """A parent's action (or an expiry) built a new snapshot: no reuse of old answers.

        May run in a worker thread. When the household now turns on a category whose
        public lists are not subscribed yet (an import, say), subscribe on the loop.
        """
        if self.server is not None:
            self.server.invalidate()
        gap = self.policy.current.household.session_gap_minutes  # an import may change it
        if gap != self.meter.session_gap:
            self.meter.session_gap = gap
            self.recorder.set_session_gap(gap)
        self.lists.household_changed()

    @property
    def subscriptions(self) -> list[Subscription]:
        """The lists the daemon downloads (the lists service's)."""
        return self.lists.subscriptions

    def _invalidate(self) -> None:
        if self.server is not None:
            self.server.invalidate()

    def _server_for(self, settings: Settings) -> DnsServer:
        server = DnsServer(self._handle, list(settings.dns.listen), **_server_limits(settings),
                           client_allowed=lambda client: self.pipeline.guard.allowed(client))
        server.stats = self.counters.server
        server.admit = self._admit
        return server

    def _admit(self, client: str, now: float) -> bool:
        guard = self.pipeline.guard
        return guard.per_second <= 0 or guard.take(client, now)

    def _handle(self, query: Query) -> Answer:
        # One indirection so a reload swaps the whole chain with one assignment.
        return self.pipeline.handler(query)

    async def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.loop = asyncio.get_running_loop()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.lists.load()
        await self.recorder.start()
        # After the recorder: it creates and migrates the database the registry lives in.
        self.discovery = self._discovery_for(self.settings)
        await self.discovery.start()
        self.scheduler = AsyncIOScheduler(timezone=self.settings.zone)
        # Ended overrides act no more (decide compares them with now); this drops them
        # from the snapshot and the file, and forgets the usage of days gone by.
        self.scheduler.add_job(self._expire, "interval", seconds=30, id="overrides-expiry")
        # The opt-in anonymous weekly file (guardian/anonstats.py), once a week has ended.
        self.scheduler.add_job(self._anonymous_stats, "interval", hours=1, id="anonymous-stats",
                               next_run_time=datetime.now(self.settings.zone) + timedelta(seconds=60))
        self.lists.start(self.scheduler)
        self.scheduler.start()
        await self._load_usage()
        self.server = self._server_for(self.settings)
        self.control = ControlServer(self.household, self.settings.data_dir / SOCKET_NAME,
                                     {"refresh-lists": self.lists.refresh_now, "status": self._status,
                                      **dashboard_actions(self)})
        started = False
        try:
            await self.server.start()
            started = True
            await self._start_control()
            # systemd (Type=notify): up once the listeners answer; the watchdog is fed
            # from this loop, so a hung loop gets the service restarted.
            self.watchdog = sdnotify.ready(self.loop, f"answering on {len(self.server.bound)} sockets")
        except BaseException:
            if started:
                await self.server.stop()
            self.control = None
            await self.discovery.stop()
            await self.recorder.stop()
            self.scheduler.shutdown(wait=False)
            raise

    async def _start_control(self) -> None:
        """The control socket; on a read-only data_dir DNS runs without it (and says so)."""
        assert self.control is not None
        try:
            await self.control.start()
        except (GuardianError, OSError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if not isinstance(cause, OSError) or cause.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
                raise
            log.error("%s: DNS runs on, but 'guardian status' and the parents' commands cannot reach it", exc)
            self.recorder.system_event("storage", f"the control socket cannot be created: {exc}", "high")
            self.control = None

    def _discovery_for(self, settings: Settings) -> Discovery:
        persist = RemotePersist(self.recorder.remote) if self.recorder.remote is not None else None
        return Discovery.from_settings(settings, on_new_device=self.recorder.new_device, on_bypass=self._bypass_seen,
                                       identify=self._identify_device, persist=persist)

    async def _restart_discovery(self, settings: Settings) -> None:
        """New discovery settings (interfaces, capture, sweeps) or privacy mode: the old
        service saves its registry and stops; the new one loads it back (in anonymous mode:
        takes it over in memory) and starts its sources."""
        old = self.discovery
        if old is not None:
            await old.stop()
        self.discovery = self._discovery_for(settings)
        if old is not None and not self.discovery.remember:
            self.discovery.registry = old.registry  # nothing to load from the store: keep what is known
        await self.discovery.start()

    def _device_hint(self, ip: str) -> tuple[str | None, str | None]:
        """(MAC, hostname) that discovery knows for ``ip`` (IPv6 and DHCP names included)."""
        discovery = self.discovery
        if discovery is None:
            return None, None
        device = discovery.registry.by_ip.get(ip)
        return (device.mac, device.hostname) if device is not None else (None, None)

    def _identify_device(self, ip: str | None, mac: str | None, hostname: str | None) -> tuple[str | None, str]:
        device, profile = self.policy.current.resolve(ip or "", mac, hostname)
        return (device.name if device is not None else None), profile.name

    def _bypass_seen(self, mac: str, ip: str, detail: str) -> None:
        """A device talked to another resolver directly: a bypass risk event (not a query)."""
        name, profile = self._identify_device(ip, mac, None)
        self.recorder.bypass_seen(mac, ip, name, profile, detail, self.clock())

    async def _anonymous_stats(self) -> None:
        from . import anonstats

        templates = {p.name: p.template for p in self.policy.current.household.profiles}
        try:
            written = await asyncio.to_thread(anonstats.write_due, self.settings, templates, time.time())
        except (OSError, sqlite3.Error) as exc:
            log.warning("anonymous statistics: cannot write the weekly file: %s", exc)
            return
        for path in written:
            log.info("anonymous statistics: wrote %s", path.name)

    async def _expire(self) -> None:
        await asyncio.to_thread(self.household.expire)
        # On the loop: the Policy step feeds the meter from this thread.
        self.meter.forget_before(local_day(self.clock(), self.settings.zone) - timedelta(days=1))

    async def _load_usage(self) -> None:
        """Today's usage so far from the store, so a restart does not refill budgets."""
        today = local_day(self.clock(), self.settings.zone)
        for (profile, target), minutes in (await self.recorder.usage_on(today.isoformat())).items():
            self.meter.load(profile, target, today, minutes)

    def _observe(self, profile: str, target: str, epoch: float) -> None:
        self.meter.observe(profile, target, epoch, self.settings.zone)

    async def _status(self, _payload: dict[str, Any]) -> dict[str, Any]:
        """``guardian status``: what the daemon is doing, for an operator (JSON-ready)."""
        data = self.status()
        return {"ok": True, "message": status.text(data), "data": data}

    def status(self) -> dict[str, Any]:
        """Counters since start: DNS, upstreams, cache, guard, store, lists, devices, memory."""
        return status.collect(self)

    async def reload(self, settings: Settings) -> None:
        """Apply new settings without dropping queries: build, then swap references.

        What can fail (the seed household, binding new listeners) is done first, so a
        failed reload (GuardianError) leaves the daemon exactly as it was.
        """
        seed = household_of(settings, self.rules)  # ConfigError: FILE:LINE problems
        new_server = None
        if settings.dns.listen != self.settings.dns.listen:
            new_server = self._server_for(settings)
            await new_server.start()  # raises, keeping the old listeners, if it cannot bind
        old = self.pipeline
        configure_cache(self.cache, settings)
        self.recorder.apply(settings)  # retention too: it runs in the store's writer process
        # The config's household only seeds: it replaces ours only while no parent changed it.
        if self.household.reseed(seed, seed_digest(settings.household)):  # the operator's change: audited too
            where = settings.path.name if settings.path is not None else "configuration"
            await asyncio.to_thread(audit.record, settings.data_dir, {"action": "reseed", "actor": f"config {where}"},
                                    None)
        self.pipeline = build_pipeline(settings, self.cache, self.recorder, self.policy, self._observe, self.clock,
                                       self._device_hint, self.rules.services, self.counters)
        if (settings.dns.upstreams, settings.dns.rebind_allow) != (self.settings.dns.upstreams, self.settings.dns.rebind_allow):
            self.cache.clear()  # the cache holds answers as these upstreams gave and rebinding screened them
        if new_server is not None:
            old_server, self.server = self.server, new_server
            if old_server is not None:
                await old_server.stop()
        if self.server is not None:
            self.server.apply(**_server_limits(settings))
        if settings.zone != self.settings.zone:
            zone = settings.zone
            self.policy.update(lambda snap: with_zone(snap, zone, MeterBudgets(self.meter, zone)))
            self.household.zone = zone
        if settings.discovery != self.settings.discovery or settings.privacy.mode != self.settings.privacy.mode:
            await self._restart_discovery(settings)
        self.settings = settings
        if self.server is not None:
            self.server.invalidate()
        await self.lists.apply(settings)  # new subscriptions; a recompile when the lists changed
        await asyncio.sleep(self.settings.dns.upstream_timeout * 3)  # let queries on the old chain finish
        await old.pool.close()

    async def stop(self) -> None:
        sdnotify.stopping(self.watchdog)
        self.watchdog = None
        if self.control is not None:
            await self.control.stop()
        if self.server is not None:
            await self.server.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.discovery is not None:
            await self.discovery.stop()
        await self.recorder.stop()
        await self.pipeline.pool.close()


DATA_UMASK = 0o027  # files 0640, directories 0750: the query log is the household's browsing history


def private_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` (0750) and keep what the daemon writes from other users: sets the
    process's umask to ``DATA_UMASK`` and takes group-write and every "other" bit off
    what an older Guardian left there (0755 / 0644). A read-only card is left as it is."""
    os.umask(DATA_UMASK)
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    for root, dirs, files in os.walk(data_dir):
        for name in [".", *dirs, *files]:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & DATA_UMASK:
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~DATA_UMASK)
            except OSError:
                pass  # read-only, or gone meanwhile: nothing to do about it here


def household_of(settings: Settings, rules: Rules) -> Any:
    """The household from the config (templates from the rule packs); problems as FILE:LINE."""
    household, problems = household_from_config(
        settings.household, rules.template_profiles(), categories=rules.categories, services=rules.services
    )
    if problems:
        where = f"{settings.path or '<config>'}:{settings.household_line}"
        raise ConfigError([f"{where}: {problem}" for problem in problems])
    return household
