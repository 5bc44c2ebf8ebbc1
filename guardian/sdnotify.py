"""systemd's notify protocol (sd_notify(3)), stdlib only: READY=1, WATCHDOG=1, STOPPING=1.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket's path, or an
abstract name written with a leading ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``.
Without them (a checkout, a test) every call here does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` lines) to systemd; False when not under it.

    Never raises and never blocks: a full or vanished socket only costs this one message.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.sendto(state.encode(), target)
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", state, address, exc)
        return False
    return True


def watchdog_seconds() -> float | None:
    """systemd's watchdog timeout for this process (``WATCHDOG_USEC``), or None when off."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None  # meant for another process of the unit
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Watchdog:
    """Sends WATCHDOG=1 every half timeout from a timer on the event loop.

    The ping is a loop callback, not a thread: a loop stuck in a callback sends none, so
    systemd kills and restarts the service (``Restart=always``) after ``WatchdogSec``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._ping()

    def _ping(self) -> None:
        notify("WATCHDOG=1")
        self._handle = self.loop.call_later(self.interval, self._ping)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def start_watchdog(loop: asyncio.AbstractEventLoop) -> Watchdog | None:
    """Start feeding systemd's watchdog from ``loop``; None when the unit has no watchdog."""
    timeout = watchdog_seconds()
    if timeout is None or not os.environ.get("NOTIFY_SOCKET"):
        return None
    watchdog = Watchdog(loop, timeout / 2)
    watchdog.start()
    return watchdog


def ready(loop: asyncio.AbstractEventLoop, status: str = "") -> Watchdog | None:
    """Tell systemd the service is up (call once its listeners answer); start the watchdog."""
    notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
    return start_watchdog(loop)


def stopping(watchdog: Watchdog | None) -> None:
    """Tell systemd the service is stopping, and stop the watchdog's pings."""
    if watchdog is not None:
        watchdog.cancel()
    with contextlib.suppress(Exception):
        notify("STOPPING=1")
