# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""The guided first run after the first account: one profile per child from a template,
then the devices Guardian has seen, each given a name and a child; every step can be
skipped, and a parent who leaves half-way is brought back to where they stopped."""

from __future__ import annotations

import time

import pytest
from webdash import PARENT, PASSWORD, Page, browser, dash, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def blocked(answer) -> bool:
    """Not the upstream's answer (young-child's block mode answers with the block page)."""
    return "198.51.100.10" not in answer.values


def test_first_run_children_then_devices_resumable_then_done(page: Page, browser, dash) -> None:
    assert dash.accounts().count() == 0, "needs a fresh dashboard"
    assert not blocked(dash.dig("www.3movs.com", source="127.0.0.9"))  # a device Guardian now knows by its address
    p = page.go("/")
    p.fill("#name", PARENT)
    p.fill("#password", PASSWORD)
    p.fill("#again", PASSWORD)
    p.click("form[action='/setup'] button")
    p.wait_for_url(dash.url + "/welcome")
    assert p.locator("h1").inner_text().strip() != ""
    page.check("welcome-children")
    form = p.locator("form[action='/welcome/child']")
    form.locator("input[name='name']").fill("Sam")
    form.locator("select[name='template']").select_option("young-child")
    form.locator("button").click()
    p.wait_for_url(dash.url + "/welcome")
    assert p.locator("ul.children li", has_text="Sam").count() == 1
    # One per child: a second child is a second profile.
    form.locator("input[name='name']").fill("Lou")
    form.locator("select[name='template']").select_option("teen")
    form.locator("button").click()
    p.wait_for_url(dash.url + "/welcome")
    assert p.locator("ul.children li").count() == 2
    p.click("form[action='/welcome/step'] button[value='devices']")
    p.wait_for_url(dash.url + "/welcome")
    page.check("welcome-devices")

    # Leave half-way: signing in again brings the parent back to the devices step.
    p.click("form[action='/logout'] button")
    p.wait_for_url(dash.url + "/login")
    p.fill("#name", PARENT)
    p.fill("#password", PASSWORD)
    p.click("form[action='/login'] button")
    p.wait_for_url(dash.url + "/welcome")
    row = p.locator("li.discovered", has_text="127.0.0.9")
    assert row.count() == 1, p.inner_text("main")
    row.locator("input[name='name']").fill("Sam's <tablet>")
    row.locator("select[name='profile']").select_option("Sam")
    row.locator("button").click()
    p.wait_for_url(dash.url + "/welcome")
    assert "Sam's <tablet>" in p.inner_text("ul.assigned")  # shown as text, escaped
    end = time.monotonic() + 10
    while not blocked(dash.dig("www.3movs.com", source="127.0.0.9")):  # young-child blocks adult sites
        assert time.monotonic() < end, "the assigned device is not filtered"
        time.sleep(0.2)
    p.click("form[action='/welcome/step'] button[value='done']")
    p.wait_for_url(dash.url + "/")
    assert p.locator(".card.profile", has_text="Sam").count() == 1
    assert p.locator("a[href='/welcome']").count() == 0  # finished: no reminder
    assert page.go("/welcome").url == dash.url + "/"  # and the flow does not come back
    page.check("home-after-welcome")


def test_every_step_can_be_skipped(page: Page, dash) -> None:
    dash.ensure_parent()
    (dash.data / "web" / "first-run").write_text("children\n")  # as the first account leaves it
    p = page.go("/login")
    p.fill("#name", PARENT)
    p.fill("#password", PASSWORD)
    p.click("form[action='/login'] button")
    p.wait_for_url(dash.url + "/welcome")  # the first run is not over yet
    page.go("/")
    assert p.locator("a[href='/welcome']").count() == 1  # home reminds the parent to finish
    page.go("/welcome")
    p.click("form[action='/welcome/step'] button[value='done']")
    p.wait_for_url(dash.url + "/")
    assert p.locator("a[href='/welcome']").count() == 0
