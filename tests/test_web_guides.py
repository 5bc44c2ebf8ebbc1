# ruff: noqa: F811 - the fixtures imported from webdash are the tests' parameters
"""Guides for parents, one per threat of the ITU's Child Online Protection list: plain
words on what it is, the warning signs, how to talk about it, and what Guardian can and
cannot do; linked from the profile's category toggles and from the risk events; in every
language of the dashboard."""

from __future__ import annotations

import pytest
from webdash import Page, browser, dash, page  # noqa: F401 - fixtures

from guardian.policy.rulepacks import THREATS, load_rules
from guardian.web import guides
from guardian.web.i18n import LANGUAGES

pytestmark = pytest.mark.slow

# The ITU list in the issue, as the rule packs' threat ids.
ITU = ("pornography", "child-abuse-material", "violence", "hate-racism", "self-harm", "gambling", "fraud",
       "phishing", "spam", "cyberbullying", "cyberstalking", "grooming", "private-data-disclosure",
       "gaming-addiction")


def test_every_threat_has_a_guide_in_every_language() -> None:
    assert set(ITU) <= guides.available(), set(ITU) - guides.available()
    for threat in THREATS:  # every threat a category names, drugs and weapons too
        assert guides.find(threat) is not None, threat
    for gid in guides.all_ids():
        found = guides.find(gid)
        assert found is not None
        for lang in LANGUAGES:
            raw = found[1]
            for section in guides.SECTIONS:
                value = raw.get(section)
                assert isinstance(value, dict) and str(value.get(lang) or "").strip(), (gid, section, lang)
        assert set(found[1].get("threats") or []) <= set(THREATS), gid


def test_every_category_with_a_threat_links_to_a_guide() -> None:
    rules = load_rules()
    for c in rules.categories.values():
        for t in c.threats:
            assert guides.find(t) is not None, (c.id, t)


def test_guides_from_the_profile_toggles_and_in_arabic(page: Page, dash) -> None:
    p = page.login()
    page.go("/profiles/Child")
    assert p.title().startswith("Child")  # the page's title is the profile's name, nothing else
    assert p.locator("form[action='/profiles/Child/remove'] button").is_visible()
    toggle = p.locator("ul.toggles li", has=p.locator("input[value='adult']"))
    link = toggle.locator("a[href^='/guides/']").first
    assert link.is_visible()
    page.check("profile-guides")
    link.click()
    p.wait_for_url(dash.url + "/guides/pornography")
    main = p.inner_text("main")
    assert "What Guardian can do" in main and "What Guardian cannot do" in main
    assert "Warning signs" in main
    page.check("guide")
    page.go("/guides")
    assert p.locator("a[href='/guides/grooming']").count() == 1
    page.check("guides")
    assert p.goto(dash.url + "/guides/no-such-threat").status == 404
    assert p.evaluate("fetch('/guides/%3Cscript%3E').then(r => r.status)") == 404


@pytest.mark.parametrize("width", [375, 1280])
def test_a_guide_at_phone_and_desktop_width_in_arabic(browser, dash, width: int) -> None:
    dash.ensure_parent()
    arabic = Page(browser, dash, width=width, locale="ar")
    try:
        arabic.login()
        arabic.go("/guides/cyberbullying")
        assert arabic.page.get_attribute("html", "dir") == "rtl"
        assert "التنمر" in arabic.page.inner_text("main")
        arabic.check("guide-ar")
        arabic.go("/guides")
        arabic.check("guides-ar")
        arabic.go("/profiles/Child")  # the rule packs' words are Arabic too
        toggles = arabic.page.inner_text("ul.toggles")
        assert "المواد الإباحية ومحتوى البالغين" in toggles and "Pornography" not in toggles
        arabic.check("profile-ar")
    finally:
        arabic.close()


def test_guides_need_a_session(dash) -> None:
    status, headers, _body, _c = dash.http("GET", "/guides/grooming")
    assert status == 303 and headers["location"] in ("/login", "/setup")
