"""The child's side (issue 12), end to end with real parts: the daemon, ``guardian web``,
Chromium reaching the network through a proxy that resolves through Guardian from the
child device's own address (127.0.0.2), the parent's Chromium on the dashboard.

A child opens a blocked http:// site, sees why (in words for a child, in its language),
asks a parent; the parent approves for an hour on the dashboard; the child's page says
so and the next load shows the real site. The requests cannot flood the parents (one
open request per device and name, five an hour) nor be made by another website (a
nonce per page), and nothing a child or a page sends is shown unescaped."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from childbox import ARTIFACTS, NO_UPGRADES, SITE, Box, wait_for
from support import PARIS, dig
from webdash import CHROMIUM, CHROMIUM_ARGS, PARENT, PASSWORD

from guardian import audit
from guardian.web.accounts import Accounts, db_path

pytestmark = pytest.mark.slow

CHILD, NIGHT, PAUSED, FLOOD, OTHER = "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"
HOSTILE = '<script>alert("note")</script><img src=x onerror=alert(2)>'


def _window() -> tuple[str, str]:
    now = datetime.now(PARIS)
    return (now - timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")


CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  rate_limit: 0
  rebind_allow: [10bet.com]  # the "real" 10bet.com of this test is on loopback
pack_lists: false
dashboard:
  listen: ["127.0.0.1:{web_port}"]
  blockpage_listen: ["127.0.0.1:{page_port}"]
data_dir: {data}
timezone: Europe/Paris
store:
  flush_seconds: 0.2
household:
  default_profile: Adult
  profiles:
    - name: Sam
      categories: [gambling, self-harm, chat, phishing]
      budgets: [{{target: games, minutes: 0}}]
      block_mode: blockpage
    - name: Night
      categories: [gambling]
      schedules: [{{name: Bedtime, days: [mon, tue, wed, thu, fri, sat, sun], from: "FROM", to: "TO", block: all}}]
      block_mode: blockpage
    - name: Adult
      categories: []
  devices:
    - {{name: Sam's tablet, ip: 127.0.0.2, profile: Sam}}
    - {{name: Night tablet, ip: 127.0.0.4, profile: Night}}
    - {{name: Paused phone, ip: 127.0.0.5, profile: Sam}}
    - {{name: Flood tablet, ip: 127.0.0.6, profile: Sam}}
    - {{name: Other tablet, ip: 127.0.0.7, profile: Sam}}
"""
PROVISION = """
brand:
  name: "Kidnet <Home>"
  colours: {primary: "#5b2a86", accent: "#f2a900"}
helpline: {name: "Child Helpline 116 111", phone: "116 111", url: "https://helpline.example/"}
"""
BLOCKED = ["10bet.com", "188bet.com", "1xbet.com", "20bet.com", "22bet.com", "7bitcasino.com", "888.com",
           "888casino.com", "lostallhope.com", "azarlive.com", "2no.co", "1v1.lol", "kids.example"]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    start, end = _window()
    b = Box(tmp_path_factory.mktemp("child"), CONFIG.replace("FROM", start).replace("TO", end),
            {name: [("A", SITE)] for name in BLOCKED}, sources=(CHILD, NIGHT, PAUSED), provision=PROVISION)
    accounts = Accounts(db_path(b.data))
    accounts.create(PARENT, PASSWORD)
    assert b.control({"action": "pause", "target": "Paused phone", "for": 3600})["ok"]
    yield b
    b.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, NO_UPGRADES])
        yield browser
        browser.close()


def child_browser(chromium: Any, box: Box, source: str = CHILD, width: int = 375, locale: str = "en-GB") -> Any:
    context = chromium.new_context(viewport={"width": width, "height": 800}, locale=locale,
                                   proxy={"server": box.proxies[source].url})
    context.set_default_timeout(10_000)
    return context


