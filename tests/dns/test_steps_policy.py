"""The identify and policy steps on their own, over a real policy snapshot of a small
household and a fake ``nxt``: who is asking, then blocks in each profile's block mode
(NXDOMAIN, null, block page, NODATA; TTL 10 s or the boundary's), allowed names through
nxt with the filtered profiles' TTL cap, CNAME chains into blocked names, safe-search
rewrites with the enforced host asked through nxt, budgets, and the policy's clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from guardian.dns.chain import Query
from guardian.dns.steps.local import LocalNames
from guardian.dns.steps.policy import BLOCK_TTL, Identify, Neighbours, Policy
from guardian.dns.wire import parse_query
from guardian.lists.compile import compile_snapshot
from guardian.policy.household import Override, household_from_config
from guardian.policy.lists import parse_text
from guardian.policy.matcher import ListSource, Matcher
from guardian.policy.safesearch import SafeSearch
from guardian.policy.snapshot import CategoryInfo, PolicyHolder, build_snapshot
from guardian.verdicts import Action, Reason

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()  # a Monday, UTC
BEDTIME = datetime(2026, 12, 7, 22, 0, tzinfo=UTC).timestamp()
BOX = ["192.168.1.2", "fd00::2"]

CATEGORIES = {"adult": CategoryInfo("adult", ("pornography",), "high"), "games": CategoryInfo("games", (), "low"),
              "bypass": CategoryInfo("bypass", (), "medium")}
LISTS = [(1, "adult list", "adult", "adult.example\n"), (2, "games list", "games", "games.example\n"),
         (3, "bypass list", "bypass", "doh.example\n")]
DENY = ["denied.example"]
HOUSEHOLD: dict[str, Any] = {
    "default_profile": "Guest",
    "profiles": [
        {"name": "Child", "categories": ["adult", "games"], "block_mode": "nxdomain", "deny": DENY,
         "allow": ["fine.adult.example"], "safe_search": True, "youtube": "strict",
         "schedules": [{"name": "bedtime", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                        "from": "21:00", "to": "07:00", "block": "all"}]},
        {"name": "Null", "categories": ["adult"], "block_mode": "null", "deny": DENY},
        {"name": "Page", "categories": ["adult"], "block_mode": "blockpage", "deny": DENY},
        {"name": "Shield", "categories": ["adult"], "bypass_protection": True},
        {"name": "Strict", "safe_search": True, "deny": ["forcesafesearch.google.com"]},
        {"name": "Gamer", "budgets": [{"target": "games", "minutes": 60}]},
        {"name": "Guest", "categories": []},
    ],
    "devices": [
        {"name": "tablet", "mac": "aa:bb:cc:dd:ee:01", "profile": "Child"},
        {"name": "console", "ip": "192.168.1.30", "profile": "Child"},
        {"name": "old phone", "ip": "192.168.1.31", "profile": "Null"},
        {"name": "laptop", "ip": "192.168.1.32", "profile": "Page"},
        {"name": "reader", "ip": "192.168.1.33", "profile": "Shield"},
        {"name": "teen phone", "ip": "192.168.1.34", "profile": "Strict"},
        {"name": "switch", "ip": "192.168.1.35", "profile": "Gamer"},
    ],
}
CLIENT = {"Child": "192.168.1.30", "Null": "192.168.1.31", "Page": "192.168.1.32", "Shield": "192.168.1.33",
          "Strict": "192.168.1.34", "Gamer": "192.168.1.35", "Guest": "192.168.1.99"}
SAFESEARCH = SafeSearch.from_data({"engines": [
    {"id": "google", "domains": ["www.google.com", "google.com"], "target": "forcesafesearch.google.com"},
    {"id": "youtube", "domains": ["www.youtube.com"],
     "targets": {"strict": "restrict.youtube.com", "moderate": "restrictmoderate.youtube.com"}},
]})


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(matcher, overrides=()):
    household, problems = household_from_config(HOUSEHOLD, categories=CATEGORIES, services={})
    assert problems == []
    return build_snapshot(household, matcher, zone=ZoneInfo("UTC"), safesearch=SAFESEARCH, overrides=overrides,
                          categories=CATEGORIES)


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    sources = [ListSource(i, name, category, "deny", parse_text(text)) for i, name, category, text in LISTS]
    return Matcher.load(compile_snapshot(sources, tmp_path_factory.mktemp("lists")))


@pytest.fixture
def policy_holder(matcher) -> PolicyHolder:
    return PolicyHolder(snapshot(matcher))


@pytest.fixture
def ask(query, policy_holder):
    """A query from ``profile``'s device, named as Identify names it."""

    def make(name: str, qtype: str = "A", profile: str = "Child", edns: bool = False) -> Query:
        if edns:
            request = DNSRecord.question(name, qtype)
            request.add_ar(EDNS0(udp_len=1232))
            data = bytes(request.pack())
            q = Query(data, parse_query(data), CLIENT[profile], "udp")
        else:
            q = query(name, qtype, client=CLIENT[profile])
        q.device, q.profile = policy_holder.current.resolve(q.client, None, None)
        assert q.profile is not None and q.profile.name == profile
        return q

    return make


