"""The parents' side of "Ask a parent": the dashboard's Requests page.

Every page shows how many requests wait (a badge in the menu). A parent approves one for
15 minutes, an hour, the rest of today or for good, or declines it with an optional
message. An approval goes through the control socket (audited; the next query gets the
new answer) and the child's answer page and own page then say so:

- for a while: the household service's ``allow`` of the request's rule (the list rule
  that matched, which covers its subdomains) until then;
- for good, when the profile blocks the request's named service on its own: the service
  comes off the profile's ``services`` (``profile-set``), so every domain of it answers
  and its schedules and budgets still count. A service is a profile's switch in the
  household model, not a list of domains a parent keeps: putting each of its domains
  on the allow list would go stale when the rule pack changes the service's domains,
  and would lift bedtime for it too (the allow list beats schedules);
- for good otherwise (a category, the deny list, a schedule; or a service whose
  category the profile blocks too, which taking the service off would not change):
  the rule goes on the profile's allow list.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .app import (
    ACCOUNTS,
    ENV,
    PROVISION,
    SETTINGS,
    Refused,
    _,
    act,
    form,
    reason_words,
    render,
    session_of,
    state_of,
    when,
)
from .asks import MESSAGE_MAX, Ask, Asks, BadNote, NotOpen

ASKS: web.AppKey[Asks] = web.AppKey("asks", Asks)
LENGTHS = {"900": 900, "3600": 3600}  # seconds; "today" and "always" are words


def _zone(request: web.Request) -> ZoneInfo:
    return request.app[SETTINGS].zone


def service_to_allow(made: Ask, state: dict[str, Any], locked: bool = False) -> str:
    """The service an "always" approval of ``made`` takes off its profile's blocked
    services: when the profile blocks that service and its block decided, and the
    profile does not block the service's category too (then only the rule would help);
    else ''. Also '' when the provisioning locks the profiles (``locked``): the rule's
    allow is a parent's everyday action, a profile's filters are not."""
    if locked or not made.service or made.reason != "service":
        return ""
    profile = next((p for p in state.get("household", {}).get("profiles", []) if p.get("name") == made.profile), None)
    if profile is None or made.service not in profile.get("services", ()):
        return ""
    service: dict[str, Any] = next((s for s in state.get("services", []) if s.get("id") == made.service), {})
    if service.get("category") and service["category"] in profile.get("categories", ()):
        return ""
    return made.service


def _profiles_locked(request: web.Request) -> bool:
    return bool(request.app[PROVISION].is_locked("profiles"))


def _rule_words(rule: str) -> str:
    return _("%(rule)s and its subdomains") % {"rule": rule}


def _service_words(name: str) -> str:
    return _("%(service)s (the service)") % {"service": name}


async def requests_page(request: web.Request) -> web.StreamResponse:
    session_of(request)
    state = await state_of(request)
    zone = _zone(request)
    now = float(state.get("now") or 0)
    names = {c["id"]: c.get("name") or c["id"] for c in (*state.get("categories", []), *state.get("services", []))}
    rows = []
    locked = _profiles_locked(request)
    for a in await asyncio.to_thread(request.app[ASKS].listing):
        service = service_to_allow(a, state, locked) if a.state == "new" else (a.service if a.allowed == "service" else "")
        rows.append({
            "ask": a, "asked": when(a.time, zone, now),
            "why": reason_words({"reason": a.reason, "category": "" if a.reason == "service" and a.service
                                 else names.get(a.category, a.category),
                                 "service": names.get(a.service, a.service) if a.service else ""}),
            "decided": when(a.decided_at, zone, now) if a.decided_at else "",
            "until": when(a.until, zone, now) if a.state == "approved" and a.until is not None else "",
            "rule_words": _rule_words(a.rule), "service_words": _service_words(names.get(service, service))
            if service else "",
        })
    return render(request, "requests.html", {"rows": rows, "message_max": MESSAGE_MAX})


def request_id(request: web.Request) -> int:
    """The path's request id (404 when it is no number)."""
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise Refused(404, _("No such request.")) from None


async def approve_ask(request: web.Request, ident: int, length: str) -> Ask:
    """Approve request ``ident`` for ``length`` (LENGTHS' keys, ``today``, ``always``) as
    the signed-in parent; the request as answered. Refused: unknown (404), answered
    already (409), no such length (400)."""
    session = session_of(request)
    asks = request.app[ASKS]
    made = await asyncio.to_thread(asks.get, ident)
    if made is None:
        raise Refused(404, _("No such request."))
    if made.state != "new":
        raise Refused(409, _("This request was answered already or has expired."))
    fields: dict[str, Any] = {}
    if length in LENGTHS:
        fields["for"] = LENGTHS[length]
    elif length == "today":
        fields["at"] = "23:59"
    elif length != "always":
        raise Refused(400, _("Choose for how long."))
    service, state = "", {}
    if length == "always" and made.service:
        state = await state_of(request)
        service = service_to_allow(made, state, _profiles_locked(request))
    until: Any = None
    if service:
        profile = next(p for p in state["household"]["profiles"] if p.get("name") == made.profile)
        # Based on the revision read: a parent's edit meanwhile is refused, not overwritten.
        await act(request, "profile-set", ("request approved", service, f"{made.profile} always service"),
                  profile=made.profile, revision=state.get("revision"),
                  set={"services": [s for s in profile.get("services", []) if s != service]})
    else:
        answer = await act(request, "allow", ("request approved", made.rule, f"{made.profile} {length}"),
                           domain=made.rule, profile=made.profile, **fields)
        until = answer.get("until")
    try:
        return await asyncio.to_thread(
            asks.decide, made.id, "approved", session.account.name,
            float(until) if isinstance(until, (int, float)) and math.isfinite(until) else None, "",
            "service" if service else "rule")
    except NotOpen:
        raise Refused(409, _("This request was answered already or has expired.")) from None


async def decline_ask(request: web.Request, ident: int, message: str) -> Ask:
    """Decline request ``ident`` with an optional ``message`` as the signed-in parent."""
    session = session_of(request)
    asks = request.app[ASKS]
    if await asyncio.to_thread(asks.get, ident) is None:
        raise Refused(404, _("No such request."))
    try:
        made = await asyncio.to_thread(asks.decide, ident, "declined", session.account.name, None, message)
    except BadNote:
        raise Refused(400, _("The message is too long: at most %(count)s characters.") % {"count": MESSAGE_MAX}
                      ) from None
    except NotOpen:
        raise Refused(409, _("This request was answered already or has expired.")) from None
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "request declined", str(ident), "")
    return made


async def approve(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    await approve_ask(request, request_id(request), data.get("for", ""))
    raise web.HTTPSeeOther("/requests")


async def decline(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    await decline_ask(request, request_id(request), data.get("message", ""))
    raise web.HTTPSeeOther("/requests")


def add_requests(app: web.Application) -> None:
    """The Requests page and the menu's badge (``open_requests()`` in every template)."""
    settings = app[SETTINGS]
    app[ASKS] = Asks(settings.data_dir, retention_days=settings.store.event_days)
    app[ENV].globals["open_requests"] = app[ASKS].count_open
    app.router.add_get("/requests", requests_page)
    app.router.add_post("/requests/{id}/approve", approve)
    app.router.add_post("/requests/{id}/decline", decline)

