"""Guard on its own: strangers refused, floods refused, ANY answered without the chain."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import QTYPE, RCODE

from guardian.dns.steps.guard import Guard

HOME = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("fd00::/8"), ipaddress.ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(
    ("client", "passes"),
    [
        ("192.168.1.20", True),
        ("127.0.0.1", True),
        ("fd00::20", True),
        ("::ffff:192.168.1.20", True),  # IPv4-mapped form of a household address
        ("fe80::1%eth0", False),
        ("203.0.113.9", False),  # a stranger on the WAN side
        ("::ffff:203.0.113.9", False),
        ("not-an-address", False),
    ],
)
def test_only_household_clients_reach_the_chain(query, fake_next, run, client, passes):
    guard, nxt = Guard(HOME, rate_limit=0), fake_next()
    q = query("example.com", client=client)
    reply = run(guard.resolve(q, nxt))
    assert (len(nxt.seen) == 1) is passes
    if passes:
        assert nxt.seen[0] is q and reply.a.rdata is not None
    else:
        assert reply.header.rcode == RCODE.REFUSED and q.rcode == RCODE.REFUSED and q.source == "guard"
        assert guard.refused_acl == 1


def test_a_flooding_client_is_refused_once_its_bucket_is_empty_and_others_still_pass(query, fake_next, run):
    guard, nxt = Guard(HOME, rate_limit=5), fake_next()
    codes = []
    for i in range(7):
        q = query(f"n{i}.example", client="192.168.1.20")
        q.received = 1000.0  # all in the same instant
        codes.append(run(guard.resolve(q, nxt)).header.rcode)
    assert codes == [RCODE.NOERROR] * 5 + [RCODE.REFUSED] * 2
    assert guard.refused_rate == 2 and len(nxt.seen) == 5
    other = query("example.com", client="192.168.1.21")
    other.received = 1000.0
    assert run(guard.resolve(other, nxt)).header.rcode == RCODE.NOERROR
    later = query("again.example", client="192.168.1.20")
    later.received = 1000.0 + 12.0  # 5 a minute: one token back after 12 s
    assert run(guard.resolve(later, nxt)).header.rcode == RCODE.NOERROR


def test_any_is_answered_minimally_without_the_chain(query, fake_next, run):
    guard, nxt = Guard(HOME, rate_limit=0), fake_next()
    q = query("example.com", "ANY")
    reply = run(guard.resolve(q, nxt))
    assert nxt.seen == [] and q.source == "guard"
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["HINFO"]  # RFC 8482
