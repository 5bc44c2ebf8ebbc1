"""A device named by MAC keeps its profile on any IPv6 address at once: a new temporary
address, its link-local one. The daemon reads the kernel's IPv6 neighbour table at
query time (netlink), as it reads ARP for IPv4.

Topology, in network namespaces this module creates (no route out of them):

    kid    (k0 b8:27:eb:12:34:56, fd78::2, fe80::...) ─┐
    guest  (q0 b8:27:eb:00:00:77, fd78::3)             ─┴─ br0 in "guardian" (fd78::1)
    the guest also routes fd79::/64 (a client behind a router: never a neighbour)

``guardian run`` runs inside the guardian namespace; its only upstream is a closed port
on that namespace's loopback, so a name the Kid profile blocks answers NXDOMAIN and the
default profile's answer is SERVFAIL: the status shows which profile applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KID_MAC = "b8:27:eb:12:34:56"
GUEST_MAC = "b8:27:eb:00:00:77"
PORT = 5300


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class Net:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.g, self.k, self.q = (f"guardian-i6-{tag}{x}" for x in "gkq")

    def build(self) -> None:
        g, k, q = self.g, self.k, self.q
        for name in (g, k, q):
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", g, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        for port, peer, ns, mac in (("gk", "k0", k, KID_MAC), ("gq", "q0", q, GUEST_MAC)):
            sh("ip", "-n", g, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", ns)
            sh("ip", "-n", ns, "link", "set", peer, "address", mac)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{peer}.accept_dad=0")
            sh("ip", "-n", g, "link", "set", port, "master", "br0")
            sh("ip", "-n", g, "link", "set", port, "up")
        sh("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0")
        sh("ip", "-n", g, "addr", "add", "fd78::1/64", "dev", "br0", "nodad")
        sh("ip", "-n", g, "link", "set", "br0", "up")
        sh("ip", "-n", k, "addr", "add", "fd78::2/64", "dev", "k0", "nodad")
        sh("ip", "-n", k, "link", "set", "k0", "up")
        sh("ip", "-n", q, "addr", "add", "fd78::3/64", "dev", "q0", "nodad")
        sh("ip", "-n", q, "addr", "add", "fd79::3/64", "dev", "lo", "nodad")
        sh("ip", "-n", q, "link", "set", "q0", "up")
        sh("ip", "-n", g, "-6", "route", "add", "fd79::/64", "via", "fd78::3")

    def destroy(self) -> None:
        for name in (self.g, self.k, self.q):
            sh("ip", "netns", "del", name, check=False)

    def link_local(self, ns: str, dev: str) -> str:
        for _ in range(50):
            out = sh("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link").stdout.split()
            if "inet6" in out:
                return out[out.index("inet6") + 1].split("/")[0]
            time.sleep(0.1)
        raise AssertionError(f"no link-local address on {dev}")

    def dig(self, ns: str, source: str | None, server: str, name: str = "blocked.example") -> str:
        """dig from ``source`` (None: the kernel picks it, as for a link-local server)."""
        bind = ["-b", source] if source else []
        out = sh("ip", "netns", "exec", ns, "dig", "-p", str(PORT), f"@{server}", *bind, name, "A",
                 "+tries=1", "+time=3", "+nocookie", check=False).stdout
        for line in out.splitlines():
            if "status:" in line:
                return line.split("status:")[1].split(",")[0].strip()
        return "TIMEOUT"


CONFIG = """
dns:
  listen: ["[::]:{port}"]
  upstreams: ["udp://127.0.0.1:9"]
  upstream_timeout: 0.5
  allow_clients: [fd78::/64, fd79::/64, fe80::/10]
  rate_limit: 0
dashboard: {{enabled: false}}
data_dir: {var}
pack_lists: false
log_level: warning
discovery:
  interfaces: [br0]
  passive: false
household:
  default_profile: Open
  profiles:
    - {{name: Kid, categories: [adult], deny: [blocked.example]}}
    - {{name: Open, categories: []}}
  devices:
    - {{name: Kid's phone, mac: "{mac}", profile: Kid}}
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (network namespaces): run them as root")
    net = Net()
    tmp = tmp_path_factory.mktemp("identify6")
    config = tmp / "guardian.yaml"
    config.write_text(CONFIG.format(port=PORT, var=tmp / "var", mac=KID_MAC))
    proc = None
    try:
        net.build()
        proc = subprocess.Popen(["ip", "netns", "exec", net.g, sys.executable, "-m", "guardian", "run", "--config",
                                 str(config)], stdout=subprocess.DEVNULL, stderr=(tmp / "log").open("w"),
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        for _ in range(150):  # the guest asks until the daemon answers
            if net.dig(net.q, "fd78::3", "fd78::1", "warmup.example") != "TIMEOUT":
                break
            assert proc.poll() is None, (tmp / "log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("guardian did not answer: " + (tmp / "log").read_text())
        yield net
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        net.destroy()


def test_an_unknown_device_gets_the_default_profile(net: Net) -> None:
    assert net.dig(net.q, "fd78::3", "fd78::1") == "SERVFAIL"  # Open: forwarded, no upstream


def test_a_new_temporary_address_keeps_the_devices_profile_at_once(net: Net) -> None:
    assert net.dig(net.k, "fd78::2", "fd78::1") == "NXDOMAIN"  # the device as the kernel knows it
    for address in ("fd78::5eed:1:2:3", "fd78::ab:cdef:1234:5678"):  # fresh privacy addresses
        sh("ip", "-n", net.k, "addr", "add", f"{address}/64", "dev", "k0", "nodad")
        assert net.dig(net.k, address, "fd78::1") == "NXDOMAIN", address  # the first query already


def test_the_link_local_address_keeps_the_devices_profile(net: Net) -> None:
    box = net.link_local(net.g, "br0")
    # A link-local server: the kernel sends from the client's link-local address.
    assert net.dig(net.k, None, f"{box}%k0") == "NXDOMAIN"
    assert net.dig(net.q, None, f"{box}%q0") == "SERVFAIL"


def test_a_routed_client_is_not_kept_waiting(net: Net) -> None:
    """Behind a router an address never becomes a neighbour: its probe gives up at once."""
    started = time.monotonic()
    assert net.dig(net.q, "fd79::3", "fd78::1", "first.example") == "SERVFAIL"  # the default profile
    assert time.monotonic() - started < 2.5
    out = sh("ip", "netns", "exec", net.q, "dig", "-p", str(PORT), "@fd78::1", "-b", "fd79::3", "second.example",
             "+tries=1", "+time=3", check=False).stdout
    assert "status: SERVFAIL" in out
