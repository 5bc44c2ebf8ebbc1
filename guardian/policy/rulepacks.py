"""Rule packs: the bundled categories, named services, safe-search tables and profile templates.

``rules/`` holds one YAML file per category (``<id>.yaml``: names for parents, the
threats it addresses, the bundled list files and public subscriptions), plus
``services.yaml``, ``safesearch.yaml`` and ``profiles.yaml``; each file documents its
schema in its comments. ``load_rules`` reads them all, checks every value and every
reference between files (a service's category exists, a template's categories agree
with each pack's ``profiles:``), and raises ConfigError listing every problem as
``FILE:LINE: what``. Nothing here downloads or compiles lists: ``bundled_domains``
only reads a bundled plain list, for consistency checks.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import ConfigError
from ..schema import (
    Bad,
    Context,
    Loader,
    Parser,
    boolean,
    budget_schema,
    choice,
    converted,
    domain_name,
    http_url,
    listof,
    mapping,
    schedule_schema,
    string,
)
from ..verdicts import SEVERITIES
from .household import BLOCK_MODES, Budget
from .schedule import Schedule  # a template's weekly window is the household's own kind

__all__ = [
    "CATEGORY_IDS",
    "LIST_FORMATS",
    "SEVERITIES",
    "THREATS",
    "Budget",
    "Category",
    "ProfileTemplate",
    "Rules",
    "SafeSearchEngine",
    "Schedule",
    "Service",
    "PublicList",
    "bundled_domains",
    "default_rules_dir",
    "load_rules",
]

# The child-online-protection threats a category can address (the dashboard's words).
THREATS: tuple[str, ...] = (
    "pornography",
    "child-abuse-material",
    "violence",
    "hate-racism",
    "self-harm",
    "drugs",
    "weapons",
    "gambling",
    "fraud",
    "phishing",
    "malware",
    "spam",
    "cyberbullying",
    "grooming",
    "sexual-solicitation",
    "cyberstalking",
    "private-data-disclosure",
    "gaming-addiction",
)
# Categories other code names directly; a rules directory without one of them is broken.
CATEGORY_IDS: tuple[str, ...] = (
    "adult",
    "gambling",
    "violence",
    "hate",
    "self-harm",
    "drugs",
    "weapons",
    "dating",
    "chat",
    "social",
    "games",
    "video",
    "phishing",
    "malware",
    "ads",
    "bypass",
    "unsafe-search",
)
LIST_FORMATS: tuple[str, ...] = ("domains", "hosts", "adblock")
SAFE_SEARCH_LEVELS: tuple[str, ...] = ("strict", "moderate")
YOUTUBE_MODES: tuple[str, ...] = ("off", "moderate", "strict")

# Files in rules/ that are not category packs.
_SPECIAL = ("services.yaml", "safesearch.yaml", "profiles.yaml")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class PublicList:
    """A public list fetched on the device (never bundled): ``format`` is one of LIST_FORMATS."""

    name: str
    url: str
    format: str


@dataclass(frozen=True, slots=True)
class Category:
    """One rule pack. ``lists``/``allow_lists`` are absolute paths of bundled files."""

    id: str
    name: str
    description: str
    threats: tuple[str, ...]
    severity: str
    profiles: tuple[str, ...]
    lists: tuple[Path, ...]
    allow_lists: tuple[Path, ...]
    subscriptions: tuple[PublicList, ...]
    source: Path


@dataclass(frozen=True, slots=True)
class Service:
    """A named service a parent can block or schedule alone; ``domains`` cover subdomains."""

    id: str
    name: str
    category: str
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SafeSearchEngine:
    """Exact ``domains`` answered with a CNAME to the engine's safe host for a level."""

    id: str
    name: str
    domains: tuple[str, ...]
    strict: str
    moderate: str

    def target(self, level: str = "strict") -> str:
        """The safe host for ``level`` (strict or moderate)."""
        return self.moderate if level == "moderate" else self.strict


