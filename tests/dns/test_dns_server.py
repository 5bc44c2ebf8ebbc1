"""What a device on the network sees: real dig/kdig queries against Guardian on loopback."""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from support import dig


@pytest.mark.parametrize("family", ["4", "6"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dig_gets_the_upstream_answer(make_guardian, upstream, family, tcp):
    g = make_guardian([upstream.url])
    server = "127.0.0.1" if family == "4" else "::1"
    result = dig(g.port(family, "tcp" if tcp else "udp"), "example.com", server=server, tcp=tcp)
    assert result.status == "NOERROR"
    assert result.values == ["93.184.216.34"]
    assert {"qr", "rd", "ra"} <= result.flags


def test_kdig_aaaa_and_nxdomain_with_soa(make_guardian, upstream):
    g = make_guardian([upstream.url])
    six = dig(g.port(), "example.com", "AAAA", tool="kdig")
    assert six.values == ["2606:2800:220:1::248"]
    missing = dig(g.port(), "no-such-name.example.com")
    assert missing.status == "NXDOMAIN"
    assert "AUTHORITY SECTION" in missing.text and "SOA" in missing.text


def test_cache_answers_repeat_queries_and_ttl_counts_down(make_guardian, upstream):
    g = make_guardian([upstream.url])
    first = dig(g.port(), "example.com")
    time.sleep(2.1)
    second = dig(g.port(), "EXAMPLE.com")  # names are case-insensitive
    assert second.values == first.values
    assert [q for q in upstream.queries if q[1] == "example.com"] == [("udp", "example.com", "A")]
    assert first.answers[0][1] == 300
    assert 296 <= second.answers[0][1] <= 298
    assert "EXAMPLE.com." in second.text  # the client's spelling is echoed (0x20)


def test_negative_answers_are_cached_per_rfc2308(make_guardian, upstream):
    g = make_guardian([upstream.url])
    for _ in range(3):
        assert dig(g.port(), "gone.example.org").status == "NXDOMAIN"
    assert len([q for q in upstream.queries if q[1] == "gone.example.org"]) == 1


def test_cname_chain_is_passed_through(make_guardian, upstream):
    g = make_guardian([upstream.url])
    result = dig(g.port(), "www.example.com")
    assert ("www.example.com", 300, "CNAME", "example.com") in result.answers


def test_big_answer_truncated_over_udp_then_dig_retries_over_tcp(make_guardian, upstream):
    g = make_guardian([upstream.url])
    # 100 A records: ~1.7 kB, more than 512 bytes (no EDNS) and more than 1232.
    plain = dig(g.port(), "big.example", extra=("+noedns", "+ignore"))
    assert "tc" in plain.flags and plain.answers == []
    sized = dig(g.port(), "big.example", extra=("+bufsize=1232", "+ignore"))
    assert "tc" in sized.flags
    retried = dig(g.port(), "big.example")  # dig falls back to TCP by itself on TC
    assert len(retried.answers) == 100


def test_edns_answer_fits_in_what_the_client_advertised(make_guardian, upstream):
    g = make_guardian([upstream.url])
    result = dig(g.port(), "big.example", extra=("+bufsize=4096",))
    assert len(result.answers) == 100 and "tc" not in result.flags
    assert "udp: 1232" in result.text  # Guardian's own advertised size


def test_local_name_answers_with_the_box_address(make_guardian, upstream):
    g = make_guardian([upstream.url])
    result = dig(g.port(), "guardian.lan")
    assert result.values == ["127.0.0.1"] and "aa" in result.flags
    six = dig(g.port("6"), "guardian.lan", "AAAA", server="::1")
    assert six.values == ["::1"]
    assert not [q for q in upstream.queries if "guardian.lan" in q[1]]


def test_any_is_answered_minimally(make_guardian, upstream):
    g = make_guardian([upstream.url])
    result = dig(g.port(), "example.com", "ANY")
    assert result.status == "NOERROR"
    assert [a[2] for a in result.answers] == ["HINFO"]
    assert '"RFC8482"' in result.text
    assert not upstream.queries


def test_clients_outside_allow_clients_are_refused(make_guardian, upstream):
    g = make_guardian([upstream.url], allow_clients=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")))
    assert dig(g.port(), "example.com").status == "NOERROR"
    stranger = dig(g.port(), "example.com", source="127.0.0.9")
    assert stranger.status == "REFUSED" and stranger.answers == []


def test_rate_limit_refuses_a_flooding_client_and_spares_the_others(make_guardian, upstream):
    g = make_guardian([upstream.url], rate_limit=60)  # 60 a minute, burst 60
    port = g.port()
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.3", 0))
    flooder.settimeout(2)
    rcodes = []
    for _i in range(80):
        flooder.sendto(DNSRecord.question("example.com").pack(), ("127.0.0.1", port))
        rcodes.append(DNSRecord.parse(flooder.recv(4096)).header.rcode)
    flooder.close()
    assert rcodes[:60] == [RCODE.NOERROR] * 60
    assert rcodes[60:] == [RCODE.REFUSED] * 20
    assert dig(port, "example.com", source="127.0.0.4").status == "NOERROR"


def _raw_udp(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def test_malformed_queries_get_formerr_or_are_dropped(make_guardian, upstream):
    g = make_guardian([upstream.url])
    port = g.port()
    assert _raw_udp(port, b"\x12", timeout=0.5) is None  # not even a header: dropped
    two_questions = DNSRecord.question("a.example")
    two_questions.add_question(DNSRecord.question("b.example").q)
    reply = DNSRecord.parse(_raw_udp(port, two_questions.pack()))
    assert reply.header.rcode == RCODE.FORMERR
    bad_label = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x05ab"  # label runs past the end
    reply = _raw_udp(port, bad_label)
    assert reply is not None and reply[:2] == b"\x00\x07" and reply[3] & 0x0F == RCODE.FORMERR
    notify = struct.pack(">HHHHHH", 8, 4 << 11, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01"
    reply = _raw_udp(port, notify)
    assert reply is not None and reply[3] & 0x0F == RCODE.NOTIMP
    assert dig(port, "example.com").values == ["93.184.216.34"]  # and it still serves


def test_tcp_many_queries_per_connection_with_split_writes(make_guardian, upstream):
    g = make_guardian([upstream.url])
    names = ["example.com", "kids.example", "only-v4.example"]
    with socket.create_connection(("127.0.0.1", g.port(proto="tcp")), timeout=3) as s:
        stream = b""
        for i, name in enumerate(names):
            q = DNSRecord.question(name)
            q.header.id = 100 + i
            packed = q.pack()
            stream += len(packed).to_bytes(2, "big") + packed
        for i in range(0, len(stream), 3):  # length prefixes split across writes
            s.sendall(stream[i : i + 3])
            time.sleep(0.002)
        got = {}
        buf = b""
        while len(got) < 3:
            buf += s.recv(4096)
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                size = int.from_bytes(buf[:2], "big")
                msg = DNSRecord.parse(buf[2 : 2 + size])
                buf = buf[2 + size :]
                got[msg.header.id] = (str(msg.q.qname).rstrip("."), [str(r.rdata) for r in msg.rr])
    assert got[100] == ("example.com", ["93.184.216.34"])
    assert got[101] == ("kids.example", ["198.51.100.7"])
    assert got[102] == ("only-v4.example", ["198.51.100.8"])


def test_tcp_idle_connections_are_closed_and_the_cap_holds(make_guardian, upstream):
    g = make_guardian([upstream.url], tcp_idle_seconds=0.5, tcp_max_connections=3)
    port = g.port(proto="tcp")
    idle = socket.create_connection(("127.0.0.1", port), timeout=3)
    time.sleep(1.0)
    assert idle.recv(10) == b""  # the server closed it
    idle.close()
    held = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(3)]
    extra = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        assert extra.recv(10) == b""  # over the cap: closed at once
    except ConnectionResetError:
        pass
    finally:
        extra.close()
        for s in held:
            s.close()
    time.sleep(0.2)
    assert dig(port, "example.com", tcp=True).values == ["93.184.216.34"]


def test_a_reload_applies_new_tcp_limits_to_the_next_connections(make_guardian, upstream):
    import dataclasses

    g = make_guardian([upstream.url], tcp_max_connections=256)
    port = g.port(proto="tcp")
    settings = g.daemon.settings
    g.call(g.daemon.reload(dataclasses.replace(settings, dns=dataclasses.replace(settings.dns, tcp_max_connections=1))))
    held = socket.create_connection(("127.0.0.1", port), timeout=3)
    extra = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        assert extra.recv(10) == b""  # over the new cap of 1: closed at once
    except ConnectionResetError:
        pass
    finally:
        extra.close()
        held.close()


def test_a_reload_that_cannot_bind_changes_nothing(make_guardian, upstream):
    import dataclasses

    from guardian.errors import GuardianError

    g = make_guardian([upstream.url])
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        settings = g.daemon.settings
        wanted = dataclasses.replace(settings.dns, listen=(("127.0.0.1", busy.getsockname()[1]),), rate_limit=5)
        pipeline = g.daemon.pipeline
        with pytest.raises(GuardianError, match="cannot listen"):
            g.call(g.daemon.reload(dataclasses.replace(settings, dns=wanted)))
    finally:
        busy.close()
    assert g.daemon.settings is settings and g.daemon.pipeline is pipeline  # nothing half-applied
    for _ in range(10):  # the old rate limit (off) still holds, on the old listeners
        assert dig(g.port(), "example.com").status == "NOERROR"


def test_query_ids_and_source_ports_vary_upstream(make_guardian, upstream):
    g = make_guardian([upstream.url])
    seen_ids = set()
    original = upstream.answer

    def spy(data: bytes, transport: str):
        seen_ids.add(DNSRecord.parse(data).header.id)
        return original(data, transport)

    upstream.answer = spy
    for i in range(20):
        dig(g.port(), f"n{i}.example.net")
    assert len(seen_ids) >= 18  # random 16-bit IDs: collisions are rare
    ports = [port for _address, port in upstream.senders]
    assert len(ports) == 20
    assert len(set(ports)) >= 8  # spread over the pool's sockets, each on its own random port
    assert max(ports.count(port) for port in ports) <= 10


def test_servfail_from_upstream_is_passed_on_not_cached(make_guardian, upstream):
    g = make_guardian([upstream.url])
    upstream.behaviour.servfail = True
    assert dig(g.port(), "example.com").status == "SERVFAIL"
    upstream.behaviour.servfail = False
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]


def test_answer_question_type_matches(make_guardian, upstream):
    g = make_guardian([upstream.url])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        q = DNSRecord.question("example.com", "AAAA")
        s.sendto(q.pack(), ("127.0.0.1", g.port()))
        reply = DNSRecord.parse(s.recv(4096))
    assert reply.header.id == q.header.id
    assert QTYPE[reply.q.qtype] == "AAAA"
    assert [str(r.rdata) for r in reply.rr] == ["2606:2800:220:1::248"]


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (sending ``drip`` a byte every 0.2 s), or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(10) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if sent < len(drip):
            try:
                sock.sendall(drip[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            sent += 1
    return None


def test_a_client_dripping_a_message_byte_by_byte_is_cut_off(make_guardian, upstream):
    g = make_guardian([upstream.url], tcp_idle_seconds=10, tcp_message_seconds=1.0)
    port = g.port(proto="tcp")
    packed = DNSRecord.question("example.com").pack()
    message = len(packed).to_bytes(2, "big") + packed
    with socket.create_connection(("127.0.0.1", port), timeout=3) as slow:
        took = _closed_within(slow, 4.0, drip=message[:-1])  # a byte every 0.2 s never completes it
    assert took is not None and took < 2.0, took
    # A client that sends whole messages keeps its connection for the idle time.
    with socket.create_connection(("127.0.0.1", port), timeout=3) as fine:
        fine.sendall(message)
        assert len(fine.recv(4096)) > 2
        assert _closed_within(fine, 1.5) is None
    assert dig(port, "example.com", tcp=True).values == ["93.184.216.34"]


def test_one_client_cannot_hold_every_tcp_slot(make_guardian, upstream):
    g = make_guardian([upstream.url], tcp_max_connections=256, tcp_max_per_client=3)
    port = g.port(proto="tcp")
    held = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(3)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=3)
        with extra:
            assert _closed_within(extra, 1.0) is not None  # its fourth: closed at once
        assert dig(port, "example.com", tcp=True, source="127.0.0.2").values == ["93.184.216.34"]  # others still get in
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert dig(port, "example.com", tcp=True).values == ["93.184.216.34"]  # and the first again, once it let go