def shot(page: Any, name: str, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def nonce_of(body: str) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', body)
    assert found, "the block page has no Ask a parent form"
    return found.group(1)


def ask(box: Box, name: str, source: str, note: str = "", nonce: str | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    if nonce is None:
        _status, _h, body = box.page("GET", name, source=source)
        nonce = nonce_of(body)
    form = urllib.parse.urlencode({"nonce": nonce, "note": note, "back": "/"})
    return box.page("POST", name, "/_guardian/ask", source=source, body=form, headers=headers)


# --- the block page: each reason in words, category-aware ------------------------------------------


@pytest.mark.parametrize(("kind", "source", "name", "words"), [
    ("category", CHILD, "10bet.com", "gambling"),
    ("schedule", NIGHT, "kids.example", "Bedtime until"),
    ("budget", CHILD, "1v1.lol", "games: 0 of 0 minutes used today"),
    ("pause", PAUSED, "kids.example", "Paused by a parent until"),
    ("self-harm", CHILD, "lostallhope.com", "You are not alone"),
    ("grooming", CHILD, "azarlive.com", "tell a trusted adult"),
    ("phishing", CHILD, "2no.co", "may steal passwords"),
])
def test_the_block_page_says_each_reason_in_a_childs_words(box: Box, chromium: Any, kind: str, source: str,
                                                          name: str, words: str) -> None:
    assert box.proxies[source] and dig(box.dns_port, name, source=source).values == ["127.0.0.1"]
    context = child_browser(chromium, box, source)
    try:
        page = context.new_page()
        page.goto(f"http://{name}/some/page?x=1")
        text = page.locator("main").inner_text()
        assert words.lower() in text.lower(), text
        assert name in text
        assert page.locator("header .brand").inner_text() == "Kidnet <Home>"  # the telco's brand, as text
        if kind == "self-harm":  # helplines first (the provisioned one first), no "blocked" heading above
            first = page.locator("main section").first
            assert first.get_attribute("id") == "help"
            help_text = first.inner_text()
            assert help_text.index("Child Helpline 116 111") < help_text.index("findahelpline.com")
            assert "This site is blocked" not in page.locator("h1").first.inner_text()
        if kind == "grooming":
            assert "Child Helpline 116 111" in page.locator("#tell").inner_text()
        if kind == "pause":
            assert page.locator("#ask").count() == 0  # a pause is a parent's "stop now": nothing to ask
        else:
            assert page.locator("#ask textarea[name=note]").get_attribute("maxlength") == "200"
        assert page.locator("a#mine").count() == 1  # the child's own page
        shot(page, f"block-{kind}", 375)
    finally:
        context.close()


def test_the_block_page_in_arabic_is_right_to_left_at_1280(box: Box, chromium: Any) -> None:
    context = child_browser(chromium, box, CHILD, width=1280, locale="ar")
    try:
        page = context.new_page()
        page.goto("http://10bet.com/")
        assert page.locator("html").get_attribute("dir") == "rtl"
        assert page.locator("html").get_attribute("lang") == "ar"
        assert "هذا الموقع محظور" in page.locator("h1").first.inner_text()
        shot(page, "block-category-ar", 1280)
    finally:
        context.close()


def test_block_page_headers_keep_the_blocked_origin_clean(box: Box) -> None:
    status, headers, _body = box.page("GET", "10bet.com", source=CHILD)
    assert status == 200
    assert headers["cache-control"] == "no-store" and headers["connection"] == "close"
    assert headers["x-robots-tag"] == "noindex" and "set-cookie" not in headers
    assert "default-src 'none'" in headers["content-security-policy"]


# --- asking a parent, end to end ----------------------------------------------------------------------


def test_child_asks_parent_approves_for_an_hour_and_the_real_site_comes_back(box: Box, chromium: Any) -> None:
    kdig = dig(box.dns_port, "10bet.com", source=CHILD, tool="kdig")
    assert kdig.values == ["127.0.0.1"], kdig.text  # the box: where the block page is
    child = child_browser(chromium, box, CHILD)
    parent = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        page = child.new_page()
        page.goto("http://10bet.com/casino")
        assert "gambling" in page.locator("#reason").inner_text().lower()
        page.fill("#ask textarea[name=note]", "For my homework about probability")
        page.click("#ask button")
        page.wait_for_url(re.compile(r"http://guardian\.lan(:\d+)?/_guardian/asked/\d+"))
        assert page.locator("#answer").get_attribute("data-state") == "new"
        assert "sent" in page.locator("#answer").inner_text().lower()
        shot(page, "asked", 375)

        # The parent: a badge on every page, the request with its suggested rule and note.
        p = parent.new_page()
        p.goto(box.dashboard + "/login")
        p.fill("#name", PARENT)
        p.fill("#password", PASSWORD)
        p.click("form[action='/login'] button")
        p.wait_for_url(box.dashboard + "/")
        assert p.locator("#requests-badge").inner_text().strip() == "1"
        p.goto(box.dashboard + "/requests")
        card = p.locator("article.request").first
        text = card.inner_text()
        assert "10bet.com" in text and "Sam's tablet" in text and "For my homework about probability" in text
        assert "gambling" in text.lower()
        shot(p, "parent-requests", 1280)
        card.locator("form[action$='/approve'] button[value='3600']").click()
        p.wait_for_url(box.dashboard + "/requests")
        assert "approved" in p.locator("article.request").first.inner_text().lower()

        # The DNS answer changed at once: the real address, for the child's device.
        assert wait_for(lambda: dig(box.dns_port, "10bet.com", source=CHILD, tool="kdig").values == [SITE],
                        what="the real answer")
        # The child's waiting page (on the box's own name) learns the answer by itself
        # (it looks again every few seconds), then opens the site: the real one now.
        page.wait_for_selector("#answer[data-state=approved]", timeout=15_000)
        assert "until" in page.locator("#answer").inner_text()
        shot(page, "approved", 375)
        page.wait_for_selector("#real", timeout=30_000)
        assert page.url == "http://10bet.com/casino"
        assert page.locator("#real").inner_text() == "The real 10bet.com"
        # The child's own page says approved too.
        page.goto("http://guardian.lan/")
        assert "a parent said yes" in page.locator("#requests").inner_text()
    finally:
        child.close()
        parent.close()
    # guardian events has the attempt; the audit log has the parent's approval.
    events = json.loads(subprocess.run([sys.executable, "-m", "guardian", "events", "--config", str(box.config),
                                        "--json"], capture_output=True, text=True, timeout=60).stdout)
    assert any("10bet.com" in json.dumps(e) and e.get("device") == "Sam's tablet" for e in events), events
    rows = audit.read(box.data)
    assert any(r["action"] == "allow" and r["account"] == PARENT and "10bet.com" in json.dumps(r) for r in rows), rows
    # The request as kept: who asked from where, what to allow, who said yes, for how long.
    conn = sqlite3.connect(box.data / "web" / "requests.db")
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM requests WHERE name = '10bet.com' AND device = ?",
                           ("Sam's tablet",)).fetchone()
    finally:
        conn.close()
    assert row["client"] == CHILD and row["profile"] == "Sam" and row["rule"] == "10bet.com"
    assert row["reason"] == "category" and row["state"] == "approved" and row["decided_by"] == PARENT
    assert row["note"] == "For my homework about probability"
    assert row["until"] is not None and abs(row["until"] - (row["decided_at"] + 3600)) < 5
    assert time.time() - row["time"] < 600


def test_the_childs_own_page(box: Box, chromium: Any) -> None:
    ask(box, "888.com", CHILD, note="please")
    context = child_browser(chromium, box, CHILD)
    try:
        page = context.new_page()
        page.goto("http://888casino.com/")  # a block seen in the last hour
        page.click("a#mine")
        page.wait_for_url(re.compile(r"http://guardian\.lan(:\d+)?/$"))
        main = page.locator("main").inner_text()
        assert "Sam's tablet" in main and "Sam" in main
        assert "888casino.com" in page.locator("#recent").inner_text()
        assert "gambling" in page.locator("#recent").inner_text().lower()
        assert "games" in page.locator("#budgets").inner_text() and "0 minutes left" in page.locator(
            "#budgets").inner_text()
        assert "888.com" in page.locator("#requests").inner_text()
        assert "browser error" in main  # honest about https
        assert page.locator("a#sign-in").get_attribute("href") == f"http://guardian.lan:{box.web_port}/login"
        shot(page, "child-page", 375)
        page.set_viewport_size({"width": 1280, "height": 800})
        shot(page, "child-page", 1280)
    finally:
        context.close()
    night = child_browser(chromium, box, NIGHT)
    try:
        page = night.new_page()
        page.goto("http://guardian.lan/")
        assert "Bedtime" in page.locator("#windows").inner_text() and "until" in page.locator(
            "#windows").inner_text()
    finally:
        night.close()


# --- limits, the nonce and escaping -----------------------------------------------------------------


def test_one_open_request_per_device_and_name(box: Box) -> None:
    status, _h, _body = ask(box, "20bet.com", OTHER)
    assert status == 303
    status, _h, body = ask(box, "20bet.com", OTHER)
    assert status == 409 and "already asked" in body.lower()


def test_at_most_five_requests_per_device_an_hour(box: Box) -> None:
    names = ["888poker.com", "888sport.com", "americascardroom.eu", "bandit.camp", "188bet.com", "1xbet.com"]
    answers = [ask(box, n, FLOOD)[0] for n in names]
    assert answers == [303] * 5 + [429], answers
    _status, _h, body = ask(box, "888casino.com", FLOOD)
    assert "5 requests an hour" in body


def test_a_request_without_the_pages_nonce_is_refused(box: Box) -> None:
    before = count_requests(box)
    assert ask(box, "22bet.com", OTHER, nonce="")[0] == 403
    assert ask(box, "22bet.com", OTHER, nonce="1.forged")[0] == 403
    # The nonce of another name's page, or of another device's page, does not do either.
    _s, _h, body = box.page("GET", "188bet.com", source=OTHER)
    assert ask(box, "22bet.com", OTHER, nonce=nonce_of(body))[0] == 403
    assert ask(box, "188bet.com", CHILD, nonce=nonce_of(body))[0] == 403
    # A page on another site that posts the form (with a nonce it cannot read, or any).
    _s, _h, body = box.page("GET", "22bet.com", source=OTHER)
    status, _h, _b = ask(box, "22bet.com", OTHER, nonce=nonce_of(body),
                         headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert count_requests(box) == before


def test_a_hostile_note_and_host_are_shown_escaped(box: Box, chromium: Any) -> None:
    status, headers, _body = ask(box, "7bitcasino.com", OTHER, note=HOSTILE)
    assert status == 303
    status, _h, body = box.page("GET", "guardian.lan", path_of(headers), source=OTHER)
    assert status == 200 and HOSTILE not in body and "&lt;script&gt;" in body
    status, _h, body = ask(box, "888casino.com", OTHER, note="x" * 201)
    assert status == 400 and "200" in body
    status, _h, body = box.page("GET", '"><script>alert(1)</script>', source=OTHER)
    assert status == 400 and "<script>" not in body
    status, headers, _body = box.page("POST", "888casino.com", "/_guardian/ask", source=OTHER, body=urllib.parse.urlencode(
        {"nonce": nonce_of(box.page("GET", "888casino.com", source=OTHER)[2]), "back": "//evil.example/x"}))
    assert status == 303
    _s, _h, body = box.page("GET", "guardian.lan", path_of(headers), source=OTHER)
    assert "evil.example" not in body  # the way back stays on the site's own path
    # The parent's list: the note is text, never markup.
    context = chromium.new_context()
    try:
        p = context.new_page()
        alerts: list[str] = []
        p.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
        p.goto(box.dashboard + "/login")
        p.fill("#name", PARENT)
        p.fill("#password", PASSWORD)
        p.click("form[action='/login'] button")
        p.wait_for_url(box.dashboard + "/")
        p.set_viewport_size({"width": 375, "height": 800})
        p.goto(box.dashboard + "/requests")
        assert HOSTILE in p.locator("main").inner_text()  # shown as the text it is
        assert p.locator("main img").count() == 0 and not alerts
        shot(p, "parent-requests", 375)
    finally:
        context.close()


def test_a_declined_request_says_so_with_the_parents_message(box: Box) -> None:
    status, headers, _body = ask(box, "22bet.com", CHILD)
    assert status == 303
    ident = int(re.search(r"/asked/(\d+)", headers["location"]).group(1))  # type: ignore[union-attr]
    session = login(box)
    status = session("POST", f"/requests/{ident}/decline", {"message": "Not on a school night"})
    assert status == 303
    _s, _h, body = box.page("GET", "guardian.lan", path_of(headers), source=CHILD)
    assert 'data-state="declined"' in body and "Not on a school night" in body
    assert dig(box.dns_port, "22bet.com", source=CHILD).values == ["127.0.0.1"]  # still blocked


def path_of(headers: dict[str, str]) -> str:
    """The path and query of a redirect's Location (the answer page, on the box's own name)."""
    url = urllib.parse.urlsplit(headers["location"])
    assert url.hostname == "guardian.lan", url
    return f"{url.path}?{url.query}"


def count_requests(box: Box) -> int:
    conn = sqlite3.connect(box.data / "web" / "requests.db")
    try:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


def login(box: Box) -> Any:
    """A signed-in parent's session on the dashboard: a function (method, path, form) -> status."""
    import http.client

    def call(method: str, path: str, form: dict[str, str] | None = None, cookie: str = "",
             csrf: str = "") -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", box.web_port, timeout=10)
        headers = {"Host": f"127.0.0.1:{box.web_port}", "Cookie": cookie}
        body = urllib.parse.urlencode({**(form or {}), "csrf": csrf}) if method == "POST" else None
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()} | {
            "set-cookie": "; ".join(r.headers.get_all("Set-Cookie") or [])}, text

    _s, h, body = call("GET", "/login")
    form_cookie = h["set-cookie"].split(";", 1)[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    status, h, _b = call("POST", "/login", {"name": PARENT, "password": PASSWORD}, form_cookie, csrf)
    assert status == 303, status
    cookie = h["set-cookie"].split(";", 1)[0]
    _s, _h, body = call("GET", "/requests", cookie=cookie)
    token = re.search(r'name="csrf" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    return lambda method, path, form=None: call(method, path, form, cookie, token)[0]



@pytest.mark.parametrize(("lang", "ask_words", "mine_words"), [
    ("fr-FR,fr;q=0.9", "Demander à un parent", "Cet appareil sur le réseau"),
    ("es", "Pedir permiso a un adulto", "Este dispositivo en la red"),
    ("ru", "Спросить родителя", "Это устройство в сети"),
    ("zh-CN,zh;q=0.8", "问问家长", "这台设备在网络上"),
    ("ar", "اسأل أحد والديك", "هذا الجهاز على الشبكة"),
])
def test_the_childs_pages_speak_the_browsers_language(box: Box, lang: str, ask_words: str, mine_words: str) -> None:
    _s, _h, body = box.page("GET", "1xbet.com", source=OTHER, headers={"Accept-Language": lang})
    assert ask_words in body
    _s, _h, body = box.page("GET", "guardian.lan", source=OTHER, headers={"Accept-Language": lang})
    assert mine_words in body and ('dir="rtl"' in body) == lang.startswith("ar")
