"""The parents' dashboard: aiohttp + Jinja2 (autoescape), its own process.

It reads history from guardian.db read-only (history.py), keeps accounts and sessions
in web.db (accounts.py) and changes the household only through the control socket
(client.py). Every page works without JavaScript; there is no inline script at all, so
the Content-Security-Policy can forbid it.

Requests are checked in this order (middlewares): security headers on every answer;
the Host must be one of the box's names or the address the connection arrived on (a
DNS-rebinding page gets 403); a session is needed except for login, first run, health
and static files (pages redirect to login, the API answers 401); a state-changing
request needs the session's CSRF token (or the login form's cookie-bound one) and an
Origin, when sent, that is this dashboard's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from .. import choices, metrics, sdnotify
from ..config import Settings
from ..errors import ConfigError, GuardianError
from ..provision import Provision, load_for, verify_setup_code
from . import i18n
from .accounts import Account, Accounts, Session, WeakPassword, db_path
from .client import ActionFailed, Control, DaemonDown
from .history import Filter, History

log = logging.getLogger(__name__)

def _assets() -> Path:
    """web/ beside the package in a checkout, else <prefix>/share/guardian/web (setup.cfg data_files)."""
    beside = Path(__file__).resolve().parents[2] / "web"
    installed = Path(sys.prefix) / "share" / "guardian" / "web"
    return installed if not beside.is_dir() and installed.is_dir() else beside


ROOT = _assets()  # a checkout
if not ROOT.is_dir() and (Path(sys.prefix) / "share" / "guardian" / "web").is_dir():
    ROOT = Path(sys.prefix) / "share" / "guardian" / "web"  # a venv, the .deb (setup.cfg data_files)
COOKIE = "guardian_session"
FORM_COOKIE = "guardian_form"  # the CSRF token of the forms shown before a session exists
PUBLIC = ("/login", "/setup", "/healthz", "/metrics", "/static/", "/brand/")  # /metrics: its own allow-list
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'; connect-src 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
ONLINE_SECONDS = 300  # a device that asked within 5 minutes is "online now"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)
CONTROL: web.AppKey[Control] = web.AppKey("control", Control)
HISTORY: web.AppKey[History] = web.AppKey("history", History)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
ENV: web.AppKey[jinja2.Environment] = web.AppKey("env", jinja2.Environment)
CATALOGS: web.AppKey[dict[str, Any]] = web.AppKey("catalogs", dict)
HOSTS: web.AppKey[set[str]] = web.AppKey("hosts", set)
PROVISION: web.AppKey[Provision] = web.AppKey("provision", Provision)


class Refused(GuardianError):
    """A request the dashboard refuses with an HTTP status and a translated reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- helpers ------------------------------------------------------------------------------


def _(message: str) -> str:
    return i18n.gettext_(message)


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for translation, translate later"
    return message


DAY_LABELS = (("mon", N_("Mon")), ("tue", N_("Tue")), ("wed", N_("Wed")), ("thu", N_("Thu")), ("fri", N_("Fri")),
              ("sat", N_("Sat")), ("sun", N_("Sun")))


def allowed_hosts(settings: Settings) -> set[str]:
    """The names a Host header may carry (lowercase, without port)."""
    hosts = {"localhost", *settings.dashboard.hosts}
    if settings.dns is not None:
        hosts |= set(settings.dns.local_names)
    for host, _port in settings.dashboard.listen:
        if host not in ("0.0.0.0", "::", ""):
            hosts.add(host)
    return {h.lower() for h in hosts}


def host_ok(request: web.Request) -> bool:
    raw = (request.headers.get("Host") or "").strip().lower()
    if not raw or len(raw) > 255:
        return False
    if raw.startswith("["):
        host = raw[1:raw.find("]")] if "]" in raw else ""
    else:
        host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
    if host in request.app[HOSTS]:
        return True
    # An address literal is fine when it is the address this connection arrived on:
    # a rebinding attack needs a name, and a phone typing the box's address must work.
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return False
    sock: Any = request.transport.get_extra_info("sockname") if request.transport else None
    return bool(sock) and ipaddress.ip_address(str(sock[0]).split("%")[0]) == literal


def client_of(request: web.Request) -> str:
    return request.remote or ""


def when(epoch: float | None, zone: ZoneInfo, now: float) -> str:
    """A time a parent reads: "18:30" today, else "Tue 07:00"."""
    if epoch is None:
        return _("until resumed")
    at = datetime.fromtimestamp(epoch, zone)
    today = datetime.fromtimestamp(now, zone).date()
    if at.date() == today:
        return at.strftime("%H:%M")
    if at.date() == today + timedelta(days=1):
        return _("tomorrow") + " " + at.strftime("%H:%M")
    return at.strftime("%Y-%m-%d %H:%M")


REASONS = {
    "": N_("nothing matched: allowed"),
    "allow": N_("on the profile's allow list"),
    "deny": N_("on the profile's deny list"),
    "category": N_("in a blocked category"),
    "service": N_("a blocked service"),
    "schedule": N_("blocked by a schedule"),
    "budget": N_("the daily time budget is used up"),
    "override-allow": N_("allowed for a while by a parent"),
    "override-block": N_("blocked for a while by a parent"),
    "pause": N_("the internet is paused"),
    "bypass": N_("a way around the filter"),
    "safe-search": N_("rewritten to safe search"),
}


def reason_words(row: dict[str, Any]) -> str:
    text = _(REASONS.get(row.get("reason") or "", N_("blocked")))
    detail = row.get("category") or row.get("service") or row.get("schedule") or row.get("list") or ""
    return f"{text} ({detail})" if detail else text


# --- the application ------------------------------------------------------------------------


def make_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(middlewares=[headers_mw, host_mw, session_mw, csrf_mw], client_max_size=1 << 20)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app[ACCOUNTS] = Accounts(db_path(settings.data_dir), clock)
    app[CONTROL] = Control(settings.data_dir)
    app[HISTORY] = History(settings.data_dir)
    app[SETTINGS] = settings
    app[HOSTS] = allowed_hosts(settings)
    try:  # a telco's brand and setup code (config.load checked the files already)
        app[PROVISION] = load_for(settings.path) if settings.path is not None else Provision()
    except ConfigError:
        app[PROVISION] = Provision()
    app[CATALOGS] = i18n.load(ROOT / "translations")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
    env.globals["languages"] = i18n.LANGUAGES
    app[ENV] = env
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics_page)
    r.add_get("/brand/brand.css", brand_css)
    r.add_get("/brand/logo", brand_logo)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_get("/setup", setup_page)
    r.add_post("/setup", setup)
    r.add_post("/logout", logout)
    r.add_get("/", home)
    r.add_post("/act/pause", act_pause)
    r.add_post("/act/resume", act_resume)
    r.add_post("/act/bonus", act_bonus)
    r.add_get("/devices", devices_page)
    r.add_post("/devices/assign", device_assign)
    r.add_post("/devices/forget", device_forget)
    r.add_get("/activity", activity_page)
    r.add_post("/activity/allow", activity_allow)
    r.add_post("/profiles", profile_add)
    r.add_get("/week", week_page)
    r.add_post("/activity/seen", events_seen)
    r.add_get("/profiles/{name}", profile_page)
    r.add_post("/profiles/{name}/remove", profile_remove)
    r.add_post("/profiles/{name}/rename", profile_rename)
    r.add_post("/profiles/{name}/filters", profile_filters)
    r.add_post("/profiles/{name}/list", profile_list)
    r.add_post("/profiles/{name}/schedule", profile_schedule)
    r.add_post("/profiles/{name}/budget", profile_budget)
    r.add_get("/welcome", welcome_page)
    r.add_post("/welcome/child", welcome_child)
    r.add_post("/welcome/step", welcome_step)
    r.add_get("/guides", guides_page)
    r.add_get("/guides/{threat}", guide_page)
    r.add_get("/settings", settings_page)
    r.add_post("/settings/accounts", add_account)
    r.add_post("/settings/accounts/remove", remove_account)
    r.add_post("/settings/password", change_password)
    r.add_post("/settings/sessions", revoke_session)
    r.add_post("/settings/language", set_language)
    r.add_post("/settings/tokens", add_token)
    r.add_post("/settings/tokens/revoke", revoke_token)
    r.add_post("/settings/service", service_settings)
    r.add_post("/settings/lists/refresh", refresh_lists)
    r.add_get("/settings/household.yaml", household_download)
    r.add_post("/settings/household", household_upload)
    from .api import add_api

    add_api(app)
    from .asking import add_requests  # the children's "Ask a parent" requests (issue 12)

    add_requests(app)
    r.add_static("/static/", ROOT / "static", show_index=False)
    return app


