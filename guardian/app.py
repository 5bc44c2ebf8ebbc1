"""Builds and wires every part of Guardian; the only module that knows them all."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .dns.cache import Cache
from .dns.chain import Answer, Next, Query, Step, build_chain
from .dns.server import DnsServer
from .dns.steps.cache import CacheStep
from .dns.steps.forward import Forward
from .dns.steps.guard import Guard
from .dns.steps.local import LocalNames
from .dns.steps.record import Record, Sink
from .dns.upstream import Upstream, UpstreamPool, make_upstream, resolve_via
from .store import Recorder
from .store.db import DB_NAME
from .store.retention import Retention

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """One generation of the query chain, built from one version of the settings."""

    guard: Guard
    local: LocalNames
    cache_step: CacheStep
    forward: Forward
    pool: UpstreamPool
    handler: Next


def build_pipeline(settings: Settings, cache: Cache, recorder: Sink) -> Pipeline:
    dns = settings.dns
    plain: list[Upstream] = []
    bootstrap_specs = dns.bootstrap or tuple(s for s in dns.upstreams if s.scheme in ("udp", "tcp"))
    plain = [make_upstream(s) for s in bootstrap_specs]

    async def resolve_host(name: str) -> str:
        return await resolve_via(plain, name)

    upstreams = [make_upstream(spec, dns.tls_ca_file, resolve_host if plain else None) for spec in dns.upstreams]
    pool = UpstreamPool(upstreams, timeout=dns.upstream_timeout, deadline=max(2.5, dns.upstream_timeout * 1.5))
    guard = Guard(dns.allow_clients, dns.rate_limit)
    local = LocalNames(list(dns.local_names), list(dns.local_addresses))
    cache_step = CacheStep(cache, pool)
    forward = Forward(pool, dns.max_inflight)
    steps: list[Step] = [
        guard,  # first: refuse strangers and floods before any work is spent on them
        Record(recorder),  # above policy, so blocked answers are logged with their reason
        local,  # the box's own name never leaves the house
        cache_step,  # below policy (once it lands), so a parent's change applies at once
        forward,  # last: the network
    ]
    return Pipeline(guard, local, cache_step, forward, pool, build_chain(steps))


def configure_cache(cache: Cache, settings: Settings) -> None:
    dns = settings.dns
    cache.size = dns.cache_size
    cache.min_ttl = dns.min_ttl
    cache.max_ttl = dns.max_ttl
    cache.max_negative_ttl = dns.negative_ttl
    cache.stale_seconds = dns.serve_stale


class Guardian:
    """The running daemon: DNS server and, as they land, store, policy, dashboard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = Cache()
        configure_cache(self.cache, settings)
        self.recorder = Recorder.from_settings(settings, session_gap=_session_gap(settings))
        self.pipeline = build_pipeline(settings, self.cache, self.recorder)
        self.server: DnsServer | None = None
        self.scheduler: Any = None
        self.retention: Retention | None = None

    def _server_for(self, settings: Settings) -> DnsServer:
        server = DnsServer(
            self._handle,
            list(settings.dns.listen),
            tcp_idle=settings.dns.tcp_idle_seconds,
            tcp_max_connections=settings.dns.tcp_max_connections,
            client_allowed=lambda client: self.pipeline.guard.allowed(client),
        )
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

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.recorder.start()
        self.retention = self._retention(self.settings)
        self.scheduler = AsyncIOScheduler(timezone=self.settings.zone)
        # A plain function: APScheduler runs it in its thread pool, off the event loop.
        self.scheduler.add_job(self._run_retention, "interval", hours=1, id="store-retention", jitter=300)
        self.scheduler.start()
        self.server = self._server_for(self.settings)
        try:
            await self.server.start()
        except BaseException:
            await self.recorder.stop()
            self.scheduler.shutdown(wait=False)
            raise

    @staticmethod
    def _retention(settings: Settings) -> Retention:
        return Retention(settings.data_dir / DB_NAME, settings.store, settings.zone, settings.privacy.mode)

    def _run_retention(self) -> None:
        if self.retention is not None:
            self.retention.run_once()

    async def reload(self, settings: Settings) -> None:
        """Apply new settings without dropping queries: build, then swap references."""
        old = self.pipeline
        configure_cache(self.cache, settings)
        self.recorder.apply(settings)
        if self.retention is not None:
            self.retention.close()
            self.retention = self._retention(settings)
        self.pipeline = build_pipeline(settings, self.cache, self.recorder)
        if settings.dns.upstreams != self.settings.dns.upstreams:
            self.cache.clear()
        if settings.dns.listen != self.settings.dns.listen:
            new_server = self._server_for(settings)
            await new_server.start()  # raises, keeping the old listeners, if it cannot bind
            old_server, self.server = self.server, new_server
            if old_server is not None:
                await old_server.stop()
        self.settings = settings
        if self.server is not None:
            self.server.invalidate()
        await asyncio.sleep(self.settings.dns.upstream_timeout * 3)  # let queries on the old chain finish
        await old.pool.close()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        await self.recorder.stop()
        if self.retention is not None:
            self.retention.close()
        await self.pipeline.pool.close()


def _session_gap(settings: Settings) -> int:
    return int((settings.household or {}).get("session_gap_minutes", 5))