def make_policy(holder, clock=None, **kw) -> Policy:
    return Policy(holder, LocalNames(["guardian.lan"], BOX), clock=clock or Clock(), **kw)


def answers(reply: DNSRecord) -> list[tuple[str, str, int]]:
    return [(QTYPE[rr.rtype], str(rr.rdata).rstrip("."), rr.ttl) for rr in reply.rr]


# -- blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "qtype", "rcode", "records", "soa"),
    [
        ("Child", "A", RCODE.NXDOMAIN, [], True),
        ("Child", "AAAA", RCODE.NXDOMAIN, [], True),
        ("Null", "A", RCODE.NOERROR, [("A", "0.0.0.0", 10)], False),
        ("Null", "AAAA", RCODE.NOERROR, [("AAAA", "::", 10)], False),
        ("Null", "MX", RCODE.NOERROR, [], True),  # no address to give: NODATA
        ("Page", "A", RCODE.NOERROR, [("A", "192.168.1.2", 10)], False),  # the box, where the block page is
        ("Page", "AAAA", RCODE.NOERROR, [("AAAA", "fd00::2", 10)], False),
        ("Page", "HTTPS", RCODE.NOERROR, [], True),
    ],
)
def test_a_denied_name_is_blocked_in_the_profiles_block_mode(ask, fake_next, run, policy_holder, profile, qtype,
                                                             rcode, records, soa):
    step, nxt = make_policy(policy_holder), fake_next()
    q = ask("www.denied.example", qtype, profile)
    reply = run(step.resolve(q, nxt))
    assert nxt.seen == []  # never asked upstream
    assert reply.header.rcode == rcode and q.rcode == rcode and reply.header.aa
    assert answers(reply) == records
    assert [(QTYPE[rr.rtype], rr.ttl) for rr in reply.auth] == ([("SOA", BLOCK_TTL)] if soa else [])
    assert BLOCK_TTL == 10
    assert q.source == "policy" and q.decision is not None
    assert (q.decision.action, q.decision.reason, q.decision.rule) == (Action.BLOCK, Reason.DENY, "denied.example")
    assert reply.header.id == DNSRecord.parse(q.data).header.id and str(reply.q.qname) == "www.denied.example."


def test_a_name_on_a_blocked_category_list_is_blocked_and_says_which(ask, fake_next, run, policy_holder):
    q = ask("cdn.adult.example")
    reply = run(make_policy(policy_holder).resolve(q, fake_next()))
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert q.decision is not None and (q.decision.reason, q.decision.category, q.decision.list_name) == (
        Reason.CATEGORY, "adult", "adult list")


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("use-application-dns.net", RCODE.NXDOMAIN),  # Firefox's canary: keep the network's DNS
        ("mask.icloud.com", RCODE.NXDOMAIN),  # iCloud Private Relay stays off
        ("_dns.resolver.arpa", RCODE.NOERROR),  # DDR: NODATA, no encrypted resolver to upgrade to
        ("doh.example", RCODE.NXDOMAIN),  # on the bypass list
    ],
)
def test_bypass_protection_answers_the_canaries_and_blocks_the_bypass_list(ask, fake_next, run, policy_holder, name,
                                                                           rcode):
    step, nxt = make_policy(policy_holder), fake_next()
    q = ask(name, profile="Shield")
    reply = run(step.resolve(q, nxt))
    assert nxt.seen == [] and reply.header.rcode == rcode and reply.rr == []
    assert [(QTYPE[rr.rtype], rr.ttl) for rr in reply.auth] == [("SOA", BLOCK_TTL)]
    assert q.decision is not None and q.decision.reason == Reason.BYPASS
    guest = ask(name, profile="Guest")  # without bypass protection the name is asked as any other
    run(step.resolve(guest, nxt))
    assert nxt.seen == [guest]


