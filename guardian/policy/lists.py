"""Blocklist and allowlist formats: text lines in, normalised domain rules out.

Formats (``ListFormat``): ``auto`` (each line detected on its own), ``domains``
(one name or ``*.name`` per line), ``hosts`` (``0.0.0.0 a b``), ``adblock``
(``||a^``, ``@@||a^``, ``/re/`` and plain names) and ``sha256`` (one hex SHA-256 of
a normalised domain name per line, so a hotline list is never stored in clear).

Semantics, shared with the matcher:
- a domain rule matches the name and every subdomain of it;
- ``*.example.com`` matches the subdomains of example.com only, not example.com itself
  (AdGuard's meaning); ``||*.example.com^`` is the same;
- ``/re/`` is a Python regular expression searched in the full query name;
- a hash rule is ``sha256(name)`` of a normalised name (lower case, punycode, no
  trailing dot) and matches like a domain rule.

Names are normalised: lower case, one trailing dot removed, internationalised names
turned into punycode. A line that cannot be parsed is *invalid* (counted, the first
``MAX_EXAMPLES`` kept with their line numbers); a line that is well formed but asks for
something a DNS filter cannot honour (cosmetic ``##`` rules, URL paths, browser-only
``$`` options, ``localhost`` entries in hosts files) is *skipped*. Neither is fatal.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Literal, NamedTuple, TextIO

import idna

ListFormat = Literal["auto", "domains", "hosts", "adblock", "sha256"]
FORMATS: tuple[ListFormat, ...] = ("auto", "domains", "hosts", "adblock", "sha256")

MAX_EXAMPLES = 20  # invalid lines kept per list, with their line numbers
MAX_LINE = 1024  # characters; longer lines are invalid (no list has such rules)
MAX_REGEX = 256  # characters between the slashes; caps backtracking cost per query
MAX_NAME = 253  # RFC 1035 length of a name in text form, without the trailing dot
MAX_INVALID_RATIO = 0.5  # a refreshed list with more invalid rule lines is rejected


class RuleType(IntEnum):
    DOMAIN = 0  # the name and its subdomains
    WILDCARD = 1  # the subdomains only
    REGEX = 2  # pattern searched in the full name
    HASH = 3  # lowercase hex SHA-256 of a name; matches like DOMAIN


class Rule(NamedTuple):
    """One rule from one line; ``value`` is a normalised name, a pattern or a hex digest."""

    type: RuleType
    value: str
    allow: bool


@dataclass(frozen=True, slots=True)
class InvalidLine:
    lineno: int  # 1-based
    text: str  # the line, cut to 200 characters
    reason: str


@dataclass(slots=True)
class ParseStats:
    """Line counts of one parse. ``rules + invalid + skipped`` are the non-comment lines."""

    lines: int = 0
    comments: int = 0  # comments and blank lines
    rules: int = 0  # lines that gave a rule (duplicates included)
    invalid: int = 0
    skipped: int = 0
    invalid_examples: list[InvalidLine] = field(default_factory=list)

    def add_invalid(self, lineno: int, text: str, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_examples) < MAX_EXAMPLES:
            self.invalid_examples.append(InvalidLine(lineno, text[:200], reason))


@dataclass(slots=True)
class ParseResult:
    """Every rule of one list, de-duplicated, plus the line counts."""

    deny: set[str] = field(default_factory=set)
    allow: set[str] = field(default_factory=set)
    wildcard_deny: set[str] = field(default_factory=set)  # base names: subdomains only
    wildcard_allow: set[str] = field(default_factory=set)
    regex_deny: list[str] = field(default_factory=list)  # patterns, without slashes
    regex_allow: list[str] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)  # lowercase hex SHA-256 digests
    stats: ParseStats = field(default_factory=ParseStats)

    @property
    def entries(self) -> int:
        """Distinct rules in the list."""
        return (
            len(self.deny)
            + len(self.allow)
            + len(self.wildcard_deny)
            + len(self.wildcard_allow)
            + len(self.regex_deny)
            + len(self.regex_allow)
            + len(self.hashes)
        )

    @property
    def invalid(self) -> int:
        return self.stats.invalid

    @property
    def skipped(self) -> int:
        return self.stats.skipped

    @property
    def invalid_examples(self) -> list[InvalidLine]:
        return self.stats.invalid_examples

    def add(self, rule: Rule) -> None:
        if rule.type is RuleType.DOMAIN:
            (self.allow if rule.allow else self.deny).add(rule.value)
        elif rule.type is RuleType.WILDCARD:
            (self.wildcard_allow if rule.allow else self.wildcard_deny).add(rule.value)
        elif rule.type is RuleType.REGEX:
            patterns = self.regex_allow if rule.allow else self.regex_deny
            if rule.value not in patterns:
                patterns.append(rule.value)
        else:
            self.hashes.add(rule.value)

    def rules(self) -> Iterator[Rule]:
        """Every distinct rule, in a stable order for the sets' current contents."""
        for name in self.deny:
            yield Rule(RuleType.DOMAIN, name, False)
        for name in self.allow:
            yield Rule(RuleType.DOMAIN, name, True)
        for name in self.wildcard_deny:
            yield Rule(RuleType.WILDCARD, name, False)
        for name in self.wildcard_allow:
            yield Rule(RuleType.WILDCARD, name, True)
        for pattern in self.regex_deny:
            yield Rule(RuleType.REGEX, pattern, False)
        for pattern in self.regex_allow:
            yield Rule(RuleType.REGEX, pattern, True)
        for digest in self.hashes:
            yield Rule(RuleType.HASH, digest, False)


