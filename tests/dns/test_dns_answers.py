"""What Guardian does to upstream answers before a device sees them: rebinding
protection, SVCB/HTTPS targets, malformed names, and the TTLs of filtered profiles.

Real dig queries against a Guardian on loopback; the fake upstream answers what a
hostile or broken zone would.
"""

from __future__ import annotations

import struct

import pytest
from dnslib import HTTPS, QTYPE, RR, A, DNSRecord
from support import dig

from guardian.config import parse
from guardian.errors import ConfigError

HOUSEHOLD = """
data_dir: {var}
{dns}
household:
  default_profile: Adult
  local_domain: box.example
  profiles:
    - name: Child
      categories: [adult]
      deny: [blocked-target.example]
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
"""

PRIVATE_V4 = ["192.168.1.1", "10.1.2.3", "172.16.0.1", "172.31.255.254", "127.0.0.1", "169.254.1.1", "0.0.0.0",
              "100.64.0.1"]
PRIVATE_V6 = ["fc00::1", "fd12:3456::1", "fe80::1", "::1", "::", "::ffff:c0a8:101", "::ffff:7f00:1",  # ::ffff:192.168.1.1
              "64:ff9b::a00:1"]  # NAT64 of 10.0.0.1
CHILD, ADULT = "127.0.0.2", "127.0.0.1"


REBIND_ALLOW = "dns:\n  rebind_allow: [fritz.box, Home.Example.NET.]"


def start(make_guardian, upstream, tmp_path, dns: str = ""):
    config = HOUSEHOLD.format(var=tmp_path / "var", dns=dns)
    return make_guardian([upstream.url], config=config)


def test_private_addresses_for_public_names_are_dropped(make_guardian, upstream, tmp_path):
    for i, address in enumerate(PRIVATE_V4):
        upstream.zone[f"rebind{i}.example"] = [("A", address)]
    for i, address in enumerate(PRIVATE_V6):
        upstream.zone[f"rebind6-{i}.example"] = [("AAAA", address)]
    upstream.zone["mixed.example"] = [("A", "192.168.1.1"), ("A", "93.184.216.34")]
    upstream.zone["cdn.example"] = [("CNAME", "router.example"), ("A", "192.168.0.1")]
    g = start(make_guardian, upstream, tmp_path, REBIND_ALLOW)
    port = g.port()
    for i, address in enumerate(PRIVATE_V4):
        for source in (CHILD, ADULT):  # every profile: rebinding is not a parental rule
            result = dig(port, f"rebind{i}.example", source=source)
            assert result.status == "NOERROR", (address, result.text)
            assert result.answers == [], (address, result.text)
    for i, address in enumerate(PRIVATE_V6):
        result = dig(port, f"rebind6-{i}.example", "AAAA")
        assert result.status == "NOERROR" and result.answers == [], (address, result.text)
    assert dig(port, "mixed.example").values == ["93.184.216.34"]  # the public address stays
    assert dig(port, "cdn.example").values == ["router.example"]  # the CNAME stays, the address goes
    assert dig(port, "example.com").values == ["93.184.216.34"]  # public answers are untouched
    # From the cache too: a second ask gets the same filtered answer.
    assert dig(port, "mixed.example").values == ["93.184.216.34"]


def test_the_households_own_names_keep_their_private_addresses(make_guardian, upstream, tmp_path):
    own = {
        "fritz.box": "192.168.178.1",  # dns.rebind_allow
        "nas.fritz.box": "192.168.178.20",  # its subdomains
        "printer.home.example.net": "10.0.0.9",  # allow entries are names in any spelling
        "router.lan": "192.168.1.1",  # the box's own domain (guardian.lan)
        "nas.home.arpa": "192.168.1.5",  # RFC 8375's home network domain
        "nas": "192.168.1.6",  # a single-label LAN name
        "printer.box.example": "192.168.1.7",  # the household's local_domain (its DHCP domain)
    }
    for name, address in own.items():
        upstream.zone[name] = [("A", address)]
    upstream.zone["evilfritz.box"] = [("A", "192.168.178.1")]  # not a subdomain of fritz.box
    g = start(make_guardian, upstream, tmp_path, REBIND_ALLOW)
    for name, address in own.items():
        assert dig(g.port(), name, source=CHILD).values == [address], name
    assert dig(g.port(), "evilfritz.box").answers == []


