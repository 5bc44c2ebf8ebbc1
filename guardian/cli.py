"""The ``guardian`` command: run the daemon, check a config, and the parent's actions."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__
from .errors import ConfigError, GuardianError

if TYPE_CHECKING:  # argparse, asyncio and the action table load when a command needs them: `guardian web`
    import argparse  # takes its own path (guardian.web.lean_main), asyncio after it has kept OpenSSL out
    import asyncio

log = logging.getLogger("guardian")

DEFAULT_CONFIG = "/etc/guardian/guardian.yaml"


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="guardian", description="Home-network guardian: family DNS filtering.")
    parser.add_argument("--version", action="version", version=f"guardian {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
        return sub

    command("run", "run the daemon (SIGTERM/SIGINT stop, SIGHUP reloads the configuration)")
    command("check-config", "validate a configuration file; print FILE:LINE: problem lines")
    sub = command("lists", "each list: entries, last update, last error")
    sub.add_argument("--refresh", action="store_true",
                     help="download the subscribed lists now, showing progress (a running daemon picks them up)")
    sub = command("status", "the running daemon: listeners, queries, upstreams, cache, lists, store, memory "
                            "(exit 1 when it is not running)")
    sub.add_argument("--json", action="store_true", help="JSON instead of text")
    sub = command("devices", "the device registry: name, MAC, addresses, hostname, maker, random MAC, profile")
    sub.add_argument("--json", action="store_true", help="JSON instead of a table")
    for name, text in (("events", "risk events, newest first"), ("stats", "per-device and per-category counts")):
        sub = command(name, text)
        sub.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)")
        sub.add_argument("--json", action="store_true", help="JSON instead of a table")

    def when(sub: argparse.ArgumentParser, required: bool = False, cancel: str = "") -> None:
        group = sub.add_mutually_exclusive_group(required=required)
        group.add_argument("--for", dest="duration", type=_duration, metavar="DURATION",
                           help="for how long: 30m, 1h, 90s, 2h30m (at most 30 days)")
        group.add_argument("--until", metavar="HH:MM", help="until the next such time of day (household zone)")
        if cancel:
            group.add_argument("--cancel", action="store_true", help=cancel)

    sub = command("pause", "pause a device or a profile: nothing resolves for it (until resumed by default)")
    sub.add_argument("target", metavar="TARGET", help="a device or profile name")
    when(sub)
    sub = command("resume", "end the pause of a device or profile")
    sub.add_argument("target", metavar="TARGET", help="a device or profile name")
    sub = command("bonus", "bonus time: lift a profile's schedules and budgets for a while")
    sub.add_argument("profile", metavar="PROFILE")
    when(sub, required=True, cancel="end the profile's bonus time now")
    for name, verb in (("allow", "allow"), ("block", "block")):
        sub = command(name, f"{verb} one domain (and its subdomains) for a profile: for a while, or for good")
        sub.add_argument("domain", metavar="DOMAIN")
        sub.add_argument("--profile", "-p", required=True, metavar="PROFILE")
        when(sub, cancel=f"end a temporary {verb} (--for/--until) of the domain now")
    sub = command("usage", "today's estimated screen time against the budgets")
    sub.add_argument("profile", metavar="PROFILE", nargs="?")
    sub.add_argument("--json", action="store_true", help="JSON instead of a table")
    sub = command("web", "run the parents' dashboard (started by 'guardian run' unless dashboard.enabled is false); "
                         "'guardian web reset-password ACCOUNT' sets a forgotten password (root only)")
    sub.add_argument("what", nargs="?", choices=["reset-password"], help=argparse.SUPPRESS)
    sub.add_argument("account", nargs="?", metavar="ACCOUNT", help=argparse.SUPPRESS)
    command("export", "the household as YAML (profiles, devices, schedules, budgets)")
    sub = command("reset", "factory reset: erase the household, accounts and history; the next start applies "
                           "the configuration and provisioning again (asks for confirmation; stop Guardian first)")
    sub.add_argument("--keep-network", action="store_true", help="keep the device registry and the downloaded lists")
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub = command("backup", "write the household, the settings, the dashboard's accounts and the audit trail to one "
                            "archive (works while Guardian runs)")
    sub.add_argument("--output", "-o", metavar="FILE", help="the archive (default guardian-backup-DATE.tar.gz here)")
    sub.add_argument("--with-queries", action="store_true", help="also the query log, risk events and usage")
    sub = command("restore", "put a 'guardian backup' archive back (stop Guardian first; the replaced files are kept)")
    sub.add_argument("archive", metavar="FILE")
    sub = command("import", "replace the household with the one in a YAML file (as 'guardian export' writes)")
    sub.add_argument("file", metavar="FILE")
    return parser


def _duration(text: str) -> int:
    import argparse

    from .control import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def daemon_commands() -> tuple[str, ...]:
    """The commands the running daemon answers: the household's action table
    (household/actions.py) and status."""
    from .household.actions import ACTIONS

    return (*ACTIONS, "status")


def __getattr__(name: str) -> tuple[str, ...]:
    """PARENT_COMMANDS and DAEMON_COMMANDS, read from the action table when asked."""
    if name == "PARENT_COMMANDS":
        return daemon_commands()[:-1]
    if name == "DAEMON_COMMANDS":
        return daemon_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["web"]:  # the dashboard's process: no parser of every command, no action table
        from .web import lean_main

        code = lean_main(words[1:])
        if code is not None:
            return code
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "check-config":
            return check_config(args.config)
        if args.command == "run":
            return run(args.config)
        if args.command == "web":
            return web_command(args)
        if args.command == "reset":
            from .reset import reset_command

            return reset_command(args.config, args.keep_network, args.yes)
        if args.command in ("backup", "restore"):
            from . import backup

            if args.command == "backup":
                return backup.backup_command(args.config, args.output, args.with_queries)
            return backup.restore_command(args.config, args.archive)
        if args.command == "lists":
            return show_lists(args.config, refresh=args.refresh)
        if args.command == "devices":
            from . import config
            from .discovery import devices_report

            print(devices_report(config.load(args.config), args.json))
            return 0
        if args.command in ("events", "stats"):
            from . import config
            from .store import commands

            report = commands.events if args.command == "events" else commands.stats
            print(report(config.load(args.config), args.since, args.json))
            return 0
        if args.command in daemon_commands():
            return parent_action(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except GuardianError as exc:
        print(f"guardian: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


def web_command(args: argparse.Namespace) -> int:
    from . import config, web

    settings = config.load(args.config)
    if args.what == "reset-password":
        if not args.account:
            raise GuardianError("say which account: guardian web reset-password ACCOUNT")
        return web.reset_password(settings, args.account)
    return web.run(settings)


def request_payload(args: argparse.Namespace) -> dict[str, object]:
    """The control request for a command line: the table's arguments (household/actions.py)
    are the CLI's of the same names; --for, --until and --cancel become for, at and cancel."""
    from .household.actions import ACTIONS

    payload: dict[str, object] = {"action": args.command}
    spec = ACTIONS.get(args.command)
    if spec is not None and spec.cli_file:
        path = getattr(args, spec.cli_file)
        try:
            with open(path, encoding="utf-8") as handle:
                payload.update(text=handle.read(), filename=path)
        except (OSError, UnicodeDecodeError) as exc:
            raise GuardianError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    elif spec is not None:  # the table's arguments are the CLI's of the same names
        payload.update({a.name: getattr(args, a.name) for a in spec.args if getattr(args, a.name, None) is not None})
    if getattr(args, "cancel", False):
        payload["cancel"] = True
    elif getattr(args, "duration", None) is not None:
        payload["for"] = args.duration
    elif getattr(args, "until", None):
        payload["at"] = args.until
    return payload


