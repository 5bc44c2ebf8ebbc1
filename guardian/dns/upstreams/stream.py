"""DNS over TCP, or over TLS (RFC 7858): one kept-alive connection carrying many queries."""

from __future__ import annotations

import asyncio
import ssl
import time

from ...addresses import UpstreamSpec
from ..wire import U16, build_query, question_matches
from .base import Upstream, UpstreamError, new_id


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
