"""``guardian reset [--keep-network]``: back to the box as provisioned (a factory reset).

Erases everything in the data directory: the household (profiles, devices, schedules,
overrides), the dashboard's accounts and sessions (web/ is emptied, kept), the query log,
the risk events, the usage, the audit trail (audit.db), the anonymous statistics and the
lists. The configuration and provisioning (/etc/guardian) stay. The next start seeds the
household from them again, and the dashboard asks for the setup code (or a first account).

``--keep-network`` keeps what Guardian learnt about the network: the device registry (MACs,
addresses, makers, last seen; without the parents' names and profiles for them) and the
downloaded and compiled lists. The daemon must be stopped first: it holds these files.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from .config import Settings
from .control import SOCKET_NAME, DaemonNotRunning, request
from .errors import GuardianError

HISTORY_DB = "guardian.db"
WEB_DB = "web.db"
WEB_DIR = "web"
LISTS_DIR = "lists"
# guardian.db's tables of what the household did (the registry is devices + device_addresses).
HISTORY_TABLES = ("queries", "hourly", "blocked_hourly", "daily", "daily_services", "blocked_daily",
                  "blocked_totals", "usage_hourly", "risk_events", "clients", "domains", "labels")


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
            path.with_name(path.name + "-journal")]


def what_goes(settings: Settings, keep_network: bool) -> list[str]:
    """The sentences the confirmation prompt shows."""
    lines = ["the household: profiles, devices' profiles, schedules, budgets, pauses and overrides",
             "the dashboard's accounts and sessions (it asks for the setup code again)",
             "the query log, the risk events and the screen-time usage",
             "the audit trail of who changed what, and the anonymous statistics files"]
    lines.append("kept: the device registry and the downloaded lists" if keep_network
                 else "the device registry and the downloaded lists")
    return lines


def factory_reset(settings: Settings, keep_network: bool = False) -> list[str]:
    """Erase the household's data under ``settings.data_dir``; the paths removed or emptied."""
    data = settings.data_dir
    try:
        request(data / SOCKET_NAME, {"action": "status"}, timeout=5)
    except DaemonNotRunning:
        pass
    else:
        raise GuardianError("Guardian is running: stop it first (systemctl stop guardian guardian-web), "
                            "then reset, then start it again")
    if not data.is_dir():
        return []
    done: list[str] = []
    web = data / WEB_DIR
    if web.is_dir():  # the dashboard's own folder: emptied, kept (its unit's StateDirectory)
        for child in web.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            done.append(str(child))
    history = data / HISTORY_DB
    kept = {WEB_DIR}
    if keep_network and history.exists():
        _erase_history(history)
        done.append(f"{history} (history erased, device registry kept)")
        kept |= {p.name for p in _sqlite_files(history)} | {LISTS_DIR}
    # Everything else in the data directory goes: household.db, web.db, audit.db, guardian.db,
    # the lists, the anonymous statistics, backups' leftovers, files a later version adds.
    for path in sorted(data.iterdir()):
        if path.name in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        done.append(str(path))
    return done


def _erase_history(path: Path) -> None:
    try:
        with sqlite3.connect(path) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in HISTORY_TABLES:
                if table in tables:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - names from HISTORY_TABLES only
            if "devices" in tables:
                db.execute("UPDATE devices SET name = '', profile = NULL")  # the parents' labels go too
        db.close()
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")  # the deleted history leaves no readable pages on the card
        db.close()
    except sqlite3.Error as exc:
        raise GuardianError(f"{path}: cannot erase the history: {exc}") from exc


def reset_command(config_path: str, keep_network: bool, yes: bool) -> int:
    """The command line: show what goes, ask (unless ``yes``), reset, say what to do next."""
    import sys

    from . import config

    settings = config.load(config_path)
    print(f"guardian reset: back to the box as provisioned, in {settings.data_dir}. This erases:")
    for line in what_goes(settings, keep_network):
        print(f"  - {line}")
    if not yes:
        if not sys.stdin.isatty():
            raise GuardianError("not confirmed: run it in a terminal, or add --yes")
        if input("Type 'reset' to go on: ").strip().lower() != "reset":
            print("nothing changed")
            return 1
    done = factory_reset(settings, keep_network)
    print(f"done: {len(done)} files erased. Start Guardian again (systemctl start guardian guardian-web): "
          "the household is seeded from the configuration and provisioning, and the dashboard asks "
          "for the setup code.")
    return 0
