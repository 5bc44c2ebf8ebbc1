"""DNS listeners: UDP and TCP on every configured address, IPv4 and IPv6.

The listener's whole job is transport: read a query from the bytes, hand it to the
chain, and send the answer back within the size the client accepts (over UDP a longer
answer goes back empty with TC set, so the client retries over TCP). Nothing a client
sends may crash or wedge it: malformed queries get FORMERR (or are dropped when not
even a header can be read), and an unexpected error in a step becomes SERVFAIL,
logged once a minute at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import inspect
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..errors import GuardianError
from .chain import Next, Query
from .wire import HEADER, MIN_UDP, SERVFAIL, TC, WireError, error_reply, opt_record, parse_query

log = logging.getLogger(__name__)

MAX_UDP_ANSWER = 4096  # never send more than this over UDP, whatever the client says


@dataclass
class ServerStats:
    udp_queries: int = 0
    tcp_queries: int = 0
    malformed: int = 0
    dropped: int = 0
    errors: int = 0
    truncated: int = 0
    tcp_connections: int = 0
    tcp_rejected: int = 0
    tcp_slow: int = 0  # connections closed for not completing a message in time
    packet_reuses: int = 0  # repeats answered from the packet cache


def udp_limit(query: Query) -> int:
    q = query.q
    return min(max(q.payload, MIN_UDP), MAX_UDP_ANSWER) if q.edns else MIN_UDP


def truncated(answer: bytes, query: Query) -> bytes:
    """The empty TC answer sent when the real one does not fit in UDP."""
    q = query.q
    qid, flags = HEADER.unpack_from(answer)[:2]
    tail = opt_record(q.do) if q.edns else b""
    return HEADER.pack(qid, flags | TC, 1, 0, 0, 1 if q.edns else 0) + q.question + tail


class DnsServer:
    """Runs ``handler`` (the chain) for every query arriving on ``addresses``.

    UDP answers that steps mark reusable (``Query.reuse_until``: cache hits and
    policy answers) go into a packet cache keyed on (client address, query bytes
    without the ID), as PowerDNS and dnsdist do: the same device asking the same
    question again within that second gets the same bytes with its new ID, without
    the chain. ``admit`` (the rate limit) and the answer's ``repeat`` hook (the query
    log) still run for each one. Anything that changes answers (a reload, a parent's
    action, a list refresh) calls ``invalidate()``.
    """

    PACKET_CACHE_SIZE = 8192

    def __init__(
        self,
        handler: Next,
        addresses: list[tuple[str, int]],
        *,
        tcp_idle: float = 10.0,
        tcp_max_connections: int = 256,
        tcp_max_pending: int = 64,
        tcp_message: float = 5.0,
        tcp_max_per_client: int = 16,
        client_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.handler = handler
        self.addresses = addresses
        self.tcp_idle = tcp_idle
        self.tcp_max_connections = tcp_max_connections
        self.tcp_max_pending = tcp_max_pending
        self.tcp_message = tcp_message  # seconds a started message may take to arrive whole
        self.tcp_max_per_client = tcp_max_per_client
        self.client_allowed = client_allowed or (lambda _c: True)
        self.stats = ServerStats()
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.base_events.Server] = []
        self._tcp_conns: set[_TcpConnection] = set()
        self._tcp_per_client: dict[str, int] = {}
        self._last_error_log = 0.0
        self.bound: list[tuple[str, str, int]] = []  # (proto, host, port) actually bound
        self.admit: Callable[[str, float], bool] | None = None
        self.packets: dict[tuple[str, bytes], tuple[bytes, float, Callable[[float], None] | None]] = {}
        self._running: set[asyncio.Future[bytes]] = set()  # answers still being worked out

    def apply(self, *, tcp_idle: float, tcp_max_connections: int, tcp_message: float,
              tcp_max_per_client: int) -> None:
        """Reloaded limits: read per connection, so the next ones get them."""
        self.tcp_idle = tcp_idle
        self.tcp_max_connections = tcp_max_connections
        self.tcp_message = tcp_message
        self.tcp_max_per_client = tcp_max_per_client

    def invalidate(self) -> None:
        """Forget every reusable answer: what decides answers has changed."""
        self.packets = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.addresses:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                udp, tcp = _bind_pair(family, host, port)
                transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp)
                self._udp.append(transport)  # type: ignore[arg-type]
                bound_port = udp.getsockname()[1]
                server = await loop.create_server(lambda: _TcpConnection(self), sock=tcp, backlog=128)
                self._tcp.append(server)
                self.bound.append(("udp", host, bound_port))
                self.bound.append(("tcp", host, bound_port))
        except OSError as exc:
            await self.stop()
            raise GuardianError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        # What was made before serving (modules, rules, household, list metadata) lives as
        # long as the process. Frozen, the collector's full passes, which run every few
        # thousand queries, no longer walk it: they took ~100 ms each (a stall for every
        # query waiting) and a fifth of the DNS process's CPU under a flood.
        gc.freeze()
        for proto, host, port in self.bound:
            log.info("DNS listening on %s %s", proto, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        for conn in list(self._tcp_conns):
            conn.close()
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._udp.clear()
        self._tcp.clear()
        # No new queries now; those still waiting on an upstream end without an answer.
        running, self._running = self._running, set()
        for future in running:
            _cancel(future)
        if running:
            await asyncio.wait(running, timeout=5)

    # -- shared by both transports -------------------------------------------------

    def make_query(self, data: bytes, client: str, transport: str) -> Query | bytes | None:
        """A Query, or the error answer to send at once (bytes), or None to drop."""
        try:
            q = parse_query(data)
        except WireError as exc:
            self.stats.malformed += 1
            if exc.rcode is None or not self.client_allowed(client):
                self.stats.dropped += 1
                return None
            return error_reply(data, exc.rcode)
        except Exception:  # noqa: BLE001 - a parser bug must not take the server down
            self._log_error("query parse failed")
            self.stats.malformed += 1
            return error_reply(data, 1)
        return Query(data, q, client, transport)

    def run(self, query: Query, deliver: Callable[[Query, bytes], None]) -> asyncio.Future[bytes] | None:
        """Start the chain; ``deliver`` gets the answer now or when it is ready."""
        try:
            answer = self.handler(query)
        except Exception as exc:  # noqa: BLE001 - a step's bug is one SERVFAIL, not a crash
            self._log_error("query failed", exc)
            deliver(query, self._servfail(query))
            return None
        if isinstance(answer, bytes):
            deliver(query, answer)
            return None
        future = asyncio.ensure_future(answer)
        self._running.add(future)

        def done(f: asyncio.Future[bytes]) -> None:
            self._running.discard(f)
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self._log_error("query failed", exc)
                deliver(query, self._servfail(query))
            else:
                deliver(query, f.result())

        future.add_done_callback(done)
        return future

    def _servfail(self, query: Query) -> bytes:
        self.stats.errors += 1
        query.rcode = SERVFAIL
        return error_reply(query.data, SERVFAIL) or b""

    def _log_error(self, what: str, exc: BaseException | None = None) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            self._last_error_log = now
            log.error("%s (further errors are counted, logged once a minute)", what, exc_info=exc or True)


def _bind_pair(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets bound to ``host:port``. Port 0 (tests, tools): the OS picks a
    free UDP port, and the TCP one of the same number may be taken (by any connection's
    local end): then another pick, a few times."""
    for attempt in range(20):
        udp = _bind(family, socket.SOCK_DGRAM, host, port)
        try:
            return udp, _bind(family, socket.SOCK_STREAM, host, udp.getsockname()[1])
        except OSError as exc:
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE or attempt == 19:
                raise
    raise AssertionError("unreachable")


