"""``guardian events`` and ``guardian stats``: text or JSON from the store, while the daemon runs.

They open the database read-only (WAL lets them read beside the writer) and never create
it: without a database there is simply nothing to show yet.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Settings
from ..printable import printable
from .db import StoreError
from .queries import StoreReader, anonymous_csv, anonymous_json
from .records import DB_NAME

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_since(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w``, ``90s`` -> seconds. Raises StoreError if malformed."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise StoreError(f"--since {text!r}: expected a duration like 30m, 24h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _reader(settings: Settings) -> StoreReader | None:
    path = settings.data_dir / DB_NAME
    if not path.exists():
        return None
    return StoreReader.open(path, settings.zone, readonly=True)


def _iso(epoch: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")


def events(settings: Settings, since: str = "24h", as_json: bool = False, now: float | None = None) -> str:
    """Risk events last seen within ``since``, newest first by last occurrence.

    JSON: a list of objects with ``time`` (last occurrence, ISO 8601 with the household
    offset), ``first``, ``device``, ``client``, ``profile``, ``kind``, ``threat``,
    ``category``, ``service``, ``severity``, ``count``, ``example``, ``examples``,
    ``message``, ``state`` and ``id``.
    """
    now = time.time() if now is None else now
    start = now - parse_since(since)
    reader = _reader(settings)
    found = []
    if reader is not None:
        try:
            found = reader.events(start)
        finally:
            reader.close()
    zone = settings.zone
    if as_json:
        out = []
        for e in found:
            item = e.to_json()
            item["time"] = _iso(e.last, zone)
            item["first"] = _iso(e.first, zone)
            out.append(item)
        return json.dumps(out, indent=1, ensure_ascii=False)
    if not found:
        return f"no risk events in the last {since}"
    lines = []
    for e in found:
        who = e.device or e.client or "-"
        if e.profile:
            who += f" ({e.profile})"
        what = e.threat or e.category or e.service or ""
        detail = e.message or (f"e.g. {', '.join(e.examples[:3])}" if e.examples else "")
        # Device names, examples and messages may carry a device's own hostname: escaped.
        lines.append(f"{_iso(e.last, zone)[:16].replace('T', ' ')}  {e.severity:<8} {e.kind:<10} "
                     f"{printable(who):<28} {printable(what):<14} x{e.count:<5} {printable(detail)}".rstrip())
    return "\n".join(lines)


def stats(settings: Settings, since: str = "24h", as_json: bool = False, now: float | None = None) -> str:
    """Per-device, per-profile, per-category and per-service counts (queries, blocked) within ``since``.

    JSON: ``{"since", "until", "devices": [{device, profile, queries, blocked}],
    "profiles": [{profile, ...}], "categories": [{category, ...}], "services": [{service, ...}],
    "top_blocked": [{domain, blocked}]}``; counts start at the hour ``since`` falls in.
    """
    now = time.time() if now is None else now
    start = now - parse_since(since)
    reader = _reader(settings)
    result: dict[str, Any] = {"since": _iso(start, settings.zone), "until": _iso(now, settings.zone),
                              "devices": [], "profiles": [], "categories": [], "services": [], "top_blocked": []}
    if reader is not None:
        try:
            result["devices"] = [c.to_json("device") for c in reader.per_device(start, now)]
            result["profiles"] = [c.to_json("profile") for c in reader.per_profile(start, now)]
            result["categories"] = [c.to_json("category") for c in reader.per_category(start, now)]
            result["services"] = [c.to_json("service") for c in reader.per_category(start, now, column="service_id")
                                  if c.key is not None]
            result["top_blocked"] = [{"domain": c.key, "blocked": c.queries} for c in reader.top_blocked(start, now)]
        finally:
            reader.close()
    if as_json:
        return json.dumps(result, indent=1, ensure_ascii=False)
    lines = [f"since {result['since']}"]
    for title, key, rows in (("device", "device", result["devices"]), ("profile", "profile", result["profiles"]),
                             ("category", "category", result["categories"]),
                             ("service", "service", result["services"])):
        lines.append("")
        lines.append(f"{title:<30} {'queries':>9} {'blocked':>9}")
        for row in rows:
            name = row[key] if row[key] is not None else ("(anonymous)" if key == "device" else "-")
            if key == "device" and row.get("profile"):
                name = f"{name} ({row['profile']})"
            lines.append(f"{printable(name):<30} {row['queries']:>9} {row['blocked']:>9}")
        if not rows:
            lines.append("(none)")
    if result["top_blocked"]:
        lines += ["", f"{'top blocked domain':<40} {'blocked':>9}"]
        lines += [f"{printable(row['domain']):<40} {row['blocked']:>9}" for row in result["top_blocked"]]
    return "\n".join(lines)


def anonymous_export(settings: Settings, templates: dict[str, str], since: str = "12w", fmt: str = "csv",
                     now: float | None = None) -> str:
    """The opt-in anonymous statistics (see queries.py for the format). Refused unless
    ``privacy.anonymous_stats`` is on. ``templates``: profile name -> template/age group."""
    if not settings.privacy.anonymous_stats:
        raise StoreError("anonymous statistics are off (privacy.anonymous_stats: false)")
    now = time.time() if now is None else now
    reader = _reader(settings)
    rows: list[dict[str, Any]] = []
    if reader is not None:
        try:
            rows = reader.anonymous_stats(now - parse_since(since), now, templates)
        finally:
            reader.close()
    return anonymous_json(rows) if fmt == "json" else anonymous_csv(rows)
