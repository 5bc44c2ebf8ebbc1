"""The immutable policy snapshot ``decide`` reads, and the holder that swaps it.

A snapshot is the household, the compiled matcher, the safe-search tables, the
overrides in force and, per profile, everything a query needs precomputed: the
matcher list ids its categories and services stand for, its allow/deny/schedule-allow
domains in one dict, its schedules and budgets with their list ids. A change (parent
action, config reload, list refresh) builds a new snapshot and the holder swaps one
reference, so the next query sees it and no query sees half of it.

Two things change with time without a new snapshot, and are asked at query time:
schedules (``now`` is a parameter; the per-profile state is memoised until its next
boundary) and budgets (a ``BudgetView`` over the live usage meter).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ..names import normalise_domain
from ..usage import UsageMeter
from .household import Device, Household, Override, Profile
from .lists import ParseResult, Rule, RuleType
from .matcher import ListInfo, ListSource, Matcher
from .safesearch import NO_SAFE_SEARCH, EngineLike, SafeSearch
from .schedule import Schedule

# Bits of a profile's custom-domain dict (CompiledProfile.custom).
ALLOW = 1  # the profile's allow list
DENY = 2  # the profile's deny list
SCHEDULE_ALLOW_SHIFT = 2  # bit (2 + i): allowed during the profile's schedule i

SERVICE_PREFIX = "service:"  # a matcher list whose category is "service:<id>" is a service's


class CategoryLike(Protocol):
    """What the snapshot needs of a rule pack category."""

    @property
    def id(self) -> str: ...
    @property
    def threats(self) -> tuple[str, ...] | list[str]: ...
    @property
    def severity(self) -> str: ...


class ServiceLike(Protocol):
    """What the snapshot needs of a named service."""

    @property
    def id(self) -> str: ...
    @property
    def category(self) -> str: ...


class NamedService(ServiceLike, Protocol):
    """A service with its domains (guardian.policy.rulepacks.Service)."""

    @property
    def name(self) -> str: ...
    @property
    def domains(self) -> tuple[str, ...]: ...


class RulesLike(Protocol):
    """What the snapshot needs of the rule packs (guardian.policy.rulepacks.Rules)."""

    @property
    def categories(self) -> Mapping[str, CategoryLike]: ...
    @property
    def services(self) -> Mapping[str, NamedService]: ...
    @property
    def safesearch(self) -> tuple[EngineLike, ...]: ...


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    id: str
    threats: tuple[str, ...] = ()
    severity: str = "medium"


class BudgetView(Protocol):
    """Tells whether a profile has used up a daily budget."""

    def exceeded(self, profile: str, target: str, minutes: int, now: float) -> bool:
        """True when ``profile`` has used ``minutes`` or more of ``target`` on the local
        day of ``now`` (epoch seconds)."""
        ...


class NoUsage:
    """A budget view with nothing used: budgets never block (and tests can subclass)."""

    def exceeded(self, profile: str, target: str, minutes: int, now: float) -> bool:
        return minutes <= 0


class MeterBudgets:
    """Budgets against the live ``UsageMeter`` (shared by every snapshot)."""

    def __init__(self, meter: UsageMeter, zone: ZoneInfo) -> None:
        self.meter = meter
        self.zone = zone

    def exceeded(self, profile: str, target: str, minutes: int, now: float) -> bool:
        if minutes <= 0:
            return True
        # slot() memoises the local day per quarter hour: no datetime work per query.
        day = self.meter.slot(int(now // 60), self.zone)[0]
        return self.meter.minutes(profile, target, day) >= minutes


@dataclass(frozen=True, slots=True)
class ListMeta:
    """What a decision names when a matcher list decides."""

    list_name: str
    category: str
    service: str
    threat: str
    severity: str


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    schedule: Schedule
    index: int  # position in the profile's schedules (its bit in ``custom``)
    ids: frozenset[int]  # matcher lists blocked (empty for block: all)


@dataclass(frozen=True, slots=True)
class CompiledBudget:
    target: str
    minutes: int
    ids: frozenset[int]


@dataclass(slots=True)
class CompiledProfile:
    """A profile with everything ``decide`` needs precomputed.

    ``memo`` holds (valid_from, valid_until, active schedules) and is only ever
    replaced whole: a cache of a pure function of ``now``, safe across threads.
    """

    profile: Profile
    enabled: frozenset[int]  # matcher lists of its categories and services (+ bypass)
    bypass_ids: frozenset[int]  # bypass lists, when bypass protection is on
    custom: dict[str, int]  # domain -> ALLOW | DENY | schedule-allow bits
    schedules: tuple[CompiledSchedule, ...]
    budgets: tuple[CompiledBudget, ...]
    safe: bool  # safe search or YouTube restriction on
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # see decide._new
    memo: tuple[float, float, tuple[CompiledSchedule, ...]] = (0.0, -1.0, ())

    def active_schedules(self, now: float, zone: ZoneInfo) -> tuple[tuple[CompiledSchedule, ...], float]:
        """The schedules on at ``now`` and the epoch of the next boundary (inf: none)."""
        start, until, active = self.memo
        if start <= now < until:
            return active, until
        on: list[CompiledSchedule] = []
        upcoming = math.inf
        for compiled in self.schedules:
            is_on, change = compiled.schedule.state(now, zone)
            if is_on:
                on.append(compiled)
            if change is not None and change < upcoming:
                upcoming = change
        self.memo = (now, upcoming, tuple(on))
        return self.memo[2], upcoming


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a decision reads; never mutated (see the module docstring)."""

    household: Household
    matcher: Matcher
    zone: ZoneInfo
    safesearch: SafeSearch
    overrides: tuple[Override, ...]
    budgets: BudgetView
    profiles: dict[str, CompiledProfile]
    lists: dict[int, ListMeta]
    category_ids: dict[str, frozenset[int]]  # category or service id -> its matcher lists
    paused_devices: dict[str, float]  # device name -> until
    paused_profiles: dict[str, float]  # profile name -> until
    bonus: dict[str, float]  # profile name -> until
    domain_overrides: dict[str, dict[str, tuple[bool, float]]]  # profile -> domain -> (allow, until)
    # What the snapshot was built from, so with_override & co can rebuild it.
    categories: Mapping[str, CategoryLike] | None = field(default=None, repr=False, compare=False)
    services: Mapping[str, ServiceLike] | None = field(default=None, repr=False, compare=False)
    # Matcher lists of categories that carry a threat (and the allowlists beside them):
    # every block names the threat of a name on one, whatever decided the block.
    threat_ids: frozenset[int] = frozenset()

    def compiled(self, profile: Profile) -> CompiledProfile:
        """The precomputed form of ``profile`` (compiled now if not from this snapshot)."""
        found = self.profiles.get(profile.name)
        if found is not None and found.profile is profile:
            return found
        if found is not None and found.profile == profile:
            return found
        return _compile_profile(profile, self.category_ids, self.lists)

    def resolve(self, ip: str, mac: str | None = None, hostname: str | None = None) -> tuple[Device | None, Profile]:
        """The device asking and the profile that applies (the default for unknown ones)."""
        device = self.household.identify(ip, mac, hostname)
        return device, self.household.profile_of(device)

    def next_expiry(self, now: float) -> float | None:
        """The earliest ``until`` after ``now`` among the overrides (for a timer), or None."""
        ends = [o.until for o in self.overrides if o.until > now]
        return min(ends) if ends else None