def _bind(family: int, kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Own the IPv6 address only, so 0.0.0.0:53 and [::]:53 can both be bound.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_DGRAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self.server
        server.stats.udp_queries += 1
        key = (addr[0], data[2:])
        packets = server.packets
        reuse = packets.get(key)
        if reuse is not None:
            now = time.monotonic()
            if reuse[1] > now and (server.admit is None or server.admit(addr[0], now)):
                server.stats.packet_reuses += 1
                self._send(data[:2] + reuse[0], addr)
                if reuse[2] is not None:
                    reuse[2](time.time())
                return
            del packets[key]
        made = server.make_query(data, addr[0], "udp")
        if made is None:
            return
        if isinstance(made, bytes):
            self._send(made, addr)
            return
        made.addr = addr
        server.run(made, self._deliver)

    def _deliver(self, query: Query, answer: bytes) -> None:
        server = self.server
        if len(answer) > udp_limit(query):
            server.stats.truncated += 1
            answer = truncated(answer, query)
        self._send(answer, query.addr)
        if query.reuse_until > query.received:
            packets = server.packets
            if len(packets) >= server.PACKET_CACHE_SIZE:
                packets.clear()
            packets[(query.client, query.data[2:])] = (answer[2:], query.reuse_until, query.repeat)

    def _send(self, answer: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and answer:
            transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One client TCP connection: many queries, answered as they are ready (RFC 7766)."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: set[asyncio.Future[bytes]] = set()
        self.client = ""
        self.idle: asyncio.TimerHandle | None = None
        self.message_timer: asyncio.TimerHandle | None = None
        self.paused = False
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = stream
        server = self.server
        peer = transport.get_extra_info("peername")
        client = peer[0] if peer else ""
        per_client = server._tcp_per_client
        if len(server._tcp_conns) >= server.tcp_max_connections or per_client.get(client, 0) >= server.tcp_max_per_client:
            server.stats.tcp_rejected += 1
            stream.abort()
            return
        self.client = client
        per_client[client] = per_client.get(client, 0) + 1
        self.counted = True
        server._tcp_conns.add(self)
        server.stats.tcp_connections += 1
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.server.tcp_idle, self._idle_timeout)

    def _idle_timeout(self) -> None:
        if self.pending:
            self._arm_idle()
        else:
            self.close()

    def _message_timeout(self) -> None:
        """A message begun ``tcp_message`` seconds ago is still not whole: a client that
        drips bytes to keep its slot (slowloris). Unless Guardian itself stopped reading."""
        self.message_timer = None
        if self.paused:
            self._arm_message()
            return
        self.server.stats.tcp_slow += 1
        if self.transport is not None:
            self.transport.abort()

    def _arm_message(self) -> None:
        if self.message_timer is not None:
            self.message_timer.cancel()
        self.message_timer = asyncio.get_running_loop().call_later(self.server.tcp_message, self._message_timeout)

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        buf = self.buffer
        started = not buf  # these bytes begin a new message
        buf += data
        if len(buf) > 2 + 65535 + 65537:  # more than a full message queued: a misbehaving client
            self.close()
            return
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            started = True  # whatever is left begins the next message
            self._handle(message)
        # A whole message must arrive within tcp_message seconds of its first byte;
        # the idle timer alone is re-armed by every byte.
        if not buf:
            if self.message_timer is not None:
                self.message_timer.cancel()
                self.message_timer = None
        elif started or self.message_timer is None:
            self._arm_message()
        if len(self.pending) >= self.server.tcp_max_pending and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()

    def _handle(self, message: bytes) -> None:
        server = self.server
        server.stats.tcp_queries += 1
        made = server.make_query(message, self.client, "tcp")
        if made is None:
            return
        if isinstance(made, bytes):
            self._write(made)
            return
        task = server.run(made, self._deliver)
        if task is not None:
            self.pending.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[bytes]) -> None:
        self.pending.discard(task)
        if self.paused and len(self.pending) < self.server.tcp_max_pending // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def _deliver(self, _query: Query, answer: bytes) -> None:
        self._write(answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing() and answer:
            self.transport.write(len(answer).to_bytes(2, "big") + answer)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server._tcp_conns.discard(self)
        if self.counted:
            self.counted = False
            left = server._tcp_per_client.get(self.client, 1) - 1
            if left > 0:
                server._tcp_per_client[self.client] = left
            else:
                server._tcp_per_client.pop(self.client, None)
        if self.idle is not None:
            self.idle.cancel()
        if self.message_timer is not None:
            self.message_timer.cancel()
        for task in self.pending:
            _cancel(task)
        self.pending.clear()


def _cancel(future: asyncio.Future[bytes]) -> None:
    """Cancel an answer being worked out.

    A task that never ran holds the chain's coroutines unstarted (each step's passed as
    an argument to the one before). The task closes its own coroutine when cancelled;
    the ones it was handed are closed here, instead of leaving "coroutine was never
    awaited" warnings to the garbage collector.
    """
    future.cancel()
    if not isinstance(future, asyncio.Task):
        return
    outer = future.get_coro()
    if not inspect.iscoroutine(outer) or inspect.getcoroutinestate(outer) != inspect.CORO_CREATED:
        return
    todo: list[Any] = [outer]
    while todo:
        coro = todo.pop()
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            if coro.cr_frame is not None:
                todo.extend(coro.cr_frame.f_locals.values())
            if coro is not outer:
                coro.close()
