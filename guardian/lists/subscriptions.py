"""Lists fetched by URL: downloads, last good copies, their status, and the sources to compile.

A ``Subscription`` is a list Guardian downloads: a config ``lists:`` entry with ``url:``
or a rule pack's ``subscriptions:`` entry of a category the household turned on.
``Downloader.refresh`` fetches one over http(s) only, with conditional requests, a size
cap and a total timeout, resolving host names through the configured upstreams (never
through Guardian's own filtering: the box's resolv.conf may point at Guardian). The body
goes to a temporary file, is parsed and checked (``lists.check_refresh``) off the event
loop, and only a valid list replaces the last good copy (``os.replace``). Anything else
keeps the last good copy and records the error in ``status.json`` beside the copies,
which ``guardian lists`` reads without the daemon.

``local_list_sources`` gathers everything the matcher compiles from disk: bundled
rule-pack lists, config ``path:`` lists and the last good downloaded copies, with
stable list ids and a fingerprint of the files so a changed file triggers a recompile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import inspect
import json
import logging
import os
import pickle
import re
import secrets
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urljoin, urlsplit

from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..config import ListSettings
from ..errors import GuardianError
from ..files import atomic_write, fsync_path
from ..helpers import HelperFailed, helper_job, python_call, run_helper
from ..policy.lists import FORMATS, ListFormat, ParseStats, check_refresh, iter_rules, open_list
from ..policy.matcher import ListFile, ListSource
from ..policy.rulepacks import Category

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "LIST_ID_SPACE",
    "SERVICE_FIRST_ID",
    "STATUS_FILE",
    "Downloader",
    "ListDownloadError",
    "ListSet",
    "ListStatus",
    "ProcessDownloader",
    "Refresher",
    "Subscription",
    "collect_subscriptions",
    "fingerprint",
    "format_status_table",
    "load_status",
    "local_list_sources",
    "progress_printer",
    "schedule_path_watch",
    "schedule_refreshes",
    "statuses_for",
]

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
_STATUS_LOCK = ".status.lock"
_STATUS_FORMAT = 1
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # bytes after decompression; the biggest public lists are ~20 MB
DEFAULT_TIMEOUT = 60.0  # seconds for the whole download, redirects included
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024  # bytes read from the socket at a time
_FLUSH = 1024 * 1024  # bytes gathered before one write in a worker thread
_SNIFF = 8192  # leading bytes checked for NUL: binary data is never a list
# List ids: this module hashes into [1, LIST_ID_SPACE]; compile named services with
# snapshot.service_sources(services, SERVICE_FIRST_ID) so the ranges never meet.
LIST_ID_SPACE = 2**28 - 1
SERVICE_FIRST_ID = 2**28
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "Guardian-list-updater/1 (+home DNS filter)"

Outcome = Literal["never", "updated", "unchanged", "failed"]
Progress = Callable[[int, int | None], None]
ResolveHost = Callable[[str], Awaitable[str]]
OnChanged = Callable[[], Awaitable[None]] | Callable[[], None]


class ListDownloadError(GuardianError):
    """A download that cannot replace the last good copy; the message is what the CLI shows."""


# --- subscriptions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """A list downloaded on the device and compiled into ``category``."""

    name: str
    category: str
    url: str
    format: ListFormat = "auto"

    @property
    def key(self) -> str:
        """Stable file and status key: readable category slug plus a hash of category and URL."""
        digest = hashlib.sha256(f"{self.category}\n{self.url}".encode()).hexdigest()[:12]
        slug = re.sub(r"[^a-z0-9]+", "-", self.category.lower()).strip("-")[:32] or "list"
        return f"{slug}-{digest}"


def _list_format(text: str) -> ListFormat:
    if text not in FORMATS:
        raise ValueError(f"unknown list format {text!r}; expected one of {', '.join(FORMATS)}")
    return text


def collect_subscriptions(
    config_lists: Iterable[ListSettings],
    categories: Iterable[Category] = (),
    fetch: Collection[str] = (),
) -> list[Subscription]:
    """The lists to download: every config ``url:`` list, then the rule packs'
    subscriptions of the category ids in ``fetch`` (the categories some profile of the
    household turns on; nothing else is downloaded). Duplicates are dropped."""
    found: dict[str, Subscription] = {}
    for item in config_lists:
        if item.url:
            sub = Subscription(item.name, item.category, item.url, _list_format(item.format))
            found.setdefault(sub.key, sub)
    for category in categories:
        if category.id not in fetch:
            continue
        for pack_sub in category.subscriptions:
            sub = Subscription(pack_sub.name, category.id, pack_sub.url, _list_format(pack_sub.format))
            found.setdefault(sub.key, sub)
    return list(found.values())


# --- status --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListStatus:
    """What ``status.json`` knows of one subscription. Times are epoch seconds.

    ``entries``/``invalid``/``skipped``/``bytes`` describe the last good copy (``entries``
    counts rules, duplicates included; the compiled snapshot counts distinct names).
    ``last_update``: the copy was last replaced; ``last_checked``: last 200 or 304;
    ``last_attempt``: last try of any outcome; ``last_error``: why the last try failed
    (None after a success). ``outcome`` is the result of the last try.
    """

    key: str
    name: str
    category: str
    url: str
    format: str = "auto"
    entries: int = 0
    invalid: int = 0
    skipped: int = 0
    bytes: int = 0
    last_update: float | None = None
    last_checked: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    outcome: Outcome = "never"

    @classmethod
    def pending(cls, sub: Subscription) -> ListStatus:
        """The status of a subscription never tried."""
        return cls(sub.key, sub.name, sub.category, sub.url, sub.format)

    @property
    def changed(self) -> bool:
        """The last try replaced the copy: the matcher must be compiled again."""
        return self.outcome == "updated"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ListStatus:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def load_status(store_dir: Path | str) -> dict[str, ListStatus]:
    """Every list's status by key; empty if there is none yet or it cannot be read."""
    path = Path(store_dir) / STATUS_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return {key: ListStatus.from_json(item) for key, item in data["lists"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("cannot read %s (%s); list status starts afresh", path, exc)
        return {}


def statuses_for(subs: Iterable[Subscription], store_dir: Path | str) -> list[ListStatus]:
    """The status of each of ``subs``, a pending one for those never tried."""
    known = load_status(store_dir)
    return [known.get(sub.key) or ListStatus.pending(sub) for sub in subs]


def _save_status(store_dir: Path, status: ListStatus) -> None:
    """Merge one list's status into status.json (atomic; other processes' entries kept)."""
    with open(store_dir / _STATUS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the daemon and `guardian lists --refresh` may both write
        try:
            current = {key: item.to_json() for key, item in load_status(store_dir).items()}
            current[status.key] = status.to_json()
            atomic_write(store_dir / STATUS_FILE,
                         json.dumps({"format": _STATUS_FORMAT, "lists": current}, indent=1, sort_keys=True))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch)) if epoch else "never"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f} MB"


