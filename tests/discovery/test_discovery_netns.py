"""Discovery on a real (namespaced) wire: ARP, DHCP, NDP, a bypassing DNS query, a sweep.

Topology, all in network namespaces this module creates (never a real interface):

    client (c0 b8:27:eb:12:34:56, 10.77.0.2, fd77::2) ─┐
    silent (s0 b8:27:eb:00:00:50, 10.77.0.50, no IPv6) ─┴─ br0 in "guardian" (10.77.0.1, fd77::1)
    rogue resolver (r0 10.78.0.2) ─────────────────────── gr in "guardian" (10.78.0.1), which routes

Guardian's discovery runs inside the guardian namespace as ``python -m guardian.discovery``.
Needs root and ``ip netns``: without them these tests fail (they are the acceptance tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardian.config import Settings
from guardian.discovery import devices_report

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
CLIENT_MAC = "b8:27:eb:12:34:56"  # Raspberry Pi Foundation's OUI
SILENT_MAC = "b8:27:eb:00:00:50"
PHONE_MAC_1 = "da:a1:19:00:00:01"  # locally administered: a private address
PHONE_MAC_2 = "de:ad:19:00:00:02"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class Net:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.g, self.c, self.s, self.r = (f"guardian-t-{tag}{x}" for x in "gcsr")

    def ns(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", name, *args, check=check)

    def build(self) -> None:
        g, c, s, r = self.g, self.c, self.s, self.r
        for name in (g, c, s, r):
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        # The silent host must say nothing by itself: no IPv6 (no DAD, RS or MLD).
        for key in ("all", "default"):
            self.ns(s, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        # Interfaces are created inside the namespaces: the machine's own never changes.
        sh("ip", "-n", g, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sh("ip", "-n", g, "link", "add", "gc", "type", "veth", "peer", "name", "c0", "netns", c)
        sh("ip", "-n", g, "link", "add", "gs", "type", "veth", "peer", "name", "s0", "netns", s)
        sh("ip", "-n", g, "link", "add", "gr", "type", "veth", "peer", "name", "r0", "netns", r)
        sh("ip", "-n", c, "link", "set", "c0", "address", CLIENT_MAC)
        sh("ip", "-n", s, "link", "set", "s0", "address", SILENT_MAC)
        for port in ("gc", "gs"):
            sh("ip", "-n", g, "link", "set", port, "master", "br0")
            sh("ip", "-n", g, "link", "set", port, "up")
        sh("ip", "-n", g, "addr", "add", "10.77.0.1/24", "dev", "br0")
        sh("ip", "-n", g, "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
        sh("ip", "-n", g, "addr", "add", "10.78.0.1/24", "dev", "gr")
        for dev in ("br0", "gr"):
            sh("ip", "-n", g, "link", "set", dev, "up")
        self.ns(g, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", c, "addr", "add", "10.77.0.2/24", "dev", "c0")
        sh("ip", "-n", c, "addr", "add", "fd77::2/64", "dev", "c0", "nodad")
        sh("ip", "-n", c, "link", "set", "c0", "up")
        sh("ip", "-n", c, "route", "add", "default", "via", "10.77.0.1")
        sh("ip", "-n", s, "addr", "add", "10.77.0.50/24", "dev", "s0")
        sh("ip", "-n", s, "link", "set", "s0", "up")
        sh("ip", "-n", r, "addr", "add", "10.78.0.2/24", "dev", "r0")
        sh("ip", "-n", r, "link", "set", "r0", "up")
        sh("ip", "-n", r, "route", "add", "default", "via", "10.78.0.1")

    def destroy(self) -> None:
        for name in (self.g, self.c, self.s, self.r):
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.fail("discovery tests need root (network namespaces, raw sockets): run them as root")
    net = Net()
    try:
        net.build()
        yield net
    finally:
        net.destroy()
    assert not any(n in sh("ip", "netns", "list").stdout for n in (net.g, net.c, net.s, net.r))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class Runner:
    """``python -m guardian.discovery`` inside the guardian namespace."""

    def __init__(self, net: Net, data_dir: Path, *extra: str, prefix: tuple[str, ...] = ()) -> None:
        cmd = ["ip", "netns", "exec", net.g, *prefix, PY, "-m", "guardian.discovery", "--data-dir", str(data_dir),
               "-i", "br0", "--seconds", "40", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"discovery did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def finish(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["stderr"] = err
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


CLIENT_SCRIPT = textwrap.dedent(r"""
    import socket, time
    from dnslib import DNSRecord
    from scapy.all import conf, sendp, Ether, IP, UDP, BOOTP, DHCP, IPv6, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr
    conf.verb = 0
    # Real traffic from the kernel: ARP for the gateway, NDP for fd77::1.
    for family, address in ((socket.AF_INET, "10.77.0.1"), (socket.AF_INET6, "fd77::1")):
        s = socket.socket(family, socket.SOCK_DGRAM); s.sendto(b"x", (address, 9)); s.close()
    time.sleep(0.3)

    def dhcp(mac, msg, hostname, client_id, requested):
        raw = bytes.fromhex(mac.replace(":", ""))
        opts = [("message-type", msg), ("client_id", client_id), ("hostname", hostname),
                ("vendor_class_id", b"android-dhcp-14"), ("param_req_list", [1, 3, 6, 15, 26, 28, 51, 58, 59, 43])]
        if requested:
            opts.append(("requested_addr", requested))
        return (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67) / BOOTP(chaddr=raw + b"\0" * 10, xid=0x1234)
                / DHCP(options=opts + ["end"]))

    frames = [
        dhcp("b8:27:eb:12:34:56", "discover", b"sams-pi", b"\x01\xb8\x27\xeb\x12\x34\x56", None),
        dhcp("b8:27:eb:12:34:56", "request", b"sams-pi", b"\x01\xb8\x27\xeb\x12\x34\x56", "10.77.0.2"),
        # A phone behind a private MAC, then the same phone (same client id) behind another.
        dhcp("da:a1:19:00:00:01", "request", b"Alexs-Phone", b"\xffphone-id-1", "10.77.0.60"),
        Ether(src="da:a1:19:00:00:01", dst="33:33:ff:00:00:60") / IPv6(src="fd77::60", dst="ff02::1:ff00:60")
        / ICMPv6ND_NS(tgt="fd77::1") / ICMPv6NDOptSrcLLAddr(lladdr="da:a1:19:00:00:01"),
    ]
    sendp(frames, iface="c0", inter=0.05)
    time.sleep(1.5)  # longer than the capture's repeat window: the next frames are new
    sendp([dhcp("de:ad:19:00:00:02", "request", b"Alexs-Phone", b"\xffphone-id-1", "10.77.0.61")], iface="c0")
    # A direct query to a resolver that is not Guardian.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(DNSRecord.question("example.org").pack(), ("10.78.0.2", 53))
    try:
        print("answer", len(s.recv(512)))
    except OSError as exc:
        print("no answer", exc)
