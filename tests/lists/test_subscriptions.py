"""Downloaded lists against a local HTTP(S) server on loopback: refresh outcomes, last-good
fallback, status.json, the CLI table, scheduling, and the sources the matcher compiles."""

from __future__ import annotations

import asyncio
import io
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from guardian.config import ListSettings
from guardian.dns.upstreams.base import UpstreamError
from guardian.lists import subscriptions as subs_mod
from guardian.lists.compile import compile_snapshot
from guardian.lists.subscriptions import (
    SERVICE_FIRST_ID,
    STATUS_FILE,
    Downloader,
    ListStatus,
    Subscription,
    collect_subscriptions,
    fingerprint,
    format_status_table,
    load_status,
    local_list_sources,
    progress_printer,
    schedule_refreshes,
)
from guardian.policy import lists
from guardian.policy.matcher import ListFile, Matcher
from guardian.policy.rulepacks import load_rules

GOOD = b"# source: test\nads.example\n0.0.0.0 tracker.example\n||adult.example^\n"
NEWER = b"ads.example\nnew.example\n"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListServer:
    """aiohttp on 127.0.0.1 (a port the OS picks); ``routes`` maps a path to a handler."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.release = asyncio.Event()  # slow handlers wait on it; set before shutdown
        self.ssl_context = ssl_context
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="<html><body>Not here</body></html>")
        return await handler(request)

    async def __aenter__(self) -> ListServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()

    def url(self, path: str = "/list.txt", host: str = "lists.test", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def serve(self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, body=body, headers=headers or {})

        self.routes[path] = handler


# The test servers listen on loopback: their hosts are listed as an operator lists a LAN
# list server (lists_allow_private_hosts); everything else on loopback is refused.
LOCAL = ("lists.test", "127.0.0.1")


class Resolver:
    """resolve_host for the downloader: lists.test is loopback, everything else fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, name: str) -> str:
        self.calls.append(name)
        if name == "lists.test":
            return "127.0.0.1"
        raise UpstreamError(f"could not resolve {name} through the bootstrap upstreams")


def run(coro: Awaitable[Any]) -> Any:
    """Run a test body; a download that never ends fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coro, 20))


def parts(store: Path) -> list[str]:
    return [p.name for p in store.iterdir() if p.name.endswith(".part")]


def sub_for(server: ListServer, path: str = "/list.txt", fmt: str = "auto") -> Subscription:
    return Subscription("Test list", "ads", server.url(path), fmt)  # type: ignore[arg-type]


# --- refresh outcomes ----------------------------------------------------------------


def test_success_stores_the_copy_counts_entries_and_resolves_through_resolve_host(tmp_path: Path) -> None:
    resolver = Resolver()
    seen: list[tuple[int, int | None]] = []

    async def main() -> ListStatus:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD, headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"})
            dl = Downloader(tmp_path, resolver, allow_private_hosts=LOCAL)
            sub = sub_for(server)
            status = await dl.refresh(sub, progress=lambda done, total: seen.append((done, total)))
            assert dl.copy_path(sub).read_bytes() == GOOD
            assert "If-None-Match" not in server.requests[0][1]  # no copy yet: nothing to be conditional on
            return status

    before = time.time()
    status = run(main())
    assert status.outcome == "updated" and status.changed
    assert status.last_error is None
    assert status.entries == 3 and status.invalid == 0
    assert status.bytes == len(GOOD)
    assert status.etag == '"v1"' and status.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert status.last_update is not None and status.last_update >= before - 1
    assert resolver.calls == ["lists.test"]
    assert seen[0] == (0, len(GOOD)) and seen[-1] == (len(GOOD), len(GOOD))
    assert load_status(tmp_path)[status.key] == status
    assert parts(tmp_path) == []


def test_the_daemon_downloads_in_a_child_process_resolving_through_the_upstreams(
    tmp_path: Path, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProcessDownloader: the same outcome and status as in-process, but the work (and
    aiohttp) in a short-lived child; this process's Downloader.refresh is never run."""
    from guardian.addresses import parse_upstream
    from guardian.lists.subscriptions import ProcessDownloader

    upstream.zone["lists.test"] = [("A", "127.0.0.1")]
    monkeypatch.setattr(Downloader, "refresh", lambda *a, **k: pytest.fail("downloaded in the DNS process"))

    async def main() -> tuple[ListStatus, ListStatus, bytes]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD, headers={"ETag": '"v1"'})
            dl = ProcessDownloader(tmp_path, [parse_upstream(upstream.url)], allow_private_hosts=LOCAL)
            sub = sub_for(server)
            first = await dl.refresh(sub)
            del server.routes["/list.txt"]
            second = await dl.refresh(sub)
            return first, second, dl.copy_path(sub).read_bytes()

    first, second, copy = run(main())
    assert first.outcome == "updated" and first.entries == 3 and first.etag == '"v1"'
    assert ("udp", "lists.test", "A") in upstream.queries
    assert second.outcome == "failed" and "HTTP 404" in (second.last_error or "")
    assert copy == GOOD  # the last good copy stays
    assert load_status(tmp_path)[first.key] == second


