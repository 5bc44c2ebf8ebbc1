"""/metrics and /healthz content from the real daemon's status, parsed with prometheus-client."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from support import dig

from guardian import metrics

HOUSEHOLD = """\
household:
  default_profile: Kid
  profiles:
    - {name: Kid, categories: [], deny: [forbidden.example]}
"""


def parsed(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise LookupError(f"{sample} {labels}")


def status_of(running: Any) -> dict[str, Any]:
    return json.loads(json.dumps(running.daemon.status()))  # as it crosses the control socket


def test_metrics_parse_and_move_with_real_queries(make_guardian, upstream):
    running = make_guardian([upstream.url], config=HOUSEHOLD)
    port = running.port()
    before = parsed(metrics.render(status_of(running), {"high": 2}))
    assert before["guardian_upstream_rtt_milliseconds"].type == "histogram"
    assert before["guardian_dns_queries"].type == "counter"  # the parser drops _total from a counter's name
    assert value(before, "guardian_up", "guardian_up") == 1
    assert value(before, "guardian_events", "guardian_events_total", severity="high") == 2
    assert value(before, "guardian_events", "guardian_events_total", severity="low") == 0

    assert dig(port, "example.com").status == "NOERROR"
    assert dig(port, "example.com").status == "NOERROR"  # from the cache
    assert dig(port, "forbidden.example").status in ("NXDOMAIN", "NOERROR")

    after = parsed(metrics.render(status_of(running)))
    udp = value(after, "guardian_dns_queries", "guardian_dns_queries_total", transport="udp")
    assert udp - value(before, "guardian_dns_queries", "guardian_dns_queries_total", transport="udp") == 3
    assert value(after, "guardian_dns_answers", "guardian_dns_answers_total", result="allowed") >= 2
    assert value(after, "guardian_dns_answers", "guardian_dns_answers_total", result="blocked") == 1
    assert sum(s.value for s in after["guardian_dns_blocked"].samples) == 1
    assert value(after, "guardian_cache_hits", "guardian_cache_hits_total") + \
        value(after, "guardian_dns_packet_reuses", "guardian_dns_packet_reuses_total") >= 1
    name = upstream.url
    assert value(after, "guardian_upstream_answers", "guardian_upstream_answers_total", upstream=name) == 1
    assert value(after, "guardian_upstream_up", "guardian_upstream_up", upstream=name) == 1
    count = value(after, "guardian_upstream_rtt_milliseconds", "guardian_upstream_rtt_milliseconds_count",
                  upstream=name)
    inf = value(after, "guardian_upstream_rtt_milliseconds", "guardian_upstream_rtt_milliseconds_bucket",
                upstream=name, le="+Inf")
    assert count == inf == 1
    assert value(after, "guardian_upstream_rtt_milliseconds", "guardian_upstream_rtt_milliseconds_sum",
                 upstream=name) > 0
    assert value(after, "guardian_process_resident_memory_bytes", "guardian_process_resident_memory_bytes",
                 process="dns_process") > 10_000_000
    assert "events" not in {f.removeprefix("guardian_") for f in after}  # only when the dashboard counts them
    # No household data in any label: no device, profile or domain.
    text = metrics.render(status_of(running))
    assert "Kid" not in text and "forbidden.example" not in text and "example.com" not in text


def test_upstream_errors_count_and_healthz_says_degraded(make_guardian, upstream):
    upstream.behaviour.silent = True
    running = make_guardian([upstream.url], config=HOUSEHOLD, upstream_timeout=0.3)
    for i in range(5):  # different names: an upstream is down after several distinct failures
        dig(running.port(), f"n{i}.example.com")
    status = status_of(running)
    families = parsed(metrics.render(status))
    assert value(families, "guardian_upstream_errors", "guardian_upstream_errors_total", upstream=upstream.url) >= 3
    code, body = metrics.healthz(status)
    assert code == 503 and body["dns"] is True and body["upstream"] is False and body["status"] == "degraded"
    assert set(body) == {"status", "dns", "upstream", "store", "lists_age_seconds", "version"}


def test_healthz_ok_with_a_working_upstream_and_down_without_a_daemon(make_guardian, upstream):
    running = make_guardian([upstream.url])
    assert dig(running.port(), "example.com").status == "NOERROR"
    code, body = metrics.healthz(status_of(running))
    assert code == 200 and body["dns"] and body["upstream"] and body["store"]
    assert metrics.healthz(None) == (503, {"status": "down", "dns": False, "upstream": False, "store": False,
                                           "lists_age_seconds": None})
    assert parsed(metrics.render(None))["guardian_up"].samples[0].value == 0
