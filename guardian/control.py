"""The control socket: how ``guardian pause`` & co reach the running daemon.

A Unix socket at ``data_dir/control.sock``, mode 0660, served by the daemon's event
loop. Peer credentials (SO_PEERCRED) tell callers apart: root and the daemon's user may
do everything; another member of the daemon's group (the dashboard's user) gets the
parents' actions and the daemon's own, not ``import``. One JSON request
per connection, one JSON answer, then the connection closes:

    {"action": "pause", "target": "Sam's tablet", "for": 1800}
    {"ok": true, "message": "Paused Sam's tablet until 21:00", "kind": "paused",
     "target": "Sam's tablet", "domain": "", "until": 1717354800.0, "what": "device"}
    {"ok": false, "error": "no profile is called 'Kid' (profiles: 'Child', 'Adult')"}

The household's actions, their arguments, durations and answers are one table
(``household/actions.py``); the CLI builds its requests from the same table.
``"cancel": true`` with ``bonus`` ends a bonus, with ``allow``/``block`` a temporary
allow or block of that domain. Durations are at most ``MAX_OVERRIDE_SECONDS`` (30 days).

Besides the household's actions, the daemon adds its own (``ControlServer(actions=...)``):
``status`` (its counters, for ``guardian status``) and ``refresh-lists`` (download every
subscribed list now, as the daemon's user, and answer once the new lists are in use).

Times travel as ``"for": seconds`` or ``"at": "HH:MM"`` and become instants in the
daemon, with its clock and the household's zone (the next such time of day).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import socket
import sqlite3
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from . import audit
from .errors import ConfigError, GuardianError
from .household import actions
from .household.actions import ACTIONS
from .household.service import HouseholdService
from .household.words import MAX_OVERRIDE_SECONDS, too_long

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST = 4 << 20  # bytes: an imported household is a few kilobytes
READ_TIMEOUT = 10.0  # seconds a client may take to send its request

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


PARENTS_ACTIONS = ("ping", *(name for name, spec in ACTIONS.items() if spec.parents))


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The calling process's user id (SO_PEERCRED), or None when unknown."""
    sock = writer.get_extra_info("socket")
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except (OSError, AttributeError):
        return None
    return int(uid)


def _trusted(writer: asyncio.StreamWriter) -> bool:
    """Whether the peer is root or the daemon's own user (SO_PEERCRED)."""
    return _peer_uid(writer) in (0, os.geteuid())


class DaemonNotRunning(GuardianError):
    """Nothing answers on the control socket."""


def parse_duration(text: str) -> int:
    """Seconds of "30m", "1h", "90s", "2h30m", "1d" (a bare number is minutes)."""
    value = text.strip().lower().replace(" ", "")
    if value.isdigit():
        seconds = int(value) * 60
    else:
        found = _DURATION.fullmatch(value)
        if not value or found is None:
            raise ValueError(f"{text!r} is not a duration like 30m, 1h, 90s or 2h30m")
        d, h, m, s = (int(g or 0) for g in found.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 90s or 2h30m")
    if seconds > MAX_OVERRIDE_SECONDS:
        raise ValueError(f"{text!r} is {too_long()}")
    return seconds


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A name for ``path`` short enough for sockaddr_un (108 bytes): the path itself,
    or the same file through /proc/self/fd/N of its directory."""
    if len(os.fsencode(str(path))) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# --- the daemon's side -----------------------------------------------------------------


class ControlServer:
    """Serves the household's actions on a Unix socket, on the running loop."""

    def __init__(self, service: HouseholdService, path: Path,
                 actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] | None = None) -> None:
        self.service = service
        self.path = path
        self.actions = dict(actions or {})  # the daemon's own actions beyond the household's
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            try:
                await asyncio.to_thread(request, self.path, {"action": "ping"}, 2.0)
            except DaemonNotRunning:
                self.path.unlink()  # left by a daemon that did not stop cleanly
            except GuardianError:
                raise GuardianError(f"{self.path} exists and is not a Guardian control socket") from None
            else:
                raise GuardianError(f"another Guardian is running with the data directory {self.path.parent}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(self.path) as address:
                sock.bind(address)
            # Before listen(): nobody can connect yet, so no one gets in under another mode.
            # 0660: the daemon's group may connect (the dashboard's user is in it, for the
            # parents' actions only: see _client); others cannot.
            os.chmod(self.path, 0o660)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_REQUEST)
        except OSError as exc:
            sock.close()
            raise GuardianError(f"cannot open the control socket {self.path}: {exc.strerror or exc}") from exc

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
                payload = json.loads(line)
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
            except (TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
                answer: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                if _trusted(writer) or payload.get("action") in self._parents_actions():
                    answer = await self.handle(payload)
                    if answer.get("ok") and payload.get("action") in audit.WRITES:
                        await self._audit(payload, _peer_uid(writer))
                else:
                    answer = {"ok": False, "error": f"the action {payload.get('action')!r} is not allowed for "
                                                    "this user (only root and the daemon's user may use it)"}
            writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _audit(self, payload: dict[str, Any], uid: int | None) -> None:
        """Who changed what (audit.py): one row per successful write, whoever called."""
        try:
            await asyncio.to_thread(audit.record, self.path.parent, payload, uid, self.service.clock())
        except (OSError, sqlite3.Error) as exc:
            log.warning("the audit log could not be written: %s", exc)

    def _parents_actions(self) -> set[str]:
        """What a caller who is neither root nor the daemon's user (the dashboard's user)
        may do: the parents' actions and the daemon's own, never ``import`` (a restore
        replaces the whole household: root's or the daemon's user's, or a future
        re-authenticated dashboard action)."""
        return {*PARENTS_ACTIONS, *self.actions} - {"import"}

    async def handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one request; never raises (errors become ``{"ok": false, ...}``)."""
        try:
            return await self._dispatch(payload)
        except ConfigError as exc:
            return {"ok": False, "error": "the household has problems", "problems": exc.problems}
        except GuardianError as exc:
            return {"ok": False, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad request: {exc!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, logged once here
            log.exception("control request %r failed", payload.get("action"))
            return {"ok": False, "error": f"internal error: {exc}"}

    async def _dispatch(self, payload: dict[str, Any]) -> dict[str, Any]:
        action = payload.get("action")
        if action == "ping":
            return {"ok": True, "message": "pong"}
        if isinstance(action, str) and action in self.actions:
            return await self.actions[action](payload)
        spec = ACTIONS.get(action) if isinstance(action, str) else None
        if spec is None:
            return {"ok": False, "error": f"unknown action {action!r}"}
        return await actions.run(self.service, spec, payload)


# --- the client's side -------------------------------------------------------------------


def request(path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its answer.

    Raises DaemonNotRunning when nothing listens there, GuardianError on other trouble.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _address(path) as address:
                sock.connect(address)
        except FileNotFoundError:
            raise DaemonNotRunning(f"Guardian is not running (no control socket at {path})") from None
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                raise DaemonNotRunning(f"Guardian is not running (nothing listens on {path})") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise GuardianError(f"cannot reach the daemon at {path}: permission denied "
                                    "(run this as the daemon's user or as root)") from None
            raise GuardianError(f"cannot reach the daemon at {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(payload, ensure_ascii=False).encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise GuardianError(f"the daemon at {path} did not answer: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise GuardianError(f"the daemon at {path} gave no answer") from None
    if not isinstance(answer, dict):
        raise GuardianError(f"the daemon at {path} gave a strange answer")
    return answer