# --- names ---------------------------------------------------------------------------

# Lenient on purpose: real lists hold underscores (_dmarc) and labels with leading or
# trailing hyphens that resolvers answer; what matters is that it can be a query name.
_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IDN_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Names hosts files map for the machine itself, never blocklist entries.
_HOSTS_SELF = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)
_COMMON_HOSTS_IPS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0:0:0:0:0:0:0:0"})
# Adblock options that mean "the whole domain" to a DNS filter. ``important`` only
# raises a rule's priority over exceptions; we keep the rule and drop the priority.
_DNS_OPTIONS = frozenset({"all", "document", "doc", "important"})
_COSMETIC = ("##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@%#", "#@?#")
# A group that repeats and is itself repeated, e.g. (a+)+ or (.*)*: exponential backtracking.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)[+*{]")


class _Skip(Exception):
    """A well-formed line that a DNS filter cannot honour."""


class _Invalid(Exception):
    """A line that cannot be parsed."""


def normalise_name(text: str) -> str:
    """Return ``text`` as a lower-case ASCII name without a trailing dot.

    Raises ``ValueError`` when it cannot be a DNS name.
    """
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name.isascii():
        name = _to_punycode(name)
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise ValueError(f"not a domain name: {text!r}")
    return name


def _to_punycode(name: str) -> str:
    labels = []
    for label in name.translate(_IDN_DOTS).split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(idna.encode(label, uts46=True).decode("ascii"))
        except idna.IDNAError:
            # IDNA 2008 refuses some names registries still serve (emoji); IDNA 2003 may not.
            try:
                labels.append(label.encode("idna").decode("ascii"))
            except UnicodeError as exc:
                raise ValueError(f"not an internationalised name: {name!r}") from exc
    return ".".join(labels).lower()


def hash_name(name: str) -> str:
    """Hex SHA-256 of a normalised name, as a ``sha256`` list holds it."""
    return hashlib.sha256(name.encode("ascii")).hexdigest()


