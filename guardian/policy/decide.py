"""The decision: allow, block or rewrite one query, and why. Pure: no I/O, no clock.

``decide(name, qtype, device, profile, now, snap)`` reads only its arguments and the
immutable snapshot. Checks run in this order, the first that applies wins:

1. **pause** (device, then profile): a parent's "stop now" beats every list, even the
   profile's allow list and a one-domain allow.
2. **override-block / override-allow** for the domain: the parent's newest, explicit
   and temporary word about this very domain beats standing rules (an hour on one
   site lifts a category, a schedule and a budget for that site).
3. **allow** (the profile's allow list): the parent's standing exceptions beat the
   profile's deny list, bypass lists, schedules, budgets and categories.
4. **bypass** (canary names, then the bypass category): before the deny list and
   schedules only so the attempt is recorded as a bypass, which a parent must see.
5. **deny** (the profile's deny list).
6. **schedule**: windows on now, unless bonus time is on. A ``block: all`` window
   spares its own allow list (and 3. already spared the profile's); a window of
   categories/services blocks names in them.
7. **budget**: a used-up daily allowance for a category/service, unless bonus.
8. **category / service**: the profile's categories and services via the matcher
   (allow rules beat deny rules at the same or a deeper level).
9. **safe-search**: CNAME rewrite of search engines and YouTube.
10. allow.

Steps 1-5 name things the parent set, 6-7 time-bound limits, 8-9 standing filtering;
each earlier step is either stronger or more specific than the ones after it.

Every block, whatever step decided it, also names the threat of the name (category,
threat, severity) when the name is on a threat list (``Snapshot.threat_ids``): a
pornography lookup at bedtime is a schedule block *and* a pornography attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..verdicts import Action, Reason
from .household import Device, Profile
from .lists import normalise_name
from .matcher import Hit, decide_hits
from .snapshot import ALLOW, DENY, NO_META, SCHEDULE_ALLOW_SHIFT, CompiledProfile, Snapshot

REASONS = tuple(Reason)  # every reason a decision gives, as stored

# Names a device asks to learn whether it may bypass the network's DNS; answered at
# once when bypass protection is on. NXDOMAIN tells Firefox to keep the network's DNS
# (its canary) and iCloud Private Relay to stay off; NODATA for the DDR name stops
# Windows/Android from discovering an encrypted resolver to upgrade to (RFC 9462).
CANARIES: dict[str, str] = {
    "use-application-dns.net": "nxdomain",
    "mask.icloud.com": "nxdomain",
    "mask-h2.icloud.com": "nxdomain",
    "mask-api.icloud.com": "nxdomain",
    "_dns.resolver.arpa": "nodata",
}

BUDGET_TTL = 60  # seconds: a name counted against a budget is re-asked each minute


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one query and why.

    ``action``: an ``Action``. ``reason``: a ``Reason``. For a block,
    ``block_mode`` says how to answer (nxdomain | null | blockpage | nodata); for a
    rewrite ``target`` is the CNAME target. ``ttl_cap`` (seconds) bounds the answer's
    TTL so a device's cache cannot outlive the next schedule/override boundary; None
    means no bound. ``budget_targets`` are the budget targets (category/service ids)
    this name counts toward: the caller feeds them to the usage meter when allowed.
    """

    action: Action
    reason: Reason = Reason.NONE
    profile: str = ""
    device: str = ""
    category: str = ""
    service: str = ""
    list_name: str = ""
    rule: str = ""
    schedule: str = ""
    threat: str = ""
    severity: str = ""
    target: str = ""
    block_mode: str = ""
    ttl_cap: int | None = None
    budget_targets: tuple[str, ...] = ()
    budget: str = ""

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK


def normalise(name: str) -> str:
    """Lower case, no trailing dot, punycode; the common ASCII lower-case name is
    returned as is. Names that are not valid DNS text are only lower-cased."""
    if name.isascii():
        if name.endswith("."):
            name = name[:-1]
        return name if name.islower() else name.lower()
    try:
        return normalise_name(name)
    except ValueError:
        return name.lower().rstrip(".")


def _cap(seconds: float) -> int | None:
    """A TTL cap for a boundary ``seconds`` away: never past it, and in whole minutes
    beyond two minutes so equal decisions within a minute share one cached value."""
    if seconds == math.inf:
        return None
    whole = int(seconds)
    if whole >= 120:
        whole -= whole % 60
    return max(1, whole)


