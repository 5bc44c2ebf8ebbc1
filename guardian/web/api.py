"""The JSON API under /api/v1 (for the pages' scripts and other clients), and its
OpenAPI 3.1 document at /api/v1/openapi.json.

The API takes the dashboard's session (cookie) like the pages, where a state-changing
call sends the session's CSRF token in ``X-CSRF-Token`` (``GET /api/v1/session`` gives
it); or an API token made in Settings, as ``Authorization: Bearer gdn_...`` (no cookie,
so no CSRF token needed). Either acts as its account, in the audit log too.
``ROUTES`` is the one list both the router and the document are built from, and a test
checks that the router's routes and the document's paths are the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import __version__, choices
from .app import (
    CONTROL,
    HISTORY,
    PROVISION,
    Managed,
    Refused,
    act,
    activity_filter,
    audit_log,
    digest,
    find_profile,
    reauthenticate,
    session_of,
    state_of,
)
from .asking import ASKS, LENGTHS, approve_ask, decline_ask, request_id, service_to_allow
from .asks import STATES

PREFIX = "/api/v1"


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise Refused(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


async def get_session(request: web.Request) -> web.Response:
    s = session_of(request)
    return web.json_response({"account": s.account.name, "language": s.account.language, "csrf": s.csrf})


async def get_state(request: web.Request) -> web.Response:
    return web.json_response(await state_of(request))


async def get_devices(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CONTROL].data("devices"))


async def get_activity(request: web.Request) -> web.Response:
    rows = await asyncio.to_thread(request.app[HISTORY].log, activity_filter(request))
    return web.json_response({"rows": rows, "next": rows[-1]["id"] if len(rows) >= 50 else None})


async def get_events(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[HISTORY].events, 100))


async def get_week(request: web.Request) -> web.Response:
    return web.json_response(await digest(request, await state_of(request)))


async def get_audit(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(audit_log, request.app, 200))


async def post_pause(request: web.Request) -> web.Response:
    body = await _json(request)
    name = request.match_info["name"]
    seconds = body.get("seconds")
    if not isinstance(seconds, int) or not 0 < seconds <= 7 * 86400:
        raise Refused(400, "seconds: a whole number from 1 to 604800")
    answer = await act(request, "pause", ("pause", name, f"{seconds // 60} min"), target=name, **{"for": seconds})
    return web.json_response({"message": answer.get("message", "")})


async def post_resume(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    answer = await act(request, "resume", ("resume", name, ""), target=name)
    return web.json_response({"message": answer.get("message", "")})


async def post_bonus(request: web.Request) -> web.Response:
    body = await _json(request)
    name = request.match_info["name"]
    minutes = body.get("minutes")
    if not isinstance(minutes, int) or not 0 < minutes <= 24 * 60:
        raise Refused(400, "minutes: a whole number from 1 to 1440")
    answer = await act(request, "bonus", ("bonus", name, f"+{minutes} min"), profile=name, **{"for": minutes * 60})
    return web.json_response({"message": answer.get("message", "")})


async def post_allow(request: web.Request) -> web.Response:
    body = await _json(request)
    extra = {"for": body["seconds"]} if isinstance(body.get("seconds"), int) else {}
    domain, profile = str(body.get("domain", "")), str(body.get("profile", ""))
    answer = await act(request, "allow", ("allow", domain, profile), domain=domain, profile=profile, **extra)
    return web.json_response({"message": answer.get("message", "")})


async def post_profile(request: web.Request) -> web.Response:
    body = await _json(request)
    name, template = str(body.get("name", "")).strip(), str(body.get("template", ""))
    answer = await act(request, "profile-add", ("profile added", name, template), name=name, template=template)
    return web.json_response({"message": answer.get("message", "")})


async def post_profile_rename(request: web.Request) -> web.Response:
    body = await _json(request)
    new = str(body.get("name", "")).strip()
    was = find_profile(await state_of(request), request.match_info["name"])["name"]
    answer = await act(request, "profile-rename", ("profile renamed", was, new), profile=was, name=new)
    await asyncio.to_thread(request.app[ASKS].rename, "profile", was, new)
    return web.json_response({"message": answer.get("message", "")})


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CONTROL].data("settings"))


async def post_settings(request: web.Request) -> web.Response:
    """Change the service's settings parents may choose; the resolvers and the privacy
    mode need the account's ``password`` in the body too, as on the Settings page."""
    body = await _json(request)
    changes = {k: body[k] for k in choices.LOCKS if k in body}
    if not changes:
        raise Refused(400, f"give one of {', '.join(choices.LOCKS)}")
    provision = request.app[PROVISION]
    for key in changes:
        if choices.LOCKS[key] and provision.is_locked(choices.LOCKS[key]):
            raise Managed(provision.managed_by, choices.LOCKS[key])
    if "upstreams" in changes or "privacy" in changes:
        await reauthenticate(request, str(body.get("password", "")))
    detail = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in changes.items())
    answer = await act(request, "settings-set", ("settings changed", ", ".join(changes), detail), **changes)
    return web.json_response({"message": answer.get("message", ""), "changed": sorted(changes)})


