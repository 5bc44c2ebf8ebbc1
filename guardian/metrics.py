"""Prometheus metrics and /healthz, from the daemon's status (``guardian status --json``).

The dashboard's process serves both: it asks the DNS process for ``status`` over the control
socket and renders here, so nothing on the DNS loop formats text. Metric names are part of
the operator contract (README: Metrics): extend, never rename. No household data: no device,
profile or domain appears in a label; categories, severities and upstream URLs do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .dns.upstreams.base import RTT_BUCKETS_MS
from .verdicts import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STALE_LISTS_SECONDS = 3 * 86_400  # a daily refresh missed three times: the lists are "old"
RESULTS = tuple(Outcome)
SEVERITIES = ("low", "medium", "high", "critical")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, object], float]], suffix: str = "") -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.sample(name + suffix, labels, value)

    def sample(self, name: str, labels: Mapping[str, object], value: float) -> None:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")


def render(status: Mapping[str, Any] | None, events_by_severity: Mapping[str, int] | None = None) -> str:
    """The text exposition (format 0.0.4) of ``status``; None when the daemon does not answer.

    ``events_by_severity``: risk events in guardian.db by severity (the dashboard counts them
    read-only; the DNS process does not keep them).
    """
    out = _Out()
    out.family("guardian_up", "gauge", "1 when the DNS process answered the status request.",
               [({}, 1 if status else 0)])
    if not status:
        return "\n".join(out.lines) + "\n"
    out.family("guardian_build_info", "gauge", "Guardian's version.", [({"version": status.get("version", "")}, 1)])
    out.family("guardian_uptime_seconds", "gauge", "Seconds since the DNS process started.",
               [({}, status.get("uptime_seconds", 0))])

    q = status.get("queries", {})
    out.family("guardian_dns_queries_total", "counter", "DNS queries received, by transport.",
               [({"transport": "udp"}, q.get("udp_queries", 0)), ({"transport": "tcp"}, q.get("tcp_queries", 0))])
    store = status.get("store", {})
    results = store.get("results", {})
    out.family("guardian_dns_answers_total", "counter", "Answers by result (allowed, blocked, rewritten, "
               "refused, error).", [({"result": r}, results.get(r, 0)) for r in sorted(set(RESULTS) | set(results))])
    blocked = store.get("blocked_by_category", {})
    out.family("guardian_dns_blocked_total", "counter", "Blocked answers by category.",
               [({"category": c}, n) for c, n in sorted(blocked.items())])
    for key, help_text in (("malformed", "Packets that were not DNS queries."),
                           ("dropped", "Queries dropped unanswered (overload)."),
                           ("errors", "Queries that failed inside Guardian (answered SERVFAIL)."),
                           ("truncated", "UDP answers sent truncated (the client retries over TCP)."),
                           ("packet_reuses", "Answers served from the packet cache.")):
        out.family(f"guardian_dns_{key}_total", "counter", help_text, [({}, q.get(key, 0))])
    refused = status.get("refused", {})
    out.family("guardian_dns_refused_total", "counter", "Queries refused by the guard, by reason.",
               [({"reason": "acl"}, refused.get("acl", 0)), ({"reason": "rate_limit"}, refused.get("rate_limit", 0))])

    cache = status.get("cache", {})
    out.family("guardian_cache_hits_total", "counter", "Answer cache hits.", [({}, cache.get("hits", 0))])
    out.family("guardian_cache_misses_total", "counter", "Answer cache misses.", [({}, cache.get("misses", 0))])
    out.family("guardian_cache_stale_served_total", "counter", "Stale answers served while upstreams failed.",
               [({}, cache.get("stale_served", 0))])
    out.family("guardian_cache_entries", "gauge", "Answers in the cache.", [({}, cache.get("entries", 0))])

    ups = status.get("upstreams", [])
    out.family("guardian_upstream_up", "gauge", "1 while the upstream answers.",
               [({"upstream": u["name"]}, 1 if u.get("up") else 0) for u in ups])
    out.family("guardian_upstream_answers_total", "counter", "Answers from each upstream.",
               [({"upstream": u["name"]}, u.get("answered", 0)) for u in ups])
    out.family("guardian_upstream_errors_total", "counter", "Failed exchanges with each upstream.",
               [({"upstream": u["name"]}, u.get("errors", 0)) for u in ups])
    out.lines.append("# HELP guardian_upstream_rtt_milliseconds Round trip of each upstream's answers.")
    out.lines.append("# TYPE guardian_upstream_rtt_milliseconds histogram")
    for u in ups:
        buckets = u.get("rtt_buckets") or [0] * len(RTT_BUCKETS_MS)
        running = 0
        for bound, count in zip(RTT_BUCKETS_MS, buckets, strict=False):
            running += count
            out.sample("guardian_upstream_rtt_milliseconds_bucket", {"upstream": u["name"], "le": _number(bound)},
                       running)
        out.sample("guardian_upstream_rtt_milliseconds_sum", {"upstream": u["name"]}, u.get("rtt_sum_ms", 0.0))
        out.sample("guardian_upstream_rtt_milliseconds_count", {"upstream": u["name"]}, running)

    out.family("guardian_store_queue_depth", "gauge", "Query records waiting to be written.",
               [({}, store.get("queued", 0) + store.get("waiting", 0))])
    for key, help_text in (("written", "Query records written to guardian.db."),
                           ("dropped", "Query records dropped: the queue was full."),
                           ("lost", "Query records lost: the writer process ended."),
                           ("unsaved", "Query records given up after write failures."),
                           ("writer_restarts", "Times the store's writer process was restarted.")):
        name = f"guardian_store_{key}_total" if key != "writer_restarts" else "guardian_store_writer_restarts_total"
        out.family(name, "counter", help_text, [({}, store.get(key, 0))])

    lists = status.get("lists", {})
    out.family("guardian_lists_compiled", "gauge", "Block lists in the compiled snapshot.",
               [({}, lists.get("compiled", 0))])
    out.family("guardian_list_entries", "gauge", "Names in the compiled lists.", [({}, lists.get("entries", 0))])
    if lists.get("age_seconds") is not None:
        out.family("guardian_lists_age_seconds", "gauge", "Seconds since the compiled lists were built.",
                   [({}, lists["age_seconds"])])
    household = status.get("household", {})
    for key in ("profiles", "devices", "overrides"):
        out.family(f"guardian_household_{key}", "gauge", f"Household {key} (a count, no names).",
                   [({}, household.get(key, 0))])
    if events_by_severity is not None:
        out.family("guardian_events_total", "counter", "Risk events recorded, by severity.",
                   [({"severity": s}, events_by_severity.get(s, 0))
                    for s in sorted(set(SEVERITIES) | set(events_by_severity))])
    memory = status.get("memory_mb", {})
    out.family("guardian_process_resident_memory_bytes", "gauge", "Resident memory of each Guardian process.",
               [({"process": name}, round(mb * 1024 * 1024)) for name, mb in sorted(memory.items())])
    return "\n".join(out.lines) + "\n"


def healthz(status: Mapping[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for /healthz: 200 when DNS answers and an upstream is up and the
    store takes writes, else 503. No household data: booleans, counts of nothing personal."""
    if not status:
        return 503, {"status": "down", "dns": False, "upstream": False, "store": False, "lists_age_seconds": None}
    store = status.get("store", {})
    dns = bool(status.get("listening"))
    upstream = any(u.get("up") for u in status.get("upstreams", []))
    writable = not store.get("unsaved") and not (store.get("last_error") and store.get("waiting"))
    age = status.get("lists", {}).get("age_seconds")
    lists_fresh = age is not None and age < STALE_LISTS_SECONDS
    ok = dns and upstream and writable
    body = {"status": "ok" if ok and lists_fresh else ("degraded" if dns else "down"), "dns": dns,
            "upstream": upstream, "store": writable, "lists_age_seconds": age, "version": status.get("version")}
    return (200 if ok else 503), body
