# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""Settings shows the filtering service's own settings in words: the upstream resolvers,
the downloaded lists with their last refresh and errors, the privacy mode and how long
history is kept, and the time zone (read from the daemon through the control socket)."""

from __future__ import annotations

import pytest
from webdash import Page, browser, dash, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def test_settings_show_upstreams_lists_privacy_retention_and_zone(page: Page, dash) -> None:
    p = page.login()
    page.go("/settings")
    service = p.locator("section#service")
    text = service.inner_text()
    upstream = dash.daemon.settings.dns.upstreams[0].url
    assert upstream in text
    assert "Europe/Paris" in text
    assert "full" in text.lower() or "everything" in text.lower()
    assert "7" in service.locator("[data-setting='query_days']").inner_text()
    assert "90" in service.locator("[data-setting='event_days']").inner_text()
    lists = service.locator("table.lists tbody tr")
    data = dash.daemon.call(dash.daemon.daemon.control.handle({"action": "settings"}))["data"]
    assert lists.count() == len(data["lists"]) >= 1  # the rule packs' public lists of the categories in use
    first = data["lists"][0]
    assert first["name"] in lists.first.inner_text()
    if first["outcome"] == "never":
        assert "not downloaded yet" in lists.first.inner_text()
    page.check("settings-service")


def test_the_settings_action_over_the_control_socket(dash) -> None:
    answer = dash.daemon.call(dash.daemon.daemon.control.handle({"action": "settings"}))
    assert answer["ok"], answer
    data = answer["data"]
    assert data["zone"] == "Europe/Paris" and data["privacy"] == "full"
    assert data["retention"]["query_days"] == 7
    assert all({"name", "category", "url", "outcome", "last_update", "last_error"} <= set(s) for s in data["lists"])
