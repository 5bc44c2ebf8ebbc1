"""The DNS process's C heap: glibc settings that let freed memory go back to the system.

After a burst of queries the heap is full of small holes (cache entries replaced, log
rows shipped, answers sent) that glibc keeps: ~5 MB of the DNS process's RSS after the
household-mix benchmark (tests/perf/bench_mix.py) was free memory it never returned.
``malloc_trim(0)`` hands back every whole free page, in ~0.3 ms for that heap.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
TRIM_SECONDS = 10.0  # how often the daemon gives free pages back


def lean() -> Callable[[], None] | None:
    """Fixed mmap/trim thresholds (before any thread starts) and the trim to call now
    and then; None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
        # A fixed mmap threshold: a big block freed goes back to the system instead of
        # raising glibc's dynamic threshold and staying in the heap.
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, MMAP_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def give_back() -> None:
        trim(0)

    return give_back
