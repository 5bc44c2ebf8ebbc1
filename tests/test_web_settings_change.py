# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""A parent changes the filtering service's settings on the Settings page (Chromium, the
real daemon and dashboard): retention and time zone at once; the resolvers and the
privacy mode only with the password again, and a switch to anonymous says what it
erases; the DNS answers follow a new resolver; the lists download on request."""

from __future__ import annotations

import sqlite3

import pytest
from fakedns import FakeDns
from support import ZONE
from webdash import PARENT, PASSWORD, Page, browser, dash, page  # noqa: F401 - fixtures

from guardian import choices
from guardian.store.records import DB_NAME

pytestmark = pytest.mark.slow
CONFIG_EXTRA = "pack_lists: false\n"  # nothing to download from outside: "download now" stays on the box


@pytest.fixture
def other_resolver():
    fake = FakeDns(zone={k: [(t, v.replace("93.184", "93.185")) for t, v in r] for k, r in ZONE.items()}).start()
    yield fake
    fake.stop()


def open_form(page: Page):
    p = page.go("/settings")
    p.click("#change-service summary")
    return p


def test_retention_and_time_zone_change_at_once_and_are_in_the_audit_log(page: Page, dash) -> None:
    page.login()
    p = open_form(page)
    p.fill("#query_days", "3")
    p.fill("#timezone", "America/New_York")
    page.check("settings-change")
    p.click("form[action='/settings/service'] button")
    p.wait_for_url(dash.url + "/settings#service")
    assert "3" in p.locator("[data-setting='query_days']").inner_text()
    assert "America/New_York" in p.locator("section#service").inner_text()
    assert dash.daemon.daemon.settings.store.query_days == 3
    assert "settings changed" in p.locator("body").inner_text()
    assert "query_days: 3" in choices.path_for(dash.data).read_text().replace("\n  ", " ")
    dash.daemon.call(dash.daemon.daemon.control.handle({"action": "settings-set", "timezone": "Europe/Paris"}))


def test_a_new_resolver_needs_the_password_and_then_answers(page: Page, dash, other_resolver) -> None:
    before = dash.dig("example.com").values
    page.login()
    p = open_form(page)
    p.fill("#upstreams", f"udp://127.0.0.1:{other_resolver.port}")
    p.click("form[action='/settings/service'] button")
    assert "password is wrong" in p.locator("body").inner_text()
    assert dash.dig("example.com").values == before
    p = open_form(page)
    p.fill("#upstreams", f"udp://127.0.0.1:{other_resolver.port}")
    p.fill("#service-current", PASSWORD)
    p.click("form[action='/settings/service'] button")
    p.wait_for_url(dash.url + "/settings#service")
    assert f"127.0.0.1:{other_resolver.port}" in p.locator("section#service").inner_text()
    assert dash.dig("example.com").values == ["93.185.216.34"]
    p = open_form(page)
    p.fill("#upstreams", "tls://not a resolver")
    p.fill("#service-current", PASSWORD)
    p.click("form[action='/settings/service'] button")
    assert "Not saved" in p.locator("body").inner_text()  # with what is wrong; nothing changed
    assert dash.dig("example.com").values == ["93.185.216.34"]


def test_switching_to_anonymous_warns_asks_again_and_erases_who_asked_what(page: Page, dash) -> None:
    dash.daemon.call(dash.daemon.daemon.control.handle({"action": "device-set", "name": "Tablet", "ip": "127.0.0.2",
                                                        "profile": "Child"}))
    dash.dig("example.org")
    dash.daemon.call(dash.daemon.daemon.recorder.flush())
    page.login()
    p = open_form(page)
    assert "cannot be undone" in p.locator("#change-service").inner_text()
    p.check("input[name='privacy'][value='anonymous']")
    p.fill("#service-current", PASSWORD)
    p.click("form[action='/settings/service'] button")
    p.wait_for_url(dash.url + "/settings#service")
    assert "anonymous" in p.locator("section#service").inner_text().lower()
    with sqlite3.connect(dash.data / DB_NAME) as db:
        assert db.execute("SELECT count(*) FROM queries WHERE client_id IS NOT NULL").fetchone()[0] == 0
    page.check("settings-anonymous")


def test_download_now_answers_when_done(page: Page, dash) -> None:
    page.login()
    p = page.go("/settings")
    p.click("form[action='/settings/lists/refresh'] button")
    assert "checked now" in p.locator("section#service [role=status]").inner_text()


def test_the_household_downloads_and_a_restore_checks_it_line_by_line(page: Page, dash, tmp_path) -> None:
    def names():
        state = dash.daemon.call(dash.daemon.daemon.control.handle({"action": "state"}))["data"]
        return [x["name"] for x in state["household"]["profiles"]]

    page.login()
    p = page.go("/settings")
    with p.expect_download() as got:
        p.click("#household-backup a.button")
    saved = tmp_path / "household.yaml"
    got.value.save_as(saved)
    text = saved.read_text()
    assert "\nhousehold:\n" in text and "Child" in text
    before = names()
    # A mistake on one line: refused with the file's name and that line, nothing changed.
    broken = tmp_path / "broken.yaml"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "- adult")  # Child's one category
    lines.insert(at + 1, lines[at].replace("adult", "no-such-category"))
    broken.write_text("\n".join(lines) + "\n")
    p = page.go("/settings")
    p.set_input_files("#household-file", str(broken))
    p.fill("#restore-current", PASSWORD)
    p.click("form[action='/settings/household'] button")
    body = p.locator("body").inner_text()
    assert "Not saved" in body and "broken.yaml:" in body and "no-such-category" in body, body
    assert names() == before
    # The wrong password: refused before the file is even read.
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(text.replace("name: Adult", "name: Grown-ups").replace("default_profile: Adult",
                                                                              "default_profile: Grown-ups"))
    p = page.go("/settings")
    p.set_input_files("#household-file", str(renamed))
    p.fill("#restore-current", "not the password")
    p.click("form[action='/settings/household'] button")
    assert "password is wrong" in p.locator("body").inner_text() and names() == before
    p = page.go("/settings")
    p.set_input_files("#household-file", str(renamed))
    p.fill("#restore-current", PASSWORD)
    p.click("form[action='/settings/household'] button")
    p.wait_for_url(dash.url + "/")
    assert "Grown-ups" in names() and "Adult" not in names()
    page.go("/settings")
    assert "household restored" in p.locator("body").inner_text()
    page.check("settings-backup")


def test_the_api_renames_a_profile_and_changes_settings_with_a_token(dash) -> None:
    import json

    from guardian.web.accounts import Accounts, db_path

    dash.ensure_parent()
    accounts = Accounts(db_path(dash.data))
    account = accounts.find(PARENT)
    assert account is not None
    bearer = {"Authorization": f"Bearer {accounts.create_token(account, 'telco app')}",
              "Content-Type": "application/json"}

    def api(method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, _h, text, _c = dash.http(method, "/api/v1" + path, json.dumps(body) if body is not None else "",
                                         bearer)
        return status, json.loads(text) if text else {}

    status, doc = api("GET", "/openapi.json")
    assert {"/api/v1/settings", "/api/v1/profiles/{name}/rename"} <= set(doc["paths"])
    status, got = api("GET", "/settings")
    assert status == 200 and got["retention"]["event_days"] == 90
    assert api("POST", "/settings", {"event_days": 30}) == (200, {"message": "settings saved",
                                                                  "changed": ["event_days"]})
    assert dash.daemon.daemon.settings.store.event_days == 30
    status, answer = api("POST", "/settings", {"privacy": "risks-only"})  # no password
    assert status == 403 and dash.daemon.daemon.settings.privacy.mode != "risks-only"
    status, answer = api("POST", "/settings", {"privacy": "risks-only", "password": PASSWORD})
    assert status == 200 and dash.daemon.daemon.settings.privacy.mode == "risks-only", answer
    status, answer = api("POST", "/settings", {"query_days": "many"})
    assert status == 400 and "query_days" in answer["error"]
    assert api("POST", "/settings", {"colour": "red"})[0] == 400
    child, other = dash.daemon.daemon.policy.current.household.profiles[:2]
    status, answer = api("POST", f"/profiles/{child.id}/rename", {"name": "Kiddo"})
    assert status == 200, answer
    names = {p.name: p.id for p in dash.daemon.daemon.policy.current.household.profiles}
    assert names.get("Kiddo") == child.id
    assert api("POST", "/profiles/Kiddo/rename", {"name": other.name})[0] == 400  # taken