def _cap_until(now: float, until: float) -> float:
    """The epoch before which ``_cap(until - t)`` for ``t >= now`` is still
    ``_cap(until - now)`` (and ``until`` is not reached): how long a decision whose TTL
    cap counts down to ``until`` stays the same decision."""
    if until == math.inf:
        return math.inf
    whole = int(until - now)
    if whole >= 120:
        whole -= whole % 60
    return until - max(whole, 0)


def _suffix_flags(name: str, table: dict[str, int]) -> tuple[str, str, int]:
    """(deepest allow domain, deepest deny domain, OR of schedule-allow bits) of ``name``."""
    allow = deny = ""
    sched = 0
    suffix = name
    while True:
        flags = table.get(suffix)
        if flags is not None:
            if flags & ALLOW and not allow:
                allow = suffix
            if flags & DENY and not deny:
                deny = suffix
            sched |= flags >> SCHEDULE_ALLOW_SHIFT
        dot = suffix.find(".")
        if dot < 0:
            return allow, deny, sched
        suffix = suffix[dot + 1 :]


def _deny_hit(hits: tuple[Hit, ...], ids: frozenset[int], snap: Snapshot) -> Hit | None:
    """The deny hit deciding among lists ``ids`` (None: none, or an allow wins).

    When a category list and a service's list name the same rule, the service is
    the more telling reason ("roblox" rather than "games"): it wins the tie.
    """
    win = decide_hits(hits, ids)
    if win is None or win.allow:
        return None
    if len(hits) > 1 and not snap.lists.get(win.list_id, NO_META).service:
        for hit in hits:
            if (
                hit.depth == win.depth
                and not hit.allow
                and hit.list_id in ids
                and snap.lists.get(hit.list_id, NO_META).service
            ):
                return hit
    return win


def _domain_override(name: str, table: dict[str, tuple[bool, float]], now: float) -> tuple[str, bool, float] | None:
    """The deepest override in force covering ``name``: (domain, allow, until)."""
    suffix = name
    while True:
        found = table.get(suffix)
        if found is not None and found[1] > now:
            return suffix, found[0], found[1]
        dot = suffix.find(".")
        if dot < 0:
            return None
        suffix = suffix[dot + 1 :]


def decide(
    name: str,
    qtype: int,
    device: Device | None,
    profile: Profile,
    now: float,
    snap: Snapshot,
) -> Decision:
    """Decide one query. ``name`` in any case, with or without a trailing dot, IDN or
    punycode; ``qtype`` the numeric type; ``now`` epoch seconds."""
    return _decide(normalise(name), qtype, device, profile, now, snap, False)


_MemoKey = tuple[str, int, str, str | None]  # name, qtype, profile, device
_MemoEntry = tuple[Decision, float, float, Profile, Device | None]  # decision, from, until, profile, device


class DecisionMemo:
    """``decide()`` remembered per (name, type, profile, device) for one snapshot.

    Each decision is kept with the span of time it holds for: from the ``now`` it was
    made at until the first moment anything it read from the clock would change it (a
    pause, one-domain override or bonus ending, a schedule boundary, its TTL cap
    stepping down). A decision that counts toward a budget (it read the usage meter,
    which changes without a new snapshot) is not kept. A new snapshot (any parent's
    action, a list refresh, an expiry, a reload) empties the memo before it is read,
    so what a parent changes applies to the very next query. At most ``size``
    decisions, in two generations: when the newer one is full it becomes the older one
    (the oldest are dropped) and what is asked again moves back, so a burst of names
    asked once does not push out the ones asked all the time. Used by one thread (the
    event loop).
    """

    __slots__ = ("size", "_snap", "_new", "_old")

    def __init__(self, size: int = 16_384) -> None:
        self.size = size
        self._snap: Snapshot | None = None
        self._new: dict[_MemoKey, _MemoEntry] = {}
        self._old: dict[_MemoKey, _MemoEntry] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def decide(self, name: str, qtype: int, device: Device | None, profile: Profile, now: float,
               snap: Snapshot) -> Decision:
        """The same as ``decide(name, qtype, device, profile, now, snap)``."""
        table = self._new
        if snap is not self._snap:
            self._snap = snap
            table = self._new = {}
            self._old = {}
        key = (name, qtype, profile.name, device.name if device is not None else None)
        found = table.get(key)
        if found is not None:
            if found[1] <= now < found[2] and found[3] is profile and found[4] is device:
                return found[0]
        else:
            found = self._old.get(key)
            if found is not None and found[1] <= now < found[2] and found[3] is profile and found[4] is device:
                self._keep(key, found)  # asked again: back to the newer generation
                return found[0]
        valid = [math.inf]
        decision = _decide(normalise(name), qtype, device, profile, now, snap, False, valid)
        if valid[0] > now:
            if len(table) >= self.size // 2:
                self._old = table
                table = self._new = {}
            table[key] = (decision, now, valid[0], profile, device)
        return decision

    def _keep(self, key: _MemoKey, entry: _MemoEntry) -> None:
        table = self._new
        if len(table) >= self.size // 2:
            self._old = table
            table = self._new = {}
        table[key] = entry