def parent_action(args: argparse.Namespace) -> int:
    """Send one request (a parent's action, or status) to the running daemon; print its answer."""
    import json

    from . import config
    from .control import SOCKET_NAME, DaemonNotRunning, request

    settings = config.load(args.config)
    payload = request_payload(args)
    try:
        answer = request(settings.data_dir / SOCKET_NAME, payload)
    except DaemonNotRunning as exc:
        if args.command == "export":
            return export_stored(settings)
        print(f"guardian: {exc}: start it first ('guardian run --config {args.config}' or "
              "'systemctl start guardian')", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"guardian: {answer.get('error', 'the daemon refused')}", file=sys.stderr)
        for problem in answer.get("problems", ()):
            print(problem, file=sys.stderr)
        return 1
    if args.command == "export":
        print(answer["data"], end="")
    elif args.command in ("usage", "status") and args.json:
        print(json.dumps(answer["data"], indent=2, ensure_ascii=False))
    else:
        print(answer["message"])
    return 0


def export_stored(settings: object) -> int:
    """``guardian export`` with the daemon stopped: the stored household, else the seed."""
    from . import config
    from .app import household_of
    from .household.storage import HOUSEHOLD_DB, HouseholdStore
    from .household.transfer import export_yaml
    from .policy.household import household_from_config
    from .policy.rulepacks import load_rules

    assert isinstance(settings, config.Settings)
    stored = HouseholdStore(settings.data_dir / HOUSEHOLD_DB).load(repair=False)
    if stored is not None:
        household, _problems = household_from_config(stored.household)
        print("guardian: the daemon is not running: this is the stored household", file=sys.stderr)
    else:
        household = household_of(settings, load_rules())
        print("guardian: the daemon is not running and has never stored a household: "
              "this is the config's household: section", file=sys.stderr)
    print(export_yaml(household), end="")
    return 0