# --- middlewares ------------------------------------------------------------------------------


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def headers_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Refused as exc:
        response = error_response(request, exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and not wants_json(request):
            response = error_response(request, exc.status, exc.reason)
        elif exc.status >= 400:
            response = web.json_response({"error": exc.reason}, status=exc.status)
        else:
            response = exc
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def error_response(request: web.Request, status: int, message: str, setting: str = "") -> web.StreamResponse:
    if wants_json(request):
        return web.json_response({"error": message, "setting": setting} if setting else {"error": message},
                                 status=status)
    try:
        return render(request, "error.html", {"status": status, "message": message}, status=status)
    except Exception:  # noqa: BLE001 - the plainest answer when even the error page fails
        return web.Response(status=status, text=message)


@web.middleware
async def host_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not host_ok(request):
        return web.Response(status=403, text="403: this dashboard answers only to the box's own names\n")
    return await handler(request)


@web.middleware
async def session_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    bearer = request.headers.get("Authorization", "")
    request["token"] = wants_json(request) and bearer.startswith("Bearer ")
    if request["token"]:  # an API token acts for its account; no cookie, so no CSRF either
        session = await asyncio.to_thread(accounts.token, bearer[7:].strip())
        if session is None:
            return web.json_response({"error": "unknown or revoked API token"}, status=401)
    else:
        session = accounts.session(request.cookies.get(COOKIE, ""))
    request["session"] = session
    catalogs = request.app[CATALOGS]
    lang = session.account.language if session is not None and session.account.language in catalogs else ""
    lang = lang or i18n.negotiate(request.headers.get("Accept-Language", ""), catalogs)
    request["lang"] = lang
    token = i18n.current.set(catalogs[lang])
    try:
        if session is None and not request.path.startswith(PUBLIC):
            if wants_json(request) and request.path != "/api/v1/openapi.json":
                return web.json_response({"error": "sign in first"}, status=401)
            if not wants_json(request):
                raise web.HTTPSeeOther("/setup" if accounts.count() == 0 else "/login")
        try:
            return await handler(request)
        except Refused as exc:  # rendered here, in the request's language
            return error_response(request, exc.status, str(exc), getattr(exc, "setting", ""))
    finally:
        i18n.current.reset(token)


@web.middleware
async def csrf_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in UNSAFE and not request["token"]:
        # With Referrer-Policy no-referrer, browsers send "Origin: null" on form posts;
        # Sec-Fetch-Site still says where the request came from.
        origin = request.headers.get("Origin")
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if (origin not in (None, "null") and origin != f"http://{request.headers.get('Host', '')}") or (
                fetch_site is not None and fetch_site not in ("same-origin", "none")):
            raise Refused(403, _("This request came from another site and was refused."))
        session: Session | None = request["session"]
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = str((await request.post()).get("csrf", ""))
        expected = session.csrf if session is not None else request.cookies.get(FORM_COOKIE, "")
        if not expected or not sent or not hmac.compare_digest(sent, expected):
            raise Refused(403, _("This form has expired. Go back, reload the page and try again."))
    return await handler(request)


# --- rendering ----------------------------------------------------------------------------------


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    session: Session | None = request.get("session")
    lang = request.get("lang", i18n.DEFAULT)
    form_token = ""
    if session is None:
        form_token = request.cookies.get(FORM_COOKIE, "") or secrets.token_urlsafe(32)
    page = request.app[ENV].get_template(template).render(
        lang=lang, dir="rtl" if lang in i18n.RTL else "ltr", account=session.account if session else None,
        csrf=session.csrf if session else form_token, path=request.path, brand=brand_name(request.app),
        logo=getattr(request.app[PROVISION].brand, "logo", None) is not None,
        helpline=request.app[PROVISION].helpline, locked=request.app[PROVISION].locked,
        managed_by=request.app[PROVISION].managed_by,
        locked_labels=[_(v) for k, v in LOCKED_LABELS.items() if k in request.app[PROVISION].locked], **context)
    response = web.Response(text=page, content_type="text/html", status=status)
    if session is None and request.cookies.get(FORM_COOKIE) != form_token:
        response.set_cookie(FORM_COOKIE, form_token, httponly=True, samesite="Strict", path="/")
    return response


def session_of(request: web.Request) -> Session:
    session: Session | None = request["session"]
    if session is None:
        raise web.HTTPSeeOther("/login")
    return session


async def form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


# The control actions that change a setting a telco may lock (provision.py LOCKABLE). A
# parent's everyday actions (pause, bonus, allow for a while, devices) are not settings.
LOCKED_BY_ACTION = {a: "profiles" for a in ("profile-add", "profile-remove", "profile-rename", "profile-set",
                                            "profile-list", "schedule-add", "schedule-remove", "budget-set",
                                            "household-restore")}
LOCKED_LABELS = {"upstreams": N_("Upstream resolvers"), "profiles": N_("Profiles and their filters"),
                 "default_profile": N_("Profile for new devices"), "privacy.mode": N_("Privacy mode"),
                 "privacy.query_days": N_("How long the query log is kept"),
                 "privacy.event_days": N_("How long risk events are kept"),
                 "anonymous_stats": N_("Anonymous statistics")}


class Managed(Refused):
    """A change to a setting the provisioning locks: 403 "Managed by <brand>"."""

    def __init__(self, brand: str, setting: str) -> None:
        super().__init__(403, _("Managed by %(brand)s: this setting cannot be changed here.") % {"brand": brand})
        self.setting = setting


def refuse_locked(request: web.Request, action: str) -> None:
    provision = request.app[PROVISION]
    key = LOCKED_BY_ACTION.get(action)
    if key is not None and provision.is_locked(key):
        raise Managed(provision.managed_by, key)


async def act(request: web.Request, action: str, audit: tuple[str, str, str], **fields: Any) -> dict[str, Any]:
    """One control action for the signed-in parent, written to the audit log (the daemon's
    too, which names the account: ``actor``). A locked setting is refused (Managed)."""
    session = session_of(request)
    refuse_locked(request, action)
    try:
        answer = await request.app[CONTROL].call(action, actor=session.account.name, **fields)
    except ActionFailed as exc:
        detail = "; ".join(exc.problems) if exc.problems else str(exc)
        raise Refused(409 if "meanwhile" in str(exc) else 400, _("Not saved:") + " " + detail) from None
    except DaemonDown:
        raise Refused(503, _("The filtering service is not running. Try again in a minute.")) from None
    name, target, detail = audit
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, name, target, detail)
    return answer


