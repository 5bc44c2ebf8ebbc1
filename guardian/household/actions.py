"""The parents' actions as one table: the control socket serves it, the CLI calls it,
the dashboard reaches it through the socket by the same names.

Each ``Spec`` says which ``HouseholdService`` method an action runs, the request's
arguments (all strings; a missing or mistyped one is a clear error, never a KeyError),
how a duration is read (``"for": seconds`` or ``"at": "HH:MM"``), what ``"cancel": true``
runs instead, and the shape of the answer:

- ``change``: ``{"ok": true, "message": ..., "kind": ..., "target": ..., "domain": ...,
  "until": epoch seconds or null}`` (``Change.as_dict``): the English sentence is one
  field, a translated UI reads the others;
- ``usage``: the table as ``message``, the lines as ``data``;
- ``export``: the YAML as ``data``.

The action names are part of the operator contract (CONTRACT.md): extend, never rename.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import GuardianError

if TYPE_CHECKING:  # the CLI reads the table at start: it imports no household code until it runs
    from .service import HouseholdService

Until = Literal["none", "optional", "required", "forever"]
Result = Literal["change", "usage", "export"]


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: the request's key, the service method's keyword and the CLI's
    argument of the same name."""

    name: str
    what: str  # for errors: "a device or profile name"
    required: bool = True
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    method: str  # the HouseholdService method
    args: tuple[Arg, ...] = ()
    until: Until = "none"  # none: no duration; optional: None without one; forever: inf without one
    cancel: str = ""  # the method "cancel": true runs (with the same arguments, no duration)
    result: Result = "change"
    write: bool = True  # saves (run off the DNS loop; audited)
    parents: bool = True  # the dashboard's user may call it (import is root's or the daemon's user's)
    cli_file: str = ""  # the CLI reads this argument's file into "text" and "filename"


TARGET = Arg("target", "a device or profile name")
PROFILE = Arg("profile", "a profile name")
DOMAIN = Arg("domain", "a domain name")

ACTIONS: Mapping[str, Spec] = {spec.name: spec for spec in (
    Spec("pause", "pause", (TARGET,), until="forever"),
    Spec("resume", "resume", (TARGET,)),
    Spec("bonus", "bonus", (PROFILE,), until="required", cancel="end_bonus"),
    Spec("allow", "allow", (DOMAIN, PROFILE), until="optional", cancel="end_allow"),
    Spec("block", "block", (DOMAIN, PROFILE), until="optional", cancel="end_block"),
    Spec("usage", "usage", (Arg("profile", "a profile name", required=False),), result="usage", write=False),
    Spec("export", "export", result="export", write=False),
    Spec("import", "import_", (Arg("text", "the YAML text of a household"),
                               Arg("filename", "a file name", required=False, default="<import>")),
         parents=False, cli_file="file"),
)}


def arguments(spec: Spec, payload: Mapping[str, Any]) -> dict[str, str | None]:
    """The method's keyword arguments from a request, or GuardianError saying what is wrong."""
    kwargs: dict[str, str | None] = {}
    for arg in spec.args:
        value = payload.get(arg.name)
        if value is None:
            if arg.required:
                raise GuardianError(f"{spec.name} needs {arg.name!r}: {arg.what}")
            kwargs[arg.name] = arg.default
        elif not isinstance(value, str) or (arg.required and not value.strip()):
            raise GuardianError(f"{spec.name}: {arg.name!r} must be {arg.what}, not {value!r}"[:300])
        else:
            kwargs[arg.name] = value if value or arg.required else arg.default  # "" for an optional: unsaid
    return kwargs


def until_of(service: HouseholdService, spec: Spec, payload: Mapping[str, Any]) -> float | None:
    """The instant a duration (``for`` seconds, or ``at`` HH:MM) ends, per the spec."""
    from .storage import FOREVER
    from .words import MAX_OVERRIDE_SECONDS, next_clock, too_long

    seconds, at = payload.get("for"), payload.get("at")
    if seconds is not None and at:
        raise GuardianError("say either for how long or until when, not both")
    if spec.until == "none":
        if seconds is not None or at:
            raise GuardianError(f"{spec.name} takes no duration")
        return None
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise GuardianError(f"'for' must be a number of seconds, not {seconds!r}"[:200])
        if not math.isfinite(seconds) or seconds <= 0:
            raise GuardianError("the duration must be positive")
        if seconds > MAX_OVERRIDE_SECONDS:
            raise GuardianError(f"{seconds:g} s is {too_long()}")
        return service.clock() + float(seconds)
    if at:
        if not isinstance(at, str):
            raise GuardianError(f"'at' must be a time of day like 20:30, not {at!r}"[:200])
        return next_clock(at, service.clock(), service.zone)
    if spec.until == "required":
        raise GuardianError("say for how long: --for 30m, or until when: --until 20:30")
    return FOREVER if spec.until == "forever" else None


async def run(service: HouseholdService, spec: Spec, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one action of the table; the answer as the control socket sends it."""
    from .words import usage_text

    kwargs: dict[str, Any] = arguments(spec, payload)
    if spec.cancel and payload.get("cancel"):
        method = getattr(service, spec.cancel)
    else:
        method = getattr(service, spec.method)
        if spec.until != "none" or payload.get("for") is not None or payload.get("at"):
            until = until_of(service, spec, payload)
            if spec.until != "none":
                kwargs["until"] = until
    if spec.result == "usage":
        lines = method(**kwargs)  # reads the loop's meter: on the loop
        return {"ok": True, "message": usage_text(lines, service.household.session_gap_minutes),
                "data": [{"profile": u.profile, "target": u.target, "minutes": u.minutes, "budget": u.budget,
                          "left": u.left} for u in lines]}
    if spec.result == "export":
        return {"ok": True, "message": "", "data": method(**kwargs)}
    change = await asyncio.to_thread(method, **kwargs)  # saving touches the disk: off the DNS loop
    return {"ok": True, **change.as_dict()}
