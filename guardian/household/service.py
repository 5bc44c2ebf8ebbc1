"""The parents' actions on the household, and where the household is kept.

Every action is one method call on ``HouseholdService`` (the CLI's control socket
calls it today, the dashboard will tomorrow): it builds a new policy snapshot, saves
it, swaps it in and invalidates the DNS server's packet cache, so it applies to the
next query with no restart.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import GuardianError
from ..policy.household import Device, Household, Override, OverrideKind, Profile
from ..policy.snapshot import PolicyHolder, Snapshot, with_household, with_override, without_expired, without_override
from ..usage import UsageMeter, local_day
from .storage import FOREVER, PARENT, SEED, HouseholdStore, valid_in
from .transfer import export_yaml, parse_household
from .words import MAX_OVERRIDE_SECONDS, check_domain, count, too_long, until_words

log = logging.getLogger(__name__)


class UnknownName(GuardianError):
    """A device or profile name the household does not have."""



# --- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """What a parent's action did, as data (``kind``, ``target``, ``domain``, ``until``)
    and in English words (``message``, for the CLI; a translated UI uses the data)."""

    message: str
    override: Override | None = None
    kind: str = ""  # paused, resumed, not-paused, bonus, bonus-ended, no-bonus, allowed, blocked, ...
    target: str = ""  # the device or profile it is about
    domain: str = ""
    until: float | None = None  # epoch seconds; None: until resumed, for good, or not timed
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The answer's fields (JSON: no infinity, so "until resumed" is None)."""
        until = None if self.until is None or math.isinf(self.until) else self.until
        return {"message": self.message, "kind": self.kind, "target": self.target, "domain": self.domain,
                "until": until, **self.details}


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
        return Change(f"Paused {it.name} {self.when(until)}", override, "paused", it.name, until=until,
                      details={"what": what})

    def resume(self, target: str) -> Change:
        """End the pause of a device or profile (a no-op, said so, if it was not paused)."""
        what, it = self._target(target)
        kind = "pause-device" if what == "device" else "pause-profile"
        now = self.clock()
        before = [o for o in self.holder.current.overrides if o.kind == kind and o.target == it.name and o.until > now]
        self._commit(lambda snap: without_override(snap, kind, it.name))
        message = f"Resumed {it.name}" if before else f"{it.name} was not paused"
        details: dict[str, Any] = {"what": what}
        if isinstance(it, Device):
            until = self.holder.current.paused_profiles.get(it.profile, 0.0)
            if until > now:
                message += f" (its profile {it.profile} is still paused {self.when(until)})"
                details.update(profile=it.profile, profile_until=None if math.isinf(until) else until)
        return Change(message, None, "resumed" if before else "not-paused", it.name, details=details)

    def bonus(self, profile: str, until: float) -> Change:
        """Lift the profile's schedules and budgets until ``until`` (epoch s)."""
        p = self.profile(profile)
        override = self._override("bonus", p.name, until)
        return Change(f"Bonus time for {p.name} {self.when(until)}: schedules and budgets lifted", override,
                      "bonus", p.name, until=until)

    def end_bonus(self, profile: str) -> Change:
        """End the profile's bonus time now (a no-op, said so, if it had none)."""
        p = self.profile(profile)
        now = self.clock()
        before = [o for o in self.holder.current.overrides if o.kind == "bonus" and o.target == p.name and o.until > now]
        self._commit(lambda snap: without_override(snap, "bonus", p.name))
        return Change(f"Bonus time for {p.name} ended" if before else f"{p.name} had no bonus time", None,
                      "bonus-ended" if before else "no-bonus", p.name)

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
                      else f"{p.name} had no temporary {word} of {name}", None,
                      f"{word}-ended" if before else f"no-{word}", p.name, name)

    def end_allow(self, domain: str, profile: str) -> Change:
        """End a temporary allow of ``domain`` for ``profile`` now."""
        return self.end_domain(domain, profile, True)

    def end_block(self, domain: str, profile: str) -> Change:
        """End a temporary block of ``domain`` for ``profile`` now."""
        return self.end_domain(domain, profile, False)

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
            return Change(f"{verb} {name} for {p.name} {self.when(until)}", override, verb.lower(), p.name, name,
                          until)

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
            return keep_overrides(with_household(snap, household),
                                   lambda o: not (o.target == p.name and o.domain == name))

        self._commit(change, origin=PARENT)
        return Change(f"{verb} {name} for {p.name} (until changed)", None, verb.lower(), p.name, name)

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
            return keep_overrides(with_household(snap, household), valid_in(household))

        self._commit(change, origin=PARENT)
        return Change(f"Imported the household: {count(len(household.profiles), 'profile')}, "
                      f"{count(len(household.devices), 'device')}", None, "imported",
                      details={"profiles": len(household.profiles), "devices": len(household.devices)})

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
            self._commit(lambda snap: keep_overrides(with_household(snap, seed), valid_in(seed)), origin=SEED)
            return True

    # -- time in words -------------------------------------------------------------------

    def when(self, until: float) -> str:
        """'until 21:00', 'until tomorrow 07:00', 'until Mon 3 Jun 21:00', 'until resumed'."""
        return until_words(until, self.clock(), self.zone)


def keep_overrides(snap: Snapshot, keep: Callable[[Override], bool]) -> Snapshot:
    """``snap`` without the overrides ``keep`` refuses (itself when it keeps them all)."""
    for o in [o for o in snap.overrides if not keep(o)]:
        snap = without_override(snap, o.kind, o.target, o.domain)
    return snap