def check_config(path: str) -> int:
    from . import config

    settings = config.load(path)
    for warning in [*default_profile_warnings(path, settings), *blockpage_warnings(path, settings)]:
        print(warning, file=sys.stderr)
    print(f"{path}: OK ({len(settings.dns.listen)} listen addresses, {len(settings.dns.upstreams)} upstreams)")
    from .provision import files_for

    for provision_file in files_for(path):  # checked by config.load with the configuration
        print(f"{provision_file}: OK (provisioning)")
    return 0


def blockpage_warnings(path: str, settings: object) -> list[str]:
    """A warning when a profile answers blocked names with the box's address (``block_mode:
    blockpage``) but no block page is there: none configured, or only on addresses the
    answers may not point at (they are the address the device reaches the box on, unless
    ``dns.local_addresses`` fixes them)."""
    from .config import Settings
    from .policy.household import household_from_config
    from .policy.rulepacks import load_rules

    assert isinstance(settings, Settings)
    try:
        rules = load_rules()
    except ConfigError:
        return []
    household, problems = household_from_config(
        settings.household, rules.template_profiles(), categories=rules.categories, services=rules.services
    )
    using = [p.name for p in household.profiles if p.block_mode == "blockpage"]
    if problems or not using:
        return []
    hosts = {host for host, _port in settings.dashboard.blockpage_listen}
    where = f"{path}:{settings.household_line or 1}: warning: profile {using[0]!r} uses block_mode: blockpage"
    if not hosts:
        return [f"{where}, but dashboard.blockpage_listen is not set: a blocked site gets 'connection refused' "
                "instead of the block page. Set it (port 80 on a box, e.g. [\"0.0.0.0:80\", \"[::]:80\"])"]
    if hosts & {"0.0.0.0", "::", ""}:
        return []
    fixed = set(settings.dns.local_addresses)
    if fixed and fixed <= hosts:
        return []
    import ipaddress

    with contextlib.suppress(ValueError):
        if all(ipaddress.ip_address(h).is_loopback for h, _p in (*settings.dashboard.blockpage_listen,
                                                                *settings.dns.listen)):
            return []  # a trial on one machine: its clients are loopback and so are their answers
    return [f"{where}, and dashboard.blockpage_listen serves only {', '.join(sorted(hosts))}: blocked names "
            "answer the address each device reaches the box on, which may be another. Set dns.local_addresses "
            "to the block page's address, or listen on 0.0.0.0:80 and [::]:80"]


