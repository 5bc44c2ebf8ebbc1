"""The anonymous weekly indicators a provider's collector picks up (opt-in).

Only when ``privacy.anonymous_stats`` is on (provision.yaml's ``anonymous_stats: true``,
or the configuration's ``privacy.anonymous_stats``), the daemon writes, once an ISO week
has ended (checked every hour), ``data_dir/anonymous-stats/<YYYY>-W<ww>.json``:

    {"format": "guardian-anonymous-stats", "version": 1, "week": "2026-W49",
     "fields": [...], "rows": [{"week", "age_group", "kind", "threat", "events", "attempts"}]}

``age_group`` is the profile's template (never the profile's own name), ``kind`` a risk
kind or ``queries``/``blocked`` totals, ``threat`` the rule packs' threat name: counts per
threat, per week, per age group, and nothing else (no device, address, MAC, profile name,
account or domain; guardian/store/queries.py builds the rows). The last 12 complete weeks
are written when missing (weeks without any row are skipped, except the last one, so a
collector always finds last week's file); a file once written is not rewritten. Turning
the setting off stops the files; a factory reset removes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .files import atomic_write
from .store.queries import ANON_FIELDS

FOLDER = "anonymous-stats"
WEEKS_BACK = 12


def _weeks(now: float, zone: Any) -> list[tuple[str, float, float]]:
    """(name, start, end) of the complete ISO weeks before ``now``, newest first."""
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    weeks = []
    for back in range(1, WEEKS_BACK + 1):
        start = (monday - timedelta(weeks=back)).replace(tzinfo=None)
        start_aware = start.replace(tzinfo=zone)
        end_aware = (start + timedelta(weeks=1)).replace(tzinfo=zone)
        iso = start.isocalendar()
        weeks.append((f"{iso.year}-W{iso.week:02d}", start_aware.timestamp(), end_aware.timestamp()))
    return weeks


def write_due(settings: Any, templates: Mapping[str, str], now: float) -> list[Path]:
    """Write the missing weekly files; the paths written (none when the setting is off)."""
    if not settings.privacy.anonymous_stats:
        return []
    from .store.commands import _reader

    reader = _reader(settings)
    if reader is None:
        return []
    folder = settings.data_dir / FOLDER
    written: list[Path] = []
    try:
        for index, (name, start, end) in enumerate(_weeks(now, settings.zone)):
            path = folder / f"{name}.json"
            if path.exists():
                continue
            rows = [r for r in reader.anonymous_stats(start, end, templates) if r["week"] == name]
            if not rows and index > 0:
                continue
            folder.mkdir(mode=0o750, exist_ok=True)
            body = json.dumps({"format": "guardian-anonymous-stats", "version": 1, "week": name,
                               "fields": list(ANON_FIELDS), "rows": rows}, indent=1)
            atomic_write(path, body + "\n", mode=0o640)  # a collector never sees half a file
            written.append(path)
    finally:
        reader.close()
    return written