@dataclass(frozen=True, slots=True)
class ProfileTemplate:
    """A starting profile (Young child, Teen, Adult, Guest) with household profile keys."""

    id: str
    name: str
    description: str
    categories: tuple[str, ...]
    services: tuple[str, ...] = ()
    safe_search: bool = False
    youtube: str = "off"
    bypass_protection: bool = False
    block_mode: str = "nxdomain"
    schedules: tuple[Schedule, ...] = ()
    budgets: tuple[Budget, ...] = ()

    def as_profile(self) -> dict[str, Any]:
        """The template as a household profile mapping (config ``household.profiles`` keys)."""
        return {
            "categories": list(self.categories),
            "services": list(self.services),
            "safe_search": self.safe_search,
            "youtube": self.youtube,
            "bypass_protection": self.bypass_protection,
            "block_mode": self.block_mode,
            "schedules": [
                {
                    "name": s.name,
                    "days": list(s.days),
                    "from": s.start,
                    "to": s.end,
                    "block": s.block if isinstance(s.block, str) else list(s.block),
                    "allow": list(s.allow),
                }
                for s in self.schedules
            ],
            "budgets": [{"target": b.target, "minutes": b.minutes} for b in self.budgets],
        }


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything in a rules directory, checked. Mappings are read-only and keyed by id."""

    directory: Path
    categories: Mapping[str, Category]
    services: Mapping[str, Service]
    safesearch: tuple[SafeSearchEngine, ...]
    templates: Mapping[str, ProfileTemplate]

    @property
    def threats(self) -> dict[str, tuple[str, ...]]:
        """Each threat in THREATS -> the ids of the categories addressing it."""
        return {t: tuple(c.id for c in self.categories.values() if t in c.threats) for t in THREATS}

    def template_profiles(self) -> dict[str, dict[str, Any]]:
        """Templates as profile mappings by id, the shape household_from_config takes."""
        return {t.id: t.as_profile() for t in self.templates.values()}


def default_rules_dir() -> Path:
    """$GUARDIAN_RULES_DIR, else the rules/ directory beside the guardian package."""
    override = os.environ.get("GUARDIAN_RULES_DIR")
    if override:
        return Path(override)
    beside = Path(__file__).resolve().parents[2] / "rules"  # a checkout
    installed = Path(sys.prefix) / "share" / "guardian" / "rules"  # a venv, the .deb (setup.cfg data_files)
    return installed if not beside.is_dir() and installed.is_dir() else beside


def bundled_domains(path: Path) -> tuple[str, ...]:
    """The names in a bundled plain list, in file order: comments, blanks and case dropped.

    Only for the bundled seed lists (one domain a line); the list formats Guardian
    accepts from users are parsed by guardian.policy.lists.
    """
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.partition("#")[0].strip().lower().rstrip(".")
        if name:
            names.append(name)
    return tuple(names)


# -- parsing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _At:
    """A parsed value and the line it came from, for problems found across files."""

    value: Any
    line: int


def _located(parser: Parser) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> _At:
        return _At(parser(node, path, ctx), node.start_mark.line + 1)

    return parse


def _nonempty(parser: Parser) -> Parser:
    """``parser`` for a list that must have at least one item (bad items are reported alone)."""

    def parse(node: yaml.Node, path: str, ctx: Context) -> Any:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise Bad("give at least one", node)
        return parser(node, path, ctx)

    return parse


def _identifier(text: str) -> str:
    if not _ID.match(text):
        raise ValueError(f"{text!r} is not an id (lowercase letters, digits and '-')")
    return text


def _hostname(text: str) -> str:
    name = domain_name(text)
    if text.startswith("*.") or "." not in name:
        raise ValueError(f"{text!r} is not a host name")
    return name


def _bundled_path(text: str) -> str:
    parts = PurePosixPath(text)
    if parts.is_absolute() or ".." in parts.parts or "\\" in text:
        raise ValueError(f"{text!r}: bundled lists are paths inside rules/, like lists/adult.txt")
    return text


_IDS = listof(_located(converted(_identifier)))

_CATEGORY = mapping(
    {
        "id": _located(converted(_identifier)),
        "name": string,
        "description": string,
        "threats": listof(_located(choice(*THREATS))),
        "severity": choice(*SEVERITIES),
        "profiles": _IDS,
        "lists": _nonempty(listof(_located(converted(_bundled_path)))),
        "allow_lists": listof(_located(converted(_bundled_path))),
        "subscriptions": listof(
            mapping(
                {"name": string, "url": converted(http_url), "format": choice(*LIST_FORMATS)},
                required=("name", "url", "format"),
            )
        ),
    },
    required=("id", "name", "description", "threats", "severity", "profiles", "lists"),
)

_SERVICES = mapping(
    {
        "services": listof(
            _located(
                mapping(
                    {
                        "id": converted(_identifier),
                        "name": string,
                        "category": _located(string),
                        "domains": listof(_located(converted(domain_name))),
                    },
                    required=("id", "name", "category", "domains"),
                )
            )
        )
    },
    required=("services",),
)

_SAFESEARCH = mapping(
    {
        "engines": listof(
            _located(
                mapping(
                    {
                        "id": converted(_identifier),
                        "name": string,
                        "target": converted(_hostname),
                        "targets": mapping(
                            {level: converted(_hostname) for level in SAFE_SEARCH_LEVELS},
                            required=SAFE_SEARCH_LEVELS,
                        ),
                        "domains": listof(_located(converted(_hostname))),
                    },
                    required=("id", "name", "domains"),
                )
            )
        )
    },
    required=("engines",),
)

_TEMPLATES = mapping(
    {
        "templates": listof(
            _located(
                mapping(
                    {
                        "id": converted(_identifier),
                        "name": string,
                        "description": string,
                        "categories": listof(_located(string)),
                        "services": listof(_located(string)),
                        "safe_search": boolean,
                        "youtube": choice(*YOUTUBE_MODES),
                        "bypass_protection": boolean,
                        "block_mode": choice(*BLOCK_MODES),
                        "schedules": listof(schedule_schema(_located(string))),
                        "budgets": listof(budget_schema(_located(string))),
                    },
                    required=("id", "name", "description", "categories"),
                )
            )
        )
    },
    required=("templates",),
)


class _Problems:
    """Every problem of every file, so one run shows them all."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: Path, line: int, message: str) -> None:
        self.lines.append(f"{path}:{line}: {message}")

    def parse(self, path: Path, schema: Parser) -> dict[str, Any] | None:
        """``path`` checked against ``schema``; None when it cannot be read at all."""
        ctx = Context(str(path))
        try:
            root = yaml.compose(path.read_text(encoding="utf-8"), Loader=Loader)
        except OSError as exc:
            self.add(path, 1, f"cannot read: {exc.strerror or exc}")
            return None
        except UnicodeDecodeError:
            self.add(path, 1, "not UTF-8 text")
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.add(path, mark.line + 1 if mark else 1, f"YAML syntax: {exc.problem or exc}")
            return None
        except yaml.YAMLError as exc:
            self.add(path, 1, f"YAML: {exc}")
            return None
        if root is None:
            self.add(path, 1, "the file is empty")
            return None
        try:
            values: dict[str, Any] = schema(root, "", ctx)
        except Bad as bad:
            ctx.report(bad.node or root, "", str(bad))
            values = {}
        self.lines.extend(ctx.problems)
        return values