def _first(values: Iterable[str]) -> str:
    for value in values:
        return value
    return ""


def _index_lists(
    lists: Mapping[int, ListInfo],
    categories: Mapping[str, CategoryLike] | None,
    services: Mapping[str, ServiceLike] | None,
    service_lists: Mapping[str, Collection[int]] | None,
) -> tuple[dict[int, ListMeta], dict[str, frozenset[int]], frozenset[int]]:
    """Per list what it stands for; per category/service id its lists; global allow lists.

    A list belongs to a service when its category is a service id or ``service:<id>``
    (or ``service_lists`` names it); a category id also stands for its services' lists,
    so blocking "social" blocks TikTok's own list too.
    """
    services = services or {}
    by_list_service: dict[int, str] = {}
    for sid, ids in (service_lists or {}).items():
        for list_id in ids:
            by_list_service[list_id] = sid
    meta: dict[int, ListMeta] = {}
    groups: dict[str, set[int]] = {}
    global_allow: set[int] = set()
    for list_id, info in lists.items():
        service = by_list_service.get(list_id, "")
        category = info.category
        if not service:
            if category.startswith(SERVICE_PREFIX):
                service = category[len(SERVICE_PREFIX) :]
            elif category in services and (categories is None or category not in categories):
                service = category
        if service:
            svc = services.get(service)
            category = svc.category if svc is not None else ""
            groups.setdefault(service, set()).add(list_id)
        if category:
            groups.setdefault(category, set()).add(list_id)
        cat = categories.get(category) if categories is not None else None
        meta[list_id] = ListMeta(
            list_name=info.name,
            category=category,
            service=service,
            threat=_first(cat.threats) if cat is not None else "",
            severity=cat.severity if cat is not None else "",
        )
        if info.kind == "allow" and not service and categories is not None and category not in categories:
            global_allow.add(list_id)  # an allowlist of no category applies to everyone
    frozen = {key: frozenset(ids | global_allow) for key, ids in groups.items()}
    return meta, frozen, frozenset(global_allow)


