"""What an approved request allows (issue 12): the rule the block came from, not only the
host the child typed, and for a named service blocked by the profile the whole service.

The real daemon and ``guardian web`` (tests/childbox.py); a child's request made from the
block page as the device at 127.0.0.2 sees it; the parent answers on the dashboard over
HTTP; the answers are checked with ``kdig -b`` from the child's address."""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from childbox import SITE, Box, wait_for
from support import dig
from webdash import PARENT, PASSWORD

from guardian import audit
from guardian.web.accounts import Accounts, db_path

pytestmark = pytest.mark.slow

KID, TEEN, BOTH = "127.0.0.2", "127.0.0.4", "127.0.0.5"

CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  rate_limit: 0
  rebind_allow: [10bet.com, youtube.com, youtu.be, ytimg.com, tiktok.com, tiktokcdn.com]  # the "real" sites are on loopback
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
    - name: Kid
      categories: [gambling]
      services: [youtube]
      block_mode: blockpage
    - name: Teen
      categories: [gambling]
      services: [tiktok]
      block_mode: blockpage
    - name: Both
      categories: [social]
      services: [tiktok]
      block_mode: blockpage
    - name: Adult
      categories: []
  devices:
    - {{name: Kid tablet, ip: 127.0.0.2, profile: Kid}}
    - {{name: Teen phone, ip: 127.0.0.4, profile: Teen}}
    - {{name: Both phone, ip: 127.0.0.5, profile: Both}}
"""
NAMES = ["www.10bet.com", "casino.10bet.com", "i.ytimg.com", "s.ytimg.com", "www.youtube.com", "youtu.be",
         "www.tiktok.com", "m.tiktok.com", "v16.tiktokcdn.com"]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    b = Box(tmp_path_factory.mktemp("askrules"), CONFIG, {name: [("A", SITE)] for name in NAMES})
    Accounts(db_path(b.data)).create(PARENT, PASSWORD)
    yield b
    b.stop()


def answer(box: Box, name: str, source: str) -> list[str]:
    return dig(box.dns_port, name, source=source, tool="kdig").values


def ask(box: Box, name: str, source: str) -> int:
    """A request from the block page of ``name`` as the device at ``source``: its id."""
    status, _h, body = box.page("GET", name, source=source)
    assert status == 200, body
    nonce = re.search(r'name="nonce" value="([^"]+)"', body)
    assert nonce, "the block page has no Ask a parent form"
    form = urllib.parse.urlencode({"nonce": nonce.group(1), "note": "", "back": "/"})
    status, headers, body = box.page("POST", name, "/_guardian/ask", source=source, body=form)
    assert status == 303, body
    found = re.search(r"/asked/(\d+)", headers["location"])
    assert found
    return int(found.group(1))


def parent(box: Box) -> Callable[..., tuple[int, str]]:
    """A signed-in parent on the dashboard: (method, path, form) -> (status, body)."""
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
        return r.status, {"set-cookie": "; ".join(r.headers.get_all("Set-Cookie") or [])}, text

    _s, h, body = call("GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)
    assert csrf
    status, h2, _b = call("POST", "/login", {"name": PARENT, "password": PASSWORD}, h["set-cookie"].split(";")[0],
                          csrf.group(1))
    assert status == 303, status
    cookie = h2["set-cookie"].split(";", 1)[0]
    _s, _h, body = call("GET", "/requests", cookie=cookie)
    token = re.search(r'name="csrf" value="([^"]+)"', body)
    assert token

    def session(method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        status, _h, text = call(method, path, form, cookie, token.group(1))
        return status, text

    return session


def card(body: str, ident: int) -> str:
    """The Requests page's card of request ``ident``, as text."""
    found = re.search(rf'<article[^>]*id="request-{ident}".*?</article>', body, re.S)
    assert found, body
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())


def kept(box: Box, ident: int) -> sqlite3.Row:
    conn = sqlite3.connect(box.data / "web" / "requests.db")
    conn.row_factory = sqlite3.Row
    try:
        row: sqlite3.Row = conn.execute("SELECT * FROM requests WHERE id = ?", (ident,)).fetchone()
        return row
    finally:
        conn.close()


def profile_of(box: Box, name: str) -> dict[str, Any]:
    state = box.control({"action": "state"})["data"]
    found: dict[str, Any] = next(p for p in state["household"]["profiles"] if p["name"] == name)
    return found