def _unique(items: tuple[_At, ...], path: Path, what: str, problems: _Problems) -> tuple[str, ...]:
    seen: list[str] = []
    for item in items:
        if item.value in seen:
            problems.add(path, item.line, f"{what} {item.value!r} is given twice")
        else:
            seen.append(item.value)
    return tuple(seen)


def _category(path: Path, rules_dir: Path, problems: _Problems) -> tuple[Category, dict[str, int]] | None:
    """One pack, and the line of each of its ``profiles:`` entries (for cross-checks)."""
    values = problems.parse(path, _CATEGORY)
    if values is None:
        return None
    at: _At | None = values.get("id")
    if at is not None and at.value != path.stem:
        problems.add(path, at.line, f"id {at.value!r} differs from the file name {path.stem!r}")
    files: dict[str, tuple[Path, ...]] = {}
    for key in ("lists", "allow_lists"):
        found = []
        for item in values.get(key, ()):
            full = rules_dir / item.value
            if not full.is_file():
                problems.add(path, item.line, f"{key}: {item.value} does not exist in {rules_dir}")
            found.append(full)
        files[key] = tuple(found)
    profiles = values.get("profiles", ())
    category = Category(
        id=path.stem,
        name=values.get("name", path.stem),
        description=values.get("description", ""),
        threats=_unique(values.get("threats", ()), path, "threat", problems),
        severity=values.get("severity", "medium"),
        profiles=_unique(profiles, path, "profile", problems),
        lists=files["lists"],
        allow_lists=files["allow_lists"],
        subscriptions=tuple(
            PublicList(s["name"], s["url"], s["format"])
            for s in values.get("subscriptions", ())
            if {"name", "url", "format"} <= s.keys()
        ),
        source=path,
    )
    return category, {p.value: p.line for p in profiles}


