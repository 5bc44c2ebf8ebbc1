"""Compiling block lists into the snapshot the DNS process maps (policy/matcher.py reads
it): the rules of every source into marisa tries (one per ~250,000 names) plus hashes,
staged in a directory of its own, fsync'd, then made current by an atomic pointer, older
snapshots pruned. Big lists compile in a child process (a million names take ~2.5 s of CPU
and ~85 MB at peak), so the DNS loop and its heap never carry that work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

import marisa_trie  # type: ignore[import-untyped,unused-ignore]

from ..files import atomic_write, fsync_path
from ..helpers import HelperFailed, helper_job, python_call, run_helper
from ..policy.lists import ParseResult, ParseStats, Rule, RuleType, iter_batches, open_list
from ..policy.matcher import (
    HASH_FILE,
    HASH_RECORD,
    IDS_FILE,
    META_FILE,
    POINTER,
    SNAPSHOT_FORMAT,
    TRIE_FILE,
    ListFile,
    ListInfo,
    ListSource,
    SnapshotError,
    rule_code,
    trie_key,
)

# --- compiling -----------------------------------------------------------------------

SHARD_KEYS = 250_000  # trie keys per shard, about: bounds marisa's build memory (~100 bytes a key)
TRIE_LEVELS = 2  # marisa's num_tries; see _build_shard()
FEW_OTHER_KEYS = 50_000  # per shard: keys of other lists than the biggest looked up one by one


class _Compiler:
    """Accumulates rules as chunks of trie keys (one str per chunk, a key a line, by rule
    code and shard character), then builds the tries and the id tables from them.

    No Python object per name: a million names are ~21 MB of chunks. A name's combo (the
    lists holding it) is found after its trie is built, through its key id; combos are
    interned, so a name in one list costs one small index in the id table.
    """

    def __init__(self) -> None:
        self.chunks: dict[int, dict[str, list[str]]] = {}  # rule code -> shard char -> chunks of keys
        self.counts: Counter[str] = Counter()  # keys per shard character (with repeats)
        self.hashes: dict[bytes, int] = {}
        self.regexes: list[tuple[int, str]] = []
        self.combos: list[tuple[int, ...]] = [()]  # 0: no rule yet, what an id table starts with
        self._combo_ids: dict[tuple[int, ...], int] = {(): 0}
        self._grow: dict[int, dict[int, int]] = {}  # code -> {combo -> that combo with code}
        self.entries: dict[int, int] = {}  # list id -> distinct rules
        self._seen_regex: set[tuple[int, str]] = set()

    def _intern(self, combo: tuple[int, ...]) -> int:
        index = self._combo_ids.get(combo)
        if index is None:
            index = self._combo_ids[combo] = len(self.combos)
            self.combos.append(combo)
        return index

    def _grown(self, old: int, code: int) -> int:
        """The combo index of ``old`` plus ``code`` (``old`` itself when it has ``code``)."""
        grow = self._grow.setdefault(code, {})
        new = grow.get(old)
        if new is None:
            combo = self.combos[old]
            new = grow[old] = old if code in combo else self._intern(tuple(sorted((*combo, code))))
        return new

    def _add_keys(self, code: int, keys: Iterable[str]) -> None:
        buckets: dict[str, list[str]] = {}
        for key in keys:
            dot = key.find(".")
            char = key[dot + 1 : dot + 2]
            bucket = buckets.get(char)
            if bucket is None:
                bucket = buckets[char] = []
            bucket.append(key)
        by_char = self.chunks.setdefault(code, {})
        for char, found in buckets.items():
            by_char.setdefault(char, []).append("\n".join(found))
            self.counts[char] += len(found)

    def add_names(self, code: int, names: list[str]) -> None:
        """Plain names of one rule code (a chunk of a list file)."""
        if names:  # "a.com\nb.org" -> "gro.b.\nmoc.a.": trie_key of each, at C speed
            self._add_keys(code, ("\n".join(names)[::-1].replace("\n", ".\n") + ".").split("\n"))

    def add_rules(self, list_id: int, allow_list: bool, rules: Iterable[Rule]) -> None:
        """Add rules of one list (its distinct rules are counted in ``entries``)."""
        keys: dict[int, list[str]] = {}
        seen_regex = self._seen_regex
        self.entries.setdefault(list_id, 0)
        for rule in rules:
            allow = allow_list or rule.allow
            if rule.type is RuleType.DOMAIN or rule.type is RuleType.WILDCARD:
                code = rule_code(list_id, allow, rule.type is RuleType.WILDCARD)
                keys.setdefault(code, []).append(trie_key(rule.value))
            elif rule.type is RuleType.HASH:
                digest = bytes.fromhex(rule.value)
                old = self.hashes.get(digest, 0)
                new = self._grown(old, rule_code(list_id, allow, False))
                if new != old:
                    self.hashes[digest] = new
                    self.entries[list_id] += 1
            else:
                item = (rule_code(list_id, allow, False), rule.value)
                if item not in seen_regex:
                    seen_regex.add(item)
                    self.regexes.append(item)
                    self.entries[list_id] += 1
        for code, found in keys.items():
            self._add_keys(code, found)

    def _shards(self) -> dict[str, int]:
        """The shard of each shard character ({} for one shard).

        A query's key and every rule key that prefixes it share their first label and the
        character after it (the last of the name's second-level label), except rules of
        one label, which every shard holds: so one trie walk still finds every rule.
        """
        counts = {char: count for char, count in self.counts.items() if char}
        # Never more shards than characters: each shard gets one at least (below).
        shards = min(-(-sum(counts.values()) // SHARD_KEYS), len(counts))
        if shards <= 1:
            return {}
        loads = [0] * shards
        chars: dict[str, int] = {}
        for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            chars[char] = index = loads.index(min(loads))  # biggest first, each to the least loaded
            loads[index] += count
        return chars

    def _build_shard(self, shard: int, chars: dict[str, int], directory: Path) -> tuple[int, array[int]]:
        """Build and save one trie; its key count and id table (combo per key id)."""
        def mine(char: str) -> bool:
            return not chars or char == "" or chars.get(char) == shard

        def keys() -> Iterator[str]:
            for by_char in self.chunks.values():
                for char, chunks in by_char.items():
                    if mine(char):
                        for chunk in chunks:
                            yield from chunk.split("\n")
        # Two trie levels instead of marisa's default three (or one): a third level makes
        # each walk about twice as slow; two make the file ~20% smaller than one (8.9 vs
        # 11.3 MB for a million names, the pages a lookup may touch) at the same speed.
        trie = marisa_trie.Trie(keys(), num_tries=TRIE_LEVELS)
        trie.save(str(directory / TRIE_FILE.format(shard)))
        key_id = trie.key_id

        def own(by_char: dict[str, list[str]]) -> Iterator[list[str]]:
            for char, chunks in by_char.items():
                if mine(char):
                    for chunk in chunks:
                        yield chunk.split("\n")

        def count(by_char: dict[str, list[str]]) -> int:
            return sum(chunk.count("\n") + 1 for char, chunks in by_char.items() if mine(char) for chunk in chunks)

        # Most keys are usually of one list: its combo fills the table, and only the keys of
        # the others (few) are looked up, instead of a key_id() call per key.
        sizes = {code: count(by_char) for code, by_char in self.chunks.items()}
        big = max(sizes, key=lambda code: sizes[code])
        if sum(sizes.values()) - sizes[big] > FEW_OTHER_KEYS:
            big = -1
        ids = array("I", [self._grown(0, big) if big >= 0 else 0]) * len(trie)
        if big >= 0:
            others = {key for code, by_char in self.chunks.items() if code != big for keys in own(by_char) for key in keys}
            not_big = others.difference(chain.from_iterable(own(self.chunks[big])))
            for key in not_big:
                ids[key_id(key)] = 0
            # The big list's distinct keys; one-label keys counted in the first shard only.
            singles = set(chain.from_iterable(own({"": self.chunks[big].get("", [])}))) if shard else set()
            self.entries[big >> 2] = self.entries.get(big >> 2, 0) + len(trie) - len(not_big) - len(singles)
        for code, by_char in self.chunks.items():
            if code != big:
                added = self._add_code(code, {c: chunks for c, chunks in by_char.items() if mine(c)}, ids, key_id,
                                       shard)
                self.entries[code >> 2] = self.entries.get(code >> 2, 0) + added
        return len(trie), ids

    def _add_code(self, code: int, by_char: dict[str, list[str]], ids: array[int], key_id: Callable[[str], int],
                  shard: int) -> int:
        """Add ``code`` to the combos of its keys in one shard; how many had it not yet."""
        grow = self._grow.setdefault(code, {})
        added = 0
        for char, chunks in by_char.items():
            counted = char != "" or shard == 0  # one-label keys are in every shard, counted once
            for chunk in chunks:
                for key in chunk.split("\n"):
                    kid = key_id(key)
                    old = ids[kid]
                    new = grow.get(old)
                    if new is None:
                        new = self._grown(old, code)
                    if new != old:
                        ids[kid] = new
                        added += counted
        return added

    def write(self, directory: Path, lists: list[ListInfo]) -> list[ListInfo]:
        """Write the snapshot's files into ``directory``; the lists with their entries."""
        chars = self._shards()
        shards = (max(chars.values()) + 1 if chars else 1) if self.chunks else 0
        singles = len({key for by_char in self.chunks.values() for chunk in by_char.get("", ())
                       for key in chunk.split("\n")})
        counts: list[int] = []
        tables: list[array[int]] = []
        for shard in range(shards):
            count, ids = self._build_shard(shard, chars, directory)
            counts.append(count)
            tables.append(ids)
        self.chunks = {}  # the keys are in the tries now
        width = "B" if len(self.combos) <= 0xFF else "H" if len(self.combos) <= 0xFFFF else "I"
        for shard, ids in enumerate(tables):
            with open(directory / IDS_FILE.format(shard), "wb") as out:
                array(width, ids).tofile(out)
        with open(directory / HASH_FILE, "wb") as out:
            for digest in sorted(self.hashes):
                out.write(HASH_RECORD.pack(digest, self.hashes[digest]))
        infos = [replace(info, entries=info.entries + self.entries.get(info.list_id, 0)) for info in lists]
        meta: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "created": time.time(),
            "byteorder": sys.byteorder,
            "id_width": width,
            "keys": sum(counts) - max(shards - 1, 0) * singles,
            "shards": counts,
            "shard_chars": chars,
            "hashes": len(self.hashes),
            "lists": [
                {
                    "id": info.list_id,
                    "name": info.name,
                    "category": info.category,
                    "kind": info.kind,
                    "entries": info.entries,
                    "invalid": info.invalid,
                    "skipped": info.skipped,
                }
                for info in infos
            ],
            "combos": self.combos,
            "regexes": self.regexes,
        }
        with open(directory / META_FILE, "w", encoding="utf-8") as out:
            json.dump(meta, out, separators=(",", ":"))
        for path in directory.iterdir():
            fsync_path(path)
        return infos


