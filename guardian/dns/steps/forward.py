"""Forward step: ask the upstreams, merging identical queries in flight.

Ten devices asking for the same name in the same millisecond cause one upstream
query; each gets the answer with its own ID and question. A cap on distinct queries
in flight keeps a flood of unique names from exhausting sockets and memory: past it,
the query fails at once (stale or SERVFAIL above).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..cache import fresh_entry, render
from ..chain import Answer, Next, Query
from ..upstreams.base import UpstreamFailure
from ..upstreams.pool import UpstreamPool
from ..wire import CD, Reply, WireError, check_names, parse_reply

log = logging.getLogger(__name__)


class Forward:
    def __init__(self, pool: UpstreamPool, max_inflight: int = 1024) -> None:
        self.pool = pool
        self.max_inflight = max_inflight
        self._inflight: dict[bytes, asyncio.Future[tuple[Reply, str]]] = {}

    def resolve(self, query: Query, nxt: Next) -> Answer:
        return self._resolve(query)

    async def _resolve(self, query: Query) -> bytes:
        q = query.q
        future = self._inflight.get(q.key)
        if future is None:
            if len(self._inflight) >= self.max_inflight:
                raise UpstreamFailure("too many queries in flight")
            future = asyncio.get_running_loop().create_future()
            self._inflight[q.key] = future
            asyncio.get_running_loop().create_task(self._fetch(q.key, q.lname + q.question[len(q.qname):], q.do, bool(q.flags & CD), future))
        reply, upstream = await asyncio.shield(future)
        query.reply = reply
        query.cnames = tuple(reply.cnames)
        query.ttls, query.ttl_base = reply.ttls, 12 + len(q.question)
        query.source = "upstream"
        query.upstream = upstream
        query.rcode = reply.rcode
        return render(fresh_entry(reply, time.monotonic()), q, time.monotonic())

    async def _fetch(self, key: bytes, question: bytes, do: bool, cd: bool,
                     future: asyncio.Future[tuple[Reply, str]]) -> None:
        try:
            raw, upstream = await self.pool.resolve(question, do=do, cd=cd)
            try:
                check_names(raw)  # a name that loops or overruns is never cached or passed on
                reply = parse_reply(raw)
            except WireError as exc:
                raise UpstreamFailure(f"{upstream.name} sent a malformed answer: {exc}") from exc
            future.set_result((reply, upstream.name))
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
            if not isinstance(exc, UpstreamFailure):
                log.exception("upstream query failed unexpectedly")
                exc = UpstreamFailure(str(exc))
            future.set_exception(exc)
        finally:
            self._inflight.pop(key, None)
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved: nobody may be waiting any more
