"""``guardian status``: what the running daemon is doing, as data (``collect``, sent
over the control socket and read by /metrics and /healthz) and in words (``text``).

The daemon (app.py) only wires the parts; each part counts in its own stats objects,
and this module reads them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .app import Guardian
    from .config import Settings


def collect(guardian: Guardian) -> dict[str, Any]:
    """Counters since start: DNS, upstreams, cache, guard, store, lists, devices, memory."""
    server, pipeline, cache = guardian.server, guardian.pipeline, guardian.cache
    stats = dataclasses.asdict(server.stats) if server is not None else {}
    now = time.monotonic()
    upstreams = [
        {"name": u.name, "up": u.up, "down_for_seconds": round(now - u.down_since, 1) if u.down_since else 0.0,
         "answered": u.answered, "failures": u.failures, "rtt_ms": round(u.rtt_ms, 2),
         "last_error": u.last_error, "errors": u.errors, "rtt_buckets": list(u.rtt_buckets),
         "rtt_sum_ms": round(u.rtt_sum_ms, 3)}
        for u in pipeline.pool.upstreams
    ]
    snap = guardian.policy.current
    return {
        "version": __version__,
        "uptime_seconds": round(now - guardian.started, 1),
        "listening": [f"{proto} {host}:{port}" for proto, host, port in (server.bound if server else [])],
        "queries": {**stats, "packet_reuses": stats.get("packet_reuses", 0)},
        "refused": {"acl": pipeline.guard.refused_acl, "rate_limit": pipeline.guard.refused_rate},
        "upstreams": upstreams,
        "cache": {"entries": len(cache), "size": cache.size, "hits": cache.hits, "misses": cache.misses,
                  "stale_served": cache.stale_served},
        "lists": {"compiled": len(snap.matcher.lists),
                  "entries": sum(info.entries for info in snap.matcher.lists.values()),
                  "subscriptions": len(guardian.subscriptions), "age_seconds": lists_age(guardian.settings)},
        "household": {"profiles": len(snap.household.profiles), "devices": len(snap.household.devices),
                      "overrides": len(snap.overrides)},
        "store": guardian.recorder.health(),
        "discovery": guardian.discovery.health() if guardian.discovery is not None else {},
        "memory_mb": memory_mb(),
    }


def lists_age(settings: Settings) -> float | None:
    """Seconds since the compiled list snapshot in use was built (None: none yet)."""
    try:
        return round(time.time() - (settings.data_dir / "lists" / "CURRENT").stat().st_mtime, 1)
    except OSError:
        return None


def memory_mb() -> dict[str, float]:
    """RSS of this process and of its children (the store's writer, a download...), MB."""
    from pathlib import Path

    def rss(pid: int | str) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    children: list[str] = []
    try:
        for task in Path("/proc/self/task").iterdir():
            children += (task / "children").read_text().split()
    except OSError:
        pass
    return {"dns_process": round(rss("self"), 1), "other_processes": round(sum(rss(c) for c in children), 1)}


def text(data: dict[str, Any]) -> str:
    """``guardian status`` for a person: the figures that say whether all is well."""
    q, c, st = data["queries"], data["cache"], data["store"]
    asked = c["hits"] + c["misses"]
    lines = [
        f"Guardian {data['version']}, up {duration_words(data['uptime_seconds'])}; "
        f"listening on {', '.join(data['listening']) or 'nothing'}",
        f"queries: {q.get('udp_queries', 0):,} UDP, {q.get('tcp_queries', 0):,} TCP "
        f"({q.get('packet_reuses', 0):,} repeats answered from the packet cache), "
        f"{q.get('malformed', 0):,} malformed, {q.get('errors', 0):,} errors; refused: "
        f"{data['refused']['acl']:,} outside allow_clients, {data['refused']['rate_limit']:,} over the rate limit",
        f"cache: {c['entries']:,} of {c['size']:,} answers, hit ratio "
        f"{(100.0 * c['hits'] / asked) if asked else 0.0:.1f}%, {c['stale_served']:,} stale answers served",
    ]
    for u in data["upstreams"]:
        state = "up" if u["up"] else f"DOWN for {duration_words(u['down_for_seconds'])} ({u['last_error']})"
        lines.append(f"upstream {u['name']}: {state}, {u['answered']:,} answers, {u['failures']:,} failures, "
                     f"{u['rtt_ms']} ms")
    li, h = data["lists"], data["household"]
    lines.append(f"lists: {li['compiled']} compiled, {li['entries']:,} names; {li['subscriptions']} downloaded")
    lines.append(f"household: {h['profiles']} profiles, {h['devices']} devices, {h['overrides']} overrides in force")
    lines.append(store_line(st))
    d = data["discovery"]
    if d:
        lines.append(f"devices seen: {d.get('devices', 0)}" +
                     (f"; {'; '.join(d['problems'])}" if d.get("problems") else ""))
    m = data["memory_mb"]
    lines.append(f"memory: DNS process {m['dns_process']} MB, other processes {m['other_processes']} MB")
    return "\n".join(lines)


def store_line(st: dict[str, Any]) -> str:
    """The query log's health in words: written, waiting for the disk, and every way a
    record can fail to be saved (as ``guardian status --json`` counts them)."""
    waiting = st.get("queued", 0) + st.get("waiting", 0)
    line = (f"store: {st.get('written', 0):,} queries written, {waiting:,} waiting to be written; not saved: "
            f"{st.get('unsaved', 0):,} given up after write failures, {st.get('dropped', 0):,} dropped "
            f"(queue full), {st.get('lost', 0):,} lost (writer process ended)")
    if st.get("writer_restarts"):
        line += f"; writer process restarted {st['writer_restarts']:,} times"
    if st.get("last_error") and (waiting or st.get("unsaved")):
        line += f"; last error: {st['last_error']}"
    return line


def duration_words(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"
