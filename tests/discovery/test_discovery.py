"""Discovery's pure parts: MACs and makers, neighbour tables, frames, identity, the registry file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from guardian.config import Settings
from guardian.discovery import devices_report
from guardian.discovery.neighbours import read_arp, read_ip_neigh
from guardian.discovery.packets import Bypass, DohAnswer, DohNames, Sighting, capture_filter, read_frame
from guardian.discovery.persist import read_rows, save_rows
from guardian.discovery.registry import HOSTNAME_QUIET, Device, Registry
from guardian.discovery.vendors import Vendors, is_device_mac, is_random, normal_mac
from guardian.store.db import open_database
from guardian.store.records import DB_NAME

PI = "b8:27:eb:12:34:56"
OWN_MAC = "02:00:00:00:00:01"
OWN = {"10.0.0.1", "fd00::1"}
DOH = DohNames(["dns.google", "cloudflare-dns.com"])


@pytest.fixture
def vendors(tmp_path: Path) -> Vendors:
    oui = tmp_path / "oui.txt"
    oui.write_text("OUI/MA-L\nB8-27-EB   (hex)\t\tRaspberry Pi Foundation\nB827EB     (base 16)\t\tRaspberry Pi\n")
    return Vendors((oui,))


@pytest.mark.parametrize(("text", "mac"), [("B8-27-EB-12-34-56", PI), ("b827.eb12.3456", PI), ("nope", None)])
def test_normal_mac(text: str, mac: str | None) -> None:
    assert normal_mac(text) == mac


def test_private_and_device_macs_and_makers(vendors: Vendors, tmp_path: Path) -> None:
    assert is_random("da:a1:19:00:00:01") and not is_random(PI)
    assert not is_device_mac("ff:ff:ff:ff:ff:ff") and not is_device_mac("33:33:00:00:00:01")
    assert vendors.vendor(PI) == "Raspberry Pi Foundation"
    assert vendors.vendor("da:a1:19:00:00:01") == "unknown"
    assert Vendors((tmp_path / "missing.txt",)).vendor(PI) == "unknown"  # no package: degrade


def test_real_ieee_data_when_installed() -> None:
    path = Path("/usr/share/ieee-data/oui.txt")
    if not path.exists():
        pytest.fail("Debian's ieee-data is not installed (make test-debs installs it)")
    assert Vendors((path,)).vendor(PI) == "Raspberry Pi Foundation"


def test_neighbour_tables() -> None:
    arp = ("IP address       HW type     Flags       HW address            Mask     Device\n"
           "10.0.0.2         0x1         0x2         b8:27:eb:12:34:56     *        eth0\n"
           "10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0\n"
           "10.9.0.3         0x1         0x2         b8:27:eb:12:34:57     *        wlan0\n")
    assert read_arp(arp, ["eth0"]) == [Sighting(PI, "10.0.0.2", "neigh", "eth0")]
    v6 = ("fe80::1 dev eth0 lladdr b8:27:eb:12:34:56 router REACHABLE\n"
          "fd00::9 dev eth0 FAILED\nfd00::2 dev eth0 lladdr b8:27:eb:12:34:56 STALE\n")
    assert [s.ip for s in read_ip_neigh(v6)] == ["fe80::1", "fd00::2"]


def frame(pkt: object) -> list[object]:
    return list(read_frame(bytes(pkt), "eth0", {OWN_MAC}, OWN, DOH, {"8.8.8.8"}))  # type: ignore[call-overload]


def test_frames_to_sightings_and_bypasses() -> None:
    assert frame(Ether(src=PI, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PI, psrc="10.0.0.2", pdst="10.0.0.1")) == [
        Sighting(PI, "10.0.0.2", "arp", "eth0")]
    assert frame(Ether(src=PI) / ARP(op=1, hwsrc=PI, psrc="0.0.0.0", pdst="10.0.0.2")) == [
        Sighting(PI, None, "arp", "eth0")]  # an ARP probe: no address yet
    assert frame(Ether(src=OWN_MAC, dst=PI) / ARP(op=2, hwsrc=OWN_MAC, psrc="10.0.0.1")) == []  # Guardian itself
    na = (Ether(src=PI) / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_NA(tgt="fd00::2")
          / ICMPv6NDOptDstLLAddr(lladdr=PI))
    assert frame(na) == [Sighting(PI, "fd00::2", "ndp", "eth0")]
    query = Ether(src=PI) / IP(src="10.0.0.2", dst="1.1.1.1") / UDP(sport=5555, dport=53) / DNS(qd=DNSQR(qname="a.b"))
    assert frame(query)[0] == Bypass(PI, "10.0.0.2", "1.1.1.1", 53, "dns", "a.b")
    to_us = Ether(src=PI) / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=5555, dport=53) / DNS(qd=DNSQR(qname="a"))
    assert frame(to_us) == []
    dot = Ether(src=PI) / IP(src="10.0.0.2", dst="9.9.9.9") / TCP(sport=4444, dport=853, flags="S")
    assert frame(dot)[0] == Bypass(PI, "10.0.0.2", "9.9.9.9", 853, "dot")
    assert frame(Ether(src=PI) / IP(src="10.0.0.2", dst="9.9.9.9") / TCP(dport=853, flags="A")) == []
    doh = Ether(src=PI) / IP(src="10.0.0.2", dst="8.8.8.8") / TCP(sport=4444, dport=443, flags="S")
    assert frame(doh)[0] == Bypass(PI, "10.0.0.2", "8.8.8.8", 443, "doh")
    assert frame(Ether(src=PI) / IP(src="10.0.0.2", dst="8.8.4.4") / TCP(dport=443, flags="S")) == []


def test_doh_addresses_learned_from_answers() -> None:
    answer = (Ether(src=OWN_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=53, dport=5555)
              / DNS(qr=1, qd=DNSQR(qname="dns.google"), an=DNSRR(rrname="dns.google", rdata="8.8.4.4")))
    assert frame(answer) == [DohAnswer("dns.google", ("8.8.4.4",))]
    assert DOH("chrome.cloudflare-dns.com") and not DOH("example.com")


def test_capture_filter_compiles() -> None:
    from scapy.arch.common import compile_filter

    for text in (capture_filter(OWN), capture_filter(OWN, {"8.8.8.8", "2001:4860::8888"})):
        assert compile_filter(text, linktype=1).bf_len > 10


def test_identity_follows_addresses_and_private_macs(vendors: Vendors) -> None:
    reg = Registry(vendors)
    pi, new = reg.see(Sighting(PI, "10.0.0.2", "arp"), 100.0)
    assert new and pi.vendor == "Raspberry Pi Foundation"
    assert reg.see(Sighting(PI, "fd00::2", "ndp"), 101.0) == (pi, False)  # IPv4 + IPv6: one device
    other, _ = reg.see(Sighting("b8:27:eb:00:00:09", "10.0.0.2", "dhcp"), 102.0)  # the lease moved
    assert pi.ips() == ["fd00::2"] and other.ips() == ["10.0.0.2"]
    phone, _ = reg.see(Sighting("da:00:00:00:00:01", "10.0.0.5", "dhcp", client_id="ff01", hostname="Phone"), 103.0)
    again, new = reg.see(Sighting("de:00:00:00:00:02", "10.0.0.6", "dhcp", client_id="ff01"), 104.0)
    assert again is phone and not new and phone.macs == ["da:00:00:00:00:01"] and phone.random_mac
    # Same hostname from a new private MAC: the same phone only once the old MAC went quiet.
    busy, new = reg.see(Sighting("d2:00:00:00:00:03", "10.0.0.7", "dhcp", hostname="phone"), 105.0)
    assert new and busy is not phone
    later, new = reg.see(Sighting("d6:00:00:00:00:04", None, "dhcp", hostname="Phone"), 104.0 + HOSTNAME_QUIET + 1)
    assert later is phone and not new
    # A global MAC is never merged by hostname.
    assert reg.see(Sighting("b8:27:eb:00:00:0a", None, "dhcp", hostname="Phone"), 2000.0)[1]


def save(engine: Any, changed: list[Device]) -> None:
    snapshots = Registry.snapshot(changed)
    for (d, _values, _addresses), device_id in zip(snapshots, save_rows(engine, [(d.id, v, a) for d, v, a in snapshots]),
                                                   strict=True):
        d.id = device_id


def test_registry_saved_loaded_and_reported(tmp_path: Path, vendors: Vendors) -> None:
    db = open_database(tmp_path / DB_NAME)
    reg = Registry(vendors, identify=lambda ip, mac, host: ("Sam's Pi", "Child") if mac == PI else (None, None))
    reg.see(Sighting(PI, "10.0.0.2", "dhcp", hostname="sams-pi"), 100.0)
    reg.see(Sighting("da:00:00:00:00:01", "10.0.0.5", "arp"), 101.0)
    changed = reg.take_dirty()
    reg.refresh_names(changed)
    save(db.engine, changed)
    reg.see(Sighting("da:00:00:00:00:01", "10.0.0.2", "arp"), 102.0)  # the address moves
    save(db.engine, reg.take_dirty())
    again = Registry(vendors)
    again.load_rows(*read_rows(db.engine))
    db.close()
    assert {d.mac: d.ips() for d in again.devices()} == {PI: [], "da:00:00:00:00:01": ["10.0.0.2", "10.0.0.5"]}
    listed = json.loads(devices_report(Settings(data_dir=tmp_path, timezone="UTC"), as_json=True))
    assert [d["mac"] for d in listed] == ["da:00:00:00:00:01", PI]
    pi = listed[1]
    assert (pi["name"], pi["profile"], pi["hostname"], pi["random_mac"]) == ("Sam's Pi", "Child", "sams-pi", False)
    assert set(pi) >= {"name", "mac", "ips", "hostname", "vendor", "random_mac", "first_seen", "last_seen", "profile"}
    assert "private (random) MAC" in devices_report(Settings(data_dir=tmp_path, timezone="UTC"))


def test_report_without_a_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "none", timezone="UTC")
    assert devices_report(settings) == "no devices seen yet"
    assert devices_report(settings, as_json=True) == "[]"
    assert not (tmp_path / "none").exists()
