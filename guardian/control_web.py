"""The structured control actions the dashboard needs, served on the control socket.

``guardian/control.py`` serves the CLI's actions; these are the dashboard's, added to the
same socket by the daemon (``dashboard_actions(guardian)``):

- ``state``: the household as data, the overrides in force with their end, per profile
  paused/bonus until, the schedule windows active now and the next boundary, the
  budgets used today, the rule packs' categories and services with their plain-language
  descriptions, the revision, the zone and the server's time;
- ``devices``: the live device registry (discovery's, also in ``anonymous`` mode);
- ``explain``: run the decision now for an address (or a device/profile) and a name;
- ``login-failed``: a failed dashboard login from an address, as a risk event;
- fine-grained writes on one profile or device (``profile-set``, ``profile-list``,
  ``schedule-add``/``schedule-remove``, ``budget-set``, ``profile-add`` (from a template),
  ``profile-remove``, ``device-set``, ``device-remove``);
- ``settings``: the service's upstreams, downloaded lists, privacy mode, retention, zone;
- ``events-seen``: mark one risk event or all new ones seen (the store's writer writes it).

Every write is one function of the household applied inside the service's commit (its
lock held): nothing is edited by export -> modify -> import, and a write that names the
``revision`` it was based on is refused with "changed meanwhile" when the household has
changed since. The revision is a digest of the household's data, so it needs no schema.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, GuardianError
from .household.service import HouseholdService, UnknownName, keep_overrides
from .household.storage import PARENT, valid_in
from .household.words import check_domain
from .policy.decide import decide
from .policy.household import Household, household_from_config, household_to_dict
from .policy.schedule import DAYS, parse_clock
from .policy.snapshot import Snapshot, with_household, with_override
from .printable import printable

if TYPE_CHECKING:
    from .app import Guardian

log = logging.getLogger(__name__)

Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

YOUTUBE = ("off", "moderate", "strict")
BLOCK_MODES = ("nxdomain", "null", "blockpage", "nodata")


class ChangedMeanwhile(GuardianError):
    """A save based on an old revision of the household."""


def revision(household: Household) -> str:
    """A short digest of the household's data: changes whenever the household does."""
    text = json.dumps(household_to_dict(household), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


PROFILE_KINDS = ("pause-profile", "bonus", "allow-domain", "block-domain")  # overrides naming a profile


def _edit(service: HouseholdService, payload: dict[str, Any], edit: Callable[[dict[str, Any]], None],
          rename: tuple[str, str] | None = None, kinds: tuple[str, ...] = ("pause-device",)) -> str:
    """Apply ``edit`` to the household's data inside the service's commit, check the
    result as the config is checked, and make it live. Returns the new revision."""
    base = payload.get("revision")

    def change(snap: Snapshot) -> Snapshot:
        if base is not None and str(base) != revision(snap.household):
            raise ChangedMeanwhile("the household was changed meanwhile: reload and try again")
        data = household_to_dict(snap.household)
        edit(data)
        household, problems = household_from_config(data, service.templates, categories=service.categories,
                                                    services=service.services)
        if problems:
            raise ConfigError(problems)
        new = with_household(snap, household)
        if rename is not None:  # a renamed device keeps its pause, a renamed profile its overrides
            for o in snap.overrides:
                if o.kind in kinds and o.target == rename[0]:
                    new = with_override(new, dataclasses.replace(o, target=rename[1]))
        return keep_overrides(new, valid_in(household))

    new = service._commit(change, origin=PARENT)
    return revision(new.household)


def _finite(until: float) -> float | None:
    """An override's end for JSON: None for "until resumed" (JSON has no infinity)."""
    return None if math.isinf(until) else until


def _profile(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The profile called ``name``, or whose stable id it is (a page open since a rename)."""
    for p in data["profiles"]:
        if p["name"] == name:
            return dict(p)
    for p in data["profiles"]:
        if p.get("id") == name:
            return dict(p)
    known = ", ".join(repr(p["name"]) for p in data["profiles"]) or "none"
    raise UnknownName(f"no profile is called {name!r} (profiles: {known})")


def _replace_profile(data: dict[str, Any], name: str, new: dict[str, Any]) -> None:
    data["profiles"] = [new if p["name"] == name or p.get("id") == name else p for p in data["profiles"]]


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GuardianError(f"{what} must be a list of names")
    return list(value)


def _read_actions(guardian: Guardian) -> dict[str, Any]:
    """The read actions: the household's state now, the devices seen, why a name is decided."""
    service = guardian.household
    rules = guardian.rules

    def state_now() -> dict[str, Any]:
        snap = guardian.policy.current
        now = service.clock()
        zone = service.zone
        h = snap.household
        usage: dict[str, list[dict[str, Any]]] = {}
        for u in service.usage():
            usage.setdefault(u.profile, []).append(
                {"target": u.target, "minutes": u.minutes, "budget": u.budget, "left": u.left})
        profiles = []
        for p in h.profiles:
            active = []
            boundaries = []
            for s in p.schedules:
                on, nxt = s.state(now, zone)
                if on:
                    active.append({"name": s.name, "until": nxt,
                                   "block": "all" if s.block == "all" else list(s.block)})
                if nxt is not None:
                    boundaries.append(nxt)
            paused = snap.paused_profiles.get(p.name, 0.0)
            bonus = snap.bonus.get(p.name, 0.0)
            profiles.append({
                "name": p.name,
                "paused": paused > now,
                "paused_until": _finite(paused) if paused > now else None,  # None when paused: until resumed
                "bonus_until": _finite(bonus) if bonus > now else None,
                "schedules_active": active,
                "next_boundary": min(boundaries) if boundaries else None,
                "usage": usage.get(p.name, []),
                "devices": [d.name for d in h.devices if d.profile == p.name],
            })
        data = household_to_dict(h)
        for d in data["devices"]:
            until = snap.paused_devices.get(d["name"], 0.0)
            d["paused"] = until > now
            d["paused_until"] = _finite(until) if until > now else None
        overrides = [{"kind": o.kind, "target": o.target, "domain": o.domain,
                      "until": _finite(o.until), "created": o.created}
                     for o in snap.overrides if o.until > now]
        return {
            "household": data,
            "default_profile": h.profile_of(None).name,
            "profiles": profiles,
            "overrides": overrides,
            "categories": [{"id": c.id, "name": c.name, "description": c.description,
                            "threats": list(c.threats), "severity": c.severity}
                           for c in rules.categories.values()],
            "services": [{"id": s.id, "name": s.name, "category": getattr(s, "category", "")}
                         for s in rules.services.values()],
            "templates": [{"id": t.id, "name": t.name, "description": t.description}
                          for t in rules.templates.values()],
            "revision": revision(h),
            "zone": str(zone),
            "now": now,
            "privacy": guardian.settings.privacy.mode,
        }

    async def state(_payload: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message": "", "data": state_now()}

    async def devices(_payload: dict[str, Any]) -> dict[str, Any]:
        discovery = guardian.discovery
        found = [d.to_json() for d in discovery.registry.devices()] if discovery is not None else []
        return {"ok": True, "message": "", "data": found}

    async def explain(payload: dict[str, Any]) -> dict[str, Any]:
        snap = guardian.policy.current
        name = check_domain(str(payload["name"]))
        ip = str(payload.get("ip") or "")
        device, profile = snap.resolve(ip, payload.get("mac"), payload.get("hostname"))
        if payload.get("profile"):
            profile = service.profile(str(payload["profile"]))
        how = "by its address" if device is not None and device.ip is not None else (
            "by its MAC address" if device is not None and device.mac else "not identified: the default profile")
        d = decide(name, 1, device, profile, service.clock(), snap)
        fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name != "budget_targets"}
        return {"ok": True, "message": "", "data": {
            "device": device.name if device is not None else None, "identified": how,
            "profile": profile.name, "decision": fields}}

    return {"state": state, "devices": devices, "explain": explain}


def _filter_edits(service: HouseholdService) -> dict[str, Any]:
    """Edits of a profile's filters and its allow and deny lists."""

    def profile_set(payload: dict[str, Any]) -> str:
        name = str(payload["profile"])
        fields = payload.get("set") or {}
        if not isinstance(fields, dict):
            raise GuardianError("'set' must be an object")

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, name)
            was_on = bool(p.get("bypass_protection"))
            for key, value in fields.items():
                if key in ("categories", "services"):
                    p[key] = _strings(value, key)
                elif key in ("safe_search", "bypass_protection"):
                    if not isinstance(value, bool):
                        raise GuardianError(f"{key} must be true or false")
                    p[key] = value
                elif key == "youtube" and value in YOUTUBE:
                    p[key] = value
                elif key == "block_mode" and value in BLOCK_MODES:
                    p[key] = value
                else:
                    raise GuardianError(f"cannot set {key!r} to {value!r}")
            # The bypass category and bypass protection are one switch (Profile): when
            # the edit leaves them apart, the one it changed decides for both.
            in_categories = "bypass" in p.get("categories", ())
            if in_categories != bool(p.get("bypass_protection")):
                on = in_categories if in_categories != was_on else bool(p.get("bypass_protection"))
                p["bypass_protection"] = on
                p["categories"] = [c for c in p.get("categories", ()) if c != "bypass"] + (["bypass"] if on else [])
            _replace_profile(data, name, p)

        return _edit(service, payload, edit)

    def profile_list(payload: dict[str, Any]) -> str:
        """Add or remove one domain on a profile's allow or deny list."""
        name, which, op = str(payload["profile"]), str(payload["list"]), str(payload["op"])
        if which not in ("allow", "deny") or op not in ("add", "remove"):
            raise GuardianError("list is allow or deny, op is add or remove")
        domain = check_domain(str(payload["domain"]))

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, name)
            entries = [d for d in p[which] if d != domain]
            if op == "add":
                entries.append(domain)
                other = "deny" if which == "allow" else "allow"
                p[other] = [d for d in p[other] if d != domain]
            p[which] = entries
            _replace_profile(data, name, p)

        return _edit(service, payload, edit)

    return {"profile-set": profile_set, "profile-list": profile_list}


