"""The child's side, served by the dashboard's process on ``dashboard.blockpage_listen``
(port 80 of the box).

Guardian answers a blocked name with the box's own address when the profile's
``block_mode`` is ``blockpage``, so the child's browser comes here with the blocked
site's name in its Host header:

- **the block page** (any Host that is not one of the box's own names): the site, the
  reason in plain words (the rule pack's description of the category, "Bedtime until
  07:00", "Games: 60 of 60 minutes used today", "Paused by a parent until 18:30"), the
  device and profile, category-aware words (helplines first for self-harm; "tell a
  trusted adult" for chat and grooming; "may steal passwords" for phishing and
  malware), and an **Ask a parent** form with a short note;
- **the answer page** (``/_guardian/asked/<id>``): the request's state, checked again
  every few seconds (a meta refresh: no script), and once approved the site again;
- **the child's own page** (``http://guardian.lan/``, the box's own names): what was
  blocked in the last hour and why, time left per budget, when the current window
  ends, the device's requests and their answers, and "Parent? Sign in".

The pages never trust the request for the decision: they ask the DNS process
(``explain`` over the control socket) what it decides now for the asking address, so
they work in every privacy mode. A request needs the nonce of a block page shown to
that address for that name within the hour, so another website cannot make one.

Responses carry no cookie (they would belong to the blocked site's origin),
``Cache-Control: no-store``, ``Connection: close``, ``X-Robots-Tag: noindex`` and the
dashboard's strict headers. Nothing listens on 443: a blocked HTTPS site fails fast in
the browser, and no certificate is ever presented.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from ..config import Settings
from ..errors import ConfigError, GuardianError
from ..provision import Provision, load_for
from . import i18n
from .app import PROVISION, brand_css, brand_logo
from .asks import NOTE_MAX, PER_HOUR, AlreadyAsked, Ask, Asks, BadNote, TooMany
from .client import Control
from .history import Filter, History

log = logging.getLogger("guardian.web.child")

ROOT = Path(__file__).resolve().parents[2] / "web"
PREFIX = "/_guardian/"  # the block page's own paths, under any blocked site's name
STATIC = PREFIX + "static/"
HOST_RE = re.compile(r"^[a-z0-9_.-]{1,253}$")
NONCE_SECONDS = 3600  # a block page's Ask form works for an hour
RECENT_SECONDS = 3600  # "blocked in the last hour"
POLL_SECONDS = 5  # the answer page looks again this often
BLOCK_TTL = 10  # seconds blocked answers are cached (dns/steps/policy.py BLOCK_TTL)
# Categories whose page puts the helplines first and says nothing that could shame.
HELP_FIRST = {"self-harm", "suicide", "eating-disorders"}
TELL_ADULT = {"chat", "grooming", "dating", "social", "anonymous-chat"}
THREATS = {"phishing", "malware", "scam", "cryptojacking"}
# Threats (rule packs' ids) whose page says "tell a trusted adult".
ADULT_THREATS = {"grooming", "sexual-solicitation", "cyberbullying", "cyberstalking"}
# International help sites on the self-harm pack's allow list (rules/lists/self-harm.allow.txt):
# reachable whatever else is blocked; the provisioned national helpline comes before them.
HELP_SITES = ("findahelpline.com", "childhelplineinternational.org", "befrienders.org")


def N_(message: str) -> str:  # noqa: N802 - marked for translation, translated where shown
    return message


CONTROL: web.AppKey[Control] = web.AppKey("child_control", Control)
ENV: web.AppKey[jinja2.Environment] = web.AppKey("child_env", jinja2.Environment)
CATALOGS: web.AppKey[dict[str, Any]] = web.AppKey("child_catalogs", dict)
OWN_NAMES: web.AppKey[set[str]] = web.AppKey("child_own_names", set)
SETTINGS: web.AppKey[Settings] = web.AppKey("child_settings", Settings)
ASKS: web.AppKey[Asks] = web.AppKey("child_asks", Asks)
HISTORY: web.AppKey[History] = web.AppKey("child_history", History)
SECRET: web.AppKey[bytes] = web.AppKey("child_secret", bytes)
SEEN: web.AppKey[dict[str, collections.deque[tuple[float, str, str]]]] = web.AppKey("child_seen", dict)

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


class Refused(GuardianError):
    """A request the child's side says no to, with a status and words for a child."""

    def __init__(self, status: int, message: str, ask: Ask | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.ask = ask


# --- who asks, for which name -------------------------------------------------------------------


def host_of(request: web.Request) -> str:
    """The Host header's name, lowercase and without port; '' when it is no name."""
    raw = (request.headers.get("Host") or "").strip().lower()
    if raw.startswith("["):  # an IPv6 literal: the box's own address, or no name at all
        literal = raw[1:raw.find("]")] if "]" in raw else ""
        try:
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            return ""
    name = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
    name = name.rstrip(".")
    return name if HOST_RE.match(name) and ".." not in name and not name.startswith(".") else ""


def own_names(settings: Settings) -> set[str]:
    """The box's own names and addresses: the child's own page, never a block page."""
    names = {"localhost", *settings.dashboard.hosts}
    if settings.dns is not None:
        names |= set(settings.dns.local_names) | set(settings.dns.local_addresses)
    for host, _port in (*settings.dashboard.listen, *settings.dashboard.blockpage_listen):
        if host not in ("0.0.0.0", "::", ""):
            names.add(host)
    return {n.lower() for n in names}


def is_own(request: web.Request, name: str) -> bool:
    if name in request.app[OWN_NAMES]:
        return True
    try:  # an address literal: the box's own when the connection arrived on it
        literal = ipaddress.ip_address(name)
    except ValueError:
        return False
    sock: Any = request.transport.get_extra_info("sockname") if request.transport else None
    return bool(sock) and ipaddress.ip_address(str(sock[0]).split("%")[0]) == literal


def make_nonce(secret: bytes, client: str, name: str, now: float) -> str:
    issued = str(int(now))
    mac = hmac.new(secret, f"{issued}|{client}|{name}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{issued}.{mac}"


def nonce_ok(secret: bytes, nonce: str, client: str, name: str, now: float) -> bool:
    """The nonce of a block page shown to ``client`` for ``name`` within the hour."""
    issued, _, _mac = nonce.partition(".")
    if not issued.isdigit() or not 0 <= now - int(issued) <= NONCE_SECONDS:
        return False
    return hmac.compare_digest(make_nonce(secret, client, name, int(issued)), nonce)


def safe_back(path: str) -> str:
    """A path on the same site to go back to ('/' unless it is one)."""
    if not path.startswith("/") or path.startswith(("//", "/\\")) or len(path) > 1000 or any(
            ord(c) < 33 or c == "\\" for c in path):
        return "/"
    return path


def asker_of(request: web.Request, device: str | None, privacy: str) -> str:
    """What the limits count per: the device's name, else its address; in ``anonymous``
    mode a keyed hash of the address (this process's secret: unlinkable once restarted)."""
    ip = request.remote or ""
    if privacy == "anonymous":
        return "k:" + hmac.new(request.app[SECRET], ip.encode(), hashlib.sha256).hexdigest()[:24]
    return f"d:{device}" if device else f"a:{ip}"


# --- words --------------------------------------------------------------------------------------


def _clock(ts: float | None, zone: str) -> str:
    if ts is None:
        return ""
    try:
        tz: datetime.tzinfo = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = datetime.UTC
    return datetime.datetime.fromtimestamp(ts, tz).strftime("%H:%M")


def _category_name(state: dict[str, Any], ident: str) -> str:
    _ = i18n.gettext_
    for c in (*state.get("categories", []), *state.get("services", [])):
        if c.get("id") == ident and c.get("name"):
            return _(str(c["name"]))
    return ident


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
        what = _category_name(state, target)
        used = next((u for u in me.get("usage", []) if u.get("target") == target), None)
        if used is not None:
            return _("%(what)s: %(used)s of %(budget)s minutes used today") % {
                "what": what, "used": used.get("minutes"), "budget": used.get("budget")}
        return _("%(what)s: today's time is used up") % {"what": what}
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
            return _(str(c["description"]))
    service = str(decision.get("service") or "")
    return _category_name(state, service or category) or _("Not allowed on this profile")


def kind_of(decision: dict[str, Any]) -> str:
    """Which words beside the reason: help (helplines first), adult-help, threat, or none."""
    category = str(decision.get("category") or "")
    threat = str(decision.get("threat") or "")
    if category in HELP_FIRST or threat == "self-harm":
        return "help"
    if category in TELL_ADULT or threat in ADULT_THREATS:
        return "adult-help"
    if category in THREATS or threat in ("phishing", "malware"):
        return "threat"
    return ""


def until_words(ask: Ask, zone: str) -> str:
    _ = i18n.gettext_
    if ask.until is None:
        return _("from now on")
    return _("until %(time)s") % {"time": _clock(ask.until, zone)}


# --- rendering ----------------------------------------------------------------------------------


def _context(request: web.Request) -> dict[str, Any]:
    lang = request["lang"]
    provision = request.app[PROVISION]
    return {"lang": lang, "dir": "rtl" if lang in i18n.RTL else "ltr", "static": STATIC, "prefix": PREFIX,
            "brand": provision.brand.name if provision.brand is not None else "Guardian",
            "logo": provision.brand is not None and provision.brand.logo is not None,
            "helpline": provision.helpline, "mine": mine_url(request)}


def render(request: web.Request, template: str, ctx: dict[str, Any], status: int = 200) -> web.Response:
    html = request.app[ENV].get_template(template).render({**_context(request), **ctx})
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def mine_url(request: web.Request) -> str:
    """The child's own page: the box's first local name, on the port this page came on."""
    settings = request.app[SETTINGS]
    names = settings.dns.local_names if settings.dns is not None else ()
    sock: Any = request.transport.get_extra_info("sockname") if request.transport else None
    port = int(sock[1]) if sock else 80
    host = names[0] if names else (str(sock[0]) if sock else "localhost")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}/" if port == 80 else f"http://{host}:{port}/"


def sign_in_url(request: web.Request, name: str) -> str:
    listen = request.app[SETTINGS].dashboard.listen
    port = listen[0][1] if listen else 8080
    host = f"[{name}]" if ":" in name else name
    return f"http://{host}/login" if port == 80 else f"http://{host}:{port}/login"


async def _ask_daemon(request: web.Request, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    control = request.app[CONTROL]
    found, state = await asyncio.gather(control.data("explain", name=name, ip=request.remote or ""),
                                        control.data("state"))
    return found, state


# --- the block page -------------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    name = host_of(request)
    if name and is_own(request, name):
        if request.path != "/":
            raise web.HTTPSeeOther("/")
        return await child_page(request, name)
    return await block_page(request, name)


async def block_page(request: web.Request, name: str) -> web.StreamResponse:
    _ = i18n.gettext_
    ctx: dict[str, Any] = {"name": name, "device": "", "profile": "", "reason": "", "kind": "", "blocked": False,
                           "down": False, "help": [], "nonce": "", "can_ask": False,
                           "back": safe_back(request.path_qs), "note_max": NOTE_MAX}
    status = 200
    if not name:
        ctx["reason"] = _("This address is not a site name.")
        return render(request, "block.html", ctx, 400)
    try:
        found, state = await _ask_daemon(request, name)
    except GuardianError as exc:
        log.warning("block page: %s", exc)
        ctx["down"] = True
        return render(request, "block.html", ctx, 503)
    decision = found.get("decision", {})
    ctx["device"] = found.get("device") or ""
    ctx["profile"] = found.get("profile") or ""
    ctx["blocked"] = decision.get("action") == "block"
    if ctx["blocked"]:
        ctx["reason"] = reason_words(decision, state, ctx["profile"])
        ctx["kind"] = kind_of(decision)
        ctx["help"] = list(HELP_SITES) if ctx["kind"] == "help" else []
        ctx["can_ask"] = decision.get("reason") != "pause"  # a pause is a parent's "stop now"
        ctx["nonce"] = make_nonce(request.app[SECRET], request.remote or "", name, time.time())
        if state.get("privacy") != "anonymous":
            remember(request, asker_of(request, found.get("device"), ""), name, ctx["reason"])
    return render(request, "block.html", ctx, status)


def remember(request: web.Request, asker: str, name: str, reason: str) -> None:
    """A block this page showed (in memory only, an hour): the child's page lists it."""
    seen = request.app[SEEN]
    if asker not in seen and len(seen) > 1024:
        seen.clear()
    entries = seen.setdefault(asker, collections.deque(maxlen=50))
    entries.append((time.time(), name, reason))


# --- asking a parent ------------------------------------------------------------------------------


def _same_site(request: web.Request) -> bool:
    """The form was posted by the block page itself (no other site's page posted it)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin in (None, "null") or origin == f"http://{request.headers.get('Host', '')}"


async def ask(request: web.Request) -> web.StreamResponse:
    _ = i18n.gettext_
    name = host_of(request)
    if not name or is_own(request, name):
        raise Refused(400, _("This address is not a site name."))
    data = await request.post()
    nonce, note = str(data.get("nonce") or ""), str(data.get("note") or "")
    back = safe_back(str(data.get("back") or "/"))
    if not _same_site(request) or not nonce_ok(request.app[SECRET], nonce, request.remote or "", name,
                                               time.time()):
        raise Refused(403, _("This page is too old to ask from. Reload it and ask again."))
    try:
        found, state = await _ask_daemon(request, name)
    except GuardianError as exc:
        log.warning("ask: %s", exc)
        raise Refused(503, _("The filter is not answering right now. Try again in a minute.")) from None
    decision = found.get("decision", {})
    if decision.get("action") != "block":
        raise web.HTTPSeeOther(back)  # nothing to ask for any more
    if decision.get("reason") == "pause":
        raise Refused(400, _("A parent paused the internet on this device: ask them to end the pause."))
    privacy = str(state.get("privacy") or "")
    anonymous = privacy == "anonymous"
    device = found.get("device") or ""
    asks = request.app[ASKS]
    try:
        made = await asyncio.to_thread(
            asks.create, asker=asker_of(request, device, privacy), device="" if anonymous else device,
            client="" if anonymous else request.remote or "", profile=str(found.get("profile") or ""), name=name,
            rule=str(decision.get("rule") or name), service=str(decision.get("service") or ""),
            category=str(decision.get("category") or ""), reason=str(decision.get("reason") or ""), note=note)
    except AlreadyAsked as exc:
        raise Refused(409, _("You already asked for this site. A parent has not answered yet."), exc.ask) from None
    except TooMany:
        raise Refused(429, _("You can send at most %(count)s requests an hour. Try again later.")
                      % {"count": PER_HOUR}) from None
    except BadNote:
        raise Refused(400, _("Your note is too long: at most %(count)s characters.") % {"count": NOTE_MAX}) from None
    log.info("request %d: %s asks for %s", made.id, device or "a device", name)
    # The answer page is on the box's own name: it stays reachable once the site is allowed.
    raise web.HTTPSeeOther(mine_url(request).rstrip("/") + asked_path(made, back))


def asked_path(made: Ask, back: str) -> str:
    from urllib.parse import urlencode

    return f"{PREFIX}asked/{made.id}?" + urlencode({"k": made.key, "back": back})


async def asked(request: web.Request) -> web.StreamResponse:
    """The answer page of one request (its link's key is the only way to see it)."""
    _ = i18n.gettext_
    try:
        ident = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    made = await asyncio.to_thread(request.app[ASKS].by_key, ident, request.query.get("k", ""))
    if made is None or host_of(request) not in (made.name, *request.app[OWN_NAMES]):
        raise Refused(404, _("This request is not known here."))
    zone = request.app[SETTINGS].timezone or "UTC"
    back = f"http://{made.name}{safe_back(request.query.get('back', '/'))}"
    refresh = ""
    if made.state == "new":
        refresh = str(POLL_SECONDS)
    elif made.state == "approved":
        refresh = f"{BLOCK_TTL + 2};url={back}"  # after the blocked answer's TTL: the site again
    return render(request, "asked.html", {"ask": made, "back": back, "refresh": refresh,
                                          "until": until_words(made, zone) if made.state == "approved" else "",
                                          "message": "", "state": made.state})


@web.middleware
async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """Language first; a Refused becomes a page in it."""
    catalogs = request.app[CATALOGS]
    lang = i18n.negotiate(request.headers.get("Accept-Language", ""), catalogs)
    request["lang"] = lang
    token = i18n.current.set(catalogs[lang])
    try:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except Refused as exc:
            link = asked_path(exc.ask, "/") if exc.ask is not None else ""
            return render(request, "asked.html", {"ask": exc.ask, "back": "/", "refresh": "", "until": "",
                                                  "message": str(exc), "state": "refused", "link": link},
                          exc.status)
    finally:
        i18n.current.reset(token)


# --- the child's own page ---------------------------------------------------------------------------


async def child_page(request: web.Request, name: str) -> web.StreamResponse:
    _ = i18n.gettext_
    settings = request.app[SETTINGS]
    local = settings.dns.local_names[0] if settings.dns is not None and settings.dns.local_names else "guardian.lan"
    try:
        found, state = await _ask_daemon(request, local)  # who this device is, whatever the name it typed
    except GuardianError as exc:
        log.warning("child's page: %s", exc)
        return render(request, "block.html", {"name": "", "device": "", "profile": "", "reason": "", "kind": "",
                                              "blocked": False, "down": True, "help": [], "nonce": "",
                                              "can_ask": False, "back": "/", "note_max": NOTE_MAX}, 503)
    device, profile = found.get("device") or "", str(found.get("profile") or "")
    zone = str(state.get("zone") or "UTC")
    now = float(state.get("now") or time.time())
    privacy = str(state.get("privacy") or "")
    me: dict[str, Any] = next((p for p in state.get("profiles", []) if p.get("name") == profile), {})
    rules: dict[str, Any] = next((p for p in state.get("household", {}).get("profiles", [])
                                  if p.get("name") == profile), {})
    filtered = any(rules.get(k) for k in ("categories", "services", "deny", "schedules", "budgets"))
    budgets = [{"what": _category_name(state, u["target"]), "left": u.get("left"), "used": u.get("minutes"),
                "budget": u.get("budget")} for u in me.get("usage", []) if u.get("budget") is not None]
    windows = [{"name": s.get("name"), "until": _clock(s.get("until"), zone)} for s in me.get("schedules_active", [])]
    paused_until = me.get("paused_until") if me.get("paused") else None
    for d in state.get("household", {}).get("devices", []):
        if d.get("name") == device and d.get("paused"):
            paused_until = d.get("paused_until") or paused_until or float("inf")
    asker = asker_of(request, device, privacy)
    recent = await asyncio.to_thread(recent_blocks, request, asker, state, profile, now, privacy)
    requests = await asyncio.to_thread(request.app[ASKS].of_asker, asker, now - 86400)
    return render(request, "child.html", {
        "device": device, "profile": profile, "filtered": filtered, "budgets": budgets, "windows": windows,
        "paused": paused_until is not None, "paused_until": _clock(paused_until, zone)
        if paused_until not in (None, float("inf")) else "",
        "bonus_until": _clock(me.get("bonus_until"), zone), "recent": recent,
        "requests": [{"ask": a, "until": until_words(a, zone) if a.state == "approved" else "",
                      "link": asked_path(a, "/")} for a in requests],
        "sign_in": sign_in_url(request, name), "privacy": privacy})


def recent_blocks(request: web.Request, asker: str, state: dict[str, Any], profile: str, now: float,
                  privacy: str) -> list[dict[str, Any]]:
    """Blocked in the last hour: the query log's (when the privacy mode keeps it), and
    the block pages shown here (which https:// sites never reach), newest first."""
    zone = str(state.get("zone") or "UTC")
    out: dict[str, dict[str, Any]] = {}
    if privacy != "anonymous":
        for row in request.app[HISTORY].log(Filter(device=request.remote or "", decision="blocked"), limit=100):
            if row["time"] < now - RECENT_SECONDS or row["domain"] in out:
                continue
            decision = {"reason": row["reason"], "category": row["category"], "service": row["service"],
                        "schedule": row["schedule"], "budget": row["service"] or row["category"]}
            out[row["domain"]] = {"name": row["domain"], "when": _clock(row["time"], zone),
                                  "why": reason_words(decision, state, profile), "at": row["time"]}
    for at, name, why in request.app[SEEN].get(asker, ()):
        if at >= now - RECENT_SECONDS and (name not in out or float(out[name]["at"]) < at):
            out[name] = {"name": name, "when": _clock(at, zone), "why": why, "at": at}
    return sorted(out.values(), key=lambda r: -float(r["at"]))[:20]


# --- the application --------------------------------------------------------------------------------


@web.middleware
async def child_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for key, value in HEADERS.items():
        response.headers[key] = value
    # The Ask form's answer is on the box's own name: form-action covers that redirect.
    mine = mine_url(request).rstrip("/")
    response.headers["Content-Security-Policy"] = HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {mine}")
    response.headers.popall("Set-Cookie", None)
    response.force_close()
    return response


def make_child_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[child_headers, refusals], client_max_size=16 << 10)
    app[CONTROL] = Control(settings.data_dir)
    app[SETTINGS] = settings
    try:
        app[PROVISION] = load_for(settings.path) if settings.path is not None else Provision()
    except ConfigError:
        app[PROVISION] = Provision()
    app[CATALOGS] = i18n.load(ROOT / "translations")
    app[OWN_NAMES] = own_names(settings)
    app[ASKS] = Asks(settings.data_dir, retention_days=settings.store.event_days)
    app[HISTORY] = History(settings.data_dir)
    app[SECRET] = secrets.token_bytes(32)
    app[SEEN] = {}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
    app[ENV] = env
    app.router.add_static(STATIC, ROOT / "static", show_index=False)
    app.router.add_get(PREFIX + "brand.css", brand_css)
    app.router.add_get(PREFIX + "logo", brand_logo)
    app.router.add_post(PREFIX + "ask", ask)
    app.router.add_get(PREFIX + "asked/{id}", asked)
    app.router.add_route("GET", "/{tail:.*}", page)
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