def _ids(targets: Iterable[str], category_ids: Mapping[str, frozenset[int]]) -> frozenset[int]:
    out: set[int] = set()
    for target in targets:
        out |= category_ids.get(target, frozenset())
    return frozenset(out)


UNSAFE_SEARCH = "unsafe-search"  # the category a profile's safe_search turns on with it


def _compile_profile(
    profile: Profile, category_ids: Mapping[str, frozenset[int]], lists: Mapping[int, ListMeta]
) -> CompiledProfile:
    enabled = set(_ids((*profile.categories, *profile.services), category_ids))
    if profile.safe_search:
        # Safe search on means no unfiltered results: the engines that cannot be forced go.
        enabled |= category_ids.get(UNSAFE_SEARCH, frozenset())
    bypass_ids: frozenset[int] = frozenset()
    if profile.bypass_protection:
        bypass_ids = category_ids.get("bypass", frozenset())
        enabled |= bypass_ids
        # Only the deny lists are "bypass" ones; its allowlists just join the enabled set.
        bypass_ids = frozenset(i for i in bypass_ids if lists.get(i, NO_META).category == "bypass")
    custom: dict[str, int] = {}
    for domain in profile.allow:
        custom[domain] = custom.get(domain, 0) | ALLOW
    for domain in profile.deny:
        custom[domain] = custom.get(domain, 0) | DENY
    schedules = []
    for index, sched in enumerate(profile.schedules):
        for domain in sched.allow:
            custom[domain] = custom.get(domain, 0) | 1 << (SCHEDULE_ALLOW_SHIFT + index)
        ids: frozenset[int] = frozenset() if sched.block == "all" else _ids(sched.block, category_ids)
        schedules.append(CompiledSchedule(sched, index, ids))
    budgets = tuple(CompiledBudget(b.target, b.minutes, _ids((b.target,), category_ids)) for b in profile.budgets)
    return CompiledProfile(
        profile=profile,
        enabled=frozenset(enabled),
        bypass_ids=bypass_ids,
        custom=custom,
        schedules=tuple(schedules),
        budgets=budgets,
        safe=profile.safe_search or profile.youtube != "off",
    )


NO_META = ListMeta("", "", "", "", "")


