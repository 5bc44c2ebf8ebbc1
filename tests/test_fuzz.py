"""Nothing a client (or an upstream) sends can crash or wedge Guardian.

10^5 packets — random bytes and mutations of valid queries — go through the whole
packet path over UDP, some more over TCP, while the upstream itself answers with a mix
of good answers, garbage and truncated replies. Afterwards Guardian must still answer
correctly, and no query may have failed through an unexpected exception.
"""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSRecord
from support import dig

PACKETS = 100_000


class MessyUpstream:
    """A fast upstream on loopback whose replies are right, wrong or broken at random."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.rng = random.Random(7)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                request = DNSRecord.parse(data)
                reply = request.reply()
                name = str(request.q.qname)
                if name.startswith("sane."):
                    reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.1")))
                    self.sock.sendto(reply.pack(), addr)
                    continue
                reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.2")))
                packed = bytearray(reply.pack())
            except Exception:  # noqa: BLE001 - dnslib's own limits; Guardian's are tested
                continue
            roll = self.rng.random()
            if roll < 0.3:
                for _ in range(self.rng.randint(1, 6)):
                    i = self.rng.randrange(2, len(packed))  # keep the ID so it is read
                    packed[i] = self.rng.randrange(256)
            elif roll < 0.5:
                packed = packed[: self.rng.randrange(2, len(packed))]
            elif roll < 0.6:
                packed = packed[:2] + bytearray(self.rng.randbytes(self.rng.randrange(0, 300)))
            self.sock.sendto(bytes(packed), addr)

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


def _queries(rng: random.Random) -> list[bytes]:
    base = []
    for i in range(200):
        q = DNSRecord.question(f"n{i}.fuzz.example", rng.choice(["A", "AAAA", "TXT", "MX", "ANY", "HTTPS", "PTR"]))
        if rng.random() < 0.5:
            q.add_ar(EDNS0(udp_len=rng.choice([0, 512, 1232, 4096, 65535]), flags=rng.choice(["", "do"])))
        base.append(bytes(q.pack()))
    return base


def _mutate(rng: random.Random, base: list[bytes]) -> bytes:
    kind = rng.random()
    if kind < 0.2:
        return rng.randbytes(rng.randrange(0, 600))
    packet = bytearray(rng.choice(base))
    if kind < 0.55:
        for _ in range(rng.randint(1, 8)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
    elif kind < 0.7:
        packet = packet[: rng.randrange(len(packet))]
    elif kind < 0.8:
        at = rng.randrange(len(packet))
        packet[at:at] = rng.randbytes(rng.randrange(1, 40))
    elif kind < 0.9:
        for offset in (4, 6, 8, 10):  # section counts: lies about what follows
            if rng.random() < 0.5:
                packet[offset : offset + 2] = rng.randrange(65536).to_bytes(2, "big")
    else:
        packet[2] = rng.randrange(256)  # flags and opcode
        packet[3] = rng.randrange(256)
    return bytes(packet)


@pytest.fixture
def messy():
    up = MessyUpstream()
    yield up
    up.stop()


def test_fuzzed_packets_never_crash_or_wedge_the_server(make_guardian, messy):
    g = make_guardian([f"udp://127.0.0.1:{messy.port}"], upstream_timeout=0.2, max_inflight=256)
    port = g.port()
    rng = random.Random(2026)
    base = _queries(rng)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    replies = 0
    started = time.monotonic()
    stats = g.daemon.server.stats
    for i in range(PACKETS):
        # Keep at most 300 packets ahead of the server: this is about input, not load.
        while i - stats.udp_queries > 300:
            time.sleep(0.0005)
        try:
            sender.sendto(_mutate(rng, base), ("127.0.0.1", port))
        except BlockingIOError:
            time.sleep(0.001)
        if i % 100 == 0:
            while True:
                try:
                    reply = sender.recv(65535)
                except BlockingIOError:
                    break
                replies += 1
                assert len(reply) >= 12
    sender.close()

    # TCP: garbage streams, half frames and valid frames over a few connections.
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", g.port(proto="tcp")), timeout=2) as s:
            for _ in range(20):
                message = _mutate(rng, base)
                s.sendall(len(message).to_bytes(2, "big") + message if rng.random() < 0.8 else message)
    elapsed = time.monotonic() - started
    time.sleep(0.5)

    result = dig(port, "sane.example")
    assert result.status == "NOERROR" and result.values == ["192.0.2.1"], result.text
    assert dig(g.port(proto="tcp"), "sane.example", tcp=True).values == ["192.0.2.1"]
    assert stats.udp_queries >= PACKETS * 0.95
    assert stats.errors == 0, "a query failed through an unexpected exception"
    assert replies > 0
    print(f"{PACKETS} packets in {elapsed:.1f}s, {replies} replies, {stats.malformed} malformed")
