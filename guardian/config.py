"""The YAML configuration -> typed, frozen settings, or every problem as FILE:LINE.

Telcos write these keys into files they ship, so the names are a contract (see the
README's Configuration section). Unknown keys, wrong types and bad addresses are
errors reported with their line, never silently ignored; all problems are collected
so one run of ``guardian check-config`` shows them all.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .addresses import UpstreamSpec, parse_hostport, parse_upstream
from .errors import ConfigError
from .names import text_to_wire
from .schema import (
    Bad,
    Context,
    Loader,
    YamlTooBig,
    boolean,
    budget_schema,
    choice,
    converted,
    domain_name,
    http_url,
    integer,
    listof,
    mapping,
    number,
    optional_string,
    schedule_schema,
    string,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_CLIENTS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"]
DEFAULT_UPSTREAMS = ["udp://9.9.9.9:53", "tls://dns.quad9.net@9.9.9.9:853", "https://dns.quad9.net/dns-query"]


@dataclass(frozen=True)
class DnsSettings:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353), ("::1", 5353))
    upstreams: tuple[UpstreamSpec, ...] = tuple(parse_upstream(u) for u in DEFAULT_UPSTREAMS)
    bootstrap: tuple[UpstreamSpec, ...] = ()
    allow_clients: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in PRIVATE_CLIENTS)
    rate_limit: int = 1000
    upstream_timeout: float = 1.0
    max_inflight: int = 1024
    cache_size: int = 10_000
    min_ttl: int = 0
    max_ttl: int = 86_400
    negative_ttl: int = 3_600
    serve_stale: int = 86_400
    local_names: tuple[str, ...] = ("guardian.lan",)
    local_addresses: tuple[str, ...] = ()
    tls_ca_file: str | None = None
    tcp_idle_seconds: float = 10.0
    tcp_max_connections: int = 256
    tcp_message_seconds: float = 5.0  # a started TCP message must arrive whole within this
    tcp_max_per_client: int = 16  # TCP connections one client address may hold at once
    rebind_allow: tuple[str, ...] = ()  # domains whose private addresses pass the rebinding filter
    filtered_max_ttl: int = 300  # TTL cap of answers to profiles that filter anything

    @property
    def plain_resolvers(self) -> tuple[UpstreamSpec, ...]:
        """Plain DNS servers for Guardian's own lookups (DoH names, list hosts):
        ``bootstrap``, else the udp:// and tcp:// upstreams."""
        return self.bootstrap or tuple(u for u in self.upstreams if u.scheme in ("udp", "tcp"))


@dataclass(frozen=True)
class DashboardSettings:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 8080),)
    enabled: bool = True  # ``guardian run`` starts ``guardian web`` as a child
    hosts: tuple[str, ...] = ()  # more names the dashboard answers to (Host allow-list)
    # Who may read /metrics (a telco's Prometheus): loopback unless the operator widens it.
    metrics_allow: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    metrics_token: str | None = None  # when set, /metrics also needs "Authorization: Bearer <token>"
    blockpage_listen: tuple[tuple[str, int], ...] = ()  # the child-facing block page (port 80 on a Pi)


@dataclass(frozen=True)
class ListSettings:
    name: str
    category: str
    url: str | None = None
    path: str | None = None
    format: str = "auto"


@dataclass(frozen=True)
class StoreSettings:
    flush_seconds: float = 2.0
    queue_size: int = 20_000
    query_days: int = 7
    event_days: int = 90
    usage_days: int = 90
    max_mb: int = 512


@dataclass(frozen=True)
class PrivacySettings:
    mode: str = "full"
    anonymous_stats: bool = False


@dataclass(frozen=True)
class DiscoverySettings:
    interfaces: tuple[str, ...] = ()
    passive: bool = True
    sweep_minutes: int = 0


@dataclass(frozen=True)
class Settings:
    path: Path | None = None
    dns: DnsSettings = field(default_factory=DnsSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    data_dir: Path = Path("./var")
    timezone: str | None = None
    log_level: str = "info"
    lists: tuple[ListSettings, ...] = ()
    pack_lists: bool = True  # download the rule packs' public lists of the categories in use
    lists_allow_private_hosts: tuple[str, ...] = ()  # list hosts that may be loopback/LAN addresses
    store: StoreSettings = field(default_factory=StoreSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    household: dict[str, Any] | None = None
    household_line: int = 0

    @property
    def zone(self) -> ZoneInfo:
        """The household's time zone (the system's when none is set)."""
        if self.timezone:
            return ZoneInfo(self.timezone)
        return system_zone()


def system_zone() -> ZoneInfo:
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            name = str(Path("/etc/timezone").read_text().strip())
        except OSError:
            link = Path("/etc/localtime")
            name = str(link.resolve()).split("zoneinfo/", 1)[-1] if link.is_symlink() else "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")




def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or network (e.g. 192.168.0.0/16)") from None


def _metrics_token(text: str) -> str:
    if len(text) < 12 or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("needs at least 12 characters, no spaces (e.g. the output of: openssl rand -hex 16)")
    return text


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r} (e.g. Europe/Paris)") from None
    return text


