"""Files that survive a power cut: a Pi's SD card loses whatever the kernel had not
written when the plug is pulled, so a file that replaces another is written beside it,
flushed, renamed over it and its directory flushed too (the rename is in the directory).
At the foundation: imports nothing of Guardian.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "fsync_path"]


def fsync_path(path: Path | str) -> None:
    """Flush a file's or a directory's data (a directory: the names in it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | str, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so a reader (or a power cut) sees the old file or the
    new one, never half of one. ``mode``: the new file's permissions (else the umask's)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}-{secrets.token_hex(4)}")
    body = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
