"""The shared YAML loader (config, check-config, import) refuses alias bombs ("billion
laughs") and deep nesting with a FILE:LINE problem, before they cost memory or a
RecursionError traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

GUARDIAN = [sys.executable, "-m", "guardian"]


def alias_bomb(copies: int = 1000, domains: int = 1000) -> str:
    """~20 KB: one profile whose deny list has ``domains`` names, repeated ``copies``
    times by alias: a million names once expanded."""
    names = ", ".join(f"d{i}.example" for i in range(domains))
    refs = ", ".join("*p" for _ in range(copies))
    return f"household:\n  profiles: [&p {{name: Teen, deny: [{names}]}}, {refs}]\n"


def nested(depth: int = 20_000) -> str:
    return "household:\n  profiles: " + "[" * depth + "]" * depth + "\n"


def rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss / 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def check_config(path: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``guardian check-config``; (result, seconds, that child's own peak RSS in MB)."""
    out, err, rss = path.with_suffix(".out"), path.with_suffix(".err"), path.with_suffix(".rss")
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        # Started from a small Python, not from pytest: a child forked from pytest counts
        # pytest's own pages (hundreds of MB late in a run) in its peak before it execs.
        child = subprocess.run([sys.executable, "-c", MEASURE, str(rss), *GUARDIAN, "check-config", "--config",
                                str(path)], stdout=stdout, stderr=stderr)
    result = subprocess.CompletedProcess(child.args, child.returncode, out.read_text(), err.read_text())
    return result, time.monotonic() - started, float(rss.read_text())


@pytest.mark.parametrize(("text", "line", "words"), [
    (alias_bomb(), 2, "aliases"),
    (nested(), 2, "nested"),
    ("a: &x [1, *x]\n", 1, "refers to itself"),
], ids=["alias-bomb", "nested", "self-alias"])
def test_check_config_refuses_bombs_and_deep_nesting_with_a_line(tmp_path, text, line, words):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    result, seconds, peak = check_config(path)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith(f"{path}:{line}: YAML"), result.stderr[:500]
    assert words in result.stderr, result.stderr[:500]
    assert len(result.stderr.splitlines()) == 1  # one clear problem, not a million
    assert seconds < 10
    assert peak < 150, f"check-config peaked at {peak:.0f} MB"


def test_ordinary_aliases_still_load(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("household:\n  profiles:\n    - &kid {name: Sam, categories: [adult, gambling]}\n"
                    "    - {name: Alex, categories: [adult, gambling]}\n  default_profile: Sam\n"
                    "  devices:\n    - {name: Tab, ip: 10.0.0.2, profile: Sam}\n")
    result, _seconds, _peak = check_config(path)
    assert result.returncode == 0, result.stderr


def test_import_refuses_a_bomb_without_growing_the_dns_process(make_guardian, upstream, tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\n")
    make_guardian([upstream.url], config=config.read_text())
    for text, words in ((alias_bomb(), "aliases"), (nested(), "nested")):
        bad = tmp_path / "h.yaml"
        bad.write_text(text)
        before = rss_mb()
        result = subprocess.run([*GUARDIAN, "import", str(bad), "--config", str(config)], capture_output=True,
                                text=True, timeout=120)
        grown = rss_mb() - before
        assert result.returncode == 1
        assert f"{bad}:2: YAML" in result.stderr and words in result.stderr, result.stderr[:500]
        assert "RecursionError" not in result.stderr
        assert grown < 30, f"the daemon grew {grown:.0f} MB on import"
