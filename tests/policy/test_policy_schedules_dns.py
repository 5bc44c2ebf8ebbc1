"""Time-bound rules seen by devices: schedules, budgets, bonus time, TTL clamps, CNAME chains.

A fake clock drives the daemon's "now" (Guardian(clock=...)); the queries are real dig
queries from loopback addresses, one per device. Times are wall times in Europe/Paris.
"""

from __future__ import annotations

import re

import pytest
from support import FakeClock, dig, paris, use_fake_clock

HOUSEHOLD = """
data_dir: {var}
timezone: Europe/Paris
store:
  flush_seconds: 0.2
lists:
  - {{name: Test games, category: games, path: {lists}/games.txt, format: hosts}}
  - {{name: Test social, category: social, path: {lists}/social.txt, format: hosts}}
  - {{name: Test video, category: video, path: {lists}/video.txt, format: hosts}}
  - {{name: Test gambling, category: gambling, path: {lists}/gambling.txt, format: hosts}}
household:
  default_profile: Adult
  profiles:
    - name: Child
      categories: [gambling]
      schedules:
        - {{name: Bedtime, days: [sun, mon, tue, wed, thu], from: "21:00", to: "07:00", block: all,
           allow: [school.example]}}
        - {{name: Homework, days: [mon, tue, wed, thu, fri], from: "16:00", to: "18:00", block: [games, social]}}
      budgets:
        - {{target: video, minutes: 3}}
    - name: Night
      schedules:
        - {{name: Saturday night, days: [sat], from: "22:00", to: "07:00", block: all}}
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
    - {{name: Night owl, ip: 127.0.0.4, profile: Night}}
"""

NAMES = {
    "kids.example": "198.51.100.7",
    "school.example": "198.51.100.9",
    "game.example": "198.51.100.40",
    "social.example": "198.51.100.41",
    "video.example": "198.51.100.42",
    "news.example": "198.51.100.43",
}

CHILD, NIGHT, ADULT = "127.0.0.2", "127.0.0.4", "127.0.0.1"





@pytest.fixture
def clock(monkeypatch):
    return use_fake_clock(monkeypatch, "2024-06-03 10:00")


@pytest.fixture
def home(make_guardian, upstream, tmp_path, clock):
    for name, address in NAMES.items():
        upstream.zone[name] = [("A", address)]
    upstream.zone["www.cdn-front.example"] = [("CNAME", "edge.gamble.example"), ("A", "198.51.100.50")]
    lists = tmp_path / "lists"
    lists.mkdir()
    for category, name in (("games", "game.example"), ("social", "social.example"), ("video", "video.example"),
                           ("gambling", "gamble.example")):
        (lists / f"{category}.txt").write_text(f"0.0.0.0 {name}\n")
    config = HOUSEHOLD.format(var=tmp_path / "var", lists=lists)
    (tmp_path / "g.yaml").write_text(config)
    return make_guardian([upstream.url], config=config)


def at(running, clock: FakeClock, when: str) -> None:
    """Move the daemon's clock; forget reusable packets as a real second would."""
    clock.now = paris(when)
    running.daemon.server.invalidate()


def answered(running, name: str, source: str) -> bool:
    result = dig(running.port(), name, source=source)
    assert result.status in ("NOERROR", "NXDOMAIN"), result.text
    return result.status == "NOERROR" and bool(result.values)


def test_bedtime_runs_across_midnight_on_school_nights_only(home, clock):
    at(home, clock, "2024-06-02 20:59")  # Sunday evening
    assert answered(home, "kids.example", CHILD)
    at(home, clock, "2024-06-02 21:00")
    blocked = dig(home.port(), "kids.example", source=CHILD)
    assert blocked.status == "NXDOMAIN"
    assert answered(home, "kids.example", ADULT)  # the parents' devices are not in bed
    for when in ("2024-06-02 23:59", "2024-06-03 00:30", "2024-06-03 06:59"):
        at(home, clock, when)
        assert not answered(home, "kids.example", CHILD), when
        assert answered(home, "school.example", CHILD), when  # the window's own allow list
    at(home, clock, "2024-06-03 07:00")
    assert answered(home, "kids.example", CHILD)
    # Friday night is not a bedtime night (Thursday's window ends Friday 07:00).
    at(home, clock, "2024-06-07 06:59")
    assert not answered(home, "kids.example", CHILD)
    for when in ("2024-06-07 23:00", "2024-06-08 06:00"):
        at(home, clock, when)
        assert answered(home, "kids.example", CHILD), when


