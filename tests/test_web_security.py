# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""The dashboard against the children on the LAN: CSRF, Host allow-list, escaping,
login throttling, sessions, cookies and headers, over real HTTP to the real process."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest
from webdash import PARENT, PASSWORD, Dash, browser, dash, page  # noqa: F401 - fixtures

from guardian.discovery.packets import Sighting
from guardian.web.accounts import db_path
from guardian.web.history import Filter, History

pytestmark = pytest.mark.slow

PAGES = ("/", "/devices", "/activity", "/week", "/profiles/Child", "/settings")


def wait_for(check, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def cookie_value(cookies: list[str], name: str) -> str:
    for c in cookies:
        if c.startswith(name + "="):
            return c.split(";", 1)[0].split("=", 1)[1]
    raise LookupError(name)


def form_token(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:500]
    return found.group(1)


class Client:
    """A browser-like HTTP client with a cookie jar of one cookie per name."""

    def __init__(self, dash: Dash, host: str | None = None, source: str | None = None) -> None:
        self.dash = dash
        self.jar: dict[str, str] = {}
        self.host = host
        self.source = source

    def request(self, method: str, path: str, fields: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str, list[str]]:
        h = dict(headers or {})
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if self.host:
            h["Host"] = self.host
        body = urllib.parse.urlencode(fields) if fields is not None else ""
        status, head, text, cookies = self.dash.http(method, path, body, h, self.source)
        for c in cookies:
            name, _, rest = c.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "Max-Age=0" in c:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return status, head, text, cookies

    def login(self, name: str = PARENT, password: str = PASSWORD) -> tuple[int, dict[str, str], str, list[str]]:
        self.dash.ensure_parent()
        _, _, text, _ = self.request("GET", "/login")
        return self.request("POST", "/login", {"csrf": form_token(text), "name": name, "password": password})

    def csrf(self) -> str:
        return form_token(self.request("GET", "/settings")[2])


def test_a_foreign_host_gets_403_and_the_boxs_names_work(dash) -> None:
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.0.0.1"):
        status, headers, _, _ = Client(dash, host).request("GET", "/login")
        assert status == 403, host
        assert headers["x-frame-options"] == "DENY"
    for host in (f"127.0.0.1:{dash.port}", "guardian.lan", f"guardian.lan:{dash.port}", "localhost"):
        assert Client(dash, host).request("GET", "/healthz")[0] == 200, host


def test_state_changes_without_the_csrf_token_or_from_another_origin_get_403(dash) -> None:
    c = Client(dash)
    assert c.login()[0] == 303
    token = c.csrf()
    assert c.request("POST", "/act/pause", {"target": "Child", "for": "900"})[0] == 403
    assert c.request("POST", "/act/pause", {"target": "Child", "for": "900", "csrf": "wrong"})[0] == 403
    assert c.request("POST", "/act/pause", {"target": "Child", "for": "900", "csrf": token},
                     {"Origin": "http://evil.example"})[0] == 403
    assert c.request("POST", "/act/pause", {"target": "Child", "for": "900", "csrf": token},
                     {"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert c.request("POST", "/api/v1/profiles/Child/pause", None, {"Content-Type": "application/json"})[0] == 403
    state = dash.daemon.daemon.policy.current
    assert "Child" not in state.paused_profiles  # nothing of it happened
    # The login form too: a forged login (another site signing the parent in) is refused.
    assert Client(dash).request("POST", "/login", {"name": PARENT, "password": PASSWORD})[0] == 403
    # With the token it works.
    assert c.request("POST", "/act/pause", {"target": "Child", "for": "900", "csrf": token})[0] == 303
    assert "Child" in dash.daemon.daemon.policy.current.paused_profiles
    assert c.request("POST", "/act/resume", {"target": "Child", "csrf": token})[0] == 303


def test_script_in_a_query_name_and_a_dhcp_hostname_is_shown_escaped(dash, page) -> None:
    evil = "<script>alert(1)</script>"
    answer = dash.dig("x<script>alert(1)<.example", source="127.0.0.3")
    assert answer.status  # answered (the name is odd, not invalid)
    wait_for(lambda: any("script" in r["domain"] for r in History(dash.data).log(Filter())))

    async def sighting() -> None:
        registry = dash.daemon.daemon.discovery.registry
        registry.see(Sighting(mac="02:00:00:00:00:42", ip="127.0.0.42", source="dhcp", hostname=evil))

    dash.daemon.call(sighting())
    c = Client(dash)
    c.login()
    for path in ("/devices", "/activity", "/"):
        text = c.request("GET", path)[2]
        assert "<script>alert" not in text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.request("GET", "/devices")[2]
    assert "x&lt;script&gt;alert(1)&lt;.example" in c.request("GET", "/activity")[2]
    # And in a real browser nothing runs.
    p = page.login()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in ("/devices", "/activity"):
        page.go(path)
    assert evil in p.inner_text("main") or "alert(1)" in page.go("/devices").inner_text("main")
    assert not dialogs


def test_ten_wrong_passwords_lock_the_account_and_the_client_with_429(dash) -> None:
    dash.ensure_parent("Locked", "a fine long password")
    statuses = []
    for _ in range(10):
        c = Client(dash, source="127.0.0.66")  # a child's tablet guessing
        _, _, text, _ = c.request("GET", "/login")
        statuses.append(c.request("POST", "/login", {"csrf": form_token(text), "name": "Locked",
                                                     "password": "wrong guess 123"})[0])
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 5
    # The account is locked: from another address, even the right password waits (and is told how long).
    c = Client(dash, source="127.0.0.67")
    _, _, text, _ = c.request("GET", "/login")
    status, headers, _, _ = c.request("POST", "/login", {"csrf": form_token(text), "name": "Locked",
                                                         "password": "a fine long password"})
    assert status == 429 and 800 < int(headers["retry-after"]) <= 900
    # The client is locked too: the guessing tablet cannot move on to another account.
    c = Client(dash, source="127.0.0.66")
    _, _, text, _ = c.request("GET", "/login")
    assert c.request("POST", "/login", {"csrf": form_token(text), "name": PARENT, "password": PASSWORD})[0] == 429
    # Everyone else signs in as usual, and the parents see the attempts among the risk events.
    c = Client(dash, source="127.0.0.68")
    assert c.login()[0] == 303
    wait_for(lambda: "failed dashboard logins from 127.0.0.66" in c.request("GET", "/activity")[2])

    def counted() -> int:
        return sum(e["count"] for e in History(dash.data).events() if "from 127.0.0.66" in e["message"])

    wait_for(lambda: counted() == 5)  # the five wrong passwords (the refused attempts were not tried)


def test_every_route_needs_a_session(dash) -> None:
    dash.ensure_parent()
    from guardian.web.api import PREFIX, ROUTES

    for path in PAGES:
        status, headers, _, _ = Client(dash).request("GET", path)
        assert status == 303 and headers["location"] == "/login", path
    for method, path, *_ in ROUTES:
        status, _, text, _ = Client(dash).request(method, PREFIX + path.replace("{name}", "Child"))
        assert status in (401, 403), (method, path, status)
    for path in ("/act/pause", "/devices/assign", "/settings/password", "/activity/allow", "/activity/seen",
                 "/profiles", "/settings/tokens"):
        assert Client(dash).request("POST", path, {"csrf": "x"})[0] in (303, 403), path
    assert Client(dash).request("GET", "/healthz")[0] == 200
    assert "household" not in Client(dash).request("GET", "/healthz")[2]


def test_the_session_cookie_is_httponly_samesite_strict_and_rotated_at_login(dash) -> None:
    c = Client(dash)
    status, _, _, cookies = c.login()
    assert status == 303
    session = next(x for x in cookies if x.startswith("guardian_session="))
    flags = [f.strip().lower() for f in session.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert len(cookie_value(cookies, "guardian_session")) >= 43  # 256 bits, base64
    first = c.jar["guardian_session"]
    _, _, text, _ = c.request("GET", "/login")
    c.request("POST", "/login", {"csrf": form_token(text), "name": PARENT, "password": PASSWORD})
    assert c.jar["guardian_session"] != first
    stale = Client(dash)
    stale.jar["guardian_session"] = first
    assert stale.request("GET", "/")[0] == 303  # the old one no longer opens anything
    # Stored hashed: the cookie's value is nowhere in web.db.
    assert first.encode() not in db_path(dash.data).read_bytes()


def test_the_session_ends_at_logout_and_at_a_password_change(dash) -> None:
    c = Client(dash)
    c.login()
    token = c.csrf()
    other = Client(dash)
    other.login()
    kept = dict(c.jar)
    assert c.request("POST", "/logout", {"csrf": token})[0] == 303
    replay = Client(dash)
    replay.jar.update(kept)
    assert replay.request("GET", "/")[0] == 303
    assert other.request("GET", "/")[0] == 200
    # A password change signs out every other browser of the account.
    new = "a brand new passphrase"
    dash.ensure_parent()
    status, _, _, _ = other.request("POST", "/settings/password", {"csrf": other.csrf(), "current": PASSWORD,
                                                                   "password": new})
    assert status == 303
    try:
        assert other.request("GET", "/settings")[0] == 200  # this browser got a new session
        assert replay.request("GET", "/")[0] == 303
        assert Client(dash).login(PARENT, PASSWORD)[0] == 401
    finally:
        account = dash.accounts().find(PARENT)
        assert account is not None
        dash.accounts().set_password(account.id, PASSWORD)


def test_security_headers_on_every_page_and_answer(dash) -> None:
    c = Client(dash)
    c.login()
    paths = [*PAGES, "/login", "/healthz", "/static/guardian.css", "/api/v1/state", "/api/v1/openapi.json",
             "/no-such-page"]
    for path in paths:
        status, headers, _, _ = c.request("GET", path)
        csp = headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert headers.get("x-frame-options") == "DENY", path
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("referrer-policy") == "no-referrer", path
    # No inline script anywhere: every <script> has a src.
    for path in PAGES:
        text = c.request("GET", path)[2]
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == [], path
        assert re.findall(r"<[^>]+\son[a-z]+\s*=", text) == [], path  # no inline event handlers either


def test_weak_first_passwords_are_refused(dash) -> None:
    from guardian.web.accounts import WeakPassword, check_strength

    for weak in ("short", "aaaaaaaaaaaa", "password1234", "Alex-is-the-best"):
        with pytest.raises(WeakPassword):
            check_strength(weak, "Alex")
    check_strength("correct horse battery", "Alex")


def test_the_api_documents_every_route_and_every_documented_route_exists(dash) -> None:
    c = Client(dash)
    c.login()
    status, _, text, _ = c.request("GET", "/api/v1/openapi.json")
    doc = json.loads(text)
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    from aiohttp import web

    from guardian.config import parse
    from guardian.web.app import make_app

    app = make_app(parse(dash.config.read_text(), str(dash.config), base=dash.config.parent))
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/") and route.method != "HEAD":
            routed.add((route.method, path))
    assert routed == documented
    assert isinstance(app, web.Application)
    # And the API answers with a session: the state, then a pause with the CSRF header.
    status, _, text, _ = c.request("GET", "/api/v1/state")
    assert status == 200 and {p["name"] for p in json.loads(text)["profiles"]} == {"Child", "Adult"}
    token = json.loads(c.request("GET", "/api/v1/session")[2])["csrf"]
    dash_body = json.dumps({"seconds": 600})
    status, _, text, _ = dash.http("POST", "/api/v1/profiles/Adult/pause", dash_body,
                                   {"Content-Type": "application/json", "X-CSRF-Token": token,
                                    "Cookie": f"guardian_session={c.jar['guardian_session']}"})
    assert status == 200, text
    assert "Adult" in dash.daemon.daemon.policy.current.paused_profiles
    c.request("POST", "/act/resume", {"target": "Adult", "csrf": token})


def test_api_tokens_act_for_their_account_until_revoked(dash) -> None:
    c = Client(dash)
    c.login()
    token_page = c.request("POST", "/settings/tokens", {"csrf": c.csrf(), "name": "telco app", "current": PASSWORD})
    assert token_page[0] == 200
    token = re.search(r'<code class="token">(gdn_[^<]+)</code>', token_page[2])
    assert token, "the new token is shown once"
    value = token.group(1)
    assert value.encode() not in db_path(dash.data).read_bytes()  # only its digest is kept
    assert value not in c.request("GET", "/settings")[2]  # and never shown again

    def api(method: str, path: str, body: dict | None = None, bearer: str = value):
        return dash.http(method, path, json.dumps(body) if body is not None else "",
                         {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"})

    status, _, text, _ = api("GET", "/api/v1/state")
    assert status == 200 and "Child" in text
    status, _, text, _ = api("POST", "/api/v1/profiles/Adult/pause", {"seconds": 300})  # no CSRF token needed
    assert status == 200, text
    assert "Adult" in dash.daemon.daemon.policy.current.paused_profiles
    api("POST", "/api/v1/profiles/Adult/resume", {})
    audit = json.loads(api("GET", "/api/v1/audit")[2])
    assert audit[0]["account"] == PARENT and audit[0]["action"] == "resume"
    assert api("GET", "/api/v1/state", bearer="gdn_forged")[0] == 401
    # A token is for the API only: pages still need a signed-in browser.
    assert dash.http("GET", "/", "", {"Authorization": f"Bearer {value}"})[0] == 303
    key = re.search(r'name="key" value="([0-9a-f]{64})"', c.request("GET", "/settings")[2][
        c.request("GET", "/settings")[2].index("API tokens"):])
    assert key
    assert c.request("POST", "/settings/tokens/revoke", {"csrf": c.csrf(), "key": key.group(1)})[0] == 303
    assert api("GET", "/api/v1/state")[0] == 401


def test_removing_another_parent_needs_your_password_and_ends_their_sessions(dash) -> None:
    dash.ensure_parent()
    dash.ensure_parent("Sam", "a passphrase of mine")  # a child who once got an account
    sam = Client(dash, source="127.0.0.80")
    assert sam.login("Sam", "a passphrase of mine")[0] == 303
    c = Client(dash)
    c.login()
    assert c.request("POST", "/settings/accounts/remove", {"csrf": c.csrf(), "name": "Sam",
                                                          "current": "not my password"})[0] == 403
    assert c.request("POST", "/settings/accounts/remove", {"csrf": c.csrf(), "name": PARENT,
                                                          "current": PASSWORD})[0] == 400  # not yourself
    assert c.request("POST", "/settings/accounts/remove", {"csrf": c.csrf(), "name": "Sam",
                                                          "current": PASSWORD})[0] == 303
    assert dash.accounts().find("Sam") is None
    assert sam.request("GET", "/")[0] == 303  # signed out
    assert "account removed Sam" in c.request("GET", "/settings")[2]