""")

ROGUE_RESOLVER = textwrap.dedent(r"""
    import socket, sys
    from dnslib import DNSRecord, RR, A
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.78.0.2", 53)); s.settimeout(30)
    print("listening", flush=True)
    while True:
        try:
            data, peer = s.recvfrom(512)
        except OSError:
            sys.exit(0)
        q = DNSRecord.parse(data); r = q.reply(); r.add_answer(RR(str(q.q.qname), rdata=A("192.0.2.1")))
        s.sendto(r.pack(), peer)
""")


def by_mac(devices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["mac"]: d for d in devices}


def test_registry_from_arp_dhcp_ndp_bypass_and_sweep(net: Net, tmp_path: Path) -> None:
    rogue = subprocess.Popen(["ip", "netns", "exec", net.r, PY, "-c", ROGUE_RESOLVER], stdout=subprocess.PIPE,
                             text=True, env=env())
    runner: Runner | None = None
    try:
        assert rogue.stdout is not None and rogue.stdout.readline().strip() == "listening"
        runner = Runner(net, tmp_path, "--sweep", "--sweep-rate", "1000")
        assert runner.readline().strip().startswith("swept")
        client = net.ns(net.c, PY, "-c", CLIENT_SCRIPT)
        assert "answer" in client.stdout, client.stderr
        time.sleep(1.5)  # a capture drain and a registry flush
        result = runner.finish()
    finally:
        if runner is not None:
            runner.kill()
        rogue.kill()
        rogue.wait()
    assert result["problems"] == [], result["stderr"]
    devices = by_mac(result["devices"])

    pi = devices[CLIENT_MAC]
    assert pi["vendor"] == "Raspberry Pi Foundation"
    assert pi["hostname"] == "sams-pi"
    assert pi["random_mac"] is False
    assert "10.77.0.2" in pi["ips"] and "fd77::2" in pi["ips"]  # one device on IPv4 and IPv6
    assert pi["fingerprint"] == "1,3,6,15,26,28,51,58,59,43"
    assert pi["vendor_class"] == "android-dhcp-14"

    # The phone's second private MAC is the same phone: identity moved with the client id.
    assert PHONE_MAC_1 not in devices
    phone = devices[PHONE_MAC_2]
    assert phone["random_mac"] is True and phone["vendor"] == "unknown"
    assert phone["previous_macs"] == [PHONE_MAC_1]
    assert phone["hostname"] == "Alexs-Phone"
    assert set(phone["ips"]) >= {"10.77.0.61", "fd77::60"}

    # The silent host said nothing but its answer to the sweep (which the capture saw too).
    silent = devices[SILENT_MAC]
    assert silent["ips"] == ["10.77.0.50"] and "sweep" in silent["sources"]
    assert set(silent["sources"]) <= {"sweep", "arp"}
    assert result["swept"] >= 2

    kinds = [(e["kind"], e["mac"]) for e in result["events"]]
    for mac in (CLIENT_MAC, SILENT_MAC, PHONE_MAC_1):
        assert kinds.count(("new-device", mac)) == 1, kinds
    assert ("new-device", PHONE_MAC_2) not in kinds  # recognised: not new
    bypass = [e for e in result["events"] if e["kind"] == "bypass"]
    assert len(bypass) == 1, bypass
    assert bypass[0]["mac"] == CLIENT_MAC and bypass[0]["ip"] == "10.77.0.2"
    assert "10.78.0.2 port 53" in bypass[0]["detail"] and "example.org" in bypass[0]["detail"]

    # The CLI reads the same registry from the database.
    settings = Settings(data_dir=tmp_path, timezone="UTC")
    listed = by_mac(json.loads(devices_report(settings, as_json=True)))
    assert set(listed) == set(devices)
    assert listed[CLIENT_MAC]["hostname"] == "sams-pi"
    assert listed[PHONE_MAC_2]["random_mac"] is True
    assert sorted(listed[CLIENT_MAC]["ips"]) == sorted(pi["ips"])
    text = devices_report(settings)
    assert "sams-pi" in text and "private (random) MAC" in text


def test_without_cap_net_raw_discovery_degrades_to_the_neighbour_table(net: Net, tmp_path: Path) -> None:
    # Make sure the guardian namespace's kernel has a neighbour entry for the client.
    net.ns(net.c, "python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
           ".sendto(b'x', ('10.77.0.1', 9))")
    runner = Runner(net, tmp_path, "--sweep", prefix=("setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"))
    try:
        assert runner.readline().strip() == "swept 0"
        time.sleep(1.5)
        result = runner.finish()
    finally:
        runner.kill()
    problems = " ".join(result["problems"])
    assert "passive discovery is off" in problems and "CAP_NET_RAW" in problems
    assert "ARP sweeps are off" in problems
    assert result["stderr"].count("passive discovery is off") == 1  # said once
    devices = by_mac(result["devices"])
    assert devices[CLIENT_MAC]["sources"] == ["neigh"] and "10.77.0.2" in devices[CLIENT_MAC]["ips"]


FLOOD_SCRIPT = textwrap.dedent(r"""
    import sys, time
    from scapy.all import conf, Ether, ARP
    conf.verb = 0
    count, seconds = int(sys.argv[1]), float(sys.argv[2])
    frames = [bytes(Ether(src="b8:27:eb:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255),
                          dst="ff:ff:ff:ff:ff:ff")
                    / ARP(op=1, hwsrc="b8:27:eb:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255),
                          psrc="10.77.%d.%d" % (1 + (i >> 8) % 200, i & 255), pdst="10.77.0.1"))
              for i in range(count)]
    sock = conf.L2socket(iface="c0")
    start = time.monotonic(); sent = 0
    for f in frames:  # bounded: count frames, at most `seconds`
        sock.send(f); sent += 1
        if time.monotonic() - start > seconds:
            break
    print(sent, round(time.monotonic() - start, 3))