def compile_snapshot(sources: Iterable[ListSource], root: Path | str, *, keep: int = 2) -> Path:
    """Compile ``sources`` into a new snapshot under ``root`` and make it current.

    Returns the snapshot directory. The previous ``keep - 1`` snapshots stay for
    processes still loading them; older ones are removed (mapped files stay valid
    for whoever maps them). Memory: about 60 MB above the interpreter for a million names.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    compiler = _Compiler()
    infos: list[ListInfo] = []
    seen_ids: set[int] = set()
    for src in sources:
        if not 0 <= src.list_id < 2**29:
            raise ValueError(f"list id out of range: {src.list_id}")
        if src.list_id in seen_ids:
            raise ValueError(f"duplicate list id: {src.list_id}")
        if src.kind not in ("deny", "allow"):
            raise ValueError(f"list kind must be deny or allow, not {src.kind!r}")
        seen_ids.add(src.list_id)
        allow_list = src.kind == "allow"
        if isinstance(src.rules, ParseResult):
            stats = src.rules.stats
            compiler.add_rules(src.list_id, allow_list, src.rules.rules())
        else:
            stats = ParseStats()
            code = rule_code(src.list_id, allow_list, False)
            with open_list(src.rules.path) as handle:
                for names, rules in iter_batches(handle, src.rules.format, stats):
                    compiler.add_names(code, names)
                    compiler.add_rules(src.list_id, allow_list, rules)
        infos.append(ListInfo(src.list_id, src.name, src.category, src.kind, 0, stats.invalid, stats.skipped))
    staging = root / f".compiling-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        compiler.write(staging, infos)
        del compiler
        final = root / f"snap-{time.time_ns():020d}-{secrets.token_hex(2)}"
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point_to(root, final.name)
    _prune(root, final.name, keep)
    return final


IN_PROCESS_BYTES = 2_000_000  # list files larger than this in all are compiled in a child process


def list_bytes(sources: Iterable[ListSource]) -> int:
    """The size on disk of the list files among ``sources`` (what compiling will read)."""
    total = 0
    for src in sources:
        if isinstance(src.rules, ListFile):
            with contextlib.suppress(OSError):
                total += src.rules.path.stat().st_size
    return total


async def compile_in_background(sources: list[ListSource], root: Path | str) -> Path:
    """``compile_snapshot`` off the event loop: in a thread for small lists, in a child
    process for big ones.

    A million names take ~2.5 s of CPU and ~85 MB at peak. In a thread, that work would
    share the interpreter with the DNS loop the whole time and leave the daemon's heap
    at its peak size afterwards; a child process runs on the other core and gives all
    of it back when it exits. Bundled seed lists (a few thousand names, milliseconds)
    stay in a thread, which costs no interpreter start.

    The child is a helper process (helpers.py: sources in a pickle on stdin, the
    snapshot's path back on stdout), not multiprocessing: a ProcessPoolExecutor leaves its
    resource-tracker process running for the daemon's whole life (13 MB for nothing).
    """
    if list_bytes(sources) <= IN_PROCESS_BYTES:
        return await asyncio.to_thread(compile_snapshot, sources, root)
    try:
        out, _ = await run_helper(python_call("from guardian.lists.compile import compiler_main; compiler_main()"),
                                  (sources, str(root)))
    except HelperFailed as exc:  # a cancelled compile leaves a staging dir, pruned later
        raise SnapshotError(f"the list compiler process failed: {exc}") from exc
    return Path(out.decode().strip().splitlines()[-1])


def compiler_main() -> None:
    """The list compiler process: sources from stdin, the snapshot's path to stdout."""
    sources, root = helper_job()
    try:
        final = compile_snapshot(sources, root)
    except SnapshotError as exc:
        print(f"SnapshotError: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(final, flush=True)


def _point_to(root: Path, name: str) -> None:
    atomic_write(root / POINTER, name + "\n")  # the rename itself survives a power cut too


def _prune(root: Path, current: str, keep: int) -> None:
    snapshots = sorted((p for p in root.glob("snap-*") if p.name != current), reverse=True)
    for old in snapshots[max(keep - 1, 0) :]:
        shutil.rmtree(old, ignore_errors=True)
    hour_ago = time.time() - 3600
    for stale in root.glob(".compiling-*"):
        # Another compile may be running right now; only a crash leaves old staging dirs.
        if stale.stat().st_mtime < hour_ago:
            shutil.rmtree(stale, ignore_errors=True)
