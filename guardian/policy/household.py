"""The household: profiles, devices, schedules, budgets and the parents' overrides.

All values are frozen; a change builds a new ``Household`` (and a new policy snapshot).
``household_from_config`` reads the config's ``household:`` mapping (the operator
contract) applying profile templates; ``household_to_dict`` writes it back as plain
data for ``guardian export``, so ``from(to(h)) == h``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..names import normalise_domain
from .schedule import DAYS, Schedule, format_clock, parse_clock

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BlockMode = Literal["nxdomain", "null", "blockpage"]
YouTube = Literal["off", "moderate", "strict"]
OverrideKind = Literal["pause-device", "pause-profile", "bonus", "allow-domain", "block-domain"]

BLOCK_MODES: tuple[str, ...] = ("nxdomain", "null", "blockpage")
YOUTUBE_MODES: tuple[str, ...] = ("off", "moderate", "strict")
OVERRIDE_KINDS: tuple[str, ...] = ("pause-device", "pause-profile", "bonus", "allow-domain", "block-domain")
DEFAULT_SESSION_GAP = 5  # minutes; see guardian/usage.py
BYPASS = "bypass"  # the rule packs' category of ways around the filter

__all__ = [
    "DAYS",
    "Budget",
    "Device",
    "Household",
    "Override",
    "Profile",
    "Schedule",
    "at_least_as_filtered",
    "household_from_config",
    "household_to_dict",
    "template_key",
]


@dataclass(frozen=True, slots=True)
class Budget:
    """A daily allowance of ``minutes`` for one category or service id (``target``)."""

    target: str
    minutes: int


@dataclass(frozen=True, slots=True)
class Profile:
    """What a group of devices may reach. Ids in ``categories``/``services`` are the
    rule packs'; ``allow``/``deny`` are domains (each covers its subdomains)."""

    name: str
    template: str = ""
    categories: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    safe_search: bool = False
    youtube: YouTube = "off"
    block_mode: BlockMode = "nxdomain"
    bypass_protection: bool = False
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    budgets: tuple[Budget, ...] = ()
    # Stable across renames: what the API and the dashboard's links address it by.
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # "Block filter bypass" is one switch to a parent: the bypass category and
        # bypass protection (canaries, the DDR name) are on together or not at all,
        # whichever of the two a profile spells out; export then shows both.
        if self.bypass_protection and BYPASS not in self.categories:
            object.__setattr__(self, "categories", (*self.categories, BYPASS))
        elif not self.bypass_protection and BYPASS in self.categories:
            object.__setattr__(self, "bypass_protection", True)


YOUTUBE_RANK = {mode: rank for rank, mode in enumerate(YOUTUBE_MODES)}


def at_least_as_filtered(profile: Profile, default: Profile) -> bool:
    """True when ``profile`` blocks everything ``default`` blocks: its categories,
    services and deny list are supersets of the default's, its allow lists (the
    profile's and each schedule's) add nothing, safe search, YouTube restriction and
    bypass protection are at least as strict, and it has each of the default's
    schedules and budgets (a budget with no more minutes). A device that is only
    recognised by the hostname it announces may get ``profile`` only then."""
    if profile is default or profile == default:
        return True
    if not (set(default.categories) <= set(profile.categories) and set(default.services) <= set(profile.services)):
        return False
    if default.safe_search and not profile.safe_search:
        return False
    if YOUTUBE_RANK[profile.youtube] < YOUTUBE_RANK[default.youtube]:
        return False
    if default.bypass_protection and not profile.bypass_protection:
        return False
    if not set(default.deny) <= set(profile.deny) or not set(profile.allow) <= set(default.allow):
        return False
    if not set(default.schedules) <= set(profile.schedules):  # extra windows only block more
        return False
    minutes = {b.target: b.minutes for b in profile.budgets}
    return all(b.target in minutes and minutes[b.target] <= b.minutes for b in default.budgets)


@dataclass(frozen=True, slots=True)
class Device:
    """A device of the household, identified by MAC (preferred), IP/prefix or hostname."""

    name: str
    profile: str
    mac: str | None = None
    ip: Network | None = None
    hostname: str | None = None
    id: str = field(default="", compare=False)  # stable across renames, like Profile.id


