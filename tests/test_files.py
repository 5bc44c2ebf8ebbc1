"""guardian.files: a replaced file is the old one or the new one, never half, and no
temporary file is left behind, whatever happens while writing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from guardian.files import atomic_write


def test_atomic_write_replaces_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_text("old")
    atomic_write(target, '{"new": true}\n', mode=0o640)
    assert target.read_text() == '{"new": true}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "CURRENT"
    target.write_text("snap-1\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "snap-2\n")
    assert target.read_text() == "snap-1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT"]