def test_a_download_process_that_dies_is_a_failed_refresh_keeping_the_copy(tmp_path: Path) -> None:
    from guardian.lists.subscriptions import ProcessDownloader

    async def main() -> tuple[ListStatus, bytes]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            sub = sub_for(server)
            await Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL).refresh(sub)  # a good copy first
            dl = ProcessDownloader(tmp_path)
            dl.argv = (sys.executable, "-c", "import os; os.kill(os.getpid(), 9)")  # killed (the OOM killer, say)
            return await dl.refresh(sub), dl.copy_path(sub).read_bytes()

    status, copy = run(main())
    assert status.outcome == "failed"
    assert "the list download process failed" in (status.last_error or "")
    assert copy == GOOD and status.entries == 3
    assert load_status(tmp_path)[status.key].last_error == status.last_error


def test_not_modified_sends_conditional_headers_and_keeps_the_copy_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_iter_rules = lists.iter_rules

    def counting_iter_rules(*args: Any, **kwargs: Any) -> Any:
        parsed.append("parse")
        return real_iter_rules(*args, **kwargs)

    monkeypatch.setattr("guardian.lists.subscriptions.iter_rules", counting_iter_rules)
    modified = "Mon, 01 Jan 2024 00:00:00 GMT"

    async def main() -> tuple[ListStatus, ListStatus, ListServer, Path]:
        async with ListServer() as server:

            async def handler(request: web.Request) -> web.StreamResponse:
                if request.headers.get("If-None-Match") == '"v1"':
                    return web.Response(status=304)
                return web.Response(body=GOOD, headers={"ETag": '"v1"', "Last-Modified": modified})

            server.routes["/list.txt"] = handler
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL)
            sub = sub_for(server)
            first = await dl.refresh(sub)
            assert parsed == ["parse"]
            second = await dl.refresh(sub)
            return first, second, server, dl.copy_path(sub)

    first, second, server, copy = run(main())
    headers = server.requests[1][1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == modified
    assert second.outcome == "unchanged" and not second.changed
    assert parsed == ["parse"]  # the 304 was not parsed again
    assert copy.read_bytes() == GOOD
    assert second.entries == first.entries == 3
    assert second.last_update == first.last_update
    assert second.last_checked is not None and first.last_checked is not None
    assert second.last_checked >= first.last_checked


def test_same_bytes_without_etag_count_as_unchanged(tmp_path: Path) -> None:
    async def main() -> tuple[ListStatus, ListStatus]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL)
            return await dl.refresh(sub_for(server)), await dl.refresh(sub_for(server))

    first, second = run(main())
    assert (first.outcome, second.outcome) == ("updated", "unchanged")
    assert parts(tmp_path) == []