def check_cname_chain(
    names: list[str] | tuple[str, ...],
    device: Device | None,
    profile: Profile,
    now: float,
    snap: Snapshot,
) -> Decision | None:
    """A block decision when any name of an answer's CNAME chain is blocked, else None.

    ``names`` are the CNAME targets (the query name itself was decided already).
    Pause and ``block: all`` schedules are not applied: they already decided on the
    query name, and a name a bedtime window allows must keep working through its CDN.
    """
    for raw in names:
        found = _decide(normalise(raw), 1, device, profile, now, snap, True)
        if found.action is Action.BLOCK:
            return found
    return None


_CACHE_MAX = 4096  # decisions kept per profile; cleared whole when full


def _new(
    cp: CompiledProfile,
    action: Action,
    reason: Reason,
    *,
    profile: str,
    device: str,
    category: str = "",
    service: str = "",
    list_name: str = "",
    rule: str = "",
    schedule: str = "",
    threat: str = "",
    severity: str = "",
    target: str = "",
    block_mode: str = "",
    ttl_cap: int | None = None,
    budget_targets: tuple[str, ...] = (),
    budget: str = "",
) -> Decision:
    """The one way decisions are built: by keyword, shared with earlier equal decisions
    of the profile.

    A frozen 16-field dataclass costs ~16 object.__setattr__ calls to build; most
    queries end in a decision seen before (same device, verdict and TTL bucket), so a
    dict hit on a tuple of every field is several times cheaper. The tuple is only a
    key (every field is in it, so equal keys are equal decisions whatever the fields'
    order); the Decision itself is built by keyword. Decisions are immutable, so
    sharing them is safe.
    """
    key = (action, reason, profile, device, category, service, list_name, rule, schedule, threat, severity,
           target, block_mode, ttl_cap, budget_targets, budget)
    cache = cp.cache
    found = cache.get(key)
    if found is None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        found = cache[key] = Decision(
            action=action, reason=reason, profile=profile, device=device, category=category, service=service,
            list_name=list_name, rule=rule, schedule=schedule, threat=threat, severity=severity, target=target,
            block_mode=block_mode, ttl_cap=ttl_cap, budget_targets=budget_targets, budget=budget,
        )
    return found


def _block(
    cp: CompiledProfile,
    reason: Reason,
    dev: str,
    snap: Snapshot,
    hits: tuple[Hit, ...],
    *,
    rule: str = "",
    schedule: str = "",
    mode: str = "",
    ttl: int | None = None,
    hit: Hit | None = None,
    budget: str = "",
    targets: tuple[str, ...] = (),
) -> Decision:
    """A block for ``reason``; ``hit`` the list hit that decided it (if one did).

    Whatever decided, the block names the threat of the name when ``hits`` put it on a
    threat list (a pornography name at bedtime, in a pause, on the deny list): the
    category, threat and severity then come from that list, for the risk rules and
    the block page.
    """
    profile = cp.profile
    meta = NO_META
    if hit is not None:
        meta = snap.lists.get(hit.list_id, NO_META)
        rule = hit.domain
    category, list_name, threat, severity = meta.category, meta.list_name, meta.threat, meta.severity
    if not threat and hits and snap.threat_ids:
        found = decide_hits(hits, snap.threat_ids)
        if found is not None and not found.allow:
            named = snap.lists.get(found.list_id, NO_META)
            category, threat, severity = named.category, named.threat, named.severity
            if hit is None:
                list_name = named.list_name
                rule = rule or found.domain
    return _new(
        cp, Action.BLOCK, reason, profile=profile.name, device=dev, category=category, service=meta.service,
        list_name=list_name, rule=rule, schedule=schedule, threat=threat, severity=severity,
        block_mode=mode or profile.block_mode, ttl_cap=ttl, budget_targets=targets, budget=budget,
    )


