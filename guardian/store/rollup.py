"""Keeping the daily rollups (and ``blocked_totals``) exact sums of the hourly ones (the SQL
side; see days.py).

Every change to ``hourly``/``blocked_hourly`` changes the daily rollups in the same
transaction: the writer adds each batch's counts to both, retention subtracts an hour
before it deletes it, privacy folds devices into "none" in both, and ``rebuild`` (the
backfill of an older file, or a change of zone) recomputes them day by day. ``run`` is
any ``(sql, params) -> rows`` inside the caller's open write transaction.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from .days import HOUR, ROLLUPS, ZONE_KEY, Execute, built_zone, day_key, day_of_hour, day_start


def _zone_name(zone: ZoneInfo) -> str:
    return zone.key or str(zone)


def rebuild(run: Execute, zone: ZoneInfo) -> int:
    """Recompute every daily rollup from its hourly source in ``zone``; the days built."""
    for name in ROLLUPS:
        run(f"DELETE FROM {name}", ())
    run("DELETE FROM blocked_totals", ())
    run("INSERT INTO blocked_totals (domain_id, count) SELECT domain_id, sum(count) FROM blocked_hourly"
        " GROUP BY domain_id", ())
    days = 0
    cursor: int | None = 0
    while True:
        # The next hour with data in either source, its local day, then that day whole.
        starts = [run(f"SELECT min(hour) FROM {t} WHERE hour >= ?", (cursor,))[0][0]
                  for t in ("hourly", "blocked_hourly")]
        found = [int(h) for h in starts if h is not None]
        if not found:
            break
        day = day_of_hour(min(found), zone)
        lo, hi = day_start(day, zone), day_start(day + timedelta(days=1), zone)
        for name, (source, keys) in ROLLUPS.items():
            cols = ", ".join(keys)
            run(f"INSERT INTO {name} (day, {cols}, count) SELECT ?, {cols}, sum(count) FROM {source}"
                f" WHERE hour >= ? AND hour < ? GROUP BY {cols}", (lo, lo, hi))
        days += 1
        cursor = hi
    run("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (ZONE_KEY, _zone_name(zone)))
    return days


def forget_hours(run: Execute, source: str, lo: int, hi: int) -> None:
    """Take the ``source`` rows of the hours ``[lo, hi)`` out of their daily rollups and of
    ``blocked_totals`` (call it just before deleting them). The daily ones are left alone
    while they are not built (their rebuild starts from what is left)."""
    zone = built_zone(run)
    hours = [int(r[0]) for r in run(f"SELECT DISTINCT hour FROM {source} WHERE hour >= ? AND hour < ?", (lo, hi))]
    for hour in hours:
        if source == "blocked_hourly":
            run("INSERT INTO blocked_totals (domain_id, count) SELECT domain_id, -sum(count) FROM blocked_hourly"
                " WHERE hour = ? GROUP BY domain_id ON CONFLICT (domain_id) DO UPDATE SET count = count + excluded.count",
                (hour,))
            run("DELETE FROM blocked_totals WHERE count <= 0 AND domain_id IN"
                " (SELECT domain_id FROM blocked_hourly WHERE hour = ?)", (hour,))
        if zone is None:
            continue
        day = day_key(hour, zone)
        for name, (table, keys) in ROLLUPS.items():
            if table != source:
                continue
            cols = ", ".join(keys)
            run(f"INSERT INTO {name} (day, {cols}, count) SELECT ?, {cols}, -sum(count) FROM {source}"
                f" WHERE hour = ? GROUP BY {cols} ON CONFLICT ({cols}, day) DO UPDATE SET count = count + excluded.count",
                (day, hour))
            first = keys[0]
            run(f"DELETE FROM {name} WHERE day = ? AND count <= 0 AND {first} IN"
                f" (SELECT {first} FROM {source} WHERE hour = ?)", (day, hour))


def fold_clients(run: Execute) -> int:
    """Anonymous mode: every device's daily counts become "no device" (client 0); rows moved."""
    moved = 0
    for name, (_source, keys) in ROLLUPS.items():
        if "client_id" not in keys:
            continue
        n = int(run(f"SELECT count(*) FROM {name} WHERE client_id != 0", ())[0][0])
        if not n:
            continue
        cols = ", ".join(("day", *keys))
        others = cols.replace("client_id", "0")
        run(f"INSERT INTO {name} ({cols}, count) SELECT {others}, sum(count) FROM {name} WHERE client_id != 0"
            f" GROUP BY {others.replace('0, ', '')} ON CONFLICT ({cols}) DO UPDATE SET count = count + excluded.count",
            ())
        run(f"DELETE FROM {name} WHERE client_id != 0", ())
        moved += n
    return moved


__all__ = ["HOUR", "fold_clients", "forget_hours", "rebuild"]