def format_status_table(statuses: Iterable[ListStatus] | dict[str, ListStatus]) -> str:
    """A plain-text table for ``guardian lists``: one row per list, errors in full."""
    items = list(statuses.values()) if isinstance(statuses, dict) else list(statuses)
    items.sort(key=lambda s: (s.category, s.name, s.key))
    header = ("LIST", "CATEGORY", "ENTRIES", "INVALID", "SIZE", "UPDATED", "CHECKED", "LAST ERROR")
    rows = [
        (
            s.name,
            s.category,
            str(s.entries),
            str(s.invalid),
            _size(s.bytes) if s.bytes else "-",
            _when(s.last_update),
            _when(s.last_checked),
            f"{s.last_error} ({_when(s.last_attempt)})" if s.last_error else "-",
        )
        for s in items
    ]
    if not rows:
        return "No downloaded lists configured.\n"
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join((*cells, row[-1])).rstrip())
    return "\n".join(lines) + "\n"


def progress_printer(name: str, stream: TextIO | None = None, interval: float = 0.25) -> Progress:
    """A ``progress`` callback for the CLI: one rewritten line, at most every ``interval`` s."""
    out = stream if stream is not None else sys.stderr
    last = 0.0

    def show(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < interval and done != total:
            return
        last = now
        of = f" of {_size(total)} ({100 * done // total}%)" if total else ""
        out.write(f"\r{name}: {_size(done)}{of}   ")
        out.flush()

    return show


# --- downloading ---------------------------------------------------------------------


def _check_url(url: str, what: str = "URL") -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ListDownloadError(f"refused {what} {url!r}: only http:// and https:// lists are fetched")
    if not parts.hostname:
        raise ListDownloadError(f"refused {what} {url!r}: no host name")


@dataclass(slots=True)
class _Body:
    """A downloaded body in a temporary file."""

    path: Path
    size: int
    sha256: str
    etag: str | None
    last_modified: str | None


class Downloader:
    """Fetches subscriptions into ``store_dir`` (``<key>.list`` copies and ``status.json``).

    ``resolve_host(name) -> address`` resolves list hosts (None: the system resolver,
    only for tools run off the box). ``max_bytes`` caps the body after decompression;
    ``timeout`` (seconds) bounds the whole download; ``ca_file`` adds trusted CAs.
    Hosts at loopback, private or link-local addresses are refused (the URL's and every
    redirect's, after resolution) unless named in ``allow_private_hosts`` (the config's
    ``lists_allow_private_hosts``: names or addresses as written in the URL).
    """

    def __init__(
        self,
        store_dir: Path | str,
        resolve_host: ResolveHost | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        *,
        allow_private_hosts: Collection[str] = (),
    ) -> None:
        self.store_dir = Path(store_dir)
        self.resolve_host = resolve_host
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.ca_file = ca_file
        self.allow_private_hosts = tuple(allow_private_hosts)
        self._locks: dict[str, asyncio.Lock] = {}

    def copy_path(self, sub: Subscription) -> Path:
        """Where the last good copy of ``sub`` is kept."""
        return self.store_dir / f"{sub.key}.list"

    def status(self, sub: Subscription) -> ListStatus:
        return load_status(self.store_dir).get(sub.key) or ListStatus.pending(sub)

    async def refresh(self, sub: Subscription, progress: Progress | None = None) -> ListStatus:
        """Download ``sub`` and replace its copy if the new list is valid; never raises.

        The returned status (also saved) has ``outcome`` updated, unchanged or failed;
        on failure the last good copy and its counts stay and ``last_error`` says why.
        ``progress(bytes_so_far, total_or_None)`` is called as the body arrives.
        """
        lock = self._locks.setdefault(sub.key, asyncio.Lock())
        async with lock:
            prev = await asyncio.to_thread(self.status, sub)
            prev = dataclasses.replace(prev, name=sub.name, category=sub.category, url=sub.url, format=sub.format)
            started = time.time()
            try:
                status = await self._refresh(sub, prev, started, progress)
            except ListDownloadError as exc:
                status = dataclasses.replace(prev, last_attempt=started, last_error=str(exc), outcome="failed")
                log.warning("list %r (%s): %s; keeping the last good copy", sub.name, sub.url, exc)
            return await self._save(status)

    async def _save(self, status: ListStatus) -> ListStatus:
        try:
            await asyncio.to_thread(_save_status, self.store_dir, status)
        except OSError as exc:
            log.error("cannot save list status in %s: %s", self.store_dir, exc)
        return status

    async def _refresh(
        self, sub: Subscription, prev: ListStatus, started: float, progress: Progress | None
    ) -> ListStatus:
        """``refresh`` without the error handling: raises ListDownloadError for any failure."""
        try:
            await asyncio.to_thread(self.store_dir.mkdir, parents=True, exist_ok=True)
            has_copy = await asyncio.to_thread(self.copy_path(sub).is_file)
        except OSError as exc:
            raise ListDownloadError(f"cannot use {self.store_dir}: {exc.strerror or exc}") from exc
        import aiohttp  # here, not at the top: the DNS process loads it only to download a list

        from ..httpclient import PrivateTarget

        try:
            async with asyncio.timeout(self.timeout):
                body = await self._download(sub, prev if has_copy else None, progress)
        except TimeoutError:
            raise ListDownloadError(f"timed out after {self.timeout:g} s") from None
        except PrivateTarget as exc:
            raise ListDownloadError(str(exc)) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateTarget):  # the resolver refused a name's address
                raise ListDownloadError(str(exc.os_error)) from None
            raise ListDownloadError(f"download failed: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise ListDownloadError(f"download failed: {exc}") from exc
        except OSError as exc:
            raise ListDownloadError(f"download failed: {exc.strerror or exc}") from exc
        except ValueError as exc:  # a URL urlsplit or aiohttp cannot take apart
            raise ListDownloadError(f"bad URL: {exc}") from exc
        if body is None:  # 304 Not Modified
            return dataclasses.replace(
                prev, last_checked=started, last_attempt=started, last_error=None, outcome="unchanged"
            )
        try:
            return await asyncio.to_thread(self._install, sub, prev, body, has_copy, started)
        except OSError as exc:
            raise ListDownloadError(f"cannot store the list: {exc.strerror or exc}") from exc

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        from ..httpclient import GuardedResolver

        resolver = GuardedResolver(self.resolve_host, self.allow_private_hosts)
        connector = aiohttp.TCPConnector(
            ssl=ssl.create_default_context(cafile=self.ca_file), resolver=resolver, limit=2, use_dns_cache=False
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 20.0)),
            headers={"User-Agent": _USER_AGENT},
            trust_env=False,  # no proxy from the environment: lists come straight from their host
        )

    async def _download(self, sub: Subscription, prev: ListStatus | None, progress: Progress | None) -> _Body | None:
        """The new body in a temporary file, or None for 304 Not Modified."""
        _check_url(sub.url)
        headers: dict[str, str] = {}
        if prev is not None and prev.etag:
            headers["If-None-Match"] = prev.etag
        if prev is not None and prev.last_modified:
            headers["If-Modified-Since"] = prev.last_modified
        url = sub.url
        async with self._session() as session:
            for _hop in range(MAX_REDIRECTS + 1):
                self._check_literal(url)
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise ListDownloadError(f"HTTP {response.status} without a Location header")
                        url = urljoin(url, location)
                        _check_url(url, "redirect to")
                        continue
                    if response.status == 304:
                        if prev is None:
                            raise ListDownloadError("HTTP 304 Not Modified, but there is no copy to keep")
                        return None
                    if response.status != 200:
                        raise ListDownloadError(f"HTTP {response.status} {response.reason or ''}".rstrip())
                    return await self._save_body(sub, response, progress)
            raise ListDownloadError(f"more than {MAX_REDIRECTS} redirects")

    def _check_literal(self, url: str) -> None:
        """PrivateTarget for a URL whose host is a non-public IP literal not listed (aiohttp
        asks no resolver about those; names are checked by GuardedResolver)."""
        from ..addresses import is_ip
        from ..httpclient import host_key, refuse_private

        host = urlsplit(url).hostname or ""
        if is_ip(host):
            refuse_private(host, host, {host_key(h) for h in self.allow_private_hosts})

    async def _save_body(self, sub: Subscription, response: aiohttp.ClientResponse, progress: Progress | None) -> _Body:
        length = response.content_length
        # With Content-Encoding the length is of the compressed body; progress shows none then.
        total = length if length is not None and not response.headers.get("Content-Encoding") else None
        if length is not None and length > self.max_bytes:
            raise ListDownloadError(f"larger than the {_size(self.max_bytes)} cap ({_size(length)}); not downloaded")
        path = self.store_dir / f".{sub.key}-{secrets.token_hex(4)}.part"
        hasher = hashlib.sha256()
        done = 0
        pending: list[bytes] = []
        pending_size = 0
        out = await asyncio.to_thread(open, path, "wb")
        try:
            if progress is not None:
                progress(0, total)
            async for chunk in response.content.iter_chunked(_CHUNK):
                done += len(chunk)
                if done > self.max_bytes:
                    raise ListDownloadError(f"larger than the {_size(self.max_bytes)} cap; download stopped")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _FLUSH:
                    await asyncio.to_thread(_write, out, hasher, b"".join(pending))
                    pending, pending_size = [], 0
                if progress is not None:
                    progress(done, total)
            await asyncio.to_thread(_write, out, hasher, b"".join(pending))
            await asyncio.to_thread(_close_synced, out)
        except BaseException:
            out.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return _Body(
            path, done, hasher.hexdigest(), response.headers.get("ETag"), response.headers.get("Last-Modified")
        )

    def _install(self, sub: Subscription, prev: ListStatus, body: _Body, has_copy: bool, started: float) -> ListStatus:
        """Check the body and make it the last good copy (in a worker thread: parsing takes seconds)."""
        try:
            checked = dataclasses.replace(
                prev, etag=body.etag, last_modified=body.last_modified, last_checked=started, last_attempt=started
            )
            if has_copy and body.sha256 == prev.sha256:  # a server without ETag: same bytes again
                body.path.unlink()
                return dataclasses.replace(checked, last_error=None, outcome="unchanged")
            with open(body.path, "rb") as raw:
                if b"\0" in raw.read(_SNIFF):
                    raise ListDownloadError("binary data, not a list; rejected")
            stats = ParseStats()
            entries = 0
            with open_list(body.path) as handle:
                for _rule in iter_rules(handle, sub.format, stats):
                    entries += 1
            why = check_refresh(stats)
            if why is not None:
                raise ListDownloadError(f"rejected: {why}")
            os.replace(body.path, self.copy_path(sub))
            fsync_path(self.store_dir)
        except BaseException:
            with contextlib.suppress(OSError):
                body.path.unlink()
            raise
        log.info("list %r updated: %d entries, %d invalid lines", sub.name, entries, stats.invalid)
        return dataclasses.replace(
            checked,
            entries=entries,
            invalid=stats.invalid,
            skipped=stats.skipped,
            bytes=body.size,
            sha256=body.sha256,
            last_update=started,
            last_error=None,
            outcome="updated",
        )


