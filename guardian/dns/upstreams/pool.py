"""Ordered failover over upstreams, with health tracking and background probes.

The pool tries upstreams in the configured order. One that fails for ``STRIKES``
different questions in a row (no answer in between) is marked down and skipped by
queries while a background probe retries it with backoff, so a dead upstream costs a
few timeouts, not one per query; and one slow name (a child's own slow zone, asked
again and again) never takes an upstream down or raises "every upstream is down".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence

from ...names import text_to_wire
from ..wire import HEADER, RR_FIXED, T_A, T_AAAA, T_NS, skip_name
from .base import Upstream, UpstreamError, UpstreamFailure

log = logging.getLogger(__name__)


class UpstreamPool:
    """Ordered failover over upstreams, with health tracking and background probes."""

    PROBE_QUESTION = b"\x00" + T_NS.to_bytes(2, "big") + b"\x00\x01"  # ". NS IN"
    STRIKES = 3  # failures in a row, each on a different question, that mark an upstream down

    def __init__(self, upstreams: Sequence[Upstream], timeout: float = 1.0, deadline: float = 2.5) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.deadline = deadline
        self._probes: dict[Upstream, asyncio.Task[None]] = {}
        self.failures = 0
        # Told when an upstream goes down (kind, message, severity): the parent sees it.
        self.on_event: Callable[[str, str, str], None] | None = None

    def all_down(self) -> bool:
        return all(not u.up for u in self.upstreams)

    def order(self) -> list[Upstream]:
        up = [u for u in self.upstreams if u.up]
        down = [u for u in self.upstreams if not u.up]
        return up + down  # down ones are a last resort, tried only when all others failed

    async def resolve(self, question: bytes, *, do: bool = False, cd: bool = False) -> tuple[bytes, Upstream]:
        """The first usable reply, trying upstreams in order within the deadline."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline
        errors = []
        for upstream in self.order():
            left = end - loop.time()
            if left <= 0.01:
                break
            started = loop.time()
            try:
                answer = await upstream.exchange(question, do=do, cd=cd, timeout=min(self.timeout, left))
            except (UpstreamError, OSError) as exc:
                self._failed(upstream, str(exc), question)
                errors.append(f"{upstream.name}: {exc}")
                continue
            upstream.observe((loop.time() - started) * 1000)
            self._succeeded(upstream)
            return answer, upstream
        self.failures += 1
        raise UpstreamFailure("; ".join(errors) or "no time left to ask an upstream")

    def _succeeded(self, upstream: Upstream) -> None:
        upstream.stats.answered += 1
        if not upstream.up:
            log.warning("upstream %s is answering again", upstream.name)
        upstream.down_since = None
        upstream.failures = 0
        upstream.strikes = set()

    def _failed(self, upstream: Upstream, why: str, question: bytes) -> None:
        upstream.failures += 1
        upstream.stats.errors += 1
        upstream.last_error = why
        if not upstream.up:
            return
        strikes = upstream.strikes
        strikes.add(question)
        if len(strikes) >= self.STRIKES:
            strikes.clear()
            upstream.down_since = time.monotonic()
            log.warning("upstream %s is down (%d different names failed in a row): %s", upstream.name, self.STRIKES, why)
            if self.on_event is not None:
                every = self.all_down()
                self.on_event("upstream", f"{'every upstream is down; ' if every else ''}{upstream.name}: {why}",
                              "high" if every else "medium")
            if upstream not in self._probes:
                self._probes[upstream] = asyncio.get_running_loop().create_task(self._probe(upstream))

    async def _probe(self, upstream: Upstream) -> None:
        """Retry a down upstream in the background, backing off from 1 s to 30 s."""
        delay = 1.0
        try:
            while not upstream.up:
                await asyncio.sleep(delay)
                try:
                    await upstream.exchange(self.PROBE_QUESTION, do=False, cd=False, timeout=self.timeout)
                except (UpstreamError, OSError) as exc:
                    upstream.last_error = str(exc)
                    delay = min(delay * 2, 30.0)
                    continue
                self._succeeded(upstream)
        finally:
            self._probes.pop(upstream, None)

    async def close(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
        for task in list(self._probes.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for upstream in self.upstreams:
            await upstream.close()


async def resolve_via(pool_upstreams: Sequence[Upstream], name: str, timeout: float = 2.0) -> str:
    """Resolve ``name`` to one address through plain upstreams (bootstrap for DoH)."""
    for qtype in (T_A, T_AAAA):
        question = text_to_wire(name) + qtype.to_bytes(2, "big") + b"\x00\x01"
        for upstream in pool_upstreams:
            try:
                answer = await upstream.exchange(question, do=False, cd=False, timeout=timeout)
            except (UpstreamError, OSError):
                continue
            address = _first_address(answer, qtype)
            if address:
                return address
    raise UpstreamError(f"could not resolve {name} through the bootstrap upstreams")


def _first_address(answer: bytes, qtype: int) -> str | None:
    _qid, _flags, _qd, an, _ns, _ar = HEADER.unpack_from(answer)
    pos = skip_name(answer, 12) + 4
    for _ in range(an):
        pos = skip_name(answer, pos)
        rtype, _rclass, _ttl, rdlen = RR_FIXED.unpack_from(answer, pos)
        rdata = answer[pos + 10 : pos + 10 + rdlen]
        pos += 10 + rdlen
        if rtype == qtype == T_A and rdlen == 4:
            return socket.inet_ntop(socket.AF_INET, rdata)
        if rtype == qtype == T_AAAA and rdlen == 16:
            return socket.inet_ntop(socket.AF_INET6, rdata)
    return None
