"""Safe-search targets for each engine in rules/safesearch.yaml, by profile setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian.policy.household import Profile
from guardian.policy.safesearch import SafeSearch

RULES = Path(__file__).resolve().parents[1] / "rules" / "safesearch.yaml"

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