""")


def test_capture_cpu_under_an_arp_flood_stays_bounded(net: Net, tmp_path: Path) -> None:
    runner = Runner(net, tmp_path, "--neighbour-seconds", "30", "--flush-seconds", "2")
    try:
        pid = runner.proc.pid  # ip netns exec execs the runner: same process
        time.sleep(1)
        quiet_cpu = _cpu(pid)
        time.sleep(3)
        quiet = _cpu(pid) - quiet_cpu
        flood = net.ns(net.c, PY, "-c", FLOOD_SCRIPT, "12000", "5")
        sent, seconds = flood.stdout.split()
        time.sleep(1)
        result = runner.finish()
    finally:
        runner.kill()
    cap = result["health"]["capture"]
    report = (f"quiet: {quiet:.3f} s CPU in 3 s; flood: {sent} ARP frames in {seconds} s -> capture thread "
              f"{cap['cpu_seconds']} s CPU, {cap['frames']} frames seen, {cap['parsed']} dissected, "
              f"{cap['over_rate']} over the rate limit, {result['health']['devices']} devices")
    print(report)
    (tmp_path / "cpu.txt").write_text(report)
    assert quiet < 0.3  # negligible on a quiet wire (the loop wakes 5 times a second here)
    assert cap["frames"] >= int(sent) * 0.5
    assert cap["parsed"] <= 200 * (float(seconds) + 3) + 50  # the dissection rate limit holds
    assert cap["cpu_seconds"] < float(seconds) * 0.8 + 1  # never a whole core


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]
