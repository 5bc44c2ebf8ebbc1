"""Plain DNS over UDP, retried over TCP when the answer is truncated.

Every exchange builds its own query with a random ID and goes out on one of a few
connected sockets, each on its own random source port. A reply is accepted only from
the address queried (the connected socket filters the rest), with the same ID and the
same question; anything else is ignored and the wait goes on.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ...addresses import UpstreamSpec
from ..wire import TC, U16, build_query, question_matches
from .base import Upstream, UpstreamError, new_id
from .stream import StreamUpstream


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
