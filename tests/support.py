"""Helpers the tests share (imported as ``from support import ...``): the fake zone, a
Guardian in a thread, real dig, a fake clock and free ports. Fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from guardian.app import Guardian
from guardian.config import Settings

ZONE = {
    "example.com": [("A", "93.184.216.34"), ("AAAA", "2606:2800:220:1::248")],
    "www.example.com": [("CNAME", "example.com"), ("A", "93.184.216.34")],
    "kids.example": [("A", "198.51.100.7")],
    "only-v4.example": [("A", "198.51.100.8")],
}


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
