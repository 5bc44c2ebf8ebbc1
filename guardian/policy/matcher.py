"""The compiled domain matcher: every list's rules in one memory-mapped trie.

Compiling (``compile_snapshot``) turns the lists into a snapshot directory under a
root; loading (``Matcher.load``) maps it without re-parsing, so a restart answers DNS
from disk in milliseconds. A snapshot holds:

- ``domains-N.marisa``: marisa tries of the rule names written backwards with a dot
  appended (``www.example.com`` -> ``moc.elpmaxe.www.``). The suffixes of a query name
  are then exactly the trie keys that are prefixes of the query's key, found in one call;
  the final dot keeps ``moc.elpmaxe.`` from matching ``moc.elpmaxeym.``. Reversing
  characters rather than labels is one slice instead of split, reverse and join.
  A big list is split into shards (about 250,000 keys each, so compiling never builds
  one huge trie) by the key's character after its first dot: every rule key that
  prefixes a query's key has that same character, so one shard holds them all; keys of
  one label (a whole TLD) are in every shard. ``meta.json`` maps characters to shards.
- ``domains-N.ids``: for each key id of trie N, the index of its *combo*: the set of
  (list, allow, wildcard) codes of the lists holding that name (native uint8/16/32,
  the narrowest that fits).
- ``hashes.bin``: sorted (SHA-256 digest, combo index) records of hashed lists.
- ``meta.json``: the lists (name, category, kind, counts), the combos and the regexes.

The root holds ``CURRENT``, naming the live snapshot; it is replaced atomically, so a
process loading the root sees the old or the new snapshot, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
import struct
import sys
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import marisa_trie  # type: ignore[import-untyped,unused-ignore]

from ..errors import GuardianError
from .lists import ListFormat, ParseResult

SNAPSHOT_FORMAT = 2
POINTER = "CURRENT"
TRIE_FILE = "domains-{}.marisa"  # .format(shard)
IDS_FILE = "domains-{}.ids"
HASH_FILE = "hashes.bin"
META_FILE = "meta.json"
HASH_RECORD = struct.Struct("<32sI")  # digest, combo index
HIT_CACHE_SIZE = 4096  # matched rule names kept with their Hit tuples, per matcher

Kind = Literal["deny", "allow"]


class SnapshotError(GuardianError):
    """A snapshot is missing, from another version, or damaged."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule matching a name.

    ``domain`` is the rule as a person reads it: ``example.com``, ``*.example.com``,
    ``/regex/``, or for a hashed list the query suffix whose hash matched. ``depth`` is
    the rule's label count (``*.example.com`` counts its ``*``: 3; a regex counts the
    whole query name), used to rank allow against deny.
    """

    list_id: int
    domain: str
    depth: int
    allow: bool


NO_HITS: tuple[Hit, ...] = ()

# Hit(...) on a frozen dataclass sets each field through object.__setattr__; building
# one from its slot descriptors is about twice as fast, and a miss-heavy path that
# turns into a hit should stay cheap. Same object, same equality.
_new_object = object.__new__
_SET_HIT_FIELDS: tuple[Callable[[Hit, Any], None], ...] = tuple(
    getattr(Hit, f).__set__ for f in ("list_id", "domain", "depth", "allow")
)


def _hit(list_id: int, domain: str, depth: int, allow: bool) -> Hit:
    hit: Hit = _new_object(Hit)
    set_list_id, set_domain, set_depth, set_allow = _SET_HIT_FIELDS
    set_list_id(hit, list_id)
    set_domain(hit, domain)
    set_depth(hit, depth)
    set_allow(hit, allow)
    return hit


@dataclass(frozen=True, slots=True)
class ListFile:
    """A list on disk, parsed while compiling so its rules are never all held at once."""

    path: Path
    format: ListFormat = "auto"


@dataclass(frozen=True, slots=True)
class ListSource:
    """One list to compile. ``kind="allow"`` makes every rule of the list an allow rule."""

    list_id: int  # 0 <= list_id < 2**29, unique per snapshot
    name: str
    category: str
    kind: Kind
    rules: ParseResult | ListFile


@dataclass(frozen=True, slots=True)
class ListInfo:
    """What a snapshot knows of one list; ``entries`` counts its distinct rules."""

    list_id: int
    name: str
    category: str
    kind: Kind
    entries: int
    invalid: int
    skipped: int


def rule_code(list_id: int, allow: bool, wildcard: bool) -> int:
    return list_id << 2 | allow << 1 | wildcard


def _decode(code: int) -> tuple[int, bool, bool]:
    return code >> 2, bool(code & 2), bool(code & 1)


def trie_key(name: str) -> str:
    """The trie key of a name: ``www.example.com`` -> ``moc.elpmaxe.www.``."""
    return name[::-1] + "."


def snapshot_dir(path: Path | str) -> Path:
    """The snapshot a root's ``CURRENT`` names, or ``path`` itself if it is a snapshot."""
    path = Path(path)
    pointer = path / POINTER
    if pointer.is_file():
        return path / pointer.read_text(encoding="utf-8").strip()
    if (path / META_FILE).is_file():
        return path
    raise SnapshotError(f"no compiled lists at {path}")


