"""The local-names step on its own: the box answers for its own names (the dashboard's
``guardian.lan``) with its addresses, TTL 60, and hands every other name on."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from guardian.dns.steps.local import LOCAL_TTL, LocalNames

BOX = ["192.168.1.2", "fd00::2"]


def records(reply) -> list[tuple[str, str, int]]:
    return [(QTYPE[rr.rtype], str(rr.rdata), rr.ttl) for rr in reply.rr]


@pytest.mark.parametrize(("qtype", "expected"), [("A", "192.168.1.2"), ("AAAA", "fd00::2")])
def test_the_box_answers_its_own_name_with_its_address(query, fake_next, run, qtype, expected):
    step, nxt = LocalNames(["guardian.lan"], BOX), fake_next()
    q = query("guardian.lan", qtype)
    reply = run(step.resolve(q, nxt))
    assert nxt.seen == [] and q.source == "local"
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa  # the box is the authority for its names
    assert records(reply) == [(qtype, expected, LOCAL_TTL)] and LOCAL_TTL == 60


def test_names_match_without_case_or_trailing_dot_and_the_question_is_echoed(query, fake_next, run):
    step, nxt = LocalNames(["Guardian.LAN.", "kidnet.home.arpa"], BOX), fake_next()
    for name in ("GUARDIAN.lan", "guardian.lan.", "KidNet.Home.Arpa"):
        reply = run(step.resolve(query(name), nxt))
        assert records(reply) == [("A", "192.168.1.2", 60)]
        assert str(reply.q.qname).rstrip(".") == name.rstrip(".")  # as the device asked it (0x20)
    assert nxt.seen == []


def test_every_fixed_address_of_the_family_is_given(query, fake_next, run):
    step = LocalNames(["guardian.lan"], ["192.168.1.2", "10.0.0.2", "fd00::2"])
    assert [r[1] for r in records(run(step.resolve(query("guardian.lan"), fake_next())))] == ["192.168.1.2", "10.0.0.2"]


def test_a_family_the_box_has_no_address_in_is_nodata(query, fake_next, run):
    step, nxt = LocalNames(["guardian.lan"], ["192.168.1.2"]), fake_next()
    q = query("guardian.lan", "AAAA")
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == [] and nxt.seen == [] and q.source == "local"


@pytest.mark.parametrize("qtype", ["MX", "TXT", "HTTPS", "SRV"])
def test_other_types_of_the_boxs_name_are_nodata_not_nxdomain(query, fake_next, run, qtype):
    step, nxt = LocalNames(["guardian.lan"], BOX), fake_next()
    q = query("guardian.lan", qtype)
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []  # the name exists
    assert nxt.seen == [] and q.source == "local"


@pytest.mark.parametrize("name", ["example.com", "www.guardian.lan", "guardian.lan.example", "guardian", "lan"])
def test_every_other_name_goes_on_down_the_chain(query, fake_next, run, name):
    step, nxt = LocalNames(["guardian.lan"], BOX), fake_next()
    q = query(name)
    reply = run(step.resolve(q, nxt))
    assert nxt.seen == [q] and q.source == ""
    assert [str(rr.rdata) for rr in reply.rr] == ["93.184.216.34"]  # nxt's answer, untouched


def test_without_local_names_nothing_is_answered_locally(query, fake_next, run):
    step, nxt = LocalNames([], BOX), fake_next()
    run(step.resolve(query("guardian.lan"), nxt))
    assert len(nxt.seen) == 1


@pytest.mark.parametrize(("client", "qtype", "expected"),
                         [("127.0.0.1", "A", "127.0.0.1"), ("::1", "AAAA", "::1"), ("127.0.0.1", "AAAA", "::1")])
def test_without_fixed_addresses_a_device_gets_the_address_it_reaches_the_box_on(query, fake_next, run, client, qtype,
                                                                                  expected):
    # The kernel's choice of source address towards the client (a real UDP socket on loopback).
    step = LocalNames(["guardian.lan"])
    reply = run(step.resolve(query("guardian.lan", qtype, client=client), fake_next()))
    assert records(reply) == [(qtype, expected, 60)]
