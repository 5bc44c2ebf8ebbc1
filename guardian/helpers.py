"""Short-lived helper processes: a fresh interpreter with a job pickled on its stdin.

The daemon hands slow or memory-hungry work (compiling a big list, downloading one) to
a helper that exits when done: the work runs on the other core, and whatever it
allocates (an HTTP client, a million names) goes back to the system with it. The
helper reads its job with ``helper_job()`` and writes its result to stdout; its stderr
explains a failure. Nothing but the daemon writes to these pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from .errors import GuardianError


class HelperFailed(GuardianError):
    """The helper could not start, timed out, or exited non-zero (its last stderr line)."""


def python_call(code: str) -> tuple[str, ...]:
    """The argv that runs ``code`` in this installation's interpreter."""
    return (sys.executable, "-c", code)


async def run_helper(argv: Sequence[str], job: Any, timeout: float | None = None) -> tuple[bytes, list[str]]:
    """Run ``argv`` with ``job`` on stdin; its (stdout, stderr lines). A helper still
    running when this is cancelled or times out is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise HelperFailed(f"cannot start it: {exc.strerror or exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)),
                                          timeout)
    except BaseException as exc:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(exc, TimeoutError):
            raise HelperFailed(f"no result in {timeout:g} s") from None
        raise
    lines = err.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise HelperFailed(lines[-1] if lines else f"exit status {proc.returncode}")
    return out, lines


def helper_job() -> Any:
    """In the helper: give way to the DNS process (nice +10) and read the job."""
    with contextlib.suppress(OSError):
        os.nice(10)  # the work may wait; the household's answers may not
    return pickle.load(sys.stdin.buffer)