def _time_edits(service: HouseholdService) -> dict[str, Any]:
    """Edits of a profile's schedules and daily budgets."""
    def schedule_add(payload: dict[str, Any]) -> str:
        name = str(payload["profile"])
        days = _strings(payload.get("days"), "days")
        if not days or any(d not in DAYS for d in days):
            raise GuardianError(f"days must be some of {', '.join(DAYS)}")
        start, end = str(payload["from"]), str(payload["to"])
        parse_clock(start)
        parse_clock(end)
        block = payload.get("block", "all")
        if block != "all":
            block = _strings(block, "block")
        label = str(payload.get("name") or "").strip() or f"{start}-{end}"

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, name)
            p["schedules"] = [*p["schedules"], {"name": label, "days": days, "from": start, "to": end,
                                                "block": block}]
            _replace_profile(data, name, p)

        return _edit(service, payload, edit)

    def schedule_remove(payload: dict[str, Any]) -> str:
        name, index = str(payload["profile"]), int(payload["index"])

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, name)
            if not 0 <= index < len(p["schedules"]):
                raise GuardianError(f"{name} has no schedule number {index + 1}")
            p["schedules"] = [s for i, s in enumerate(p["schedules"]) if i != index]
            _replace_profile(data, name, p)

        return _edit(service, payload, edit)

    def budget_set(payload: dict[str, Any]) -> str:
        """A daily budget for a category or service (0 minutes or null: no budget)."""
        name, target = str(payload["profile"]), str(payload["target"])
        minutes = payload.get("minutes")
        if minutes is not None and (not isinstance(minutes, int) or not 0 <= minutes <= 1440):
            raise GuardianError("minutes must be a whole number from 0 to 1440")

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, name)
            budgets = [b for b in p["budgets"] if b["target"] != target]
            if minutes:
                budgets.append({"target": target, "minutes": minutes})
            p["budgets"] = budgets
            _replace_profile(data, name, p)

        return _edit(service, payload, edit)

    return {"schedule-add": schedule_add, "schedule-remove": schedule_remove, "budget-set": budget_set}