def _domain(text: str, *, single_label_ok: bool) -> str:
    try:
        name = normalise_name(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    if name in _HOSTS_SELF:
        raise _Skip("a name for this machine")
    last = name.rpartition(".")[2]
    if last.isdigit():
        if _is_ip(name):
            raise _Skip("an IP address, not a name")
        raise _Invalid("numeric top-level label")
    if not single_label_ok and "." not in name:
        # A lone word is more often garbage (an HTML page, a typo) than a TLD block;
        # blocking a whole TLD must be asked for explicitly: ||tld^ or *.tld.
        raise _Invalid("a single label; write ||name^ or *.name to block a whole TLD")
    return name


def _is_ip(text: str) -> bool:
    if text in _COMMON_HOSTS_IPS:
        return True
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


# --- lines ---------------------------------------------------------------------------

# Line kinds, used to refuse kinds a declared format does not have.
_K_DOMAIN, _K_HOSTS, _K_ADBLOCK, _K_REGEX, _K_HASH = "domain", "hosts", "adblock", "regex", "hash"
_ALLOWED: dict[str, frozenset[str]] = {
    "auto": frozenset({_K_DOMAIN, _K_HOSTS, _K_ADBLOCK, _K_REGEX, _K_HASH}),
    "domains": frozenset({_K_DOMAIN}),
    "hosts": frozenset({_K_HOSTS}),
    "adblock": frozenset({_K_DOMAIN, _K_ADBLOCK, _K_REGEX}),
    "sha256": frozenset({_K_HASH}),
}


def _check_kind(kind: str, fmt: ListFormat) -> None:
    if kind not in _ALLOWED[fmt]:
        raise _Invalid(f"a {kind} line in a {fmt} list")


def _regex(body: str, allow: bool) -> Rule:
    if len(body) > MAX_REGEX:
        raise _Invalid(f"regular expression longer than {MAX_REGEX} characters")
    if _NESTED_QUANTIFIER.search(body):
        raise _Invalid("regular expression with nested repetition (catastrophic backtracking)")
    try:
        re.compile(body)
    except re.error as exc:
        raise _Invalid(f"bad regular expression: {exc}") from None
    return Rule(RuleType.REGEX, body, allow)


def _name_or_wildcard(text: str, allow: bool, *, single_label_ok: bool) -> Rule:
    if text.startswith("*."):
        return Rule(RuleType.WILDCARD, _domain(text[2:], single_label_ok=True), allow)
    if "*" in text:
        raise _Skip("wildcard not at the start of the name")
    return Rule(RuleType.DOMAIN, _domain(text, single_label_ok=single_label_ok), allow)


def _adblock(line: str) -> Rule:
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    if body.startswith("/") and body.endswith("/") and len(body) > 2:
        return _regex(body[1:-1], allow)
    pattern, dollar, options = body.partition("$")
    if dollar:
        names = {o.strip().lstrip("~").split("=", 1)[0] for o in options.split(",")}
        if not names <= _DNS_OPTIONS:
            raise _Skip("adblock options a DNS filter cannot honour")
    if not pattern.startswith("||"):
        # |https://..., plain substrings, paths: URL rules a DNS filter cannot apply.
        raise _Skip("adblock rule that is not ||domain^")
    pattern = pattern[2:]
    if pattern.endswith("^|"):
        pattern = pattern[:-2]
    elif pattern.endswith("^"):
        pattern = pattern[:-1]
    if not pattern:
        raise _Invalid("empty adblock rule")
    if "/" in pattern or "^" in pattern or ":" in pattern:
        raise _Skip("adblock rule with a path or port")
    # ||tld^ is an explicit request to block a whole TLD, so a single label is fine.
    return _name_or_wildcard(pattern, allow, single_label_ok=True)


def _parse_line(line: str, fmt: ListFormat = "auto") -> Rule | list[Rule] | None:
    """Parse one stripped line: a rule, several (hosts lines), or None for comments.

    Raises ``_Invalid`` or ``_Skip``, which ``iter_rules`` counts.
    """
    if not line or line[0] in "![":
        return None  # blank, adblock comment, [Adblock Plus 2.0] header
    if line[0] == "#":
        if line.startswith(_COSMETIC):
            raise _Skip("cosmetic rule")
        return None
    if len(line) > MAX_LINE:
        raise _Invalid(f"line longer than {MAX_LINE} characters")
    if line[0] == "/" or line.startswith("@@/"):
        if line.endswith("/") and len(line) > 2:
            _check_kind(_K_REGEX, fmt)
            return _adblock(line)
        if line[0] == "/":
            raise _Invalid("regular expression without a closing slash")
    if "#" in line and any(marker in line for marker in _COSMETIC):
        raise _Skip("cosmetic rule")
    # Inline comments: "0.0.0.0 ads.example # tracker". A # inside a token is no comment.
    for sep in (" #", "\t#"):
        cut = line.find(sep)
        if cut >= 0:
            line = line[:cut].rstrip()
    if line.startswith(("||", "@@", "|")) or "^" in line or "$" in line:
        _check_kind(_K_ADBLOCK, fmt)
        return _adblock(line)
    tokens = line.split()
    if len(tokens) > 1 or _is_ip(tokens[0]):
        _check_kind(_K_HOSTS, fmt)
        if not _is_ip(tokens[0]):
            raise _Invalid("several names without an IP address in front")
        rules = []
        for token in tokens[1:]:
            try:
                rules.append(Rule(RuleType.DOMAIN, _domain(token, single_label_ok=False), False))
            except _Skip:
                continue  # "127.0.0.1 localhost": the machine's own names
        if not rules:
            raise _Skip("hosts line naming only this machine")
        return rules
    token = tokens[0]
    if len(token) == 64 and _HEX64.fullmatch(token.lower()):
        _check_kind(_K_HASH, fmt)
        return Rule(RuleType.HASH, token.lower(), False)
    _check_kind(_K_DOMAIN, fmt)
    return _name_or_wildcard(token, False, single_label_ok=False)


def iter_rules(lines: Iterable[str], fmt: ListFormat = "auto", stats: ParseStats | None = None) -> Iterator[Rule]:
    """Yield the rules of ``lines`` one by one, counting lines into ``stats``.

    Streams: a file object is read line by line and nothing is kept, so a list of a
    million lines costs no more memory than its rules' consumer keeps.
    """
    if fmt not in _ALLOWED:
        raise ValueError(f"unknown list format {fmt!r}; expected one of {', '.join(FORMATS)}")
    st = stats if stats is not None else ParseStats()
    lineno = 0
    for lineno, raw in enumerate(lines, 1):  # noqa: B007 - lineno is read after the loop
        line = raw.strip()
        try:
            parsed = _parse_line(line, fmt)
        except _Skip:
            st.skipped += 1
            continue
        except _Invalid as exc:
            st.add_invalid(lineno, line, str(exc))
            continue
        if parsed is None:
            st.comments += 1
        elif isinstance(parsed, list):
            st.rules += 1
            yield from parsed
        else:
            st.rules += 1
            yield parsed
    st.lines = lineno


# --- the batch parser (compiling big lists) --------------------------------------------

# The lines of a big list are nearly all of one simple shape: "0.0.0.0 name", "name" or
# "||name^", with comments between. For such a line _parse_line gives one plain deny rule,
# which one regex over a whole chunk finds at C speed; any other line (upper case, a
# trailing dot, a wildcard, an inline comment, ...) goes through _parse_line as before.
# Each pattern accepts only lines whose _parse_line result it is sure of: a name of at
# least two labels, at most MAX_NAME characters, a last label that is not all digits
# (so never an IP address), never "localhost.localdomain" (a name for this machine).
_FAST_NAME = (
    r"(?=[a-z0-9_.-]{1," + str(MAX_NAME) + r"}(?![a-z0-9_.-]))(?!localhost\.localdomain(?![a-z0-9_.-]))"
    r"(?:[a-z0-9_-]{1,63}\.)+(?=[0-9]*[a-z_-])[a-z0-9_-]{1,63}"
)
_FAST_HOSTS = re.compile(r"^(?:0\.0\.0\.0|127\.0\.0\.1)[ \t]{1,100}(" + _FAST_NAME + r")[ \t]{0,100}\n", re.M)
_FAST_PLAIN = re.compile(r"^(" + _FAST_NAME + r")[ \t]{0,100}\n", re.M)
_FAST_ADBLOCK = re.compile(r"^\|\|(" + _FAST_NAME + r")\^[ \t]{0,100}\n", re.M)
# Blank lines, and comments that are no cosmetic rule ("#" then none of #@?$%).
_FAST_COMMENT = re.compile(r"^[ \t]*(?:[!\[][^\n]*|#(?:[^#@?$%\n][^\n]*)?)?\n", re.M)
_FAST_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "auto": (_FAST_HOSTS, _FAST_PLAIN, _FAST_ADBLOCK),
    "domains": (_FAST_PLAIN,),
    "hosts": (_FAST_HOSTS,),
    "adblock": (_FAST_PLAIN, _FAST_ADBLOCK),
    "sha256": (),
}
BATCH_CHARS = 1 << 20  # read per chunk
_PIECE_LINES = 256  # a chunk with an odd line is tried again in pieces of this many lines


