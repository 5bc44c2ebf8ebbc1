"""guardian.names: the one way a domain a parent, a file or the config gives is read."""

from __future__ import annotations

import pytest

from guardian.names import normalise_domain, text_to_wire


@pytest.mark.parametrize("given, expected", [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("  example.com  ", "example.com"),
    ("*.example.com", "example.com"),
    ("exämple.com", "xn--exmple-cua.com"),
    ("_dns.resolver.arpa", "_dns.resolver.arpa"),
    ("", ""),
])
def test_names_are_read_one_way(given: str, expected: str) -> None:
    assert normalise_domain(given) == expected


@pytest.mark.parametrize("bad", [
    "exa mple.com", "example..com", ".example.com", "a" * 64 + ".com", ("a" * 63 + ".") * 4 + "com",
    "example.com\nevil.example", "ex\x1bample.com", "exa/mple.com",
])
def test_what_is_no_name_is_refused_and_said_escaped(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        normalise_domain(bad)
    assert "is not a domain name" in str(err.value)
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)


def test_wire_names() -> None:
    assert text_to_wire("example.com.") == b"\x07example\x03com\x00"
    assert text_to_wire("") == b"\x00"
    with pytest.raises(ValueError):
        text_to_wire("a" * 64 + ".com")
    with pytest.raises(ValueError):
        text_to_wire(("a" * 63 + ".") * 4 + "com")