def _decide(
    name: str,
    qtype: int,
    device: Device | None,
    profile: Profile,
    now: float,
    snap: Snapshot,
    chain: bool,
    valid: list[float] | None = None,
) -> Decision:
    """The steps in order; each returns the decision when it decides, else None.

    ``valid`` (for DecisionMemo) gets, in ``valid[0]``, the lowest epoch at which a
    step that read ``now`` would decide otherwise: -inf when the decision read the
    live usage meter (a budget) and must not be reused."""
    dev = device.name if device is not None else ""
    pname = profile.name
    cp: CompiledProfile = snap.compiled(profile)

    # 1. pause; 2. one-domain overrides
    if not chain and (snap.paused_devices or snap.paused_profiles):
        paused = _pause_step(name, device, dev, pname, now, snap, cp, valid)
        if paused is not None:
            return paused
    if snap.domain_overrides:
        table = snap.domain_overrides.get(pname)
        if table:
            overridden = _override_step(name, table, dev, pname, now, snap, cp, valid)
            if overridden is not None:
                return overridden

    # 3. the profile's allow list
    if cp.custom:
        allowed, denied, sched_allow = _suffix_flags(name, cp.custom)
        if allowed:
            return _new(cp, Action.ALLOW, Reason.ALLOW, profile=pname, device=dev, rule=allowed)
    else:
        denied, sched_allow = "", 0

    # 4. bypass protection
    hits = snap.matcher.lookup(name)
    win = decide_hits(hits, cp.enabled) if hits else None
    if win is not None and not win.allow and len(hits) > 1:
        win = _deny_hit(hits, cp.enabled, snap)
    if cp.bypass_ids:
        bypass = _bypass_step(name, dev, snap, cp, hits, win)
        if bypass is not None:
            return bypass

    # 5. the profile's deny list
    if denied:
        return _block(cp, Reason.DENY, dev, snap, hits, rule=denied)

    # 6. schedules (time-bound; they set the answer's TTL cap)
    ttl_cap: int | None = None
    bonus_until = snap.bonus.get(pname, 0.0) if snap.bonus else 0.0
    bonus = bonus_until > now
    if cp.schedules:
        scheduled, ttl_cap = _schedule_step(dev, now, snap, cp, hits, chain, sched_allow, bonus, bonus_until, valid)
        if scheduled is not None:
            return scheduled

    # 7. budgets
    targets: tuple[str, ...] = ()
    if cp.budgets and hits:
        over, targets, ttl_cap = _budget_step(dev, pname, now, snap, cp, hits, bonus, bonus_until, ttl_cap)
        if targets and valid is not None:
            valid[0] = -math.inf  # the meter's minutes decided (or will): never reused
        if over is not None:
            return over

    # 8. categories and services; 9. safe search; 10. allow
    return _standing_step(name, profile, dev, snap, cp, hits, win, ttl_cap, targets)


def _standing_step(name: str, profile: Profile, dev: str, snap: Snapshot, cp: CompiledProfile,
                   hits: tuple[Hit, ...], win: Hit | None, ttl_cap: int | None,
                   targets: tuple[str, ...]) -> Decision:
    """The standing filters: the profile's categories and services, then safe search,
    else allowed."""
    pname = profile.name
    if win is not None:
        meta = snap.lists.get(win.list_id, NO_META)
        if not win.allow:
            reason = Reason.SERVICE if meta.service else Reason.CATEGORY
            return _block(cp, reason, dev, snap, hits, ttl=ttl_cap, hit=win, targets=targets)
        # An allowlist decided: still an allow, but say which list.
        return _new(cp, Action.ALLOW, Reason.NONE, profile=pname, device=dev, category=meta.category,
                    service=meta.service, list_name=meta.list_name, rule=win.domain, ttl_cap=ttl_cap,
                    budget_targets=targets)
    if cp.safe:
        rewrite = snap.safesearch.lookup(name, profile.safe_search, profile.youtube)
        if rewrite is not None:
            return _new(cp, Action.REWRITE, Reason.SAFE_SEARCH, profile=pname, device=dev, list_name=rewrite[1],
                        rule=name, target=rewrite[0], ttl_cap=ttl_cap, budget_targets=targets)
    return _new(cp, Action.ALLOW, Reason.NONE, profile=pname, device=dev, ttl_cap=ttl_cap, budget_targets=targets)


