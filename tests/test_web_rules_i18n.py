"""The rule packs' words a parent reads (each category's name and description, each
profile template's name and description) are in the dashboard's catalogs, translated
in every language; the pages show them in the reader's language."""

from __future__ import annotations

from pathlib import Path

from guardian.policy.rulepacks import load_rules
from guardian.web import i18n

TRANSLATIONS = Path(__file__).resolve().parents[1] / "web" / "translations"


def rule_texts() -> list[str]:
    rules = load_rules()
    texts = []
    for c in rules.categories.values():
        texts += [c.name, c.description]
    for t in rules.templates.values():
        texts += [t.name, t.description]
    return [t for t in texts if t]


def test_every_rule_pack_text_is_translated_in_every_language() -> None:
    catalogs = i18n.load(TRANSLATIONS)
    texts = rule_texts()
    assert len(texts) >= 40
    for lang in i18n.LANGUAGES:
        if lang == i18n.DEFAULT:
            continue
        untranslated = [t for t in texts if catalogs[lang].gettext(t) == t]
        assert not untranslated, (lang, untranslated)


def test_the_extractor_finds_the_rule_pack_texts() -> None:
    from guardian.web.extract import extract_rules

    found = set()
    root = Path(__file__).resolve().parents[1] / "rules"
    for path in sorted(root.glob("*.yaml")):
        with path.open("rb") as f:
            found |= {message for _line, _func, message, _comments in extract_rules(f, [], [], {})}
    assert set(rule_texts()) <= found