def iter_batches(handle: TextIO, fmt: ListFormat = "auto",
                 stats: ParseStats | None = None) -> Iterator[tuple[list[str], list[Rule]]]:
    """The rules of a list file in batches: ``(names, rules)`` per chunk of lines.

    ``names`` are plain deny domain rules (``Rule(DOMAIN, name, False)``), ``rules``
    every other rule; together the same rules, in another order, and the same ``stats``
    as ``iter_rules`` gives for the file. For compiling: a million names cost about a
    tenth of the time, and no Rule object each.
    """
    if fmt not in _ALLOWED:
        raise ValueError(f"unknown list format {fmt!r}; expected one of {', '.join(FORMATS)}")
    st = stats if stats is not None else ParseStats()
    patterns = _FAST_PATTERNS[fmt]
    lineno = 0  # lines before the chunk
    carry = ""
    while True:
        text = handle.read(BATCH_CHARS)
        if text:
            text = carry + text
            cut = text.rfind("\n") + 1
            if not cut:
                carry = text
                continue
            chunk, carry = text[:cut], text[cut:]
        elif carry:
            chunk, carry = carry + "\n", ""
        else:
            break
        names: list[str] = []
        rules: list[Rule] = []
        lineno = _chunk_rules(chunk, lineno, fmt, patterns, st, names, rules)
        yield names, rules
    st.lines = lineno


