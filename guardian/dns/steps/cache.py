"""Cache step: answer from the cache; keep what upstream answers; serve stale.

Sits below policy, so it only ever holds upstream answers and a parent's change
applies to the very next query. When every upstream fails, an expired answer still in
the stale window is served with TTL 30 (RFC 8767) instead of SERVFAIL.
"""

from __future__ import annotations

import logging
import time

from ..cache import Cache, render
from ..chain import Answer, Next, Query
from ..messages import reply_with
from ..upstreams.base import UpstreamFailure
from ..upstreams.pool import UpstreamPool
from ..wire import SERVFAIL

log = logging.getLogger(__name__)


class CacheStep:
    def __init__(self, cache: Cache, pool: UpstreamPool | None = None) -> None:
        self.cache = cache
        self.pool = pool  # asked whether every upstream is down, to serve stale at once

    def resolve(self, query: Query, nxt: Next) -> Answer:
        q = query.q
        now = query.received
        entry = self.cache.get(q.key, now)
        if entry is not None:
            query.source = "cache"
            query.rcode = entry.rcode
            # The TTLs written are right until the next whole second of the entry's age.
            query.reuse_until = min(entry.expires, entry.stored + int(now - entry.stored) + 1)
            query.cnames = entry.cnames
            query.ttls, query.ttl_base = entry.ttls, 12 + len(q.question)
            return render(entry, q, now)
        if self.pool is not None and self.pool.all_down():
            stale = self.cache.get_stale(q.key, now)
            if stale is not None:
                query.source = "stale"
                query.rcode = stale.rcode
                query.ttls, query.ttl_base = stale.ttls, 12 + len(q.question)
                return render(stale, q, now, stale=True)
        return self._fetch(query, nxt(query))

    async def _fetch(self, query: Query, pending: Answer) -> bytes:
        q = query.q
        try:
            answer = pending if isinstance(pending, bytes) else await pending
        except UpstreamFailure as exc:
            now = time.monotonic()
            stale = self.cache.get_stale(q.key, now)
            if stale is not None:
                query.source = "stale"
                query.rcode = stale.rcode
                query.ttls, query.ttl_base = stale.ttls, 12 + len(q.question)
                return render(stale, q, now, stale=True)
            log.debug("SERVFAIL for %s: %s", q.name, exc)
            query.source = "servfail"
            query.rcode = SERVFAIL
            return reply_with(q, SERVFAIL)
        if query.reply is not None:
            self.cache.put(q.key, query.reply)
        return answer