def test_a_block_is_reusable_for_a_second_unless_a_boundary_is_nearer(ask, fake_next, run, matcher):
    holder = PolicyHolder(snapshot(matcher))
    q = ask("denied.example")
    q.received = 100.0
    run(make_policy(holder).resolve(q, fake_next()))
    assert q.reuse_until == 101.0  # the packet cache may resend it for a second


@pytest.mark.parametrize(("left", "ttl", "reusable"), [(5.0, 5, True), (2.0, 2, False), (600.0, 10, True)])
def test_a_block_ending_soon_is_answered_with_a_ttl_that_ends_with_it(ask, fake_next, run, matcher, left,
                                                                      ttl, reusable):
    # A parent's "block this site for a while": the device must ask again once it is over.
    block = Override("block-domain", "Guest", until=NOON + left, created=NOON - 60, domain="example.org")
    holder = PolicyHolder(snapshot(matcher, [block]))
    q = ask("example.org", profile="Guest")
    q.received = 100.0
    reply = run(make_policy(holder).resolve(q, fake_next()))
    assert reply.header.rcode == RCODE.NXDOMAIN and q.decision is not None
    assert q.decision.reason == Reason.OVERRIDE_BLOCK
    assert [rr.ttl for rr in reply.auth] == [ttl]
    assert (q.reuse_until > q.received) is reusable


# -- allowed names --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "profile"), [("example.com", "Child"), ("adult.example", "Guest"),
                                               ("fine.adult.example", "Child")])  # the allow list beats the category
def test_an_allowed_name_is_answered_by_nxt_unchanged(ask, fake_next, run, policy_holder, name, profile):
    step, nxt = make_policy(policy_holder), fake_next(upstream=True)
    q = ask(name, profile=profile)
    out = step.resolve(q, nxt)
    assert nxt.seen == [q] and out == nxt.answer(q)  # no cap configured: the very bytes
    assert q.decision is not None and q.decision.action == Action.ALLOW and q.source == "upstream"


@pytest.mark.parametrize("ttls_known", [True, False])  # from the cache/upstream below, or parsed
def test_a_filtering_profile_gets_ttls_capped_and_an_unfiltered_one_does_not(ask, answer, fake_next, run,
                                                                             policy_holder, ttls_known):
    step = make_policy(policy_holder, filtered_max_ttl=300)
    nxt = fake_next(lambda q: answer(q, [("A", "93.184.216.34"), ("A", "93.184.216.35")], ttl=3_600),
                    upstream=ttls_known)
    child = run(step.resolve(ask("example.com"), nxt))
    assert [rr.ttl for rr in child.rr] == [300, 300]
    guest = run(step.resolve(ask("example.com", profile="Guest"), nxt))
    assert [rr.ttl for rr in guest.rr] == [3_600, 3_600]


@pytest.mark.parametrize("wait", [False, True])
def test_an_allowed_name_whose_cname_leads_into_a_denied_name_is_blocked(ask, answer, fake_next, run, policy_holder,
                                                                         wait):
    def upstream(q: Query) -> bytes:
        return answer(q, [("CNAME", "edge.denied.example"), ("A", "93.184.216.34")])

    step, nxt = make_policy(policy_holder), fake_next(upstream, wait=wait, upstream=True)
    q = ask("innocent.example")
    reply = run(step.resolve(q, nxt))
    assert len(nxt.seen) == 1  # asked, then judged by where it leads
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.rr == [] and q.source == "policy"
    assert q.decision is not None and q.decision.reason == Reason.DENY
    guest = ask("innocent.example", profile="Guest")
    assert answers(run(step.resolve(guest, nxt)))[0][:2] == ("CNAME", "edge.denied.example")


# -- safe search ----------------------------------------------------------------------


def rewrite_zone(answer):
    addresses = {"forcesafesearch.google.com": "216.239.38.120", "restrict.youtube.com": "216.239.38.119"}

    def upstream(q: Query) -> bytes:
        return answer(q, [("A", addresses[q.q.name])] if q.q.name in addresses else [("A", "142.250.1.1")], ttl=3_600)

    return upstream