def default_profile_warnings(path: str, settings: object) -> list[str]:
    """``FILE:LINE: warning: ...`` when devices nobody named would get no adult filtering.

    Every device the household did not name (a rotated private MAC, a visitor, a new
    console) gets the default profile, so one that blocks no adult content fails open.
    A household with other problems gets no warning here (``guardian run`` reports those).
    """
    import yaml

    from .config import Settings
    from .policy.household import household_from_config
    from .policy.rulepacks import load_rules
    from .schema import Loader as _Loader

    assert isinstance(settings, Settings)
    try:
        rules = load_rules()
    except ConfigError:
        return []
    household, problems = household_from_config(
        settings.household, rules.template_profiles(), categories=rules.categories, services=rules.services
    )
    if problems:
        return []
    profile = household.default
    if "adult" in profile.categories:
        return []
    filters = bool(profile.categories or profile.services or profile.safe_search or profile.youtube != "off"
                   or profile.deny or profile.bypass_protection or profile.schedules or profile.budgets)
    line = settings.household_line or 1
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle, Loader=_Loader)
        for key, value in root.value if isinstance(root, yaml.MappingNode) else ():
            if key.value == "household" and isinstance(value, yaml.MappingNode):
                line = next((k.start_mark.line + 1 for k, _v in value.value if k.value == "default_profile"), line)
    what = "filters nothing" if not filters else "does not block adult content"
    name = "" if household.profiles else " (the config has no household profiles)"
    return [
        f"{path}:{line}: warning: devices nobody named get profile {profile.name!r}{name}, which {what}: "
        "a child's new device or a phone whose private MAC changed would not be protected. Use "
        "'default_profile: Guest' (adult content, phishing, malware and filter bypass blocked, safe search "
        "on) and name the family's own devices under household.devices"
    ]


DAEMON_REFRESH_SECONDS = 120  # per list: a download's own timeout (60 s) and its checks


def show_lists(path: str, refresh: bool = False) -> int:
    """The compiled lists (entries, invalid lines) and the subscriptions' download status."""
    import datetime

    from . import config
    from .app import household_of
    from .lists.service import subscriptions_for
    from .lists.subscriptions import format_status_table, statuses_for
    from .policy.matcher import Matcher, SnapshotError
    from .policy.rulepacks import load_rules

    settings = config.load(path)
    rules = load_rules()
    subs = subscriptions_for(settings, rules, household_of(settings, rules))
    root = settings.data_dir / "lists"
    downloads = root / "downloads"
    if refresh:
        from .control import SOCKET_NAME, DaemonNotRunning, request

        try:
            # A running daemon downloads them itself: as its own user (files it can
            # replace later), and it starts using the new lists before it answers.
            answer = request(settings.data_dir / SOCKET_NAME, {"action": "refresh-lists"},
                             timeout=DAEMON_REFRESH_SECONDS * max(len(subs), 1) + 60)
        except DaemonNotRunning:
            import asyncio

            asyncio.run(_refresh_lists(settings, subs, downloads))
        else:
            if not answer.get("ok"):
                print(f"guardian: {answer.get('error', 'the daemon refused')}", file=sys.stderr)
                return 1
            print(f"refreshed by the running daemon:\n{answer['message']}", file=sys.stderr)
    try:
        matcher = Matcher.load(root)
    except (OSError, SnapshotError):
        print(f"no compiled lists in {root} yet: they are compiled when the daemon starts")
    else:
        built = datetime.datetime.fromtimestamp((root / "CURRENT").stat().st_mtime).isoformat(" ", "seconds")
        print(f"compiled lists (snapshot of {built}):")
        print(f"  {'category':<22} {'kind':<6} {'entries':>8} {'invalid':>8}  name")
        for info in sorted(matcher.lists.values(), key=lambda i: (i.category, i.name)):
            print(f"  {info.category:<22} {info.kind:<6} {info.entries:>8} {info.invalid:>8}  {info.name}")
    if subs:
        print("\nsubscriptions:")
        print(format_status_table(statuses_for(subs, downloads)))
    return 0