def test_homework_blocks_games_and_social_only(home, clock):
    at(home, clock, "2024-06-03 16:30")  # Monday
    assert not answered(home, "game.example", CHILD)
    assert not answered(home, "social.example", CHILD)
    assert answered(home, "news.example", CHILD)
    assert answered(home, "kids.example", CHILD)
    assert answered(home, "game.example", ADULT)
    at(home, clock, "2024-06-03 18:00")
    assert answered(home, "game.example", CHILD)
    at(home, clock, "2024-06-08 16:30")  # Saturday: no homework
    assert answered(home, "social.example", CHILD)


@pytest.mark.parametrize(
    ("still_on", "over"),
    [
        # Spring forward: Sat 22:00 CET -> Sun 07:00 CEST is 8 hours, not 9.
        ("2024-03-31 06:59", "2024-03-31 07:00"),
        # Fall back: Sat 22:00 CEST -> Sun 07:00 CET is 10 hours, not 9.
        ("2024-10-27 06:30", "2024-10-27 07:00"),
    ],
)
def test_a_window_over_a_dst_change_ends_at_the_local_wall_time(home, clock, still_on, over):
    day = still_on[:10]
    saturday = f"{day[:8]}{int(day[8:]) - 1:02d}"
    at(home, clock, f"{saturday} 21:59")
    assert answered(home, "kids.example", NIGHT)
    at(home, clock, f"{saturday} 22:00")
    assert not answered(home, "kids.example", NIGHT)
    at(home, clock, still_on)
    assert not answered(home, "kids.example", NIGHT)
    at(home, clock, over)
    assert answered(home, "kids.example", NIGHT)
    at(home, clock, f"{day} 07:30")  # a fixed 9-hour window would still run in spring
    assert answered(home, "kids.example", NIGHT)


def test_ttls_near_a_window_boundary_are_clamped(home, clock):
    at(home, clock, "2024-06-02 20:58:30")  # bedtime starts in 90 s
    result = dig(home.port(), "kids.example", source=CHILD)
    assert result.values == ["198.51.100.7"]
    assert 0 < result.answers[0][1] <= 90
    assert dig(home.port(), "kids.example", source=ADULT).answers[0][1] > 200  # no window, upstream TTL
    at(home, clock, "2024-06-03 06:59:40")  # bedtime ends in 20 s: the block is not cached past it
    blocked = dig(home.port(), "kids.example", source=CHILD)
    assert blocked.status == "NXDOMAIN"
    soa = re.search(r"^\S+\s+(\d+)\s+IN\s+SOA\s", blocked.text, re.M)
    assert soa is not None and int(soa.group(1)) <= 20


def test_a_budget_counts_minutes_then_blocks_until_midnight(home, clock):
    service = home.daemon.household
    at(home, clock, "2024-06-07 10:00:05")  # Friday (no bedtime tonight)
    assert answered(home, "video.example", CHILD)
    assert answered(home, "video.example", CHILD)  # a second query in the same minute counts once
    at(home, clock, "2024-06-07 10:01:05")
    assert answered(home, "video.example", CHILD)
    assert service.usage("Child")[0].minutes == 2
    at(home, clock, "2024-06-07 10:02:05")
    assert answered(home, "video.example", CHILD)
    [line] = service.usage("Child")
    assert (line.target, line.minutes, line.budget, line.left) == ("video", 3, 3, 0)
    at(home, clock, "2024-06-07 10:03:05")
    result = dig(home.port(), "video.example", source=CHILD)
    assert result.status == "NXDOMAIN"
    assert answered(home, "news.example", CHILD)  # only the budget's target is blocked
    assert answered(home, "video.example", ADULT)
    at(home, clock, "2024-06-07 23:59")
    assert not answered(home, "video.example", CHILD)
    at(home, clock, "2024-06-08 00:00:30")  # a new local day
    assert answered(home, "video.example", CHILD)


