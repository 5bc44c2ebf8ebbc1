"""The answer cache: upstream replies kept as bytes, served with TTLs counted down.

Keyed on (lower-cased name, type, class, DO/CD bits). Positive answers live for their
smallest TTL, clamped to [min_ttl, max_ttl]; NXDOMAIN and NODATA live for
min(SOA TTL, SOA MINIMUM) (RFC 2308), at most ``max_negative_ttl``. Expired entries
are kept ``stale_seconds`` longer so that, when every upstream fails, a known answer
is served with TTL 30 instead of SERVFAIL (RFC 8767). Size is bounded; the least
recently used entry goes first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from .wire import HEADER, NOERROR, NXDOMAIN, U32, Question, Reply, opt_record, response_flags

STALE_TTL = 30  # RFC 8767 section 4: the TTL of a stale answer
_FLAGS: dict[int, int] = {}  # one int object per header flags value (a handful) for every entry


@dataclass(slots=True)
class Entry:
    flags: int
    rcode: int
    an: int
    ns: int
    ar: int
    body: bytes
    ttls: Sequence[tuple[int, int]]  # (offset in body, TTL); a tuple in the cache
    stored: float
    expires: float
    stale_until: float
    cnames: tuple[str, ...] = ()
    # The body with TTLs counted down changes once a second: keep the last one made.
    shown_elapsed: int = -1
    shown_body: bytes = b""


class Cache:
    """LRU answer cache. Times are ``time.monotonic()`` seconds."""

    def __init__(
        self,
        size: int = 10_000,
        min_ttl: int = 0,
        max_ttl: int = 86_400,
        max_negative_ttl: int = 3_600,
        stale_seconds: int = 86_400,
    ) -> None:
        self.size = size
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.stale_seconds = stale_seconds
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.stale_served = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def lifetime(self, reply: Reply) -> int | None:
        """Seconds to keep ``reply`` fresh, or None when it must not be cached."""
        if reply.rcode == NOERROR and reply.an:
            if reply.min_ttl is None:
                return None
            return max(self.min_ttl, min(reply.min_ttl, self.max_ttl))
        if reply.rcode in (NOERROR, NXDOMAIN):  # NODATA or NXDOMAIN
            if reply.negative_ttl is None:
                return None  # RFC 2308 section 5: no SOA, no negative caching
            return max(self.min_ttl, min(reply.negative_ttl, self.max_negative_ttl))
        return None  # SERVFAIL, REFUSED...: never cached

    def put(self, key: bytes, reply: Reply, now: float | None = None) -> None:
        life = self.lifetime(reply)
        if life is None or life <= 0 or self.size <= 0:
            return
        now = time.monotonic() if now is None else now
        # Each record counts down from its own TTL (clamped); records of a negative
        # answer all count down from the negative lifetime (RFC 2308 section 5).
        # A tuple, not a list, and the header flags shared: ~50 bytes less per entry.
        ttls = tuple([(off, life if reply.rcode or not reply.an else max(self.min_ttl, min(ttl, self.max_ttl)))
                      for off, ttl in reply.ttls])
        flags = _FLAGS.setdefault(reply.flags, reply.flags)
        entry = Entry(flags, reply.rcode, reply.an, reply.ns, reply.ar, reply.body, ttls,
                      now, now + life, now + life + self.stale_seconds, tuple(reply.cnames))
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self.size:
            entries.popitem(last=False)

    def get(self, key: bytes, now: float) -> Entry | None:
        """A fresh entry for ``key``, or None (counted as a miss)."""
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now:
            self.misses += 1
            if entry is not None and entry.stale_until <= now:
                del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def get_stale(self, key: bytes, now: float) -> Entry | None:
        """An expired entry still inside the serve-stale window, or None."""
        entry = self._entries.get(key)
        if entry is None or entry.stale_until <= now:
            return None
        self.stale_served += 1
        return entry


def render(entry: Entry, q: Question, now: float, stale: bool = False) -> bytes:
    """The client's answer from a cache entry: its ID, its question, TTLs counted down."""
    if stale:
        body = bytearray(entry.body)
        for off, _ttl in entry.ttls:
            U32.pack_into(body, off, STALE_TTL)
    else:
        elapsed = int(now - entry.stored)
        if elapsed == entry.shown_elapsed:
            body = entry.shown_body  # type: ignore[assignment]
        else:
            body = bytearray(entry.body)
            for off, ttl in entry.ttls:
                left = ttl - elapsed
                U32.pack_into(body, off, left if left > 0 else 0)
            entry.shown_elapsed = elapsed
            entry.shown_body = bytes(body)
    ar = entry.ar
    tail = b""
    if q.edns:
        ar += 1
        tail = opt_record(q.do)
    header = HEADER.pack(q.id, response_flags(q.flags, entry.rcode, entry.flags), 1, entry.an, entry.ns, ar)
    return b"".join((header, q.question, body, tail))


def fresh_entry(reply: Reply, now: float) -> Entry:
    """An uncached entry for rendering an upstream reply as it came (TTLs unchanged)."""
    return Entry(reply.flags, reply.rcode, reply.an, reply.ns, reply.ar, reply.body, reply.ttls, now, now, now,
                 tuple(reply.cnames))