def back(request: web.Request, default: str = "/") -> web.HTTPSeeOther:
    """A redirect to the page the form was on (same site only)."""
    target = request.query.get("back") or default
    if not target.startswith("/") or target.startswith("//"):
        target = default
    return web.HTTPSeeOther(target)


async def state_of(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.app[CONTROL].data("state")
    except DaemonDown:
        raise Refused(503, _("The filtering service is not running. Try again in a minute.")) from None
    assert isinstance(data, dict)
    # The rule packs' words in the reader's language (extracted by guardian/web/extract.py).
    for item in (*data.get("categories", ()), *data.get("templates", ())):
        for key in ("name", "description"):
            if item.get(key):
                item[key] = _(item[key])
    return data


# --- public pages -----------------------------------------------------------------------------------


def brand_name(app: web.Application) -> str:
    brand = app[PROVISION].brand
    return brand.name if brand is not None else "Guardian"


CSS_VARIABLES = {"primary": "--brand", "accent": "--accent", "background": "--bg", "text": "--ink"}


async def brand_css(request: web.Request) -> web.Response:
    """The provisioning's colours as the stylesheet's variables (a file, so the CSP can
    keep forbidding inline style); the provisioning checked them as #rrggbb."""
    brand = request.app[PROVISION].brand
    colours = brand.colours if brand is not None else {}
    lines = [f"  {CSS_VARIABLES[k]}: {v};" for k, v in sorted(colours.items())
             if k in CSS_VARIABLES and re.fullmatch(r"#[0-9a-fA-F]{6}", v)]
    return web.Response(text=":root {\n" + "\n".join(lines) + "\n}\n", content_type="text/css")


async def brand_logo(request: web.Request) -> web.StreamResponse:
    brand = request.app[PROVISION].brand
    if brand is None or brand.logo is None:
        raise web.HTTPNotFound()
    return web.FileResponse(brand.logo)



async def _daemon_status(request: web.Request) -> dict[str, Any] | None:
    """The DNS process's ``status`` (control socket), or None when it does not answer."""
    try:
        data = await request.app[CONTROL].data("status")
    except GuardianError:
        return None
    return data if isinstance(data, dict) else None


async def healthz(request: web.Request) -> web.Response:
    """For a telco's monitoring: no authentication, no household data (guardian/metrics.py)."""
    code, body = metrics.healthz(await _daemon_status(request))
    return web.json_response(body, status=code)


def metrics_refusal(request: web.Request) -> web.Response | None:
    """403 outside ``dashboard.metrics_allow``; 401 without the bearer token when one is set."""
    dashboard = request.app[SETTINGS].dashboard
    try:
        peer = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        peer = None
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    if peer is None or not any(peer in net for net in dashboard.metrics_allow):
        return web.Response(status=403, text="403: this address may not read the metrics "
                                             "(dashboard.metrics_allow)\n")
    if dashboard.metrics_token:
        sent = request.headers.get("Authorization", "")
        if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].strip().encode(),
                                                                   dashboard.metrics_token.encode())):
            return web.Response(status=401, text="401: the metrics need the bearer token (dashboard.metrics_token)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return None


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text exposition for the allowed clients (a telco's scraper)."""
    refused = metrics_refusal(request)
    if refused is not None:
        return refused
    status = await _daemon_status(request)
    events = await asyncio.to_thread(request.app[HISTORY].events_by_severity) if status else None
    response = web.Response(text=metrics.render(status, events))
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if request.app[ACCOUNTS].count() == 0:
        raise web.HTTPSeeOther("/setup")
    return render(request, "login.html", {"error": ""})


def open_session(request: web.Request, account: Account, target: str = "/") -> web.HTTPSeeOther:
    old: Session | None = request["session"]
    accounts = request.app[ACCOUNTS]
    if old is not None:
        accounts.close_session(old.key)  # rotated: a planted cookie never becomes a session
    token, _session = accounts.open_session(account, client_of(request), request.headers.get("User-Agent", ""))
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", max_age=30 * 86400)
    response.del_cookie(FORM_COOKIE, path="/")
    return response


async def login(request: web.Request) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    data = await form(request)
    name = data.get("name", "").strip()
    keys = (f"client:{client_of(request)}", f"account:{name.casefold()}")
    wait = await asyncio.to_thread(accounts.locked_for, *keys)
    if wait > 0:
        response = render(request, "login.html", {"error": _("Too many failed attempts. Try again in %(minutes)s "
                                                             "minutes.") % {"minutes": int(wait // 60) + 1}},
                          status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    account = await asyncio.to_thread(accounts.check, name, data.get("password", ""))
    if account is None:
        await asyncio.to_thread(accounts.failed, *keys)
        log.warning("failed dashboard login for %r from %s", name[:40], client_of(request))
        try:  # the parents see it among the risk events ("failed dashboard logins from Sam's tablet")
            await request.app[CONTROL].call("login-failed", client=client_of(request))
        except GuardianError:
            pass
        return render(request, "login.html", {"error": _("Wrong name or password.")}, status=401)
    await asyncio.to_thread(accounts.audit, account.name, "login", "", client_of(request))
    raise open_session(request, account, "/" if first_run(request.app)["step"] == "done" else "/welcome")


async def setup_page(request: web.Request) -> web.StreamResponse:
    if request.app[ACCOUNTS].count() > 0:
        raise web.HTTPSeeOther("/login")
    return render(request, "setup.html", {"error": "", "code": bool(request.app[PROVISION].setup_code_hash)})


async def setup(request: web.Request) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    data = await form(request)
    code_hash = request.app[PROVISION].setup_code_hash
    page = {"code": bool(code_hash)}
    if code_hash:  # the code printed on the box: whoever creates the first account holds the box
        key = f"client:{client_of(request)}"
        wait = await asyncio.to_thread(accounts.locked_for, key)
        if wait > 0:
            response = render(request, "setup.html", {**page, "error": _(
                "Too many failed attempts. Try again in %(minutes)s minutes.") % {"minutes": int(wait // 60) + 1}},
                status=429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        if not await asyncio.to_thread(verify_setup_code, code_hash, data.get("code", "")):
            await asyncio.to_thread(accounts.failed, key)
            return render(request, "setup.html", {**page, "error": _("Wrong setup code.")}, status=403)
    if data.get("password", "") != data.get("again", ""):
        return render(request, "setup.html", {**page, "error": _("The two passwords differ.")}, status=400)
    try:
        account = await asyncio.to_thread(accounts.create, data.get("name", ""), data.get("password", ""),
                                          request["lang"], first=True)
    except WeakPassword as exc:
        return render(request, "setup.html", {**page, "error": _(str(exc))}, status=400)
    except GuardianError as exc:
        if accounts.count():
            raise web.HTTPSeeOther("/login") from None
        return render(request, "setup.html", {**page, "error": str(exc)}, status=400)
    await asyncio.to_thread(accounts.audit, account.name, "account created", account.name, "first run")
    save_first_run(request.app, {"step": "children", "children": []})
    raise open_session(request, account, "/welcome")


async def logout(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    request.app[ACCOUNTS].close_session(session.key)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


# --- home -----------------------------------------------------------------------------------------


def profile_cards(state: dict[str, Any], online: list[dict[str, Any]], zone: ZoneInfo) -> list[dict[str, Any]]:
    now = state["now"]
    by_device = {c["device"] for c in online if c["device"]}
    cards = []
    for p in state["profiles"]:
        if p["paused"]:
            until = p["paused_until"]
            status = ("paused", _("Paused until %(time)s") % {"time": when(until, zone, now)}
                      if until is not None else _("Paused until resumed"))
        elif p["bonus_until"]:
            status = ("bonus", _("Bonus time until %(time)s") % {"time": when(p["bonus_until"], zone, now)})
        elif p["schedules_active"]:
            s = p["schedules_active"][0]
            status = ("schedule", _("%(name)s until %(time)s") % {"name": s["name"],
                                                                 "time": when(s["until"], zone, now)})
        else:
            status = ("allowed", _("Allowed"))
        cards.append({**p, "status": status[0], "status_text": status[1],
                      "online": [d for d in p["devices"] if d in by_device]})
    return cards


def hour_chart(rows: list[tuple[int, str, int]], start: float, zone: ZoneInfo) -> dict[str, Any]:
    """Bars per hour of today (allowed and blocked), as numbers the SVG template draws."""
    hours: list[dict[str, float]] = [{"hour": h, "allowed": 0, "blocked": 0} for h in range(24)]
    for hour, action, count in rows:
        index = datetime.fromtimestamp(hour, zone).hour
        if hour >= start and 0 <= index < 24:
            key = "blocked" if action == "blocked" else "allowed"
            hours[index][key] += count
    top = max([h["allowed"] + h["blocked"] for h in hours] + [1])
    for h in hours:
        h["a"] = round(100 * h["allowed"] / top, 1)
        h["b"] = round(100 * h["blocked"] / top, 1)
    return {"hours": hours, "top": top}


def week_charts(cards: list[dict[str, Any]], usage: dict[tuple[str, str, str], int], today: datetime,
                state: dict[str, Any]) -> None:
    """Per card with a budget: minutes per day this week for its first budget, against it."""
    days = [(today - timedelta(days=6 - i)).date() for i in range(7)]
    profiles = {p["name"]: p for p in state["household"]["profiles"]}
    for card in cards:
        budgets = profiles.get(card["name"], {}).get("budgets") or []
        if not budgets:
            card["week"] = None
            continue
        target, budget = budgets[0]["target"], int(budgets[0]["minutes"])
        minutes = [usage.get((d.isoformat(), card["name"], target), 0) for d in days]
        top = max([*minutes, budget, 1])
        card["week"] = {"target": target, "budget": budget, "line": round(100 - 100 * budget / top, 1),
                        "bars": [{"x": i * 34 + 2, "h": round(100 * m / top, 1), "minutes": m,
                                  "over": m > budget, "label": _(DAY_LABELS[d.weekday()][1])}
                                 for i, (d, m) in enumerate(zip(days, minutes, strict=True))]}


def category_chart(rows: list[tuple[str, int]], names: dict[str, str]) -> list[dict[str, Any]]:
    top = max([n for _c, n in rows] + [1])
    return [{"name": names.get(c, c) or _("other"), "count": n, "w": round(100 * n / top, 1)} for c, n in rows]


def weekly_grid(schedules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schedule windows as rectangles on a week grid (rows Mon..Sun, 0-24 h across):
    a window that ends at or before its start runs into the next day (equal: a whole day)."""
    from ..policy.schedule import DAYS, parse_clock

    rects = []
    for s in schedules:
        start, end = parse_clock(s["from"]), parse_clock(s["to"])
        for day in s["days"]:
            row = DAYS.index(day)
            pieces = [(row, start, end)] if end > start else [(row, start, 1440), ((row + 1) % 7, 0, end)]
            for r, a, b in pieces:
                if b > a:
                    rects.append({"row": r, "x": round(a / 6, 1), "w": round((b - a) / 6, 1), "name": s["name"],
                                  "all": s["block"] == "all"})
    return rects


async def home(request: web.Request) -> web.StreamResponse:
    state = await state_of(request)
    zone = ZoneInfo(state["zone"])
    history = request.app[HISTORY]
    now = state["now"]
    online, seen = await asyncio.gather(asyncio.to_thread(history.clients, now - ONLINE_SECONDS),
                                        asyncio.to_thread(history.clients, now - 86400))
    known_ips = {d.get("ip", "").split("/")[0] for d in state["household"]["devices"]}
    unknown = [c for c in seen if not c["device"] and c["ip"] not in known_ips]
    midnight = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    chart = hour_chart(await asyncio.to_thread(history.hourly, midnight - 3600), midnight, zone)
    cards = profile_cards(state, online, zone)
    today = datetime.fromtimestamp(now, zone)
    usage = await asyncio.to_thread(history.usage_days, (today - timedelta(days=6)).date().isoformat())
    week_charts(cards, usage, today, state)
    names = {c["id"]: c["name"] for c in state["categories"]}
    blocked = category_chart(await asyncio.to_thread(history.blocked_by_category, now - 86400), names)
    return render(request, "home.html", {"cards": cards, "unknown": unknown, "blocked": blocked,
                                         "first_run": first_run(request.app)["step"] != "done",
                                         "profiles": [p["name"] for p in state["profiles"]], "chart": chart,
                                         "state": state})


def _tomorrow_morning(now: float, zone: ZoneInfo) -> float:
    day = datetime.fromtimestamp(now, zone).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, 7, 0, tzinfo=zone).timestamp()


async def act_pause(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    target = data.get("target", "")
    length = data.get("for", "")
    seconds: float
    if length == "tomorrow":
        state = await state_of(request)
        seconds = _tomorrow_morning(state["now"], ZoneInfo(state["zone"])) - state["now"]
    elif length.isdigit() and 0 < int(length) <= 7 * 86400:
        seconds = int(length)
    else:
        raise Refused(400, _("Choose how long to pause."))
    await act(request, "pause", ("pause", target, f"{int(seconds) // 60} min"), target=target, **{"for": seconds})
    raise back(request)


async def act_resume(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    await act(request, "resume", ("resume", data.get("target", ""), ""), target=data.get("target", ""))
    raise back(request)


async def act_bonus(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    minutes = data.get("minutes", "")
    if minutes not in ("15", "30", "60"):
        raise Refused(400, _("Choose how much bonus time to give."))
    profile = data.get("profile", "")
    state = await state_of(request)
    current = next((p["bonus_until"] for p in state["profiles"] if p["name"] == profile), None) or state["now"]
    seconds = current - state["now"] + int(minutes) * 60  # a second +15 adds to the first
    await act(request, "bonus", ("bonus", profile, f"+{minutes} min"), profile=profile, **{"for": seconds})
    raise back(request)


# --- devices ------------------------------------------------------------------------------------


async def devices_page(request: web.Request) -> web.StreamResponse:
    state = await state_of(request)
    others, last_seen = await unassigned(request, state)
    now = state["now"]
    zone = ZoneInfo(state["zone"])
    household = state["household"]["devices"]
    rows = [{**d, "address": d.get("ip") or d.get("mac") or d.get("hostname") or "",
             "seen": when(last_seen[d["ip"].split("/")[0]], zone, now) if d.get("ip", "").split("/")[0] in last_seen
             else ""} for d in household]
    return render(request, "devices.html", {"devices": rows, "others": others,
                                            "profiles": [p["name"] for p in state["profiles"]], "state": state})


async def unassigned(request: web.Request, state: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The devices seen (discovery's registry, then the query log's last week) that are
    not the household's yet; and when each address last asked."""
    history = request.app[HISTORY]
    now = state["now"]
    seen, registry = await asyncio.gather(asyncio.to_thread(history.clients, now - 7 * 86400),
                                          request.app[CONTROL].data("devices"))
    last_seen = {c["ip"]: c["last_seen"] for c in seen}
    zone = ZoneInfo(state["zone"])
    household = state["household"]["devices"]
    known_ips = {d.get("ip", "").split("/")[0] for d in household}
    known_macs = {d.get("mac") for d in household if d.get("mac")}
    others = []
    for r in registry or []:
        if r["mac"] not in known_macs and not (set(r["ips"]) & known_ips):
            others.append({**r, "ip": (r["ips"] or [""])[0], "seen": when(r["last_seen"], zone, now)})
    listed = {o["ip"] for o in others}
    for c in seen:
        if not c["device"] and c["ip"] not in known_ips and c["ip"] not in listed:
            others.append({"name": "", "hostname": None, "vendor": "", "mac": c["mac"] or "", "ip": c["ip"],
                           "random_mac": False, "seen": when(c["last_seen"], zone, now)})
    return others, last_seen


async def device_assign(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    name = data.get("name", "").strip()
    fields = {k: data[k] for k in ("was", "profile", "ip", "mac") if data.get(k)}
    await act(request, "device-set", ("device", name, f"profile {data.get('profile', '')}"), name=name, **fields)
    if fields.get("was") and fields["was"] != name:
        from .asking import ASKS  # the children's requests follow the device's new name

        await asyncio.to_thread(request.app[ASKS].rename, "device", fields["was"], name)
    raise back(request, "/devices")


async def device_forget(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    await act(request, "device-remove", ("forget device", data.get("name", ""), ""), name=data.get("name", ""))
    raise back(request, "/devices")


# --- activity ---------------------------------------------------------------------------------------


def activity_filter(request: web.Request) -> Filter:
    q = request.query
    before = q.get("before", "")
    return Filter(device=q.get("device", "")[:100], domain=q.get("domain", "")[:253],
                  decision=q.get("decision", "") if q.get("decision") in ("allowed", "blocked", "rewritten") else "",
                  before=int(before) if before.isdigit() else None)


async def activity_page(request: web.Request) -> web.StreamResponse:
    state = await state_of(request)
    zone = ZoneInfo(state["zone"])
    f = activity_filter(request)
    rows = await asyncio.to_thread(request.app[HISTORY].log, f)
    now = state["now"]
    for row in rows:
        row["when"] = when(row["time"], zone, now)
        row["why"] = reason_words(row)
        # What "allow" offers: the rule that matched (it covers the service), then the name asked.
        choices = [row["rule"]] if row.get("rule") and "." in (row["rule"] or "") else []
        if row["domain"] not in choices:
            choices.append(row["domain"])
        row["choices"] = choices
    ef = event_filter(request, state)
    events, choices = await asyncio.gather(asyncio.to_thread(request.app[HISTORY].events, 20, **ef),
                                           asyncio.to_thread(request.app[HISTORY].event_choices))
    for e in events:
        e["when"] = when(e["last"], zone, now)
    more = rows[-1]["id"] if len(rows) >= 50 else None
    check = await explain(request, state)
    return render(request, "activity.html", {"rows": rows, "filter": f, "more": more, "events": events,
                                             "profiles": [p["name"] for p in state["profiles"]], "check": check,
                                             "ef": ef, "event_choices": choices, "severities": SEVERITIES,
                                             "threat_names": {k: _(v) for k, v in THREAT_NAMES.items()},
                                             "guides": guide_ids()})


def guide_ids() -> set[str]:
    from .guides import available

    return available()


# --- the guided first run ---------------------------------------------------------------------------
# After the first account: one profile per child from a template, then the devices seen,
# each named and given to a child. Every step can be skipped; where the parents are is
# kept in web/first-run (JSON) so that signing in again resumes there. No file: done
# (a dashboard that had accounts before this flow existed never shows it).

FIRST_RUN_STEPS = ("children", "devices", "done")


def _first_run_path(app: web.Application) -> Path:
    return db_path(app[SETTINGS].data_dir).parent / "first-run"


def first_run(app: web.Application) -> dict[str, Any]:
    try:
        data = json.loads(_first_run_path(app).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"step": "done", "children": []}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or data.get("step") not in FIRST_RUN_STEPS:
        data = {"step": "children", "children": []}
    children = data.get("children")
    data["children"] = [str(c) for c in children] if isinstance(children, list) else []
    return data


def save_first_run(app: web.Application, data: dict[str, Any]) -> None:
    path = _first_run_path(app)
    if data["step"] == "done":
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


async def welcome_page(request: web.Request) -> web.StreamResponse:
    progress = first_run(request.app)
    if progress["step"] == "done":
        raise web.HTTPSeeOther("/")
    state = await state_of(request)
    known = {p["name"] for p in state["profiles"]}
    children = [c for c in progress["children"] if c in known]
    context: dict[str, Any] = {"step": progress["step"], "children": children, "state": state,
                               "profiles": children or [p["name"] for p in state["profiles"]]}
    if progress["step"] == "devices":
        others, _last = await unassigned(request, state)
        context["others"] = others
        context["assigned"] = state["household"]["devices"]
    return render(request, "welcome.html", context)


async def welcome_child(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    name, template = data.get("name", "").strip(), data.get("template", "")
    if template not in {t["id"] for t in (await state_of(request))["templates"]}:
        raise Refused(400, _("Choose what the profile starts from."))
    await act(request, "profile-add", ("profile added", name, template), name=name, template=template)
    progress = first_run(request.app)
    if progress["step"] != "done":
        progress["children"] = [*progress["children"], name]
        save_first_run(request.app, progress)
    raise web.HTTPSeeOther("/welcome")


async def welcome_step(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    data = await form(request)
    step = data.get("step", "")
    if step not in FIRST_RUN_STEPS[1:]:
        raise Refused(400, _("No such step."))
    progress = first_run(request.app)
    if progress["step"] != "done":
        save_first_run(request.app, {**progress, "step": step})
    if step == "done":
        await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "first run finished", "", "")
    raise web.HTTPSeeOther("/welcome" if step != "done" else "/")


# --- guides for parents --------------------------------------------------------------------------


async def guides_page(request: web.Request) -> web.StreamResponse:
    from . import guides

    lang = request["lang"]
    items = [{"id": gid, "title": guides.text(g, lang)["title"]}
             for gid in guides.all_ids() if (found := guides.find(gid)) is not None for g in (found[1],)]
    return render(request, "guides.html", {"guides": sorted(items, key=lambda g: g["title"])})


async def guide_page(request: web.Request) -> web.StreamResponse:
    """One threat's guide in the reader's language (rules/guides/<threat>.yaml)."""
    from . import guides

    found = guides.find(request.match_info["threat"])
    if found is None:
        raise web.HTTPNotFound(reason=_("There is no guide on that."))
    gid, guide = found
    return render(request, "guide.html", {"gid": gid, "g": guides.text(guide, request["lang"])})


THREAT_NAMES = {
    "pornography": N_("pornography"), "child-abuse-material": N_("child sexual abuse material"),
    "violence": N_("violence"), "hate-racism": N_("hate and racism"), "self-harm": N_("self-harm"),
    "drugs": N_("drugs"), "weapons": N_("weapons"), "gambling": N_("gambling"), "fraud": N_("fraud"),
    "phishing": N_("phishing"), "malware": N_("malware"), "spam": N_("spam"), "cyberbullying": N_("cyberbullying"),
    "grooming": N_("grooming"), "sexual-solicitation": N_("sexual solicitation"),
    "cyberstalking": N_("cyberstalking"), "private-data-disclosure": N_("private information"),
    "gaming-addiction": N_("gaming addiction"),
}
SEVERITIES = (("critical", N_("critical")), ("high", N_("high")), ("medium", N_("medium")), ("low", N_("low")),
              ("info", N_("info")))


def event_filter(request: web.Request, state: dict[str, Any]) -> dict[str, str]:
    """The risk events' filters from the query (child, device, threat, severity); an
    unknown child or severity is ignored, device and threat are matched exactly."""
    q = request.query
    profile = q.get("event_profile", "")
    severity = q.get("event_severity", "")
    return {"profile": profile if profile in {p["name"] for p in state["profiles"]} else "",
            "device": q.get("event_device", "")[:100], "threat": q.get("event_threat", "")[:64],
            "severity": severity if severity in dict(SEVERITIES) else ""}


async def explain(request: web.Request, state: dict[str, Any]) -> dict[str, Any] | None:
    """"Would this site be blocked for this profile, now?" (the daemon's decision, run now)."""
    name = request.query.get("check", "").strip()[:253]
    profile = request.query.get("profile", "")
    if not name or profile not in {p["name"] for p in state["profiles"]}:
        return None
    try:
        data = await request.app[CONTROL].data("explain", name=name, profile=profile)
    except ActionFailed as exc:
        return {"name": name, "profile": profile, "error": str(exc)}
    d = data["decision"]
    words = reason_words({**d, "list": d.get("list_name")}) if d["reason"] else _(REASONS[""])
    return {"name": name, "profile": profile, "blocked": d["action"] == "block", "why": words,
            "rule": d.get("rule") or "", "error": ""}


async def events_seen(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    data = await form(request)
    which = data.get("id", "")
    event_id = int(which) if which.isdigit() else None
    if which != "all" and event_id is None:
        raise Refused(400, _("No such event."))
    try:  # the store's writer writes it: this process may only read guardian.db
        await request.app[CONTROL].call("events-seen", actor=session.account.name,
                                        id="all" if event_id is None else event_id)
    except ActionFailed as exc:
        raise Refused(400 if "no risk event" in str(exc) else 503,
                      _("No such event.") if "no risk event" in str(exc) else _("Not saved:") + f" {exc}") from None
    except DaemonDown:
        raise Refused(503, _("The filtering service is not running. Try again in a minute.")) from None
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "events seen", which, "")
    raise back(request, "/activity")


def week_bounds(now: float, zone: ZoneInfo, weeks_back: int = 0) -> tuple[datetime, float, float]:
    """This week's Monday (local) and the instants it starts and ends."""
    today = datetime.fromtimestamp(now, zone).date() - timedelta(days=7 * weeks_back)
    monday = today - timedelta(days=today.weekday())
    start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    end_day = monday + timedelta(days=7)
    return start, start.timestamp(), datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone).timestamp()


async def digest(request: web.Request, state: dict[str, Any]) -> dict[str, Any]:
    """The weekly digest per child: queries and blocked, top categories, risk events, and
    minutes per day against each budget (also GET /api/v1/week for a telco's app)."""
    zone = ZoneInfo(state["zone"])
    back_weeks = request.query.get("back", "0")
    start, since, until = week_bounds(state["now"], zone, int(back_weeks) if back_weeks.isdigit() else 0)
    history = request.app[HISTORY]
    counts, usage, events = await asyncio.gather(
        asyncio.to_thread(history.week, since, until),
        asyncio.to_thread(history.usage_days, start.date().isoformat()),
        asyncio.to_thread(history.events_between, since, until))
    names = {c["id"]: c["name"] for c in state["categories"]}
    days = [(start + timedelta(days=i)).date() for i in range(7)]
    children = []
    for p in state["household"]["profiles"]:
        c = counts.get(p["name"], {"queries": 0, "blocked": 0, "categories": {}})
        top = sorted(c["categories"].items(), key=lambda kv: -kv[1])[:5]
        budgets = {b["target"]: b["minutes"] for b in p["budgets"]}
        targets = sorted({t for (d, prof, t) in usage if prof == p["name"] and d <= days[-1].isoformat()}
                         | set(budgets))
        rows = [{"target": t, "budget": budgets.get(t),
                 "per_day": [usage.get((d.isoformat(), p["name"], t), 0) for d in days]} for t in targets]
        for r in rows:
            r["over"] = sum(1 for m in r["per_day"] if r["budget"] is not None and m >= r["budget"])
        children.append({"profile": p["name"], "queries": c["queries"], "blocked": c["blocked"],
                         "top_categories": [{"category": k, "name": names.get(k, k), "blocked": n} for k, n in top],
                         "usage": rows,
                         "events": [e for e in events if e["profile"] == p["name"]]})
    return {"from": days[0].isoformat(), "to": days[-1].isoformat(), "days": [d.isoformat() for d in days],
            "profiles": children}


async def week_page(request: web.Request) -> web.StreamResponse:
    state = await state_of(request)
    week = await digest(request, state)
    zone = ZoneInfo(state["zone"])
    for child in week["profiles"]:
        for e in child["events"]:
            e["when"] = when(e["last"], zone, state["now"])
    labels = [_(DAY_LABELS[datetime.fromisoformat(d).weekday()][1]) for d in week["days"]]
    return render(request, "week.html", {"week": week, "labels": labels})


async def activity_allow(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    domain, profile, length = data.get("domain", ""), data.get("profile", ""), data.get("for", "")
    extra: dict[str, Any] = {}
    if length == "3600":
        extra["for"] = 3600
    elif length != "always":
        raise Refused(400, _("Choose for how long."))
    await act(request, "allow", ("allow", domain, f"{profile} {'1 h' if extra else 'always'}"), domain=domain,
              profile=profile, **extra)
    raise back(request, "/activity")


# --- profiles --------------------------------------------------------------------------------------


def find_profile(state: dict[str, Any], name: str) -> dict[str, Any]:
    """The profile by its name, or by its stable id (a link kept from before a rename)."""
    for p in state["household"]["profiles"]:
        if p["name"] == name:
            return dict(p)
    for p in state["household"]["profiles"]:
        if p.get("id") == name:
            return dict(p)
    raise web.HTTPNotFound(reason=_("No such profile."))


async def profile_rename(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    state = await state_of(request)
    was = find_profile(state, request.match_info["name"])["name"]
    name = data.get("name", "").strip()
    await act(request, "profile-rename", ("profile renamed", was, name), profile=was, name=name,
              revision=data.get("revision") or None)
    from .asking import ASKS  # the children's requests follow: an open one can still be approved

    await asyncio.to_thread(request.app[ASKS].rename, "profile", was, name)
    raise web.HTTPSeeOther(f"/profiles/{quote(name, safe='')}")


async def profile_page(request: web.Request) -> web.StreamResponse:
    state = await state_of(request)
    profile = find_profile(state, request.match_info["name"])
    usage: list[dict[str, Any]] = next((p["usage"] for p in state["profiles"] if p["name"] == profile["name"]), [])
    budgets = {b["target"]: b["minutes"] for b in profile["budgets"]}
    return render(request, "profile.html", {"p": profile, "state": state, "usage": usage, "budgets": budgets,
                                            "guide_of": category_guides(state),
                                            "grid": weekly_grid(profile["schedules"]),
                                            "days": [(d, _(label)) for d, label in DAY_LABELS]})


def category_guides(state: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per category: the guides on the threats it protects against, (threat, its name)."""
    from . import guides

    out: dict[str, list[tuple[str, str]]] = {}
    for c in state["categories"]:
        seen: set[str] = set()
        for threat in c.get("threats") or ():
            found = guides.find(threat)
            if found is not None and found[0] not in seen:
                seen.add(found[0])
                out.setdefault(c["id"], []).append((found[0], _(THREAT_NAMES.get(found[0], found[0]))))
    return out


async def profile_add(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    name, template = data.get("name", "").strip(), data.get("template", "")
    await act(request, "profile-add", ("profile added", name, template), name=name, template=template)
    raise web.HTTPSeeOther("/")


async def profile_remove(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    await act(request, "profile-remove", ("profile removed", name, ""), name=name)
    raise web.HTTPSeeOther("/")


async def profile_filters(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = await request.post()
    state = await state_of(request)
    known = {c["id"] for c in state["categories"]}
    categories = [str(v) for v in data.getall("category", []) if str(v) in known]
    if not categories and find_profile(state, name).get("categories"):
        # Filtering off for a child: the password again (a child at a parent's unlocked phone).
        await reauthenticate(request, str(data.get("current", "")))
    fields = {"categories": categories, "safe_search": data.get("safe_search") == "on",
              "bypass_protection": data.get("bypass_protection") == "on",
              "youtube": str(data.get("youtube", "off"))}
    await act(request, "profile-set", ("filters", name, ", ".join(categories) or "none"), profile=name,
              set=fields, revision=str(data.get("revision", "")) or None)
    raise back(request, f"/profiles/{name}")


async def profile_list(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = await form(request)
    which, op, domain = data.get("list", ""), data.get("op", ""), data.get("domain", "")
    await act(request, "profile-list", (f"{which} list {op}", name, domain), profile=name, list=which, op=op,
              domain=domain)
    raise back(request, f"/profiles/{name}")


async def profile_schedule(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = await request.post()
    if data.get("op") == "remove":
        index = str(data.get("index", ""))
        if not index.isdigit():
            raise Refused(400, _("No such schedule."))
        await act(request, "schedule-remove", ("schedule removed", name, index), profile=name, index=int(index))
    else:
        days = [str(d) for d in data.getall("day", [])]
        if not days:
            raise Refused(400, _("Choose at least one day."))
        start, end = str(data.get("from", "")), str(data.get("to", ""))
        await act(request, "schedule-add", ("schedule added", name, f"{' '.join(days)} {start}-{end}"),
                  profile=name, days=days, name=str(data.get("label", "")), **{"from": start, "to": end},
                  block="all")
    raise back(request, f"/profiles/{name}")


async def profile_budget(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = await form(request)
    minutes = data.get("minutes", "").strip()
    if minutes and not minutes.isdigit():
        raise Refused(400, _("Minutes must be a whole number."))
    target = data.get("target", "")
    await act(request, "budget-set", ("budget", name, f"{target} {minutes or 0} min"), profile=name, target=target,
              minutes=int(minutes) if minutes else None)
    raise back(request, f"/profiles/{name}")


# --- settings ----------------------------------------------------------------------------------------


async def settings_page(request: web.Request, new_token: str = "", notice: str = "") -> web.StreamResponse:
    session = session_of(request)
    accounts = request.app[ACCOUNTS]
    zone = request.app[SETTINGS].zone
    now = time.time()
    audit = await asyncio.to_thread(audit_log, request.app, 100)
    for a in audit:
        a["when"] = when(a["time"], zone, now)
    sessions = [{"key": s.key, "client": s.client, "agent": s.agent, "seen": when(s.last_seen, zone, now),
                 "current": s.key == session.key} for s in accounts.sessions(session.account.id)]
    tokens = [{**t, "seen": when(t["last_used"], zone, now) if t["last_used"] else "-"}
              for t in accounts.tokens(session.account.id)]
    try:
        health = str((await request.app[CONTROL].call("status")).get("message", ""))
    except GuardianError as exc:
        health = str(exc)
    try:
        service = await request.app[CONTROL].data("settings")
    except GuardianError:
        service = None
    if service is not None:
        for item in service["lists"]:
            item["updated"] = when(item["last_update"], zone, now) if item["last_update"] else ""
            item["tried"] = when(item["last_attempt"], zone, now) if item["last_attempt"] else ""
        service["privacy_words"] = _(PRIVACY_WORDS.get(service["privacy"], service["privacy"]))
        service["privacy_choices"] = [(mode, _(words)) for mode, words in PRIVACY_WORDS.items()]
    return render(request, "settings.html", {"accounts": accounts.accounts(), "audit": audit, "health": health,
                                             "service": service,
                                             "sessions": sessions, "tokens": tokens, "new_token": new_token,
                                             "notice": notice})


async def service_settings(request: web.Request) -> web.StreamResponse:
    """The filtering service's settings a parent may change (choices.yaml on the box):
    only what differs from now is sent; the resolvers and the privacy mode ask for the
    parent's password again (a child at an unlocked phone must not turn history off)."""
    data = await form(request)
    try:
        now = await request.app[CONTROL].data("settings")
    except DaemonDown:
        raise Refused(503, _("The filtering service is not running. Try again in a minute.")) from None
    changes: dict[str, Any] = {}
    upstreams = [line.strip() for line in data.get("upstreams", "").splitlines() if line.strip()]
    if "upstreams" in data and upstreams != now["upstreams"]:
        changes["upstreams"] = upstreams
    if data.get("privacy") and data["privacy"] != now["privacy"]:
        changes["privacy"] = data["privacy"]
    for key in ("query_days", "event_days"):
        text = data.get(key, "").strip()
        if not text:
            continue
        if not text.isdigit():
            raise Refused(400, _("Give a number of days."))
        if int(text) != now["retention"][key]:
            changes[key] = int(text)
    if data.get("timezone", "").strip() and data["timezone"].strip() != now["zone"]:
        changes["timezone"] = data["timezone"].strip()
    if not changes:
        raise web.HTTPSeeOther("/settings#service")
    provision = request.app[PROVISION]
    for key in changes:
        if choices.LOCKS[key] and provision.is_locked(choices.LOCKS[key]):
            raise Managed(provision.managed_by, choices.LOCKS[key])
    if "upstreams" in changes or "privacy" in changes:
        await reauthenticate(request, data.get("current", ""))
    detail = "; ".join(f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in changes.items())
    await act(request, "settings-set", ("settings changed", ", ".join(changes), detail), **changes)
    raise web.HTTPSeeOther("/settings#service")


async def household_download(request: web.Request) -> web.StreamResponse:
    """Settings' backup: the household (profiles, devices, schedules, budgets, lists) as
    the YAML ``guardian export`` writes, which restore and ``guardian import`` read back."""
    session = session_of(request)
    try:
        text = await request.app[CONTROL].data("export")
    except DaemonDown:
        raise Refused(503, _("The filtering service is not running. Try again in a minute.")) from None
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "household downloaded", "", "")
    day = datetime.now(request.app[SETTINGS].zone).strftime("%Y-%m-%d")
    return web.Response(text=str(text), content_type="application/yaml", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="household-{day}.yaml"'})


async def household_upload(request: web.Request) -> web.StreamResponse:
    """Settings' restore: a household file checked as the configuration is (FILE:LINE),
    nothing changed on any mistake; asks for the parent's password again."""
    data = await request.post()
    await reauthenticate(request, str(data.get("current", "")))
    upload = data.get("file")
    if not isinstance(upload, web.FileField):
        raise Refused(400, _("Choose a household file to restore."))
    filename = re.sub(r"[^\w.\- ]", "_", upload.filename or "household.yaml")[:80]
    try:
        text = upload.file.read(1 << 20).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, _("That file is not a household file (not UTF-8 text).")) from None
    await act(request, "household-restore", ("household restored", filename, ""), text=text, filename=filename)
    raise web.HTTPSeeOther("/")


async def refresh_lists(request: web.Request) -> web.StreamResponse:
    """Download the subscribed lists now (the daemon does it, as its own user)."""
    await act(request, "refresh-lists", ("lists refreshed", "", ""))
    return await settings_page(request, notice=_("The lists were checked now: each one's last update and "
                                                 "problem are in the table."))


PRIVACY_WORDS = {"full": N_("full: every query is kept for the query log"),
                 "risks-only": N_("risks only: blocked queries and risk events are kept, the rest only counted"),
                 "anonymous": N_("anonymous: counts only, no history of who asked what")}


async def add_token(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    session = await reauthenticate(request, data.get("current", ""))
    accounts = request.app[ACCOUNTS]
    token = await asyncio.to_thread(accounts.create_token, session.account, data.get("name", ""))
    await asyncio.to_thread(accounts.audit, session.account.name, "API token created", data.get("name", ""), "")
    return await settings_page(request, new_token=token)  # shown once, never stored


async def revoke_token(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    data = await form(request)
    request.app[ACCOUNTS].revoke_token(data.get("key", ""), session.account.id)
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "API token revoked", "", "")
    raise web.HTTPSeeOther("/settings")


def audit_log(app: web.Application, limit: int) -> list[dict[str, Any]]:
    """Who did what, newest first: this dashboard's own log (parents' changes in words,
    logins, accounts, tokens) and the daemon's for the changes made from the command line."""
    from .. import audit

    cli = [a for a in audit.read(app[SETTINGS].data_dir, limit) if a["account"].startswith("cli ")]
    return sorted(app[ACCOUNTS].audit_log(limit) + cli, key=lambda a: -a["time"])[:limit]


async def reauthenticate(request: web.Request, password: str) -> Session:
    session = session_of(request)
    accounts = request.app[ACCOUNTS]
    keys = (f"client:{client_of(request)}", f"account:{session.account.name.casefold()}")
    if await asyncio.to_thread(accounts.locked_for, *keys) > 0:
        raise Refused(429, _("Too many failed attempts. Try again later."))
    if await asyncio.to_thread(accounts.check, session.account.name, password) is None:
        await asyncio.to_thread(accounts.failed, *keys)
        raise Refused(403, _("Your current password is wrong."))
    return session


async def add_account(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    session = await reauthenticate(request, data.get("current", ""))
    accounts = request.app[ACCOUNTS]
    try:
        created = await asyncio.to_thread(accounts.create, data.get("name", ""), data.get("password", ""))
    except WeakPassword as exc:
        raise Refused(400, _(str(exc))) from None
    except GuardianError as exc:
        raise Refused(400, str(exc)) from None
    await asyncio.to_thread(accounts.audit, session.account.name, "account created", created.name, "")
    raise web.HTTPSeeOther("/settings")


async def remove_account(request: web.Request) -> web.StreamResponse:
    """Remove another parent's account (asks for your password; its sessions and tokens end)."""
    data = await form(request)
    session = await reauthenticate(request, data.get("current", ""))
    accounts = request.app[ACCOUNTS]
    target = accounts.find(data.get("name", ""))
    if target is None or target.id == session.account.id:
        raise Refused(400, _("Choose another parent's account."))
    try:
        await asyncio.to_thread(accounts.remove, target.id)
    except GuardianError as exc:
        raise Refused(400, str(exc)) from None
    await asyncio.to_thread(accounts.audit, session.account.name, "account removed", target.name, "")
    raise web.HTTPSeeOther("/settings")


async def change_password(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    session = await reauthenticate(request, data.get("current", ""))
    accounts = request.app[ACCOUNTS]
    try:
        await asyncio.to_thread(accounts.set_password, session.account.id, data.get("password", ""))
    except WeakPassword as exc:
        raise Refused(400, _(str(exc))) from None
    await asyncio.to_thread(accounts.audit, session.account.name, "password changed", session.account.name, "")
    request["session"] = None  # every session of the account ended; this browser gets a new one
    raise open_session(request, session.account, "/settings")


async def revoke_session(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    data = await form(request)
    request.app[ACCOUNTS].close_session(data.get("key", ""), session.account.id)
    await asyncio.to_thread(request.app[ACCOUNTS].audit, session.account.name, "session revoked", "", "")
    raise web.HTTPSeeOther("/settings" if data.get("key") != session.key else "/login")


async def set_language(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    data = await form(request)
    lang = data.get("language", "")
    if lang not in i18n.LANGUAGES:
        raise Refused(400, _("Unknown language."))
    request.app[ACCOUNTS].set_language(session.account.id, lang)
    raise web.HTTPSeeOther("/settings")


# --- the process --------------------------------------------------------------------------------------


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    app = make_app(settings)
    watchdog: sdnotify.Watchdog | None = None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        for host, port in settings.dashboard.listen:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            log.info("dashboard on http://%s:%d/", f"[{host}]" if ":" in host else host, port)
        from . import child  # the block page on dashboard.blockpage_listen (guardian/web/child.py)

        child_runner = await child.start(settings)
        watchdog = sdnotify.ready(asyncio.get_running_loop())  # guardian-web.service is Type=notify
        await stop.wait()
    finally:
        sdnotify.stopping(watchdog)
        if "child_runner" in locals() and child_runner is not None:
            await child_runner.cleanup()
        await runner.cleanup()
