"""The bundled rule packs (rules/) and their loader's checks and FILE:LINE reports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from guardian.errors import ConfigError
from guardian.policy.rulepacks import (
    CATEGORY_IDS,
    THREATS,
    Rules,
    bundled_domains,
    default_rules_dir,
    load_rules,
)

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
LIST_FILES = sorted((RULES_DIR / "lists").glob("*.txt"))
# Lowercase LDH labels; the last is letters or punycode (xn--p1ai).
DOMAIN = re.compile(r"^(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")

# Smallest honest size of each seed list: big where many such sites exist.
MIN_ENTRIES = {
    "adult": 200, "gambling": 200, "games": 200, "social": 180, "video": 180, "ads": 200,
    "bypass": 180, "dating": 120, "chat": 40, "drugs": 40, "weapons": 40, "hate": 30,
    "phishing": 30, "malware": 20, "violence": 15, "self-harm": 1,
}
SERVICES = (
    "youtube", "tiktok", "roblox", "fortnite", "minecraft", "discord", "snapchat", "instagram",
    "facebook", "whatsapp", "telegram", "twitter", "reddit", "netflix", "twitch", "steam",
    "playstation", "xbox", "nintendo", "spotify", "pinterest", "tumblr", "random-video-chat",
    "kick", "disneyplus", "primevideo", "bereal", "threads", "wechat", "vk",
)
HELPLINES = (
    "samaritans.org", "988lifeline.org", "befrienders.org", "childline.org.uk", "kidshelpline.com.au",
    "crisistextline.org", "nationaleatingdisorders.org", "kidshelpphone.ca", "thetrevorproject.org",
    "findahelpline.com", "beateatingdisorders.org.uk", "lifeline.org.au", "telefonseelsorge.de",
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(RULES_DIR)


def deny_sets(rules: Rules) -> dict[str, set[str]]:
    return {cid: {d for p in c.lists for d in bundled_domains(p)} for cid, c in rules.categories.items()}


def covered(name: str, names: set[str]) -> bool:
    """Whether ``name`` or one of its parents is in ``names`` (a list entry blocks subdomains)."""
    labels = name.split(".")
    return any(".".join(labels[i:]) in names for i in range(len(labels)))


# -- the packs --------------------------------------------------------------------


def test_every_category_guardian_relies_on_is_shipped(rules: Rules) -> None:
    assert set(CATEGORY_IDS) <= set(rules.categories)
    for cid, category in rules.categories.items():
        assert category.source == RULES_DIR / f"{cid}.yaml"
        assert category.name and category.description
        assert category.lists, cid


def test_every_threat_is_addressed_by_some_category(rules: Rules) -> None:
    uncovered = [t for t, ids in rules.threats.items() if not ids]
    assert uncovered == []
    assert set(rules.threats) == set(THREATS)


def test_every_list_file_is_used_by_a_pack(rules: Rules) -> None:
    used = {p for c in rules.categories.values() for p in (*c.lists, *c.allow_lists)}
    assert set(LIST_FILES) == used


@pytest.mark.parametrize("path", LIST_FILES, ids=lambda p: p.name)
def test_list_file_is_clean(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# source: "), "the first line says how the list was assembled"
    entries = [line for line in lines if not line.startswith("#")]
    assert entries, "empty list"
    assert tuple(entries) == bundled_domains(path), "only comments at the top, one plain name a line"
    bad = [e for e in entries if not DOMAIN.match(e)]
    assert bad == []
    assert entries == sorted(set(entries)), "sorted and de-duplicated"


@pytest.mark.parametrize("cid", sorted(MIN_ENTRIES))
def test_seed_lists_are_substantial(rules: Rules, cid: str) -> None:
    assert len(deny_sets(rules)[cid]) >= MIN_ENTRIES[cid]


def test_bypass_list_covers_resolvers_relays_and_the_canary(rules: Rules) -> None:
    bypass = deny_sets(rules)["bypass"]
    for name in (
        "use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com", "mask-api.icloud.com",
        "dns.google", "cloudflare-dns.com", "mozilla.cloudflare-dns.com", "dns.quad9.net",
        "doh.opendns.com", "dns.adguard.com", "dns.nextdns.io", "nordvpn.com", "expressvpn.com",
        "protonvpn.com", "torproject.org",
    ):
        assert name in bypass, name
    # Blocking all of icloud.com or google.com would take iCloud and search down with it.
    assert "icloud.com" not in bypass and "google.com" not in bypass


def test_subscriptions_are_https_and_cover_churning_categories(rules: Rules) -> None:
    for category in rules.categories.values():
        for sub in category.subscriptions:
            assert sub.url.startswith("https://"), sub
    urls = {s.url for cid in ("phishing", "malware") for s in rules.categories[cid].subscriptions}
    assert any("urlhaus.abuse.ch" in u for u in urls)
    assert any("phishing.army" in u for u in urls)


# -- services ---------------------------------------------------------------------


def test_named_services_exist(rules: Rules) -> None:
    missing = [s for s in SERVICES if s not in rules.services]
    assert missing == []


def test_service_domains_are_in_their_category_list(rules: Rules) -> None:
    lists = deny_sets(rules)
    missing = [
        (s.id, d) for s in rules.services.values() for d in s.domains if d not in lists[s.category]
    ]
    assert missing == []


def test_services_leave_shared_infrastructure_alone(rules: Rules) -> None:
    shared = {"googleapis.com", "google.com", "akamaihd.net", "cloudfront.net", "amazonaws.com",
              "fbcdn.net", "qq.com", "icloud.com", "apple.com", "microsoft.com", "amazon.com"}
    for service in rules.services.values():
        assert not shared & set(service.domains), service.id
    assert "youtubei.googleapis.com" in rules.services["youtube"].domains


# -- safe search ------------------------------------------------------------------


def test_safesearch_targets_and_google_domains(rules: Rules) -> None:
    engines = {e.id: e for e in rules.safesearch}
    google = engines["google"]
    assert len(google.domains) > 150
    for name in ("google.com", "www.google.com", "www.google.co.uk", "google.fr", "www.google.com.au"):
        assert name in google.domains
    assert google.target() == "forcesafesearch.google.com"
    assert engines["bing"].target() == "strict.bing.com"
    assert engines["duckduckgo"].target() == "safe.duckduckgo.com"
    assert {"duckduckgo.com", "html.duckduckgo.com"} <= set(engines["duckduckgo"].domains)
    assert engines["youtube"].target("strict") == "restrict.youtube.com"
    assert engines["youtube"].target("moderate") == "restrictmoderate.youtube.com"
    assert "youtubei.googleapis.com" in engines["youtube"].domains
    assert engines["pixabay"].target() == "safesearch.pixabay.com"
    assert engines["yandex"].target() == "familysearch.yandex.ru"
    assert "yandex.ru" in engines["yandex"].domains


# -- self-harm help stays reachable -----------------------------------------------


def test_help_resources_are_allowed_and_never_denied(rules: Rules) -> None:
    category = rules.categories["self-harm"]
    allowed = {d for p in category.allow_lists for d in bundled_domains(p)}
    assert set(HELPLINES) <= allowed
    for cid, names in deny_sets(rules).items():
        blocked = [d for d in allowed if covered(d, names)]
        assert blocked == [], cid


# -- profile templates ------------------------------------------------------------


def test_templates_agree_with_the_packs(rules: Rules) -> None:
    assert set(rules.templates) == {"young-child", "teen", "adult", "guest"}
    for template in rules.templates.values():
        for cid in template.categories:
            assert template.id in rules.categories[cid].profiles
        assert set(template.services) <= set(rules.services)
        if template.bypass_protection:
            assert "bypass" in template.categories, template.id
    young, teen, adult = (rules.templates[t] for t in ("young-child", "teen", "adult"))
    assert {"adult", "self-harm", "chat", "bypass"} <= set(young.categories)
    assert set(adult.categories) == {"phishing", "malware"}
    assert young.youtube == "strict" and young.safe_search
    assert any(s.block == "all" for s in young.schedules), "a bedtime example"
    assert set(teen.categories) < set(young.categories)


def test_template_as_profile_uses_household_keys(rules: Rules) -> None:
    profile = rules.template_profiles()["teen"]
    assert profile["youtube"] == "moderate"
    homework = profile["schedules"][0]
    assert set(homework) == {"name", "days", "from", "to", "block", "allow"}
    assert homework["block"] == ["games", "social", "video"]
    assert profile["budgets"] == [{"target": "games", "minutes": 120}]


# -- the loader's reports ---------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    return target


def node_line(path: Path, *keys: str | int) -> int:
    """The line of the YAML node reached by ``keys`` (mapping keys, list indexes, or a list item's value)."""
    node = yaml.compose(path.read_text())
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            node = next(v for k, v in node.value if k.value == key)
        elif isinstance(key, int):
            node = node.value[key]
        else:
            node = next(item for item in node.value if item.value == key)
    return int(node.start_mark.line) + 1


def problems_of(rules_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_rules(rules_dir)
    return info.value.problems


def test_a_bad_pack_is_reported_with_file_and_line(copy: Path) -> None:
    (copy / "weapons.yaml").write_text(
        "id: weapons\n"
        "name: Weapons\n"
        "description: Guns.\n"
        "threats: [weapons, knives]\n"
        "severity: extreme\n"
        "profiles: [young-child]\n"
        "lists: [lists/weapons.txt, lists/nope.txt]\n"
        "colour: red\n"
    )
    problems = problems_of(copy)
    where = str(copy / "weapons.yaml")
    assert any(p.startswith(f"{where}:4:") and "'knives'" in p for p in problems), problems
    assert any(p.startswith(f"{where}:5:") and "'extreme'" in p for p in problems), problems
    assert any(p.startswith(f"{where}:7:") and "nope.txt" in p for p in problems), problems
    assert any(p.startswith(f"{where}:8:") and "unknown key" in p for p in problems), problems
    assert len(problems) == 4


def test_yaml_syntax_error_names_its_line(copy: Path) -> None:
    (copy / "drugs.yaml").write_text("id: drugs\nname: Drugs\nthreats: [drugs\nseverity: high\n")
    problems = problems_of(copy)
    assert len(problems) == 1 and problems[0].startswith(f"{copy / 'drugs.yaml'}:")
    assert "YAML syntax" in problems[0]


def test_id_must_match_file_name_and_required_packs_exist(copy: Path) -> None:
    (copy / "weapons.yaml").rename(copy / "arms.yaml")
    problems = problems_of(copy)
    assert any(p.startswith(f"{copy / 'arms.yaml'}:") and "differs from the file name" in p for p in problems)
    assert any(p.startswith(f"{copy / 'weapons.yaml'}:1:") and "missing" in p for p in problems)


def test_pack_and_template_disagreeing_is_reported_on_both_sides(copy: Path) -> None:
    pack = copy / "gambling.yaml"
    pack.write_text(pack.read_text().replace("profiles: [young-child, teen]", "profiles: [young-child]"))
    problems = problems_of(copy)
    profiles = copy / "profiles.yaml"
    line = node_line(profiles, "templates", 1, "categories", "gambling")
    assert problems == [f"{profiles}:{line}: gambling.yaml does not list 'teen' in its profiles:"]


def test_unknown_references_across_files(copy: Path) -> None:
    services = copy / "services.yaml"
    old = "category: video\n    domains: [netflix.com"
    text = services.read_text().replace(old, old.replace("video", "movies"))
    services.write_text(text)
    line = text.splitlines().index("    category: movies") + 1
    pack = copy / "ads.yaml"
    pack.write_text(pack.read_text().replace("profiles: [young-child]", "profiles: [young-child, toddler]"))
    problems = problems_of(copy)
    assert f"{services}:{line}: unknown category 'movies'" in problems
    assert any(p.startswith(f"{pack}:") and "'toddler'" in p for p in problems), problems


def test_safesearch_needs_exactly_one_kind_of_target(copy: Path) -> None:
    path = copy / "safesearch.yaml"
    text = path.read_text().replace("    target: strict.bing.com\n", "")
    path.write_text(text)
    line = text.splitlines().index("  - id: bing") + 1
    assert problems_of(copy) == [f"{path}:{line}: engine 'bing': give exactly one of target: or targets:"]


@pytest.mark.parametrize(
    ("file", "old", "new", "needle", "problem"),
    [
        ("services.yaml", "domains: [kik.com]", "domains: [kik.com, ome.tv]", "ome.tv]",
         "ome.tv is already in service 'random-video-chat'"),
        ("services.yaml", "  - id: kik\n", "  - id: games\n", "  - id: games",
         "service 'games' has a category's id"),
        ("safesearch.yaml", "domains: [pixabay.com]", "domains: [pixabay.com, www.bing.com]", "www.bing.com]",
         "www.bing.com is already rewritten by engine 'bing'"),
        ("safesearch.yaml", "domains: [pixabay.com]", "domains: [safesearch.pixabay.com]", "domains: [safesearch",
         "is its own target"),
        ("chat.yaml", "lists: [lists/chat.txt]", "lists: [../config.yaml]", "lists: [../",
         "bundled lists are paths inside rules/"),
        ("profiles.yaml", "block: [games, social, video]", "block: [games, homework]", "block: [games, homework]",
         "unknown category or service 'homework'"),
        ("profiles.yaml", "{target: games, minutes: 120}", "{target: games, minutes: 2000}", "minutes: 2000",
         "out of range"),
        ("hate.yaml", "lists: [lists/hate.txt]", "lists: []", "lists: []", "lists: give at least one"),
    ],
)
def test_broken_rules_are_reported_at_their_line(
    copy: Path, file: str, old: str, new: str, needle: str, problem: str
) -> None:
    path = copy / file
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)
    problems = problems_of(copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: ") and problem in problems[0], problems


def test_missing_directory() -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_rules(Path("/nonexistent/rules"))


# -- helpers ----------------------------------------------------------------------


def test_bundled_domains_reads_plain_lists(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("# source: test\n\nExample.COM.\nfoo.example.org  # why\n   \n")
    assert bundled_domains(path) == ("example.com", "foo.example.org")


def test_default_rules_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GUARDIAN_RULES_DIR", raising=False)
    assert default_rules_dir() == RULES_DIR
    monkeypatch.setenv("GUARDIAN_RULES_DIR", str(tmp_path))
    assert default_rules_dir() == tmp_path
