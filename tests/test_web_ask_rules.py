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

KID, TEEN, BOTH, API = "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6"

CONFIG = """
dns:
  listen: ["127.0.0.1:{dns_port}"]
  upstreams: [udp://127.0.0.1:{up_port}]
  rate_limit: 0
  rebind_allow: [10bet.com, 22bet.com, youtube.com, youtu.be, ytimg.com, tiktok.com, tiktokcdn.com]  # the "real" sites are on loopback
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
    - name: Api
      categories: [gambling]
      block_mode: blockpage
    - name: Adult
      categories: []
  devices:
    - {{name: Kid tablet, ip: 127.0.0.2, profile: Kid}}
    - {{name: Teen phone, ip: 127.0.0.4, profile: Teen}}
    - {{name: Both phone, ip: 127.0.0.5, profile: Both}}
    - {{name: Api tablet, ip: 127.0.0.6, profile: Api}}
"""
NAMES = ["www.10bet.com", "casino.10bet.com", "i.ytimg.com", "s.ytimg.com", "www.youtube.com", "youtu.be",
         "www.tiktok.com", "m.tiktok.com", "v16.tiktokcdn.com", "m.10bet.com", "22bet.com", "www.22bet.com"]


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


def call(box: Box, method: str, path: str, form: dict[str, str] | None = None, cookie: str = "",
         csrf: str = "") -> tuple[int, dict[str, str], str]:
    import http.client

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


def sign_in(box: Box) -> str:
    """A parent's session cookie (``name=value``), signed in through the login form."""
    _s, h, body = call(box, "GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)
    assert csrf
    status, h2, _b = call(box, "POST", "/login", {"name": PARENT, "password": PASSWORD},
                          h["set-cookie"].split(";")[0], csrf.group(1))
    assert status == 303, status
    return h2["set-cookie"].split(";", 1)[0]


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


# --- the JSON API -------------------------------------------------------------------------------


def api(box: Box, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
        ) -> tuple[int, Any]:
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", box.web_port, timeout=10)
    h = {"Host": f"127.0.0.1:{box.web_port}", **(headers or {})}
    data = None
    if body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, "/api/v1" + path, body=data, headers=h)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, json.loads(text) if text else None


def test_the_api_lists_requests_by_state_and_answers_them(box: Box) -> None:
    import json

    first, second, third = ask(box, "m.10bet.com", API), ask(box, "22bet.com", API), ask(box, "www.22bet.com", API)
    assert api(box, "GET", "/requests")[0] == 401  # no session, no token
    cookie = sign_in(box)
    session = {"Cookie": cookie}
    status, found = api(box, "GET", "/requests?state=new", headers=session)
    assert status == 200, found
    mine = {r["id"]: r for r in found["requests"] if r["profile"] == "Api"}
    assert set(mine) == {first, second, third}
    row = mine[first]
    assert (row["name"], row["rule"], row["device"], row["client"], row["state"], row["always_allows"]) == (
        "m.10bet.com", "10bet.com", "Api tablet", API, "new", "rule")
    assert "key" not in row  # the child's link secret stays on the child's side
    assert [r["state"] for r in found["requests"]] == ["new"] * len(found["requests"])
    assert api(box, "GET", "/requests?state=maybe", headers=session) == (
        400, {"error": "state: one of new, approved, declined, expired"})

    # A cookie session's change needs its CSRF token (as the pages' forms do).
    assert api(box, "POST", f"/requests/{first}/approve", {"for": 900}, session)[0] == 403
    csrf = api(box, "GET", "/session", headers=session)[1]["csrf"]
    with_csrf = {**session, "X-CSRF-Token": csrf}
    for bad in ({"for": "forever"}, {"for": 60}, {"for": True}, {}):
        status, answer = api(box, "POST", f"/requests/{first}/approve", bad, with_csrf)
        assert status == 400 and "for:" in answer["error"], (bad, answer)
    assert api(box, "POST", f"/requests/{first}/approve", "[1, 2]", with_csrf)[0] == 400
    assert answer_of(box, "m.10bet.com") == ["127.0.0.1"]  # nothing changed
    status, answer = api(box, "POST", f"/requests/{first}/approve", {"for": 900}, with_csrf)
    assert status == 200, answer
    made = answer["request"]
    assert made["state"] == "approved" and made["decided_by"] == PARENT and made["allowed"] == "rule"
    assert abs(made["until"] - (made["decided_at"] + 900)) < 5
    assert wait_for(lambda: answer_of(box, "m.10bet.com") == [SITE], what="the approved rule")
    assert api(box, "POST", f"/requests/{first}/approve", {"for": "always"}, with_csrf)[0] == 409  # answered
    assert api(box, "POST", "/requests/99999/approve", {"for": "3600"}, with_csrf)[0] == 404
    assert api(box, "POST", "/requests/nope/decline", {}, with_csrf)[0] == 404

    # An API token needs no CSRF token; a decline keeps its message, and allows nothing.
    accounts = Accounts(db_path(box.data))
    account = accounts.find(PARENT)
    assert account is not None
    bearer = {"Authorization": f"Bearer {accounts.create_token(account, 'telco app')}"}
    status, answer = api(box, "POST", f"/requests/{second}/decline", {"message": "x" * 201}, bearer)
    assert status == 400 and "at most 200" in answer["error"]
    status, answer = api(box, "POST", f"/requests/{second}/decline", {"message": "Not on a school night"}, bearer)
    assert status == 200, answer
    assert answer["request"]["state"] == "declined" and answer["request"]["message"] == "Not on a school night"
    assert answer_of(box, "22bet.com") == ["127.0.0.1"]
    status, answer = api(box, "POST", f"/requests/{third}/approve", {"for": "today"}, bearer)
    assert status == 200 and answer["request"]["until"] is not None, answer
    assert wait_for(lambda: answer_of(box, "www.22bet.com") == [SITE], what="today's approval")

    status, found = api(box, "GET", "/requests?state=approved", headers=bearer)
    assert {first, third} <= {r["id"] for r in found["requests"]} and second not in {
        r["id"] for r in found["requests"]}
    status, found = api(box, "GET", "/requests?state=declined", headers=bearer)
    assert [r["id"] for r in found["requests"] if r["profile"] == "Api"] == [second]
    # Both acted as the parent's account, in the dashboard's audit log and the daemon's.
    assert any(r["action"] == "request declined" and r["target"] == str(second) and r["account"] == PARENT
               for r in accounts.audit_log())
    assert any(r["action"] == "allow" and r["account"] == PARENT and r["target"] == "Api" and "10bet.com" in json.dumps(r)
               for r in audit.read(box.data))


def test_the_api_approves_a_service_request_for_good(box: Box) -> None:
    cookie = sign_in(box)
    csrf = api(box, "GET", "/session", headers={"Cookie": cookie})[1]["csrf"]
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
    ident = ask(box, "v16.tiktokcdn.com", TEEN)  # Teen blocks the tiktok service only
    found = {r["id"]: r for r in api(box, "GET", "/requests?state=new", headers=headers)[1]["requests"]}
    assert found[ident]["service"] == "tiktok" and found[ident]["always_allows"] == "service"
    status, answer = api(box, "POST", f"/requests/{ident}/approve", {"for": "always"}, headers)
    assert status == 200 and answer["request"]["allowed"] == "service" and answer["request"]["until"] is None
    assert wait_for(lambda: answer_of(box, "v16.tiktokcdn.com", TEEN) == [SITE], what="the service")
    assert profile_of(box, "Teen")["services"] == []


def answer_of(box: Box, name: str, source: str = API) -> list[str]:
    return answer(box, name, source)