def _device_edits(service: HouseholdService) -> dict[str, Any]:
    """Devices named, changed, given to a profile or forgotten."""

    def device_set(payload: dict[str, Any]) -> str:
        """Add or change a device: ``name`` (new), ``was`` (its current name when renaming),
        ``profile``, ``ip`` and/or ``mac``."""
        name = str(payload["name"]).strip()
        was = str(payload.get("was") or name)
        if not name or len(name) > 64:
            raise GuardianError("a device name is 1 to 64 characters")

        def edit(data: dict[str, Any]) -> None:
            current = next((d for d in data["devices"] if d["name"] == was), None)
            if was != name and current is None:
                raise UnknownName(f"no device is called {was!r}")
            if any(d["name"] == name for d in data["devices"]) and name != was:
                raise GuardianError(f"a device is already called {name!r}")
            item = dict(current or {})
            item["name"] = name
            for key in ("ip", "mac", "profile"):
                if payload.get(key):
                    item[key] = str(payload[key])
            if "profile" not in item:
                raise GuardianError("say which profile the device belongs to")
            if "ip" not in item and "mac" not in item and "hostname" not in item:
                raise GuardianError("a device needs an address or a MAC address")
            devices = [d for d in data["devices"] if d["name"] != was]
            data["devices"] = [*devices, item]

        return _edit(service, payload, edit, rename=(was, name) if was != name else None)

    def device_remove(payload: dict[str, Any]) -> str:
        name = str(payload["name"])

        def edit(data: dict[str, Any]) -> None:
            if not any(d["name"] == name for d in data["devices"]):
                raise UnknownName(f"no device is called {name!r}")
            data["devices"] = [d for d in data["devices"] if d["name"] != name]

        return _edit(service, payload, edit)

    return {"device-set": device_set, "device-remove": device_remove}


