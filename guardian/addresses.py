"""Addresses the configuration accepts: ``dns.upstreams`` URLs and ``host:port`` listens.

At the foundation (imports nothing of Guardian): config, provisioning, the HTTP client
and the DNS upstreams all read addresses, and reading a configuration loads neither
asyncio's servers nor the HTTP stack.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """A parsed upstream URL.

    ``udp://9.9.9.9:53``, ``tcp://[2620:fe::fe]:53``, ``tls://dns.quad9.net@9.9.9.9:853``
    (name for the certificate @ address), ``https://dns.quad9.net/dns-query`` (also
    ``https://name@address/path`` to skip resolving the name).
    """

    url: str
    scheme: str
    host: str  # the address to connect to, or a name to resolve (https only)
    port: int
    tls_name: str | None = None
    path: str = "/dns-query"


def parse_upstream(url: str) -> UpstreamSpec:
    """Parse an upstream URL; raises ValueError with a readable reason."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"upstream {url!r}: scheme must be udp, tcp, tls or https")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"upstream {url!r}: bad port") from None
    host = parts.hostname or ""
    tls_name = parts.username
    if not host:
        raise ValueError(f"upstream {url!r}: no address")
    if scheme in ("udp", "tcp"):
        if tls_name:
            raise ValueError(f"upstream {url!r}: a name@ belongs to tls:// and https:// only")
        _check_ip(url, host)
        return UpstreamSpec(url, scheme, host, port)
    if scheme == "tls":
        _check_ip(url, host)
        return UpstreamSpec(url, scheme, host, port, tls_name or host)
    path = parts.path or "/dns-query"
    if parts.query:
        path += "?" + parts.query
    return UpstreamSpec(url, scheme, host, port, tls_name or host, path)


def _check_ip(url: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"upstream {url!r}: {host!r} must be an IP address (write name@address for TLS)") from None


def parse_hostport(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353`` / ``[::1]:5353`` -> (host, port). Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: write IPv6 as [address]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{text!r}: expected host:port (IPv6 as [address]:port)")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return host, int(port)


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IP address literal (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True
