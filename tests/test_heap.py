"""The DNS process's heap gives freed memory back (guardian.heap)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import gc
from guardian import heap

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

give_back = heap.lean()
held = [bytes(600) + bytes([i % 256]) for i in range(100_000)]  # ~60 MB of glibc chunks
keep = held[-1]  # the top of the heap stays in use: only a trim can hand back the rest
del held
gc.collect()
before = rss_kb()
give_back()
print(before, rss_kb())
"""


def test_freed_heap_goes_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    assert before - after > 40_000, (before, after)  # kB