# --- matching ------------------------------------------------------------------------


def _no_prefixes(key: str) -> tuple[tuple[str, int], ...]:
    return ()


# One shard of a matcher: the trie's walk, its id table, and the hits of its keys by id.
_Shard = tuple[Callable[[str], Iterable[tuple[str, int]]], Sequence[int], dict[int, tuple[tuple[Hit, ...], tuple[Hit, ...]]]]


class Matcher:
    """Read-only answers from one snapshot; safe to share between threads."""

    __slots__ = (
        "path",
        "lists",
        "key_count",
        "_tries",
        "_shard0",
        "_shard_of",
        "_cache_size",
        "_maps",
        "_combos",
        "_hashes",
        "_regex_any",
        "_regexes",
        "_regex_always",
        "_plain_only",
    )

    def __init__(
        self,
        *,
        path: Path | None = None,
        lists: dict[int, ListInfo] | None = None,
        tries: Sequence[tuple[Any, Sequence[int]]] = (),
        shard_chars: dict[str, int] | None = None,
        key_count: int = 0,
        maps: Sequence[mmap.mmap] = (),
        combos: Sequence[Sequence[int]] = (),
        hashes: dict[bytes, int] | None = None,
        regexes: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.path = path
        self.lists: dict[int, ListInfo] = lists or {}
        self.key_count = key_count
        self._tries = [trie for trie, _ in tries]
        # (key, id) pairs of the trie keys that prefix a key: no more than prefixes() costs,
        # and no second walk for key_id() on hits.
        shards: list[_Shard] = [(trie.iter_prefixes_with_ids, ids, {}) for trie, ids in tries]
        self._shard0: _Shard = shards[0] if shards else (_no_prefixes, (), {})
        self._shard_of = {char: shards[index] for char, index in (shard_chars or {}).items()} or None
        self._cache_size = max(1, HIT_CACHE_SIZE // max(len(shards), 1))  # in all, HIT_CACHE_SIZE
        self._maps = maps  # kept so the mappings live as long as the views on them
        self._combos: list[tuple[tuple[int, bool, bool], ...]] = [
            tuple(_decode(code) for code in combo) for combo in combos
        ]
        self._hashes = hashes or {}
        # Regexes without groups are joined into one prefilter: one search per query
        # instead of one per rule. Patterns with groups could hold backreferences,
        # which renumber in an alternation, so they are always tried one by one.
        compiled = [(code, pattern, re.compile(pattern)) for code, pattern in regexes]
        self._regexes = [item for item in compiled if item[2].groups == 0]
        self._regex_always = [item for item in compiled if item[2].groups != 0]
        self._regex_any = (
            re.compile("|".join(f"(?:{pattern})" for _, pattern, _ in self._regexes)) if self._regexes else None
        )
        self._plain_only = not (self._hashes or compiled)

    @classmethod
    def empty(cls) -> Matcher:
        """A matcher with no rules: what a first start serves until lists compile."""
        return cls()

    @classmethod
    def load(cls, path: Path | str) -> Matcher:
        """Map the snapshot at ``path`` (a root with ``CURRENT``, or a snapshot dir)."""
        directory = snapshot_dir(path)
        try:
            with open(directory / META_FILE, encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read {directory / META_FILE}: {exc}") from exc
        if meta.get("format") != SNAPSHOT_FORMAT or meta.get("byteorder") != sys.byteorder:
            raise SnapshotError(f"{directory} was compiled by another version or machine; compile again")
        lists = {
            item["id"]: ListInfo(
                item["id"],
                item["name"],
                item["category"],
                item["kind"],
                item["entries"],
                item["invalid"],
                item["skipped"],
            )
            for item in meta["lists"]
        }
        tries: list[tuple[Any, Sequence[int]]] = []
        maps: list[mmap.mmap] = []
        try:
            for shard, count in enumerate(meta["shards"]):
                # Mapped, not read: the pages are the file's (clean, shared, dropped under
                # memory pressure), and only those a lookup touches are ever in memory.
                trie = marisa_trie.Trie()
                trie.mmap(str(directory / TRIE_FILE.format(shard)))
                with open(directory / IDS_FILE.format(shard), "rb") as handle:
                    maps.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
                ids = memoryview(maps[-1]).cast(meta["id_width"])
                if len(ids) != len(trie) or len(trie) != count:
                    raise SnapshotError(f"{directory}: trie and id table disagree; compile again")
                tries.append((trie, ids))
            hashes: dict[bytes, int] = {}
            with open(directory / HASH_FILE, "rb") as handle:
                for digest, combo in HASH_RECORD.iter_unpack(handle.read()):
                    hashes[digest] = combo
        except (OSError, struct.error, ValueError) as exc:
            raise SnapshotError(f"cannot load {directory}: {exc}") from exc
        regexes = [(int(code), str(pattern)) for code, pattern in meta["regexes"]]
        return cls(
            path=directory,
            lists=lists,
            tries=tries,
            shard_chars=meta["shard_chars"],
            key_count=meta["keys"],
            maps=maps,
            combos=meta["combos"],
            hashes=hashes,
            regexes=regexes,
        )

    def lookup(self, name: str) -> tuple[Hit, ...]:
        """Every rule matching ``name`` (lower case, no trailing dot), or ``NO_HITS``."""
        key = name[::-1] + "."
        if self._shard_of is None:
            walk, ids, cache = self._shard0
        else:  # the shard of the character after the first label (see the module's doc)
            dot = key.find(".")
            walk, ids, cache = self._shard_of.get(key[dot + 1 : dot + 2], self._shard0)
        found = list(walk(key))  # [(trie key, key id)], shallowest first
        if not found:
            if self._plain_only:
                return NO_HITS  # the common case: one slice, one trie walk
            hits: list[Hit] = []
        elif len(found) == 1 and self._plain_only:
            # The common hit: one rule, its hits shared from the cache, no copy.
            rule, key_id = found[0]
            cached = cache.get(key_id)
            if cached is None:
                cached = self._key_hits(rule, ids[key_id], cache, key_id)
            return cached[1] if len(rule) == len(key) else cached[0]
        else:
            hits = []
            for rule, key_id in found:
                cached = cache.get(key_id)
                if cached is None:
                    cached = self._key_hits(rule, ids[key_id], cache, key_id)
                # Same length as the query's key means the rule's own name.
                hits.extend(cached[1] if len(rule) == len(key) else cached[0])
        count = name.count(".") + 1
        if self._hashes:
            suffix = name
            for depth in range(count, 0, -1):
                combo = self._hashes.get(hashlib.sha256(suffix.encode()).digest())
                if combo is not None:
                    for list_id, allow, _ in self._combos[combo]:
                        hits.append(_hit(list_id, suffix, depth, allow))
                suffix = suffix.partition(".")[2]
        if self._regex_any is not None and self._regex_any.search(name):
            self._match_regexes(self._regexes, name, count, hits)
        if self._regex_always:
            self._match_regexes(self._regex_always, name, count, hits)
        return tuple(hits) if hits else NO_HITS

    def _key_hits(self, key: str, combo: int, cache: dict[int, tuple[tuple[Hit, ...], tuple[Hit, ...]]],
                  key_id: int) -> tuple[tuple[Hit, ...], tuple[Hit, ...]]:
        """The hits of one trie key (of ``combo``), kept in its shard's ``cache``: (for names
        below the rule's, for the rule's own name)."""
        depth = key.count(".")
        domain = key[-2::-1]  # drop the dot, turn the rest back round
        below: list[Hit] = []
        exact: list[Hit] = []
        for list_id, allow, wildcard in self._combos[combo]:
            if wildcard:  # *.example.com: subdomains only
                below.append(_hit(list_id, "*." + domain, depth + 1, allow))
            else:
                hit = _hit(list_id, domain, depth, allow)
                below.append(hit)
                exact.append(hit)
        below_hits = tuple(below)
        pair = (below_hits, below_hits if len(exact) == len(below) else tuple(exact))
        if len(cache) >= self._cache_size:
            cache.clear()  # crude but lock-free; real traffic repeats a few names
        cache[key_id] = pair
        return pair

    @staticmethod
    def _match_regexes(regexes: list[tuple[int, str, re.Pattern[str]]], name: str, count: int, hits: list[Hit]) -> None:
        for code, pattern, compiled in regexes:
            if compiled.search(name):
                list_id, allow, _ = _decode(code)
                hits.append(_hit(list_id, f"/{pattern}/", count, allow))

    def domains(self) -> Iterator[str]:
        """Every plain and wildcard rule name in the snapshot (for export and tests)."""
        for shard, trie in enumerate(self._tries):
            for key in trie.iterkeys():
                if shard == 0 or key.find(".") != len(key) - 1:  # one-label keys are in every shard
                    yield key[-2::-1]


def decide_hits(hits: Iterable[Hit], enabled: Container[int]) -> Hit | None:
    """The hit that decides a query among lists in ``enabled``, or None if none match.

    A rule covers its subdomains; the most specific rule wins, and at the same depth
    an allow beats a deny (so a deeper deny beats a shallower allow). Among equals the
    lowest list id wins, so the reason named is stable.
    """
    best_allow: Hit | None = None
    best_deny: Hit | None = None
    for hit in hits:
        if hit.list_id not in enabled:
            continue
        if hit.allow:
            if best_allow is None or (hit.depth, -hit.list_id) > (best_allow.depth, -best_allow.list_id):
                best_allow = hit
        elif best_deny is None or (hit.depth, -hit.list_id) > (best_deny.depth, -best_deny.list_id):
            best_deny = hit
    if best_allow is not None and (best_deny is None or best_allow.depth >= best_deny.depth):
        return best_allow
    return best_deny