def _services(path: Path, categories: set[str], problems: _Problems) -> dict[str, Service]:
    values = problems.parse(path, _SERVICES) or {}
    services: dict[str, Service] = {}
    owner: dict[str, str] = {}
    for entry in values.get("services", ()):
        raw = entry.value
        if not {"id", "name", "category", "domains"} <= raw.keys():
            continue
        sid = raw["id"]
        if sid in services:
            problems.add(path, entry.line, f"service {sid!r} is given twice")
            continue
        if sid in categories:
            problems.add(path, entry.line, f"service {sid!r} has a category's id; schedules could not tell them apart")
        if raw["category"].value not in categories:
            problems.add(path, raw["category"].line, f"unknown category {raw['category'].value!r}")
        if not raw["domains"]:
            problems.add(path, entry.line, f"service {sid!r} has no domains")
        for domain in raw["domains"]:
            if domain.value in owner:
                problems.add(path, domain.line, f"{domain.value} is already in service {owner[domain.value]!r}")
            owner[domain.value] = sid
        domains = _unique(raw["domains"], path, "domain", problems)
        services[sid] = Service(sid, raw["name"], raw["category"].value, domains)
    return services


def _safesearch(path: Path, problems: _Problems) -> tuple[SafeSearchEngine, ...]:
    values = problems.parse(path, _SAFESEARCH) or {}
    engines: list[SafeSearchEngine] = []
    owner: dict[str, str] = {}
    for entry in values.get("engines", ()):
        raw = entry.value
        if not {"id", "name", "domains"} <= raw.keys():
            continue
        if ("target" in raw) == ("targets" in raw):
            message = f"engine {raw['id']!r}: give exactly one of target: or targets:"
            problems.add(path, entry.line, message)
            continue
        if raw["id"] in {e.id for e in engines}:
            problems.add(path, entry.line, f"engine {raw['id']!r} is given twice")
            continue
        targets = raw.get("targets") or {level: raw["target"] for level in SAFE_SEARCH_LEVELS}
        if len(targets) != len(SAFE_SEARCH_LEVELS):
            continue  # the schema reported the missing level
        for domain in raw["domains"]:
            if domain.value in owner:
                message = f"{domain.value} is already rewritten by engine {owner[domain.value]!r}"
                problems.add(path, domain.line, message)
            elif domain.value in targets.values():
                problems.add(path, domain.line, f"{domain.value} is its own target; the rewrite would loop")
            owner[domain.value] = raw["id"]
        domains = _unique(raw["domains"], path, "domain", problems)
        engine = SafeSearchEngine(raw["id"], raw["name"], domains, targets["strict"], targets["moderate"])
        engines.append(engine)
    return tuple(engines)