def _profile_set_edits(service: HouseholdService) -> dict[str, Any]:
    """Profiles added from a template, or removed."""
    def profile_add(payload: dict[str, Any]) -> str:
        """A new profile from a template (one per child: usage and budgets are per profile)."""
        name = str(payload["name"]).strip()
        template = str(payload.get("template") or "")
        if not name or len(name) > 40:
            raise GuardianError("a profile name is 1 to 40 characters")

        def edit(data: dict[str, Any]) -> None:
            if any(p["name"].casefold() == name.casefold() for p in data["profiles"]):
                raise GuardianError(f"a profile is already called {name!r}")
            data["profiles"] = [*data["profiles"], {"name": name, **({"template": template} if template else {})}]

        return _edit(service, payload, edit)

    def profile_remove(payload: dict[str, Any]) -> str:
        """Remove a profile that no device uses and that is not the default."""
        name = str(payload["name"])

        def edit(data: dict[str, Any]) -> None:
            _profile(data, name)
            if data.get("default_profile") == name:
                raise GuardianError(f"{name} is the profile of unknown devices: choose another one first")
            users = [d["name"] for d in data["devices"] if d["profile"] == name]
            if users:
                raise GuardianError(f"{name} still has devices: {', '.join(users)}")
            data["profiles"] = [p for p in data["profiles"] if p["name"] != name]

        return _edit(service, payload, edit)

    def profile_rename(payload: dict[str, Any]) -> str:
        """Rename a profile: its id, devices, pause, bonus, allowed and blocked sites and
        today's minutes stay with it (the store's history is renamed by the caller)."""
        was, name = str(payload["profile"]), str(payload["name"]).strip()
        if not name or len(name) > 40:
            raise GuardianError("a profile name is 1 to 40 characters")
        old = _profile(household_to_dict(service.household), was)["name"]

        def edit(data: dict[str, Any]) -> None:
            p = _profile(data, was)
            if any(q["name"].casefold() == name.casefold() and q["name"] != p["name"] for q in data["profiles"]):
                raise GuardianError(f"a profile is already called {name!r}")
            _replace_profile(data, p["name"], {**p, "name": name})
            for d in data["devices"]:
                if d["profile"] == p["name"]:
                    d["profile"] = name
            if data.get("default_profile") == p["name"]:
                data["default_profile"] = name

        return _edit(service, payload, edit, rename=(old, name), kinds=PROFILE_KINDS)

    return {"profile-add": profile_add, "profile-remove": profile_remove, "profile-rename": profile_rename}


