"""The compiled matcher: suffix matching, allow over deny, hashed lists, snapshots, reloads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guardian.lists.compile import compile_snapshot
from guardian.policy.lists import hash_name, parse_text
from guardian.policy.matcher import (
    NO_HITS,
    Hit,
    ListFile,
    ListSource,
    Matcher,
    SnapshotError,
    decide_hits,
    snapshot_dir,
)

ADS, ADULT, ALLOW, HOTLINE = 1, 2, 3, 4
ALL = {ADS, ADULT, ALLOW, HOTLINE}


def source(list_id: int, text: str, kind: str = "deny", category: str = "ads") -> ListSource:
    return ListSource(list_id, f"list {list_id}", category, kind, parse_text(text))  # type: ignore[arg-type]


@pytest.fixture
def matcher(tmp_path: Path) -> Matcher:
    sources = [
        source(
            ADS,
            "0.0.0.0 ads.example.com\n||tracker.net^\n@@||ok.tracker.net^\n*.wild.org\n"
            "/^ad[0-9]+\\./\n@@/^safe-ad[0-9]+\\./\n||shared.com^\n",
        ),
        source(ADULT, "adult.example\nshared.com\nx.deep.adult.example\n", category="adult"),
        source(ALLOW, "help.adult.example\nshared.com\n", kind="allow", category="allow"),
        source(HOTLINE, hash_name("secret.example") + "\n", category="child-abuse-material"),
    ]
    return Matcher.load(compile_snapshot(sources, tmp_path / "lists"))


def winner(m: Matcher, name: str, enabled: set[int] | None = None) -> tuple[int, str, bool] | None:
    hit = decide_hits(m.lookup(name), ALL if enabled is None else enabled)
    return None if hit is None else (hit.list_id, hit.domain, hit.allow)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # a domain rule covers the name and its subdomains, never a sibling or a parent
        ("ads.example.com", (ADS, "ads.example.com", False)),
        ("www.cdn.ads.example.com", (ADS, "ads.example.com", False)),
        ("example.com", None),
        ("bads.example.com", None),
        ("ads.example.co", None),
        ("com", None),
        # adblock exception deeper than the block: allowed
        ("ok.tracker.net", (ADS, "ok.tracker.net", True)),
        ("a.ok.tracker.net", (ADS, "ok.tracker.net", True)),
        ("no.tracker.net", (ADS, "tracker.net", False)),
        # wildcard: subdomains only
        ("wild.org", None),
        ("a.wild.org", (ADS, "*.wild.org", False)),
        ("b.a.wild.org", (ADS, "*.wild.org", False)),
        # regex on the full name; an allow regex at the same depth wins
        ("ad12.example.net", (ADS, "/^ad[0-9]+\\./", False)),
        ("safe-ad1.example.net", (ADS, "/^safe-ad[0-9]+\\./", True)),
        ("x.ad12.example.net", None),
        # allow list beats deny at the same level, and below it
        ("help.adult.example", (ALLOW, "help.adult.example", True)),
        ("www.help.adult.example", (ALLOW, "help.adult.example", True)),
        ("shared.com", (ALLOW, "shared.com", True)),
        # a deeper deny beats a shallower allow; a shallower deny loses to a deeper allow
        ("adult.example", (ADULT, "adult.example", False)),
        ("x.deep.adult.example", (ADULT, "x.deep.adult.example", False)),
        # hashed lists match like plain lists, subdomains included
        ("secret.example", (HOTLINE, "secret.example", False)),
        ("www.secret.example", (HOTLINE, "secret.example", False)),
        ("notsecret.example", None),
    ],
)
def test_decisions(matcher: Matcher, name: str, expected: tuple[int, str, bool] | None) -> None:
    assert winner(matcher, name) == expected


def test_deeper_deny_beats_shallower_allow(tmp_path: Path) -> None:
    m = Matcher.load(
        compile_snapshot(
            [source(1, "@@||example.com^\n||ads.example.com^"), source(2, "a.ads.example.com", kind="allow")],
            tmp_path,
        )
    )
    assert winner(m, "example.com") == (1, "example.com", True)
    assert winner(m, "x.ads.example.com") == (1, "ads.example.com", False)
    assert winner(m, "a.ads.example.com") == (2, "a.ads.example.com", True)
    assert winner(m, "b.a.ads.example.com") == (2, "a.ads.example.com", True)
    assert winner(m, "x.ads.example.com", {2}) is None
    assert winner(m, "x.ads.example.com", {1}) == (1, "ads.example.com", False)


def test_wildcard_and_bare_name_together(tmp_path: Path) -> None:
    m = Matcher.load(compile_snapshot([source(1, "*.example.com"), source(2, "example.com")], tmp_path))
    assert winner(m, "example.com", {1}) is None
    assert winner(m, "a.example.com", {1}) == (1, "*.example.com", False)
    assert winner(m, "example.com", {2}) == (2, "example.com", False)
    assert set(m.lookup("a.example.com")) == {
        Hit(1, "*.example.com", 3, False),
        Hit(2, "example.com", 2, False),
    }


def test_every_hit_is_returned_when_several_lists_hold_a_name(matcher: Matcher) -> None:
    hits = matcher.lookup("www.shared.com")
    assert sorted(hits, key=lambda h: h.list_id) == [
        Hit(ADS, "shared.com", 2, False),
        Hit(ADULT, "shared.com", 2, False),
        Hit(ALLOW, "shared.com", 2, True),
    ]
    assert winner(matcher, "www.shared.com", {ADS, ADULT}) == (ADS, "shared.com", False)
    assert winner(matcher, "www.shared.com", {ADULT}) == (ADULT, "shared.com", False)


def test_disabled_lists_are_ignored(matcher: Matcher) -> None:
    assert winner(matcher, "adult.example", {ADS}) is None
    assert winner(matcher, "help.adult.example", {ADULT}) == (ADULT, "adult.example", False)


def test_a_miss_is_the_shared_empty_tuple(matcher: Matcher) -> None:
    assert matcher.lookup("nothing.invalid") is NO_HITS
    assert decide_hits(NO_HITS, ALL) is None


def test_hits_are_frozen(matcher: Matcher) -> None:
    hit = matcher.lookup("ads.example.com")[0]
    with pytest.raises(AttributeError):
        hit.allow = True  # type: ignore[misc]


def test_list_metadata(matcher: Matcher) -> None:
    info = matcher.lists[ADS]
    assert (info.name, info.category, info.kind) == ("list 1", "ads", "deny")
    assert info.entries == 7
    assert matcher.lists[ALLOW].kind == "allow"
    assert matcher.lists[HOTLINE].entries == 1


def test_file_sources_are_streamed_with_counts(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("# x\n0.0.0.0 a.example b.example\nbad line\n127.0.0.1 localhost\n0.0.0.0 a.example\n")
    m = Matcher.load(compile_snapshot([ListSource(7, "hosts", "ads", "deny", ListFile(path, "hosts"))], tmp_path / "s"))
    assert m.lists[7].entries == 2 and m.lists[7].invalid == 1 and m.lists[7].skipped == 1
    assert winner(m, "x.b.example", {7}) == (7, "b.example", False)
    assert sorted(m.domains()) == ["a.example", "b.example"]


def test_a_big_list_compiles_in_a_child_and_its_failure_is_a_snapshot_error(tmp_path: Path) -> None:
    import asyncio

    from guardian.lists.compile import IN_PROCESS_BYTES, compile_in_background

    path = tmp_path / "big.hosts"
    with path.open("w") as out:
        for i in range(IN_PROCESS_BYTES // 25):
            out.write(f"0.0.0.0 n{i:07d}.big.example\n")
    assert path.stat().st_size > IN_PROCESS_BYTES
    sources = [ListSource(7, "big", "ads", "deny", ListFile(path, "hosts"))]
    m = Matcher.load(asyncio.run(compile_in_background(sources, tmp_path / "s")))
    assert m.lists[7].entries == IN_PROCESS_BYTES // 25
    assert winner(m, "www.n0000042.big.example", {7}) == (7, "n0000042.big.example", False)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the snapshots should go")
    with pytest.raises(SnapshotError, match="list compiler process failed: .*not-a-dir"):
        asyncio.run(compile_in_background(sources, blocked))


def test_empty_snapshot(tmp_path: Path) -> None:
    m = Matcher.load(compile_snapshot([], tmp_path))
    assert m.lookup("a.example") is NO_HITS and m.key_count == 0
    assert Matcher.empty().lookup("a.example") is NO_HITS


def test_bad_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        compile_snapshot([source(1, "a.example"), source(1, "b.example")], tmp_path)
    with pytest.raises(ValueError, match="out of range"):
        compile_snapshot([source(-1, "a.example")], tmp_path)
    assert not list(tmp_path.glob(".compiling-*"))


def test_missing_or_foreign_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no compiled lists"):
        Matcher.load(tmp_path)
    snap = compile_snapshot([source(1, "a.example")], tmp_path)
    meta = json.loads((snap / "meta.json").read_text())
    meta["format"] = 999
    (snap / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError, match="another version"):
        Matcher.load(tmp_path)


_PROBE = """
import json, sys
from guardian.policy.matcher import Matcher
m = Matcher.load(sys.argv[1])
print(json.dumps([[[h.list_id, h.domain, h.depth, h.allow] for h in m.lookup(n)] for n in sys.argv[2:]]))
"""


def test_snapshot_round_trip_in_a_new_process(matcher: Matcher, tmp_path: Path) -> None:
    names = [
        "www.ads.example.com",
        "ok.tracker.net",
        "a.wild.org",
        "wild.org",
        "ad1.x.net",
        "www.secret.example",
        "www.shared.com",
        "miss.example",
    ]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "lists"), *names],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    theirs = json.loads(out.stdout)
    ours = [[[h.list_id, h.domain, h.depth, h.allow] for h in matcher.lookup(n)] for n in names]
    assert theirs == ours
    assert any(theirs) and not all(theirs)


def test_pointer_moves_and_old_snapshots_are_pruned(tmp_path: Path) -> None:
    first = compile_snapshot([source(1, "a.example")], tmp_path)
    old = Matcher.load(tmp_path)
    second = compile_snapshot([source(1, "b.example")], tmp_path)
    third = compile_snapshot([source(1, "c.example")], tmp_path)
    assert snapshot_dir(tmp_path) == third
    assert not first.exists() and second.exists()  # keep=2: the current and one before
    # the removed snapshot is still mapped and answering
    assert winner(old, "a.example", {1}) == (1, "a.example", False)
    assert winner(Matcher.load(tmp_path), "c.example", {1}) == (1, "c.example", False)
    assert winner(Matcher.load(tmp_path), "a.example", {1}) is None


def test_a_missing_snapshot_is_a_snapshot_error(tmp_path: Path) -> None:
    assert Matcher.empty().lookup("a.example") is NO_HITS
    assert Matcher.load(compile_snapshot([source(1, "a.example")], tmp_path / "ok")).lookup("a.example")
    with pytest.raises(SnapshotError):
        Matcher.load(tmp_path / "missing")


def test_atomic_reload_under_concurrent_lookups(tmp_path: Path) -> None:
    """Threads hammer lookups while the matcher is swapped 20 times.

    Version A blocks a.example and both.example; version B blocks b.example and
    both.example. Each answer must be exactly A's or B's, and both.example must
    never go unblocked.
    """
    text_a = "a.example\nboth.example\n" + "".join(f"a{i}.filler.example\n" for i in range(2000))
    text_b = "b.example\nboth.example\n" + "".join(f"b{i}.filler.example\n" for i in range(2000))
    root_a = compile_snapshot([source(1, text_a)], tmp_path / "a")
    root_b = compile_snapshot([source(1, text_b)], tmp_path / "b")
    live = [Matcher.load(root_a)]  # one reference swapped whole, as with_matcher does in the snapshot
    allowed = {
        ("x.a.example", "x.b.example", "www.both.example"): {(True, False, True), (False, True, True)},
    }
    names = ("x.a.example", "x.b.example", "www.both.example")
    seen: set[tuple[bool, ...]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        try:
            while not stop.is_set():
                m = live[0]  # one matcher per "query", as the policy step does
                seen.add(tuple(bool(m.lookup(n)) for n in names))
                if not live[0].lookup("both.example"):
                    seen.add(("both.example unblocked",))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            # a fresh load each time: new maps made, old ones dropped while in use
            live[0] = Matcher.load(root_b if i % 2 == 0 else root_a)
            time.sleep(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert seen <= allowed[names]
    assert seen == allowed[names]  # both versions were really served


def test_hit_cache_overflow_keeps_answers_right(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import guardian.policy.matcher as matcher_module

    monkeypatch.setattr(matcher_module, "HIT_CACHE_SIZE", 3)
    m = Matcher.load(
        compile_snapshot([source(1, "".join(f"*.w{i}.example\nd{i}.example\n" for i in range(10)))], tmp_path)
    )
    for _ in range(2):
        for i in range(10):
            assert winner(m, f"w{i}.example", {1}) is None
            assert winner(m, f"x.w{i}.example", {1}) == (1, f"*.w{i}.example", False)
            assert winner(m, f"d{i}.example", {1}) == (1, f"d{i}.example", False)
    assert len(m._shard0[2]) <= 3  # the hit cache of its one shard


@pytest.mark.parametrize("few", [0, 50_000])  # every key looked up, or the biggest list's filled in
def test_a_sharded_snapshot_answers_as_one_trie(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    import guardian.lists.compile as compile_module

    names = [f"n{i}{'abcdefgh'[i % 8]}.{tld}" for i in range(300) for tld in ("com", "org", "co.uk")]
    deny = tmp_path / "deny.txt"  # a list file (the batch parser), rules of every kind, a TLD blocked whole
    deny.write_text("\n".join([*(f"0.0.0.0 {n}" for n in names[::2]), "||zz^", "*.yy", "*.wild.n1b.com",
                               "@@||ok.n2c.org^", "||n4e.co.uk^", "n4e.co.uk", "UPPER.n6g.com", "/^re[0-9]\\./"]))
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"www.{n}" if i % 3 else n for i, n in enumerate(names[::3])) + "\nzz.example\n")
    sources = [
        ListSource(1, "deny", "ads", "deny", ListFile(deny)),
        ListSource(2, "other", "adult", "deny", ListFile(other, "domains")),
        source(3, "\n".join(names[::5]) + "\n||yy^\n", kind="allow", category="allow"),
    ]
    monkeypatch.setattr(compile_module, "FEW_OTHER_KEYS", 0)
    whole = Matcher.load(compile_snapshot(sources, tmp_path / "one"))  # one trie, every key looked up
    monkeypatch.setattr(compile_module, "FEW_OTHER_KEYS", few)
    monkeypatch.setattr(compile_module, "SHARD_KEYS", 40)
    sharded = Matcher.load(compile_snapshot(sources, tmp_path / "many"))
    meta = json.loads((snapshot_dir(tmp_path / "many") / "meta.json").read_text())
    assert len(meta["shards"]) == 10 and len(json.loads((snapshot_dir(tmp_path / "one") / "meta.json").read_text())
                                           ["shards"]) == 1
    queries = [*names, *(f"www.{n}" for n in names), *(f"a.b.{n}" for n in names), "zz", "a.zz", "zz.example",
               "yy", "x.yy", "a.wild.n1b.com", "wild.n1b.com", "ok.n2c.org", "x.ok.n2c.org", "n4e.co.uk",
               "upper.n6g.com", "re1.n0a.com", "com", "uk", "n0a.comx", "nothing.example", "localhost"]
    for name in queries:
        assert sorted(sharded.lookup(name), key=repr) == sorted(whole.lookup(name), key=repr), name
    assert winner(sharded, "a.zz") == (1, "zz", False)
    assert winner(sharded, "yy") == (3, "yy", True)
    assert winner(sharded, "x.yy") == (1, "*.yy", False)  # the deeper rule
    assert winner(sharded, "x.n2c.com") == (1, "n2c.com", False)
    assert sharded.key_count == whole.key_count
    assert sorted(sharded.domains()) == sorted(whole.domains())
    assert sharded.lists == whole.lists
    assert sharded.lists[1].entries == len(names[::2]) + 6 and sharded.lists[2].entries == len(names[::3]) + 1