def test_a_new_version_replaces_the_copy(tmp_path: Path) -> None:
    async def main() -> tuple[ListStatus, bytes]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL)
            sub = sub_for(server)
            await dl.refresh(sub)
            server.serve("/list.txt", NEWER)
            return await dl.refresh(sub), dl.copy_path(sub).read_bytes()

    status, copy = run(main())
    assert status.outcome == "updated" and status.entries == 2
    assert copy == NEWER


def refresh_twice(tmp_path: Path, second: Callable[[ListServer], None], **downloader: Any) -> tuple[ListStatus, bytes]:
    """A good first download, then whatever ``second`` sets up; the status and copy after."""

    async def main() -> tuple[ListStatus, bytes]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL, **downloader)
            sub = sub_for(server)
            assert (await dl.refresh(sub)).outcome == "updated"
            second(server)
            status = await dl.refresh(sub)
            return status, dl.copy_path(sub).read_bytes()

    return run(main())  # type: ignore[no-any-return]


def test_http_error_keeps_the_last_good_copy_and_records_the_error(tmp_path: Path) -> None:
    def second(server: ListServer) -> None:
        del server.routes["/list.txt"]

    status, copy = refresh_twice(tmp_path, second)
    assert status.outcome == "failed"
    assert status.last_error is not None and "HTTP 404" in status.last_error
    assert copy == GOOD
    assert status.entries == 3  # the counts still describe the copy in use
    saved = load_status(tmp_path)[status.key]
    assert saved.last_error == status.last_error and saved.last_attempt is not None
    assert saved.last_update is not None and saved.last_update <= saved.last_attempt


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(bytes(range(256)) * 64, "binary", id="binary"),
        pytest.param(
            b"<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n<body>\n<p>Service down</p>\n</body>\n</html>\n",
            "rejected",
            id="html-page",
        ),
        pytest.param(b"ok.example\n" + b"not a domain line at all\n" * 10, "mostly invalid", id="mostly-invalid"),
        pytest.param(b"", "no rules", id="empty"),
        pytest.param(b"# only comments\n! nothing else\n", "no rules", id="comments-only"),
    ],
)
def test_garbage_is_rejected_and_the_last_good_copy_kept(tmp_path: Path, body: bytes, error: str) -> None:
    status, copy = refresh_twice(tmp_path, lambda server: server.serve("/list.txt", body))
    assert status.outcome == "failed"
    assert status.last_error is not None and error in status.last_error
    assert copy == GOOD
    assert parts(tmp_path) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_download_is_stopped(tmp_path: Path, chunked: bool) -> None:
    big = b"x.example\n" * 2000  # 20 kB against a 4 kB cap
    sent: list[int] = []

    def second(server: ListServer) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            if chunked:
                response.enable_chunked_encoding()
            else:
                response.content_length = len(big)
            await response.prepare(request)
            for start in range(0, len(big), 1000):
                await response.write(big[start : start + 1000])
                sent.append(start)
                await asyncio.sleep(0.001)
            return response

        server.routes["/list.txt"] = handler

    status, copy = refresh_twice(tmp_path, second, max_bytes=4000)
    assert status.outcome == "failed"
    assert status.last_error is not None and "cap" in status.last_error
    assert copy == GOOD
    assert parts(tmp_path) == []
    if not chunked:
        assert len(sent) < 5  # refused on the Content-Length, before the body


def test_slow_server_times_out(tmp_path: Path) -> None:
    def second(server: ListServer) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            response.content_length = 1000
            await response.prepare(request)
            await response.write(b"ads.example\n")
            with pytest.raises(asyncio.TimeoutError):  # dribbles until released
                await asyncio.wait_for(server.release.wait(), 10)
            return response

        server.routes["/list.txt"] = handler

    started = time.monotonic()
    status, copy = refresh_twice(tmp_path, second, timeout=0.5)
    assert time.monotonic() - started < 5
    assert status.outcome == "failed"
    assert status.last_error is not None and "timed out" in status.last_error
    assert copy == GOOD
    assert parts(tmp_path) == []