def test_rebind_allow_is_checked_with_file_and_line(tmp_path):
    text = "dns:\n  rebind_allow:\n    - fritz.box\n    - 'not a name!'\n"
    with pytest.raises(ConfigError) as err:
        parse(text, "g.yaml", base=tmp_path)
    assert any(p.startswith("g.yaml:4:") and "rebind_allow" in p for p in err.value.problems), err.value.problems
    settings = parse("dns:\n  rebind_allow: fritz.box\n  filtered_max_ttl: 120\n", "g.yaml", base=tmp_path)
    assert settings.dns.rebind_allow == ("fritz.box",)
    assert settings.dns.filtered_max_ttl == 120
    with pytest.raises(ConfigError) as err:
        parse("dns:\n  filtered_max_ttl: 0\n", "g.yaml", base=tmp_path)
    assert any(p.startswith("g.yaml:2:") for p in err.value.problems), err.value.problems


def _https_reply(target: str):
    def reply(data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        out = request.reply()
        out.add_answer(RR(request.q.qname, QTYPE.HTTPS, ttl=300, rdata=HTTPS.fromZone(["1", target + ".", "alpn=h2"])))
        return out.pack()
    return reply


def test_private_address_hints_in_https_records_are_dropped(make_guardian, upstream, tmp_path):
    def reply(data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        out = request.reply()
        out.add_answer(RR(request.q.qname, QTYPE.HTTPS, ttl=300, rdata=HTTPS.fromZone(
            ["1", ".", "alpn=h2", "ipv4hint=192.168.1.1,93.184.216.34", "ipv6hint=fe80::1"])))
        return out.pack()
    upstream.replies["hint.example"] = reply
    g = start(make_guardian, upstream, tmp_path)
    result = dig(g.port(), "hint.example", "HTTPS")
    answer = result.text.split("ANSWER SECTION")[-1]
    assert "ipv4hint=93.184.216.34" in answer and "alpn" in answer, result.text
    assert "192.168.1.1" not in answer and "ipv6hint" not in answer


def test_an_https_record_pointing_at_a_blocked_name_is_blocked(make_guardian, upstream, tmp_path):
    upstream.replies["front.example"] = _https_reply("edge.blocked-target.example")
    upstream.replies["fine.example"] = _https_reply("edge.fine-cdn.example")
    g = start(make_guardian, upstream, tmp_path)
    blocked = dig(g.port(), "front.example", "HTTPS", source=CHILD)
    assert blocked.status == "NXDOMAIN", blocked.text
    assert "blocked-target" not in blocked.text.split("ANSWER SECTION")[-1]
    adult = dig(g.port(), "front.example", "HTTPS", source=ADULT)
    assert adult.status == "NOERROR" and "edge.blocked-target.example" in adult.text
    assert "edge.fine-cdn.example" in dig(g.port(), "fine.example", "HTTPS", source=CHILD).text


def _self_pointer(data: bytes) -> bytes:
    """An answer whose record owner name is a compression pointer to itself."""
    request = DNSRecord.parse(data)
    out = request.reply()
    out.add_answer(RR(request.q.qname, QTYPE.A, ttl=300, rdata=A("93.184.216.34")))
    packed = bytearray(out.pack())
    at = _question_end(bytes(packed))
    packed[at : at + 2] = struct.pack(">H", 0xC000 | at)
    return bytes(packed)


def _question_end(packet: bytes) -> int:
    pos = 12
    while packet[pos]:
        pos += 1 + packet[pos]
    return pos + 5


def test_a_malformed_name_in_an_upstream_answer_is_servfail_and_not_cached(make_guardian, upstream, tmp_path):
    upstream.replies["loop.example"] = _self_pointer
    g = start(make_guardian, upstream, tmp_path)
    for _ in range(2):
        result = dig(g.port(), "loop.example")
        assert result.status == "SERVFAIL", result.text
    assert len([q for q in upstream.queries if q[1] == "loop.example"]) == 2  # nothing was cached
    assert dig(g.port(), "example.com").values == ["93.184.216.34"]


def test_filtered_profiles_get_short_ttls(make_guardian, upstream, tmp_path):
    upstream.behaviour.ttl = 86_400
    g = start(make_guardian, upstream, tmp_path)
    child = dig(g.port(), "example.com", source=CHILD)
    assert child.values == ["93.184.216.34"] and child.answers[0][1] == 300
    again = dig(g.port(), "example.com", source=CHILD)  # from the cache: still capped
    assert again.answers[0][1] <= 300
    assert dig(g.port(), "example.com", source=ADULT).answers[0][1] > 86_000  # Adult filters nothing


def test_filtered_max_ttl_is_configurable(make_guardian, upstream, tmp_path):
    upstream.behaviour.ttl = 86_400
    g = start(make_guardian, upstream, tmp_path, "dns:\n  filtered_max_ttl: 120")
    assert dig(g.port(), "example.com", source=CHILD).answers[0][1] == 120
