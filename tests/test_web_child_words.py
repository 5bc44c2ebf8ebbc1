"""The child's side's small rules, without a box: where a request may send the browser
back to, which Host is a site name, how long a page's nonce holds, what a note keeps,
and that the help sites a self-harm block page links to are never blocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian.web.asks import NOTE_MAX, BadNote, clean_text
from guardian.web.child import HELP_SITES, NONCE_SECONDS, make_nonce, nonce_ok, safe_back

ALLOW = Path(__file__).resolve().parents[1] / "rules" / "lists" / "self-harm.allow.txt"


def test_the_help_sites_are_on_the_self_harm_packs_allow_list() -> None:
    allowed = {line.strip() for line in ALLOW.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert set(HELP_SITES) <= allowed


@pytest.mark.parametrize(("path", "kept"), [
    ("/casino?x=1", "/casino?x=1"), ("//evil.example/", "/"), ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"), ("https://evil.example/", "/"), ("/a b", "/"), ("/a\r\nSet-Cookie: x", "/"),
])
def test_the_way_back_stays_on_the_site(path: str, kept: str) -> None:
    assert safe_back(path) == kept


def test_a_nonce_holds_for_one_address_one_name_one_hour() -> None:
    secret, now = b"k" * 32, 1_800_000_000.0
    nonce = make_nonce(secret, "192.168.1.23", "10bet.com", now)
    assert nonce_ok(secret, nonce, "192.168.1.23", "10bet.com", now + 60)
    assert not nonce_ok(secret, nonce, "192.168.1.24", "10bet.com", now + 60)
    assert not nonce_ok(secret, nonce, "192.168.1.23", "1xbet.com", now + 60)
    assert not nonce_ok(secret, nonce, "192.168.1.23", "10bet.com", now + NONCE_SECONDS + 1)
    assert not nonce_ok(b"x" * 32, nonce, "192.168.1.23", "10bet.com", now + 60)  # another process's
    assert not nonce_ok(secret, "", "192.168.1.23", "10bet.com", now)


def test_a_note_is_one_line_of_text_of_at_most_200_characters() -> None:
    assert clean_text("  for\nmy\thomework \u202eexe.txt ", NOTE_MAX) == "for my homework exe.txt"  # no bidi trick
    assert clean_text("😀 family \u200d ok", NOTE_MAX) == "😀 family \u200d ok"
    assert len(clean_text("é" * 200, NOTE_MAX)) == 200
    with pytest.raises(BadNote, match="201 characters long; at most 200"):
        clean_text("x" * 201, NOTE_MAX)
