"""The parents' choices: the filtering service's settings changed from the dashboard.

Kept in ``data_dir/choices.yaml`` (the daemon writes it; the operator's guardian.yaml is
never rewritten, so its comments and layout stay the operator's). The file uses the
configuration's own keys and schema, for the few settings a parent may change:

    dns: {upstreams: [...]}
    privacy: {mode: full | risks-only | anonymous}
    store: {query_days: N, event_days: N}
    timezone: Europe/Paris

They win over guardian.yaml and over a provisioning's defaults, never over a setting the
provisioning locks. A broken file is reported like the configuration (FILE:LINE: what).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from .config import Settings, parse
from .errors import ConfigError
from .files import atomic_write

CHOICES = "choices.yaml"
HEADER = ("# The parents' choices, written by Guardian's dashboard. They win over guardian.yaml\n"
          "# (never over a provider's locked settings). Edit guardian.yaml, not this file.\n")
# Choice -> the provisioning's lock name (provision.LOCKABLE).
LOCKS = {"upstreams": "upstreams", "privacy": "privacy.mode", "query_days": "privacy.query_days",
         "event_days": "privacy.event_days", "timezone": ""}


def path_for(data_dir: Path) -> Path:
    return data_dir / CHOICES


def read(data_dir: Path) -> dict[str, Any]:
    """The stored choices as plain data ({} when none); ConfigError (FILE:LINE) if broken."""
    path = path_for(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}:1: cannot read: {exc}"]) from exc
    checked = parse(text, str(path), base=data_dir)  # the configuration's schema, FILE:LINE
    raw = yaml.safe_load(text) or {}
    out: dict[str, Any] = {}
    if "upstreams" in (raw.get("dns") or {}):
        out["upstreams"] = [u.url for u in checked.dns.upstreams]
    if "mode" in (raw.get("privacy") or {}):
        out["privacy"] = checked.privacy.mode
    for key in ("query_days", "event_days"):
        if key in (raw.get("store") or {}):
            out[key] = getattr(checked.store, key)
    if raw.get("timezone"):
        out["timezone"] = checked.timezone
    unknown = set(raw) - {"dns", "privacy", "store", "timezone"}
    if unknown:
        raise ConfigError([f"{path}:1: {', '.join(sorted(unknown))}: not a setting parents choose"])
    return out


def _document(choices: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if "upstreams" in choices:
        doc["dns"] = {"upstreams": list(choices["upstreams"])}
    if "privacy" in choices:
        doc["privacy"] = {"mode": choices["privacy"]}
    store = {k: choices[k] for k in ("query_days", "event_days") if k in choices}
    if store:
        doc["store"] = store
    if choices.get("timezone"):
        doc["timezone"] = choices["timezone"]
    return doc


def check(data_dir: Path, changes: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The stored choices with ``changes`` made, and the file's new text; ConfigError
    (with what is wrong) before anything is written."""
    merged = {**read(data_dir), **changes}
    text = HEADER + yaml.safe_dump(_document(merged), allow_unicode=True, sort_keys=False)
    try:
        parse(text, "the dashboard's choice", base=data_dir)
    except ConfigError as exc:
        raise ConfigError([p.split(": ", 1)[-1] if p.startswith("the dashboard") else p for p in exc.problems]) from None
    return merged, text


def save(data_dir: Path, text: str) -> None:
    atomic_write(path_for(data_dir), text, mode=0o640)


def apply(settings: Settings, choices: dict[str, Any], locked: frozenset[str] | set[str] = frozenset()) -> Settings:
    """``settings`` with the parents' choices in (a locked one is left as it is)."""
    if not choices:
        return settings
    from .addresses import parse_upstream

    def free(key: str) -> bool:
        return key in choices and (not LOCKS[key] or LOCKS[key] not in locked)

    dns, privacy, store, zone = settings.dns, settings.privacy, settings.store, settings.timezone
    if free("upstreams") and dns is not None:
        dns = dataclasses.replace(dns, upstreams=tuple(parse_upstream(u) for u in choices["upstreams"]))
    if free("privacy"):
        privacy = dataclasses.replace(privacy, mode=choices["privacy"])
    for key in ("query_days", "event_days"):
        if free(key):
            store = dataclasses.replace(store, **{key: int(choices[key])})
    if free("timezone"):
        zone = choices["timezone"]
    return dataclasses.replace(settings, dns=dns, privacy=privacy, store=store, timezone=zone)