def _index_overrides(
    overrides: Iterable[Override],
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, dict[str, tuple[bool, float]]]]:
    devices: dict[str, float] = {}
    profiles: dict[str, float] = {}
    bonus: dict[str, float] = {}
    domains: dict[str, dict[str, tuple[bool, float]]] = {}
    # Oldest first, so a newer override for the same thing replaces an older one.
    for o in sorted(overrides, key=lambda o: o.created):
        if o.kind == "pause-device":
            devices[o.target] = o.until
        elif o.kind == "pause-profile":
            profiles[o.target] = o.until
        elif o.kind == "bonus":
            bonus[o.target] = o.until
        else:
            domains.setdefault(o.target, {})[o.domain] = (o.kind == "allow-domain", o.until)
    return devices, profiles, bonus, domains


def build_snapshot(
    household: Household,
    matcher: Matcher | None = None,
    *,
    zone: ZoneInfo,
    safesearch: SafeSearch = NO_SAFE_SEARCH,
    overrides: Iterable[Override] = (),
    budgets: BudgetView | None = None,
    categories: Mapping[str, CategoryLike] | None = None,
    services: Mapping[str, ServiceLike] | None = None,
    service_lists: Mapping[str, Collection[int]] | None = None,
) -> Snapshot:
    """Precompute a snapshot (milliseconds for a household; call on every change).

    ``categories``/``services`` come from the rule packs (threat, severity, a
    service's category); without them lists are grouped by their category name only.
    """
    matcher = matcher if matcher is not None else Matcher.empty()
    meta, category_ids, _ = _index_lists(matcher.lists, categories, services, service_lists)
    kept = tuple(overrides)
    devices, paused, bonus, domains = _index_overrides(kept)
    return Snapshot(
        household=household,
        matcher=matcher,
        zone=zone,
        safesearch=safesearch,
        overrides=kept,
        budgets=budgets if budgets is not None else NoUsage(),
        profiles={p.name: _compile_profile(p, category_ids, meta) for p in (*household.profiles, household.default)},
        lists=meta,
        category_ids=category_ids,
        paused_devices=devices,
        paused_profiles=paused,
        bonus=bonus,
        domain_overrides=domains,
        categories=categories,
        services=services,
        threat_ids=_threat_ids(meta, category_ids),
    )


def _threat_ids(meta: Mapping[int, ListMeta], category_ids: Mapping[str, frozenset[int]]) -> frozenset[int]:
    """The lists of every category with a threat, its allowlists included (an allow
    rule there still says the name is harmless)."""
    out: set[int] = set()
    for category in {m.category for m in meta.values() if m.threat}:
        out |= category_ids.get(category, frozenset())
    return frozenset(out | {i for i, m in meta.items() if m.threat})


def service_sources(services: Iterable[NamedService], first_id: int) -> list[ListSource]:
    """One matcher list per named service (ids from ``first_id``, category
    ``service:<id>``), to compile beside the category lists so a profile can block,
    schedule or budget one service."""
    sources = []
    for offset, service in enumerate(sorted(services, key=lambda s: s.id)):
        rules = ParseResult()
        for domain in service.domains:
            rules.add(Rule(RuleType.DOMAIN, normalise_domain(domain), False))
        sources.append(
            ListSource(first_id + offset, f"{service.name} (service)", SERVICE_PREFIX + service.id, "deny", rules)
        )
    return sources


def build_from_rules(
    household: Household,
    matcher: Matcher | None,
    rules: RulesLike,
    *,
    zone: ZoneInfo,
    overrides: Iterable[Override] = (),
    budgets: BudgetView | None = None,
) -> Snapshot:
    """``build_snapshot`` with the rule packs' categories, services and safe search."""
    return build_snapshot(
        household,
        matcher,
        zone=zone,
        safesearch=SafeSearch.from_engines(rules.safesearch),
        overrides=overrides,
        budgets=budgets,
        categories=rules.categories,
        services=rules.services,
    )


