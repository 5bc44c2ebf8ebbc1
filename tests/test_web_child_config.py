"""check-config says when a blocked child would get "connection refused" instead of the
block page: a profile answers blocked names with the box's address (``block_mode:
blockpage``) but nothing serves the block page there (no ``dashboard.blockpage_listen``,
or one address that blocked answers do not point at)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BASE = """
dns:
  listen: ["127.0.0.1:5353"]
  upstreams: [udp://127.0.0.1:53]
{extra}
household:
  default_profile: Guest
  profiles:
    - {{name: Young child, template: Young child}}
    - {{name: Guest, template: Guest}}
"""


def check(tmp_path: Path, extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "guardian.yaml"
    path.write_text(BASE.format(extra=extra))
    return subprocess.run([sys.executable, "-m", "guardian", "check-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("extra", "warned"), [
    ("", True),  # the template's blockpage with no page anywhere: a child gets "connection refused"
    ('dashboard: {blockpage_listen: "192.168.1.2:80"}', True),  # answers point at whatever address
    ('dashboard: {blockpage_listen: ["0.0.0.0:80", "[::]:80"]}', False),
    ('dashboard: {blockpage_listen: "127.0.0.1:8081"}', False),  # a trial on loopback (guardian.local.yaml)
])
def test_check_config_warns_when_blocked_answers_point_where_no_page_is(tmp_path: Path, extra: str,
                                                                       warned: bool) -> None:
    result = check(tmp_path, extra)
    assert result.returncode == 0, result.stderr
    assert ("blockpage" in result.stderr and "warning" in result.stderr) == warned, result.stderr


def test_check_config_is_quiet_when_local_addresses_match_the_page(tmp_path: Path) -> None:
    extra = 'dashboard: {blockpage_listen: "192.168.1.2:80"}'
    path = tmp_path / "guardian.yaml"
    path.write_text(BASE.format(extra=extra).replace("  upstreams:", "  local_addresses: [192.168.1.2]\n  upstreams:"))
    result = subprocess.run([sys.executable, "-m", "guardian", "check-config", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "blockpage" not in result.stderr, result.stderr
