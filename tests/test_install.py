"""systemd/install.sh: its dry run, the port-53 diagnosis, and a real install into a throwaway
root that then answers DNS inside a network namespace (never an install on this machine)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "systemd" / "install.sh"
PYTHON = "/usr/bin/python3"  # Debian's, as on the box (this test's own may live under /root, 0700)

# Every file and directory the installer writes (the venv's own files aside: pip's).
EXPECTED_FILES = {
    "/usr/bin/guardian",
    "/opt/guardian/README.md",
    "/lib/systemd/system/guardian.service",
    "/lib/systemd/system/guardian-web.service",
    "/etc/guardian/guardian.yaml",
}
EXPECTED_DIRS = {
    ("/opt/guardian", "0755", "root:root"),
    ("/etc/guardian", "0750", "root:guardian"),
    ("/etc/guardian/provision.d", "0750", "root:guardian"),
    ("/var/lib/guardian", "0750", "guardian:guardian"),
    ("/var/lib/guardian/web", "0750", "guardian-web:guardian"),
}


def install(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    result = subprocess.run([*prefix, "bash", str(INSTALL), *args], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def written(output: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines() if line.startswith("file ")}


def test_dry_run_lists_exactly_the_expected_files_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    out = install("--dry-run", "--destdir", str(root)).stdout
    assert written(out) == EXPECTED_FILES
    dirs = {tuple(line.split()[1:4]) for line in out.splitlines() if line.startswith("dir ")}
    assert dirs == EXPECTED_DIRS
    assert "run systemctl --root=" in out and " enable guardian.service guardian-web.service" in out
    assert any(line.startswith("run ") and " -m venv " in line for line in out.splitlines())
    assert list(root.iterdir()) == []  # a dry run writes nothing


def test_dry_run_on_the_system_lists_the_users_and_the_units_it_starts():
    out = install("--dry-run").stdout
    assert written(out) == EXPECTED_FILES
    lines = out.splitlines()
    if "guardian:" not in Path("/etc/passwd").read_text():
        assert any(line.startswith("run useradd ") and line.endswith(" guardian") for line in lines)
        assert any(line.startswith("run useradd ") and "--groups guardian" in line and line.endswith(" guardian-web")
                   for line in lines)
    assert "run systemctl enable guardian.service guardian-web.service" in lines
    assert "run systemctl restart guardian.service guardian-web.service" in lines


def test_uninstall_dry_run_keeps_config_and_data_unless_purged():
    kept = install("--uninstall", "--dry-run").stdout.splitlines()
    assert "remove /opt/guardian" in kept and "remove /lib/systemd/system/guardian.service" in kept
    assert "remove /etc/guardian" not in kept and "remove /var/lib/guardian" not in kept
    purged = install("--uninstall", "--purge", "--dry-run").stdout.splitlines()
    assert "remove /etc/guardian" in purged and "remove /var/lib/guardian" in purged


def test_bad_options_are_refused_clearly():
    result = install("--frobnicate", check=False)
    assert result.returncode == 2 and "unknown option --frobnicate" in result.stderr
    result = install("--purge", "--dry-run", check=False)
    assert result.returncode == 2 and "--purge goes with --uninstall" in result.stderr


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"gi-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def dnsmasq(netns: str, port: int, *extra: str) -> subprocess.Popen[str]:
    """A real dnsmasq inside the namespace (its loopback only)."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "dnsmasq", "--keep-in-foreground", "--no-resolv",
                             "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
                             "--pid-file=", "--user=root", *extra], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc


def test_port_53_free_or_held_by_dnsmasq_with_the_fix(netns):
    assert "port 53: free" in install("--dry-run", netns=netns).stdout
    proc = dnsmasq(netns, 53)
    try:
        out = install("--dry-run", netns=netns).stdout
    finally:
        proc.terminate()
        proc.wait(5)
    assert "port 53: held by dnsmasq." in out
    assert "fix: systemctl disable --now dnsmasq" in out


