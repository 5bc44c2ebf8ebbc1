"""The dashboard's one way into the DNS process: the control socket, asynchronously.

The only module of guardian/web that knows the DNS process's side (the socket's name
and its one-request-per-connection JSON protocol, guardian/control.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ..errors import GuardianError

SOCKET_NAME = "control.sock"  # guardian/control.py
TIMEOUT = 30.0


class DaemonDown(GuardianError):
    """Nothing answers on the control socket."""


class ActionFailed(GuardianError):
    """The daemon refused the action; ``problems`` as it gave them."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class Control:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SOCKET_NAME

    async def call(self, action: str, **fields: Any) -> dict[str, Any]:
        """Run one action; its answer (``ok`` true) or ActionFailed / DaemonDown."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path), limit=16 << 20),
                                                    5.0)
        except (OSError, TimeoutError) as exc:
            raise DaemonDown(f"the DNS service does not answer ({exc})") from None
        try:
            writer.write(json.dumps({"action": action, **fields}, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DaemonDown(f"the DNS service did not answer ({exc})") from None
        finally:
            writer.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            raise DaemonDown("the DNS service gave no answer") from None
        if not isinstance(answer, dict):
            raise DaemonDown("the DNS service gave a strange answer")
        if not answer.get("ok"):
            raise ActionFailed(str(answer.get("error") or "refused"), answer.get("problems"))
        return answer

    async def data(self, action: str, **fields: Any) -> Any:
        return (await self.call(action, **fields)).get("data")
