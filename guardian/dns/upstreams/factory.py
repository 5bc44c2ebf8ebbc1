"""An upstream from its spec. DoH's module (and aiohttp, 13 MB) is imported only when a
DoH upstream is configured, so a house on plain or TLS upstreams never loads it."""

from __future__ import annotations

import ssl
from typing import Any

from ...addresses import UpstreamSpec
from .base import Upstream
from .stream import StreamUpstream
from .udp import UdpUpstream


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
