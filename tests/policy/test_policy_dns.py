"""The household's rules, seen by devices: real dig queries from different loopback addresses."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import dig

HOUSEHOLD = """
data_dir: {var}
store:
  flush_seconds: 0.2
household:
  default_profile: Adult
  profiles:
    - name: Child
      categories: [adult, gambling]
      safe_search: true
      bypass_protection: true
      deny: [example-game.com]
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
"""


@pytest.fixture
def household(make_guardian, upstream, tmp_path):
    for name, address in [("1xbet.com", "198.51.100.20"), ("example-game.com", "198.51.100.21"),
                          ("forcesafesearch.google.com", "216.239.38.120"), ("www.google.com", "142.250.1.1")]:
        upstream.zone[name] = [("A", address)]
    (tmp_path / "extra.txt").write_text("# a parent's own list\n0.0.0.0 extra-blocked.example\n")
    config = HOUSEHOLD.format(var=tmp_path / "var") + (
        f"lists:\n  - {{name: Our list, category: gambling, path: {tmp_path / 'extra.txt'}, format: hosts}}\n")
    (tmp_path / "g.yaml").write_text(config)
    return make_guardian([upstream.url], config=config)


def test_category_block_applies_to_the_childs_device_only(household):
    port = household.port()
    kid = dig(port, "1xbet.com", source="127.0.0.2")
    assert kid.status == "NXDOMAIN" and "aa" in kid.flags
    assert dig(port, "www.1xbet.com", source="127.0.0.2").status == "NXDOMAIN"  # subdomains too
    parent = dig(port, "1xbet.com", source="127.0.0.1")
    assert parent.values == ["198.51.100.20"]  # unknown device: the default (Adult) profile


def test_profile_deny_list(household):
    assert dig(household.port(), "example-game.com", source="127.0.0.2").status == "NXDOMAIN"
    assert dig(household.port(), "example-game.com", source="127.0.0.3").values == ["198.51.100.21"]


def test_safe_search_rewrites_google_to_the_enforced_host(household):
    result = dig(household.port(), "www.google.com", source="127.0.0.2")
    assert ("www.google.com", 300, "CNAME", "forcesafesearch.google.com") in result.answers
    assert "216.239.38.120" in result.values
    assert dig(household.port(), "www.google.com", source="127.0.0.1").values == ["142.250.1.1"]


def test_bypass_canary_answers_nxdomain_for_protected_profiles(household, upstream):
    assert dig(household.port(), "use-application-dns.net", source="127.0.0.2").status == "NXDOMAIN"
    assert not [q for q in upstream.queries if q[1] == "use-application-dns.net"]


def test_blocked_attempts_become_a_risk_event(household, tmp_path):
    for _ in range(5):
        dig(household.port(), "1xbet.com", source="127.0.0.2")
    time.sleep(1.0)
    out = subprocess.run([sys.executable, "-m", "guardian", "events", "--config", str(tmp_path / "g.yaml"), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    blocked = [e for e in events if e["kind"] == "blocked" and e["category"] == "gambling"]
    assert blocked and blocked[0]["device"] == "Sam's tablet" and blocked[0]["count"] == 5
    assert blocked[0]["profile"] == "Child"


def test_a_local_list_from_the_config_blocks_for_profiles_with_its_category(household, upstream):
    upstream.zone["extra-blocked.example"] = [("A", "198.51.100.30")]
    assert dig(household.port(), "extra-blocked.example", source="127.0.0.2").status == "NXDOMAIN"
    assert dig(household.port(), "extra-blocked.example", source="127.0.0.1").values == ["198.51.100.30"]


def test_importing_a_household_subscribes_to_its_new_categories_lists(make_guardian, upstream, tmp_path):
    g = make_guardian([upstream.url], config=f"data_dir: {tmp_path / 'var'}\n")
    assert g.daemon.subscriptions == []
    g.daemon.household.import_("household:\n  profiles:\n    - {name: Kid, categories: [gambling]}\n")
    time.sleep(0.3)
    assert {s.category for s in g.daemon.subscriptions} == {"gambling"}
    assert g.daemon.scheduler.get_job("guardian-lists-first-refresh") is not None


def test_pack_lists_false_downloads_nothing_but_the_configs_own_lists(make_guardian, upstream, tmp_path):
    """A box without internet (or a telco shipping its own lists) turns the rule packs'
    public lists off; the bundled seed lists still block, and a SIGHUP-style reload
    turns the downloads back on."""
    from guardian import config as config_module

    text = (f"data_dir: {tmp_path / 'var'}\npack_lists: false\nlists:\n"
            "  - {name: Telco list, category: gambling, url: 'https://lists.telco.test/g.txt'}\n"
            "household:\n  default_profile: Kid\n  profiles:\n    - {name: Kid, categories: [gambling]}\n")
    g = make_guardian([upstream.url], config=text)
    assert [s.name for s in g.daemon.subscriptions] == ["Telco list"]
    seed = next(line.strip() for line in (Path(__file__).parents[2] / "rules" / "lists" / "gambling.txt").open()
                if line.strip() and not line.startswith("#"))
    assert dig(g.port(), seed).status == "NXDOMAIN"  # the bundled list needs no download
    again = config_module.parse(text.replace("pack_lists: false", "pack_lists: true"), "g.yaml", base=tmp_path)
    settings = dataclasses.replace(again, dns=g.daemon.settings.dns)
    g.call(g.daemon.reload(settings))
    assert {s.category for s in g.daemon.subscriptions} == {"gambling"}
    assert len(g.daemon.subscriptions) > 1  # the telco's list and the gambling pack's public ones


def test_a_big_list_is_compiled_in_a_child_process_and_blocks(make_guardian, upstream, tmp_path, monkeypatch):
    from guardian.lists import compile as matcher

    big = tmp_path / "big.txt"
    with big.open("w") as out:
        for i in range(120_000):
            out.write(f"0.0.0.0 tracker-{i:06d}.big-list.example\n")
    assert big.stat().st_size > matcher.IN_PROCESS_BYTES
    in_this_process = []
    real = matcher.compile_snapshot
    monkeypatch.setattr(matcher, "compile_snapshot", lambda *a, **k: in_this_process.append(1) or real(*a, **k))
    upstream.zone["tracker-000007.big-list.example"] = [("A", "198.51.100.30")]
    config = HOUSEHOLD.format(var=tmp_path / "var") + (
        f"lists:\n  - {{name: Big list, category: gambling, path: {big}, format: hosts}}\n")
    before = _children()
    g = make_guardian([upstream.url], config=config)
    assert dig(g.port(), "tracker-119999.big-list.example", source="127.0.0.2").status == "NXDOMAIN"
    assert dig(g.port(), "tracker-000007.big-list.example", source="127.0.0.1").values == ["198.51.100.30"]  # Adult
    assert in_this_process == []  # the child process compiled it, not this one
    # ... and it is gone, leaving nothing behind: the only process the daemon keeps is the store's writer.
    left = {pid: cmd for pid, cmd in _children().items() if pid not in before}
    assert [cmd for cmd in left.values() if "guardian.store" not in cmd] == []


def _children() -> dict[int, str]:
    """This process's children: pid -> command line."""
    found = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found
