"""Text a device controls (DHCP hostnames and vendor classes, names it announces), made
safe to show on a terminal or in a log line.

A child chooses their device's hostname: ESC, BEL, CR or LF in it would otherwise move
the parent's cursor, recolour or clear the screen, or forge whole lines in the daemon's
log. Values are stored as they came (JSON output escapes by itself); whatever prints them
as text passes them through ``printable`` first.
"""

from __future__ import annotations

__all__ = ["printable"]


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object) -> str:
    """``value`` as text with every non-printable character (controls, line and paragraph
    separators, bidirectional overrides) escaped Python-style: ``"kid\\x1b[2J"`` for an
    ESC, ``\\r\\n`` for CR LF. A backslash stays as it is, so query names (already
    escaped as ``\\027`` when stored) show as they were. None becomes ``""``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(ch) for ch in text)