def test_redirects_to_http_are_followed(tmp_path: Path) -> None:
    async def main() -> tuple[ListStatus, list[str]]:
        async with ListServer() as server:
            server.serve("/moved", b"", status=301, headers={"Location": "/list.txt"})
            server.serve("/list.txt", GOOD)
            status = await Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL).refresh(sub_for(server, "/moved"))
            return status, [path for path, _ in server.requests]

    status, paths = run(main())
    assert status.outcome == "updated" and status.entries == 3
    assert paths == ["/moved", "/list.txt"]


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("file:///etc/passwd", "refused redirect"),
        ("ftp://lists.test/list.txt", "refused redirect"),
        ("/loop", "more than 5 redirects"),
    ],
)
def test_bad_redirects_are_refused(tmp_path: Path, location: str, error: str) -> None:
    async def main() -> tuple[ListStatus, int, bool]:
        async with ListServer() as server:
            server.serve("/loop", b"", status=302, headers={"Location": location})
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL)
            sub = sub_for(server, "/loop")
            status = await dl.refresh(sub)
            return status, len(server.requests), dl.copy_path(sub).exists()

    status, requests, has_copy = run(main())
    assert status.outcome == "failed"
    assert status.last_error is not None and error in status.last_error
    assert not has_copy
    assert requests <= 6


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://lists.test/list.txt", "lists.test/list.txt", "http:///x"])
def test_non_http_urls_are_refused_before_any_lookup(tmp_path: Path, url: str) -> None:
    resolver = Resolver()
    status = run(Downloader(tmp_path, resolver, allow_private_hosts=LOCAL).refresh(Subscription("Bad", "ads", url)))
    assert status.outcome == "failed"
    assert status.last_error is not None and "refused" in status.last_error
    assert resolver.calls == []
    assert load_status(tmp_path)[status.key].last_error == status.last_error


def test_a_host_the_upstreams_cannot_resolve_fails_without_the_system_resolver(tmp_path: Path) -> None:
    resolver = Resolver()

    async def main() -> ListStatus:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            # "localhost" would resolve through the system; the downloader must not ask it.
            return await Downloader(tmp_path, resolver, allow_private_hosts=LOCAL).refresh(Subscription("X", "ads", server.url(host="localhost")))

    status = run(main())
    assert resolver.calls == ["localhost"]
    assert status.outcome == "failed"
    assert status.last_error is not None and "cannot resolve localhost" in status.last_error


def test_an_ip_literal_needs_no_resolving(tmp_path: Path) -> None:
    resolver = Resolver()

    async def main() -> ListStatus:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            return await Downloader(tmp_path, resolver, allow_private_hosts=LOCAL).refresh(Subscription("X", "ads", server.url(host="127.0.0.1")))

    status = run(main())
    assert status.outcome == "updated"
    assert resolver.calls == []


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("lists.test").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, str(ca_file)


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-ca", "unknown-ca"])
def test_https_download_checks_the_certificate(tmp_path: Path, tls: tuple[ssl.SSLContext, str], trusted: bool) -> None:
    server_context, ca_file = tls
    resolver = Resolver()

    async def main() -> ListStatus:
        async with ListServer(server_context) as server:
            server.serve("/list.txt", GOOD)
            dl = Downloader(tmp_path, resolver, ca_file=ca_file if trusted else None, allow_private_hosts=LOCAL)
            return await dl.refresh(Subscription("TLS", "ads", server.url(scheme="https")))

    status = run(main())
    assert resolver.calls == ["lists.test"]
    if trusted:
        assert status.outcome == "updated" and status.entries == 3
    else:
        assert status.outcome == "failed"
        assert status.last_error is not None and "certificate" in status.last_error.lower()


# --- status and the CLI table --------------------------------------------------------