def _chunk_rules(chunk: str, lineno: int, fmt: ListFormat, patterns: tuple[re.Pattern[str], ...], st: ParseStats,
                 names: list[str], rules: list[Rule]) -> int:
    """Parse ``chunk`` (whole lines, each ending in a newline) after line ``lineno``."""
    count = chunk.count("\n")
    if patterns:
        found: list[str] = []
        for pattern in patterns:  # each line matches one pattern at most
            found += pattern.findall(chunk)
            if len(found) == count:
                break
        comments = len(_FAST_COMMENT.findall(chunk)) if len(found) < count else 0
        if len(found) + comments == count:  # every line is of a shape the patterns know
            names += found
            st.rules += len(found)
            st.comments += comments
            return lineno + count
        if count > _PIECE_LINES:  # find the odd lines: most pieces are still all simple
            lines = chunk.split("\n")[:count]
            for start in range(0, count, _PIECE_LINES):
                piece = "\n".join(lines[start : start + _PIECE_LINES]) + "\n"
                lineno = _chunk_rules(piece, lineno, fmt, patterns, st, names, rules)
            return lineno
    for raw in chunk.split("\n")[:count]:
        lineno += 1
        line = raw.strip()
        try:
            parsed = _parse_line(line, fmt)
        except _Skip:
            st.skipped += 1
            continue
        except _Invalid as exc:
            st.add_invalid(lineno, line, str(exc))
            continue
        if parsed is None:
            st.comments += 1
        elif isinstance(parsed, list):
            st.rules += 1
            rules += parsed
        else:
            st.rules += 1
            rules.append(parsed)
    return lineno


def parse(lines: Iterable[str], fmt: ListFormat = "auto") -> ParseResult:
    """Parse every line into a de-duplicated ``ParseResult``; never raises on bad lines."""
    result = ParseResult()
    add = result.add
    for rule in iter_rules(lines, fmt, result.stats):
        add(rule)
    return result


def parse_text(text: str, fmt: ListFormat = "auto") -> ParseResult:
    return parse(text.splitlines(), fmt)


def parse_file(path: Path | str, fmt: ListFormat = "auto") -> ParseResult:
    """Parse a list file (UTF-8; undecodable bytes become invalid lines, not errors)."""
    with open_list(path) as handle:
        return parse(handle, fmt)


def open_list(path: Path | str) -> TextIO:
    """Open a list file for streaming: UTF-8, bad bytes replaced, a BOM dropped."""
    return open(path, encoding="utf-8-sig", errors="replace", newline=None)  # noqa: SIM115


def check_refresh(result: ParseResult | ParseStats) -> str | None:
    """Return why a freshly downloaded list must not replace the last good copy, or None.

    Rejected: no rules at all, or more than ``MAX_INVALID_RATIO`` of the non-comment
    lines invalid (an HTML error page, a truncated or wrong-format download).
    """
    stats = result.stats if isinstance(result, ParseResult) else result
    if stats.rules == 0:
        if stats.invalid:
            return f"no rules: {stats.invalid} invalid lines of {stats.lines}"
        return f"no rules in {stats.lines} lines"
    considered = stats.rules + stats.invalid + stats.skipped
    if stats.invalid > MAX_INVALID_RATIO * considered:
        first = stats.invalid_examples[0]
        return (
            f"mostly invalid: {stats.invalid} of {considered} rule lines (first at line {first.lineno}: {first.reason})"
        )
    return None