def _local_name(text: str) -> str:
    text_to_wire(text)
    return text.lower().rstrip(".")


def _bootstrap(text: str) -> UpstreamSpec:
    spec = parse_upstream(text if "://" in text else f"udp://{text}")
    if spec.scheme not in ("udp", "tcp"):
        raise ValueError(f"{text!r}: a bootstrap resolver is plain DNS (an address, or udp:// / tcp://)")
    return spec


def _mac(text: str) -> str:
    cleaned = text.strip().lower().replace("-", ":")
    parts = cleaned.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ValueError(f"{text!r} is not a MAC address like aa:bb:cc:dd:ee:ff")
    return cleaned


def _list_entry(node: yaml.Node, path: str, ctx: Context) -> ListSettings | None:
    fields = mapping(
        {
            "name": string,
            "category": string,
            "url": converted(http_url),
            "path": string,
            "format": choice("auto", "domains", "hosts", "adblock", "sha256"),
        },
        required=("name", "category"),
    )(node, path, ctx)
    if "name" not in fields or "category" not in fields:
        return None
    if ("url" in fields) == ("path" in fields):
        raise Bad("give exactly one of url: or path:", node)
    return ListSettings(**fields)


def _list_host(text: str) -> str:
    """A host name or address as written in a list URL (``[fd00::5]`` or ``fd00::5``)."""
    host = text.strip().strip("[]").rstrip(".").lower()
    if not host or any(c in host for c in "/@ ?#") or ("." not in host and ":" not in host and host != "localhost"):
        raise ValueError(f"{text!r} is not a host name or address (e.g. lists.lan or 192.168.1.10)")
    return host


# One household profile: the config's household.profiles and the provisioning's profiles.
PROFILE_SCHEMA = mapping(
    {
        "name": string,
        "id": string,  # stable across renames; written by export, made from the name if missing
        "template": string,
        "categories": listof(string, allow_single=True),
        "services": listof(string, allow_single=True),
        "safe_search": boolean,
        "youtube": choice("off", "moderate", "strict"),
        "block_mode": choice("nxdomain", "null", "blockpage"),
        "bypass_protection": boolean,
        "deny": listof(converted(domain_name), allow_single=True),
        "allow": listof(converted(domain_name), allow_single=True),
        "schedules": listof(schedule_schema(string)),
        "budgets": listof(budget_schema(string)),
    },
    required=("name",),
)


