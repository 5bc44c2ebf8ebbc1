"""Domain names, the one way: what a parent, a file or a packet gives is normalised and
checked here (the config, the rule packs, the household, the dashboard and the DNS wire
code all call it), so "Example.COM.", "*.example.com" and "exämple.com" mean one name
everywhere. At the foundation: imports nothing of Guardian.
"""

from __future__ import annotations

import re

__all__ = ["normalise_domain", "text_to_wire"]

_LABEL = re.compile(r"[a-z0-9_-]{1,63}")  # letters, digits, hyphen; underscore for _dns.resolver.arpa & co


def normalise_domain(text: str) -> str:
    """Lower case, no trailing dot or leading "*.", punycode for IDN ("" stays "").

    The one check of a domain name a parent or a file gives (allow, block, deny and
    allow lists, import, the config): raises ValueError, saying why in words with the
    text escaped, for anything else: control characters, spaces, empty labels, a label
    over 63 or a name over 253 characters.
    """
    name = text.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    if not name:
        return ""
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{text!r} is not a domain name (e.g. example.com)") from None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{text!r} is not a domain name (e.g. example.com): letters, digits, '-' and '_' "
                         "in labels of 1 to 63 characters, separated by dots")
    return name


def text_to_wire(name: str) -> bytes:
    """Dotted text -> uncompressed wire name. Raises ValueError for a bad name."""
    name = name.rstrip(".")
    out = bytearray()
    if name:
        for label in name.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not raw or len(raw) > 63:
                raise ValueError(f"bad label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)
