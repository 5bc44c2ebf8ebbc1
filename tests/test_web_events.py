"""Risk events on the Activity page: filters (child, device, threat, severity) and "mark
seen" / "mark all seen" working when the dashboard may only read guardian.db, as when it
runs as its own user: the change goes through the control socket to the daemon's writer
process. Here the dashboard process is root without any capability (setpriv: empty
bounding set, so no CAP_DAC_OVERRIDE) and guardian.db belongs to another user, mode 0644;
the daemon keeps its capabilities and writes it."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakedns import FakeDns
from support import ZONE, Running, dig, free_port
from webdash import PARENT, PASSWORD, wait_http

from guardian.config import load
from guardian.web.accounts import Accounts, db_path

NOBODY = 65534
CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  rate_limit: 0
dashboard:
  listen: ["127.0.0.1:{web_port}"]
data_dir: {data}
timezone: Europe/Paris
store:
  flush_seconds: 0.2
household:
  default_profile: Adult
  profiles:
    - name: Child
      categories: [adult, gambling]
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Child}}
    - {{name: Lou's phone, ip: 127.0.0.3, profile: Child}}
"""


class Browserless:
    """A parent's session over plain HTTP (cookies and the CSRF token by hand)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict[str, str] | None = None) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        headers = {"Host": f"127.0.0.1:{self.port}",
                   "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = urlencode(fields).encode() if fields is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        for c in r.headers.get_all("Set-Cookie") or []:
            name, value = c.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        conn.close()
        return r.status, r.headers.get("Location", ""), text

    def csrf(self, path: str) -> tuple[str, str]:
        status, _loc, page = self.request("GET", path)
        assert status == 200, (path, status, page[:500])
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page[:500]
        return found.group(1), page

    def login(self) -> None:
        token, _page = self.csrf("/login")
        status, location, page = self.request("POST", "/login", {"csrf": token, "name": PARENT,
                                                                 "password": PASSWORD})
        assert status == 303 and location == "/", (status, page[:300])


def states(data: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{data / 'guardian.db'}?mode=ro", uri=True)
    try:
        return {f"{device}/{category}": state for device, category, state in conn.execute(
            "SELECT device, category, state FROM risk_events WHERE category IS NOT NULL")}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[tuple[Running, Browserless, Path]]:
    if os.geteuid() != 0:
        pytest.fail("needs root to run the dashboard as another user")
    base = Path(tempfile.mkdtemp(prefix="guardian-webuser-"))
    base.chmod(0o755)
    data = base / "var"
    upstream = FakeDns(zone={**ZONE, "10bet.com": [("A", "198.51.100.9")],
                             "www.3movs.com": [("A", "198.51.100.10")]}).start()
    dns_port, web_port = free_port(), free_port(__import__("socket").SOCK_STREAM)
    config = base / "guardian.yaml"
    config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port, data=data))
    config.chmod(0o644)
    daemon = Running(load(config))
    data.chmod(0o755)
    Accounts(db_path(data)).create(PARENT, PASSWORD)
    log = (base / "web.log").open("wb")
    web: subprocess.Popen[bytes] | None = None
    try:
        # Risk events: adult from Sam's tablet, gambling from Lou's phone.
        dig(dns_port, "www.3movs.com", source="127.0.0.2", tool="kdig")
        dig(dns_port, "10bet.com", source="127.0.0.3", tool="kdig")
        end = time.monotonic() + 20
        while len(states(data) if (data / "guardian.db").exists() else {}) < 2 and time.monotonic() < end:
            time.sleep(0.2)
        assert len(states(data)) == 2, states(data)
        for f in data.glob("guardian.db*"):
            os.chown(f, NOBODY, NOBODY)
            f.chmod(0o644)
        web = subprocess.Popen(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
                                sys.executable, "-m", "guardian", "web", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_http(web_port, web)
        parent = Browserless(web_port)
        parent.login()
        yield daemon, parent, data
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
        daemon.stop()
        upstream.stop()
        log.close()
        print((base / "web.log").read_text(errors="replace")[-3000:])
        shutil.rmtree(base, ignore_errors=True)


def events_shown(page: str) -> list[str]:
    return re.findall(r'<li class="event[^"]*" data-event="([^"]+)"', page)


def test_risk_event_filters_by_child_device_threat_and_severity(unprivileged: Any) -> None:
    _daemon, parent, _data = unprivileged
    _token, page = parent.csrf("/activity")
    assert {"adult", "gambling"} <= set(events_shown(page))
    _token, page = parent.csrf("/activity?" + urlencode({"event_device": "Lou's phone"}))
    assert events_shown(page) == ["gambling"]
    assert 'value="Lou&#39;s phone" selected' in page  # the filter is kept, escaped
    _token, page = parent.csrf("/activity?event_threat=pornography")
    assert events_shown(page) == ["adult"]
    assert 'href="/guides/pornography"' in page  # every risk event links to its threat's guide
    _token, page = parent.csrf("/activity?event_profile=Adult")
    assert events_shown(page) == []
    _token, page = parent.csrf("/activity?event_profile=Child&event_severity=high")
    assert sorted(events_shown(page)) == ["adult", "gambling"]
    _token, page = parent.csrf("/activity?event_severity=critical")
    assert events_shown(page) == []
    status, _loc, text = parent.request("GET", "/activity?event_severity=%3Cscript%3E")
    assert status == 200 and "<script>" not in text  # an unknown value is ignored, never echoed raw


def test_mark_seen_and_all_seen_as_the_dashboards_own_user(unprivileged: Any) -> None:
    _daemon, parent, data = unprivileged
    token, page = parent.csrf("/activity?event_profile=Child")
    ids = re.findall(r'name="id" value="(\d+)"', page)
    assert len(ids) == 2, page
    status, location, text = parent.request("POST", "/activity/seen", {"csrf": token, "id": ids[0]})
    assert status == 303, (status, text[:400])
    seen = states(data)
    assert sorted(seen.values()) == ["new", "seen"], seen
    status, location, text = parent.request("POST", "/activity/seen", {"csrf": token, "id": "all"})
    assert status == 303, (status, text[:400])
    assert set(states(data).values()) == {"seen"}
    status, _loc, text = parent.request("POST", "/activity/seen", {"csrf": token, "id": "999999"})
    assert status == 400 and "No such event" in text
