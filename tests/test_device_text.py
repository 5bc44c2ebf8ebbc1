"""What a device controls (its DHCP hostname and vendor class) never reaches the parent's
terminal or the daemon's log raw: ESC, BEL, CR and LF are shown escaped; JSON keeps them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from guardian.discovery.packets import Sighting, read_frame
from guardian.printable import printable

KID_MAC = "b8:27:eb:aa:bb:cc"
HOSTNAME = "kid\x1b[2J\x07pc\r\n2026-01-01 00:00:00 INFO guardian: parent password reset"
VENDOR = "evil\x1b]0;owned\x07\r\n"
RAW = ("\x1b", "\x07", "\r")


def dhcp_request() -> bytes:
    """A real DHCP REQUEST frame from the child's device, as the capture reads it."""
    pkt = (Ether(src=KID_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
           / UDP(sport=68, dport=67)
           / BOOTP(op=1, chaddr=bytes.fromhex(KID_MAC.replace(":", "")) + b"\0" * 10, xid=7)
           / DHCP(options=[("message-type", "request"), ("requested_addr", "10.0.0.7"),
                           ("hostname", HOSTNAME.encode()), ("vendor_class_id", VENDOR.encode()), "end"]))
    return bytes(pkt)


@pytest.mark.parametrize(("raw", "shown"), [
    ("sams-ipad", "sams-ipad"),
    ("a\x1b[31mb", "a\\x1b[31mb"),
    ("bell\x07", "bell\\x07"),
    ("line\r\nforged", "line\\r\\nforged"),
    ("already\\027escaped.example", "already\\027escaped.example"),  # a stored query name: as it is
    ("rtl\u202etxt.exe", "rtl\\u202etxt.exe"),
    ("Zoë's café", "Zoë's café"),
    (None, ""),
])
def test_printable_escapes_what_a_terminal_would_act_on(raw: str | None, shown: str) -> None:
    assert printable(raw) == shown


def test_a_hostile_dhcp_hostname_is_escaped_in_devices_events_and_the_log(make_guardian, upstream, tmp_path, caplog):
    sightings = list(read_frame(dhcp_request(), "eth0", {"02:00:00:00:00:01"}, {"10.0.0.1"},  # type: ignore[arg-type]
                                lambda name: False, set()))
    assert sightings == [Sighting(KID_MAC, "10.0.0.7", "dhcp", "eth0", hostname=HOSTNAME.strip(),
                                  vendor_class=VENDOR.strip(), fingerprint=None)]
    config = tmp_path / "g.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nstore:\n  flush_seconds: 0.2\n")
    g = make_guardian([upstream.url], config=config.read_text())
    discovery = g.daemon.discovery
    assert discovery is not None
    with caplog.at_level(logging.INFO, logger="guardian"):
        g.loop.call_soon_threadsafe(discovery._take, sightings)
        time.sleep(0.2)
        g.call(discovery.flush())
        time.sleep(1.0)  # the writer's flush
    announced = [r.getMessage() for r in caplog.records if f"({KID_MAC})" in r.getMessage()]
    assert announced, caplog.text
    for line in announced:
        assert not any(c in line for c in (*RAW, "\n")), repr(line)
        assert "kid\\x1b[2J\\x07pc\\r\\n2026-01-01" in line and "evil\\x1b]0;owned\\x07" in line

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "guardian", *args, "--config", str(config)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    table = cli("devices")
    assert "kid\\x1b[2J\\x07pc" in table, table
    assert not any(c in table for c in RAW), repr(table)
    assert not any("parent password reset" in line and not line.startswith("kid") for line in table.splitlines())
    events = cli("events")
    assert "kid\\x1b[2J" in events, events
    assert not any(c in events for c in RAW), repr(events)
    assert len(events.strip().splitlines()) == len(json.loads(cli("events", "--json")))  # one line per event
    listed = {d["mac"]: d for d in json.loads(cli("devices", "--json"))}
    assert listed[KID_MAC]["hostname"] == HOSTNAME.strip()  # JSON as it came: its own escaping