ID_PATTERN = re.compile(r"[a-z]-[a-z0-9-]{1,40}")


def make_id(prefix: str, name: str, taken: Collection[str]) -> str:
    """A stable id for a new profile (``p``) or device (``d``): readable from the name
    where it is ASCII ("p-sam"), from its digest otherwise ("p-3f2a9c1b"), never one in
    ``taken``. Once stored it never changes, whatever the name becomes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24].strip("-")
    if not slug:
        slug = hashlib.sha256(name.encode()).hexdigest()[:8]
    base = f"{prefix}-{slug}"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}-{n}", n + 1
    return found


def _take_id(raw: Mapping[str, Any], prefix: str, name: str, taken: set[str], where: str,
             problems: list[str]) -> str:
    """The id a stored or exported entry carries, else a new one from its name."""
    given = raw.get("id")
    if given is not None:
        text = str(given)
        if not ID_PATTERN.fullmatch(text) or not text.startswith(prefix + "-"):
            problems.append(f"{where}.id: {text!r} is not an id ({prefix}- then letters, digits and -)")
        elif text in taken:
            problems.append(f"{where}.id: {text!r} is given twice")
        else:
            taken.add(text)
            return text
    found = make_id(prefix, name, taken)
    taken.add(found)
    return found


@dataclass(frozen=True, slots=True)
class Override:
    """A parent's temporary action, in force while ``created <= now < until`` (epoch s).

    ``target`` is a device name (pause-device) or a profile name (the others);
    ``domain`` is set for allow-domain and block-domain (it covers subdomains).
    """

    kind: OverrideKind
    target: str
    until: float
    created: float
    domain: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """Overrides with the same key replace each other (a newer one wins)."""
        group = "domain" if self.kind in ("allow-domain", "block-domain") else self.kind
        return group, self.target, self.domain


def _device_dict_key(mac: str) -> str:
    return mac.lower().replace("-", ":")


@dataclass(frozen=True, slots=True)
class Household:
    """Profiles by name, devices, and the profile of devices nobody named."""

    profiles: tuple[Profile, ...]
    devices: tuple[Device, ...] = ()
    default_profile: str = ""
    session_gap_minutes: int = DEFAULT_SESSION_GAP
    local_domain: str = ""  # the LAN's DHCP domain ("lan"): "host.lan" also names "host"
    by_name: dict[str, Profile] = field(init=False, repr=False, compare=False)
    _by_mac: dict[str, Device] = field(init=False, repr=False, compare=False)
    _by_ip: dict[str, Device] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[tuple[Network, Device], ...] = field(init=False, repr=False, compare=False)
    _by_host: dict[str, Device] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, str | None, str | None], Device | None] = field(
        init=False, repr=False, compare=False
    )
    _default: Profile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "by_name", {p.name: p for p in self.profiles})
        # Resolved once: it is asked for on every query from an unknown device.
        default = self.by_name.get(self.default_profile)
        if default is None:
            default = self.profiles[0] if self.profiles else Profile(name=self.default_profile or "default")
        setter(self, "_default", default)
        by_mac: dict[str, Device] = {}
        by_ip: dict[str, Device] = {}
        prefixes: list[tuple[Network, Device]] = []
        by_host: dict[str, Device] = {}
        for device in self.devices:  # the first device listed wins a shared key
            if device.mac:
                by_mac.setdefault(_device_dict_key(device.mac), device)
            if device.ip is not None:
                if device.ip.prefixlen == device.ip.max_prefixlen:
                    by_ip.setdefault(str(device.ip.network_address), device)
                else:
                    prefixes.append((device.ip, device))
            if device.hostname:
                # A hostname is what the device says it is: it may only give a profile
                # that filters at least as much as the default's (see at_least_as_filtered).
                profile = self.by_name.get(device.profile, default)
                if at_least_as_filtered(profile, default):
                    by_host.setdefault(self._host_key(device.hostname), device)
        prefixes.sort(key=lambda item: item[0].prefixlen, reverse=True)  # longest first
        setter(self, "_by_mac", by_mac)
        setter(self, "_by_ip", by_ip)
        setter(self, "_prefixes", tuple(prefixes))
        setter(self, "_by_host", by_host)
        setter(self, "_cache", {})

    def _host_key(self, hostname: str) -> str:
        """``hostname`` lower case, without a trailing dot or the local domain."""
        host = hostname.lower().rstrip(".")
        suffix = self.local_domain
        if suffix and host.endswith("." + suffix) and len(host) > len(suffix) + 1:
            host = host[: -len(suffix) - 1]
        return host

    @property
    def default(self) -> Profile:
        """The profile of unknown devices (the first profile if none is named)."""
        return self._default

    def profile_of(self, device: Device | None) -> Profile:
        """The device's profile, or the default profile (unknown device or profile)."""
        if device is None:
            return self.default
        return self.by_name.get(device.profile) or self.default

    def device(self, name: str) -> Device | None:
        for device in self.devices:
            if device.name == name:
                return device
        return None

    def identify(self, ip: str, mac: str | None = None, hostname: str | None = None) -> Device | None:
        """The device asking from ``ip``: by MAC first, then exact IP, then the longest
        matching prefix, then hostname; None when none matches (use ``default``).

        Results are memoised per (ip, mac, hostname): a query costs one dict lookup.
        """
        key = (ip, mac, hostname)
        cache = self._cache
        try:
            return cache[key]
        except KeyError:
            pass
        found = self._identify(ip, mac, hostname)
        if len(cache) >= 4096:  # addresses churn (privacy extensions); stay bounded
            cache.clear()
        cache[key] = found
        return found

    def _identify(self, ip: str, mac: str | None, hostname: str | None) -> Device | None:
        if mac:
            device = self._by_mac.get(_device_dict_key(mac))
            if device is not None:
                return device
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            address = None
        if address is not None:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            device = self._by_ip.get(str(address))
            if device is not None:
                return device
            for network, device in self._prefixes:
                if address.version == network.version and address in network:
                    return device
        if hostname and self._by_host:
            # Exact names only ("dads-laptop.evil" is not "dads-laptop").
            device = self._by_host.get(self._host_key(hostname))
            if device is not None:
                return device
        return None


