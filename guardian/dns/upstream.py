"""Upstream resolvers: plain UDP/TCP, DNS over TLS, DNS over HTTPS, with failover.

Every upstream exchange builds its own query with a random ID (from the OS's CSPRNG)
and, for UDP, a fresh connected socket on a random source port. A reply is accepted
only from the address queried (the connected socket filters the rest), with the same
ID and the same question; anything else is ignored and the wait goes on.

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
import os
import socket
import ssl
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..errors import GuardianError
from .spec import UpstreamSpec
from .wire import HEADER, T_A, T_AAAA, T_NS, TC, U16, build_query, question_matches, text_to_wire

log = logging.getLogger(__name__)


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


class Upstream:
    """Base: one resolver, with its health as seen by the pool."""

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.name = spec.url
        self.down_since: float | None = None
        self.failures = 0
        self.strikes: set[bytes] = set()  # questions it failed since its last answer
        self.answered = 0
        self.last_error = ""
        self.rtt_ms = 0.0
        self.errors = 0  # every failed exchange since start (failures counts the current run)
        self.rtt_buckets = [0] * len(RTT_BUCKETS_MS)  # answers per latency bucket (not cumulative)
        self.rtt_sum_ms = 0.0

    def observe(self, ms: float) -> None:
        """One answer's round trip, for the latency histogram (/metrics)."""
        self.rtt_ms = ms
        self.rtt_sum_ms += ms
        self.rtt_buckets[bisect_left(RTT_BUCKETS_MS, ms)] += 1

    @property
    def up(self) -> bool:
        return self.down_since is None

    async def exchange(self, question: bytes, *, do: bool, cd: bool, timeout: float) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _UdpSocket(asyncio.DatagramProtocol):
    """One connected UDP socket to an upstream, carrying queries told apart by ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.uses = 0
        self.ignored = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry = self.pending.get(U16.unpack_from(data)[0]) if len(data) >= 12 else None
        if entry is not None and not entry[1].done() and question_matches(entry[0], data, U16.unpack_from(data)[0]):
            entry[1].set_result(data)
        else:
            self.ignored += 1  # spoofed, stray or late: keep waiting for the real one

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on a connected socket: the upstream is not there.
        self._fail(UpstreamError(f"UDP error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamError("socket closed"))

    def _fail(self, error: UpstreamError) -> None:
        for _query, future in self.pending.values():
            if not future.done():
                future.set_exception(error)

    def close_when_idle(self) -> None:
        if not self.pending and self.transport is not None:
            self.transport.close()


def _expire(future: asyncio.Future[bytes], timeout: float) -> None:
    if not future.done():
        future.set_exception(UpstreamError(f"no answer in {timeout:.1f}s"))


class UdpUpstream(Upstream):
    """Plain DNS over UDP, retried over TCP when the answer is truncated.

    Queries go out over a small pool of connected sockets, each on its own random
    source port, and each socket is replaced after ``MAX_USES`` queries (Unbound's
    outgoing port range does the same). An attacker must guess the 16-bit ID and a
    port that changes all the time, while Guardian does not pay for a new socket
    per query. The kernel drops datagrams from any other address.
    """

    SOCKETS = 8
    MAX_USES = 100

    def __init__(self, spec: UpstreamSpec) -> None:
        super().__init__(spec)
        self.tcp = StreamUpstream(UpstreamSpec(spec.url, "tcp", spec.host, spec.port))
        self._sockets: list[_UdpSocket] = []
        self._retired = 0
        self._spoofed_retired = 0

    @property
    def spoofed(self) -> int:
        """Replies ignored for a wrong ID or question (or late ones)."""
        return self._spoofed_retired + sum(s.ignored for s in self._sockets)

    async def _socket(self) -> _UdpSocket:
        sockets = self._sockets
        if len(sockets) < self.SOCKETS:
            _transport, sock = await asyncio.get_running_loop().create_datagram_endpoint(
                _UdpSocket, remote_addr=(self.spec.host, self.spec.port)
            )
            sockets.append(sock)
            return sock
        sock = sockets[new_id() % len(sockets)]
        if sock.closed or sock.uses >= self.MAX_USES:
            sockets.remove(sock)
            self._spoofed_retired += sock.ignored
            sock.close_when_idle()
            return await self._socket()
        return sock

    async def exchange(self, question: bytes, *, do: bool, cd: bool, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sock = await self._socket()
        qid = new_id()
        while qid in sock.pending:
            qid = new_id()
        query = build_query(qid, question, do=do, cd=cd)
        future: asyncio.Future[bytes] = loop.create_future()
        sock.pending[qid] = (query, future)
        sock.uses += 1
        timer = loop.call_at(deadline, _expire, future, timeout)
        try:
            assert sock.transport is not None
            sock.transport.sendto(query)
            answer = await future
        finally:
            timer.cancel()
            sock.pending.pop(qid, None)
            if sock not in self._sockets:
                sock.close_when_idle()
        if U16.unpack_from(answer, 2)[0] & TC:
            left = deadline - loop.time()
            if left <= 0:
                raise UpstreamError("truncated answer and no time left for TCP")
            return await self.tcp.exchange(question, do=do, cd=cd, timeout=left)
        return answer

    async def close(self) -> None:
        for sock in self._sockets:
            if sock.transport is not None:
                sock.transport.close()
        self._sockets.clear()
        await self.tcp.close()


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection carrying many queries at once (RFC 7766 pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.closed = False
        self.used = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            if len(message) < 12:
                continue
            entry = self.pending.get(U16.unpack_from(message)[0])
            if entry is None:
                continue
            sent, future = entry
            if not future.done() and question_matches(sent, message, U16.unpack_from(sent)[0]):
                future.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for _sent, future in self.pending.values():
            if not future.done():
                future.set_exception(UpstreamError(f"connection closed{': ' + str(exc) if exc else ''}"))

    def send(self, query: bytes, qid: int) -> asyncio.Future[bytes]:
        assert self.transport is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[qid] = (query, future)
        self.used = True
        self.transport.write(len(query).to_bytes(2, "big") + query)
        return future

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class StreamUpstream(Upstream):
    """DNS over TCP, or over TLS (RFC 7858) when ``ssl_context`` is given.

    One connection is kept open and shared by concurrent queries; it is reopened when
    the server closes it (an idle close costs one silent retry, not a failure).
    """

    IDLE_SECONDS = 30.0

    def __init__(self, spec: UpstreamSpec, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(spec)
        self.ssl_context = ssl_context
        self._conn: _StreamConnection | None = None
        self._connecting: asyncio.Future[_StreamConnection] | None = None
        self._last_used = 0.0

    async def _connection(self, timeout: float) -> _StreamConnection:
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._last_used < self.IDLE_SECONDS:
            return conn
        if conn is not None:
            conn.close()
            self._conn = None
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.wait_for(asyncio.shield(self._connecting), timeout)
        except TimeoutError:
            raise UpstreamError(f"could not connect in {timeout:.1f}s") from None
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _StreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await loop.create_connection(
                _StreamConnection,
                self.spec.host,
                self.spec.port,
                ssl=self.ssl_context,
                server_hostname=self.spec.tls_name if self.ssl_context else None,
            )
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamError(f"certificate check failed for {self.spec.tls_name}: {exc.verify_message}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"connect failed: {exc}") from exc
        self._conn = conn
        return conn

    async def exchange(self, question: bytes, *, do: bool, cd: bool, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            conn = await self._connection(max(0.01, deadline - loop.time()))
            reused = conn.used
            qid = new_id()
            while qid in conn.pending:
                qid = new_id()
            future = conn.send(build_query(qid, question, do=do, cd=cd), qid)
            self._last_used = time.monotonic()
            try:
                answer: bytes = await asyncio.wait_for(future, max(0.01, deadline - loop.time()))
                return answer
            except TimeoutError:
                raise UpstreamError(f"no answer in {timeout:.1f}s") from None
            except UpstreamError:
                if attempt == 1 and reused and conn.closed and deadline - loop.time() > 0.05:
                    continue  # the server closed a kept-alive connection: reopen once
                raise
            finally:
                conn.pending.pop(qid, None)
        raise UpstreamError("unreachable")

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def make_upstream(spec: UpstreamSpec, ca_file: str | None = None, resolve_host: Any = None) -> Upstream:
    if spec.scheme == "udp":
        return UdpUpstream(spec)
    if spec.scheme == "tcp":
        return StreamUpstream(spec)
    context = ssl.create_default_context(cafile=ca_file)
    if spec.scheme == "tls":
        return StreamUpstream(spec, context)
    from .doh import HttpsUpstream  # aiohttp (13 MB) only in a house that uses DoH

    return HttpsUpstream(spec, context, resolve_host)


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
        upstream.answered += 1
        if not upstream.up:
            log.warning("upstream %s is answering again", upstream.name)
        upstream.down_since = None
        upstream.failures = 0
        upstream.strikes = set()

    def _failed(self, upstream: Upstream, why: str, question: bytes) -> None:
        upstream.failures += 1
        upstream.errors += 1
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
    from .wire import RR_FIXED, skip_name

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
