"""What one captured frame tells: a device seen (Sighting), a DNS bypass (Bypass), DoH addresses.

Pure functions over frame bytes (scapy dissects them); no sockets. ``capture_filter``
builds the BPF program text, so the kernel copies only ARP, DHCP, IPv6 ND/RA, DNS and
DoT queries not sent to Guardian, DNS answers from other resolvers, and TCP SYNs to
learned DoH addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .vendors import is_device_mac, normal_mac

if TYPE_CHECKING:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import (
        ICMPv6ND_NA,
        ICMPv6ND_NS,
        ICMPv6ND_RA,
        ICMPv6ND_RS,
        ICMPv6NDOptDstLLAddr,
        ICMPv6NDOptSrcLLAddr,
        IPv6,
    )
    from scapy.layers.l2 import ARP, Ether


def _load_scapy() -> None:
    """Import scapy's layers on first use: they cost ~30 MB of RSS, which a box that
    captures nothing (no ``discovery.interfaces``) should not pay."""
    if "Ether" in globals():
        return
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import (
        ICMPv6ND_NA,
        ICMPv6ND_NS,
        ICMPv6ND_RA,
        ICMPv6ND_RS,
        ICMPv6NDOptDstLLAddr,
        ICMPv6NDOptSrcLLAddr,
        IPv6,
    )
    from scapy.layers.l2 import ARP, Ether

    globals().update(BOOTP=BOOTP, DHCP=DHCP, DNS=DNS, IP=IP, TCP=TCP, UDP=UDP, ICMPv6ND_NA=ICMPv6ND_NA,
                     ICMPv6ND_NS=ICMPv6ND_NS, ICMPv6ND_RA=ICMPv6ND_RA, ICMPv6ND_RS=ICMPv6ND_RS,
                     ICMPv6NDOptDstLLAddr=ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr=ICMPv6NDOptSrcLLAddr,
                     IPv6=IPv6, ARP=ARP, Ether=Ether)


MAX_DOH_HOSTS = 64  # addresses in the BPF program (each costs a few instructions; the kernel caps at 4096)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A device seen at ``ip`` (None: MAC only); the DHCP fields are None unless sent."""

    mac: str
    ip: str | None
    source: str  # arp | dhcp | ndp | neigh | sweep | dns
    interface: str | None = None
    hostname: str | None = None
    client_id: str | None = None
    vendor_class: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Bypass:
    """A LAN device contacting a resolver other than Guardian directly."""

    mac: str
    ip: str
    server: str
    port: int
    kind: str  # dns | dot | doh
    name: str | None = None  # the query name (plain DNS only)

    def detail(self) -> str:
        what = {"dns": "DNS query", "dot": "DNS-over-TLS connection", "doh": "DNS-over-HTTPS connection"}[self.kind]
        text = f"{what} to {self.server} port {self.port}, not through Guardian"
        return text + (f" (asked {self.name})" if self.name else "")


@dataclass(frozen=True, slots=True)
class DohAnswer:
    """A DNS answer naming a known DoH resolver's addresses."""

    name: str
    addresses: tuple[str, ...]


Found = Sighting | Bypass | DohAnswer


def capture_filter(own: Iterable[str], doh_hosts: Collection[str] = ()) -> str:
    """The BPF program text. ``own``: Guardian's addresses (queries to them are not bypass).

    TCP is matched on the SYN alone (one packet per connection); the IPv6 TCP test reads
    the fixed header (next header 6, flags at byte 53), as libpcap's ``tcp[]`` is IPv4-only.
    """
    own = sorted(set(own))
    not_own_dst = "".join(f" and not dst host {a}" for a in own)
    not_own_src = "".join(f" and not src host {a}" for a in own)
    tcp_ports = "(53 or 853)"
    v6_ports = "(ip6[42:2] == 53 or ip6[42:2] == 853)"
    parts = [
        "arp",
        "(udp and (port 67 or port 68))",
        "(icmp6 and ip6[40] >= 133 and ip6[40] <= 136)",  # RS, RA, NS, NA
        f"(udp and dst port 53{not_own_dst})",
        f"(udp and src port 53{not_own_src})",
        f"(ip and tcp and dst port {tcp_ports} and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn{not_own_dst})",
        f"(ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02 and {v6_ports}{not_own_dst})",
    ]
    hosts = sorted(doh_hosts)[:MAX_DOH_HOSTS]
    if hosts:
        v4 = [h for h in hosts if ":" not in h]
        v6 = [h for h in hosts if ":" in h]
        if v4:
            parts.append("(ip and tcp dst port 443 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst host ("
                         + " or ".join(v4) + "))")
        if v6:
            parts.append("(ip6 and ip6[6] == 6 and ip6[42:2] == 443 and ip6[53] & 0x12 == 0x02 and dst host ("
                         + " or ".join(v6) + "))")
    return " or ".join(parts)


def _address(text: object) -> str | None:
    """A unicast address a device can hold, in normal form; None for 0.0.0.0, ::, multicast."""
    try:
        addr = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or str(addr) == "255.255.255.255":
        return None
    return str(addr)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ").strip()
    return value[:100] or None