def _pause_step(name: str, device: Device | None, dev: str, pname: str, now: float, snap: Snapshot,
                cp: CompiledProfile, valid: list[float] | None = None) -> Decision | None:
    """A paused device, else a paused profile: everything blocked until the pause ends.
    (A pause that has ended stays ended: only a new snapshot brings a new one.)"""
    until = snap.paused_devices.get(dev, 0.0) if device is not None else 0.0
    if until <= now:
        until = snap.paused_profiles.get(pname, 0.0)
    if until > now:
        if valid is not None:
            valid[0] = min(valid[0], _cap_until(now, until))
        return _block(cp, Reason.PAUSE, dev, snap, snap.matcher.lookup(name), ttl=_cap(until - now))
    return None


def _override_step(name: str, table: dict[str, tuple[bool, float]], dev: str, pname: str, now: float, snap: Snapshot,
                   cp: CompiledProfile, valid: list[float] | None = None) -> Decision | None:
    """A parent's "allow / block this site for a while" on the profile. (Overrides that
    have ended stay ended.)"""
    found = _domain_override(name, table, now)
    if found is None:
        return None
    domain, allow, until = found
    if valid is not None:
        valid[0] = min(valid[0], _cap_until(now, until))
    if allow:
        return _new(cp, Action.ALLOW, Reason.OVERRIDE_ALLOW, profile=pname, device=dev, rule=domain,
                    ttl_cap=_cap(until - now))
    return _block(cp, Reason.OVERRIDE_BLOCK, dev, snap, snap.matcher.lookup(name), rule=domain,
                  ttl=_cap(until - now))


def _bypass_step(name: str, dev: str, snap: Snapshot, cp: CompiledProfile, hits: tuple[Hit, ...],
                 win: Hit | None) -> Decision | None:
    """The browsers' canary names, and names on a bypass list (DoH, VPN, proxies)."""
    mode = CANARIES.get(name)
    if mode is not None:
        bypass_hit = win if win is not None and not win.allow else None
        return _block(cp, Reason.BYPASS, dev, snap, hits, rule=name, mode=mode, hit=bypass_hit)
    if win is not None and not win.allow and win.list_id in cp.bypass_ids:
        return _block(cp, Reason.BYPASS, dev, snap, hits, hit=win)
    return None


def _schedule_step(dev: str, now: float, snap: Snapshot, cp: CompiledProfile, hits: tuple[Hit, ...], chain: bool,
                   sched_allow: int, bonus: bool, bonus_until: float,
                   valid: list[float] | None = None) -> tuple[Decision | None, int | None]:
    """The schedules active now (bonus time lifts them); also the answer's TTL cap, so
    a cached answer ends when a window opens or closes."""
    active, change = cp.active_schedules(now, snap.zone)
    if bonus:
        change = min(change, bonus_until)
    ttl_cap = _cap(change - now)
    if valid is not None:
        valid[0] = min(valid[0], _cap_until(now, change))
    if bonus:
        return None, ttl_cap
    for compiled in active:
        if not compiled.ids:  # block: all
            if chain or sched_allow >> compiled.index & 1:
                continue
            return _block(cp, Reason.SCHEDULE, dev, snap, hits, schedule=compiled.schedule.name, ttl=ttl_cap), ttl_cap
        if hits:
            hit = _deny_hit(hits, compiled.ids, snap)
            if hit is not None:
                return _block(cp, Reason.SCHEDULE, dev, snap, hits, schedule=compiled.schedule.name, ttl=ttl_cap,
                              hit=hit), ttl_cap
    return None, ttl_cap


def _budget_step(dev: str, pname: str, now: float, snap: Snapshot, cp: CompiledProfile, hits: tuple[Hit, ...], bonus: bool,
                 bonus_until: float, ttl_cap: int | None) -> tuple[Decision | None, tuple[str, ...], int | None]:
    """Daily budgets the name counts against: blocked when one is used up (not during
    bonus time); the targets counted and a short TTL so a used-up budget holds."""
    targets: tuple[str, ...] = ()
    for budget in cp.budgets:
        hit = _deny_hit(hits, budget.ids, snap)
        if hit is None:
            continue
        targets += (budget.target,)
        if not bonus and snap.budgets.exceeded(pname, budget.target, budget.minutes, now):
            return (_block(cp, Reason.BUDGET, dev, snap, hits, ttl=ttl_cap, hit=hit, budget=budget.target,
                           targets=targets), targets, ttl_cap)
    if targets:
        # Usage is counted per minute: re-ask soon so a used-up budget holds.
        ttl_cap = BUDGET_TTL if ttl_cap is None else min(ttl_cap, BUDGET_TTL)
        if bonus:
            ttl_cap = min(ttl_cap, _cap(bonus_until - now) or BUDGET_TTL)
    return None, targets, ttl_cap
