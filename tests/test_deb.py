"""The Debian package (`make deb`): it builds, lintian finds no error, and it ships exactly the
files install.sh writes, plus its own packaging files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = re.search(r'__version__ = "(.+)"', (REPO / "guardian/__init__.py").read_text()).group(1)  # type: ignore[union-attr]
PACKAGING_ONLY = {
    "/usr/share/doc/guardian/copyright",
    "/usr/share/doc/guardian/changelog.gz",
    "/usr/share/lintian/overrides/guardian",
    "/usr/share/man/man1/guardian.1.gz",
    f"/opt/guardian/wheels/guardian-{VERSION}-py3-none-any.whl",
}


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(["bash", str(REPO / "systemd/build-deb.sh"), str(out)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path == out / f"guardian_{VERSION}_all.deb" and path.is_file()
    return path


def contents(deb: Path) -> dict[str, str]:
    """Path -> the mode string dpkg-deb shows (drwxr-x---, -rw-r--r--, lrwxrwxrwx)."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in listing.splitlines():
        fields = line.split()
        path = fields[5].removeprefix(".").rstrip("/") or "/"
        found[path] = fields[0]
    return found


def dry_run() -> str:
    return subprocess.run(["bash", str(REPO / "systemd/install.sh"), "--dry-run"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_the_package_ships_exactly_the_install_scripts_files(deb):
    shipped = contents(deb)
    files = {p for p, mode in shipped.items() if not mode.startswith("d")}
    script = dry_run().splitlines()
    assert files - PACKAGING_ONLY == {line.split()[1] for line in script if line.startswith("file ")}
    assert PACKAGING_ONLY <= files
    perms = {"0755": "rwxr-xr-x", "0750": "rwxr-x---"}
    for line in script:
        if line.startswith("dir "):
            _, path, mode, _owner = line.split()
            assert shipped[path] == "d" + perms[mode], path  # owners: postinst (the users do not exist yet)
    assert shipped["/etc/guardian/guardian.yaml"] == "-rw-r-----"


def test_control_conffiles_and_maintainer_scripts(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "DEBIAN")], check=True)
    control = (tmp_path / "DEBIAN/control").read_text()
    assert f"Version: {VERSION}\n" in control and "Architecture: all\n" in control
    assert "python3-venv" in control
    assert (tmp_path / "DEBIAN/conffiles").read_text().split() == ["/etc/guardian/guardian.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        path = tmp_path / "DEBIAN" / script
        assert os.access(path, os.X_OK)
        subprocess.run(["sh", "-n", str(path)], check=True)
    postinst = (tmp_path / "DEBIAN/postinst").read_text()
    assert "useradd --system" in postinst and "guardian-web" in postinst
    assert "deb-systemd-helper enable" in postinst and "deb-systemd-invoke restart" in postinst
    # Upgrades keep the household: only purge removes the data, the config and the users.
    postrm = (tmp_path / "DEBIAN/postrm").read_text()
    remove, purge = postrm.split("remove)")[1].split("purge)")
    assert "/var/lib/guardian" not in remove and "rm -rf /opt/guardian/.venv /var/lib/guardian /etc/guardian" in purge


def test_the_wheel_carries_the_rule_packs_and_the_dashboard_files(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    (wheel,) = (tmp_path / "opt/guardian/wheels").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = f"guardian-{VERSION}.data/data/share/guardian/"
    assert "guardian/cli.py" in names and "guardian/sdnotify.py" in names
    assert data + "rules/adult.yaml" in names
    assert any(n.startswith(data + "web/templates/") for n in names)


def test_lintian_finds_no_errors(deb):
    result = subprocess.run(["lintian", "--allow-root", str(deb)], capture_output=True, text=True, timeout=300)
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EWI]: ", line)]
    print("\n".join(tags))  # the warnings, for the record
    assert not [t for t in tags if "no-manual-page" in t or "manpage" in t]  # guardian(1) ships and is well formed
    assert [t for t in tags if t.startswith("E: ")] == []
    assert result.returncode == 0, result.stdout + result.stderr


UPGRADE = """
set -e
mount -t tmpfs none /var/lib && mount -t tmpfs none /opt && mount -t tmpfs none /run  # this namespace only
mkdir -p /var/lib/guardian/web /opt/guardian/.venv/bin
echo household > /var/lib/guardian/household.db && echo accounts > /var/lib/guardian/web/web.db
echo audit > /var/lib/guardian/audit.db && echo venv > /opt/guardian/.venv/bin/python
sh "$1/prerm" upgrade 9.9 && sh "$1/postrm" upgrade 9.9      # dpkg's upgrade sequence (old scripts)
cat /var/lib/guardian/household.db /var/lib/guardian/web/web.db /var/lib/guardian/audit.db /opt/guardian/.venv/bin/python
sh "$1/prerm" remove && sh "$1/postrm" remove                # remove: the venv goes, the data stays
cat /var/lib/guardian/household.db; test ! -e /opt/guardian/.venv && echo venv-gone
"""


def test_an_upgrade_and_a_remove_keep_the_household(deb, tmp_path):
    """The maintainer scripts run as dpkg runs them on upgrade and on remove, inside a private
    mount namespace (tmpfs over /var/lib, /opt and /run: the machine's own are not touched)."""
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "DEBIAN")], check=True)
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", UPGRADE, "sh",
                             str(tmp_path / "DEBIAN")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["household", "accounts", "audit", "venv", "household", "venv-gone"]
