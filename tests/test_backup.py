"""``guardian backup`` / ``guardian restore`` with the real daemon: back up, change things,
restore, and the daemon answers as before; a damaged or foreign archive is refused with a
clear message and nothing stored changes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from support import Running, dig, free_port

from guardian import audit, config
from guardian.web.accounts import Accounts, db_path

GUARDIAN = [sys.executable, "-m", "guardian"]
STRICT = ("household:\n  profiles:\n    - {name: Family, template: Adult, deny: [kids.example]}\n"
          "  default_profile: Family\n")
LOOSE = "household:\n  profiles:\n    - {name: Loose, template: Adult}\n  default_profile: Loose\n"


def setup(tmp_path: Path, upstream_url: str) -> tuple[Path, int]:
    port = free_port()
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(f"data_dir: ./var\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{port}']\n"
                   f"  upstreams: ['{upstream_url}']\nstore:\n  flush_seconds: 0.2\n")
    return cfg, port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARDIAN, *args], capture_output=True, text=True, timeout=60)


def profiles(running: Running) -> list[str]:
    assert running.daemon is not None
    return [p.name for p in running.daemon.policy.current.household.profiles]


async def _import(running: Running, text: str) -> None:
    assert running.daemon is not None
    running.daemon.household.import_(text)


def answer(port: int) -> tuple[str, list[str]]:
    got = dig(port, "kids.example")
    return got.status, got.values


def digests(var: Path) -> dict[str, str]:
    return {str(p.relative_to(var)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(var.rglob("*.db")) if p.is_file()}


def test_backup_change_restore_and_the_daemon_answers_as_before(tmp_path, upstream):
    cfg, port = setup(tmp_path, upstream.url)
    var = tmp_path / "var"
    archive = tmp_path / "box.tar.gz"
    running = Running(config.load(cfg))
    try:
        running.call(_import(running, STRICT))
        before = answer(port)
        assert before[1] != ["198.51.100.7"]  # kids.example is denied for the family
        accounts = Accounts(db_path(var))
        accounts.create("mum", "correct horse battery", first=True)
        audit.record(var, {"action": "block", "target": "Family"}, None)
        made = cli("backup", "--config", str(cfg), "--output", str(archive))  # while the daemon runs
        assert made.returncode == 0, made.stderr
        assert "household.db" in made.stdout and "web.db" in made.stdout and "audit.db" in made.stdout
        assert archive.stat().st_mode & 0o077 == 0  # accounts' hashes: root's eyes only
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            web = tar.extractfile("data/web/web.db")
            assert web is not None and b"correct horse battery" not in web.read()  # hashes, not passwords
        assert "data/guardian.db" not in names  # the query log only with --with-queries
        # The family changes things after the backup.
        running.call(_import(running, LOOSE))
        assert answer(port) == ("NOERROR", ["198.51.100.7"])
        accounts.create("intruder", "another long password")
        refused = cli("restore", "--config", str(cfg), str(archive))
        assert refused.returncode == 1 and "Guardian is running: stop it first" in refused.stderr
    finally:
        running.stop()
    stored = digests(var)

    # Damaged, foreign and tampered archives are refused; nothing stored changes.
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    foreign = tmp_path / "holiday.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        body = b"photos"
        info = tarfile.TarInfo("beach.jpg")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "data/household.db":
                data = data.replace(b"kids.example", b"kids.exampl3")
            dst.addfile(member, io.BytesIO(data))
    notgz = tmp_path / "notes.tar.gz"
    notgz.write_text("not an archive at all")
    for bad, message in ((damaged, "is damaged"), (foreign, "is not a Guardian backup (no guardian-backup.json"),
                         (tampered, "data/household.db is damaged (its checksum does not match)"),
                         (notgz, "is not a Guardian backup (not a gzipped tar archive")):
        result = cli("restore", "--config", str(cfg), str(bad))
        assert result.returncode == 1, (bad, result.stdout)
        assert message in result.stderr, (bad, result.stderr)
        assert "Traceback" not in result.stderr
        assert digests(var) == stored, bad
    assert not list(var.glob("before-restore-*")) and not list(var.glob(".restore-*"))

    restored = cli("restore", "--config", str(cfg), str(archive))
    assert restored.returncode == 0, restored.stderr
    aside = list(var.glob("before-restore-*"))
    assert len(aside) == 1 and (aside[0] / "data_household.db").is_file()  # what it replaced is kept
    running = Running(config.load(cfg))
    try:
        assert profiles(running) == ["Family"]
        assert answer(port) == before  # the daemon answers as before the change
    finally:
        running.stop()
    accounts = Accounts(db_path(var))
    assert accounts.check("mum", "correct horse battery") is not None
    assert accounts.find("intruder") is None
    assert [row["action"] for row in audit.read(var)] == ["block"]


def test_a_backup_from_a_newer_guardian_is_refused(tmp_path, upstream):
    cfg, _port = setup(tmp_path, upstream.url)
    var = tmp_path / "var"
    var.mkdir()
    with sqlite3.connect(var / "household.db") as db:
        db.execute("CREATE TABLE household (id INTEGER)")
        db.execute("PRAGMA user_version = 99")
    db.close()
    archive = tmp_path / "new.tar.gz"
    made = cli("backup", "--config", str(cfg), "-o", str(archive))
    assert made.returncode == 0, made.stderr
    (var / "household.db").unlink()
    result = cli("restore", "--config", str(cfg), str(archive))
    assert result.returncode == 1
    assert "data/household.db was written by a newer Guardian (schema 99" in result.stderr
    assert not (var / "household.db").exists()
    # and a manifest from a newer backup format
    with tarfile.open(archive) as src:
        manifest = json.loads(src.extractfile("guardian-backup.json").read())  # type: ignore[union-attr]
    manifest["version"] = 7
    body = json.dumps(manifest).encode()
    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(newer, "w:gz") as tar:
        info = tarfile.TarInfo("guardian-backup.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    result = cli("restore", "--config", str(cfg), str(newer))
    assert result.returncode == 1 and "was made by a newer Guardian" in result.stderr


def test_the_parents_requests_are_backed_up_and_restored(tmp_path, upstream):
    from guardian.web.asks import Asks

    cfg, _port = setup(tmp_path, upstream.url)
    var = tmp_path / "var"
    archive = tmp_path / "box.tar.gz"
    asks = Asks(var)
    asked = asks.create(asker="d:Sam's tablet", device="Sam's tablet", client="192.168.1.23", profile="Sam",
                        name="i.ytimg.com", rule="ytimg.com", service="youtube", reason="service", note="homework")
    approved = asks.decide(asks.create(asker="d:Sam's tablet", device="Sam's tablet", client="192.168.1.23",
                                       profile="Sam", name="10bet.com", rule="10bet.com").id,
                           "approved", "mum", None, "", "rule")
    before = asks.listing()
    made = cli("backup", "--config", str(cfg), "--output", str(archive))
    assert made.returncode == 0, made.stderr
    assert "data/web/requests.db" in made.stdout
    # After the backup: an answer, and a new request.
    asks.decide(asked.id, "declined", "dad", None, "Not now")
    asks.create(asker="d:Other", device="Other", client="192.168.1.24", profile="Sam", name="888.com", rule="888.com")
    assert len(asks.listing()) == 3
    stored = digests(var)

    # A bad backup changes nothing: requests.db tampered with, or from a newer Guardian.
    tampered = tmp_path / "tampered.tar.gz"
    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(archive) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(tampered, "w:gz") as dst:
        for member, data in members:
            dst.addfile(member, io.BytesIO(data.replace(b"homework", b"h0mework")
                                           if member.name == "data/web/requests.db" else data))
    future = tmp_path / "future.db"
    future.write_bytes(dict((m.name, d) for m, d in members)["data/web/requests.db"])
    with sqlite3.connect(future) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    manifest = json.loads(dict((m.name, d) for m, d in members)["guardian-backup.json"])
    body = future.read_bytes()
    manifest["files"]["data/web/requests.db"] = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    with tarfile.open(newer, "w:gz") as dst:
        for member, data in members:
            if member.name == "guardian-backup.json":
                data = json.dumps(manifest).encode()
            elif member.name == "data/web/requests.db":
                data = body
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    for bad, message in ((tampered, "data/web/requests.db is damaged (its checksum does not match)"),
                         (newer, "data/web/requests.db was written by a newer Guardian (schema 99")):
        result = cli("restore", "--config", str(cfg), str(bad))
        assert result.returncode == 1 and message in result.stderr, (bad, result.stderr)
        assert digests(var) == stored, bad
        assert len(Asks(var).listing()) == 3

    restored = cli("restore", "--config", str(cfg), str(archive))
    assert restored.returncode == 0, restored.stderr
    again = Asks(var)
    assert again.listing() == before  # the two requests, as they were when backed up
    assert again.get(asked.id).state == "new" and again.get(asked.id).note == "homework"  # type: ignore[union-attr]
    assert again.get(approved.id).decided_by == "mum"  # type: ignore[union-attr]

    # A box that had no requests yet: the restored file belongs to the dashboard's folder's owner.
    for stale in (var / "web").glob("requests.db*"):
        stale.unlink()
    if os.geteuid() == 0:
        os.chown(var / "web", 4242, 4242)  # guardian-web on a box
    restored = cli("restore", "--config", str(cfg), str(archive))
    assert restored.returncode == 0, restored.stderr
    kept = (var / "web" / "requests.db").stat()
    assert (kept.st_uid, kept.st_gid) == ((var / "web").stat().st_uid, (var / "web").stat().st_gid)
    assert Asks(var).listing() == before


def test_the_parents_settings_choices_are_backed_up_checked_and_restored(tmp_path, upstream):
    from guardian import choices

    cfg, _port = setup(tmp_path, upstream.url)
    var = tmp_path / "var"
    var.mkdir()
    with sqlite3.connect(var / "household.db") as db:
        db.execute("CREATE TABLE household (id INTEGER)")
    db.close()
    choices.save(var, "privacy: {mode: risks-only}\nstore: {query_days: 3}\n")
    archive = tmp_path / "b.tar.gz"
    made = cli("backup", "--config", str(cfg), "-o", str(archive))
    assert made.returncode == 0 and "data/choices.yaml" in made.stdout, made.stdout + made.stderr
    choices.save(var, "privacy: {mode: full}\n")
    restored = cli("restore", "--config", str(cfg), str(archive))
    assert restored.returncode == 0, restored.stderr
    assert choices.read(var) == {"privacy": "risks-only", "query_days": 3}
    assert config.load(cfg).store.query_days == 3
    # An archive whose choices say something Guardian would refuse changes nothing.
    with tarfile.open(archive) as src:
        members = {m.name: src.extractfile(m).read() for m in src.getmembers()}  # type: ignore[union-attr]
    members["data/choices.yaml"] = b"privacy: {mode: everything}\n"
    manifest = json.loads(members["guardian-backup.json"])
    manifest["files"]["data/choices.yaml"] = {"size": len(members["data/choices.yaml"]),
                                              "sha256": hashlib.sha256(members["data/choices.yaml"]).hexdigest()}
    members["guardian-backup.json"] = json.dumps(manifest).encode()
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    before = (var / "choices.yaml").read_bytes()
    result = cli("restore", "--config", str(cfg), str(bad))
    assert result.returncode == 1 and "data/choices.yaml is not valid" in result.stderr and "privacy.mode" in result.stderr
    assert (var / "choices.yaml").read_bytes() == before