def test_status_round_trip_and_table(tmp_path: Path) -> None:
    async def main() -> tuple[ListStatus, ListStatus]:
        async with ListServer() as server:
            server.serve("/good.txt", GOOD)
            dl = Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL)
            good = await dl.refresh(Subscription("Good list", "adult", server.url("/good.txt")))
            bad = await dl.refresh(Subscription("Broken list", "gambling", server.url("/gone.txt")))
            return good, bad

    good, bad = run(main())
    loaded = load_status(tmp_path)
    assert loaded == {good.key: good, bad.key: bad}
    raw = json.loads((tmp_path / STATUS_FILE).read_text())
    for field in (
        "url",
        "entries",
        "invalid",
        "last_update",
        "last_attempt",
        "last_error",
        "etag",
        "last_modified",
        "bytes",
    ):
        assert field in raw["lists"][good.key]

    never = ListStatus.pending(Subscription("Not yet", "ads", "https://lists.test/x"))
    table = format_status_table([*loaded.values(), never])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["LIST", "CATEGORY", "ENTRIES"]
    row = {line.split("  ")[0]: line for line in lines[1:]}
    assert set(row) == {"Good list", "Broken list", "Not yet"}
    assert " 3 " in row["Good list"] and time.strftime("%Y-%m-%d", time.localtime(good.last_update)) in row["Good list"]
    assert "HTTP 404" in row["Broken list"] and "never" in row["Broken list"]
    assert row["Not yet"].count("never") == 2
    assert format_status_table({}) == "No downloaded lists configured.\n"


def test_unreadable_status_starts_afresh(tmp_path: Path) -> None:
    assert load_status(tmp_path) == {}
    (tmp_path / STATUS_FILE).write_text("{not json")
    assert load_status(tmp_path) == {}
    (tmp_path / STATUS_FILE).write_text(
        json.dumps({"lists": {"k": {"key": "k", "name": "n", "category": "c", "url": "u", "later": 1}}})
    )
    assert load_status(tmp_path)["k"] == ListStatus("k", "n", "c", "u")  # unknown fields from a newer version ignored


# --- which lists, scheduling -----------------------------------------------------------


def test_collect_subscriptions_takes_config_urls_and_only_enabled_packs() -> None:
    rules = load_rules()
    config = [
        ListSettings(name="Big adult list", category="adult", url="https://lists.example.org/adult.txt"),
        ListSettings(
            name="Hotline", category="child-abuse-material", path="/etc/guardian/hotline.sha256", format="sha256"
        ),
        ListSettings(name="Again", category="adult", url="https://lists.example.org/adult.txt"),
    ]
    subs = collect_subscriptions(config, rules.categories.values(), fetch={"adult"})
    assert subs[0] == Subscription("Big adult list", "adult", "https://lists.example.org/adult.txt", "auto")
    assert len([s for s in subs if s.url == "https://lists.example.org/adult.txt"]) == 1
    packs = subs[1:]
    assert packs and {s.category for s in packs} == {"adult"}
    assert [s.url for s in packs] == [s.url for s in rules.categories["adult"].subscriptions]
    assert collect_subscriptions(config, rules.categories.values()) == subs[:1]  # nothing enabled: no pack lists
    assert len({s.key for s in subs}) == len(subs)


def test_schedule_refreshes_runs_the_first_fetch_and_reports_changes_once(tmp_path: Path) -> None:
    changed: list[str] = []

    async def main() -> tuple[Any, Any, list[ListStatus]]:
        async with ListServer() as server:
            server.serve("/a.txt", GOOD, headers={"ETag": '"a"'})
            server.serve("/b.txt", NEWER)
            subs = [Subscription("A", "ads", server.url("/a.txt")), Subscription("B", "adult", server.url("/b.txt"))]
            scheduler = AsyncIOScheduler()
            scheduler.start()
            done = asyncio.Event()

            async def on_changed() -> None:
                changed.append("recompile")
                done.set()

            refresher = schedule_refreshes(
                scheduler, subs, Downloader(tmp_path, Resolver(), allow_private_hosts=LOCAL), on_changed, start_delay=0.1
            )
            interval = scheduler.get_job(subs_mod.REFRESH_JOB).trigger
            await asyncio.wait_for(done.wait(), 10)
            assert refresher.due(24 * 3600) == []
            again = await refresher.run()  # nothing new on the server: no recompile
            scheduler.shutdown(wait=False)
            return interval, refresher, again

    interval, _, again = run(main())
    assert changed == ["recompile"]  # two lists fetched, one recompile
    assert interval.interval.total_seconds() == 24 * 3600 and interval.jitter == 3600
    assert [s.outcome for s in again] == ["unchanged", "unchanged"]


