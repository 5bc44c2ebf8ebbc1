"""The dashboard's catalogs: every string of the templates and guardian/web translated in
every language, none fuzzy, placeholders kept; and the catalogs compile and load."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.checkers import python_format
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from guardian.web import i18n

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = sorted(set(i18n.LANGUAGES) - {"en"})  # English is the source language


def source_messages() -> set[str]:
    found: set[str] = set()
    method_map = [("guardian/web/**.py", "python"), ("web/templates/**.html", "jinja2")]
    options = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options,
                                                                      keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_the_sources_have_strings_to_translate() -> None:
    messages = source_messages()
    assert {"Sign in", "Paused until %(time)s", "on the profile's deny list", "Mon"} <= messages
    assert len(messages) > 100


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_string_is_translated_and_none_is_fuzzy(lang: str) -> None:
    po = ROOT / "web" / "translations" / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    entries = {m.id: m for m in catalog if m.id}
    missing = sorted(source_messages() - set(entries))
    assert not missing, f"{lang}: not in the catalog (run the extraction in the README): {missing}"
    untranslated = sorted(m.id for m in entries.values() if not m.string)
    assert not untranslated, f"{lang}: untranslated: {untranslated}"
    fuzzy = sorted(m.id for m in entries.values() if m.fuzzy)
    assert not fuzzy, f"{lang}: fuzzy: {fuzzy}"
    for m in entries.values():
        if "%(" in m.id:
            python_format(catalog, m)  # raises TranslationError when a placeholder is lost or invented


def test_the_catalogs_compile_and_translate() -> None:
    catalogs = i18n.load(ROOT / "web" / "translations")
    assert set(catalogs) == set(i18n.LANGUAGES)
    assert catalogs["fr"].gettext("Sign in") == "Se connecter"
    assert catalogs["ar"].gettext("Settings") == "الإعدادات"
    assert catalogs["zh"].gettext("Paused until %(time)s") % {"time": "18:30"} == "暂停至 18:30"


@pytest.mark.parametrize(("header", "expected"), [
    ("fr-CH, fr;q=0.9, en;q=0.8", "fr"),
    ("de-DE, es;q=0.5", "es"),
    ("ar", "ar"),
    ("zh-CN,zh;q=0.9", "zh"),
    ("de, it", "en"),
    ("", "en"),
    ("en;q=0.2, ru;q=0.9", "ru"),
    ("fr;q=bogus, es", "es"),
])
def test_accept_language_picks_the_best_available(header: str, expected: str) -> None:
    assert i18n.negotiate(header, set(i18n.LANGUAGES)) == expected


def test_the_weekly_grid_draws_windows_past_midnight_and_whole_days() -> None:
    from guardian.web.app import weekly_grid

    rects = weekly_grid([
        {"name": "Bedtime", "days": ["sun"], "from": "21:00", "to": "07:00", "block": "all"},
        {"name": "Homework", "days": ["mon"], "from": "16:00", "to": "18:00", "block": ["games"]},
        {"name": "Day off", "days": ["sat"], "from": "00:00", "to": "00:00", "block": "all"},
    ])
    assert [(r["name"], r["row"], r["x"], r["w"], r["all"]) for r in rects] == [
        ("Bedtime", 6, 210.0, 30.0, True),  # Sunday 21:00-24:00
        ("Bedtime", 0, 0.0, 70.0, True),  # then Monday 00:00-07:00
        ("Homework", 0, 160.0, 20.0, False),
        ("Day off", 5, 0.0, 240.0, True),  # equal from and to: the whole day
    ]


def test_catalogs_load_without_babel_and_match_babels_reading() -> None:
    """The dashboard reads the .po files itself (stdlib gettext): Babel costs ~2 MB of the
    process's RSS and is needed only to extract and update the catalogs."""
    import subprocess
    import sys

    code = ("import sys, tempfile, pathlib\n"
            "import guardian.web.app as a\n"
            "from guardian.config import load\n"
            "d = pathlib.Path(tempfile.mkdtemp())\n"
            "(d / 'g.yaml').write_text(f'data_dir: {d}/var\\n')\n"
            "a.make_app(load(d / 'g.yaml'))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'babel'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

    import gettext
    import io

    from babel.messages.mofile import write_mo

    translations = ROOT / "web" / "translations"
    ours = i18n.load(translations)
    for lang in i18n.LANGUAGES:
        if lang == i18n.DEFAULT:
            continue
        with (translations / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        theirs = gettext.GNUTranslations(buf)
        for m in catalog:
            if not m.id:
                continue
            if isinstance(m.id, tuple):
                for n in range(0, 30):
                    assert ours[lang].ngettext(m.id[0], m.id[1], n) == theirs.ngettext(m.id[0], m.id[1], n), \
                        (lang, m.id, n)
            else:
                assert ours[lang].gettext(m.id) == theirs.gettext(m.id), (lang, m.id)