def test_bonus_lifts_the_schedule_and_the_budget_for_a_while(home, clock):
    service = home.daemon.household
    for minute in range(3):
        at(home, clock, f"2024-06-02 20:0{minute}:05")
        assert answered(home, "video.example", CHILD)
    at(home, clock, "2024-06-02 21:30")
    assert not answered(home, "kids.example", CHILD)
    assert not answered(home, "video.example", CHILD)
    change = service.bonus("Child", clock.now + 30 * 60)
    assert change.message.startswith("Bonus time for Child until 22:00")
    assert answered(home, "kids.example", CHILD)  # no restart, no wait
    assert answered(home, "video.example", CHILD)
    at(home, clock, "2024-06-02 21:59:30")
    result = dig(home.port(), "kids.example", source=CHILD)
    assert result.values and result.answers[0][1] <= 30  # the answer does not outlive the bonus
    at(home, clock, "2024-06-02 22:00")
    assert not answered(home, "kids.example", CHILD)
    assert not answered(home, "video.example", CHILD)


def test_a_cname_chain_into_a_blocked_list_is_blocked(home, clock, upstream):
    result = dig(home.port(), "www.cdn-front.example", source=CHILD)
    assert result.status == "NXDOMAIN" and not result.values
    assert [q for q in upstream.queries if q[1] == "www.cdn-front.example"]  # it was asked, then refused
    adult = dig(home.port(), "www.cdn-front.example", source=ADULT)
    assert ("www.cdn-front.example", 300, "CNAME", "edge.gamble.example") in adult.answers


def test_budget_usage_survives_a_restart(home, clock, make_guardian, tmp_path):
    at(home, clock, "2024-06-07 10:00:05")
    assert answered(home, "video.example", CHILD)
    at(home, clock, "2024-06-07 10:01:05")
    assert answered(home, "video.example", CHILD)
    assert home.daemon.household.usage("Child")[0].minutes == 2
    home.stop()  # the store writes what is queued on the way out
    again = make_guardian([f"udp://127.0.0.1:{home.settings.dns.upstreams[0].port}"],
                          config=(tmp_path / "g.yaml").read_text())
    assert again.daemon.household.usage("Child")[0].minutes == 2  # not a fresh allowance
    at(again, clock, "2024-06-07 10:02:05")
    assert answered(again, "video.example", CHILD)
    at(again, clock, "2024-06-07 10:03:05")
    assert dig(again.port(), "video.example", source=CHILD).status == "NXDOMAIN"


def test_a_reload_with_a_new_timezone_moves_the_schedules_with_it(home, clock, tmp_path):
    """A box shipped with the wrong zone and corrected by SIGHUP: bedtime follows the new zone."""
    import dataclasses

    from guardian import config as config_module

    at(home, clock, "2024-06-03 00:30")  # Monday 00:30 in Paris: bedtime (Sunday night)
    assert not answered(home, "kids.example", CHILD)

    def reload(zone: str) -> None:
        text = (tmp_path / "g.yaml").read_text().replace("timezone: Europe/Paris", f"timezone: {zone}")
        settings = config_module.parse(text, "g.yaml", base=tmp_path)
        home.call(home.daemon.reload(dataclasses.replace(settings, dns=home.daemon.settings.dns)))

    reload("America/New_York")  # the same instant is Sunday 18:30 there: no bedtime yet
    assert answered(home, "kids.example", CHILD)
    reload("Europe/Paris")
    assert not answered(home, "kids.example", CHILD)