# --- from and to plain data ---------------------------------------------------------


def template_key(name: str) -> str:
    """Templates are found by name regardless of case, spaces, '-' or '_'."""
    return "".join(ch for ch in name.lower() if ch.isalnum())




_PROFILE_KEYS = (
    "template",
    "categories",
    "services",
    "safe_search",
    "youtube",
    "block_mode",
    "bypass_protection",
    "deny",
    "allow",
    "schedules",
    "budgets",
)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _network(value: Any) -> Network | None:
    if value is None or value == "":
        return None
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    return ipaddress.ip_network(str(value), strict=False)


def _network_text(network: Network) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _schedule(raw: Mapping[str, Any], problems: list[str] | None = None, where: str = "") -> Schedule:
    block = raw.get("block", "all")
    days = _strings(raw.get("days"))
    return Schedule(
        name=str(raw["name"]),
        days=tuple(d.lower()[:3] for d in days),
        start=format_clock(parse_clock(str(raw["from"]))),
        end=format_clock(parse_clock(str(raw["to"]))),
        block="all" if block == "all" else _strings(block),
        allow=_domains(raw.get("allow"), f"{where}.allow", problems),
    )


def _domains(values: Any, where: str, problems: list[str] | None) -> tuple[str, ...]:
    """A list of domains; with ``problems`` a bad entry is left out and said (a stored
    household written by an older version keeps everything else), else ValueError."""
    out: list[str] = []
    for i, text in enumerate(_strings(values)):
        try:
            out.append(normalise_domain(text))
        except ValueError as exc:
            if problems is None:
                raise
            problems.append(f"{where}[{i}]: {exc}: left out")
    return tuple(out)


