"""Shared fixtures: fake upstreams and a Guardian running on loopback in a thread."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis  # noqa: F401 - imported (and assertion-rewritten) before test threads start:

# CPython 3.11's AST builder keeps one global depth counter, so compiling in two threads
# at once can fail later with "AST constructor recursion depth mismatch".
import pytest
from fakedns import FakeDns

from guardian.app import Guardian
from guardian.config import DnsSettings, Settings, parse
from guardian.dns.spec import parse_upstream

ZONE = {
    "example.com": [("A", "93.184.216.34"), ("AAAA", "2606:2800:220:1::248")],
    "www.example.com": [("CNAME", "example.com"), ("A", "93.184.216.34")],
    "kids.example": [("A", "198.51.100.7")],
    "only-v4.example": [("A", "198.51.100.8")],
}


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    """A Guardian started in this process sets the daemon's umask (0027, see app.py); put the
    test process's own back so later tests' files are not made private by accident."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


@pytest.fixture
def upstream() -> Iterator[FakeDns]:
    fake = FakeDns(zone=dict(ZONE)).start()
    yield fake
    fake.stop()


@pytest.fixture
def upstream2() -> Iterator[FakeDns]:
    fake = FakeDns(zone={k: [(t, v.replace("93.184", "93.185")) for t, v in r] for k, r in ZONE.items()}).start()
    yield fake
    fake.stop()


class Running:
    """A Guardian daemon in a thread of its own, on loopback ports chosen by the OS."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.daemon: Guardian | None = None
        self.error: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(60):
            raise TimeoutError("Guardian did not start within 60 s")
        if self.error:
            raise self.error

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.daemon = Guardian(self.settings)
            self.loop.run_until_complete(self.daemon.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            ready.set()
            return
        ready.set()
        self.loop.run_forever()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def port(self, family: str = "4", proto: str = "udp") -> int:
        assert self.daemon and self.daemon.server
        for p, host, port in self.daemon.server.bound:
            if p == proto and (":" in host) == (family == "6"):
                return port
        raise LookupError(family)

    def stop(self) -> None:
        daemon, self.daemon = self.daemon, None
        if daemon is not None:
            try:
                self.call(daemon.stop())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(5)


@pytest.fixture
def make_guardian(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start Guardian with these upstreams and DNS settings; stopped after the test."""
    started: list[Running] = []

    def start(upstreams: list[str], config: str = "", **dns: Any) -> Running:
        base = parse(config, "test.yaml", base=tmp_path) if config else Settings(data_dir=tmp_path / "var")
        fields: dict[str, Any] = {
            "listen": (("127.0.0.1", 0), ("::1", 0)),
            "upstreams": tuple(parse_upstream(u) for u in upstreams),
            "rate_limit": 0,
        }
        fields.update(dns)
        settings = dataclasses.replace(base, dns=dataclasses.replace(base.dns or DnsSettings(), **fields))
        running = Running(settings)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@dataclasses.dataclass
class Dig:
    status: str
    flags: set[str]
    answers: list[tuple[str, int, str, str]]  # (name, ttl, type, value)
    text: str

    @property
    def values(self) -> list[str]:
        return [a[3] for a in self.answers]


def dig(port: int, name: str, qtype: str = "A", *, server: str = "127.0.0.1", tcp: bool = False,
        source: str | None = None, extra: tuple[str, ...] = (), tool: str = "dig") -> Dig:
    """Ask with the real dig (or kdig) and read status, flags and answers."""
    args = [tool, "-p", str(port), f"@{server}", name, qtype]
    args += ["+tries=1", "+time=4", "+nocookie"] if tool == "dig" else ["+retry=0", "+time=4"]
    if tcp:
        args.append("+tcp")
    if source:
        args += ["-b", source]
    args += list(extra)
    text = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r"flags: ([a-z ]+);", text, re.I)
    answers = []
    section = ""
    for line in text.splitlines():
        if line.startswith(";;") and "SECTION" in line:
            section = line
            continue
        if "ANSWER SECTION" in section and line.strip() and not line.startswith(";"):
            parts = line.split(None, 4)
            if len(parts) == 5:
                answers.append((parts[0].rstrip(".").lower(), int(parts[1]), parts[3], parts[4].rstrip(".")))
        elif not line.strip():
            section = ""
    return Dig(status.group(1) if status else "TIMEOUT", set(flags.group(1).split()) if flags else set(), answers, text)


PARIS = ZoneInfo("Europe/Paris")


def paris(text: str) -> float:
    """Epoch seconds of a Paris wall time "YYYY-MM-DD HH:MM[:SS]" (first one in a fold)."""
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


class FakeClock:
    """The daemon's "now" (Guardian(clock=...)), moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def use_fake_clock(monkeypatch: pytest.MonkeyPatch, start: str) -> FakeClock:
    """Daemons started by make_guardian from now on read this clock (Paris wall time ``start``)."""
    fake = FakeClock(paris(start))
    monkeypatch.setattr(sys.modules[__name__], "Guardian", functools.partial(Guardian, clock=fake))
    return fake


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
