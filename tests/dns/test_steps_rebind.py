"""The rebinding screen on its own: a public name's upstream answer loses its private,
loopback, link-local and CGNAT addresses (NODATA when none is left), while the
household's own names (single labels, LAN domains, the box's domain, dns.rebind_allow)
keep theirs."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from dnslib import AAAA, CNAME, HTTPS, QTYPE, RCODE, RR, A, DNSRecord

from guardian.dns.chain import Query
from guardian.dns.rebind import Rebind

PRIVATE_V4 = ["192.168.1.1", "10.1.2.3", "172.16.0.1", "172.31.255.254", "127.0.0.1", "169.254.1.1", "0.0.0.0",
              "100.64.0.1"]
PRIVATE_V6 = ["fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "::1", "::",
              "::ffff:192.168.1.1", "::ffff:127.0.0.1", "64:ff9b::10.0.0.1"]  # IPv4-mapped and NAT64 forms
PUBLIC_V4 = ["93.184.216.34", "172.32.0.1", "100.128.0.1", "192.169.0.1", "11.0.0.1"]
PUBLIC_V6 = ["2606:2800:220:1::248", "::ffff:93.184.216.34", "64:ff9b::93.184.216.34"]

HOUSEHOLD_DOMAIN = SimpleNamespace(current=SimpleNamespace(household=SimpleNamespace(local_domain="box.example")))


def zone(records: list[tuple[str, str, str]], ad: bool = False, additional: list[tuple[str, str, str]] = ()):
    """An upstream answer of (owner, type, value) records; ``owner`` "" is the question's name."""

    def reply(q: Query) -> bytes:
        request = DNSRecord.parse(q.data)
        out = request.reply()
        out.header.ad = int(ad)
        rdata = {"A": A, "AAAA": lambda v: AAAA(ipaddress.ip_address(v).exploded), "CNAME": CNAME}
        for owner, rtype, value in records:
            out.add_answer(RR(owner or request.q.qname, getattr(QTYPE, rtype), ttl=300, rdata=rdata[rtype](value)))
        for owner, rtype, value in additional:
            out.add_ar(RR(owner, getattr(QTYPE, rtype), ttl=300, rdata=rdata[rtype](value)))
        return bytes(out.pack())

    return reply


def values(reply: DNSRecord) -> list[tuple[str, str]]:
    return [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr]


@pytest.mark.parametrize(("qtype", "address"), [("A", a) for a in PRIVATE_V4] + [("AAAA", a) for a in PRIVATE_V6])
def test_a_public_name_loses_a_private_address_and_is_answered_nodata(query, fake_next, run, qtype, address):
    step = Rebind()
    q = query("attacker.example", qtype)
    reply = run(step.resolve(q, fake_next(zone([("", qtype, address)]), upstream=True)))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    assert reply.header.id == DNSRecord.parse(q.data).header.id
    assert q.reply is not None and q.reply.an == 0  # what the cache above keeps: the screened answer
    assert step.dropped == 1


@pytest.mark.parametrize(("qtype", "address"), [("A", a) for a in PUBLIC_V4] + [("AAAA", a) for a in PUBLIC_V6])
def test_a_public_address_passes_untouched(query, fake_next, run, qtype, address):
    step = Rebind()
    q = query("example.com", qtype)
    nxt = fake_next(zone([("", qtype, address)], ad=True), upstream=True)
    out = step.resolve(q, nxt)
    assert out == nxt.answer(q)  # the very bytes, AD bit included
    assert values(run(out)) == [(qtype, str(ipaddress.ip_address(address)))]
    assert step.dropped == 0


def test_only_the_private_records_go_and_the_answer_no_longer_claims_validation(query, fake_next, run):
    step = Rebind()
    q = query("mixed.example")
    upstream = zone([("", "A", "192.168.1.1"), ("", "A", "93.184.216.34")], ad=True)
    reply = run(step.resolve(q, fake_next(upstream, upstream=True)))
    assert values(reply) == [("A", "93.184.216.34")] and reply.header.ad == 0
    assert q.reply is not None and q.reply.an == 1 and q.reply.min_ttl == 300
    assert len(q.ttls or []) == 1  # the TTL positions follow the screened answer (for the TTL cap)


def test_a_cname_into_a_private_address_keeps_the_cname_and_loses_the_address(query, fake_next, run):
    q = query("cdn.example")
    upstream = zone([("", "CNAME", "router.example."), ("router.example.", "A", "192.168.0.1")])
    reply = run(Rebind().resolve(q, fake_next(upstream, upstream=True)))
    assert values(reply) == [("CNAME", "router.example.")]
    assert q.cnames == ("router.example",)  # the policy above still checks the chain