def _profile(raw: Mapping[str, Any], base: Mapping[str, Any], problems: list[str] | None = None,
             where: str = "") -> Profile:
    """A profile from its mapping, missing keys taken from the template ``base``; with
    ``problems``, a bad domain in its lists is left out and said there."""

    def get(key: str, default: Any) -> Any:
        if key in raw:
            return raw[key]
        return base.get(key, default)

    youtube = str(get("youtube", "off"))
    block_mode = str(get("block_mode", "nxdomain"))
    if youtube not in YOUTUBE_MODES:
        raise ValueError(f"youtube is one of {', '.join(YOUTUBE_MODES)}, not {youtube!r}")
    if block_mode not in BLOCK_MODES:
        raise ValueError(f"block_mode is one of {', '.join(BLOCK_MODES)}, not {block_mode!r}")
    return Profile(
        name=str(raw["name"]),
        template=str(raw.get("template") or ""),
        categories=_strings(get("categories", ())),
        services=_strings(get("services", ())),
        safe_search=bool(get("safe_search", False)),
        youtube=youtube,  # type: ignore[arg-type]  # checked above
        block_mode=block_mode,  # type: ignore[arg-type]
        bypass_protection=bool(get("bypass_protection", False)),
        deny=_domains(get("deny", ()), f"{where}.deny", problems),
        allow=_domains(get("allow", ()), f"{where}.allow", problems),
        schedules=tuple(_schedule(s, problems, f"{where}.schedules[{i}]") for i, s in enumerate(get("schedules", ()) or ())),
        budgets=tuple(Budget(str(b["target"]), int(b["minutes"])) for b in get("budgets", ()) or ()),
    )