def test_always_allows_the_list_rule_so_other_subdomains_of_it_answer(box: Box) -> None:
    assert answer(box, "casino.10bet.com", KID) == ["127.0.0.1"]  # blocked: the box's block page
    ident = ask(box, "www.10bet.com", KID)
    row = kept(box, ident)
    assert (row["name"], row["rule"], row["service"], row["reason"]) == ("www.10bet.com", "10bet.com", "", "category")
    session = parent(box)
    _s, body = session("GET", "/requests")
    assert "Would allow: 10bet.com and its subdomains" in card(body, ident)
    assert session("POST", f"/requests/{ident}/approve", {"for": "always"})[0] == 303
    # Another subdomain of the rule, never asked for, now gets the real answer.
    assert wait_for(lambda: answer(box, "casino.10bet.com", KID) == [SITE], what="the real answer")
    assert "10bet.com" in profile_of(box, "Kid")["allow"]
    assert kept(box, ident)["state"] == "approved" and kept(box, ident)["until"] is None


def test_always_on_a_service_request_allows_the_whole_service(box: Box) -> None:
    assert answer(box, "youtu.be", KID) == ["127.0.0.1"]
    ident = ask(box, "i.ytimg.com", KID)
    row = kept(box, ident)
    assert (row["rule"], row["service"], row["reason"]) == ("ytimg.com", "youtube", "service")
    session = parent(box)
    _s, body = session("GET", "/requests")
    text = card(body, ident)
    assert "Always: YouTube (the service)" in text, text
    assert "For a while: ytimg.com and its subdomains" in text, text
    assert session("POST", f"/requests/{ident}/approve", {"for": "always"})[0] == 303
    # The service is off the profile's blocked services: its other domains answer too.
    for name in ("s.ytimg.com", "www.youtube.com", "youtu.be"):
        assert wait_for(lambda n=name: answer(box, n, KID) == [SITE], what=name)  # type: ignore[misc]
    kid = profile_of(box, "Kid")
    assert "youtube" not in kid["services"] and kid["categories"] == ["gambling"] and kid["allow"] == ["10bet.com"]
    assert answer(box, "casino.10bet.com", KID) == [SITE]  # the earlier approval stays
    rows = audit.read(box.data)  # the daemon's audit log names the parent's account
    assert any(r["account"] == PARENT and r["action"] == "profile-set" and r["target"] == "Kid" for r in rows), rows
    mine = Accounts(db_path(box.data)).audit_log()  # the dashboard's: what the request allowed
    assert any(r["action"] == "request approved" and r["target"] == "youtube" for r in mine), mine
    _s, body = session("GET", "/requests")
    assert "YouTube (the service)" in card(body, ident)


def test_a_timed_approval_of_a_service_request_allows_the_matched_rule_only(box: Box) -> None:
    ident = ask(box, "www.tiktok.com", TEEN)
    assert kept(box, ident)["rule"] == "tiktok.com"
    session = parent(box)
    assert session("POST", f"/requests/{ident}/approve", {"for": "3600"})[0] == 303
    assert wait_for(lambda: answer(box, "m.tiktok.com", TEEN) == [SITE], what="the rule's subdomain")
    assert answer(box, "v16.tiktokcdn.com", TEEN) == ["127.0.0.1"]  # the rest of the service: still blocked
    assert profile_of(box, "Teen")["services"] == ["tiktok"]
    row = kept(box, ident)
    assert row["state"] == "approved" and abs(row["until"] - (row["decided_at"] + 3600)) < 5


def test_always_on_a_service_its_blocked_category_still_covers_allows_the_rule(box: Box) -> None:
    # "Both" blocks social and tiktok: taking tiktok off its services would change nothing.
    ident = ask(box, "www.tiktok.com", BOTH)
    assert kept(box, ident)["service"] == "tiktok"
    session = parent(box)
    _s, body = session("GET", "/requests")
    text = card(body, ident)
    assert "Would allow: tiktok.com and its subdomains" in text and "the service" not in text, text
    assert session("POST", f"/requests/{ident}/approve", {"for": "always"})[0] == 303
    assert wait_for(lambda: answer(box, "m.tiktok.com", BOTH) == [SITE], what="the rule")
    both = profile_of(box, "Both")
    assert both["services"] == ["tiktok"] and both["allow"] == ["tiktok.com"]