def _event_actions(guardian: Guardian) -> dict[str, Any]:
    """A failed dashboard login as a risk event; risk events marked seen by the writer."""

    async def login_failed(payload: dict[str, Any]) -> dict[str, Any]:
        """A failed dashboard login: a risk event the parents see, named after the device
        it came from ("failed dashboard logins from Sam's tablet"), counted per device."""
        client = str(payload.get("client") or "")[:64]
        device, _profile = guardian.policy.current.resolve(client)
        who = device.name if device is not None else (client or "an unknown device")
        guardian.recorder.system_event("dashboard-login", f"failed dashboard logins from {who}", "high")
        return {"ok": True, "message": ""}

    async def events_seen(payload: dict[str, Any]) -> dict[str, Any]:
        """Mark one risk event (``id``) or every new one (``id``: "all") seen, written by the
        store's writer (the dashboard's user may only read guardian.db)."""
        which = payload.get("id")
        if which != "all" and (isinstance(which, bool) or not isinstance(which, int) or which < 1):
            raise GuardianError("id is an event's number or \"all\"")
        changed = await guardian.recorder.set_event_state("seen", None if which == "all" else which)
        if which != "all" and not changed:
            raise UnknownName(f"no risk event number {which}")
        return {"ok": True, "message": f"{changed} marked seen", "data": {"changed": changed}}

    return {"login-failed": login_failed, "events-seen": events_seen}


def _settings_actions(guardian: Guardian) -> dict[str, Any]:
    """The filtering service's settings (read only)."""
    service = guardian.household
    run = asyncio.to_thread

    async def settings(_payload: dict[str, Any]) -> dict[str, Any]:
        """The filtering service's own settings, for the dashboard's Settings page: the
        upstreams, the downloaded lists' statuses, privacy mode, retention, time zone."""
        from .lists.subscriptions import statuses_for

        s = guardian.settings
        lists = await run(statuses_for, guardian.subscriptions, s.data_dir / "lists" / "downloads")
        return {"ok": True, "message": "", "data": {
            "upstreams": [u.url for u in s.dns.upstreams] if s.dns is not None else [],
            "zone": str(service.zone),
            "privacy": s.privacy.mode,
            "retention": {"query_days": s.store.query_days, "event_days": s.store.event_days,
                          "usage_days": s.store.usage_days},
            "lists": [{k: v for k, v in st.to_json().items() if k not in ("etag", "last_modified", "sha256")}
                      for st in lists],
        }}

    async def settings_set(payload: dict[str, Any]) -> dict[str, Any]:
        """Change the filtering service's settings a parent may choose (``upstreams``,
        ``privacy``, ``query_days``, ``event_days``, ``timezone``): checked like the config,
        kept in data_dir/choices.yaml, applied at once as a reload would. A locked one is
        refused; nothing is written when any value is wrong."""
        from . import choices
        from .provision import load_for

        changes = {k: payload[k] for k in choices.LOCKS if k in payload}
        if not changes:
            raise GuardianError(f"say what to change: {', '.join(choices.LOCKS)}")
        provision = load_for(guardian.settings.path) if guardian.settings.path is not None else None
        for key in changes:
            lock = choices.LOCKS[key]
            if provision is not None and lock and provision.is_locked(lock):
                raise GuardianError(f"Managed by {provision.managed_by}: {lock} cannot be changed here")
        if "upstreams" in changes and (not isinstance(changes["upstreams"], list)
                                       or not all(isinstance(u, str) for u in changes["upstreams"])):
            raise GuardianError("upstreams is a list of addresses or URLs")
        data_dir = guardian.settings.data_dir
        merged, text = await run(choices.check, data_dir, changes)
        locked = provision.locked if provision is not None else frozenset()
        new = choices.apply(guardian.settings, merged, locked)
        was = guardian.settings.privacy.mode
        await run(choices.save, data_dir, text)
        await guardian.reload(new)
        if new.privacy.mode == "anonymous" and was != "anonymous":
            await guardian.recorder.run_retention()  # who asked what is erased now, not within the hour
        log.info("settings changed from the dashboard: %s", printable(", ".join(sorted(changes))))
        return {"ok": True, "message": "settings saved", "data": {"changed": sorted(changes)}}

    async def household_restore(payload: dict[str, Any]) -> dict[str, Any]:
        """Settings' restore: replace the household with an uploaded ``household:`` YAML
        (a download of Settings' backup, or ``guardian export``), checked as the config is
        (FILE:LINE problems) with nothing changed when any is found. The dashboard asks for
        the parent's password first; a provider's locked profiles refuse it."""
        from .provision import load_for

        provision = load_for(guardian.settings.path) if guardian.settings.path is not None else None
        if provision is not None and provision.is_locked("profiles"):
            raise GuardianError(f"Managed by {provision.managed_by}: profiles cannot be changed here")
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise GuardianError("give the household's YAML text")
        if len(text) > 1 << 20:
            raise GuardianError("that file is too big for a household (over 1 MB)")
        filename = str(payload.get("filename") or "household.yaml")[:100]
        change = await run(service.import_, text, filename)
        return {"ok": True, "message": change.message, "data": change.as_dict()}

    return {"settings": settings, "settings-set": settings_set, "household-restore": household_restore}