def _templates(
    path: Path,
    categories: set[str],
    services: set[str],
    problems: _Problems,
) -> tuple[dict[str, ProfileTemplate], dict[tuple[str, str], int]]:
    """Templates by id, and the line where each (template, category) pair is written."""
    values = problems.parse(path, _TEMPLATES) or {}
    templates: dict[str, ProfileTemplate] = {}
    lines: dict[tuple[str, str], int] = {}
    targets = categories | services

    def known(item: _At, kinds: set[str], what: str) -> None:
        if item.value not in kinds:
            problems.add(path, item.line, f"unknown {what} {item.value!r}")

    for entry in values.get("templates", ()):
        raw = entry.value
        if not {"id", "name", "description", "categories"} <= raw.keys():
            continue
        tid = raw["id"]
        if tid in templates:
            problems.add(path, entry.line, f"template {tid!r} is given twice")
            continue
        for item in raw["categories"]:
            known(item, categories, "category")
            lines[(tid, item.value)] = item.line
        for item in raw.get("services", ()):
            known(item, services, "service")
        schedules = []
        for s in raw.get("schedules", ()):
            if not {"name", "days", "from", "to", "block"} <= s.keys():
                continue
            block = s["block"]
            if not isinstance(block, str):
                for item in block:
                    known(item, targets, "category or service")
                block = tuple(item.value for item in block)
            allow = tuple(s.get("allow", ()))
            try:
                schedules.append(Schedule(s["name"], tuple(s["days"]), s["from"], s["to"], block, allow))
            except ValueError as exc:
                problems.add(path, entry.line, f"template {tid!r}: {exc}")
        budgets = []
        for b in raw.get("budgets", ()):
            if {"target", "minutes"} <= b.keys():
                known(b["target"], targets, "category or service")
                budgets.append(Budget(b["target"].value, b["minutes"]))
        templates[tid] = ProfileTemplate(
            id=tid,
            name=raw["name"],
            description=raw["description"],
            categories=_unique(raw["categories"], path, "category", problems),
            services=_unique(raw.get("services", ()), path, "service", problems),
            safe_search=raw.get("safe_search", False),
            youtube=raw.get("youtube", "off"),
            bypass_protection=raw.get("bypass_protection", False),
            block_mode=raw.get("block_mode", "nxdomain"),
            schedules=tuple(schedules),
            budgets=tuple(budgets),
        )
    return templates, lines


def load_rules(rules_dir: Path | None = None) -> Rules:
    """Read and check a rules directory (default: ``default_rules_dir()``).

    Raises ConfigError with every problem as ``FILE:LINE: what``.
    """
    rules_dir = Path(rules_dir) if rules_dir is not None else default_rules_dir()
    problems = _Problems()
    if not rules_dir.is_dir():
        raise ConfigError([f"{rules_dir}:1: not a directory of rule packs"])
    categories: dict[str, Category] = {}
    profile_lines: dict[str, dict[str, int]] = {}
    # Packs that exist but could not be read still count as known ids, so one broken
    # file is one problem, not one more for every reference to it.
    known: set[str] = set()
    for path in sorted(rules_dir.glob("*.yaml")):
        if path.name in _SPECIAL:
            continue
        known.add(path.stem)
        loaded = _category(path, rules_dir, problems)
        if loaded is not None:
            categories[loaded[0].id] = loaded[0]
            profile_lines[loaded[0].id] = loaded[1]
    for cid in CATEGORY_IDS:
        if cid not in known:
            problems.add(rules_dir / f"{cid}.yaml", 1, f"missing: Guardian needs the {cid!r} category pack")
    services = _services(rules_dir / "services.yaml", known, problems)
    engines = _safesearch(rules_dir / "safesearch.yaml", problems)
    templates, template_lines = _templates(rules_dir / "profiles.yaml", known, set(services), problems)

    # A pack's profiles: and the templates' categories: say the same thing twice (the
    # pack for people reading it, the template for the household); they must agree.
    for cid, category in categories.items():
        for tid, line in profile_lines[cid].items():
            if tid not in templates:
                have = ", ".join(templates) or "none"
                problems.add(category.source, line, f"unknown profile template {tid!r} (profiles.yaml has: {have})")
            elif cid not in templates[tid].categories:
                problems.add(category.source, line, f"template {tid!r} in profiles.yaml does not block {cid!r}")
    for (tid, cid), line in template_lines.items():
        if cid in categories and tid not in categories[cid].profiles:
            problems.add(rules_dir / "profiles.yaml", line, f"{cid}.yaml does not list {tid!r} in its profiles:")

    if problems.lines:
        raise ConfigError(problems.lines)
    return Rules(
        directory=rules_dir,
        categories=MappingProxyType(categories),
        services=MappingProxyType(services),
        safesearch=engines,
        templates=MappingProxyType(templates),
    )
