"""What every upstream resolver shares: its health as the pool sees it, random query IDs
from the OS's CSPRNG, the latency histogram's buckets and the two errors.

The kinds live beside it: ``udp`` (plain DNS, TCP on truncation), ``stream`` (TCP and
DNS over TLS), ``doh`` (DNS over HTTPS, the only one that needs aiohttp), with
``pool`` (ordered failover) and ``factory`` (a spec to an upstream; DoH loaded lazily).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass, field

from ...addresses import UpstreamSpec
from ...errors import GuardianError


class UpstreamError(GuardianError):
    """One upstream did not give a usable answer."""


class UpstreamFailure(GuardianError):
    """No upstream gave a usable answer in time."""


class _RandomIds:
    """16-bit query IDs from the OS's CSPRNG, read 4 KiB at a time (one syscall per
    2,048 IDs instead of one per query)."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> int:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(4096)
            at = 0
        self._at = at + 2
        return (self._pool[at] << 8) | self._pool[at + 1]


new_id = _RandomIds()


# Upper bounds (ms) of the upstream latency histogram's buckets; the last one catches the rest.
RTT_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, float("inf"))


@dataclass(slots=True)
class UpstreamStats:
    """One upstream's counters since the daemon started. A reload builds new upstream
    objects; the daemon hands each the stats of the same URL, so they carry on."""

    answered: int = 0
    errors: int = 0  # every failed exchange (Upstream.failures counts the current run)
    rtt_sum_ms: float = 0.0
    rtt_buckets: list[int] = field(default_factory=lambda: [0] * len(RTT_BUCKETS_MS))  # not cumulative


class Upstream:
    """Base: one resolver, with its health as seen by the pool."""

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.name = spec.url
        self.down_since: float | None = None
        self.failures = 0
        self.strikes: set[bytes] = set()  # questions it failed since its last answer
        self.last_error = ""
        self.rtt_ms = 0.0
        self.stats = UpstreamStats()

    def observe(self, ms: float) -> None:
        """One answer's round trip, for the latency histogram (/metrics)."""
        self.rtt_ms = ms
        stats = self.stats
        stats.rtt_sum_ms += ms
        stats.rtt_buckets[bisect_left(RTT_BUCKETS_MS, ms)] += 1

    @property
    def answered(self) -> int:
        return self.stats.answered

    @property
    def errors(self) -> int:
        return self.stats.errors

    @property
    def rtt_sum_ms(self) -> float:
        return self.stats.rtt_sum_ms

    @property
    def rtt_buckets(self) -> list[int]:
        return self.stats.rtt_buckets

    @property
    def up(self) -> bool:
        return self.down_since is None

    async def exchange(self, question: bytes, *, do: bool, cd: bool, timeout: float) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        return None
