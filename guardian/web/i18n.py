"""Languages: gettext catalogs under web/translations/<lang>/LC_MESSAGES/messages.po,
read when the dashboard starts (no .mo file to build or to go stale). The reader is
this module's own (stdlib only): Babel extracts and updates the catalogs but, loaded
in the dashboard, cost ~2 MB of its RSS. The language is the account's choice, else
the browser's Accept-Language, else English.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

LANGUAGES = {"en": "English", "ar": "العربية", "zh": "中文", "fr": "Français", "ru": "Русский", "es": "Español"}
RTL = {"ar"}
DEFAULT = "en"

_ENGLISH = gettext.NullTranslations()
current: ContextVar[gettext.NullTranslations | None] = ContextVar("translations", default=None)


class Catalog(gettext.NullTranslations):
    """One language's translations: msgid -> msgstr, and (msgid, index) -> plural form."""

    def __init__(self, messages: dict[Any, str], plural: Callable[[int], int]) -> None:
        super().__init__()
        self.messages = messages
        self.plural = plural

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        found = self.messages.get((msgid1, self.plural(n)))
        return found or (msgid1 if n == 1 else msgid2)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v"}
_ESCAPE = re.compile(r'\\(.)')


def _unquote(text: str) -> str:
    body = text.strip()
    if len(body) < 2 or body[0] != '"' or body[-1] != '"':
        raise ValueError(f"not a quoted string: {text!r}")
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), body[1:-1])


def read_po(path: Path) -> Catalog:
    """A .po file's translated, non-fuzzy entries (obsolete ``#~`` ones skipped)."""
    messages: dict[Any, str] = {}
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    key = ""

    def finish() -> None:
        nonlocal entry, key
        if "msgid" in entry:
            entries.append(entry)
        entry, key = {}, ""

    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            finish()
        elif line.startswith("#"):
            if "msgid" in entry and key:  # a comment after the strings starts the next entry
                finish()
            if line.startswith("#,") and "fuzzy" in line:
                entry["fuzzy"] = True
        elif line.startswith('"'):
            if key:
                entry[key] += _unquote(line)
        else:
            word, _, rest = line.partition(" ")
            if word == "msgctxt" or (word == "msgid" and "msgid" in entry):
                finish()
            key = word
            entry[key] = _unquote(rest)
    finish()
    plural: Callable[[int], int] = lambda n: int(n != 1)  # noqa: E731 - gettext's default
    for e in entries:
        if e.get("fuzzy") and e["msgid"]:
            continue
        if "msgctxt" in e:
            continue  # the dashboard uses no contexts
        if not e["msgid"]:  # the header
            found = re.search(r"^Plural-Forms:.*?plural=([^;\n]+)", e.get("msgstr", ""), re.M)
            if found:
                plural = gettext.c2py(found.group(1).strip())  # type: ignore[attr-defined]
            continue
        if "msgid_plural" in e:
            for k, v in e.items():
                if k.startswith("msgstr[") and v:
                    messages[(e["msgid"], int(k[7:-1]))] = v
        elif e.get("msgstr"):
            messages[e["msgid"]] = e["msgstr"]
    return Catalog(messages, plural)


def load(directory: Path) -> dict[str, gettext.NullTranslations]:
    catalogs: dict[str, gettext.NullTranslations] = {DEFAULT: gettext.NullTranslations()}
    for lang in LANGUAGES:
        po = directory / lang / "LC_MESSAGES" / "messages.po"
        if lang == DEFAULT or not po.exists():
            continue
        catalogs[lang] = read_po(po)
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
