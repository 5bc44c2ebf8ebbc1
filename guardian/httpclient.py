"""What Guardian's HTTP clients (DoH upstreams, list downloads) share: name resolution.

Neither may ask the system resolver: the box's resolv.conf may point at Guardian
itself. ``CallbackResolver`` hands aiohttp the address a callback finds (the DoH
bootstrap address, or the configured upstreams). ``GuardedResolver`` (list downloads)
also refuses hosts whose address is loopback, private, link-local and the like unless
the operator listed the host: a list URL or one of its redirects must not make the box
send requests to its own services or the LAN's. Importing this module imports aiohttp,
so only code that is about to make an HTTP request imports it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection

import aiohttp.abc

from .addresses import is_ip
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


def private_kind(address: str) -> str | None:
    """Why ``address`` is no place to fetch a list from ("loopback", "link-local",
    "private", "unspecified", "multicast"), or None for a public address. IPv4-mapped
    IPv6 counts as its IPv4 address; "private" is everything not globally routable
    (RFC 1918, fc00::/7, 100.64/10 shared space, documentation and reserved ranges)."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.strip("[]").split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private or not addr.is_global:
        return "private"
    return None


def host_key(host: str) -> str:
    """A host as ``lists_allow_private_hosts`` compares it: lower case, no brackets or final dot."""
    return host.strip().strip("[]").rstrip(".").lower()


class PrivateTarget(OSError):
    """A list host at a loopback, private or link-local address the operator did not list."""


def refuse_private(host: str, address: str, allowed: Collection[str]) -> None:
    """Raise PrivateTarget when ``host`` (at ``address``) is not public and not listed."""
    kind = private_kind(address)
    if kind is not None and host_key(host) not in allowed:
        shown = host if host_key(host) == host_key(address) else f"{host} ({address})"
        raise PrivateTarget(f"refused {shown}: a {kind} address; lists are fetched from public hosts only, "
                            "unless the host is listed under lists_allow_private_hosts")


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp resolver for list downloads: the addresses ``resolve_host(name)`` finds
    (None: the system resolver, for tools run off the box), refused with PrivateTarget
    when not public and the host is not in ``allowed``. It is asked for every connection,
    redirects included, and the connection goes to the address it checked. (aiohttp
    never asks a resolver about IP literals: the downloader checks those itself.)"""

    def __init__(self, resolve_host: ResolveHost | None, allowed: Collection[str] = ()) -> None:
        self.inner: aiohttp.abc.AbstractResolver = (
            CallbackResolver(resolve_host) if resolve_host is not None else aiohttp.ThreadedResolver())
        self.allowed = frozenset(host_key(h) for h in allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for result in found:
            refuse_private(host, result["host"], self.allowed)
        return found

    async def close(self) -> None:
        await self.inner.close()
