"""Guard: who may ask, how fast, and what is answered without thought.

Clients outside ``dns.allow_clients`` get REFUSED, so an open port on a WAN side can
never become an open resolver. Each client has a token bucket of ``rate_limit``
queries per minute (burst of the same size, as Pi-hole does); an empty bucket gets
REFUSED, so one flooding device cannot starve the others. ANY is answered minimally
(RFC 8482) instead of being forwarded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ..chain import Answer, Next, Query
from ..messages import reply_with, rfc8482_hinfo
from ..wire import REFUSED, T_ANY

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class GuardStats:
    """Queries refused since the daemon started (a reload's new Guard keeps counting here)."""

    refused_acl: int = 0
    refused_rate: int = 0


class Guard:
    MAX_TRACKED = 65_536  # clients remembered for the ACL and the rate limit

    def __init__(self, allow_clients: Sequence[Network], rate_limit: int, stats: GuardStats | None = None) -> None:
        self.allow = list(allow_clients)
        self.per_second = rate_limit / 60.0
        self.burst = float(rate_limit)
        self._allowed: dict[str, bool] = {}
        self._buckets: dict[str, list[float]] = {}
        self.stats = stats if stats is not None else GuardStats()  # the daemon's: survives a reload

    @property
    def refused_acl(self) -> int:
        return self.stats.refused_acl

    @property
    def refused_rate(self) -> int:
        return self.stats.refused_rate

    def allowed(self, client: str) -> bool:
        known = self._allowed.get(client)
        if known is None:
            try:
                address = ipaddress.ip_address(client.split("%", 1)[0])
            except ValueError:
                known = False
            else:
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped
                known = any(address in net for net in self.allow)
            if len(self._allowed) >= self.MAX_TRACKED:
                self._allowed.clear()
            self._allowed[client] = known
        return known

    def take(self, client: str, now: float) -> bool:
        """Spend one token of ``client``'s bucket; False when it is empty."""
        if self.per_second <= 0:
            return True
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.MAX_TRACKED:
                self._forget_full(now)
            self._buckets[client] = [self.burst - 1, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.per_second)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing worth remembering."""
        full = [c for c, (tokens, last) in self._buckets.items()
                if tokens + (now - last) * self.per_second >= self.burst]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self.MAX_TRACKED:
            self._buckets.clear()

    def resolve(self, query: Query, nxt: Next) -> Answer:
        client = query.client
        if not self._allowed.get(client) and not self.allowed(client):
            self.stats.refused_acl += 1
            query.source = "guard"
            query.rcode = REFUSED
            return reply_with(query.q, REFUSED)
        if self.per_second > 0 and not self.take(client, query.received):
            self.stats.refused_rate += 1
            query.source = "guard"
            query.rcode = REFUSED
            return reply_with(query.q, REFUSED)
        if query.q.qtype == T_ANY:
            query.source = "guard"
            return rfc8482_hinfo(query.q)
        return nxt(query)