async def _refresh_lists(settings: object, subs: Sequence[object], downloads: object) -> None:
    """Download every subscription now, through the configured upstreams, with progress."""
    from . import config
    from .lists.subscriptions import Subscription, progress_printer, upstream_downloader

    assert isinstance(settings, config.Settings)
    dns = settings.dns
    async with upstream_downloader(downloads, dns.plain_resolvers, ca_file=dns.tls_ca_file,  # type: ignore[arg-type]
                                   allow_private_hosts=settings.lists_allow_private_hosts) as downloader:
        for sub in subs:
            assert isinstance(sub, Subscription)
            status = await downloader.refresh(sub, progress=progress_printer(sub.name))
            print(f"\r{sub.name}: {status.outcome}" + (f" ({status.last_error})" if status.last_error else "")
                  + " " * 20, file=sys.stderr)


def set_log_level(name: str) -> None:
    """``log_level`` for Guardian; APScheduler's "running job" lines (two every 30 s, on an
    SD card's journal) only at debug."""
    level = getattr(logging, name.upper())
    logging.getLogger().setLevel(level)
    logging.getLogger("apscheduler").setLevel(level if level <= logging.DEBUG else logging.WARNING)


def run(path: str) -> int:
    from . import config

    settings = config.load(path)
    # Worker threads (discovery's capture, file and SQLite work) share the GIL with the DNS
    # loop: hand it back every 0.5 ms instead of 5 ms, so they never hold answers up long.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_log_level(settings.log_level)
    try:
        import uvloop
    except ImportError:
        import asyncio

        runner = asyncio.run
        log.info("uvloop is not installed: using the standard asyncio loop")
    else:
        runner = uvloop.run
    from . import heap

    give_back = heap.lean()  # before the loop and any thread start
    return runner(_serve(path, settings, give_back))


async def _serve(path: str, settings: object, give_back: Callable[[], None] | None = None) -> int:
    import asyncio

    from . import config
    from .app import Guardian

    assert isinstance(settings, config.Settings)
    daemon = Guardian(settings)
    await daemon.start()
    # Everything built so far (modules, rules, the household) lives as long as the
    # daemon: keep it out of the garbage collector's full passes, which would otherwise
    # walk it all and hold answers up for tens of milliseconds (Instagram's gc.freeze).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    trimming = None if give_back is None else loop.create_task(_give_back_memory(give_back))
    reloading: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            new = config.load(path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", "\n".join(exc.problems))
            return
        try:
            await daemon.reload(new)
        except GuardianError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        set_log_level(new.log_level)
        log.info("configuration reloaded from %s", path)

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    log.info("Guardian %s running (config %s, data in %s)", __version__, path, settings.data_dir)
    dashboard = await _start_dashboard(path) if settings.dashboard.enabled else None
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if dashboard is not None and dashboard.returncode is None:
            dashboard.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dashboard.wait(), 10)
        for task in reloading:
            task.cancel()
        if trimming is not None:
            trimming.cancel()
        with contextlib.suppress(Exception):
            await daemon.stop()
    return 0


async def _give_back_memory(give_back: Callable[[], None]) -> None:
    """Every ``heap.TRIM_SECONDS``, free pages of the C heap go back to the system."""
    import asyncio

    from .heap import TRIM_SECONDS

    while True:
        await asyncio.sleep(TRIM_SECONDS)
        give_back()


async def _start_dashboard(path: str) -> asyncio.subprocess.Process | None:
    """The dashboard as a child process (``guardian web``): page rendering never lands on
    the DNS loop. It starts without the ambient capabilities this process may hold (raw
    sockets, low ports) and without systemd's notify socket (the DNS unit's, not its own);
    a box's units run it as its own user instead (guardian-web.service)."""
    import asyncio
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}

    parent = os.getpid()

    def drop_ambient() -> None:
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
            # PR_SET_PDEATHSIG: a SIGKILLed guardian run (OOM killer) takes its dashboard with it,
            # so no orphan keeps the port; checked again in case the parent died before the call.
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:
            os._exit(1)

    try:
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "guardian", "web", "--config", path,
                                                     env=env, preexec_fn=drop_ambient)
    except OSError as exc:
        log.error("the dashboard did not start: %s", exc)
        return None
    log.info("dashboard started (pid %d)", child.pid)
    return child
