"""The parents' actions through the real CLI, against a running daemon's control socket.

The daemon runs in-process with a fake clock (so expiry is a clock move, not a wait);
each ``guardian ...`` command is a subprocess that finds the socket through --config,
and every effect is checked with real dig queries from the devices' loopback addresses.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import FakeClock, dig, use_fake_clock

from guardian.household.storage import HOUSEHOLD_DB, HouseholdStore

GUARDIAN = [sys.executable, "-m", "guardian"]

HOUSEHOLD = """
data_dir: {var}
timezone: Europe/Paris
store:
  flush_seconds: 0.2
household:
  default_profile: Adult
  profiles:
    - name: Child
      categories: [gambling]
      deny: [example-game.com]
      schedules:
        - {{name: Bedtime, days: [sun, mon, tue, wed, thu], from: "21:00", to: "07:00", block: all}}
    - name: Teen
      categories: []
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
    - {{name: Sam's laptop, ip: 127.0.0.5, profile: Child}}
    - {{name: Alex's phone, ip: 127.0.0.3, profile: Teen}}
"""

SAM, LAPTOP, ALEX, PARENT = "127.0.0.2", "127.0.0.5", "127.0.0.3", "127.0.0.1"





@pytest.fixture
def clock(monkeypatch):
    return use_fake_clock(monkeypatch, "2024-06-03 17:00")


@pytest.fixture
def config(tmp_path, upstream):
    for name, address in [("kids.example", "198.51.100.7"), ("example-game.com", "198.51.100.21"),
                          ("www.example-game.com", "198.51.100.22"),
                          ("video.example", "198.51.100.42")]:
        upstream.zone[name] = [("A", address)]
    path = tmp_path / "g.yaml"
    path.write_text(HOUSEHOLD.format(var=tmp_path / "var"))
    return path


@pytest.fixture
def home(make_guardian, upstream, config, clock):
    return make_guardian([upstream.url], config=config.read_text())


def guardian(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARDIAN, *args, "--config", str(config)], capture_output=True, text=True, timeout=30)


def ok(config: Path, *args: str) -> str:
    result = guardian(config, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def answered(running, name: str, source: str) -> bool:
    result = dig(running.port(), name, source=source)
    assert result.status in ("NOERROR", "NXDOMAIN"), result.text
    return result.status == "NOERROR" and bool(result.values)


def stop(running) -> None:
    """Stop a daemon before the test ends (make_guardian would stop it again otherwise)."""
    running.stop()
    running.daemon = None


def later(running, clock: FakeClock, minutes: float) -> None:
    clock.now += minutes * 60
    running.daemon.server.invalidate()  # as a real second would let reused packets go


def test_control_socket_is_private(home, config):
    sock = config.parent / "var" / "control.sock"
    mode = os.stat(sock).st_mode
    # The daemon's group may connect (the dashboard's user): peer credentials limit it (test_control_peers.py).
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert os.stat(sock).st_uid == os.getuid()


def test_pause_a_device_for_a_while_then_it_expires(home, config, clock):
    assert answered(home, "kids.example", SAM)
    assert ok(config, "pause", "Sam's tablet", "--for", "30m") == "Paused Sam's tablet until 17:30"
    assert not answered(home, "kids.example", SAM)  # the next query, no restart
    assert answered(home, "kids.example", LAPTOP)  # the same profile's other device goes on
    later(home, clock, 29)
    assert not answered(home, "kids.example", SAM)
    later(home, clock, 1.5)
    assert answered(home, "kids.example", SAM)
    assert home.daemon.household.expire() == 1  # the job drops it from the snapshot and the file
    assert home.daemon.policy.current.overrides == ()
    stored = HouseholdStore(config.parent / "var" / HOUSEHOLD_DB).load()
    assert stored is not None and stored.overrides == ()


def test_pause_a_profile_until_a_time_of_day_and_resume(home, config, clock):
    assert ok(config, "pause", "Child", "--until", "17:45") == "Paused Child until 17:45"
    assert not answered(home, "kids.example", SAM)
    assert not answered(home, "kids.example", LAPTOP)
    assert answered(home, "kids.example", ALEX)
    assert ok(config, "resume", "Child") == "Resumed Child"
    assert answered(home, "kids.example", SAM)
    assert ok(config, "resume", "Child") == "Child was not paused"
    # --until names the next such time: at 17:00, "16:00" is tomorrow.
    assert ok(config, "pause", "Alex's phone", "--until", "16:00") == "Paused Alex's phone until tomorrow 16:00"
    later(home, clock, 23 * 60 - 1)
    assert not answered(home, "kids.example", ALEX)
    later(home, clock, 2)
    assert answered(home, "kids.example", ALEX)


def test_bonus_lifts_bedtime_and_expires(home, config, clock):
    later(home, clock, 4 * 60 + 30)  # 21:30: bedtime
    assert not answered(home, "kids.example", SAM)
    assert ok(config, "bonus", "Child", "--for", "30m").startswith("Bonus time for Child until 22:00")
    assert answered(home, "kids.example", SAM)
    later(home, clock, 31)
    assert not answered(home, "kids.example", SAM)


def test_allow_one_domain_for_an_hour_then_the_deny_list_holds_again(home, config, clock):
    assert not answered(home, "example-game.com", SAM)  # on the profile's deny list
    assert ok(config, "allow", "example-game.com", "--profile", "Child", "--for", "1h") == \
        "Allowed example-game.com for Child until 18:00"
    assert answered(home, "example-game.com", SAM)
    assert answered(home, "www.example-game.com", SAM)  # and its subdomains
    later(home, clock, 61)
    assert not answered(home, "example-game.com", SAM)


def test_block_one_domain_for_a_while_and_for_good(home, config, clock):
    assert ok(config, "block", "Video.Example.", "--profile", "Teen", "--for", "2h30m") == \
        "Blocked video.example for Teen until 19:30"
    assert not answered(home, "video.example", ALEX)
    assert answered(home, "video.example", SAM)  # another profile
    later(home, clock, 151)
    assert answered(home, "video.example", ALEX)
    assert ok(config, "block", "video.example", "--profile", "teen") == "Blocked video.example for Teen (until changed)"
    assert not answered(home, "video.example", ALEX)
    exported = yaml.safe_load(ok(config, "export"))
    teen = next(p for p in exported["household"]["profiles"] if p["name"] == "Teen")
    assert teen["deny"] == ["video.example"]
    assert ok(config, "allow", "video.example", "--profile", "Teen") == "Allowed video.example for Teen (until changed)"
    assert answered(home, "video.example", ALEX)


def test_unknown_names_are_clear_errors(home, config):
    result = guardian(config, "allow", "example.com", "--profile", "Kid")
    assert result.returncode == 1
    assert "no profile is called 'Kid'" in result.stderr and "'Child', 'Teen', 'Adult'" in result.stderr
    result = guardian(config, "pause", "Sams tablet")
    assert result.returncode == 1
    assert "Sam's tablet" in result.stderr and "'Child'" in result.stderr  # it lists what exists
    result = guardian(config, "pause", "Child", "--for", "soon")
    assert result.returncode == 2 and "not a duration" in result.stderr
    result = guardian(config, "bonus", "Child")
    assert result.returncode == 2  # bonus needs --for or --until


def test_usage_reports_minutes_against_budgets(make_guardian, upstream, config, clock, tmp_path):
    (tmp_path / "video.txt").write_text("0.0.0.0 video.example\n")
    text = config.read_text().replace("    - name: Teen\n      categories: []\n",
                                      "    - name: Teen\n      budgets: [{target: video, minutes: 60}]\n")
    text += f"lists:\n  - {{name: Test video, category: video, path: {tmp_path / 'video.txt'}, format: hosts}}\n"
    config.write_text(text)
    running = make_guardian([upstream.url], config=text)
    for _ in range(3):
        assert answered(running, "video.example", ALEX)
        later(running, clock, 1)
    out = ok(config, "usage", "Teen")
    assert "Teen" in out and "video" in out and "3 min" in out and "57 min" in out and "estimated" in out
    data = yaml.safe_load(ok(config, "usage", "--json"))
    assert {"profile": "Teen", "target": "video", "minutes": 3, "budget": 60, "left": 57} in data


def test_export_import_round_trip_through_the_cli(home, config, tmp_path):
    first = ok(config, "export")
    (tmp_path / "h.yaml").write_text(first)
    assert ok(config, "import", str(tmp_path / "h.yaml")) == "Imported the household: 3 profiles, 3 devices"
    assert ok(config, "export") == first  # lossless
    # A parent's edit: Teen gets a deny list, Alex's phone becomes a Child device.
    data = yaml.safe_load(first)
    for profile in data["household"]["profiles"]:
        if profile["name"] == "Teen":
            profile["deny"] = ["kids.example"]
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(data))
    ok(config, "import", str(tmp_path / "h.yaml"))
    assert not answered(home, "kids.example", ALEX)
    # A broken file changes nothing and says where.
    (tmp_path / "bad.yaml").write_text("household:\n  profiles:\n    - name: Teen\n      youtube: sometimes\n")
    result = guardian(config, "import", str(tmp_path / "bad.yaml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:4: " in result.stderr and "youtube" in result.stderr
    assert not answered(home, "kids.example", ALEX)


def test_commands_without_a_daemon_say_so(config):
    result = guardian(config, "pause", "Child", "--for", "10m")
    assert result.returncode == 1
    assert "not running" in result.stderr and "guardian run" in result.stderr
    # export falls back to what is stored (here: nothing yet, so the config's seed)
    result = guardian(config, "export")
    assert result.returncode == 0 and "not running" in result.stderr
    assert [p["name"] for p in yaml.safe_load(result.stdout)["household"]["profiles"]] == ["Child", "Teen", "Adult"]


def test_overrides_and_changes_survive_a_restart(make_guardian, upstream, config, clock):
    first = make_guardian([upstream.url], config=config.read_text())
    ok(config, "pause", "Sam's tablet", "--for", "1h")
    ok(config, "block", "kids.example", "--profile", "Teen", "--for", "30m")
    ok(config, "allow", "example-game.com", "--profile", "Child")  # for good: a household change
    stop(first)
    assert guardian(config, "export").returncode == 0  # stopped: the stored household
    clock.now += 10 * 60
    second = make_guardian([upstream.url], config=config.read_text())
    assert not answered(second, "kids.example", SAM)  # still paused
    assert not answered(second, "kids.example", ALEX)  # still blocked
    assert answered(second, "example-game.com", LAPTOP)  # the parent's allow beats the seed's deny
    stop(second)
    clock.now += 50 * 60 + 1  # both overrides have ended by the next start
    third = make_guardian([upstream.url], config=config.read_text())
    assert answered(third, "kids.example", SAM)
    assert answered(third, "kids.example", ALEX)
    assert third.daemon.policy.current.overrides == ()
    assert answered(third, "example-game.com", LAPTOP)


def test_the_seed_only_applies_while_no_parent_changed_the_household(make_guardian, upstream, config, clock):
    first = make_guardian([upstream.url], config=config.read_text())
    stop(first)
    # The telco ships a new seed: nobody changed the household, so it is taken.
    config.write_text(config.read_text().replace("deny: [example-game.com]", "deny: [example-game.com, kids.example]"))
    second = make_guardian([upstream.url], config=config.read_text())
    assert not answered(second, "kids.example", SAM)
    ok(config, "allow", "kids.example", "--profile", "Child")
    stop(second)
    # Now a parent has: a newer seed no longer replaces their household.
    config.write_text(config.read_text().replace("categories: [gambling]", "categories: [gambling, games]"))
    third = make_guardian([upstream.url], config=config.read_text())
    assert answered(third, "kids.example", SAM)
    child = third.daemon.household.household.by_name["Child"]
    assert child.categories == ("gambling",) and "kids.example" in child.allow


@pytest.mark.parametrize("bad", ["\x1b[31mevil.com", "evil.com\r\nforged", "ev il.com", "a..b.com", "evil.com/path",
                                 "ex\u202eample.com", "x" * 64 + ".com"])
def test_allow_and_block_refuse_what_is_not_a_domain_name(home, config, bad):
    for action in ("allow", "block"):
        for when in ((), ("--for", "1h")):
            result = guardian(config, action, bad, "--profile", "Child", *when)
            assert result.returncode == 1, (action, bad, result.stdout)
            assert "is not a domain name" in result.stderr
            assert not any(c in result.stderr for c in "\x1b\r\u202e"), repr(result.stderr)  # shown escaped
    exported = yaml.safe_load(ok(config, "export"))
    child = next(p for p in exported["household"]["profiles"] if p["name"] == "Child")
    assert child.get("allow", []) == [] and child["deny"] == ["example-game.com"]
    assert home.daemon.policy.current.overrides == ()


def test_import_and_check_config_refuse_a_bad_domain_with_its_line(home, config, tmp_path):
    bad = tmp_path / "h.yaml"
    bad.write_text('household:\n  profiles:\n    - name: Teen\n      deny: [ok.example, "\\e[31mevil.com"]\n')
    result = guardian(config, "import", str(bad))
    assert result.returncode == 1
    assert f"{bad}:4: " in result.stderr and "is not a domain name" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr
    checked = subprocess.run([*GUARDIAN, "check-config", "--config", str(bad)], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 1 and f"{bad}:4: " in checked.stderr and "\x1b" not in checked.stderr


@pytest.mark.parametrize("args", [
    ("bonus", "Teen", "--for", "12000000d"),
    ("bonus", "Teen", "--for", "31d"),
    ("pause", "Sam's tablet", "--for", "100000h"),
    ("allow", "kids.example", "--profile", "Teen", "--for", "745h"),
    ("block", "kids.example", "--profile", "Teen", "--for", "44641m"),
])
def test_durations_over_30_days_are_refused_before_anything_is_saved(home, config, args):
    result = guardian(config, *args)
    assert result.returncode != 0
    assert "30 days" in result.stderr, result.stderr
    assert home.daemon.policy.current.overrides == ()
    stored = HouseholdStore(config.parent / "var" / HOUSEHOLD_DB).load()
    assert stored is None or stored.overrides == ()


def test_the_control_socket_refuses_long_durations_too(home, config):
    from guardian.control import SOCKET_NAME, request

    answer = request(config.parent / "var" / SOCKET_NAME, {"action": "bonus", "profile": "Teen", "for": 10 ** 12})
    assert not answer["ok"] and "30 days" in answer["error"]
    assert home.daemon.policy.current.overrides == ()
    assert ok(config, "bonus", "Teen", "--for", "30d").startswith("Bonus time for Teen until ")  # the bound itself


def test_a_bonus_can_be_cancelled_and_a_timed_allow_or_block_ended(home, config, clock):
    later(home, clock, 4 * 60 + 30)  # 21:30: bedtime
    assert ok(config, "bonus", "Child", "--for", "2h").startswith("Bonus time for Child until 23:30")
    assert answered(home, "kids.example", SAM)
    assert ok(config, "bonus", "Child", "--cancel") == "Bonus time for Child ended"
    assert not answered(home, "kids.example", SAM)  # bedtime again, at once
    assert ok(config, "bonus", "Child", "--cancel") == "Child had no bonus time"
    assert home.daemon.policy.current.overrides == ()
    assert ok(config, "block", "kids.example", "--profile", "Teen", "--for", "1h").startswith("Blocked")
    assert not answered(home, "kids.example", ALEX)
    assert ok(config, "block", "kids.example", "--profile", "Teen", "--cancel") == \
        "Ended the temporary block of kids.example for Teen"
    assert answered(home, "kids.example", ALEX)
    result = guardian(config, "allow", "kids.example", "--profile", "Teen", "--cancel")
    assert result.returncode == 0 and result.stdout.strip() == "Teen had no temporary allow of kids.example"
    result = guardian(config, "bonus", "Child", "--cancel", "--for", "1h")
    assert result.returncode == 2  # one or the other
    stored = HouseholdStore(config.parent / "var" / HOUSEHOLD_DB).load()
    assert stored is not None and stored.overrides == ()
