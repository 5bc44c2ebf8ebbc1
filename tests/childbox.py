"""The child's side under test (issue 12): the real daemon (a thread, support.Running)
and the real ``guardian web`` process (dashboard + block page) on loopback, a fake
upstream whose blocked names point at a "real site" on 127.0.0.3, and a small test-only
HTTP proxy per child device that resolves through Guardian *from the device's address*
and connects from it, so the block page sees the child's address as a box on a LAN would.

Loopback only: the proxy maps port 80 of 127.0.0.1 (the box: where Guardian's blocked
answers point) to the block page's port and port 80 of 127.0.0.3 to the site's port.
"""

from __future__ import annotations

import http.client
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import QTYPE, DNSRecord
from fakedns import FakeDns
from support import ZONE, Running, free_port

from guardian.config import load

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "child"
SITE = "127.0.0.3"  # where the fake upstream puts every blocked name: the "real" sites
NO_UPGRADES = "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,HttpsFirstModeV2ForEngagedSites"


class Site:
    """The real sites (one server on 127.0.0.3): each answers with its own name."""

    def __init__(self) -> None:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                host = ""
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if line.lower().startswith("host:"):
                        host = line.split(":", 1)[1].strip()
                body = f"<!doctype html><title>{host}</title><h1 id=real>The real {host}</h1>".encode()
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        self.server = socketserver.ThreadingTCPServer((SITE, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def resolve(dns_port: int, name: str, source: str) -> list[str]:
    """The A records Guardian answers ``name`` with, asked from ``source`` (UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.sendto(DNSRecord.question(name, "A").pack(), ("127.0.0.1", dns_port))
        reply = DNSRecord.parse(sock.recv(4096))
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


class Proxy:
    """An HTTP proxy for one device: resolves through Guardian from ``source``, connects
    from ``source``; CONNECT (https) is refused at once, as a box's port 443 is."""

    def __init__(self, source: str, dns_port: int, ports: dict[str, int]) -> None:
        self.source = source
        self.seen: list[tuple[str, str]] = []  # (name, address it resolved to)
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(65536).decode("latin-1")
                headers = []
                while True:
                    h = self.rfile.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    headers.append(h.decode("latin-1").rstrip("\r\n"))
                method, target, _version = line.split(" ", 2)
                if method == "CONNECT":
                    self.wfile.write(b"HTTP/1.1 502 Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                url = urllib.parse.urlsplit(target)
                host = url.hostname or ""
                addresses = resolve(dns_port, host, source)
                proxy.seen.append((host, addresses[0] if addresses else ""))
                if not addresses:
                    self.wfile.write(b"HTTP/1.1 502 No address\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                length = 0
                kept = []
                for h in headers:
                    key = h.split(":", 1)[0].strip().lower()
                    if key == "content-length":
                        length = int(h.split(":", 1)[1])
                    if key not in ("proxy-connection", "connection", "keep-alive"):
                        kept.append(h)
                body = self.rfile.read(length) if length else b""
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                upstream = socket.create_connection((addresses[0], ports.get(addresses[0], 80)), timeout=10,
                                                    source_address=(source, 0))
                with upstream:
                    upstream.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "\r\n".join(
                        [*kept, "Connection: close"]).encode("latin-1") + b"\r\n\r\n" + body)
                    while True:
                        chunk = upstream.recv(65536)
                        if not chunk:
                            break
                        self.wfile.write(chunk)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Box:
    """Daemon + ``guardian web`` + site + one proxy per child device address."""

    def __init__(self, base: Path, config: str, zone: dict[str, list[tuple[str, str]]],
                 sources: tuple[str, ...] = (), provision: str = "") -> None:
        self.base = base
        if provision:  # a telco's provisioning beside the config (brand, helpline)
            (base / "provision.yaml").write_text(provision)
        self.site = Site()
        self.upstream = FakeDns(zone={**ZONE, **zone}).start()
        self.dns_port = free_port()
        self.web_port = free_port(socket.SOCK_STREAM)
        self.page_port = free_port(socket.SOCK_STREAM)
        self.data = base / "var"
        self.config = base / "guardian.yaml"
        self.config.write_text(config.format(dns_port=self.dns_port, up_port=self.upstream.port,
                                             web_port=self.web_port, page_port=self.page_port, data=self.data))
        self.daemon = Running(load(self.config))
        self.log = (base / "web.log").open("wb")
        self.web = subprocess.Popen([sys.executable, "-m", "guardian", "web", "--config", str(self.config)],
                                    stdout=self.log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ports = {"127.0.0.1": self.page_port, SITE: self.site.port}
        self.proxies = {s: Proxy(s, self.dns_port, ports) for s in sources}
        end = time.monotonic() + 30
        while True:
            assert self.web.poll() is None, (base / "web.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.page_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.web_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < end, "guardian web did not start"
                time.sleep(0.1)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def page(self, method: str, host: str, path: str = "/", *, source: str = "127.0.0.1", body: str = "",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        """One request to the block page's port as the device at ``source``, for ``host``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.page_port, timeout=10, source_address=(source, 0))
        h = {"Host": host, "Accept-Language": "en", **(headers or {})}
        if body:
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body.encode() if body else None, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text

    def control(self, payload: dict[str, Any]) -> dict[str, Any]:
        from guardian.control import request

        return request(self.data / "control.sock", payload)

    def stop(self) -> None:
        self.web.terminate()
        try:
            self.web.wait(10)
        except subprocess.TimeoutExpired:
            self.web.kill()
        for p in self.proxies.values():
            p.stop()
        self.daemon.stop()
        self.upstream.stop()
        self.site.stop()
        self.log.close()


def wait_for(check: Callable[[], Any], seconds: float = 10, what: str = "") -> Any:
    end = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what or check}"
        time.sleep(0.2)
