"""The block page on a box's LAN address, in a network namespace of the test's own (no
route out): Guardian's blocked answer is the address the block page listens on, port
443 there refuses at once (no listener, no certificate: never a hang), and the page and
its requests work in ``anonymous`` privacy mode, where a request keeps no device.

The DNS daemon runs in the test (on loopback); ``guardian web`` runs inside the
namespace, where the box's address 192.0.2.1 (TEST-NET-1) is on a veth of its own and
the page listens on port 80 as on a Pi. The control socket is a file: it reaches across.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakedns import FakeDns
from support import ZONE, Running, dig, free_port

from guardian.config import load

pytestmark = pytest.mark.slow
BOX = "192.0.2.1"
BOX6 = "2001:db8::1"  # the box's IPv6 address (documentation prefix): AAAA block answers point here

CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  local_addresses: [{box}, "{box6}"]   # the box's LAN addresses: blocked names and guardian.lan answer them
  rate_limit: 0
pack_lists: false
dashboard:
  listen: ["127.0.0.1:8080"]
  blockpage_listen: ["{box}:80", "[{box6}]:80"]
data_dir: {data}
timezone: Europe/Paris
privacy:
  mode: anonymous
household:
  default_profile: Kid
  profiles:
    - name: Kid
      categories: [gambling]
      block_mode: blockpage
  devices:
    - {{name: Kid laptop, ip: {box}, profile: Kid}}
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns: str, code: str) -> Any:
    """Run Python ``code`` inside the namespace; its last line printed is JSON."""
    out = sh("ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("netns")
    ns = f"gdn-child-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "box0", "type", "veth", "peer", "name", "lan0")  # both ends inside
        sh("ip", "-n", ns, "link", "set", "lan0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{BOX}/24", "dev", "box0")
        sh("ip", "-n", ns, "addr", "add", f"{BOX6}/64", "dev", "box0", "nodad")
        sh("ip", "-n", ns, "link", "set", "box0", "up")
        upstream = FakeDns(zone={**ZONE, "10bet.com": [("A", "198.51.100.9")]}).start()
        dns_port = free_port()
        config = base / "guardian.yaml"
        config.write_text(CONFIG.format(dns_port=dns_port, up_port=upstream.port, box=BOX, box6=BOX6,
                                        data=base / "var"))
        daemon = Running(load(config))
        log = (base / "web.log").open("wb")
        web = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "guardian", "web", "--config",
                                str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            end = time.monotonic() + 30
            while not in_ns(ns, f"""
                import json, socket
                try:
                    socket.create_connection(("{BOX}", 80), timeout=1).close()
                    socket.create_connection(("{BOX6}", 80), timeout=1).close(); print(json.dumps(True))
                except OSError:
                    print(json.dumps(False))"""):
                assert web.poll() is None and time.monotonic() < end, (base / "web.log").read_text()
                time.sleep(0.2)
            yield {"ns": ns, "dns_port": dns_port, "data": base / "var", "web": web}
        finally:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
            daemon.stop()
            upstream.stop()
            log.close()
    finally:
        sh("ip", "netns", "del", ns, check=False)


def test_the_blocked_answer_is_the_block_pages_address(lan: dict[str, Any]) -> None:
    answer = dig(lan["dns_port"], "10bet.com", source="127.0.0.1")
    assert answer.values == [BOX], answer.text  # dns.local_addresses = where blockpage_listen is
    assert dig(lan["dns_port"], "guardian.lan").values == [BOX]


def test_the_blocked_aaaa_answer_is_the_block_pages_ipv6_address(lan: dict[str, Any]) -> None:
    answer = dig(lan["dns_port"], "10bet.com", "AAAA", source="127.0.0.1")
    assert answer.values == [BOX6], answer.text


def test_the_block_page_answers_over_ipv6(lan: dict[str, Any]) -> None:
    result = in_ns(lan["ns"], f"""
        import http.client, json
        c = http.client.HTTPConnection("{BOX6}", 80, timeout=10)
        c.request("GET", "/", headers={{"Host": "10bet.com"}})
        r = c.getresponse()
        print(json.dumps({{"status": r.status, "page": r.read().decode(), "cache": r.getheader("Cache-Control")}}))""")
    assert result["status"] == 200 and "gambling" in result["page"].lower(), result
    assert result["cache"] == "no-store"


@pytest.mark.parametrize("box", [BOX, BOX6])
def test_port_443_of_the_block_page_refuses_at_once(lan: dict[str, Any], box: str) -> None:
    result = in_ns(lan["ns"], f"""
        import json, socket, time
        times, errors = [], []
        for _ in range(5):
            start = time.monotonic()
            try:
                socket.create_connection(("{box}", 443), timeout=5).close()
                errors.append("connected")
            except ConnectionRefusedError:
                errors.append("refused")
            except OSError as exc:
                errors.append(type(exc).__name__)
            times.append(time.monotonic() - start)
        print(json.dumps({{"times": times, "errors": errors}}))""")
    assert result["errors"] == ["refused"] * 5, result  # RST: no listener, so no certificate either
    assert max(result["times"]) < 0.1, result


def test_the_block_page_and_a_request_in_anonymous_mode(lan: dict[str, Any]) -> None:
    result = in_ns(lan["ns"], f"""
        import http.client, json, re, urllib.parse
        def call(method, path, body=None):
            c = http.client.HTTPConnection("{BOX}", 80, timeout=10)
            headers = {{"Host": "10bet.com"}}
            if body:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.getheader("Location") or "", r.read().decode()
        status, _l, page = call("GET", "/")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
        asked, location, _b = call("POST", "/_guardian/ask", urllib.parse.urlencode({{"nonce": nonce, "note": "hi"}}))
        print(json.dumps({{"status": status, "page": page, "asked": asked, "location": location}}))""")
    assert result["status"] == 200 and "gambling" in result["page"].lower()
    assert "Kid laptop" in result["page"]  # identified now, from the decision (no query log in this mode)
    assert result["asked"] == 303 and result["location"].startswith("http://guardian.lan/_guardian/asked/")
    conn = sqlite3.connect(Path(lan["data"]) / "web" / "requests.db")
    try:
        rows = conn.execute("SELECT device, client, profile, name, note FROM requests").fetchall()
    finally:
        conn.close()
    assert rows == [("", "", "Kid", "10bet.com", "hi")]  # no device, no address kept


def test_nothing_but_the_configured_ports_listens_in_the_box(lan: dict[str, Any]) -> None:
    listening = in_ns(lan["ns"], """
        import json
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in open(table).read().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A":
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
        print(json.dumps(sorted(ports)))""")
    assert listening == [80, 8080]  # the namespace's own sockets: no TLS listener anywhere
