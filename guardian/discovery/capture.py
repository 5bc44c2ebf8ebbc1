"""Passive capture: one thread reads scapy's layer-2 sockets and hands parsed findings over.

The event loop never waits on a socket: the thread parses frames into small values and
appends them to a bounded buffer the loop drains every second. CPU stays bounded on a
busy or hostile network: the BPF filter keeps the kernel from copying other traffic,
identical frames repeated within ``REPEAT_SECONDS`` are not dissected again, and at most
``rate`` frames a second are dissected (the rest are counted, not parsed: a device
that matters shows up again).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Collection
from typing import Any

from .packets import DohNames, Found, capture_filter, read_frame

log = logging.getLogger(__name__)

REPEAT_SECONDS = 2.0
MAX_BUFFER = 5000


class CaptureError(Exception):
    """Capture cannot start: no CAP_NET_RAW, no libpcap to compile the filter, no such interface."""


class Capture:
    """Sniff ``interfaces`` in a thread. ``open()`` (blocking) raises CaptureError when it cannot."""

    def __init__(self, interfaces: Collection[str], own_macs: Collection[str], own_ips: Collection[str],
                 doh_names: DohNames, rate: float = 200.0) -> None:
        self.interfaces = list(interfaces)
        self.own_macs = frozenset(own_macs)
        self.own_ips = frozenset(own_ips)
        self.doh_names = doh_names
        self.doh_hosts: frozenset[str] = frozenset()
        self.rate = rate
        self.filter = capture_filter(self.own_ips)
        self._sockets: list[Any] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._buffer: list[Found] = []
        self._new_filter: str | None = None
        # counters (read by health and the benchmark)
        self.frames = 0
        self.parsed = 0
        self.repeats = 0
        self.over_rate = 0
        self.over_buffer = 0
        self.errors = 0
        self.cpu_seconds = 0.0

    def open(self) -> None:
        try:
            # scapy.all sets up the platform's capture sockets (conf.L2listen); it is
            # imported only here, by a box that really captures.
            from scapy.all import conf

            for iface in self.interfaces:
                self._sockets.append(conf.L2listen(iface=iface, filter=self.filter))
        except PermissionError as exc:
            self.close()
            raise CaptureError(f"no permission to capture ({exc}); it needs CAP_NET_RAW") from exc
        except Exception as exc:  # scapy raises its own Scapy_Exception, ImportError (libpcap) and OSError
            self.close()
            raise CaptureError(f"cannot capture on {', '.join(self.interfaces)}: {exc}") from exc

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="guardian-discovery-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (within half a second) and close the sockets. Blocking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        for sock in self._sockets:
            try:
                sock.close()
            except Exception:  # noqa: BLE001, S110 - closing a socket that failed half-way
                pass
        self._sockets = []

    def drain(self) -> list[Found]:
        with self._lock:
            found, self._buffer = self._buffer, []
        return found

    def set_doh_hosts(self, hosts: Collection[str]) -> None:
        """Also copy TCP SYNs to these addresses (learned DoH resolvers); applied by the thread."""
        hosts = frozenset(hosts)
        if hosts != self.doh_hosts:
            self.doh_hosts = hosts
            self._new_filter = capture_filter(self.own_ips, hosts)

    def _run(self) -> None:
        start_cpu = time.thread_time()
        seen: dict[int, float] = {}
        tokens = self.rate
        last = time.monotonic()
        by_fd = {sock.ins.fileno(): sock for sock in self._sockets}
        try:
            while not self._stop.is_set():
                if self._new_filter is not None:
                    self._apply_filter()
                ready, _, _ = select.select(list(by_fd), [], [], 0.5)
                for fd in ready:
                    sock = by_fd[fd]
                    try:
                        _, data, _ = sock.recv_raw()
                    except OSError:
                        self.errors += 1
                        continue
                    if not data:
                        continue
                    self.frames += 1
                    now = time.monotonic()
                    key = hash(data)
                    if now - seen.get(key, -1e9) < REPEAT_SECONDS:
                        self.repeats += 1
                        continue
                    if len(seen) > 4096:
                        seen.clear()
                    seen[key] = now
                    tokens = min(self.rate, tokens + (now - last) * self.rate)
                    last = now
                    if tokens < 1:
                        self.over_rate += 1
                        continue
                    tokens -= 1
                    try:
                        found = read_frame(data, sock.iface, self.own_macs, self.own_ips, self.doh_names,
                                           self.doh_hosts)
                    except Exception:  # noqa: BLE001 - a malformed frame must not end the capture
                        self.errors += 1
                        continue
                    self.parsed += 1
                    if found:
                        with self._lock:
                            if len(self._buffer) < MAX_BUFFER:
                                self._buffer.extend(found)
                            else:
                                self.over_buffer += 1
                self.cpu_seconds = time.thread_time() - start_cpu
        except Exception:  # noqa: BLE001
            log.exception("discovery: capture stopped")
        finally:
            self.cpu_seconds = time.thread_time() - start_cpu

    def _apply_filter(self) -> None:
        text, self._new_filter = self._new_filter, None
        if text is None:
            return
        try:
            from scapy.arch.linux import attach_filter

            for sock in self._sockets:
                attach_filter(sock.ins, text, sock.iface)
            self.filter = text
        except Exception as exc:  # noqa: BLE001 - keep the filter we have
            log.warning("discovery: cannot update the capture filter: %s", exc)

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames, "parsed": self.parsed, "repeats": self.repeats, "over_rate": self.over_rate,
                "over_buffer": self.over_buffer, "errors": self.errors, "cpu_seconds": round(self.cpu_seconds, 3)}
