"""The child's side: the block page on ``dashboard.blockpage_listen`` (port 80 of the box).

Guardian answers a blocked name with the box's own address when the profile's
``block_mode`` is ``blockpage``, so the child's browser comes here with the blocked
site's name in its Host header. The page never trusts the request for the decision: it
asks the DNS process (``explain`` over the control socket) what it decides now for the
asking address and that name, and says so in plain words, in the browser's language.

Responses carry no cookie (they would belong to the blocked site's origin),
``Cache-Control: no-store``, ``Connection: close``, ``X-Robots-Tag: noindex`` and the
dashboard's strict headers. Nothing listens on 443: a blocked HTTPS site fails fast in
the browser, and no certificate is ever presented.
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from ..config import Settings
from ..errors import ConfigError, GuardianError
from ..provision import Provision, load_for
from . import i18n
from .client import Control

log = logging.getLogger("guardian.web.child")

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2] / "web"
STATIC = "/_guardian/static/"
HOST_RE = re.compile(r"^[a-z0-9.-]{1,253}$")
# Categories whose page puts the helpline first and says nothing that could shame.
HELP_FIRST = {"self-harm", "suicide", "eating-disorders"}
TELL_ADULT = {"chat", "grooming", "dating", "social", "anonymous-chat"}
THREATS = {"phishing", "malware", "scam", "cryptojacking"}
# Threats (rule packs' ids) whose page says "tell a trusted adult".
ADULT_THREATS = {"grooming", "sexual-solicitation", "cyberbullying", "cyberstalking"}

CONTROL: web.AppKey[Control] = web.AppKey("child_control", Control)
ENV: web.AppKey[jinja2.Environment] = web.AppKey("child_env", jinja2.Environment)
CATALOGS: web.AppKey[dict[str, Any]] = web.AppKey("child_catalogs", dict)
PROVISION: web.AppKey[Provision] = web.AppKey("child_provision", Provision)
OWN_NAMES: web.AppKey[set[str]] = web.AppKey("child_own_names", set)

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Connection": "close",
    "X-Robots-Tag": "noindex",
}


def host_of(request: web.Request) -> str:
    """The Host header's name, lowercase and without port; '' when it is no name."""
    raw = (request.headers.get("Host") or "").strip().lower()
    if raw.startswith("["):
        return ""
    name = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
    name = name.rstrip(".")
    return name if HOST_RE.match(name) and ".." not in name else ""


def _clock(ts: float | None, zone: str) -> str:
    if ts is None:
        return ""
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = datetime.UTC  # type: ignore[assignment]
    return datetime.datetime.fromtimestamp(ts, tz).strftime("%H:%M")


def reason_words(decision: dict[str, Any], state: dict[str, Any], profile: str) -> str:
    """The reason in plain words, for a child."""
    _ = i18n.gettext_
    reason = str(decision.get("reason") or "")
    zone = str(state.get("zone") or "UTC")
    me: dict[str, Any] = next((p for p in state.get("profiles", []) if p.get("name") == profile), {})
    if reason == "schedule":
        until = next((s.get("until") for s in me.get("schedules_active", [])
                      if s.get("name") == decision.get("schedule")), None)
        name = str(decision.get("schedule") or "")
        if until is not None:
            return _("%(schedule)s until %(time)s") % {"schedule": name, "time": _clock(until, zone)}
        return name
    if reason == "budget":
        target = str(decision.get("budget") or "")
        used = next((u for u in me.get("usage", []) if u.get("target") == target), None)
        if used is not None:
            return _("%(what)s: %(used)s of %(budget)s minutes used today") % {
                "what": target, "used": used.get("minutes"), "budget": used.get("budget")}
        return _("%(what)s: today's time is used up") % {"what": target}
    if reason == "pause":
        until = me.get("paused_until")
        for d in state.get("household", {}).get("devices", []):
            if d.get("name") == decision.get("device") and d.get("paused_until"):
                until = d["paused_until"]
        if until:
            return _("Paused by a parent until %(time)s") % {"time": _clock(until, zone)}
        return _("Paused by a parent")
    if reason in ("deny", "override-block"):
        return _("A parent has blocked this site")
    if reason == "bypass":
        return _("This site gets around the filter")
    category = str(decision.get("category") or "")
    for c in state.get("categories", []):
        if c.get("id") == category and c.get("description"):
            return str(c["description"])
    service = str(decision.get("service") or "")
    return service or category or _("Not allowed on this profile")


