"""The upstreams package keeps aiohttp (13 MB) out of a house without DNS over HTTPS."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from guardian.addresses import parse_upstream
from guardian.dns.upstreams.factory import make_upstream
from guardian.dns.upstreams.pool import UpstreamPool
import guardian.app
kinds = [type(make_upstream(parse_upstream(url))).__name__
         for url in ("udp://127.0.0.1:5353", "tcp://127.0.0.1:5353", "tls://dns.test@127.0.0.1:8853")]
print(kinds, "aiohttp" in sys.modules)
make_upstream(parse_upstream("https://dns.test@127.0.0.1:8443/dns-query"))
print("aiohttp" in sys.modules)
"""


def test_plain_and_tls_upstreams_do_not_load_aiohttp_until_a_doh_one_is_made():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['UdpUpstream', 'StreamUpstream', 'StreamUpstream'] False"
    assert out[1] == "True"
