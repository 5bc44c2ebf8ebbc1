"""The dashboard's tests: the real daemon (in a thread, tests/support.py's Running) and
the real dashboard process (``python -m guardian web``) on loopback, one of each per
module; Playwright for Python driving Debian's chromium (never ``playwright install``)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakedns import FakeDns
from support import ZONE, Running, dig, free_port

from guardian.config import load
from guardian.web.accounts import Accounts, db_path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PARENT, PASSWORD = "Alex", "correct horse battery"

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
      categories: [adult]
      deny: [example.com]
    - name: Adult
      categories: []
"""


@dataclass
class Dash:
    daemon: Running
    web: subprocess.Popen[bytes]
    url: str
    port: int
    dns_port: int
    data: Path
    config: Path

    def accounts(self) -> Accounts:
        return Accounts(db_path(self.data))

    def ensure_parent(self, name: str = PARENT, password: str = PASSWORD) -> None:
        accounts = self.accounts()
        if accounts.find(name) is None:
            accounts.create(name, password)

    def dig(self, name: str, source: str = "127.0.0.2") -> Any:
        return dig(self.dns_port, name, source=source, tool="kdig")

    def http(self, method: str, path: str, body: str = "", headers: dict[str, str] | None = None,
             source: str | None = None) -> tuple[int, dict[str, str], str, list[str]]:
        """One request from ``source`` (a loopback address: another "device" on the LAN)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(source, 0) if source else None)
        h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if body:
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body.encode() if body else None, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        cookies = r.headers.get_all("Set-Cookie") or []
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text, cookies


def wait_http(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"guardian web exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz", headers={"Host": f"127.0.0.1:{port}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the dashboard did not answer")


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Dash]:
    base = tmp_path_factory.mktemp("web")
    # Names on the bundled gambling and adult lists answer upstream, so a block is Guardian's.
    upstream = FakeDns(zone={**ZONE, "10bet.com": [("A", "198.51.100.9")], "www.3movs.com": [("A", "198.51.100.10")]}
                       ).start()
    dns_port, web_port = free_port(), free_port(__import__("socket").SOCK_STREAM)
    config = base / "guardian.yaml"
    extra = getattr(request.module, "CONFIG_EXTRA", "")  # a module may add top-level keys
    config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, web_port=web_port, data=base / "var")
                      + extra)
    provision = getattr(request.module, "PROVISION", "")  # a module may ship a telco's provision.yaml
    if provision:
        (base / "provision.yaml").write_text(provision)
    daemon = Running(load(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (base / "web.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(config)], stdout=log,
                           stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(web_port, web)
        yield Dash(daemon, web, f"http://127.0.0.1:{web_port}", web_port, dns_port, base / "var", config)
    finally:
        web.terminate()
        try:
            web.wait(10)
        except subprocess.TimeoutExpired:
            web.kill()
        daemon.stop()
        upstream.stop()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser page on the dashboard that records every request's origin."""

    def __init__(self, browser: Any, dash: Dash, width: int = 375, locale: str = "en-GB") -> None:
        self.dash = dash
        self.context = browser.new_context(viewport={"width": width, "height": 800}, locale=locale)
        self.page = self.context.new_page()
        self.foreign: list[str] = []
        self.page.on("request", self._request)
        self.width = width

    def _request(self, request: Any) -> None:
        if not request.url.startswith(self.dash.url + "/"):
            self.foreign.append(request.url)

    def go(self, path: str) -> Any:
        self.page.goto(self.dash.url + path)
        return self.page

    def login(self, name: str = PARENT, password: str = PASSWORD) -> Any:
        self.dash.ensure_parent(name, password) if name == PARENT else None
        self.go("/login")
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        self.page.click("form[action='/login'] button")
        self.page.wait_for_url(self.dash.url + "/")
        return self.page

    def check(self, shot: str = "") -> None:
        """No horizontal scroll, nothing fetched from elsewhere; a screenshot when named."""
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= self.width, f"{self.page.url} scrolls sideways at {self.width} px ({width} px wide)"
        assert not self.foreign, self.foreign
        if shot:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(ARTIFACTS / f"{shot}-{self.width}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, dash: Dash) -> Iterator[Page]:
    p = Page(browser, dash)
    yield p
    p.close()
