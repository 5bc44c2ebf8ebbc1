"""``guardian backup`` and ``guardian restore``: the household, the settings and the accounts in one file.

A backup is a gzipped tar archive holding ``guardian-backup.json`` (format, version,
Guardian's version, the time, and each member's size and SHA-256) and:

- ``config/guardian.yaml``: the configuration file (provision.yaml is the provider's and
  is neither saved nor restored: the box's own provisioning stays in force);
- ``data/household.db``: profiles, devices' profiles, schedules, budgets, overrides;
- ``data/web/web.db``: the dashboard's accounts (passwords only as their scrypt hashes),
  API tokens (hashed) and account events; sessions are dropped (everyone signs in again);
- ``data/web/requests.db``: the children's "ask a parent" requests and their answers
  (a backup without it, from before, leaves the box's requests as they are);
- ``data/audit.db``: who changed what;
- ``data/choices.yaml``: the service's settings parents changed on the dashboard
  (resolvers, privacy mode, retention, time zone), checked like the configuration;
- ``data/guardian.db`` only with ``--with-queries``: the query log, the risk events, the
  usage and the device registry (it can be large).

Each database is copied with SQLite's online backup API, so a backup may be taken while
Guardian runs. A restore needs Guardian stopped. It checks the whole archive first (a
Guardian backup, every checksum, every database intact and not from a newer Guardian)
and refuses it with a clear message otherwise, touching nothing. Then the files it
replaces are moved to ``data_dir/before-restore-<time>/`` (nothing stored is lost) and
the archive's files put in their place with the owners and modes of the files they replace
(a database the box did not have yet gets its folder's owner: ``web/`` is the dashboard's).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __version__
from .control import SOCKET_NAME, DaemonNotRunning, request
from .errors import GuardianError

MANIFEST = "guardian-backup.json"
FORMAT = "guardian-backup"
VERSION = 1
CONFIG_MEMBER = "config/guardian.yaml"
CHOICES_MEMBER = "data/choices.yaml"
# Archive member -> its path under data_dir.
DATABASES = {"data/household.db": "household.db", "data/web/web.db": "web/web.db",
             "data/web/requests.db": "web/requests.db", "data/audit.db": "audit.db", "data/guardian.db": "guardian.db"}
MAX_MEMBER = 2 << 30  # 2 GiB: more than a Pi's query log ever holds


def _schemas() -> dict[str, int]:
    from .household.storage import SCHEMA_VERSION as HOUSEHOLD
    from .store.db import MIGRATIONS
    from .web.accounts import SCHEMA_VERSION as WEB
    from .web.asks import MIGRATIONS as REQUESTS

    return {"data/household.db": HOUSEHOLD, "data/web/web.db": WEB, "data/web/requests.db": REQUESTS[-1][0],
            "data/guardian.db": MIGRATIONS[-1][0]}


def _copy_db(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create(settings: Any, output: Path, with_queries: bool = False) -> list[str]:
    """Write the backup archive to ``output``; the members written."""
    data: Path = settings.data_dir
    with tempfile.TemporaryDirectory(prefix="guardian-backup-") as tmp_name:
        tmp = Path(tmp_name)
        members: dict[str, Path] = {}
        if settings.path is not None and Path(settings.path).is_file():
            members[CONFIG_MEMBER] = Path(settings.path)
        if (data / "choices.yaml").is_file():
            members[CHOICES_MEMBER] = data / "choices.yaml"
        for member, relative in DATABASES.items():
            if member == "data/guardian.db" and not with_queries:
                continue
            source = data / relative
            if not source.is_file():
                continue
            copy = tmp / member.replace("/", "_")
            try:
                _copy_db(source, copy)
                if member == "data/web/web.db":
                    _drop_sessions(copy)
            except sqlite3.Error as exc:
                raise GuardianError(f"{source}: cannot copy it: {exc}") from exc
            members[member] = copy
        if not any(m.startswith("data/") for m in members):
            raise GuardianError(f"nothing to back up in {data}: has Guardian run with this configuration?")
        manifest = {"format": FORMAT, "version": VERSION, "guardian": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": {m: {"size": p.stat().st_size, "sha256": _sha256(p)} for m, p in members.items()}}
        partial = output.with_name(output.name + ".partial")
        old_umask = os.umask(0o077)  # accounts' hashes and the household: for root's eyes only
        try:
            with tarfile.open(partial, "w:gz") as tar:
                body = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
                tar.addfile(info, io.BytesIO(body))
                for member, path in members.items():
                    tar.add(path, arcname=member, recursive=False, filter=_plain)
            os.replace(partial, output)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise GuardianError(f"{output}: cannot write the backup: {exc.strerror or exc}") from exc
        finally:
            os.umask(old_umask)
        return list(members)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or modes of this box in the archive."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _drop_sessions(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "sessions" in tables:
                conn.execute("DELETE FROM sessions")
        conn.execute("VACUUM")
    finally:
        conn.close()


def check(archive: Path, into: Path) -> dict[str, Any]:
    """Check the whole archive and unpack it into ``into``; its manifest. GuardianError otherwise."""
    name = str(archive)
    try:
        tar = tarfile.open(archive, "r:gz")
    except FileNotFoundError:
        raise GuardianError(f"{name}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise GuardianError(f"{name} is not a Guardian backup (not a gzipped tar archive: {exc})") from None
    with tar:
        try:
            entries = tar.getmembers()
            by_name = {e.name: e for e in entries}
            if MANIFEST not in by_name or not by_name[MANIFEST].isfile():
                raise GuardianError(f"{name} is not a Guardian backup (no {MANIFEST} in it)")
            handle = tar.extractfile(by_name[MANIFEST])
            assert handle is not None
            try:
                manifest = json.loads(handle.read(1 << 20))
            except ValueError:
                raise GuardianError(f"{name} is not a Guardian backup ({MANIFEST} is not JSON)") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise GuardianError(f"{name} is not a Guardian backup (its {MANIFEST} is not Guardian's)")
            if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
                raise GuardianError(f"{name} was made by a newer Guardian ({manifest.get('guardian')}): "
                                    "upgrade this box first")
            files = manifest.get("files")
            allowed = {CONFIG_MEMBER, CHOICES_MEMBER, *DATABASES}
            if not isinstance(files, dict) or not files or not set(files) <= allowed:
                raise GuardianError(f"{name}: its {MANIFEST} lists unknown files")
            extra = set(by_name) - {MANIFEST} - set(files)
            if extra:
                raise GuardianError(f"{name}: unexpected files in the archive: {', '.join(sorted(extra))}")
            for member, expected in files.items():
                entry = by_name.get(member)
                if entry is None or not entry.isfile():
                    raise GuardianError(f"{name}: {member} is missing from the archive")
                if entry.size > MAX_MEMBER or entry.size != expected.get("size"):
                    raise GuardianError(f"{name}: {member} is damaged (its size is not the recorded one)")
                target = into / member
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(entry)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                if _sha256(target) != expected.get("sha256"):
                    raise GuardianError(f"{name}: {member} is damaged (its checksum does not match)")
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise GuardianError(f"{name} is damaged: {exc}") from None
    schemas = _schemas()
    if CHOICES_MEMBER in files:
        _check_choices(name, into)
    for member in files:
        if member in (CONFIG_MEMBER, CHOICES_MEMBER):
            continue
        path = into / member
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise GuardianError(f"{name}: {member} is not a readable database: {exc}") from None
        if result != "ok":
            raise GuardianError(f"{name}: {member} is damaged: {result}")
        newest = schemas.get(member)
        if newest is not None and version > newest:
            raise GuardianError(f"{name}: {member} was written by a newer Guardian (schema {version}, this one "
                                f"reads up to {newest}): upgrade this box first")
    return manifest


def _check_choices(name: str, into: Path) -> None:
    """The parents' choices in the archive, checked like the configuration."""
    from . import choices
    from .errors import ConfigError

    try:
        choices.read(into / "data")
    except ConfigError as exc:
        problems = "; ".join(p.split(": ", 1)[-1] for p in exc.problems)
        raise GuardianError(f"{name}: {CHOICES_MEMBER} is not valid: {problems}") from None