SCHEMA = mapping(
    {
        "dns": mapping(
            {
                "listen": listof(converted(parse_hostport), allow_single=True),
                "upstreams": listof(converted(parse_upstream), allow_single=True),
                "bootstrap": listof(converted(_bootstrap), allow_single=True),
                "allow_clients": listof(converted(_network), allow_single=True),
                "rate_limit": integer(0, 10_000_000),
                "upstream_timeout": number(0.05, 30),
                "max_inflight": integer(1, 1_000_000),
                "cache_size": integer(0, 10_000_000),
                "min_ttl": integer(0, 86_400),
                "max_ttl": integer(1, 7 * 86_400),
                "negative_ttl": integer(0, 86_400),
                "serve_stale": integer(0, 7 * 86_400),
                "local_names": listof(converted(_local_name), allow_single=True),
                "local_addresses": listof(converted(_ip), allow_single=True),
                "tls_ca_file": optional_string,
                "tcp_idle_seconds": number(0.5, 3600),
                "tcp_max_connections": integer(1, 100_000),
                "tcp_message_seconds": number(0.1, 600),
                "tcp_max_per_client": integer(1, 100_000),
                "rebind_allow": listof(converted(domain_name), allow_single=True),
                "filtered_max_ttl": integer(1, 7 * 86_400),
            }
        ),
        "dashboard": mapping({"listen": listof(converted(parse_hostport), allow_single=True), "enabled": boolean,
                              "hosts": listof(converted(_local_name), allow_single=True),
                              "metrics_allow": listof(converted(_network), allow_single=True),
                              "metrics_token": converted(_metrics_token),
                              "blockpage_listen": listof(converted(parse_hostport), allow_single=True)}),
        "data_dir": string,
        "timezone": converted(_zone),
        "log_level": choice("debug", "info", "warning", "error"),
        "lists": listof(_list_entry),
        "pack_lists": boolean,
        "lists_allow_private_hosts": listof(converted(_list_host), allow_single=True),
        "store": mapping(
            {
                "flush_seconds": number(0.1, 600),
                "queue_size": integer(100, 10_000_000),
                "query_days": integer(0, 3650),
                "event_days": integer(0, 3650),
                "usage_days": integer(0, 3650),
                "max_mb": integer(10, 1_000_000),
            }
        ),
        "privacy": mapping({"mode": choice("full", "risks-only", "anonymous"), "anonymous_stats": boolean}),
        "discovery": mapping(
            {
                "interfaces": listof(string, allow_single=True),
                "passive": boolean,
                "sweep_minutes": integer(0, 10_080),
            }
        ),
        "household": mapping(
            {
                "default_profile": string,
                "profiles": listof(PROFILE_SCHEMA),
                "devices": listof(
                    mapping(
                        {
                            "name": string,
                            "id": string,
                            "mac": converted(_mac),
                            "ip": converted(_network),
                            "hostname": string,
                            "profile": string,
                        },
                        required=("name", "profile"),
                    )
                ),
                "session_gap_minutes": integer(1, 120),
                "local_domain": converted(domain_name),
            }
        ),
    }
)


def load(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a configuration file. Raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:1: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError:
        raise ConfigError([f"{path}:1: not UTF-8 text"]) from None
    settings = parse(text, str(path), base=path.parent)
    # A telco's provision.yaml (+ provision.d/) beside the file: checked here too, FILE:LINE.
    from . import choices
    from .provision import apply_to, load_for

    provision = load_for(path)
    # The parents' choices from the dashboard (data_dir/choices.yaml) over both, unless locked.
    return choices.apply(apply_to(settings, provision), choices.read(settings.data_dir), provision.locked)


def parse(text: str, filename: str = "<config>", base: Path | None = None) -> Settings:
    ctx = Context(filename)
    try:
        root = yaml.compose(text, Loader=Loader)
    except YamlTooBig as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError([f"{filename}:{line}: YAML refused: {exc.problem}"]) from None
    except RecursionError:  # not reached with MAX_YAML_DEPTH; never a traceback all the same
        raise ConfigError([f"{filename}:1: YAML refused: nested too deeply"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{filename}:{line}: YAML syntax: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}:1: YAML: {exc}"]) from None
    if root is None:
        values: dict[str, Any] = {}
    else:
        try:
            values = SCHEMA(root, "", ctx)
        except Bad as bad:
            ctx.report(bad.node or root, "", str(bad))
            values = {}
    dns = values.get("dns", {})
    for key, what in (("listen", "address"), ("upstreams", "upstream")):
        if key in dns and not dns[key] and not any(f"dns.{key}[" in p for p in ctx.problems):
            ctx.report(root, f"dns.{key}", f"at least one {what} is needed")
    if dns.get("min_ttl", 0) > dns.get("max_ttl", 86_400):
        ctx.report(root, "dns.min_ttl", "is larger than dns.max_ttl")
    household = values.get("household")
    household_line = root.start_mark.line + 1 if root is not None else 0
    if isinstance(root, yaml.MappingNode):
        for key_node, _value in root.value:
            if key_node.value == "household":
                household_line = key_node.start_mark.line + 1
    if ctx.problems:
        raise ConfigError(ctx.problems)
    base = base or Path.cwd()
    data_dir = Path(values.get("data_dir", "./var"))
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    return Settings(
        path=(base / Path(filename).name) if filename != "<config>" else None,
        dns=DnsSettings(**dns),
        dashboard=DashboardSettings(**values.get("dashboard", {})),
        data_dir=data_dir,
        timezone=values.get("timezone"),
        log_level=values.get("log_level", "info"),
        lists=tuple(x for x in values.get("lists", ()) if x is not None),
        pack_lists=values.get("pack_lists", True),
        lists_allow_private_hosts=values.get("lists_allow_private_hosts", ()),
        store=StoreSettings(**values.get("store", {})),
        privacy=PrivacySettings(**values.get("privacy", {})),
        discovery=DiscoverySettings(**values.get("discovery", {})),
        household=household,
        household_line=household_line,
    )
