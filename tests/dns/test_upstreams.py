"""Upstream kinds, failover, serve-stale and spoofing defences, seen through real clients."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from fakedns import EncryptedFakeDns, FakeDns
from support import dig


@pytest.fixture
def encrypted(upstream, tmp_path):
    upstream.zone["dns.test"] = [("A", "127.0.0.1")]
    front = EncryptedFakeDns(upstream, tmp_path).start()
    yield front
    front.stop()


def test_dns_over_tls_with_certificate_check(make_guardian, encrypted):
    g = make_guardian([f"tls://dns.test@127.0.0.1:{encrypted.dot_port}"], tls_ca_file=encrypted.ca_file)
    for name in ("example.com", "kids.example", "only-v4.example"):
        assert dig(g.port(), name).status == "NOERROR"
    assert dig(g.port("6"), "example.com", server="::1", tcp=True).values == ["93.184.216.34"]
    assert encrypted.connections["dot"] == 1  # one kept-alive connection carried them all


def test_dot_with_the_wrong_certificate_name_is_not_trusted(make_guardian, encrypted):
    g = make_guardian([f"tls://other.test@127.0.0.1:{encrypted.dot_port}"], tls_ca_file=encrypted.ca_file)
    started = time.monotonic()
    assert dig(g.port(), "example.com").status == "SERVFAIL"
    assert time.monotonic() - started < 3
    assert not [q for q in encrypted.fake.queries if q[0] == "dot"]


def test_dns_over_https_with_keepalive(make_guardian, encrypted):
    g = make_guardian([f"https://dns.test@127.0.0.1:{encrypted.doh_port}/dns-query"], tls_ca_file=encrypted.ca_file)
    for name in ("example.com", "kids.example", "only-v4.example", "www.example.com"):
        assert dig(g.port(), name).status == "NOERROR"
    assert dig(g.port(), "example.com", "AAAA", tool="kdig").values == ["2606:2800:220:1::248"]
    assert encrypted.doh_requests == 5
    assert encrypted.connections["doh"] == 1


def test_doh_name_is_found_through_the_bootstrap_resolver(make_guardian, upstream, encrypted):
    from guardian.addresses import parse_upstream

    g = make_guardian(
        [f"https://dns.test:{encrypted.doh_port}/dns-query"],
        tls_ca_file=encrypted.ca_file,
        bootstrap=(parse_upstream(upstream.url),),
    )
    assert dig(g.port(), "kids.example").values == ["198.51.100.7"]
    assert ("udp", "dns.test", "A") in upstream.queries
    assert ("doh", "kids.example", "A") in upstream.queries


def test_failover_to_the_second_upstream_within_two_seconds(make_guardian, upstream, upstream2):
    upstream.behaviour.silent = True
    g = make_guardian([upstream.url, upstream2.url])
    started = time.monotonic()
    result = dig(g.port(), "example.com")
    assert time.monotonic() - started < 2.0
    assert result.values == ["93.185.216.34"]  # upstream2's answer
    for name in ("www.example.com", "only-v4.example"):  # failures on different names in a row
        dig(g.port(), name)
    # The dead upstream is now skipped: the next new name does not wait for it.
    started = time.monotonic()
    assert dig(g.port(), "kids.example").values == ["198.51.100.7"]
    assert time.monotonic() - started < 0.5


def test_a_recovered_upstream_is_used_again(make_guardian, upstream, upstream2):
    upstream.behaviour.silent = True
    g = make_guardian([upstream.url, upstream2.url])
    for name in ("example.com", "www.example.com", "kids.example"):
        dig(g.port(), name)
    assert not g.daemon.pipeline.pool.upstreams[0].up
    upstream.behaviour.silent = False
    time.sleep(1.6)  # the background probe retries after 1 s
    assert dig(g.port(), "only-v4.example").status == "NOERROR"
    assert ("udp", "only-v4.example", "A") in upstream.queries


def test_serve_stale_when_every_upstream_fails(make_guardian, upstream):
    upstream.behaviour.ttl = 1
    g = make_guardian([upstream.url])
    assert dig(g.port(), "example.com").answers[0][1] == 1
    upstream.behaviour.silent = True
    time.sleep(1.2)
    stale = dig(g.port(), "example.com")
    assert stale.status == "NOERROR"
    assert stale.answers == [("example.com", 30, "A", "93.184.216.34")]


def test_servfail_within_three_seconds_for_unknown_names_when_all_fail(make_guardian, upstream, upstream2):
    upstream.behaviour.silent = True
    upstream2.behaviour.silent = True
    g = make_guardian([upstream.url, upstream2.url])
    started = time.monotonic()
    assert dig(g.port(), "never-seen.example").status == "SERVFAIL"
    assert time.monotonic() - started < 3.0


def test_spoofed_and_mismatched_replies_are_ignored(make_guardian, upstream):
    upstream.behaviour.spoof_first = True
    g = make_guardian([upstream.url])
    result = dig(g.port(), "example.com")
    assert result.values == ["93.184.216.34"]
    assert "6.6.6.6" not in result.text
    pool = g.daemon.pipeline.pool
    assert pool.upstreams[0].spoofed >= 2


def test_truncated_upstream_answer_is_retried_over_tcp(make_guardian, upstream):
    upstream.behaviour.truncate_udp = True
    g = make_guardian([upstream.url])
    assert dig(g.port(), "kids.example").values == ["198.51.100.7"]
    transports = [q[0] for q in upstream.queries if q[1] == "kids.example"]
    assert transports == ["udp", "tcp"]


def test_identical_queries_in_flight_are_merged(make_guardian, upstream):
    upstream.behaviour.delay = 0.5
    g = make_guardian([upstream.url])
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: dig(g.port(), "kids.example"), range(10)))
    assert all(r.values == ["198.51.100.7"] for r in results)
    assert len([q for q in upstream.queries if q[1] == "kids.example"]) == 1


def test_tcp_upstream(make_guardian, upstream):
    g = make_guardian([upstream.url.replace("udp://", "tcp://")])
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]
    assert [q[0] for q in upstream.queries] == ["tcp"]


def test_ipv6_upstream(make_guardian):
    fake = FakeDns(zone={"v6.example": [("A", "192.0.2.66")]}, host="::1").start()
    try:
        assert fake.url.startswith("udp://[::1]:")
        g = make_guardian([fake.url])
        assert dig(g.port(), "v6.example").values == ["192.0.2.66"]
        assert ("udp", "v6.example", "A") in fake.queries
        assert {address for address, _port in fake.senders} == {"::1"}  # asked over IPv6, from loopback
    finally:
        fake.stop()


def test_one_slow_name_does_not_mark_the_upstream_down(make_guardian, upstream):
    upstream.replies["slow.child-zone.example"] = lambda _data: None  # never answered
    g = make_guardian([upstream.url])
    pool = g.daemon.pipeline.pool
    events: list[tuple[str, str, str]] = []
    pool.on_event = lambda *event: events.append(event)
    for _ in range(3):  # the same slow name, asked again and again
        assert dig(g.port(), "slow.child-zone.example").status == "SERVFAIL"
    assert pool.upstreams[0].up
    assert events == []  # no "every upstream is down" for the parents
    started = time.monotonic()
    assert dig(g.port(), "kids.example").values == ["198.51.100.7"]
    assert time.monotonic() - started < 0.5


def test_an_upstream_failing_for_several_names_is_marked_down(make_guardian, upstream):
    g = make_guardian([upstream.url])
    pool = g.daemon.pipeline.pool
    events: list[tuple[str, str, str]] = []
    pool.on_event = lambda *event: events.append(event)
    upstream.behaviour.silent = True
    for name in ("a.example", "b.example", "c.example"):
        assert dig(g.port(), name).status == "SERVFAIL"
    assert not pool.upstreams[0].up
    assert [(kind, severity) for kind, _message, severity in events] == [("upstream", "high")]
    assert "every upstream is down" in events[0][1]
