# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""A telco-provisioned box: the first account needs the setup code printed on the box
(guessing it is throttled like a password), and the dashboard wears the brand."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from webdash import PASSWORD, dash  # noqa: F401 - fixtures

from guardian.provision import hash_setup_code

pytestmark = pytest.mark.slow

CODE = "AB12-CD34"
PROVISION = f"""
brand:
  name: "Kidnet <Home>"
  colours: {{primary: "#123456", accent: "#abcdef"}}
helpline: {{name: "Child Helpline <116 111>", phone: "+33 1 23 45 67 89", url: "https://helpline.example/"}}
setup_code_hash: "{hash_setup_code(CODE)}"
"""


def setup(dash, fields: dict[str, str], source: str = "127.0.0.1"):
    _, _, page, cookies = dash.http("GET", "/setup", source=source)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, page[:300]
    cookie = "; ".join(c.split(";", 1)[0] for c in cookies)
    body = urllib.parse.urlencode({"csrf": token.group(1), **fields})
    return dash.http("POST", "/setup", body, {"Cookie": cookie}, source=source)


def test_the_first_account_needs_the_boxs_setup_code_and_guesses_are_throttled(dash) -> None:
    page = dash.http("GET", "/setup")[2]
    assert 'name="code"' in page
    account = {"name": "Alex", "password": PASSWORD, "again": PASSWORD}
    assert setup(dash, {**account, "code": "WRONG-CODE"}, "127.0.0.70")[0] == 403
    assert setup(dash, account, "127.0.0.70")[0] == 403  # no code at all
    for _ in range(3):
        setup(dash, {**account, "code": "NOPE-NOPE"}, "127.0.0.70")
    status, headers, _, _ = setup(dash, {**account, "code": CODE}, "127.0.0.70")
    assert status == 429 and int(headers["retry-after"]) > 800  # five wrong guesses: locked out
    assert dash.accounts().count() == 0
    status, headers, _, _ = setup(dash, {**account, "code": "ab12 cd34"}, "127.0.0.71")  # as typed from the label
    assert status == 303 and headers["location"] == "/welcome"  # then the guided first run
    assert dash.accounts().find("Alex") is not None


def test_the_dashboard_wears_the_brand(dash) -> None:
    _, headers, page, _ = dash.http("GET", "/login")
    assert "Kidnet &lt;Home&gt;" in page and "<Home>" not in page  # escaped like everything else
    assert "<bdi>Kidnet &lt;Home&gt;</bdi>" in page  # kept whole in a right-to-left page
    assert '<link rel="stylesheet" href="/brand/brand.css">' in page
    status, headers, css, _ = dash.http("GET", "/brand/brand.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert "--brand: #123456;" in css and "--accent: #abcdef;" in css
    assert dash.http("GET", "/brand/logo")[0] == 404  # none provisioned


def test_the_helpline_is_where_parents_read_about_risks_and_settings_say_how_the_box_is(dash) -> None:
    from test_web_security import Client

    c = Client(dash)
    c.login()
    for path in ("/activity", "/week"):
        page = c.request("GET", path)[2]
        assert "Child Helpline &lt;116 111&gt;" in page and 'href="tel:+33 1 23 45 67 89"' in page, path
    settings = c.request("GET", "/settings")[2]
    assert "Health" in settings and "listening" in settings.lower()
