"""Builds and wires every part of Guardian; the only module that knows them all."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .config import Settings
from .dns.cache import Cache
from .dns.chain import Answer, Next, Query, Step, build_chain
from .dns.server import DnsServer
from .dns.steps.cache import CacheStep
from .dns.steps.forward import Forward
from .dns.steps.guard import Guard
from .dns.steps.local import LocalNames
from .dns.upstream import Upstream, UpstreamPool, make_upstream, resolve_via

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


def build_pipeline(settings: Settings, cache: Cache) -> Pipeline:
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
        self.pipeline = build_pipeline(settings, self.cache)
        self.server: DnsServer | None = None

    def _server_for(self, settings: Settings) -> DnsServer:
        return DnsServer(
            self._handle,
            list(settings.dns.listen),
            tcp_idle=settings.dns.tcp_idle_seconds,
            tcp_max_connections=settings.dns.tcp_max_connections,
            client_allowed=lambda client: self.pipeline.guard.allowed(client),
        )

    def _handle(self, query: Query) -> Answer:
        # One indirection so a reload swaps the whole chain with one assignment.
        return self.pipeline.handler(query)

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = self._server_for(self.settings)
        await self.server.start()

    async def reload(self, settings: Settings) -> None:
        """Apply new settings without dropping queries: build, then swap references."""
        old = self.pipeline
        configure_cache(self.cache, settings)
        self.pipeline = build_pipeline(settings, self.cache)
        if settings.dns.upstreams != self.settings.dns.upstreams:
            self.cache.clear()
        if settings.dns.listen != self.settings.dns.listen:
            new_server = self._server_for(settings)
            await new_server.start()  # raises, keeping the old listeners, if it cannot bind
            old_server, self.server = self.server, new_server
            if old_server is not None:
                await old_server.stop()
        self.settings = settings
        await asyncio.sleep(self.settings.dns.upstream_timeout * 3)  # let queries on the old chain finish
        await old.pool.close()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.pipeline.pool.close()
