"""Safe-search targets for each engine in rules/safesearch.yaml, by profile setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import dig, paris, use_fake_clock

from guardian.policy.household import Profile
from guardian.policy.safesearch import SafeSearch

RULES = Path(__file__).resolve().parents[2] / "rules" / "safesearch.yaml"

SAFE = Profile("Kid", safe_search=True, youtube="strict")
MODERATE = Profile("Teen", safe_search=True, youtube="moderate")
YOUTUBE_ONLY = Profile("Fan", safe_search=False, youtube="strict")
OFF = Profile("Adult")


@pytest.fixture(scope="module", params=["yaml", "rulepacks"])
def tables(request: pytest.FixtureRequest) -> SafeSearch:
    if request.param == "yaml":
        return SafeSearch.load(RULES)
    rulepacks = pytest.importorskip("guardian.policy.rulepacks")
    return SafeSearch.from_engines(rulepacks.load_rules().safesearch)


@pytest.mark.parametrize(
    ("name", "profile", "target"),
    [
        ("www.google.com", SAFE, "forcesafesearch.google.com"),
        ("google.com", SAFE, "forcesafesearch.google.com"),
        ("www.google.co.uk", SAFE, "forcesafesearch.google.com"),
        ("www.google.fr", SAFE, "forcesafesearch.google.com"),
        ("www.google.com.br", SAFE, "forcesafesearch.google.com"),
        ("maps.google.com", SAFE, None),  # exact names only
        ("www.bing.com", SAFE, "strict.bing.com"),
        ("duckduckgo.com", SAFE, "safe.duckduckgo.com"),
        ("www.ecosia.org", SAFE, "strict-safe-search.ecosia.org"),
        ("pixabay.com", SAFE, "safesearch.pixabay.com"),
        ("yandex.ru", SAFE, "familysearch.yandex.ru"),
        ("search.brave.com", SAFE, "safe.search.brave.com"),
        ("www.youtube.com", SAFE, "restrict.youtube.com"),
        ("m.youtube.com", SAFE, "restrict.youtube.com"),
        ("youtubei.googleapis.com", SAFE, "restrict.youtube.com"),
        ("youtube.googleapis.com", SAFE, "restrict.youtube.com"),
        ("www.youtube-nocookie.com", SAFE, "restrict.youtube.com"),
        ("www.youtube.com", MODERATE, "restrictmoderate.youtube.com"),
        ("m.youtube.com", MODERATE, "restrictmoderate.youtube.com"),
        ("www.youtube.com", YOUTUBE_ONLY, "restrict.youtube.com"),
        ("www.google.com", YOUTUBE_ONLY, None),
        ("www.google.com", OFF, None),
        ("www.youtube.com", OFF, None),
        ("forcesafesearch.google.com", SAFE, None),  # a target is never rewritten again
    ],
)
def test_rewrite_for(tables: SafeSearch, name: str, profile: Profile, target: str | None) -> None:
    assert tables.rewrite_for(name, profile) == target


def test_every_engine_has_domains(tables: SafeSearch) -> None:
    ids = {e.id for e in tables.engines}
    assert {"google", "bing", "duckduckgo", "youtube", "ecosia", "pixabay", "yandex"} <= ids
    assert all(e.domains for e in tables.engines)
    google = next(e for e in tables.engines if e.id == "google")
    assert len(google.domains) > 300  # every country domain, bare and www


def test_bad_tables() -> None:
    with pytest.raises(ValueError, match="no target"):
        SafeSearch.from_data({"engines": [{"id": "x", "domains": ["x.example"]}]})
    with pytest.raises(ValueError, match="level"):
        SafeSearch.from_data({"engines": [{"id": "x", "targets": {"loud": "y"}, "domains": ["x.example"]}]})


# -- the rewrite as devices see it: real dig against Guardian on loopback -------------

HOUSEHOLD = """
data_dir: {var}
timezone: Europe/Paris
store:
  flush_seconds: 0.2
lists:
  - {{name: Test video, category: video, path: {lists}/video.txt, format: hosts}}
household:
  default_profile: Adult
  profiles:
    - name: Child
      safe_search: true
      youtube: strict
      schedules:
        - {{name: Bedtime, days: [sun, mon, tue, wed, thu], from: "21:00", to: "07:00", block: all}}
      budgets:
        - {{target: video, minutes: 2}}
    - name: Strict
      safe_search: true
      deny: [forcesafesearch.google.com]
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
    - {{name: Alex's laptop, ip: 127.0.0.3, profile: Strict}}
"""
CHILD, STRICT = "127.0.0.2", "127.0.0.3"


@pytest.fixture
def clock(monkeypatch):
    return use_fake_clock(monkeypatch, "2024-06-07 10:00")


@pytest.fixture
def home(make_guardian, upstream, tmp_path, clock):
    upstream.behaviour.ttl = 86_400  # the enforced hosts' real TTLs are long
    for name in ("forcesafesearch.google.com", "restrict.youtube.com"):
        upstream.zone[name] = [("A", "216.239.38.120")]
    for name in ("www.google.com", "www.youtube.com"):
        upstream.zone[name] = [("A", "142.250.1.1")]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "video.txt").write_text("0.0.0.0 youtube.com\n")
    return make_guardian([upstream.url], config=HOUSEHOLD.format(var=tmp_path / "var", lists=lists))


def at(running, clock, when: str) -> None:
    clock.now = paris(when)
    running.daemon.server.invalidate()


def test_a_rewrite_keeps_the_schedule_ttl_clamp(home, clock):
    at(home, clock, "2024-06-02 20:57:32")  # Sunday, 148 s before bedtime
    result = dig(home.port(), "www.google.com", source=CHILD)
    assert ("forcesafesearch.google.com" in result.values) and "216.239.38.120" in result.values, result.text
    assert all(0 < ttl <= 148 for _name, ttl, _type, _value in result.answers), result.answers


def test_a_rewrite_to_a_host_the_parent_blocked_is_blocked(home):
    result = dig(home.port(), "www.google.com", source=STRICT)
    assert result.status == "NXDOMAIN", result.text
    assert "216.239.38.120" not in result.text


def test_rewritten_youtube_counts_toward_the_video_budget(home, clock):
    service = home.daemon.household
    at(home, clock, "2024-06-07 10:00:05")  # Friday
    first = dig(home.port(), "www.youtube.com", source=CHILD)
    assert "restrict.youtube.com" in first.values and "216.239.38.120" in first.values, first.text
    at(home, clock, "2024-06-07 10:01:05")
    assert "216.239.38.120" in dig(home.port(), "www.youtube.com", source=CHILD).values
    assert [(line.target, line.minutes) for line in service.usage("Child")] == [("video", 2)]
    assert all(ttl <= 60 for _name, ttl, _type, _value in first.answers), first.answers  # re-asked each minute
    at(home, clock, "2024-06-07 10:02:05")
    assert dig(home.port(), "www.youtube.com", source=CHILD).status == "NXDOMAIN"  # the budget is spent