def dashboard_actions(guardian: Guardian) -> dict[str, Action]:
    """The dashboard's actions over the running daemon (for ``ControlServer(actions=...)``)."""
    from .provision import Provision, load_for

    # Locked provisioned settings are refused here too (the dashboard refuses them first):
    # a client that skips the dashboard's check cannot change them either.
    provision = load_for(guardian.settings.path) if guardian.settings.path is not None else Provision()
    run = asyncio.to_thread
    reads = {**_read_actions(guardian), **_event_actions(guardian), **_settings_actions(guardian)}
    service = guardian.household
    edits = {**_filter_edits(service), **_time_edits(service), **_device_edits(service), **_profile_set_edits(service)}

    def writer(fn: Callable[[dict[str, Any]], str], message: str, locks: str = "profiles",
               renames: str = "") -> Action:
        async def act(payload: dict[str, Any]) -> dict[str, Any]:
            if locks and provision.is_locked(locks):
                raise GuardianError(f"Managed by {provision.managed_by}: {locks} cannot be changed here")
            old = _renamed(guardian, renames, payload)
            rev = await run(fn, payload)
            if old is not None:
                await _rename_history(guardian, renames, *old)
            return {"ok": True, "message": message, "data": {"revision": rev}}
        return act

    locks = {"device-set": "", "device-remove": ""}  # a device's profile is the parents' choice
    messages = {"profile-set": "profile saved", "profile-list": "list saved", "schedule-add": "schedule added",
                "schedule-remove": "schedule removed", "budget-set": "budget saved", "profile-add": "profile added",
                "profile-remove": "profile removed", "device-set": "device saved", "device-remove": "device forgotten",
                "profile-rename": "profile renamed"}
    renames = {"profile-rename": "profile", "device-set": "device"}
    return {**reads, **{name: writer(fn, messages[name], locks.get(name, "profiles"), renames.get(name, ""))
                        for name, fn in edits.items()}}


def _renamed(guardian: Guardian, kind: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    """(old, new) when ``payload`` renames a profile or a device, before it is applied."""
    if kind == "profile":
        try:
            old = _profile(household_to_dict(guardian.household.household), str(payload.get("profile")))["name"]
        except UnknownName:
            return None  # the edit says so
        new = str(payload.get("name") or "").strip()
    elif kind == "device":
        old, new = str(payload.get("was") or ""), str(payload.get("name") or "").strip()
    else:
        return None
    return (old, new) if old and new and old != new else None


async def _rename_history(guardian: Guardian, kind: str, old: str, new: str) -> None:
    """After a rename is saved: today's minutes (the meter, on this loop) and the stored
    history follow the new name. The rename stands if the store cannot follow right now."""
    if kind == "profile":
        guardian.meter.rename(old, new)
    try:
        changed = await guardian.recorder.rename(kind, old, new)
    except Exception as exc:  # noqa: BLE001 - the household is saved; history keeps the old name
        log.warning("the %s %s was renamed %s, but its history could not follow: %s", kind,
                    printable(old), printable(new), exc)
        return
    log.info("%s %s renamed %s: %d stored rows follow", kind, printable(old), printable(new), changed)
