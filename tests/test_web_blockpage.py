"""The child's block page (dashboard.blockpage_listen): a filtered device asks for a
blocked site, Guardian answers with the box's own address, and the browser that comes
there with the site's name in Host gets a page that says, in plain words, that the site
is blocked, why, on which device and profile; in the browser's language; nothing
listens on the HTTPS side, so a blocked https:// site fails at once, never hangs."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakedns import FakeDns
from support import ZONE, Running, dig, free_port
from webdash import CHROMIUM, CHROMIUM_ARGS

from guardian.config import load

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "child"

CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  rate_limit: 0
dashboard:
  listen: ["127.0.0.1:{web_port}"]
  blockpage_listen: ["127.0.0.1:{page_port}"]
data_dir: {data}
timezone: Europe/Paris
household:
  default_profile: Adult
  profiles:
    - name: Sam
      categories: [adult, gambling]
      deny: ["games.example"]
      block_mode: blockpage
    - name: Adult
      categories: []
  devices:
    - {{name: sams-tablet, ip: 127.0.0.1, profile: Sam}}
"""


class Box:
    def __init__(self, base: Path) -> None:
        self.upstream = FakeDns(zone={**ZONE, "10bet.com": [("A", "198.51.100.9")],
                                      "games.example": [("A", "198.51.100.11")]}).start()
        self.dns_port, self.web_port = free_port(), free_port(socket.SOCK_STREAM)
        self.page_port = free_port(socket.SOCK_STREAM)
        config = base / "guardian.yaml"
        config.write_text(CONFIG.format(dns_port=self.dns_port, up_port=self.upstream.port, web_port=self.web_port,
                                        page_port=self.page_port, data=base / "var"))
        self.daemon = Running(load(config))
        self.log = (base / "web.log").open("wb")
        self.web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(config)],
                                    stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ})
        end = time.monotonic() + 30
        while True:
            assert self.web.poll() is None, (base / "web.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.page_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < end, "the block page did not start"
                time.sleep(0.1)

    def get(self, host: str, path: str = "/", lang: str = "en") -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.page_port, timeout=10)
        conn.request("GET", path, headers={"Host": host, "Accept-Language": lang})
        r = conn.getresponse()
        body = r.read().decode()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def stop(self) -> None:
        self.web.terminate()
        try:
            self.web.wait(10)
        except subprocess.TimeoutExpired:
            self.web.kill()
        self.daemon.stop()
        self.upstream.stop()
        self.log.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    b = Box(tmp_path_factory.mktemp("child"))
    yield b
    b.stop()


def test_a_blocked_name_answers_the_box_and_the_page_says_why(box: Box) -> None:
    answer = dig(box.dns_port, "10bet.com", source="127.0.0.1")
    assert answer.status == "NOERROR" and answer.values == ["127.0.0.1"], answer.text  # the box, not the casino
    status, headers, body = box.get("10bet.com")
    assert status == 200
    assert "This site is blocked on this network" in body and "10bet.com" in body
    assert "sams-tablet" in body and "Sam" in body
    assert "gambling" in body.lower()  # the category's own words from the rule pack
    assert "steal passwords" not in body  # a casino is not phishing: no words that do not fit
    assert headers["cache-control"] == "no-store" and "set-cookie" not in headers
    status, _headers, body = box.get("games.example")
    assert "A parent has blocked this site" in body


def test_the_page_speaks_the_childs_language_and_escapes_the_host(box: Box) -> None:
    _status, _headers, body = box.get("10bet.com", lang="fr-FR,fr;q=0.9")
    assert "Ce site est bloqué sur ce réseau" in body and 'lang="fr"' in body
    _status, _headers, body = box.get("10bet.com", lang="ar")
    assert 'dir="rtl"' in body
    status, _headers, body = box.get('<script>alert(1)</script>')
    assert status == 400 and "<script>" not in body


def test_an_allowed_name_says_so(box: Box) -> None:
    status, _headers, body = box.get("example.com")
    assert status == 200 and "This site is not blocked now" in body


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes in /proc/net/tcp and tcp6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_dashboard_process_listens_only_where_configured_never_for_tls(box: Box) -> None:
    """No TLS listener beside the block page (the box never presents a certificate for a
    blocked site): on a box, port 443 has nobody, so the kernel refuses a blocked https://
    site at once (RST) and the browser shows its error instead of hanging."""
    assert listening_ports(box.web.pid) == {box.web_port, box.page_port}


@pytest.mark.parametrize("width", [375, 1280])
def test_the_block_page_in_chromium(box: Box, width: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_ARGS, "--host-resolver-rules=MAP 10bet.com 127.0.0.1"])
        try:
            context = browser.new_context(viewport={"width": width, "height": 800}, locale="en-GB")
            page = context.new_page()
            page.goto(f"http://10bet.com:{box.page_port}/casino?x=1")
            assert page.locator("h1").first.inner_text() == "This site is blocked on this network"
            assert "10bet.com" in page.locator(".site").inner_text()
            width_now = page.evaluate("document.documentElement.scrollWidth")
            assert width_now <= width
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"blocked-{width}.png"), full_page=True)
        finally:
            browser.close()