async def get_requests(request: web.Request) -> web.Response:
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise Refused(400, f"state: one of {', '.join(STATES)}")
    asks = await asyncio.to_thread(request.app[ASKS].listing, 50, state)
    house = await state_of(request) if any(a.state == "new" and a.service for a in asks) else {}
    locked = request.app[PROVISION].is_locked("profiles")
    rows = []
    for a in asks:
        row = a.as_dict()
        row["always_allows"] = ("service" if service_to_allow(a, house, locked) else "rule") if a.state == "new" \
            else None
        rows.append(row)
    return web.json_response({"requests": rows})


async def post_request_approve(request: web.Request) -> web.Response:
    body = await _json(request)
    length = body.get("for")
    if isinstance(length, bool) or not isinstance(length, (int, str)) or str(length) not in (*LENGTHS, "today",
                                                                                            "always"):
        raise Refused(400, "for: 900, 3600, \"today\" or \"always\"")
    made = await approve_ask(request, request_id(request), str(length))
    return web.json_response({"request": made.as_dict()})


async def post_request_decline(request: web.Request) -> web.Response:
    body = await _json(request)
    message = body.get("message", "")
    if not isinstance(message, str):
        raise Refused(400, "message: a string")
    made = await decline_ask(request, request_id(request), message)
    return web.json_response({"request": made.as_dict()})


_OBJ: dict[str, Any] = {"type": "object"}
_MSG = {"type": "object", "properties": {"message": {"type": "string"}}}
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "a profile"}]
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}, "description": "a request"}]
_NULLS = {"type": ["string", "null"]}
_ASK = {"type": "object", "description": "A child's request from the block page (device and client empty in "
        "anonymous privacy mode)", "properties": {
            "id": {"type": "integer"}, "time": {"type": "number", "description": "epoch seconds"},
            "device": {"type": "string"}, "client": {"type": "string"}, "profile": {"type": "string"},
            "name": {"type": "string", "description": "the blocked name"},
            "rule": {"type": "string", "description": "the list rule that matched (it covers its subdomains)"},
            "service": {"type": "string", "description": "the named service whose block decided, or ''"},
            "category": {"type": "string"}, "reason": {"type": "string"}, "note": {"type": "string"},
            "state": {"enum": list(STATES)}, "decided_by": {"type": "string"},
            "decided_at": {"type": ["number", "null"]},
            "until": {"type": ["number", "null"], "description": "an approval's end; null: for good"},
            "message": {"type": "string", "description": "a decline's message"},
            "allowed": {"enum": ["rule", "service", ""], "description": "what an approval allowed"},
            "always_allows": {"enum": ["rule", "service", None],
                              "description": "(listing, open requests) what approving always would allow: the "
                                             "rule on the profile's allow list, or the service off its services"}}}
_ANSWER = {"type": "object", "properties": {"request": _ASK}}