# --- local sources -----------------------------------------------------------------------


def test_local_sources_ids_and_fingerprint(tmp_path: Path) -> None:
    rules = load_rules()
    store = tmp_path / "store"
    store.mkdir()
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "extra.txt").write_text("extra.example\n")
    config = [
        ListSettings(name="Extra", category="adult", path="extra.txt"),
        ListSettings(name="Later", category="gambling", path=str(config_dir / "later.txt")),
        ListSettings(name="By URL", category="ads", url="https://lists.test/x"),
    ]
    downloaded = Subscription("By URL", "ads", "https://lists.test/x")
    (store / f"{downloaded.key}.list").write_bytes(GOOD)
    not_yet = Subscription("Not fetched", "ads", "https://lists.test/y")

    first = local_list_sources(rules.categories.values(), config, [downloaded, not_yet], store, base_dir=config_dir)
    by_name = {s.name: s for s in first.sources}
    assert by_name["Extra"].rules == ListFile(config_dir / "extra.txt", "auto") and by_name["Extra"].category == "adult"
    assert by_name["By URL"].rules == ListFile(store / f"{downloaded.key}.list", "auto")
    assert "Not fetched" not in by_name and "Later" not in by_name
    assert first.missing == (f"Later: {config_dir / 'later.txt'}",)
    adult = rules.categories["adult"]
    assert by_name[adult.name].kind == "deny" and by_name[adult.name].category == "adult"
    allow_sources = [s for s in first.sources if s.kind == "allow"]
    assert len(allow_sources) == sum(len(c.allow_lists) for c in rules.categories.values())
    ids = [s.list_id for s in first.sources]
    assert len(set(ids)) == len(ids) and all(0 < i < SERVICE_FIRST_ID for i in ids)
    assert not first.changed()

    # Ids are stable: the same lists get the same ids, with or without other lists.
    again = local_list_sources(rules.categories.values(), config[:1], [], store, base_dir=config_dir)
    assert {s.name: s.list_id for s in again.sources}.items() <= {s.name: s.list_id for s in first.sources}.items()

    # The fingerprint follows the files: an edit, an appearing file, a new download.
    extra = config_dir / "extra.txt"
    extra.write_text("extra.example\nmore.example\n")
    assert first.changed()
    second = local_list_sources(rules.categories.values(), config, [downloaded, not_yet], store, base_dir=config_dir)
    assert not second.changed()
    (config_dir / "later.txt").write_text("bet.example\n")
    assert second.changed()
    third = local_list_sources(rules.categories.values(), config, [downloaded, not_yet], store, base_dir=config_dir)
    assert "Later" in {s.name for s in third.sources} and third.missing == ()
    (store / f"{not_yet.key}.list").write_bytes(NEWER)
    assert third.changed()
    # Same size, new content (a rewrite within the same second still changes the inode or mtime).
    before = fingerprint([extra])
    tmp = config_dir / ".extra.new"
    tmp.write_text("extra.example\nmore.exampl2\n")
    os.replace(tmp, extra)
    assert fingerprint([extra]) != before

    # The sources compile, and the lists answer.
    snapshot = compile_snapshot(third.sources, tmp_path / "snap")
    matcher = Matcher.load(snapshot)
    list_of = {s.list_id: s.name for s in third.sources}
    assert {list_of[h.list_id] for h in matcher.lookup("www.tracker.example")} == {"By URL"}
    assert {list_of[h.list_id] for h in matcher.lookup("bet.example")} == {"Later"}
    assert {list_of[h.list_id] for h in matcher.lookup("more.exampl2")} == {"Extra"}


