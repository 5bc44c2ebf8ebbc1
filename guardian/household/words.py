"""The parents' words: durations and times of day in, instants and sentences out.

The English sentences the CLI prints and the control socket carries as ``message``;
the structured fields beside them (``kind``, ``target``, ``until``, ``domain``) are for
a translated UI, which never parses these sentences.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..errors import GuardianError
from ..names import normalise_domain
from ..policy.schedule import parse_clock, wall_to_epoch

if TYPE_CHECKING:
    from .service import UsageLine

MAX_OVERRIDE_DAYS = 30
MAX_OVERRIDE_SECONDS = MAX_OVERRIDE_DAYS * 86_400  # the longest pause, bonus or timed allow/block


def too_long() -> str:
    return (f"longer than {MAX_OVERRIDE_DAYS} days, the longest a pause, bonus or temporary allow/block "
            "may last (a pause without --for lasts until resumed; allow/block without --for are for good)")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"



def until_words(until: float, now: float, zone: ZoneInfo) -> str:
    if math.isinf(until):
        return "until resumed"
    then = datetime.fromtimestamp(until, zone)
    today = datetime.fromtimestamp(now, zone).date()
    clock = then.strftime("%H:%M")
    if then.date() == today:
        return f"until {clock}"
    if then.date() == today + timedelta(days=1):
        return f"until tomorrow {clock}"
    return f"until {then.strftime('%a')} {then.day} {then.strftime('%b')} {clock}"



def check_domain(text: str) -> str:
    """``text`` as a normalised domain name, or GuardianError."""
    try:
        name = normalise_domain(text)
    except ValueError as exc:
        raise GuardianError(str(exc)) from None
    if "." not in name:
        raise GuardianError(f"{text!r} is not a domain name (e.g. example.com)")
    return name



def next_clock(text: str, now: float, zone: ZoneInfo) -> float:
    """Epoch seconds of the next "HH:MM" in ``zone`` after ``now`` (today or tomorrow)."""
    try:
        minutes = parse_clock(text)
    except ValueError as exc:
        raise GuardianError(str(exc)) from None
    today = datetime.fromtimestamp(now, zone).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        at = wall_to_epoch(day, minutes, zone)
        if at > now:
            return at
    raise GuardianError(f"no {text} after now")  # not reached: a day has every wall time


def usage_text(lines: list[UsageLine], session_gap: int) -> str:
    """Usage as a small table, with how it is estimated."""
    if not lines:
        return "No budgets set and nothing counted today."
    rows = [("profile", "target", "used", "budget", "left")]
    for u in lines:
        rows.append((u.profile, u.target, f"{u.minutes} min", f"{u.budget} min" if u.budget is not None else "-",
                     f"{u.left} min" if u.left is not None else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    text = "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows)
    return (f"{text}\n(estimated from DNS activity today: a minute counts when a device of the profile asks for "
            f"the target in it; gaps under {session_gap} min continue a session)")