@pytest.fixture
def root() -> Iterator[Path]:
    """A throwaway root that another user can walk into (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="guardian-root-"))
    path.chmod(0o755)
    etc = path / "etc"
    etc.mkdir()
    # A fresh system's user database: root only.
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    (etc / "shadow").chmod(0o640)
    (etc / "gshadow").chmod(0o640)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wheel(tmp_path: Path) -> Path:
    """A wheel of this checkout, built from a copy (no build/ left in the repository)."""
    src, out = tmp_path / "src", tmp_path / "wheels"
    if not src.exists():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("guardian", "rules", "web"):
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, src / name, ignore=ignore)
        for name in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(src)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("guardian-*.whl")
    return found


def owner(path: Path, root: Path) -> str:
    st = path.lstat()
    users = {line.split(":")[2]: line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[2]: line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    return f"{users[str(st.st_uid)]}:{groups[str(st.st_gid)]}"


def test_real_install_into_a_throwaway_root_then_the_daemon_answers_in_a_netns(root, tmp_path, netns):
    # Tests never reach a package registry: guardian from a wheel of this checkout, its
    # dependencies from this test's own environment (a .pth line added below).
    out = install("--destdir", str(root), "--from", str(wheel(tmp_path)), "--python", PYTHON,
                  "--pip-args", "--no-index --no-deps").stdout
    assert written(out) == EXPECTED_FILES
    for path in EXPECTED_FILES:
        assert os.path.lexists(root / path.lstrip("/")), path
    assert os.readlink(root / "usr/bin/guardian") == "/opt/guardian/.venv/bin/guardian"
    share = root / "opt/guardian/.venv/share/guardian"  # the rule packs and the dashboard's files (setup.cfg data_files)
    assert (share / "rules/adult.yaml").is_file() and (share / "web/templates").is_dir()
    for path, mode, who in EXPECTED_DIRS:
        full = root / path.lstrip("/")
        assert (oct(stat.S_IMODE(full.stat().st_mode))[2:].zfill(4), owner(full, root)) == (mode, who), path
    config = root / "etc/guardian/guardian.yaml"
    assert (stat.S_IMODE(config.stat().st_mode), owner(config, root)) == (0o640, "root:guardian")
    passwd = (root / "etc/passwd").read_text()
    assert "\nguardian:x:" in passwd and "\nguardian-web:x:" in passwd
    assert "guardian-web" in next(g for g in (root / "etc/group").read_text().splitlines() if g.startswith("guardian:"))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert {p.name for p in wants.iterdir()} == {"guardian.service", "guardian-web.service"}

    # Reinstalling (an upgrade) keeps the administrator's configuration.
    config.write_text(config.read_text().replace(
        "    - udp://9.9.9.9:53\n    - tls://dns.quad9.net@9.9.9.9:853\n    - https://dns.quad9.net/dns-query\n",
        "    - udp://127.0.0.1:5300\n"))
    again = install("--destdir", str(root), "--from", str(wheel(tmp_path)), "--python", PYTHON,
                    "--pip-args", "--no-index --no-deps").stdout
    assert "keep /etc/guardian/guardian.yaml (already there: yours)" in again
    assert "udp://127.0.0.1:5300" in config.read_text()

    site = next((root / "opt/guardian/.venv/lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "test-deps.pth").chmod(0o644)  # user guardian reads it, whatever umask pytest runs under
    uid = next(line.split(":")[2] for line in passwd.splitlines() if line.startswith("guardian:"))
    upstream = dnsmasq(netns, 5300, "--address=/example.com/93.184.216.34")
    # As the unit runs it: user guardian, port 53 through an ambient capability, the paths of
    # the real system (private mounts of the throwaway root's /opt/guardian and /var/lib/guardian).
    script = (f"mount -t tmpfs tmpfs /opt && mkdir /opt/guardian && mount --bind {root}/opt/guardian /opt/guardian && "
              f"mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/guardian && "
              f"mount --bind {root}/var/lib/guardian /var/lib/guardian && "
              f"cd / && exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=+net_bind_service,+net_raw "
              f"--ambient-caps=+net_bind_service,+net_raw /opt/guardian/.venv/bin/guardian run --config {config}")
    daemon = subprocess.Popen(["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
                               "sh", "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        answer = ""
        while time.monotonic() < deadline and daemon.poll() is None:
            answer = subprocess.run(["ip", "netns", "exec", netns, "dig", "+short", "+tries=1", "+time=1",
                                     "@127.0.0.1", "example.com"], capture_output=True, text=True).stdout.strip()
            if answer and not answer.startswith(";;"):  # dig +short prints its errors there too
                break
            time.sleep(0.2)
        assert answer == "93.184.216.34", daemon.stderr.read() if daemon.poll() is not None else "no answer"
        # It writes as user guardian into its data directory, files 0640.
        db = root / "var/lib/guardian/household.db"
        assert owner(db, root) == "guardian:guardian" and stat.S_IMODE(db.stat().st_mode) & 0o027 == 0
    finally:
        daemon.terminate()
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        upstream.terminate()
        upstream.wait(5)

    # Uninstall keeps the data; --purge removes it and the users.
    install("--destdir", str(root), "--uninstall")
    assert not (root / "opt/guardian").exists() and not (root / "lib/systemd/system/guardian.service").exists()
    assert (root / "var/lib/guardian/household.db").exists() and config.exists()
    install("--destdir", str(root), "--uninstall", "--purge")
    assert not (root / "var/lib/guardian").exists() and not (root / "etc/guardian").exists()
    assert "guardian" not in (root / "etc/passwd").read_text()


def test_an_existing_config_that_starts_its_own_dashboard_is_pointed_out(tmp_path):
    conf = tmp_path / "etc/guardian"
    conf.mkdir(parents=True)
    (conf / "guardian.yaml").write_text("dns:\n  listen: ['0.0.0.0:53']\ndata_dir: /var/lib/guardian\n")
    out = install("--dry-run", "--destdir", str(tmp_path)).stdout
    assert "keep /etc/guardian/guardian.yaml (already there: yours)" in out
    assert "does not say 'dashboard: {enabled: false}'" in out
    (conf / "guardian.yaml").write_text("dashboard:\n  enabled: false\n")
    assert "enabled: false}'" not in install("--dry-run", "--destdir", str(tmp_path)).stdout
