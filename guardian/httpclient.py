"""What Guardian's HTTP clients (DoH upstreams, list downloads) share: name resolution.

Neither may ask the system resolver: the box's resolv.conf may point at Guardian
itself. ``CallbackResolver`` hands aiohttp the address a callback finds (the DoH
bootstrap address, or the configured upstreams). Importing this module imports
aiohttp, so only code that is about to make an HTTP request imports it.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import aiohttp.abc

from .dns.spec import is_ip
from .errors import GuardianError

ResolveHost = Callable[[str], Awaitable[str]]


class CallbackResolver(aiohttp.abc.AbstractResolver):
    """aiohttp resolver giving ``resolve_host(name)``'s address (IP literals as they are)."""

    def __init__(self, resolve_host: ResolveHost) -> None:
        self.resolve_host = resolve_host

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        if is_ip(host):
            address = host.strip("[]")
        else:
            try:
                address = await self.resolve_host(host)
            except (GuardianError, OSError, ValueError) as exc:
                # aiohttp reports only OSError as a connection (DNS) error, and shows its strerror.
                raise socket.gaierror(socket.EAI_NONAME, f"cannot resolve {host}: {exc}") from exc
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            {"hostname": host, "host": address, "port": port, "family": fam, "proto": 0, "flags": socket.AI_NUMERICHOST}
        ]

    async def close(self) -> None:
        return None