@pytest.mark.parametrize(("name", "target", "address"), [("www.google.com", "forcesafesearch.google.com", "216.239.38.120"),
                                                         ("WWW.YouTube.com", "restrict.youtube.com", "216.239.38.119")])
def test_safe_search_answers_a_cname_to_the_enforced_host_with_its_addresses(ask, answer, fake_next, run,
                                                                             policy_holder, name, target, address):
    step, nxt = make_policy(policy_holder), fake_next(rewrite_zone(answer), upstream=True)
    q = ask(name)
    reply = run(step.resolve(q, nxt))
    [sub] = nxt.seen
    assert sub is not q and sub.q.name == target and sub.q.qtype == QTYPE.A  # the enforced host, through nxt
    assert sub.client == q.client and sub.profile is q.profile
    assert answers(reply) == [("CNAME", target, 300), ("A", address, 3_600)]
    assert str(reply.rr[0].rname) == name + "." and str(reply.q.qname) == name + "."  # the device's own case
    assert reply.header.id == DNSRecord.parse(q.data).header.id and reply.header.rcode == RCODE.NOERROR
    assert q.source == "policy" and q.decision is not None
    assert (q.decision.action, q.decision.reason, q.decision.target) == (Action.REWRITE, Reason.SAFE_SEARCH, target)


def test_safe_search_keeps_the_ttl_cap_and_echoes_edns(ask, answer, fake_next, run, policy_holder):
    step, nxt = make_policy(policy_holder, filtered_max_ttl=60), fake_next(rewrite_zone(answer), wait=True, upstream=True)
    reply = run(step.resolve(ask("www.google.com", edns=True), nxt))
    assert [rr.ttl for rr in reply.rr] == [60, 60]
    assert [rr.rtype for rr in reply.ar] == [QTYPE.OPT]


def test_a_profile_without_safe_search_gets_the_engine_as_it_is(ask, answer, fake_next, run, policy_holder):
    step, nxt = make_policy(policy_holder), fake_next(rewrite_zone(answer), upstream=True)
    q = ask("www.google.com", profile="Guest")
    assert answers(run(step.resolve(q, nxt))) == [("A", "142.250.1.1", 3_600)] and nxt.seen == [q]


def test_a_blocked_enforced_host_blocks_the_search_engine(ask, answer, fake_next, run, policy_holder):
    step, nxt = make_policy(policy_holder), fake_next(rewrite_zone(answer), upstream=True)
    q = ask("www.google.com", profile="Strict")
    reply = run(step.resolve(q, nxt))
    assert nxt.seen == [] and reply.header.rcode == RCODE.NXDOMAIN
    assert q.decision is not None and q.decision.reason == Reason.DENY


def test_an_enforced_host_whose_cname_leads_into_a_denied_name_is_blocked(ask, answer, fake_next, run, policy_holder):
    step = make_policy(policy_holder)
    nxt = fake_next(lambda q: answer(q, [("CNAME", "x.denied.example"), ("A", "192.0.2.1")]), upstream=True)
    q = ask("www.google.com")
    reply = run(step.resolve(q, nxt))
    assert len(nxt.seen) == 1 and reply.header.rcode == RCODE.NXDOMAIN and reply.rr == []
    assert q.decision is not None and q.decision.reason == Reason.DENY


# -- time: schedules and budgets ------------------------------------------------------


def test_the_schedule_follows_the_policys_clock(ask, fake_next, run, policy_holder):
    clock = Clock(NOON)
    step, nxt = make_policy(policy_holder, clock), fake_next()
    assert run(step.resolve(ask("example.com"), nxt)).header.rcode == RCODE.NOERROR
    clock.now = BEDTIME
    q = ask("example.com")
    reply = run(step.resolve(q, nxt))
    assert reply.header.rcode == RCODE.NXDOMAIN and q.decision is not None
    assert (q.decision.reason, q.decision.schedule) == (Reason.SCHEDULE, "bedtime")
    assert len(nxt.seen) == 1
    # 30 s before the window opens, an allowed answer lives 30 s: the device asks again in time.
    clock.now = BEDTIME - 3_600 - 30
    reply = run(step.resolve(ask("example.com"), fake_next(upstream=True)))
    assert [rr.ttl for rr in reply.rr] == [30]
    # And 2 s before, the answer may not even be resent by the packet cache.
    clock.now = BEDTIME - 3_600 - 2
    q = ask("example.com")
    q.reuse_until = q.received + 1
    assert [rr.ttl for rr in run(step.resolve(q, fake_next(upstream=True))).rr] == [2]
    assert q.reuse_until == 0.0