def test_progress_printer_rewrites_one_line() -> None:
    out = io.StringIO()
    show = progress_printer("Big list", out, interval=0)
    show(0, 2 * 1024 * 1024)
    show(2 * 1024 * 1024, 2 * 1024 * 1024)
    show(5000, None)
    text = out.getvalue()
    assert text.count("\r") == 3
    assert "Big list: 2.0 MB of 2.0 MB (100%)" in text
    assert "Big list: 5 KB   " in text


# --- private targets (blind GET SSRF) ---------------------------------------------------

def test_a_list_host_that_resolves_to_loopback_is_refused_unless_listed(tmp_path: Path) -> None:
    async def main(**listed: Any) -> tuple[ListStatus, int]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            status = await Downloader(tmp_path, Resolver(), **listed).refresh(sub_for(server))
            return status, len(server.requests)

    status, requests = run(main())
    assert status.outcome == "failed" and requests == 0  # not one byte sent
    assert status.last_error is not None
    assert "lists.test" in status.last_error and "127.0.0.1" in status.last_error
    assert "loopback" in status.last_error and "lists_allow_private_hosts" in status.last_error
    status, requests = run(main(allow_private_hosts=["Lists.Test."]))
    assert status.outcome == "updated" and requests == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_an_ip_literal_on_loopback_is_refused_unless_listed(tmp_path: Path, host: str) -> None:
    async def main(**listed: Any) -> tuple[ListStatus, int]:
        async with ListServer() as server:
            server.serve("/list.txt", GOOD)
            status = await Downloader(tmp_path, Resolver(), **listed).refresh(
                Subscription("X", "ads", server.url(host=host)))
            return status, len(server.requests)

    status, requests = run(main())
    assert status.outcome == "failed" and requests == 0
    assert status.last_error is not None and "loopback" in status.last_error
    if host == "127.0.0.1":  # the test server listens on IPv4 only
        status, requests = run(main(allow_private_hosts=["127.0.0.1"]))
        assert status.outcome == "updated" and requests == 1


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/secret", "http://intranet.test:{port}/secret"])
def test_a_redirect_to_an_unlisted_private_target_is_refused(tmp_path: Path, target: str) -> None:
    class Resolving(Resolver):
        async def __call__(self, name: str) -> str:
            self.calls.append(name)
            return "127.0.0.1" if name in ("lists.test", "intranet.test") else await super().__call__(name)

    async def main() -> tuple[ListStatus, list[str]]:
        async with ListServer() as server:
            server.serve("/moved", b"", status=302, headers={"Location": target.format(port=server.port)})
            server.serve("/secret", b"router admin page\n")
            dl = Downloader(tmp_path, Resolving(), allow_private_hosts=["lists.test"])
            status = await dl.refresh(sub_for(server, "/moved"))
            return status, [path for path, _ in server.requests]

    status, paths = run(main())
    assert paths == ["/moved"]  # the LAN service never got the request
    assert status.outcome == "failed"
    assert status.last_error is not None and "loopback" in status.last_error


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "private"), ("224.0.0.1", "multicast"),
    ("93.184.216.34", None), ("2606:2800:220:1::248", None),
])
def test_which_addresses_are_refused(address: str, kind: str | None) -> None:
    from guardian.httpclient import private_kind

    assert private_kind(address) == kind


def test_the_config_lists_private_list_hosts(tmp_path: Path) -> None:
    from guardian.config import ConfigError, parse

    settings = parse("lists_allow_private_hosts: [lists.lan, 192.168.1.10, '[fd00::5]']\n", "g.yaml")
    assert settings.lists_allow_private_hosts == ("lists.lan", "192.168.1.10", "fd00::5")
    with pytest.raises(ConfigError) as caught:
        parse("pack_lists: true\nlists_allow_private_hosts: ['http://lists.lan/x']\n", "g.yaml")
    assert caught.value.problems[0].startswith("g.yaml:2: lists_allow_private_hosts[0]")
