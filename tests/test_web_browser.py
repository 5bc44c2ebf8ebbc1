# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""The dashboard in a real Chromium against the real daemon and the real dashboard
process on loopback: what a parent does on a phone, and what DNS then answers."""

from __future__ import annotations

import time

import pytest
from webdash import PARENT, PASSWORD, Page, browser, dash, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def blocked(answer) -> bool:
    return answer.status == "NXDOMAIN" or any(v in ("0.0.0.0", "::") for v in answer.values)


def wait_for(check, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_first_run_creates_the_account_then_sign_out_and_in(page: Page, dash) -> None:
    if dash.accounts().count():
        pytest.fail("the first-run test must run on a fresh dashboard")
    p = page.go("/")
    assert p.url.endswith("/setup")
    page.check("setup")
    p.fill("#name", PARENT)
    p.fill("#password", "aaaaaaaaaaaa")  # long enough for the browser, under the server's floor
    p.fill("#again", "aaaaaaaaaaaa")
    p.click("form[action='/setup'] button")
    assert "different characters" in p.inner_text(".error")
    p.fill("#name", PARENT)
    p.fill("#password", PASSWORD)
    p.fill("#again", PASSWORD)
    p.click("form[action='/setup'] button")
    p.wait_for_url(dash.url + "/welcome")  # the guided first run (tests/test_web_firstrun.py); skipped here
    p.click("form[action='/welcome/step'] button[value='done']")
    p.wait_for_url(dash.url + "/")
    assert "Child" in p.inner_text("main")
    p.click("form[action='/logout'] button")
    p.wait_for_url(dash.url + "/login")
    page.check("login")
    assert page.go("/setup").url.endswith("/login")  # first run is over
    page.login()
    assert p.locator(".card.profile").count() == 2


def test_assigning_a_device_to_the_child_blocks_its_queries(page: Page, dash) -> None:
    assert not blocked(dash.dig("example.com"))  # unknown: the default profile (Adult)
    p = page.login()

    def listed() -> bool:
        page.go("/")
        return p.locator("form.assign input[name='ip'][value='127.0.0.2']").count() > 0

    wait_for(listed)
    form = p.locator("form.assign", has=p.locator("input[value='127.0.0.2']"))
    form.locator("input[name='name']").fill("Sam's tablet")
    form.locator("select[name='profile']").select_option("Child")
    form.locator("button").click()
    p.wait_for_url(dash.url + "/")
    page.check("home")
    assert blocked(dash.dig("example.com"))  # Child's deny list
    assert not blocked(dash.dig("kids.example"))
    page.go("/devices")
    names = p.locator("input[name='was']").evaluate_all("els => els.map(e => e.value)")
    assert names == ["Sam's tablet"]
    page.check("devices")


def _card(p, name: str):
    return p.locator(f".card.profile[data-profile='{name}']")


def test_pause_from_the_childs_card_changes_the_dns_answer(page: Page, dash) -> None:
    dash.daemon.call(_assign(dash))
    p = page.login()
    assert not blocked(dash.dig("kids.example"))
    _card(p, "Child").locator("button[name='for'][value='900']").click()
    p.wait_for_url(dash.url + "/")
    assert "Paused until" in _card(p, "Child").inner_text()
    assert blocked(dash.dig("kids.example"))
    _card(p, "Child").locator("form[action='/act/resume'] button").click()
    p.wait_for_url(dash.url + "/")
    assert "Allowed" in _card(p, "Child").inner_text()
    assert not blocked(dash.dig("kids.example"))


def test_a_schedule_from_the_grid_then_bonus_from_the_card(page: Page, dash) -> None:
    dash.daemon.call(_assign(dash))
    p = page.login()
    page.go("/profiles/Child")
    page.check("profile")
    form = p.locator("form.schedule")
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        form.locator(f"input[name='day'][value='{day}']").check()
    form.locator("input[name='label']").fill("All day")
    form.locator("input[name='from']").fill("00:00")
    form.locator("input[name='to']").fill("00:00")  # equal: the whole day
    form.locator("button").click()
    p.wait_for_url(dash.url + "/profiles/Child")
    assert "All day" in p.inner_text("main")
    assert blocked(dash.dig("kids.example"))
    page.go("/")
    assert "All day until" in _card(p, "Child").inner_text()
    _card(p, "Child").locator("button[name='minutes'][value='15']").click()
    p.wait_for_url(dash.url + "/")
    assert "Bonus time until" in _card(p, "Child").inner_text()
    assert not blocked(dash.dig("kids.example"))  # the bonus lifts the schedule
    page.go("/profiles/Child")
    row = p.locator("li", has_text="All day")
    row.locator("button").click()
    p.wait_for_url(dash.url + "/profiles/Child")
    assert "All day" not in p.inner_text("main")


def test_allow_for_an_hour_from_the_activity_page(page: Page, dash) -> None:
    dash.daemon.call(_assign(dash))
    assert blocked(dash.dig("example.com"))
    p = page.login()

    def shown() -> bool:
        page.go("/activity?decision=blocked&domain=example.com")
        return p.locator("li.q.blocked").count() > 0

    wait_for(shown)
    page.check("activity")
    line = p.locator("li.q.blocked").first
    line.locator("summary").click()
    assert "deny list" in line.inner_text()
    line.locator("button[name='for'][value='3600']").click()
    p.wait_for_url(dash.url + "/activity")
    assert not blocked(dash.dig("example.com"))


def test_a_second_parent_and_the_audit_log_says_who_did_what(page: Page, browser, dash) -> None:
    p = page.login()
    page.go("/settings")
    if dash.accounts().find("Robin") is None:
        p.fill("#new-name", "Robin")
        p.fill("#new-password", "another good secret")
        p.fill("#add-current", PASSWORD)
        p.click("form[action='/settings/accounts'] button")
        p.wait_for_url(dash.url + "/settings")
    assert "Robin" in p.inner_text("main")
    second = Page(browser, dash)
    try:
        q = second.login("Robin", "another good secret")
        _card(q, "Adult").locator("button[name='for'][value='3600']").click()
        q.wait_for_url(dash.url + "/")
        _card(q, "Adult").locator("form[action='/act/resume'] button").click()
        q.wait_for_url(dash.url + "/")
    finally:
        second.close()
    page.go("/settings")
    page.check("settings")
    rows = [r.inner_text() for r in p.locator("table.audit tbody tr").all()]
    assert any("Robin" in r and "pause Adult" in r for r in rows), rows
    assert any(PARENT in r and "account created Robin" in r for r in rows), rows


def test_arabic_is_right_to_left_and_french_comes_from_the_browser(page: Page, browser, dash) -> None:
    dash.ensure_parent()
    french = Page(browser, dash, locale="fr-FR")
    try:
        french.go("/login")
        assert french.page.get_attribute("html", "lang") == "fr"
        assert "Se connecter" in french.page.inner_text("main")
    finally:
        french.close()
    p = page.login()
    page.go("/settings")
    p.select_option("#language", "ar")
    p.wait_for_url(dash.url + "/settings")
    if p.get_attribute("html", "dir") != "rtl":  # without JavaScript the form is submitted by its button
        p.click("form[action='/settings/language'] button")
    assert p.get_attribute("html", "dir") == "rtl"
    assert p.get_attribute("html", "lang") == "ar"
    assert "الإعدادات" in p.inner_text("nav")
    page.check("settings-ar")
    page.go("/")
    page.check("home-ar")
    page.go("/settings")
    p.select_option("#language", "en")
    p.wait_for_url(dash.url + "/settings")
    if p.get_attribute("html", "dir") != "ltr":
        p.click("form[action='/settings/language'] button")
    assert p.get_attribute("html", "dir") == "ltr"


def test_add_a_child_from_a_template_then_ask_whether_a_site_is_blocked(page: Page, dash) -> None:
    p = page.login()
    form = p.locator("form[action='/profiles']")
    form.locator("input[name='name']").fill("Lou")
    form.locator("select[name='template']").select_option("young-child")
    form.locator("button").click()
    p.wait_for_url(dash.url + "/")
    assert _card(p, "Lou").count() == 1
    page.go("/activity")
    check = p.locator("form", has=p.locator("input[name='check']"))
    check.locator("input[name='check']").fill("www.3movs.com")  # on the bundled adult list
    check.locator("select[name='profile']").select_option("Child")
    check.locator("button").click()
    assert "Blocked: in a blocked category (adult)" in p.inner_text(".check")
    check = p.locator("form", has=p.locator("input[name='check']"))
    check.locator("input[name='check']").fill("kids.example")
    check.locator("select[name='profile']").select_option("Adult")
    check.locator("button").click()
    assert p.inner_text(".check").startswith("Allowed")
    page.go("/profiles/Lou")
    p.click("form[action='/profiles/Lou/remove'] button")
    p.wait_for_url(dash.url + "/")
    assert _card(p, "Lou").count() == 0


def test_the_week_digest_and_marking_risk_events_seen(page: Page, dash) -> None:
    dash.daemon.call(_assign(dash))
    dash.daemon.call(_budget_and_bedtime(dash))
    dash.dig("www.3movs.com")  # adult: a risk event for Sam's tablet
    p = page.login()

    def has_events() -> bool:
        page.go("/activity")
        return p.locator("form[action='/activity/seen'] input[name='id'][value='all']").count() == 1 and \
            p.locator("li.event .badge").count() > 0

    wait_for(has_events)
    p.click("form[action='/activity/seen']:has(input[value='all']) button")
    p.wait_for_url(dash.url + "/activity")
    assert p.locator("li.event .badge").count() == 0  # none new any more
    page.go("/week")
    child = p.locator("section.digest", has=p.locator("h2", has_text="Child"))
    assert "blocked" in child.inner_text()
    assert child.locator("table.usage-table tbody tr", has_text="games").count() == 1
    assert child.locator("table.usage-table tbody tr", has_text="games").locator("td").last.inner_text() == "60"
    page.check("week")


def test_a_category_toggle_saves_on_change_and_without_javascript_with_save(page: Page, browser, dash) -> None:
    dash.daemon.call(_assign(dash))
    assert not blocked(dash.dig("10bet.com"))
    p = page.login()
    page.go("/profiles/Child")
    with p.expect_navigation():
        p.check("input[name='category'][value='gambling']")  # the page's script submits it
    assert p.is_checked("input[name='category'][value='gambling']")
    assert blocked(dash.dig("10bet.com"))  # on the bundled gambling list
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    try:
        q = plain.new_page()
        q.goto(dash.url + "/login")
        q.fill("#name", PARENT)
        q.fill("#password", PASSWORD)
        q.click("form[action='/login'] button")
        q.goto(dash.url + "/profiles/Child")
        q.uncheck("input[name='category'][value='gambling']")
        assert blocked(dash.dig("10bet.com"))  # nothing saved until Save
        q.click("form.autosave button[type='submit']")
        q.wait_for_url(dash.url + "/profiles/Child")
        assert not q.is_checked("input[name='category'][value='gambling']")
    finally:
        plain.close()
    assert not blocked(dash.dig("10bet.com"))


@pytest.mark.parametrize("width", [375, 1280])
def test_every_page_at_phone_and_desktop_width(browser, dash, width: int) -> None:
    dash.daemon.call(_assign(dash))
    dash.daemon.call(_budget_and_bedtime(dash))
    page = Page(browser, dash, width=width)
    try:
        page.login()
        page.go("/")
        assert page.page.locator("svg.week rect").count() == 7  # games this week against its budget
        page.go("/profiles/Child")
        assert page.page.locator("svg.grid rect.blocked").count() >= 2  # bedtime, past midnight
        for path, name in (("/", "home"), ("/devices", "devices"), ("/activity", "activity"),
                           ("/profiles/Child", "profile"), ("/week", "week"), ("/settings", "settings")):
            page.go(path)
            page.check(name)
        page.context.clear_cookies()
        page.go("/login")
        page.check("login")
    finally:
        page.close()


async def _assign_async(dash) -> None:
    control = dash.daemon.daemon.control
    await control.handle({"action": "device-set", "name": "Sam's tablet", "ip": "127.0.0.2", "profile": "Child"})


def _assign(dash):
    """Sam's tablet (127.0.0.2) in Child, whatever the tests before did."""
    return _assign_async(dash)


async def _budget_and_bedtime(dash) -> None:
    control = dash.daemon.daemon.control
    await control.handle({"action": "budget-set", "profile": "Child", "target": "games", "minutes": 60})
    state = (await control.handle({"action": "state"}))["data"]
    child = next(p for p in state["household"]["profiles"] if p["name"] == "Child")
    if not any(s["name"] == "Bedtime" for s in child["schedules"]):
        await control.handle({"action": "schedule-add", "profile": "Child", "name": "Bedtime",
                              "days": ["sun", "mon", "tue", "wed", "thu"], "from": "21:00", "to": "07:00",
                              "block": "all"})
