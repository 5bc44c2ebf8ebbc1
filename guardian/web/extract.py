"""Babel's extractor for the rule packs (web/babel.cfg ``[rules: rules/*.yaml]``): the
words a parent reads in the dashboard (each category's ``name`` and ``description``,
each profile template's) go into the catalogs like the templates' strings, and the
pages translate them with ``_()`` where they show them. Used at extraction time only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import yaml


def extract_rules(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                  options: Any) -> Iterator[tuple[int, str | None, str, list[str]]]:
    data = yaml.safe_load(fileobj.read().decode("utf-8"))
    if not isinstance(data, dict):
        return
    items: list[Any] = []
    if "id" in data and "name" in data:  # a category's rule pack
        items.append(data)
    items += [t for t in data.get("templates") or () if isinstance(t, dict)]  # profiles.yaml
    for item in items:
        for key in ("name", "description"):
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                yield 0, None, value, []
