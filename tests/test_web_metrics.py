"""/healthz and /metrics served by the real dashboard process (``python -m guardian web``)
from the real daemon's status: parsed with prometheus-client's parser, counters moving with
real kdig queries; /metrics only for the allowed clients and, when set, the bearer token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakedns import FakeDns
from prometheus_client.parser import text_string_to_metric_families
from support import ZONE, Running, free_port
from webdash import CONFIG, Dash, wait_http

from guardian.config import load, parse

pytestmark = pytest.mark.slow

TOKEN = "scrape-me-9f2c"
METRICS = f"""  metrics_allow: [127.0.0.1/32, "::1"]
  metrics_token: {TOKEN}
"""


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    base = tmp_path_factory.mktemp("metrics")
    upstream = FakeDns(zone={**ZONE, "10bet.com": [("A", "198.51.100.9")]}).start()
    dns_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    config = base / "guardian.yaml"
    text = CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port, data=base / "var")
    config.write_text(text.replace("dashboard:\n", "dashboard:\n" + METRICS, 1)
                      + "  devices:\n    - {name: Sam's tablet, ip: 127.0.0.2, profile: Child}\n")
    daemon = Running(load(config))
    log = (base / "web.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(config)], stdout=log,
                           stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_http(web_port, web)
        yield Dash(daemon, web, f"http://127.0.0.1:{web_port}", web_port, dns_port, base / "var", config)
    finally:
        web.terminate()
        web.wait(10)
        daemon.stop()
        upstream.stop()
        log.close()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise LookupError(f"{sample} {labels}")


def scrape(dash: Dash, source: str = "127.0.0.1", token: str | None = TOKEN) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, head, text, _ = dash.http("GET", "/metrics", headers=headers, source=source)
    return status, head, text


def test_metrics_parse_and_counters_move_with_real_queries(dash: Dash) -> None:
    status, head, text = scrape(dash)
    assert status == 200, text
    assert head["content-type"].startswith("text/plain; version=0.0.4")
    before = families(text)
    assert value(before, "guardian_up", "guardian_up") == 1
    assert before["guardian_upstream_rtt_milliseconds"].type == "histogram"
    assert value(before, "guardian_events", "guardian_events_total", severity="high") >= 0  # from guardian.db

    assert dash.dig("kids.example").status == "NOERROR"
    assert dash.dig("kids.example").status == "NOERROR"
    dash.dig("example.com")  # on the Child profile's deny list: blocked
    after = families(scrape(dash)[2])
    udp = value(after, "guardian_dns_queries", "guardian_dns_queries_total", transport="udp")
    assert udp - value(before, "guardian_dns_queries", "guardian_dns_queries_total", transport="udp") == 3
    blocked = value(after, "guardian_dns_answers", "guardian_dns_answers_total", result="blocked")
    assert blocked - value(before, "guardian_dns_answers", "guardian_dns_answers_total", result="blocked") >= 1
    assert value(after, "guardian_cache_hits", "guardian_cache_hits_total") + \
        value(after, "guardian_dns_packet_reuses", "guardian_dns_packet_reuses_total") >= 1
    assert value(after, "guardian_process_resident_memory_bytes", "guardian_process_resident_memory_bytes",
                 process="dns_process") > 10_000_000
    full = scrape(dash)[2]
    for private in ("Sam", "Child", "kids.example", "example.com", "127.0.0.2"):
        assert private not in full, private


def test_metrics_refuse_clients_not_allowed_and_a_missing_token(dash: Dash) -> None:
    status, _, text = scrape(dash, source="127.0.0.3")
    assert status == 403 and "guardian_" not in text  # allowed networks: 127.0.0.1/32 and ::1
    status, head, text = scrape(dash, token=None)
    assert status == 401 and head.get("www-authenticate", "").startswith("Bearer") and "guardian_" not in text
    assert scrape(dash, token="wrong")[0] == 401


def test_healthz_is_public_without_household_data(dash: Dash) -> None:
    assert dash.dig("kids.example").status == "NOERROR"
    status, head, text, _ = dash.http("GET", "/healthz", source="127.0.0.9")
    assert status == 200 and head["content-type"].startswith("application/json")
    body = json.loads(text)
    assert body["status"] in ("ok", "degraded") and body["dns"] is True and body["upstream"] is True
    assert body["store"] is True
    assert set(body) == {"status", "dns", "upstream", "store", "lists_age_seconds", "version"}
    assert "Sam" not in text and "Child" not in text


def test_healthz_says_down_when_the_daemon_is_gone(tmp_path: Path) -> None:
    web_port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "guardian.yaml"
    config.write_text(f'dashboard:\n  listen: ["127.0.0.1:{web_port}"]\ndata_dir: {tmp_path / "var"}\n')
    web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import http.client
        import time

        end = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
                conn.request("GET", "/healthz", headers={"Host": f"127.0.0.1:{web_port}"})
                r = conn.getresponse()
                break
            except OSError:
                assert time.monotonic() < end
                time.sleep(0.1)
        body = json.loads(r.read())
        assert r.status == 503 and body["status"] == "down" and body["dns"] is False
        conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
        conn.request("GET", "/metrics", headers={"Host": f"127.0.0.1:{web_port}"})
        r = conn.getresponse()
        assert r.status == 200 and value(families(r.read().decode()), "guardian_up", "guardian_up") == 0
    finally:
        web.terminate()
        web.wait(10)


def test_metrics_allow_defaults_to_loopback_and_is_checked() -> None:
    import ipaddress

    settings = parse("data_dir: /tmp/x\n")
    assert set(settings.dashboard.metrics_allow) == {ipaddress.ip_network("127.0.0.0/8"),
                                                    ipaddress.ip_network("::1/128")}
    assert settings.dashboard.metrics_token is None
    with pytest.raises(Exception, match=r"<config>:2:.*not an address or network"):
        parse("dashboard:\n  metrics_allow: [nonsense]\n")
