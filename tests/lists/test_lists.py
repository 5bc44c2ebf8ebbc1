"""List formats: every syntax, normalisation, invalid and skipped lines, refresh checks."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from guardian.policy.lists import (
    MAX_EXAMPLES,
    MAX_REGEX,
    ParseStats,
    Rule,
    RuleType,
    check_refresh,
    hash_name,
    iter_batches,
    iter_rules,
    normalise_name,
    parse,
    parse_file,
    parse_text,
)


def rules_of(text: str, fmt: str = "auto") -> list[Rule]:
    return list(iter_rules(text.splitlines(), fmt))  # type: ignore[arg-type]


D, W, R, H = RuleType.DOMAIN, RuleType.WILDCARD, RuleType.REGEX, RuleType.HASH


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # plain domains, case, trailing dot, inline comment
        ("example.com", [Rule(D, "example.com", False)]),
        ("WWW.Example.COM.", [Rule(D, "www.example.com", False)]),
        ("ads.example.com # tracker", [Rule(D, "ads.example.com", False)]),
        ("_dmarc.example.com", [Rule(D, "_dmarc.example.com", False)]),
        # hosts files
        ("0.0.0.0 a.example", [Rule(D, "a.example", False)]),
        ("127.0.0.1\ta.example  b.example", [Rule(D, "a.example", False), Rule(D, "b.example", False)]),
        (":: a.example", [Rule(D, "a.example", False)]),
        ("::1 a.example #c", [Rule(D, "a.example", False)]),
        ("0.0.0.0 localhost a.example", [Rule(D, "a.example", False)]),
        # adblock
        ("||ads.example^", [Rule(D, "ads.example", False)]),
        ("||ads.example^|", [Rule(D, "ads.example", False)]),
        ("||ads.example", [Rule(D, "ads.example", False)]),
        ("@@||good.example^", [Rule(D, "good.example", True)]),
        ("||ads.example^$important", [Rule(D, "ads.example", False)]),
        ("||ads.example^$all", [Rule(D, "ads.example", False)]),
        ("||xyz^", [Rule(D, "xyz", False)]),
        ("||*.cdn.example^", [Rule(W, "cdn.example", False)]),
        # wildcards: subdomains only, recorded as the base name
        ("*.example.com", [Rule(W, "example.com", False)]),
        ("*.Example.COM.", [Rule(W, "example.com", False)]),
        # regular expressions
        (r"/^ad[0-9]+\./", [Rule(R, r"^ad[0-9]+\.", False)]),
        (r"@@/^ok\./", [Rule(R, r"^ok\.", True)]),
        # hashes
        ("A" * 64, [Rule(H, "a" * 64, False)]),
        # internationalised names
        ("Bücher.example", [Rule(D, "xn--bcher-kva.example", False)]),
        ("0.0.0.0 bücher.example", [Rule(D, "xn--bcher-kva.example", False)]),
        ("||ÉCOLE.fr^", [Rule(D, "xn--cole-9oa.fr", False)]),
        ("*.bücher.example", [Rule(W, "xn--bcher-kva.example", False)]),
        ("xn--bcher-kva.example", [Rule(D, "xn--bcher-kva.example", False)]),
        ("münchen。de", [Rule(D, "xn--mnchen-3ya.de", False)]),
    ],
)
def test_line_formats(line: str, expected: list[Rule]) -> None:
    assert rules_of(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "# comment",
        "! adblock comment",
        "[Adblock Plus 2.0]",
        "",
        "   ",
    ],
)
def test_comments_and_blanks(line: str) -> None:
    stats = ParseStats()
    assert list(iter_rules([line], "auto", stats)) == []
    assert (stats.comments, stats.invalid, stats.skipped) == (1, 0, 0)


@pytest.mark.parametrize(
    "line",
    [
        "##.banner",
        "example.com##.ad",
        "example.com#@#.ad",
        "||ads.example^$third-party",
        "||ads.example^$script,domain=foo.com",
        "||ads.example/path^",
        "|https://ads.example^",
        "ads.example^",
        "127.0.0.1 localhost",
        "::1 ip6-localhost ip6-loopback",
        "255.255.255.255 broadcasthost",
        "1.2.3.4",
        "ads*.example.com",
    ],
)
def test_skipped_lines(line: str) -> None:
    stats = ParseStats()
    assert list(iter_rules([line], "auto", stats)) == []
    assert (stats.skipped, stats.invalid) == (1, 0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not a domain", "without an IP"),
        ("hello", "single label"),
        ("exa mple..com", "without an IP"),
        ("example..com", "not a domain"),
        ("ex ample.com/", "without an IP"),
        ("a" * 64 + ".com", "not a domain"),
        ("x." * 130 + "com", "not a domain"),
        ("example.123", "numeric"),
        ("/unclosed", "closing slash"),
        ("/a(/", "bad regular expression"),
        ("/" + "a" * (MAX_REGEX + 1) + "/", "longer than"),
        ("/(a+)+$/", "nested repetition"),
        ("/(.*)*x/", "nested repetition"),
        ("<html><body>", "not a domain"),
        ("||^", "empty"),
        ("0.0.0.0 bad..name", "not a domain"),
    ],
)
def test_invalid_lines(line: str, reason: str) -> None:
    stats = ParseStats()
    assert list(iter_rules([line], "auto", stats)) == []
    assert stats.invalid == 1 and stats.skipped == 0
    assert reason in stats.invalid_examples[0].reason


def test_invalid_lines_reported_with_line_numbers_and_capped() -> None:
    lines = ["# header", "good.example"] + [f"bad line {i}" for i in range(30)] + ["other.example"]
    result = parse(lines)
    assert result.deny == {"good.example", "other.example"}
    assert result.invalid == 30
    assert len(result.invalid_examples) == MAX_EXAMPLES
    assert [e.lineno for e in result.invalid_examples[:3]] == [3, 4, 5]
    assert result.invalid_examples[0].text == "bad line 0"
    assert result.stats.lines == 33 and result.stats.comments == 1 and result.stats.rules == 2


@pytest.mark.parametrize(
    ("fmt", "line", "ok"),
    [
        ("domains", "example.com", True),
        ("domains", "*.example.com", True),
        ("domains", "0.0.0.0 example.com", False),
        ("domains", "||example.com^", False),
        ("hosts", "0.0.0.0 example.com", True),
        ("hosts", "example.com", False),
        ("adblock", "||example.com^", True),
        ("adblock", "example.com", True),
        ("adblock", "/re/", True),
        ("adblock", "0.0.0.0 example.com", False),
        ("sha256", "ab" * 32, True),
        ("sha256", "example.com", False),
        ("auto", "ab" * 32, True),
    ],
)
def test_declared_format_refuses_other_kinds(fmt: str, line: str, ok: bool) -> None:
    stats = ParseStats()
    rules = list(iter_rules([line], fmt, stats))  # type: ignore[arg-type]
    assert bool(rules) is ok
    assert stats.invalid == (0 if ok else 1)


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown list format"):
        list(iter_rules(["a.com"], "json"))  # type: ignore[arg-type]


def test_parse_result_deduplicates_and_splits_allow_deny() -> None:
    result = parse_text(
        "\n".join(
            [
                "0.0.0.0 a.example",
                "A.EXAMPLE.",
                "||a.example^",
                "@@||b.example^",
                "*.c.example",
                "||*.c.example^",
                "/x/",
                "/x/",
                "@@/y/",
                hash_name("d.example"),
                hash_name("d.example").upper(),
            ]
        )
    )
    assert result.deny == {"a.example"}
    assert result.allow == {"b.example"}
    assert result.wildcard_deny == {"c.example"}
    assert result.regex_deny == ["x"] and result.regex_allow == ["y"]
    assert result.hashes == {hashlib.sha256(b"d.example").hexdigest()}
    assert result.entries == 6
    assert result.stats.rules == 11


def test_hash_name_is_sha256_of_the_normalised_name() -> None:
    assert hash_name("example.com") == hashlib.sha256(b"example.com").hexdigest()
    assert hash_name(normalise_name("Bücher.Example.")) == hashlib.sha256(b"xn--bcher-kva.example").hexdigest()


def test_normalise_name_rejects_garbage() -> None:
    assert normalise_name(" Example.COM. ") == "example.com"
    for bad in ("", ".", "a..b", "a b.com", "a/b.com"):
        with pytest.raises(ValueError):
            normalise_name(bad)


def test_stream_parsing_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    hosts = "".join(f"0.0.0.0 host{i}.example\n" for i in range(1000))
    path.write_bytes("\ufeff# hosts\n".encode() + hosts.encode() + b"\xff\xfe garbage\n")
    result = parse_file(path, "hosts")
    assert len(result.deny) == 1000
    assert result.stats.comments == 1  # the BOM did not hide the comment
    assert result.invalid == 1 and result.invalid_examples[0].lineno == 1002


# Lines of every kind, the fast shapes with each way they can be subtly different.
ODD_LINES = [
    "0.0.0.0 a.example", "127.0.0.1 b.example", "0.0.0.0\tc.example  ", "c.example", "||d.example^",
    "||e.example^  ", "@@||f.example^", "||g.example^$important", "||g2.example^|", "0.0.0.0 localhost",
    "127.0.0.1 localhost.localdomain", "||localhost.localdomain^", "localhost.localdomain", "0.0.0.0 0.0.0.0",
    "0.0.0.0 1.2.3.4", "0.0.0.0 a.123", "a.123", "1.2.3.4", "::1 v6.example", "0.0.0.0 UPPER.example",
    "Upper.example", "trailing.example.", "0.0.0.0 trailing.example.", "0.0.0.0 a.example b.example",
    "*.wild.example", "||*.wild2.example^", "# comment", "#", "", "   ", "\t", "! adblock comment",
    "[Adblock Plus 2.0]", "##.ad-banner", "example.com##.ad", "#@#.x", "#$#x", "#%#x", "#?#x", "#@foo",
    "0.0.0.0 h.example # inline", "h2.example\t# inline", "singlelabel", "0.0.0.0 singlelabel", "||tld^",
    "a..b.example", ".lead.example", "-lead.example", "_dmarc.example", "x" * 64 + ".example",
    ".".join(["a" * 63] * 4), ".".join(["b" * 63] * 3) + "." + "c" * 61, ".".join(["b" * 63] * 3) + "." + "c" * 62,
    "/ads[0-9]+\\./", "/unclosed", "@@/re/", "0123456789abcdef" * 4, "bücher.example", "0.0.0.0 bücher.example",
    "\x0c0.0.0.0 ff.example", " 0.0.0.0 lead-space.example", "0.0.0.0 " + " " * 120 + "many-spaces.example",
    "0.0.0.0 trailing-spaces.example" + " " * 120, "|http://x.example", "x.example/path", "x.example^",
    "0.0.0.0 cr.example\r", "0.0.0.0 " + "long.example " * 90, "0.0.0.0 x.local", "0.0.0.0 broadcasthost",
    "0.0.0.0" + " " * 1100 + "far.example", "far2.example" + " " * 1100,
]


def parsed_both_ways(text: str, fmt: str) -> tuple[tuple[list[Rule], ParseStats], tuple[list[Rule], ParseStats]]:
    one, two = ParseStats(), ParseStats()
    rules = list(iter_rules(io.StringIO(text), fmt, one))  # type: ignore[arg-type]
    batched: list[Rule] = []
    for names, others in iter_batches(io.StringIO(text), fmt, two):  # type: ignore[arg-type]
        batched += [Rule(D, name, False) for name in names] + others
    return (sorted(rules), one), (sorted(batched), two)


@pytest.mark.parametrize("fmt", ["auto", "domains", "hosts", "adblock", "sha256"])
@pytest.mark.parametrize("chunk", [1 << 20, 97])
def test_batches_give_the_rules_and_counts_of_iter_rules(fmt: str, chunk: int, monkeypatch) -> None:
    monkeypatch.setattr("guardian.policy.lists.BATCH_CHARS", chunk)
    simple = [f"0.0.0.0 s{i}.example" if i % 3 else f"||s{i}.example^" if i % 2 else f"s{i}.example"
              for i in range(700)]
    # Each odd line with simple ones only (what the patterns wrongly took would show), all of
    # them among many simple lines (the pieces), without a final newline, nothing at all.
    texts = [f"{line}\ns1.example\n0.0.0.0 s2.example\n||s3.example^\n# c\n" for line in ODD_LINES]
    for text in [*texts, "\n".join(simple + ODD_LINES + simple) + "\n", "\n".join(simple[:300] + ODD_LINES[:5]),
                 "\n".join(simple) + "\n", "", "\n\n"]:
        (rules, one), (batched, two) = parsed_both_ways(text, fmt)
        assert batched == rules
        assert two == one


def test_iter_rules_consumes_lazily() -> None:
    handle = io.StringIO("a.example\nb.example\n")
    rules = iter_rules(handle)
    assert next(rules) == Rule(D, "a.example", False)
    assert handle.tell() < len("a.example\nb.example\n")  # the second line is not read yet


@pytest.mark.parametrize(
    ("text", "rejected"),
    [
        ("", "no rules"),
        ("# only\n! comments\n", "no rules"),
        ("<html>\n<head><title>404 Not Found</title></head>\n</html>\n", "no rules"),
        ("a.example\nbad line\nworse line\n", "mostly invalid"),
        ("a.example\nb.example\nbad line\n", None),
        ("a.example\nbad line\n", None),  # exactly half: accepted
        ("a.example\n##.x\n##.y\n##.z\n", None),  # skipped lines are not invalid
    ],
)
def test_check_refresh(text: str, rejected: str | None) -> None:
    result = parse_text(text)
    reason = check_refresh(result)
    if rejected is None:
        assert reason is None
    else:
        assert reason is not None and rejected in reason
    assert check_refresh(result.stats) == reason


def test_mostly_invalid_reason_names_the_first_bad_line() -> None:
    reason = check_refresh(parse_text("a.example\nbad one\nbad two\n"))
    assert reason is not None and "line 2" in reason