class ProcessDownloader(Downloader):
    """A Downloader whose every refresh runs in a short-lived child process (the daemon).

    The child (``python -c ... downloader_main()``) resolves the list host through
    ``resolvers`` (plain upstream specs), downloads, checks and installs the list and
    saves its status, exactly as ``Downloader.refresh`` does, then exits. The DNS process
    thus never loads aiohttp (~12 MB it would keep for good after the first daily
    refresh), and parsing a 50 MB list from the internet never grows its heap. A child
    that fails is a failed refresh: the last good copy stays.
    """


    def __init__(
        self,
        store_dir: Path | str,
        resolvers: Sequence[Any] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        *,
        allow_private_hosts: Collection[str] = (),
    ) -> None:
        super().__init__(store_dir, None, max_bytes, timeout, ca_file, allow_private_hosts=allow_private_hosts)
        self.resolvers = tuple(resolvers)  # UpstreamSpec of the plain upstreams; () = the system resolver
        self.argv = python_call("from guardian.lists.subscriptions import downloader_main; downloader_main()")

    async def refresh(self, sub: Subscription, progress: Progress | None = None) -> ListStatus:
        lock = self._locks.setdefault(sub.key, asyncio.Lock())
        async with lock:
            job = (sub, str(self.store_dir), self.resolvers, self.max_bytes, self.timeout, self.ca_file,
                   self.allow_private_hosts)
            started = time.time()
            try:
                # The child has its own timeout; this one only catches a wedged child.
                out, warnings = await run_helper(self.argv, job, self.timeout + 60)
                status = pickle.loads(out)
                if not isinstance(status, ListStatus):
                    raise HelperFailed("it answered no list status")
            except (HelperFailed, pickle.UnpicklingError, EOFError) as exc:
                return await self._failed(sub, started, f"the list download process failed: {exc}")
            for line in warnings:  # the child's own warnings, into the daemon's log
                log.warning("list download: %s", line)
            return status

    async def _failed(self, sub: Subscription, started: float, error: str) -> ListStatus:
        prev = await asyncio.to_thread(self.status, sub)
        status = dataclasses.replace(prev, name=sub.name, category=sub.category, url=sub.url, format=sub.format,
                                     last_attempt=started, last_error=error, outcome="failed")
        log.warning("list %r (%s): %s; keeping the last good copy", sub.name, sub.url, error)
        return await self._save(status)