# (method, path, handler, summary, request body schema, response schema, parameters)
ROUTES: list[tuple[str, str, Any, str, dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]] = [
    ("GET", "/session", get_session, "The signed-in account and its CSRF token", None,
     {"type": "object", "properties": {"account": {"type": "string"}, "language": {"type": "string"},
                                       "csrf": {"type": "string"}}}, []),
    ("GET", "/state", get_state, "The household, overrides in force, per-profile status and usage", None, _OBJ, []),
    ("GET", "/devices", get_devices, "The live device registry", None, {"type": "array", "items": _OBJ}, []),
    ("GET", "/activity", get_activity, "The query log, newest first (keyset paging with `before`)", None,
     {"type": "object", "properties": {"rows": {"type": "array", "items": _OBJ},
                                       "next": {"type": ["integer", "null"]}}},
     [{"name": n, "in": "query", "required": False, "schema": {"type": t}}
      for n, t in (("device", "string"), ("domain", "string"), ("decision", "string"), ("before", "integer"))]),
    ("GET", "/events", get_events, "Risk events, newest first", None, {"type": "array", "items": _OBJ}, []),
    ("GET", "/week", get_week, "The weekly digest per child (`back=1`: the week before)", None,
     {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"},
                                       "profiles": {"type": "array", "items": _OBJ}}},
     [{"name": "back", "in": "query", "required": False, "schema": {"type": "integer"}}]),
    ("GET", "/audit", get_audit, "Who changed what, newest first", None, {"type": "array", "items": _OBJ}, []),
    ("POST", "/profiles/{name}/pause", post_pause, "Pause a profile (or a device) for a while",
     {"type": "object", "required": ["seconds"], "properties": {"seconds": {"type": "integer"}}}, _MSG, _NAME),
    ("POST", "/profiles/{name}/resume", post_resume, "End a pause", None, _MSG, _NAME),
    ("POST", "/profiles/{name}/bonus", post_bonus, "Bonus time: schedules and budgets lifted for a while",
     {"type": "object", "required": ["minutes"], "properties": {"minutes": {"type": "integer"}}}, _MSG, _NAME),
    ("POST", "/allow", post_allow, "Allow a domain for a profile, for a while or for good",
     {"type": "object", "required": ["domain", "profile"],
      "properties": {"domain": {"type": "string"}, "profile": {"type": "string"},
                     "seconds": {"type": "integer"}}}, _MSG, []),
    ("GET", "/requests", get_requests, "The children's requests: open ones first (oldest first), then the "
     "answered, newest first", None, {"type": "object", "properties": {"requests": {"type": "array", "items": _ASK}}},
     [{"name": "state", "in": "query", "required": False, "schema": {"enum": list(STATES)},
       "description": "only the requests in this state"}]),
    ("POST", "/requests/{id}/approve", post_request_approve, "Approve a request for 15 minutes (900), an hour "
     "(3600), the rest of today or always: a timed approval allows the rule for its profile; always puts it on "
     "the profile's allow list, or takes a service the profile blocks off its services (404 unknown, 409 "
     "answered or expired)",
     {"type": "object", "required": ["for"],
      "properties": {"for": {"oneOf": [{"enum": [900, 3600]}, {"enum": ["900", "3600", "today", "always"]}]}}},
     _ANSWER, _ID),
    ("POST", "/requests/{id}/decline", post_request_decline, "Decline a request, with an optional message for "
     "the child (at most 200 characters; 404 unknown, 409 answered or expired)",
     {"type": "object", "properties": {"message": {"type": "string", "maxLength": 200}}}, _ANSWER, _ID),
    ("POST", "/profiles/{name}/rename", post_profile_rename, "Rename a profile (by its name or stable id): its "
     "id, devices, pause, bonus, allowed sites, today's minutes and history stay with it",
     {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 40}}},
     _MSG, _NAME),
    ("GET", "/settings", get_settings, "The filtering service's settings: resolvers, privacy mode, retention, "
     "time zone, the downloaded lists and their status", None, _OBJ, []),
    ("POST", "/settings", post_settings, "Change the settings parents may choose (kept on the box over the "
     "configuration; never a setting the provider locks: 403 `setting`); resolvers and privacy mode need the "
     "account's password; a switch to anonymous erases who asked what at once",
     {"type": "object", "properties": {
         "upstreams": {"type": "array", "items": {"type": "string"}, "minItems": 1},
         "privacy": {"enum": ["full", "risks-only", "anonymous"]},
         "query_days": {"type": "integer", "minimum": 0, "maximum": 3650},
         "event_days": {"type": "integer", "minimum": 0, "maximum": 3650},
         "timezone": {"type": "string", "description": "an IANA zone, e.g. Europe/Paris"},
         "password": {"type": "string", "description": "the account's password (resolvers, privacy mode)"}}},
     {"type": "object", "properties": {"message": {"type": "string"},
                                       "changed": {"type": "array", "items": {"type": "string"}}}}, []),
    ("POST", "/profiles", post_profile, "Add a child's profile from a rule-pack template (403 `setting` when "
     "the provisioning locks profiles)",
     {"type": "object", "required": ["name", "template"],
      "properties": {"name": {"type": "string"}, "template": {"type": "string"}}}, _MSG, []),
]


def openapi() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, _handler, summary, body, response, params in ROUTES:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "done", "content": {"application/json": {"schema": response}}},
                          "401": {"description": "no session"}},
        }
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if method != "GET":
            op["responses"]["403"] = {"description": "no or wrong X-CSRF-Token, or a foreign Origin"}
            op["security"] = [{"session": [], "csrf": []}, {"token": []}]
        paths.setdefault(PREFIX + path, {})[method.lower()] = op
    paths[PREFIX + "/openapi.json"] = {"get": {"summary": "This document", "security": [],
                                               "responses": {"200": {"description": "OpenAPI 3.1"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Guardian dashboard API", "version": __version__},
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "guardian_session"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            "token": {"type": "http", "scheme": "bearer", "description": "an API token from Settings"}}},
        "security": [{"session": []}, {"token": []}],
        "paths": paths,
    }


async def get_openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi())


def add_api(app: web.Application) -> None:
    for method, path, handler, *_rest in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
    app.router.add_get(PREFIX + "/openapi.json", get_openapi)
