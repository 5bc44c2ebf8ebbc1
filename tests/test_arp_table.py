"""The IPv4 neighbour table (/proc/net/arp) is read by one parser, with one filter, for
both its users: the DNS side naming the device a query came from, and discovery's
registry. An entry the kernel has not completed (flags without ATF_COM) names nobody."""

from __future__ import annotations

from pathlib import Path

from guardian.discovery.neighbours import read_arp
from guardian.dns.steps.policy import Neighbours

TABLE = ("IP address       HW type     Flags       HW address            Mask     Device\n"
         "192.168.1.2      0x1         0x2         B8:27:EB:12:34:56     *        eth0\n"
         "192.168.1.3      0x1         0x0         b8:27:eb:12:34:57     *        eth0\n"  # not complete
         "192.168.1.4      0x1         0x0         00:00:00:00:00:00     *        eth0\n"
         "192.168.1.5      0x1         0x6         b8:27:eb:12:34:58     *        wlan0\n")


def test_both_users_read_the_same_entries(tmp_path: Path) -> None:
    path = tmp_path / "arp"
    path.write_text(TABLE)
    dns = Neighbours(str(path))
    named = {ip: dns.mac(ip) for ip in ("192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5")}
    assert named == {"192.168.1.2": "b8:27:eb:12:34:56", "192.168.1.3": None, "192.168.1.4": None,
                     "192.168.1.5": "b8:27:eb:12:34:58"}
    seen = {s.ip: s.mac for s in read_arp(TABLE)}
    assert seen == {ip: mac for ip, mac in named.items() if mac is not None}