def test_private_addresses_in_the_additional_section_go_too(query, fake_next, run):
    q = query("example.com", "NS")
    upstream = zone([], additional=[("ns1.example.com.", "A", "10.0.0.53"), ("ns2.example.com.", "A", "93.184.216.53")])
    reply = run(Rebind().resolve(q, fake_next(upstream, upstream=True)))
    assert [str(rr.rdata) for rr in reply.ar] == ["93.184.216.53"]


def test_private_hints_in_an_https_record_go_and_the_rest_of_it_stays(query, fake_next, run):
    def upstream(q: Query) -> bytes:
        out = DNSRecord.parse(q.data).reply()
        out.add_answer(RR(out.q.qname, QTYPE.HTTPS, ttl=300, rdata=HTTPS.fromZone(
            ["1", ".", "alpn=h2", "ipv4hint=192.168.1.1,93.184.216.34", "ipv6hint=fe80::1"])))
        return bytes(out.pack())

    reply = run(Rebind().resolve(query("hint.example", "HTTPS"), fake_next(upstream, upstream=True)))
    [rr] = reply.rr
    text = rr.rdata.toZone()
    assert "alpn=h2" in text and "93.184.216.34" in text
    assert "192.168.1.1" not in text and "ipv6hint" not in text  # a hint left empty goes


@pytest.mark.parametrize(
    "name",
    [
        "nas",  # a single-label LAN name
        "router.lan", "printer.home.arpa", "tv.local", "nas.home", "pi.internal", "box.localdomain",
        "fritz.box", "wlan.fritz.box",  # dns.rebind_allow and its subdomains
        "nas.home.example.net",  # the parent domain of a local name (guardian.home.example.net)
        "box.example", "cam.box.example",  # the household's local_domain
    ],
)
def test_the_households_own_names_keep_their_private_addresses(query, fake_next, run, name):
    step = Rebind(allow=["Fritz.Box."], local_names=["guardian.home.example.net"], holder=HOUSEHOLD_DOMAIN)
    q = query(name)
    nxt = fake_next(zone([("", "A", "192.168.1.10")]), upstream=True)
    out = step.resolve(q, nxt)
    assert out == nxt.answer(q) and values(run(out)) == [("A", "192.168.1.10")]
    assert step.dropped == 0


@pytest.mark.parametrize("name", ["notfritz.box", "fritz.box.attacker.example", "lan.attacker.example", "example.net"])
def test_an_allowed_domain_covers_its_subdomains_only(query, fake_next, run, name):
    step = Rebind(allow=["fritz.box"], local_names=["guardian.home.example.net"], holder=HOUSEHOLD_DOMAIN)
    reply = run(step.resolve(query(name), fake_next(zone([("", "A", "192.168.1.10")]), upstream=True)))
    assert reply.rr == [] and step.dropped == 1


def test_an_answer_that_did_not_come_from_upstream_is_left_alone(query, fake_next, run):
    q = query("attacker.example")
    nxt = fake_next(zone([("", "A", "192.168.1.1")]))  # no query.reply: not an upstream answer
    assert Rebind().resolve(q, nxt) == nxt.answer(q)


def test_an_answer_on_its_way_is_screened_when_it_arrives(query, fake_next, run):
    step = Rebind()
    pending = step.resolve(query("attacker.example"), fake_next(zone([("", "A", "10.0.0.1")]), wait=True, upstream=True))
    assert not isinstance(pending, bytes)
    assert run(pending).rr == [] and step.dropped == 1


def test_private_hints_in_an_additional_https_record_go_too(query, fake_next, run):
    # An alias-mode HTTPS answer may carry its target's ServiceMode record as additional data.
    def upstream(q: Query) -> bytes:
        out = DNSRecord.parse(q.data).reply()
        out.add_answer(RR(out.q.qname, QTYPE.HTTPS, ttl=300, rdata=HTTPS.fromZone(["0", "pool.example."])))
        out.add_ar(RR("pool.example.", QTYPE.HTTPS, ttl=300, rdata=HTTPS.fromZone(
            ["1", ".", "alpn=h2", "ipv4hint=192.168.1.1,93.184.216.34"])))
        return bytes(out.pack())

    step = Rebind()
    reply = run(step.resolve(query("svc.example", "HTTPS"), fake_next(upstream, upstream=True)))
    [extra] = reply.ar
    text = extra.rdata.toZone()
    assert "93.184.216.34" in text and "192.168.1.1" not in text
    assert step.dropped == 1