def test_a_name_counting_toward_a_budget_is_told_to_the_meter_each_time(ask, fake_next, run, policy_holder):
    seen: list[tuple[str, str, float]] = []
    step = make_policy(policy_holder, observe=lambda profile, target, now: seen.append((profile, target, now)))
    q = ask("games.example", profile="Gamer")
    q.reuse_until = 123.0
    run(step.resolve(q, fake_next(upstream=True)))
    assert seen == [("Gamer", "games", NOON)]
    assert q.reuse_until == 0.0  # each query counts: the packet cache may not answer it
    run(step.resolve(ask("example.com", profile="Gamer"), fake_next(upstream=True)))
    assert len(seen) == 1  # a name outside the budget does not count


# -- identify -------------------------------------------------------------------------


ARP = """IP address       HW type     Flags       HW address            Mask     Device
192.168.1.20     0x1         0x2         aa:bb:cc:dd:ee:01     *        eth0
192.168.1.21     0x1         0x0         00:00:00:00:00:00     *        eth0
"""


@pytest.mark.parametrize(
    ("client", "device", "profile"),
    [
        ("192.168.1.30", "console", "Child"),  # by its address
        ("192.168.1.20", "tablet", "Child"),  # by its MAC, from the kernel's ARP table
        ("::ffff:192.168.1.20", "tablet", "Child"),  # the IPv4-mapped form of the same
        ("fd00::20", "tablet", "Child"),  # by its MAC, from the IPv6 neighbour table
        ("192.168.1.21", None, "Guest"),  # an incomplete ARP entry names nobody
        ("192.168.1.99", None, "Guest"),  # a stranger gets the household's default profile
    ],
)
def test_identify_names_the_device_and_its_profile(query, fake_next, run, holder, tmp_path, client, device, profile):
    (tmp_path / "arp").write_text(ARP)
    neighbours = Neighbours(str(tmp_path / "arp"), read6=lambda: {"fd00::20": "aa:bb:cc:dd:ee:01"}, probe_wait=0)
    step, nxt = Identify(holder, neighbours), fake_next()
    q = query("example.com", client=client)
    run(step.resolve(q, nxt))
    assert nxt.seen == [q]
    assert getattr(q.device, "name", None) == device and q.profile is not None and q.profile.name == profile


def test_identify_takes_the_mac_discovery_knows_when_the_kernel_does_not(query, fake_next, run, holder, tmp_path):
    (tmp_path / "arp").write_text(ARP.splitlines()[0] + "\n")
    hints = {"192.168.1.50": ("AA:BB:CC:DD:EE:01", "tablet-host")}
    step = Identify(holder, Neighbours(str(tmp_path / "arp"), read6=dict), hint=lambda ip: hints.get(ip, (None, None)))
    q = query("example.com", client="192.168.1.50")
    run(step.resolve(q, fake_next()))
    assert getattr(q.device, "name", None) == "tablet"


class Probing:
    """Neighbour tables that do not know the client yet, and learn its MAC from a probe."""

    def __init__(self) -> None:
        self.probed: list[str] = []

    def mac(self, ip: str) -> str | None:
        return None

    def may_probe(self, ip: str) -> bool:
        return ":" in ip

    async def probe(self, ip: str) -> str | None:
        self.probed.append(ip)
        await asyncio.sleep(0)
        return "aa:bb:cc:dd:ee:01"


def test_a_new_ipv6_address_is_probed_before_the_chain_goes_on(query, fake_next, run, holder):
    neighbours = Probing()
    step, nxt = Identify(holder, neighbours), fake_next()  # type: ignore[arg-type]
    q = query("example.com", client="fd00::77")
    pending = step.resolve(q, nxt)
    assert not isinstance(pending, bytes) and nxt.seen == []  # nothing goes on before the device is known
    run(pending)
    assert neighbours.probed == ["fd00::77"] and nxt.seen == [q]
    assert getattr(q.device, "name", None) == "tablet" and q.profile is not None and q.profile.name == "Child"