def household_from_config(
    data: Mapping[str, Any] | None,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    categories: Collection[str] | None = None,
    services: Collection[str] | None = None,
) -> tuple[Household, list[str]]:
    """Build the household from the config's ``household:`` mapping.

    ``templates`` maps a template name (Young child, Teen, Adult, Guest) to profile
    keys; a profile's own keys win over its template's (None: templates unknown, a
    profile's ``template`` is then only kept as its label, as on import of an export,
    which spells every key out). ``categories``/``services``
    are the known ids (None: not checked). Returns the household and the problems
    found, each "household.<path>: what" (the caller adds FILE:LINE); a broken
    profile or device is left out, never guessed.
    """
    data = data or {}
    problems: list[str] = []
    taken: set[str] = set()  # profile and device ids given so far
    by_template = {template_key(name): value for name, value in (templates or {}).items()}
    profiles: list[Profile] = []
    for i, raw in enumerate(data.get("profiles", ()) or ()):
        where = f"household.profiles[{i}]"
        base: Mapping[str, Any] = {}
        template = raw.get("template")
        if template:
            found = by_template.get(template_key(str(template)))
            if found is None and templates is not None:
                known = ", ".join(sorted(str(t) for t in (templates or {}))) or "none loaded"
                problems.append(f"{where}.template: unknown template {template!r} (known: {known})")
            elif found is not None:
                base = found
        try:
            profile = _profile(raw, base, problems, where)
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        if profile.name in {p.name for p in profiles}:
            problems.append(f"{where}.name: profile {profile.name!r} is given twice")
            continue
        profile = replace(profile, id=_take_id(raw, "p", profile.name, taken, where, problems))
        problems.extend(_check_ids(profile, where, categories, services))
        profiles.append(profile)
    names = {p.name for p in profiles}
    devices: list[Device] = []
    for i, raw in enumerate(data.get("devices", ()) or ()):
        where = f"household.devices[{i}]"
        try:
            device = Device(
                name=str(raw["name"]),
                profile=str(raw["profile"]),
                mac=_device_dict_key(str(raw["mac"])) if raw.get("mac") else None,
                ip=_network(raw.get("ip")),
                hostname=str(raw["hostname"]) if raw.get("hostname") else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        device = replace(device, id=_take_id(raw, "d", device.name, taken, where, problems))
        if device.profile not in names:
            problems.append(f"{where}.profile: unknown profile {device.profile!r}")
        if not (device.mac or device.ip or device.hostname):
            problems.append(f"{where}: give a mac, ip or hostname to recognise the device")
        devices.append(device)
    default = str(data.get("default_profile") or "")
    local_domain = str(data.get("local_domain") or "").strip().lower().strip(".")
    if default and default not in names:
        problems.append(f"household.default_profile: unknown profile {default!r}")
    household = Household(
        profiles=tuple(profiles),
        devices=tuple(devices),
        default_profile=default,
        session_gap_minutes=int(data.get("session_gap_minutes", DEFAULT_SESSION_GAP)),
        local_domain=local_domain,
    )
    return household, problems


def _check_ids(
    profile: Profile, where: str, categories: Collection[str] | None, services: Collection[str] | None
) -> Iterable[str]:
    if categories is not None:
        for cid in profile.categories:
            if cid not in categories:
                yield f"{where}.categories: unknown category {cid!r}"
    if services is not None:
        for sid in profile.services:
            if sid not in services:
                yield f"{where}.services: unknown service {sid!r}"
    if categories is None or services is None:
        return
    for j, sched in enumerate(profile.schedules):
        if sched.block != "all":
            for target in sched.block:
                if target not in categories and target not in services:
                    yield f"{where}.schedules[{j}].block: unknown category or service {target!r}"
    for j, budget in enumerate(profile.budgets):
        if budget.target not in categories and budget.target not in services:
            yield f"{where}.budgets[{j}].target: unknown category or service {budget.target!r}"


def household_to_dict(household: Household) -> dict[str, Any]:
    """The household as plain data (str/int/bool/list/dict) in the config's shape.

    Every profile key is written out (templates already applied), so reading it back
    gives an equal household whatever the templates say by then.
    """
    profiles: list[dict[str, Any]] = []
    for p in household.profiles:
        item: dict[str, Any] = {"name": p.name}
        if p.id:
            item["id"] = p.id
        if p.template:
            item["template"] = p.template
        item.update(
            categories=list(p.categories),
            services=list(p.services),
            safe_search=p.safe_search,
            youtube=p.youtube,
            block_mode=p.block_mode,
            bypass_protection=p.bypass_protection,
            deny=list(p.deny),
            allow=list(p.allow),
            schedules=[
                {
                    "name": s.name,
                    "days": list(s.days),
                    "from": s.start,
                    "to": s.end,
                    "block": "all" if s.block == "all" else list(s.block),
                    **({"allow": list(s.allow)} if s.allow else {}),
                }
                for s in p.schedules
            ],
            budgets=[{"target": b.target, "minutes": b.minutes} for b in p.budgets],
        )
        profiles.append(item)
    devices: list[dict[str, Any]] = []
    for d in household.devices:
        item = {"name": d.name}
        if d.id:
            item["id"] = d.id
        if d.mac:
            item["mac"] = d.mac
        if d.ip is not None:
            item["ip"] = _network_text(d.ip)
        if d.hostname:
            item["hostname"] = d.hostname
        item["profile"] = d.profile
        devices.append(item)
    out: dict[str, Any] = {}
    if household.default_profile:
        out["default_profile"] = household.default_profile
    out["profiles"] = profiles
    out["devices"] = devices
    out["session_gap_minutes"] = household.session_gap_minutes
    if household.local_domain:
        out["local_domain"] = household.local_domain
    return out


def override_to_dict(override: Override) -> dict[str, Any]:
    """An override as plain data (for the store and export)."""
    out: dict[str, Any] = {
        "kind": override.kind,
        "target": override.target,
        "until": override.until,
        "created": override.created,
    }
    if override.domain:
        out["domain"] = override.domain
    return out


def override_from_dict(data: Mapping[str, Any]) -> Override:
    """Inverse of ``override_to_dict``; raises ValueError on a bad kind or domain."""
    kind = str(data["kind"])
    if kind not in OVERRIDE_KINDS:
        raise ValueError(f"override kind is one of {', '.join(OVERRIDE_KINDS)}, not {kind!r}")
    domain = normalise_domain(str(data.get("domain") or ""))
    if kind in ("allow-domain", "block-domain") and not domain:
        raise ValueError(f"a {kind} override needs a domain")
    return Override(
        kind=kind,  # type: ignore[arg-type]  # checked above
        target=str(data["target"]),
        until=float(data["until"]),
        created=float(data["created"]),
        domain=domain,
    )
