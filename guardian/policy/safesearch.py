"""Safe search: which names are answered with a CNAME to an engine's enforced host.

The tables are data (rules/safesearch.yaml): each engine has exact ``domains`` and
either one ``target`` (forced by a profile's ``safe_search``) or per-level ``targets``
(YouTube's restricted mode, chosen by a profile's ``youtube: moderate | strict``).
Lookups are one dict access on the exact query name: subdomains are not rewritten
(maps.google.com stays as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from ..names import normalise_domain
from .household import Profile

LEVELS = ("moderate", "strict")


class EngineLike(Protocol):
    """A rule pack's engine (guardian.policy.rulepacks.SafeSearchEngine)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def domains(self) -> tuple[str, ...]: ...
    @property
    def strict(self) -> str: ...
    @property
    def moderate(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine's rewrite: ``target`` for safe_search, or ``targets`` per YouTube level."""

    id: str
    name: str
    domains: tuple[str, ...]
    target: str = ""
    targets: tuple[tuple[str, str], ...] = ()  # (level, target)


@dataclass(frozen=True, slots=True)
class SafeSearch:
    """Compiled safe-search tables: exact name -> (target, engine id)."""

    engines: tuple[Engine, ...] = ()
    _search: dict[str, tuple[str, str]] = field(init=False, repr=False, compare=False)
    _levels: dict[str, dict[str, tuple[str, str]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        search: dict[str, tuple[str, str]] = {}
        levels: dict[str, dict[str, tuple[str, str]]] = {level: {} for level in LEVELS}
        for engine in self.engines:
            for domain in engine.domains:
                if engine.target:
                    search.setdefault(domain, (engine.target, engine.id))
                for level, target in engine.targets:
                    levels.setdefault(level, {}).setdefault(domain, (target, engine.id))
        object.__setattr__(self, "_search", search)
        object.__setattr__(self, "_levels", levels)

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> SafeSearch:
        """From rules/safesearch.yaml's mapping (``{engines: [...]}``) or its engine list.

        Raises ValueError when an engine has neither ``target`` nor ``targets``.
        """
        items = data.get("engines", ()) if isinstance(data, Mapping) else data
        engines = []
        for raw in items:
            eid = str(raw["id"])
            targets = raw.get("targets") or {}
            if not raw.get("target") and not targets:
                raise ValueError(f"safe search engine {eid!r} has no target")
            for level in targets:
                if level not in LEVELS:
                    raise ValueError(f"safe search engine {eid!r}: level {level!r} is not one of {LEVELS}")
            engines.append(
                Engine(
                    id=eid,
                    name=str(raw.get("name", eid)),
                    domains=tuple(normalise_domain(str(d)) for d in raw.get("domains", ())),
                    target=normalise_domain(str(raw.get("target") or "")),
                    targets=tuple((str(k), normalise_domain(str(v))) for k, v in targets.items()),
                )
            )
        return cls(tuple(engines))

    @classmethod
    def from_engines(cls, engines: Iterable[EngineLike]) -> SafeSearch:
        """From the rule packs' engines (``load_rules().safesearch``).

        An engine with different strict and moderate targets (YouTube) follows a
        profile's ``youtube`` level; the others follow its ``safe_search``.
        """
        out = []
        for e in engines:
            if e.strict != e.moderate or e.id == "youtube":
                out.append(Engine(e.id, e.name, tuple(e.domains), targets=(("moderate", e.moderate), ("strict", e.strict))))
            else:
                out.append(Engine(e.id, e.name, tuple(e.domains), target=e.strict))
        return cls(tuple(out))

    @classmethod
    def load(cls, path: Path | str) -> SafeSearch:
        """Read a safesearch.yaml file."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_data(yaml.safe_load(handle) or {})

    def lookup(self, name: str, safe_search: bool, youtube: str) -> tuple[str, str] | None:
        """(CNAME target, engine id) for ``name`` under these settings, or None."""
        if safe_search:
            found = self._search.get(name)
            if found is not None:
                return found
        if youtube != "off":
            table = self._levels.get(youtube)
            if table:
                return table.get(name)
        return None

    def rewrite_for(self, name: str, profile: Profile) -> str | None:
        """The CNAME target for ``name`` (lower case, no trailing dot) under ``profile``."""
        found = self.lookup(name, profile.safe_search, profile.youtube)
        return found[0] if found is not None else None

    @property
    def empty(self) -> bool:
        return not self._search and not any(self._levels.values())


NO_SAFE_SEARCH = SafeSearch()
