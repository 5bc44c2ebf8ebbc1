# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""Settings a telco locks in provision.yaml: the real dashboard refuses changes to them
(pages and API, 403 "Managed by <brand>") and shows them as managed; the household keeps
its provisioned profiles."""

from __future__ import annotations

import json

import pytest
from test_web_security import Client, form_token
from webdash import Page, browser, dash  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

PROVISION = """
brand: {name: "Kidnet <Home>"}
profiles:
  - {name: Child, categories: [adult], deny: [example.com]}
  - {name: Adult, categories: []}
default_profile: Adult
privacy: {mode: risks-only}
locked: [profiles, privacy.mode]
"""


def state(dash) -> dict:
    return json.loads(dash.daemon.call(_state(dash)))


async def _state(dash) -> str:
    import asyncio

    from guardian.control import request

    answer = await asyncio.to_thread(request, dash.data / "control.sock", {"action": "state"})
    return json.dumps(answer["data"])


def test_locked_profiles_are_refused_on_the_pages_and_shown_as_managed(dash) -> None:
    c = Client(dash)
    assert c.login()[0] == 303
    before = state(dash)
    csrf = c.csrf()
    for path, fields in (("/profiles", {"name": "Robin", "template": "young-child"}),
                         ("/profiles/Child/filters", {"category": "gambling"}),
                         ("/profiles/Child/list", {"list": "allow", "op": "add", "domain": "games.example"}),
                         ("/profiles/Child/budget", {"target": "games", "minutes": "30"}),
                         ("/profiles/Child/remove", {})):
        status, _, text, _ = c.request("POST", path, {"csrf": csrf, **fields})
        assert status == 403, (path, status)
        assert "Managed by Kidnet &lt;Home&gt;" in text, path  # escaped like everything else
    after = state(dash)
    assert [p["name"] for p in after["household"]["profiles"]] == [p["name"] for p in before["household"]["profiles"]]
    child = next(p for p in after["household"]["profiles"] if p["name"] == "Child")
    assert child["categories"] == ["adult"] and not child.get("allow") and not child.get("budgets")
    # The pages say so instead of offering the forms.
    page = c.request("GET", "/profiles/Child")[2]
    assert "Managed by Kidnet &lt;Home&gt;" in page
    home = c.request("GET", "/")[2]
    assert "Managed by Kidnet &lt;Home&gt;" in home and 'action="/profiles"' not in home
    settings = c.request("GET", "/settings")[2]
    assert "Managed by Kidnet &lt;Home&gt;" in settings and "Privacy mode" in settings
    # A parent's everyday actions are not settings: pausing still works.
    status, _, _, _ = c.request("POST", "/act/pause?back=/", {"csrf": csrf, "target": "Child", "for": "900"})
    assert status == 303


def test_locked_profiles_are_refused_through_the_api(dash) -> None:
    c = Client(dash)
    assert c.login()[0] == 303
    csrf = json.loads(c.request("GET", "/api/v1/session")[2])["csrf"]
    status, head, text, _ = c.dash.http("POST", "/api/v1/profiles", json.dumps({"name": "Robin",
                                                                                "template": "young-child"}),
                                        {"Content-Type": "application/json", "X-CSRF-Token": csrf,
                                         "Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())})
    assert status == 403 and head["content-type"].startswith("application/json")
    body = json.loads(text)
    assert body["error"].startswith("Managed by Kidnet <Home>") and body["setting"] == "profiles"
    assert "Robin" not in [p["name"] for p in state(dash)["household"]["profiles"]]
    assert form_token  # the same helpers as the security tests


def test_the_control_socket_refuses_locked_settings_whoever_asks(dash) -> None:
    """The daemon enforces the lock too: a client skipping the dashboard's check (or a
    compromised dashboard process) still cannot change the provisioned profiles."""
    import asyncio

    from guardian.control import request

    async def ask(payload: dict) -> str:
        return json.dumps(await asyncio.to_thread(request, dash.data / "control.sock", payload))

    before = state(dash)
    for payload in ({"action": "profile-add", "name": "Robin", "template": "young-child", "actor": "mum"},
                    {"action": "profile-set", "profile": "Child", "set": {"categories": []}, "actor": "mum"},
                    {"action": "profile-list", "profile": "Child", "list": "allow", "op": "add",
                     "domain": "games.example", "actor": "mum"},
                    {"action": "profile-remove", "profile": "Child", "actor": "mum"}):
        answer = json.loads(dash.daemon.call(ask(payload)))
        assert answer["ok"] is False, payload
        assert answer["error"].startswith("Managed by Kidnet <Home>: profiles"), answer
    after = state(dash)
    assert after["household"]["profiles"] == before["household"]["profiles"]


@pytest.mark.parametrize("width", [375, 1280])
def test_a_parent_sees_the_locked_profile_as_managed_in_chromium(browser, dash, width) -> None:  # noqa: F811
    page = Page(browser, dash, width=width)
    try:
        p = page.login()
        page.go("/profiles/Child")
        main = p.inner_text("main")
        assert "Managed by Kidnet <Home>" in main  # the brand shown as text, not markup
        # Shown as it is, nothing offered to change: every control is disabled, no button shows.
        assert p.locator("form[action^='/profiles/Child/'] :is(input, select, button):enabled").count() == 0
        assert p.locator("form[action^='/profiles/Child/'] button:visible").count() == 0
        assert p.locator("input[name='category'][value='adult']").is_checked()
        page.go("/settings")
        assert "Managed by Kidnet <Home>" in p.inner_text("main") and "Privacy mode" in p.inner_text("main")
        page.check("locked-settings")
        page.go("/profiles/Child")
        page.check("locked-profile")
    finally:
        page.close()