def _dhcp(pkt: Ether, iface: str | None) -> Sighting | None:
    bootp = pkt[BOOTP]
    mac = normal_mac(bytes(bootp.chaddr[:6]).hex())
    if mac is None or not is_device_mac(mac):
        return None
    options: dict[str, object] = {}
    for opt in pkt[DHCP].options:
        if isinstance(opt, tuple) and len(opt) >= 2:
            options[str(opt[0])] = opt[1] if len(opt) == 2 else list(opt[1:])
    msg = options.get("message-type")
    ip: str | None = None
    if bootp.op == 1:  # from the client: its address if it has one, else the one it asks for
        ip = _address(bootp.ciaddr) or (_address(options.get("requested_addr")) if msg == 3 else None)
    elif msg == 5:  # the server's ACK: the lease is the client's now
        ip = _address(bootp.yiaddr)
    else:
        return None
    client_id = options.get("client_id")
    prl = options.get("param_req_list")
    fingerprint = None
    if isinstance(prl, list | bytes):
        fingerprint = ",".join(str(int(x)) for x in prl)
    elif isinstance(prl, int):
        fingerprint = str(prl)
    if bootp.op != 1:  # the server's ACK says nothing of the client's own options
        return Sighting(mac, ip, "dhcp", iface)
    return Sighting(
        mac, ip, "dhcp", iface,
        hostname=_text(options.get("hostname")),
        client_id=client_id.hex() if isinstance(client_id, bytes) else _text(client_id),
        vendor_class=_text(options.get("vendor_class_id")),
        fingerprint=fingerprint,
    )


def _ndp(pkt: Ether, src_mac: str, iface: str | None) -> Sighting | None:
    ip6 = pkt[IPv6]
    lladdr: str | None = None
    ip: str | None = _address(ip6.src)
    if ICMPv6NDOptSrcLLAddr in pkt:
        lladdr = pkt[ICMPv6NDOptSrcLLAddr].lladdr
    if ICMPv6ND_NA in pkt:
        ip = _address(pkt[ICMPv6ND_NA].tgt)  # the address being advertised
        if ICMPv6NDOptDstLLAddr in pkt:
            lladdr = pkt[ICMPv6NDOptDstLLAddr].lladdr
    elif ICMPv6ND_NS in pkt and ip is None:
        ip = _address(pkt[ICMPv6ND_NS].tgt)  # duplicate address detection: the address it is taking
    mac = normal_mac(lladdr) if lladdr else src_mac
    if mac is None or not is_device_mac(mac):
        return None
    return Sighting(mac, ip, "ndp", iface)


def _dns_name(dns: DNS) -> str | None:
    try:
        qd = dns.qd
        if qd is None:
            return None
        name = qd[0].qname if hasattr(qd, "__getitem__") else qd.qname
    except (IndexError, AttributeError):
        return None
    text = _text(name)
    return text.rstrip(".").lower() if text else None


def _doh_answer(dns: DNS, is_doh: DohNames) -> DohAnswer | None:
    name = _dns_name(dns)
    if not name or not is_doh(name):
        return None
    found = []
    for i in range(int(dns.ancount or 0)):
        try:
            rr = dns.an[i]
        except (IndexError, TypeError):
            break
        if getattr(rr, "type", None) in (1, 28):
            addr = _address(rr.rdata)
            if addr:
                found.append(addr)
    return DohAnswer(name, tuple(found)) if found else None


class DohNames:
    """Known DoH resolver names (the bypass list): a name matches itself and its subdomains."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(n.strip().lower().rstrip(".") for n in names if n.strip())

    def __call__(self, name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.names for i in range(len(labels)))


def read_frame(data: bytes, iface: str | None, own_macs: Collection[str], own_ips: Collection[str],
               is_doh: DohNames, doh_hosts: Collection[str]) -> list[Found]:
    """Everything ``data`` (an Ethernet frame) shows. Frames sent by Guardian itself show no
    device or bypass, but a DNS answer it relays still teaches DoH addresses."""
    _load_scapy()
    pkt = Ether(data)
    src_mac = normal_mac(pkt.src or "") or ""
    ours = src_mac in own_macs
    found: list[Found] = []
    if ARP in pkt:
        arp = pkt[ARP]
        mac = normal_mac(arp.hwsrc or "")
        if not ours and mac and is_device_mac(mac) and arp.op in (1, 2):
            found.append(Sighting(mac, _address(arp.psrc), "arp", iface))
        return found
    if DHCP in pkt and BOOTP in pkt:
        sighting = _dhcp(pkt, iface)
        if sighting is not None and (not ours or pkt[BOOTP].op == 2):
            found.append(sighting)
        return found
    if IPv6 in pkt and (ICMPv6ND_NS in pkt or ICMPv6ND_NA in pkt or ICMPv6ND_RS in pkt or ICMPv6ND_RA in pkt):
        if not ours:
            nd = _ndp(pkt, src_mac, iface)
            if nd is not None:
                found.append(nd)
        return found
    net = pkt[IP] if IP in pkt else pkt[IPv6] if IPv6 in pkt else None
    if net is None:
        return found
    src, dst = _address(net.src), _address(net.dst)
    if UDP in pkt and pkt[UDP].sport == 53 and DNS in pkt and pkt[DNS].qr == 1:
        answer = _doh_answer(pkt[DNS], is_doh)
        if answer is not None:
            found.append(answer)
        return found
    if ours or src is None or dst is None or src in own_ips or dst in own_ips or not is_device_mac(src_mac):
        return found
    if UDP in pkt and pkt[UDP].dport == 53:
        if DNS in pkt and pkt[DNS].qr == 0:
            found.append(Bypass(src_mac, src, dst, 53, "dns", _dns_name(pkt[DNS])))
    elif TCP in pkt:
        port = int(pkt[TCP].dport)
        flags = int(pkt[TCP].flags)
        if flags & 0x12 != 0x02:
            return found
        if port in (53, 853):
            found.append(Bypass(src_mac, src, dst, port, "dns" if port == 53 else "dot"))
        elif port == 443 and dst in doh_hosts:
            found.append(Bypass(src_mac, src, dst, port, "doh"))
    if found:
        found.append(Sighting(src_mac, src, "dns", iface))
    return found
