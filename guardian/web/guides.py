"""The parents' guides, one per threat: plain words on what it is, the warning signs, how
to talk about it with a child, and what Guardian can and cannot do about it. They are
data next to the rule packs (rules/guides/<threat>.yaml), each text in every language of
the dashboard (guardian/web/i18n.py LANGUAGES); tests/test_web_guides.py checks that
none is missing."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from ..policy.rulepacks import default_rules_dir

SECTIONS = ("title", "what", "signs", "talk", "can", "cannot")


def directory() -> Path:
    return default_rules_dir() / "guides"


@functools.cache
def _all() -> dict[str, dict[str, Any]]:
    guides: dict[str, dict[str, Any]] = {}
    folder = directory()
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            guides[path.stem] = data
    return guides


def available() -> set[str]:
    """The threats that have a guide (each guide's ``threats`` lists the ones it covers)."""
    ids: set[str] = set()
    for gid, g in _all().items():
        ids.add(gid)
        ids.update(g.get("threats") or ())
    return ids


def find(threat: str) -> tuple[str, dict[str, Any]] | None:
    """The guide for a threat (its own or one that lists it), or None."""
    guides = _all()
    if threat in guides:
        return threat, guides[threat]
    for gid, g in guides.items():
        if threat in (g.get("threats") or ()):
            return gid, g
    return None


def text(guide: dict[str, Any], lang: str) -> dict[str, str]:
    """A guide's sections in ``lang`` (English where a section lacks it)."""
    out = {}
    for section in SECTIONS:
        value = guide.get(section) or {}
        out[section] = str(value.get(lang) or value.get("en") or "") if isinstance(value, dict) else str(value)
    return out


def all_ids() -> list[str]:
    return list(_all())
