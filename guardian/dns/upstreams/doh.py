"""DNS over HTTPS (RFC 8484) upstreams: the only DNS code that needs aiohttp.

Kept in its own module and imported only when a DoH upstream is configured, so a
house on plain or TLS upstreams does not carry aiohttp in memory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import aiohttp

from ...addresses import UpstreamSpec, is_ip
from ...httpclient import CallbackResolver
from ..wire import build_query, question_matches
from .base import Upstream, UpstreamError


class HttpsUpstream(Upstream):
    """DNS over HTTPS (RFC 8484): POST application/dns-message, connections kept alive."""

    def __init__(self, spec: UpstreamSpec, ssl_context: ssl.SSLContext, resolve_host: Any = None) -> None:
        super().__init__(spec)
        self.ssl_context = ssl_context
        self.resolve_host = resolve_host
        self._session: Any = None
        self._address: str | None = spec.host if is_ip(spec.host) else None

    async def _session_for(self) -> Any:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context, limit=32, keepalive_timeout=60, resolver=CallbackResolver(lambda _host: self.address())
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def address(self) -> str:
        if self._address is None:
            if self.resolve_host is None:
                infos = await asyncio.get_running_loop().getaddrinfo(self.spec.host, self.spec.port, type=socket.SOCK_STREAM)
                self._address = str(infos[0][4][0])
            else:
                self._address = await self.resolve_host(self.spec.host)
        return self._address

    async def exchange(self, question: bytes, *, do: bool, cd: bool, timeout: float) -> bytes:
        session = await self._session_for()
        # RFC 8484 section 4.1: ID 0 in DoH; the TLS session is what binds the answer.
        query = build_query(0, question, do=do, cd=cd)
        host = self.spec.tls_name or self.spec.host
        netloc = f"[{host}]" if ":" in host else host
        url = f"https://{netloc}:{self.spec.port}{self.spec.path}"
        try:
            async with session.post(
                url,
                data=query,
                headers={"Content-Type": "application/dns-message", "Accept": "application/dns-message"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status != 200:
                    raise UpstreamError(f"HTTP {response.status}")
                answer: bytes = await response.content.read(65536)
        except TimeoutError:
            raise UpstreamError(f"no answer in {timeout:.1f}s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UpstreamError(f"certificate check failed for {host}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"HTTPS error: {exc}") from exc
        if not question_matches(query, answer, 0):
            raise UpstreamError("answer does not match the question")
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
