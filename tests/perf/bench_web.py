"""Dashboard benchmark (not collected by pytest): page server times on a big query log,
first-page weight, and the dashboard process's memory after many requests.

    .venv/bin/python tests/perf/bench_web.py [--rows 1000000] [--requests 1000]

Builds ``--rows`` synthetic query-log rows over 30 days (tests/perf/bench_store.py's
builder), runs the real daemon (in this process, on loopback high ports, no upstream)
and the real ``guardian web`` process on that data directory, signs in, then times
each page as seen by a client on loopback (median of 20 after one warm-up; that is the
server's time plus a loopback round trip), sums the bytes of the home page and
everything it loads, and reads the dashboard's RSS (VmRSS) after ``--requests`` more
page loads. Targets (issue 15): each page under 50 ms, first page under 100 KB, RSS
under 45 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "perf"))

from bench_store import build  # noqa: E402

from guardian.app import Guardian  # noqa: E402
from guardian.config import parse  # noqa: E402
from guardian.web.accounts import Accounts, db_path  # noqa: E402

PASSWORD = "correct horse battery"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str, method: str = "GET", body: str = "") -> tuple[int, bytes, dict[str, str]]:
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body.encode() or None, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        for c in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = c.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return r.status, data, {k.lower(): v for k, v in r.getheaders()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        data = base / "var"
        data.mkdir()
        now = time.time()
        print(f"building {args.rows:,} query-log rows ...", flush=True)
        build(data / "guardian.db", args.rows, now)
        dns_port, web_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        config = base / "guardian.yaml"
        config.write_text(f"""
dns: {{listen: ["127.0.0.1:{dns_port}"], upstreams: ["udp://127.0.0.1:9"], rate_limit: 0}}
dashboard: {{listen: ["127.0.0.1:{web_port}"]}}
data_dir: {data}
timezone: Europe/Paris
household:
  default_profile: Adult
  profiles: [{{name: Profile0}}, {{name: Profile1}}, {{name: Profile2}}, {{name: Adult}}]
  devices: [{{name: Device 1, ip: 192.168.1.11, profile: Profile1}}]
""")
        loop = asyncio.new_event_loop()
        daemon = Guardian(parse(config.read_text(), str(config), base=base))
        loop.run_until_complete(daemon.start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        Accounts(db_path(data)).create("Alex", PASSWORD)
        web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run(web, web_port, args.requests)
        finally:
            web.terminate()
            web.wait(10)
            asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)


def run(web: subprocess.Popen[bytes], port: int, requests: int) -> None:
    end = time.monotonic() + 30
    while True:
        try:
            c = Client(port)
            status, _, _ = c.get("/healthz")
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
    status, page, _ = c.get("/login")
    token = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert token
    body = urllib.parse.urlencode({"csrf": token.group(1).decode(), "name": "Alex", "password": PASSWORD})
    status, _, _ = c.get("/login", "POST", body)
    assert status == 303, status
    print(f"dashboard process after sign-in: {rss_of(web.pid)} RSS")
    pages = {"home": "/", "activity": "/activity", "activity, blocked only": "/activity?decision=blocked",
             "activity, one device": "/activity?device=Device+3", "devices": "/devices"}
    print("page server time on loopback, median of 20 (ms):")
    for name, path in pages.items():
        status, _, _ = c.get(path)
        assert status == 200, (path, status)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            c.get(path)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"  {name:<24} median {statistics.median(times):6.1f}   p90 "
              f"{sorted(times)[17]:6.1f}   first-of-20 {times[0]:6.1f}")
    _, home, _ = c.get("/")
    weight = len(home)
    for asset in re.findall(rb'(?:href|src)="(/static/[^"]+)"', home):
        weight += len(c.get(asset.decode())[1])
    print(f"first page weight (home HTML + CSS + JS, uncompressed): {weight / 1024:.1f} KB")
    for i in range(requests):
        c.get(("/", "/activity", "/devices", "/settings")[i % 4])
    print(f"dashboard process after {requests} more page loads: {rss_of(web.pid)} RSS")


def rss_of(pid: int) -> str:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return line.split(":")[1].strip()


if __name__ == "__main__":
    main()
