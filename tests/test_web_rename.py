# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""A parent renames a child's profile on the dashboard: the pause in force and the
filters stay, the profile keeps its id (a link kept from before still opens it), the
DNS answer for the child's device does not change, and the audit log says who did it."""

from __future__ import annotations

import pytest
from webdash import PASSWORD, Page, browser, dash, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def control(dash, **payload):
    answer = dash.daemon.call(dash.daemon.daemon.control.handle(payload))
    assert answer["ok"], answer
    return answer.get("data")


def test_renaming_a_profile_on_its_page_keeps_its_pause_and_its_id(page: Page, dash) -> None:
    control(dash, action="device-set", name="Tablet", ip="127.0.0.2", profile="Child")
    control(dash, action="pause", target="Child", **{"for": 3600})
    assert dash.dig("example.org").status == "NXDOMAIN"  # paused
    child_id = next(p["id"] for p in control(dash, action="state")["household"]["profiles"] if p["name"] == "Child")
    p = page.login()
    page.go("/profiles/Child")
    p.fill("#new-name", "Robin")
    p.click("form[action$='/rename'] button")
    p.wait_for_url(dash.url + "/profiles/Robin")
    assert p.locator("h1").inner_text() == "Robin"
    page.check("profile-renamed")
    state = control(dash, action="state")
    robin = next(x for x in state["profiles"] if x["name"] == "Robin")
    assert robin["paused"] is True and robin["devices"] == ["Tablet"]
    assert next(x["id"] for x in state["household"]["profiles"] if x["name"] == "Robin") == child_id
    assert dash.dig("example.org").status == "NXDOMAIN"  # still paused: the rename ended nothing
    assert dash.dig("example.com").status == "NXDOMAIN"  # its deny list came along
    page.go(f"/profiles/{child_id}")  # a bookmark made before the rename
    assert p.locator("h1").inner_text() == "Robin"
    page.go("/settings")
    assert "profile renamed" in p.locator("body").inner_text()


def test_a_rename_to_a_taken_name_says_so_and_changes_nothing(page: Page, dash) -> None:
    p = page.login()
    name = next(x["name"] for x in control(dash, action="state")["household"]["profiles"] if x["name"] != "Adult")
    page.go(f"/profiles/{name}")
    p.fill("#new-name", "adult")
    p.click("form[action$='/rename'] button")
    assert "already called" in p.locator("body").inner_text()
    assert {x["name"] for x in control(dash, action="state")["household"]["profiles"]} == {name, "Adult"}


def test_a_childs_open_request_can_be_approved_after_the_profile_is_renamed(page: Page, dash) -> None:
    from guardian.web.asks import Asks

    control(dash, action="profile-add", name="Lou", template="young-child")
    control(dash, action="device-set", name="Lou's phone", ip="127.0.0.3", profile="Lou")
    assert dash.dig("10bet.com", source="127.0.0.3").values != ["198.51.100.9"]  # gambling is blocked
    made = Asks(dash.data).create(asker="127.0.0.3", device="Lou's phone", client="127.0.0.3", profile="Lou",
                                  name="10bet.com", rule="10bet.com", category="gambling", reason="category")
    p = page.login()
    page.go("/profiles/Lou")
    p.fill("#new-name", "Louise")
    p.click("form[action$='/rename'] button")
    p.wait_for_url(dash.url + "/profiles/Louise")
    assert Asks(dash.data).get(made.id).profile == "Louise"
    page.go("/requests")
    p.click(f"form[action='/requests/{made.id}/approve'] button[value='3600']")
    assert Asks(dash.data).get(made.id).state == "approved"
    assert dash.dig("10bet.com", source="127.0.0.3").values == ["198.51.100.9"]


def test_turning_all_filtering_off_asks_for_the_password(page: Page, dash) -> None:
    control(dash, action="profile-add", name="Max", template="teen")
    control(dash, action="profile-set", profile="Max", set={"categories": ["adult", "gambling"],
                                                           "bypass_protection": False})
    control(dash, action="device-set", name="Max's phone", ip="127.0.0.4", profile="Max")
    assert dash.dig("www.3movs.com", source="127.0.0.4").values != ["198.51.100.10"]  # adult: blocked
    p = page.login()
    page.go("/profiles/Max")
    with p.expect_navigation():  # an untick saves at once (the page's script)
        p.uncheck("input[name='category'][value='gambling']")
    p.uncheck("input[name='category'][value='adult']")  # the last one: the script waits for the password
    assert p.evaluate("document.activeElement.id") == "filters-current"
    p.fill("#filters-current", "not the password")
    p.click("form.autosave button[type='submit']")
    assert "password is wrong" in p.locator("body").inner_text()
    assert dash.dig("www.3movs.com", source="127.0.0.4").values != ["198.51.100.10"]  # still filtered
    page.go("/profiles/Max")
    p.locator("form.autosave input[name='category']:checked").first.uncheck()
    p.fill("#filters-current", PASSWORD)
    p.click("form.autosave button[type='submit']")
    p.wait_for_url(dash.url + "/profiles/Max")
    assert p.locator("form.autosave input[name='category']:checked").count() == 0
    assert dash.dig("www.3movs.com", source="127.0.0.4").values == ["198.51.100.10"]
