"""Shared fixtures: fake upstreams and a Guardian running on loopback in a thread (the
helpers themselves are in support.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401 - imported (and assertion-rewritten) before test threads start:

# CPython 3.11's AST builder keeps one global depth counter, so compiling in two threads
# at once can fail later with "AST constructor recursion depth mismatch".
import pytest
from fakedns import FakeDns
from support import ZONE, Running

from guardian.addresses import parse_upstream
from guardian.config import DnsSettings, Settings, parse


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
