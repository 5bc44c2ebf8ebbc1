"""The parents' actions on the household, and where the household is kept.

Every action is one method call on ``HouseholdService`` (the CLI's control socket
calls it today, the dashboard will tomorrow): it builds a new policy snapshot, saves
it, swaps it in and invalidates the DNS server's packet cache, so it applies to the
next query with no restart.

State lives in ``data_dir/household.db`` (stdlib sqlite3, one small file of our own):
the household as parents changed it, and the overrides in force. At first start the
household is seeded from the config's ``household:`` section. While no parent has
changed it, a changed seed in the config replaces it (at start or SIGHUP); once a
parent has (an allow/block without ``--for``, or ``guardian import``), the stored
household wins and the config's section is only checked: a telco that ships a new
seed to such a box must use ``guardian import``. Overrides are reloaded at start,
the expired ones dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from ..errors import ConfigError, GuardianError
from ..policy.household import (
    Device,
    Household,
    Override,
    OverrideKind,
    Profile,
    household_from_config,
    household_to_dict,
    normalise_domain,
    override_from_dict,
    override_to_dict,
)
from ..policy.schedule import parse_clock, wall_to_epoch
from ..policy.snapshot import PolicyHolder, Snapshot, with_household, with_override, without_expired, without_override
from ..usage import UsageMeter, local_day

log = logging.getLogger(__name__)

HOUSEHOLD_DB = "household.db"
SEED = "seed"  # the stored household is the config's seed, untouched by parents
PARENT = "parent"  # a parent changed it: it wins over the config from now on
SCHEMA_VERSION = 1
FOREVER = math.inf  # an override "until resumed"
MAX_OVERRIDE_DAYS = 30
MAX_OVERRIDE_SECONDS = MAX_OVERRIDE_DAYS * 86_400  # the longest pause, bonus or timed allow/block


def too_long() -> str:
    return (f"longer than {MAX_OVERRIDE_DAYS} days, the longest a pause, bonus or temporary allow/block "
            "may last (a pause without --for lasts until resumed; allow/block without --for are for good)")


class UnknownName(GuardianError):
    """A device or profile name the household does not have."""


# --- the file ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """What household.db holds: the household (plain data), where it came from, the
    digest of the config seed it was last compared with, and the overrides."""

    household: dict[str, Any]
    origin: str
    seed: str
    overrides: tuple[Override, ...]


class HouseholdStore:
    """household.db: one row for the household (JSON), one per override.

    A save replaces everything in one transaction (a household is a few kilobytes and
    parents act a few times a day), so the file never holds half a change. SQLite's
    default rollback journal with synchronous=FULL: a power cut keeps the last save.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.problems: list[str] = []  # what load() found that the parents must be told (a damaged file)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.executescript(
                "BEGIN;"
                "CREATE TABLE IF NOT EXISTS household (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL,"
                " origin TEXT NOT NULL, seed TEXT NOT NULL, updated REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS overrides (kind TEXT NOT NULL, target TEXT NOT NULL,"
                " domain TEXT NOT NULL DEFAULT '', until REAL, created REAL NOT NULL);"
                f"PRAGMA user_version = {SCHEMA_VERSION};"
                "COMMIT;"
            )
        elif version > SCHEMA_VERSION:
            conn.close()
            raise GuardianError(f"{self.path} was written by a newer Guardian (schema {version})")
        return conn

    def load(self, repair: bool = True) -> Stored | None:
        """The stored state, or None before the first save. A damaged file is moved
        aside (``household.db.damaged-<time>``) and None returned, the seed taking over;
        with ``repair`` False it is left alone and GuardianError raised."""
        if not self.path.exists():
            return None
        with self._lock:
            try:
                conn = self._connect()
                try:
                    row = conn.execute("SELECT data, origin, seed FROM household WHERE id = 1").fetchone()
                    rows = conn.execute("SELECT kind, target, domain, until, created FROM overrides").fetchall()
                finally:
                    conn.close()
                if row is None:
                    return None
                data = json.loads(row[0])
            except (sqlite3.DatabaseError, ValueError) as exc:
                code = getattr(exc, "sqlite_errorcode", 11) & 0xFF
                if not repair or code not in (11, 26):  # only SQLITE_CORRUPT/NOTADB mean damaged, not locked or I/O
                    raise GuardianError(f"{self.path} is unreadable: {exc}") from exc
                aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
                try:
                    os.replace(self.path, aside)
                except OSError as move:  # a read-only card: it stays where it is
                    where = f"left in place (it cannot be moved: {move.strerror or move})"
                else:
                    where = f"kept as {aside.name}"
                log.error("%s is damaged and unreadable (%s): %s; the household is set up again from the "
                          "configuration", self.path, exc, where)
                self.problems.append(f"the household file {self.path.name} was damaged ({exc}) and is {where}: "
                                     "the household was set up again from the configuration, so the parents' "
                                     "changes since then are gone")
                return None
        overrides: list[Override] = []
        for kind, target, domain, until, created in rows:
            try:
                overrides.append(override_from_dict({"kind": kind, "target": target, "domain": domain,
                                                     "until": FOREVER if until is None else until,
                                                     "created": created}))
            except (KeyError, ValueError) as exc:
                log.warning("dropping a stored override %s/%s: %s", kind, target, exc)
        return Stored(data, str(row[1]), str(row[2]), tuple(overrides))

    def save(self, household: Household, overrides: Iterable[Override], origin: str, seed: str) -> None:
        """Replace the stored state with this one, atomically."""
        data = json.dumps(household_to_dict(household), ensure_ascii=False)
        rows = []
        for o in overrides:
            item = override_to_dict(o)
            rows.append((item["kind"], item["target"], item.get("domain", ""),
                         None if math.isinf(o.until) else o.until, o.created))
        with self._lock:
            try:
                conn = self._connect()
            except sqlite3.DatabaseError as exc:
                raise GuardianError(f"cannot save the household to {self.path}: {exc}") from exc
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO household (id, data, origin, seed, updated) VALUES (1, ?, ?, ?, ?)",
                             (data, origin, seed, time.time()))
                conn.execute("DELETE FROM overrides")
                conn.executemany("INSERT INTO overrides (kind, target, domain, until, created) VALUES (?, ?, ?, ?, ?)",
                                 rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise GuardianError(f"cannot save the household to {self.path}: {exc}") from exc
            finally:
                conn.close()


def seed_digest(section: Mapping[str, Any] | None) -> str:
    """A digest of the config's ``household:`` section, to notice that the seed changed."""
    text = json.dumps(section or {}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Loaded:
    """The household to start with, and its overrides still in force."""

    household: Household
    overrides: tuple[Override, ...]
    origin: str
    seed: str
    problems: tuple[str, ...] = ()  # for the parents, as system events: a damaged file set aside
    save_error: str = ""  # the disk refused the save (read-only or full): DNS runs on what was read


def load_household(
    store: HouseholdStore,
    seed: Household,
    digest: str,
    now: float,
    *,
    categories: Collection[str] | None = None,
    services: Collection[str] | None = None,
) -> Loaded:
    """The household at start: the stored one (a parent's changes win), or the seed
    (first start, or the seed changed while no parent had touched it). Saves the result."""
    stored = store.load()
    origin, household = SEED, seed
    overrides: tuple[Override, ...] = ()
    if stored is not None:
        overrides = tuple(o for o in stored.overrides if o.until > now)
        if stored.origin == PARENT or stored.seed == digest:
            household, problems = household_from_config(stored.household, None, categories=categories,
                                                        services=services)
            for problem in problems:  # e.g. a rule pack dropped a category since
                log.warning("%s: stored household: %s", store.path, problem)
            origin = stored.origin
            if stored.origin == PARENT and stored.seed != digest:
                log.warning("the config's household: section changed, but parents have changed the household "
                            "since: the stored one is kept (use 'guardian import' to replace it)")
        else:
            log.info("the config's household: section changed and no parent changed the household: seeding it again")
        overrides = tuple(filter(_valid_in(household), overrides))
    save_error = ""
    try:
        store.save(household, overrides, origin, digest)
    except GuardianError as exc:
        # A card remounted read-only (or full) must not leave the house without DNS: run on
        # what could be read, and say so once.
        save_error = (f"{exc}: the data directory is read-only or full; DNS answers with the household read at "
                      "start, and parents' changes cannot be saved until the disk takes writes again")
        log.error("%s", save_error)
    return Loaded(household, overrides, origin, digest, tuple(store.problems), save_error)


def _valid_in(household: Household) -> Callable[[Override], bool]:
    """Whether an override's device or profile exists in ``household``."""
    devices = {d.name for d in household.devices}

    def valid(o: Override) -> bool:
        return (o.target in devices) if o.kind == "pause-device" else (o.target in household.by_name)

    return valid


# --- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """What a parent's action did, in words (for the CLI and dashboard) and as data."""

    message: str
    override: Override | None = None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Today's estimated minutes of ``target`` for ``profile``; ``budget`` None: no budget."""

    profile: str
    target: str
    minutes: int
    budget: int | None

    @property
    def left(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.minutes)


class HouseholdService:
    """Parents' actions: each builds a new snapshot, saves it, swaps it in, then calls
    ``on_change`` (the DNS server's ``invalidate``). Safe to call from any thread."""

    def __init__(
        self,
        holder: PolicyHolder,
        store: HouseholdStore,
        meter: UsageMeter,
        *,
        zone: ZoneInfo,
        clock: Callable[[], float] = time.time,
        origin: str = SEED,
        seed: str = "",
        templates: Mapping[str, Mapping[str, Any]] | None = None,
        categories: Collection[str] | None = None,
        services: Collection[str] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.holder = holder
        self.store = store
        self.meter = meter
        self.zone = zone
        self.clock = clock
        self.origin = origin
        self.seed = seed
        self.templates = templates
        self.categories = categories
        self.services = services
        self.on_change = on_change
        self._lock = threading.RLock()

    @property
    def household(self) -> Household:
        return self.holder.current.household

    # -- names ---------------------------------------------------------------------

    def _known(self) -> str:
        h = self.household
        devices = ", ".join(repr(d.name) for d in h.devices) or "none"
        profiles = ", ".join(repr(p.name) for p in h.profiles) or "none"
        return f"devices: {devices}; profiles: {profiles}"

    def _target(self, name: str) -> tuple[str, Device | Profile]:
        """("device" | "profile", it) for a name; exact first, then ignoring case."""
        h = self.household
        device = h.device(name)
        if device is not None:
            return "device", device
        if name in h.by_name:
            return "profile", h.by_name[name]
        folded = name.casefold()
        found: list[tuple[str, Device | Profile]] = [("device", d) for d in h.devices if d.name.casefold() == folded]
        found += [("profile", p) for p in h.profiles if p.name.casefold() == folded]
        if len(found) == 1:
            return found[0]
        raise UnknownName(f"no device or profile is called {name!r} ({self._known()})")

    def profile(self, name: str) -> Profile:
        """The profile called ``name`` (exact, else ignoring case), or UnknownName."""
        h = self.household
        found = h.by_name.get(name)
        if found is None:
            matches = [p for p in h.profiles if p.name.casefold() == name.casefold()]
            if len(matches) != 1:
                known = ", ".join(repr(p.name) for p in h.profiles) or "none"
                raise UnknownName(f"no profile is called {name!r} (profiles: {known})")
            found = matches[0]
        return found

    # -- committing -------------------------------------------------------------------

    def _commit(self, change: Callable[[Snapshot], Snapshot], origin: str | None = None) -> Snapshot:
        """Build the new snapshot, save it, then make it live (a failed save changes nothing)."""
        with self._lock:
            now = self.clock()
            new_origin = origin or self.origin

            def saved(snap: Snapshot) -> Snapshot:
                new = change(snap)
                if new is not snap:
                    self.store.save(new.household, [o for o in new.overrides if o.until > now], new_origin, self.seed)
                return new

            new = self.holder.update(saved)
            self.origin = new_origin
        if self.on_change is not None:
            self.on_change()
        return new

    def _override(self, kind: OverrideKind, target: str, until: float, domain: str = "") -> Override:
        now = self.clock()
        if until <= now:
            raise GuardianError(f"that time has already passed ({self.when(until)})")
        if not math.isinf(until) and until - now > MAX_OVERRIDE_SECONDS:
            raise GuardianError(f"{until - now:g} s is {too_long()}")  # before saving anything
        override = Override(kind, target, until, now, domain)
        self._commit(lambda snap: with_override(snap, override))
        return override

    # -- actions ---------------------------------------------------------------------

    def pause(self, target: str, until: float = FOREVER) -> Change:
        """Block everything for a device or a profile until ``until`` (epoch s; inf: resume)."""
        what, it = self._target(target)
        kind: OverrideKind = "pause-device" if what == "device" else "pause-profile"
        override = self._override(kind, it.name, until)
        return Change(f"Paused {it.name} {self.when(until)}", override)

    def resume(self, target: str) -> Change:
        """End the pause of a device or profile (a no-op, said so, if it was not paused)."""
        what, it = self._target(target)
        kind = "pause-device" if what == "device" else "pause-profile"
        now = self.clock()
        before = [o for o in self.holder.current.overrides if o.kind == kind and o.target == it.name and o.until > now]
        self._commit(lambda snap: without_override(snap, kind, it.name))
        message = f"Resumed {it.name}" if before else f"{it.name} was not paused"
        if isinstance(it, Device):
            until = self.holder.current.paused_profiles.get(it.profile, 0.0)
            if until > now:
                message += f" (its profile {it.profile} is still paused {self.when(until)})"
        return Change(message)

    def bonus(self, profile: str, until: float) -> Change:
        """Lift the profile's schedules and budgets until ``until`` (epoch s)."""
        p = self.profile(profile)
        override = self._override("bonus", p.name, until)
        return Change(f"Bonus time for {p.name} {self.when(until)}: schedules and budgets lifted", override)

    def end_bonus(self, profile: str) -> Change:
        """End the profile's bonus time now (a no-op, said so, if it had none)."""
        p = self.profile(profile)
        now = self.clock()
        before = [o for o in self.holder.current.overrides if o.kind == "bonus" and o.target == p.name and o.until > now]
        self._commit(lambda snap: without_override(snap, "bonus", p.name))
        return Change(f"Bonus time for {p.name} ended" if before else f"{p.name} had no bonus time")

    def end_domain(self, domain: str, profile: str, allow: bool) -> Change:
        """End a temporary allow (``allow``) or block of ``domain`` for ``profile`` now;
        the profile's own allow and deny lists stay as they are."""
        p = self.profile(profile)
        name = check_domain(domain)
        kind: OverrideKind = "allow-domain" if allow else "block-domain"
        word = "allow" if allow else "block"
        now = self.clock()
        before = [o for o in self.holder.current.overrides
                  if o.kind == kind and o.target == p.name and o.domain == name and o.until > now]
        self._commit(lambda snap: without_override(snap, kind, p.name, name))
        return Change(f"Ended the temporary {word} of {name} for {p.name}" if before
                      else f"{p.name} had no temporary {word} of {name}")

    def allow(self, domain: str, profile: str, until: float | None = None) -> Change:
        """Allow ``domain`` (and its subdomains) for ``profile``: until ``until``, or for
        good (None: added to the profile's allow list, taken off its deny list)."""
        return self._domain(domain, profile, until, allow=True)

    def block(self, domain: str, profile: str, until: float | None = None) -> Change:
        """Block ``domain`` (and its subdomains) for ``profile``: until ``until``, or for
        good (None: added to the profile's deny list, taken off its allow list)."""
        return self._domain(domain, profile, until, allow=False)

    def _domain(self, domain: str, profile: str, until: float | None, *, allow: bool) -> Change:
        p = self.profile(profile)
        name = check_domain(domain)
        verb = "Allowed" if allow else "Blocked"
        if until is not None:
            kind: OverrideKind = "allow-domain" if allow else "block-domain"
            override = self._override(kind, p.name, until, name)
            return Change(f"{verb} {name} for {p.name} {self.when(until)}", override)

        def change(snap: Snapshot) -> Snapshot:
            current = snap.household.by_name.get(p.name)
            if current is None:
                raise UnknownName(f"no profile is called {p.name!r}")
            keep, drop = (current.allow, current.deny) if allow else (current.deny, current.allow)
            keep = keep if name in keep else (*keep, name)
            drop = tuple(d for d in drop if d != name)
            changed = (dataclasses.replace(current, allow=keep, deny=drop) if allow
                       else dataclasses.replace(current, deny=keep, allow=drop))
            household = dataclasses.replace(
                snap.household, profiles=tuple(changed if q.name == p.name else q for q in snap.household.profiles))
            # A standing word replaces a temporary one about the same domain.
            return _keep_overrides(with_household(snap, household),
                                   lambda o: not (o.target == p.name and o.domain == name))

        self._commit(change, origin=PARENT)
        return Change(f"{verb} {name} for {p.name} (until changed)")

    def usage(self, profile: str | None = None) -> list[UsageLine]:
        """Today's estimated minutes against each budget (and any other counted target)."""
        h = self.household
        profiles = [self.profile(profile)] if profile is not None else list(h.profiles)
        day = local_day(self.clock(), self.zone)
        totals = self.meter.day_totals(day)
        lines: list[UsageLine] = []
        for p in profiles:
            budgets = {b.target: b.minutes for b in p.budgets}
            for target, minutes in budgets.items():
                lines.append(UsageLine(p.name, target, totals.get((p.name, target), 0), minutes))
            for (name, target), minutes in sorted(totals.items()):
                if name == p.name and target not in budgets:
                    lines.append(UsageLine(p.name, target, minutes, None))
        return lines

    def export(self) -> str:
        """The household as YAML (a ``household:`` document ``import_`` reads back equal)."""
        return export_yaml(self.household)

    def import_(self, text: str, filename: str = "<import>") -> Change:
        """Replace the household with the ``household:`` section of a YAML document,
        checked as the config is (problems as FILE:LINE). Overrides of devices or
        profiles that no longer exist are dropped."""
        household = parse_household(text, filename, self.templates, self.categories, self.services)

        def change(snap: Snapshot) -> Snapshot:
            return _keep_overrides(with_household(snap, household), _valid_in(household))

        self._commit(change, origin=PARENT)
        return Change(f"Imported the household: {_count(len(household.profiles), 'profile')}, "
                      f"{_count(len(household.devices), 'device')}")

    def expire(self) -> int:
        """Drop the overrides that have ended (they no longer act anyway); how many."""
        now = self.clock()
        before = len(self.holder.current.overrides)
        new = self._commit(lambda snap: without_expired(snap, now)) if any(
            o.until <= now for o in self.holder.current.overrides) else self.holder.current
        return before - len(new.overrides)

    def reseed(self, seed: Household, digest: str) -> bool:
        """The config was reloaded: take its household if no parent changed ours and the
        seed changed. True when the household was replaced."""
        with self._lock:
            if digest == self.seed:
                return False
            if self.origin == PARENT:
                log.warning("the config's household: section changed, but parents have changed the household "
                            "since: the stored one is kept (use 'guardian import' to replace it)")
                return False
            self.seed = digest
            self._commit(lambda snap: _keep_overrides(with_household(snap, seed), _valid_in(seed)), origin=SEED)
            return True

    # -- time in words -------------------------------------------------------------------

    def when(self, until: float) -> str:
        """'until 21:00', 'until tomorrow 07:00', 'until Mon 3 Jun 21:00', 'until resumed'."""
        return until_words(until, self.clock(), self.zone)


def _keep_overrides(snap: Snapshot, keep: Callable[[Override], bool]) -> Snapshot:
    """``snap`` without the overrides ``keep`` refuses (itself when it keeps them all)."""
    for o in [o for o in snap.overrides if not keep(o)]:
        snap = without_override(snap, o.kind, o.target, o.domain)
    return snap


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def until_words(until: float, now: float, zone: ZoneInfo) -> str:
    if math.isinf(until):
        return "until resumed"
    then = datetime.fromtimestamp(until, zone)
    today = datetime.fromtimestamp(now, zone).date()
    clock = then.strftime("%H:%M")
    if then.date() == today:
        return f"until {clock}"
    if then.date() == today + timedelta(days=1):
        return f"until tomorrow {clock}"
    return f"until {then.strftime('%a')} {then.day} {then.strftime('%b')} {clock}"


def check_domain(text: str) -> str:
    """``text`` as a normalised domain name, or GuardianError."""
    try:
        name = normalise_domain(text)
    except ValueError as exc:
        raise GuardianError(str(exc)) from None
    if "." not in name:
        raise GuardianError(f"{text!r} is not a domain name (e.g. example.com)")
    return name


def export_yaml(household: Household) -> str:
    body = yaml.safe_dump({"household": household_to_dict(household)}, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)
    return "# Guardian household: 'guardian import FILE' reads this back.\n" + body


def parse_household(
    text: str,
    filename: str,
    templates: Mapping[str, Mapping[str, Any]] | None,
    categories: Collection[str] | None,
    services: Collection[str] | None,
) -> Household:
    """The ``household:`` section of a YAML document, with the config's checks."""
    from .. import config

    settings = config.parse(text, filename)  # ConfigError with FILE:LINE
    if settings.household is None:
        raise ConfigError([f"{filename}:1: no household: section to import"])
    household, problems = household_from_config(settings.household, templates, categories=categories,
                                                services=services)
    if problems:
        raise ConfigError([f"{filename}:{settings.household_line}: {problem}" for problem in problems])
    return household


def next_clock(text: str, now: float, zone: ZoneInfo) -> float:
    """Epoch seconds of the next "HH:MM" in ``zone`` after ``now`` (today or tomorrow)."""
    try:
        minutes = parse_clock(text)
    except ValueError as exc:
        raise GuardianError(str(exc)) from None
    today = datetime.fromtimestamp(now, zone).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        at = wall_to_epoch(day, minutes, zone)
        if at > now:
            return at
    raise GuardianError(f"no {text} after now")  # not reached: a day has every wall time