async def block_page(request: web.Request) -> web.StreamResponse:
    catalogs = request.app[CATALOGS]
    lang = i18n.negotiate(request.headers.get("Accept-Language", ""), catalogs)
    token = i18n.current.set(catalogs[lang])
    try:
        return await _block_page(request, lang)
    finally:
        i18n.current.reset(token)


async def _block_page(request: web.Request, lang: str) -> web.StreamResponse:
    _ = i18n.gettext_
    provision = request.app[PROVISION]
    name = host_of(request)
    ip = request.remote or ""
    ctx: dict[str, Any] = {
        "lang": lang, "dir": "rtl" if lang in i18n.RTL else "ltr", "static": STATIC,
        "brand": provision.brand.name if provision.brand is not None else "Guardian",
        "helpline": provision.helpline, "name": name, "device": "", "profile": "",
        "reason": "", "kind": "", "blocked": False, "down": False,
    }
    status = 200
    if not name:
        ctx["reason"] = _("This address is not a site name.")
        status = 400
    else:
        control = request.app[CONTROL]
        try:
            found = await control.data("explain", name=name, ip=ip)
            state = await control.data("state")
        except GuardianError as exc:
            log.warning("block page: %s", exc)
            ctx["down"] = True
            status = 503
        else:
            decision = found.get("decision", {})
            ctx["device"] = found.get("device") or ""
            ctx["profile"] = found.get("profile") or ""
            ctx["blocked"] = decision.get("action") == "block"
            if ctx["blocked"]:
                ctx["reason"] = reason_words(decision, state, ctx["profile"])
                category = str(decision.get("category") or "")
                threat = str(decision.get("threat") or "")
                ctx["kind"] = ("help" if category in HELP_FIRST or threat == "self-harm" else
                               "adult-help" if category in TELL_ADULT or threat in ADULT_THREATS else
                               "threat" if category in THREATS or threat in ("phishing", "malware") else "")
                ctx["help"] = _help_resources(state, category) if ctx["kind"] == "help" else []
    html = request.app[ENV].get_template("block.html").render(ctx)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _help_resources(state: dict[str, Any], category: str) -> list[str]:
    """The category's allow-listed help sites, when the rule pack names them."""
    for c in state.get("categories", []):
        if c.get("id") == category:
            return [str(h) for h in c.get("help", [])][:5]
    return []


@web.middleware
async def child_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for key, value in HEADERS.items():
        response.headers[key] = value
    response.headers.popall("Set-Cookie", None)
    response.force_close()
    return response


def make_child_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[child_headers], client_max_size=64 << 10)
    app[CONTROL] = Control(settings.data_dir)
    try:
        app[PROVISION] = load_for(settings.path) if settings.path is not None else Provision()
    except ConfigError:
        app[PROVISION] = Provision()
    app[CATALOGS] = i18n.load(ROOT / "translations")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
    app[ENV] = env
    app.router.add_static(STATIC, ROOT / "static", show_index=False)
    app.router.add_route("GET", "/{tail:.*}", block_page)
    return app


async def start(settings: Settings) -> web.AppRunner | None:
    """Serve the block page on every ``dashboard.blockpage_listen`` address (none: nothing)."""
    if not settings.dashboard.blockpage_listen:
        return None
    runner = web.AppRunner(make_child_app(settings), access_log=None)
    await runner.setup()
    for host, port in settings.dashboard.blockpage_listen:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        log.info("block page on http://%s:%d/", f"[{host}]" if ":" in host else host, port)
    return runner