def _rebuild(
    snap: Snapshot,
    *,
    household: Household | None = None,
    matcher: Matcher | None = None,
    overrides: Iterable[Override] | None = None,
    safesearch: SafeSearch | None = None,
    budgets: BudgetView | None = None,
) -> Snapshot:
    if household is None and matcher is None and overrides is not None:
        # Only overrides changed: keep the compiled profiles (and their memos).
        kept = tuple(overrides)
        devices, paused, bonus, domains = _index_overrides(kept)
        return Snapshot(
            household=snap.household,
            matcher=snap.matcher,
            zone=snap.zone,
            safesearch=safesearch or snap.safesearch,
            overrides=kept,
            budgets=budgets or snap.budgets,
            profiles=snap.profiles,
            lists=snap.lists,
            category_ids=snap.category_ids,
            paused_devices=devices,
            paused_profiles=paused,
            bonus=bonus,
            domain_overrides=domains,
            categories=snap.categories,
            services=snap.services,
            threat_ids=snap.threat_ids,
        )
    return build_snapshot(
        household or snap.household,
        matcher or snap.matcher,
        zone=snap.zone,
        safesearch=safesearch or snap.safesearch,
        overrides=snap.overrides if overrides is None else overrides,
        budgets=budgets or snap.budgets,
        categories=snap.categories,
        services=snap.services,
    )


def with_household(snap: Snapshot, household: Household) -> Snapshot:
    """A new snapshot with another household (overrides kept)."""
    return _rebuild(snap, household=household)


def with_zone(snap: Snapshot, zone: ZoneInfo, budgets: BudgetView) -> Snapshot:
    """A new snapshot in the household's new time zone (schedules and budget days follow it)."""
    for compiled in snap.profiles.values():
        compiled.memo = (0.0, -1.0, ())  # computed in the old zone: recompute at the next query
    return dataclasses.replace(snap, zone=zone, budgets=budgets)


def with_matcher(snap: Snapshot, matcher: Matcher) -> Snapshot:
    """A new snapshot over a reloaded matcher (list refresh)."""
    return _rebuild(snap, matcher=matcher)


def with_override(snap: Snapshot, override: Override) -> Snapshot:
    """A new snapshot with ``override`` in force; it replaces any override with the same
    key (same device/profile pause or bonus, same profile+domain allow/block)."""
    domain = normalise_domain(override.domain) if override.domain else ""
    if domain != override.domain:
        override = Override(override.kind, override.target, override.until, override.created, domain)
    kept = [o for o in snap.overrides if o.key != override.key]
    kept.append(override)
    return _rebuild(snap, overrides=kept)


def without_override(snap: Snapshot, kind: str, target: str, domain: str = "") -> Snapshot:
    """A new snapshot without the overrides of ``kind`` for ``target`` (and ``domain``
    if given): ``guardian resume`` is ``without_override(s, "pause-device", name)``."""
    domain = normalise_domain(domain) if domain else ""
    kept = [o for o in snap.overrides if not (o.kind == kind and o.target == target and (not domain or o.domain == domain))]
    return snap if len(kept) == len(snap.overrides) else _rebuild(snap, overrides=kept)


def without_expired(snap: Snapshot, now: float) -> Snapshot:
    """A new snapshot without the overrides whose ``until`` is at or before ``now``
    (``snap`` itself when none expired). Expired overrides never act anyway; this keeps
    the snapshot small."""
    kept = [o for o in snap.overrides if o.until > now]
    return snap if len(kept) == len(snap.overrides) else _rebuild(snap, overrides=kept)


class PolicyHolder:
    """The live snapshot. Readers take ``holder.current`` once per query; writers build
    a new snapshot and ``swap`` it (one reference store). ``update`` serialises writers
    that derive the new snapshot from the current one (parent actions, expiry)."""

    __slots__ = ("_current", "_lock")

    def __init__(self, snapshot: Snapshot) -> None:
        self._current = snapshot
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def swap(self, new: Snapshot) -> Snapshot:
        """Make ``new`` live; return the snapshot it replaces."""
        old, self._current = self._current, new
        return old

    def update(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        """Apply ``change`` to the current snapshot and make the result live; returns it.

        Two parent actions at once would otherwise each start from the same snapshot
        and one would be lost.
        """
        with self._lock:
            new = change(self._current)
            self._current = new
            return new