@contextlib.asynccontextmanager
async def upstream_downloader(
    store_dir: Path | str,
    resolvers: Sequence[Any],
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    ca_file: str | None = None,
    *,
    allow_private_hosts: Collection[str] = (),
) -> AsyncIterator[Downloader]:
    """A Downloader resolving list hosts through ``resolvers`` (plain upstream specs; none:
    the system resolver), whose upstream sockets are closed on the way out."""
    from ..dns.upstreams.factory import make_upstream
    from ..dns.upstreams.pool import resolve_via

    plain = [make_upstream(spec) for spec in resolvers]

    async def resolve_host(name: str) -> str:
        return await resolve_via(plain, name)

    try:
        yield Downloader(store_dir, resolve_host if plain else None, max_bytes, timeout, ca_file,
                         allow_private_hosts=allow_private_hosts)
    finally:
        for upstream in plain:
            await upstream.close()


def downloader_main() -> None:
    """The list download process: a job (pickle) on stdin, the ListStatus (pickle) on stdout."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sub, store_dir, resolvers, max_bytes, timeout, ca_file, allow_private_hosts = helper_job()

    async def fetch() -> ListStatus:
        async with upstream_downloader(store_dir, resolvers, max_bytes, timeout, ca_file,
                                       allow_private_hosts=allow_private_hosts) as downloader:
            return await downloader.refresh(sub)

    status = asyncio.run(fetch())
    sys.stdout.buffer.write(pickle.dumps(status))
    sys.stdout.buffer.flush()


def _write(out: Any, hasher: Any, data: bytes) -> None:
    out.write(data)
    hasher.update(data)


def _close_synced(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())  # the copy must survive a power cut once it is installed
    out.close()


# --- scheduling ----------------------------------------------------------------------

REFRESH_JOB = "guardian-lists-refresh"
START_JOB = "guardian-lists-first-refresh"
WATCH_JOB = "guardian-lists-watch"


async def _notify(on_changed: OnChanged) -> None:
    try:
        result = on_changed()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("recompiling after a list change failed")


class Refresher:
    """Refreshes subscriptions one at a time (a Pi has little memory and bandwidth to
    spare) and calls ``on_changed`` once after a run in which any list changed."""

    def __init__(self, subs: Sequence[Subscription], downloader: Downloader, on_changed: OnChanged) -> None:
        self.subs = tuple(subs)
        self.downloader = downloader
        self.on_changed = on_changed
        self._lock = asyncio.Lock()

    async def run(self, subs: Iterable[Subscription] | None = None) -> list[ListStatus]:
        """Refresh ``subs`` (default all); returns their statuses."""
        async with self._lock:  # the daily job and a "refresh now" never overlap
            statuses = [await self.downloader.refresh(sub) for sub in (self.subs if subs is None else subs)]
        if any(s.changed for s in statuses):
            await _notify(self.on_changed)
        return statuses

    def due(self, max_age: float, now: float | None = None) -> list[Subscription]:
        """Subscriptions with no copy or not checked in ``max_age`` seconds."""
        now = time.time() if now is None else now
        known = load_status(self.downloader.store_dir)
        due = []
        for sub in self.subs:
            status = known.get(sub.key)
            checked = status.last_checked if status is not None else None
            if checked is None or now - checked >= max_age or not self.downloader.copy_path(sub).is_file():
                due.append(sub)
        return due

    async def run_due(self, max_age: float) -> list[ListStatus]:
        subs = await asyncio.to_thread(self.due, max_age)
        return await self.run(subs) if subs else []


def schedule_refreshes(
    scheduler: Any,
    subs: Sequence[Subscription],
    downloader: Downloader,
    on_changed: OnChanged,
    hours: float = 24,
    jitter_seconds: int = 3600,
    start_delay: float = 60.0,
) -> Refresher:
    """Add the refresh jobs to an APScheduler 3 ``AsyncIOScheduler`` and return the Refresher.

    Every ``hours`` (plus up to ``jitter_seconds``, so households do not all hit a list
    host at once) every subscription is refreshed; ``start_delay`` seconds after the call
    the ones with no copy or older than ``hours`` are. ``on_changed`` (sync or async)
    runs after a refresh that changed a list. Calling again replaces the jobs.
    """
    refresher = Refresher(subs, downloader, on_changed)
    scheduler.add_job(
        refresher.run,
        IntervalTrigger(hours=hours, jitter=jitter_seconds),
        id=REFRESH_JOB,
        name="refresh downloaded lists",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        refresher.run_due,
        DateTrigger(run_date=datetime.now(UTC) + timedelta(seconds=start_delay)),
        args=(hours * 3600,),
        id=START_JOB,
        name="fetch missing or stale lists",
        replace_existing=True,
        misfire_grace_time=3600,
    )
    return refresher


# --- local sources -------------------------------------------------------------------


def fingerprint(paths: Iterable[Path]) -> str:
    """A digest of each path's identity, mtime and size (or absence): changes when a file does."""
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        try:
            st = path.stat()
            digest.update(f"{path}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ListSet:
    """The sources to compile and the files they came from.

    ``fingerprint`` was taken before the sources were gathered, so a file changing
    during a compile shows up as ``changed()`` afterwards. ``missing`` names config
    ``path:`` lists whose file is absent (left out until it appears).
    """

    sources: tuple[ListSource, ...]
    watched: tuple[Path, ...]
    fingerprint: str
    missing: tuple[str, ...] = ()

    def changed(self) -> bool:
        """A watched file changed, appeared or went away since these sources were gathered."""
        return fingerprint(self.watched) != self.fingerprint


def _stable_ids(identities: Iterable[str]) -> dict[str, int]:
    """An id in [1, LIST_ID_SPACE] per identity, from its hash (stable across restarts and
    other lists coming and going); a rare collision takes the next free id."""
    ids: dict[str, int] = {}
    taken: set[int] = set()
    for identity in sorted(set(identities)):
        candidate = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") % LIST_ID_SPACE + 1
        while candidate in taken:
            candidate = candidate % LIST_ID_SPACE + 1
        taken.add(candidate)
        ids[identity] = candidate
    return ids


def local_list_sources(
    categories: Iterable[Category],
    config_lists: Iterable[ListSettings],
    subscriptions: Iterable[Subscription],
    store_dir: Path | str,
    *,
    base_dir: Path | None = None,
) -> ListSet:
    """Everything the matcher compiles from disk, with stable list ids.

    - each rule pack's bundled ``lists`` (deny) and ``allow_lists`` (allow);
    - config ``path:`` lists (relative paths are under ``base_dir``, the config's folder);
    - the last good copy of each of ``subscriptions`` that has one.
    Nothing is read here but file metadata; ``compile_snapshot`` streams the files.
    """
    store = Path(store_dir)
    entries: list[tuple[str, str, str, Literal["deny", "allow"], ListFile]] = []  # identity, name, category, kind, file
    watched: list[Path] = []
    missing: list[str] = []
    kinds: tuple[Literal["deny", "allow"], ...] = ("deny", "allow")
    for cat in categories:
        for kind in kinds:
            files = cat.lists if kind == "deny" else cat.allow_lists
            for path in files:
                label = cat.name if kind == "deny" else f"{cat.name} (allowlist)"
                if len(files) > 1:
                    label = f"{label}: {path.stem}"
                # Bundled seed lists are one domain a line (rules/adult.yaml documents it).
                entries.append((f"pack:{cat.id}:{kind}:{path.name}", label, cat.id, kind, ListFile(path, "domains")))
                watched.append(path)
    for item in config_lists:
        if not item.path:
            continue
        path = Path(item.path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        watched.append(path)
        if not path.is_file():
            missing.append(f"{item.name}: {path}")
            log.warning("list %r: %s is missing; left out until it appears", item.name, path)
            continue
        entries.append(
            (
                f"path:{item.category}:{path}",
                item.name,
                item.category,
                "deny",
                ListFile(path, _list_format(item.format)),
            )
        )
    for sub in subscriptions:
        copy = store / f"{sub.key}.list"
        watched.append(copy)
        if copy.is_file():
            entries.append((f"url:{sub.key}", sub.name, sub.category, "deny", ListFile(copy, sub.format)))
    print_ = fingerprint(watched)  # before anything is compiled: a later change is seen
    ids = _stable_ids(e[0] for e in entries)
    sources = tuple(ListSource(ids[ident], name, category, kind, file) for ident, name, category, kind, file in entries)
    return ListSet(sources, tuple(watched), print_, tuple(missing))


def schedule_path_watch(
    scheduler: Any, current: Callable[[], ListSet], on_changed: OnChanged, seconds: float = 60
) -> None:
    """Check every ``seconds`` whether a file of ``current()`` changed; if so call ``on_changed``
    (which gathers a new ListSet and recompiles, so ``current()`` returns the new one)."""

    async def check() -> None:
        if await asyncio.to_thread(current().changed):
            await _notify(on_changed)

    scheduler.add_job(
        check,
        IntervalTrigger(seconds=seconds),
        id=WATCH_JOB,
        name="watch list files",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
