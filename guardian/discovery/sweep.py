"""An ARP sweep of one interface's own IPv4 subnet: finds devices that stay silent.

Bounded on purpose: ``rate`` requests a second, at most ``max_hosts`` addresses (a larger
subnet is swept only in the block of that size around Guardian's own address, which is
still inside it), and never an address outside the interface's subnet. Blocking: run it
in a thread. Needs CAP_NET_RAW.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import select
import time

from .vendors import is_device_mac, normal_mac

log = logging.getLogger(__name__)


def sweep_targets(address: str, max_hosts: int = 1024) -> tuple[ipaddress.IPv4Address, list[ipaddress.IPv4Address]]:
    """Guardian's own address and the addresses to ask for, from ``ip/prefix`` (IPv4)."""
    iface = ipaddress.IPv4Interface(address)
    net = iface.network
    if net.num_addresses > max_hosts:
        prefix = 32 - int(math.log2(max_hosts))
        net = ipaddress.IPv4Network(f"{iface.ip}/{prefix}", strict=False)  # a subnet of the interface's own
    if net.prefixlen >= 31:
        return iface.ip, []
    return iface.ip, [host for host in net.hosts() if host != iface.ip]


def arp_sweep(interface: str, address: str, mac: str, rate: float = 100.0, max_hosts: int = 1024,
              wait: float = 1.5) -> list[tuple[str, str]]:
    """(ip, mac) of every host in ``address``'s subnet that answered a who-has."""
    from scapy.config import conf
    from scapy.layers.l2 import ARP, Ether

    own, targets = sweep_targets(address, max_hosts)
    wanted = {str(t) for t in targets}
    found: dict[str, str] = {}
    sock = conf.L2socket(iface=interface, filter="arp")

    def collect(until: float) -> None:
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([sock.ins], [], [], left)
            if not ready:
                return
            _, data, _ = sock.recv_raw()
            if not data:
                continue
            pkt = Ether(data)
            if ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc in wanted:
                hw = normal_mac(pkt[ARP].hwsrc or "")
                if hw and is_device_mac(hw):
                    found[pkt[ARP].psrc] = hw

    try:
        interval = 1.0 / max(rate, 1.0)
        next_at = time.monotonic()
        for target in targets:
            sock.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=str(own), pdst=str(target)))
            next_at += interval
            collect(next_at)  # read replies while pacing the requests
        collect(time.monotonic() + wait)
    finally:
        sock.close()
    log.info("discovery: ARP sweep of %s (%d addresses) found %d hosts", address, len(targets), len(found))
    return sorted(found.items())
