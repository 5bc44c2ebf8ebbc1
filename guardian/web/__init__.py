"""The parents' dashboard: its own process (``guardian web``), see app.py."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, GuardianError

WORKERS = 2  # threads for the blocking work (sqlite reads, argon2): one core's worth and one waiting
MALLOC_ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024


def lean_memory() -> None:
    """glibc gives each thread that allocates its own malloc arena; with the default
    executor's six threads that was several MB of the dashboard's RSS after 1,000 pages
    (tests/perf/bench_web.py). Two arenas serve two worker threads and the loop."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-8, MALLOC_ARENA_MAX)  # M_ARENA_MAX, before any thread starts
        # A fixed mmap threshold: a big block freed (a rendered page, a query's rows) goes
        # back to the system instead of raising glibc's dynamic threshold and staying in the heap.
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, MMAP_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def server_only_aiohttp() -> None:
    """Put aiohttp's package into sys.modules without running its ``__init__``, which imports
    the client side too (client requests, connector, cookie jar, tracing, happy eyeballs:
    ~4 MB of the dashboard's RSS, tests/perf/bench_web.py) though the dashboard only serves.
    ``aiohttp.web`` and the other submodules import as usual; the first use of a name that
    ``__init__`` defines (``aiohttp.ClientSession``) runs it then, so nothing is lost. Only
    before anything imported aiohttp; tests/test_imports.py starts a real ``guardian web``
    and checks that the client side stays unloaded."""
    if "aiohttp" in sys.modules:
        return
    import importlib.util
    import pkgutil
    import re

    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None or spec.origin is None or not spec.submodule_search_locations:
        return
    try:  # aiohttp.http reads the package's __version__ (its Server header)
        version = re.search(r'^__version__ = "([^"]+)"', Path(spec.origin).read_text(encoding="utf-8"), re.M)
    except OSError:
        return
    if version is None:
        return
    package = importlib.util.module_from_spec(spec)
    submodules = {info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)}
    loader = spec.loader

    def complete(name: str) -> object:
        if name in submodules or name.startswith("__"):
            raise AttributeError(name)  # a submodule (the import system loads it) or a probe
        del vars(package)["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    vars(package).update(__version__=version.group(1), __getattr__=complete)  # PEP 562's module __getattr__
    sys.modules["aiohttp"] = package


def without_openssl() -> None:
    """The dashboard speaks plain HTTP, its control socket and SQLite, never TLS, and
    loading OpenSSL costs it ~5 MB RSS (libssl, libcrypto and their set-up;
    tests/perf/bench_web.py). So ``ssl`` stays out of its process (asyncio and aiohttp run
    without it) and hashlib and hmac use Python's built-in SHA-2 and BLAKE2 instead of
    OpenSSL's. ``_hashlib`` stays importable: the one use of OpenSSL here, scrypt for a
    telco's setup code (provision.py), loads it when a code is typed. Only before asyncio,
    ssl and hashlib are imported; tests/test_imports.py checks the real process."""
    if any(name in sys.modules for name in ("asyncio", "ssl", "_ssl", "hashlib", "hmac", "_hashlib")):
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError
    sys.modules["_hashlib"] = None  # type: ignore[assignment]
    try:
        import hashlib  # noqa: F401  (built-in digests)
        import hmac  # noqa: F401  (compare_digest from _operator)
    finally:
        del sys.modules["_hashlib"]


def lean_main(argv: Sequence[str]) -> int | None:
    """``guardian web --config FILE`` (as ``guardian run`` and guardian-web.service start it)
    without the CLI's parser of every command: the dashboard's process keeps only what it
    serves with. None for any other form (help, reset-password, no --config), which the
    full CLI parses."""
    if len(argv) == 2 and argv[0] in ("--config", "-c"):
        path = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--config="):
        path = argv[0].removeprefix("--config=")
    else:
        return None
    without_openssl()
    from .. import config

    try:
        return run(config.load(path))
    except ConfigError as exc:  # as the CLI says them
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except GuardianError as exc:
        print(f"guardian: {exc}", file=sys.stderr)
        return 1


def run(settings: Settings) -> int:
    """``guardian web``: serve until SIGTERM/SIGINT."""
    import asyncio
    import signal
    from concurrent.futures import ThreadPoolExecutor

    lean_memory()
    server_only_aiohttp()
    from .app import serve

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="web"))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise GuardianError(f"the dashboard cannot listen: {exc.strerror or exc}") from None
    return 0


def reset_password(settings: Settings, account: str) -> int:
    """``guardian web reset-password ACCOUNT``: a new password typed twice (root only)."""
    from .accounts import Accounts, db_path

    if os.geteuid() != 0:
        raise GuardianError("reset-password is for root on the box's shell (sudo guardian web reset-password ...)")
    accounts = Accounts(db_path(settings.data_dir))
    found = accounts.find(account)
    if found is None:
        names = ", ".join(repr(a.name) for a in accounts.accounts()) or "none yet"
        raise GuardianError(f"no dashboard account is called {account!r} (accounts: {names})")
    if sys.stdin.isatty():
        password = getpass.getpass(f"new password for {found.name}: ")
        if getpass.getpass("again: ") != password:
            raise GuardianError("the two passwords differ; nothing changed")
    else:
        password = sys.stdin.readline().rstrip("\n")
    accounts.set_password(found.id, password)  # every session of the account ends
    accounts.audit("cli", "password reset", found.name, f"by {getpass.getuser()}")
    print(f"The password of {found.name} is changed; its sessions are signed out.")
    return 0