def restore(settings: Any, archive: Path) -> tuple[list[str], Path | None]:
    """Put the archive's files in place; (what was restored, where the replaced files went)."""
    data: Path = settings.data_dir
    try:
        request(data / SOCKET_NAME, {"action": "status"}, timeout=5)
    except DaemonNotRunning:
        pass
    else:
        raise GuardianError("Guardian is running: stop it first (systemctl stop guardian guardian-web), "
                            "then restore, then start it again")
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data) as tmp_name:
        tmp = Path(tmp_name)
        manifest = check(archive, tmp)
        targets: dict[str, Path] = {}
        for member in manifest["files"]:
            if member == CONFIG_MEMBER:
                if settings.path is None:
                    continue
                targets[member] = Path(settings.path)
            elif member == CHOICES_MEMBER:
                targets[member] = data / "choices.yaml"
            else:
                targets[member] = data / DATABASES[member]
        aside = data / time.strftime("before-restore-%Y%m%d-%H%M%S")
        moved: list[Path] = []
        for member, target in targets.items():
            for old in (target, *(target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal"))):
                if old.exists():
                    aside.mkdir(mode=0o700, exist_ok=True)
                    where = aside / member.replace("/", "_") if old == target else aside / old.name
                    shutil.copy2(old, where)
                    moved.append(old)
        restored = []
        for member, target in targets.items():
            new = tmp / member
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # the owner and mode of the file it replaces (guardian, guardian-web)
                st = target.stat()
                os.chmod(new, st.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.chown(new, st.st_uid, st.st_gid)
            else:
                os.chmod(new, 0o600 if member not in (CONFIG_MEMBER, CHOICES_MEMBER) else 0o640)
                if os.geteuid() == 0 and member != CONFIG_MEMBER:  # the folder's owner: web/ is guardian-web's
                    st = target.parent.stat()
                    os.chown(new, st.st_uid, st.st_gid)
            for stale in (target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal")):
                stale.unlink(missing_ok=True)  # copied aside above; a stale WAL would replay on the new file
            shutil.move(str(new), str(target))  # a rename inside data_dir; a copy for the config
            restored.append(str(target))
        return restored, (aside if moved else None)


def backup_command(config_path: str, output: str | None, with_queries: bool) -> int:
    from . import config

    settings = config.load(config_path)
    path = Path(output or time.strftime("guardian-backup-%Y%m%d-%H%M%S.tar.gz"))
    members = create(settings, path, with_queries)
    print(f"backup written to {path}: {', '.join(members)}")
    return 0


def restore_command(config_path: str, archive: str) -> int:
    from . import config

    settings = config.load(config_path)
    restored, aside = restore(settings, Path(archive))
    print(f"restored from {archive}: {', '.join(restored)}")
    if aside is not None:
        print(f"the files it replaced are kept in {aside}")
    print("start Guardian again: systemctl start guardian guardian-web (everyone signs in to the dashboard again)")
    return 0
