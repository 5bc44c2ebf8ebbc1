"""Languages: gettext catalogs under web/translations/<lang>/LC_MESSAGES/messages.po,
compiled in memory with Babel when the dashboard starts (no .mo file to build or to go
stale; about 10 ms for all of them). The language is the account's choice, else the
browser's Accept-Language, else English.
"""

from __future__ import annotations

import gettext
import io
from contextvars import ContextVar
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = {"en": "English", "ar": "العربية", "zh": "中文", "fr": "Français", "ru": "Русский", "es": "Español"}
RTL = {"ar"}
DEFAULT = "en"

_ENGLISH = gettext.NullTranslations()
current: ContextVar[gettext.NullTranslations | None] = ContextVar("translations", default=None)


def load(directory: Path) -> dict[str, gettext.NullTranslations]:
    catalogs: dict[str, gettext.NullTranslations] = {DEFAULT: gettext.NullTranslations()}
    for lang in LANGUAGES:
        po = directory / lang / "LC_MESSAGES" / "messages.po"
        if lang == DEFAULT or not po.exists():
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        catalogs[lang] = gettext.GNUTranslations(buf)
    return catalogs


def negotiate(accept: str, available: set[str] | dict[str, object]) -> str:
    """The best of ``available`` for an Accept-Language header (``fr-CH, fr;q=0.9, en;q=0.8``)."""
    best, best_q = DEFAULT, -1.0
    for i, part in enumerate(accept.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-")[0]
        q -= i * 1e-6  # earlier wins ties
        if lang in available and q > best_q:
            best, best_q = lang, q
    return best


def gettext_(message: str) -> str:
    return (current.get() or _ENGLISH).gettext(message)


def ngettext_(singular: str, plural: str, n: int) -> str:
    return (current.get() or _ENGLISH).ngettext(singular, plural, n)
