"""A telco's provisioning: /etc/guardian/provision.yaml and the drop-ins in provision.d/.

What a box ships with before any household touches it: the brand (dashboard, block page), the
upstreams, the national child helpline, the default profiles and the profile of unknown
devices, the settings the parents may not change ("managed by <brand>"), a hashed first-boot
setup code, privacy mode and retention, and whether the anonymous statistics are exported.

The files sit beside the configuration (``<config dir>/provision.yaml``, then
``provision.d/*.yaml`` in name order: a later file's key replaces an earlier one's; for
``brand``, ``helpline`` and ``privacy`` key by key; ``locked`` adds up). They are checked like
the configuration, every problem as FILE:LINE. :func:`apply_to` folds them into the settings:
provisioned values are the defaults under the configuration, and a locked key always comes
from provisioning. The household is seeded from the provisioned profiles only while no parent
has changed it (the household service's seed rule), so an upgrade keeps a family's choices.

``python -m guardian.provision hash-code`` turns a setup code into the ``setup_code_hash``
line (scrypt); :func:`verify_setup_code` checks a code typed on the first-run page.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .addresses import UpstreamSpec, parse_upstream
from .config import PROFILE_SCHEMA, Settings
from .errors import ConfigError
from .schema import Bad, Context, Loader, Parser, boolean, choice, converted, integer, listof, mapping, string

PROVISION_FILE = "provision.yaml"
DROP_IN_DIR = "provision.d"
MAX_LOGO_BYTES = 1_000_000
LOGO_TYPES = (".png", ".svg", ".jpg", ".jpeg", ".webp")

# What a telco may lock: parents see these as "managed by <brand>" and cannot change them.
LOCKABLE = ("upstreams", "profiles", "default_profile", "privacy.mode", "privacy.query_days",
            "privacy.event_days", "anonymous_stats")


@dataclass(frozen=True)
class Brand:
    name: str
    logo: Path | None = None
    colours: dict[str, str] = field(default_factory=dict)  # primary, accent, background, text: "#rrggbb"


@dataclass(frozen=True)
class Helpline:
    name: str
    phone: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Provision:
    """The merged provisioning; an empty one (no file) changes nothing."""

    sources: tuple[Path, ...] = ()
    brand: Brand | None = None
    upstreams: tuple[UpstreamSpec, ...] = ()
    helpline: Helpline | None = None
    profiles: tuple[dict[str, Any], ...] = ()
    default_profile: str | None = None
    locked: frozenset[str] = frozenset()
    setup_code_hash: str | None = None
    privacy: dict[str, Any] = field(default_factory=dict)  # mode, query_days, event_days
    anonymous_stats: bool | None = None

    def is_locked(self, key: str) -> bool:
        """Whether parents may not change ``key`` (one of LOCKABLE, e.g. "privacy.mode")."""
        return key in self.locked

    @property
    def managed_by(self) -> str:
        """The name the dashboard shows beside a locked setting."""
        return self.brand.name if self.brand is not None else "your provider"

    def household_seed(self) -> dict[str, Any] | None:
        """The household: section the provisioning seeds (None when it provisions none)."""
        if not self.profiles and self.default_profile is None:
            return None
        seed: dict[str, Any] = {}
        if self.profiles:
            seed["profiles"] = self.profiles
        if self.default_profile is not None:
            seed["default_profile"] = self.default_profile
        return seed


# -- the schema ---------------------------------------------------------------------------------

_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{1,30}")
_HASH = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def _colour(text: str) -> str:
    if not _COLOUR.fullmatch(text):
        raise ValueError(f"{text!r} is not a colour like #0055aa")
    return text.lower()


def _phone(text: str) -> str:
    if not _PHONE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a phone number (digits, spaces, + ( ) . / -)")
    return text.strip()


def _web_url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not a web address (https://...)")
    return text


def _code_hash(text: str) -> str:
    if not _HASH.fullmatch(text):
        raise ValueError("expected the output of 'python3 -m guardian.provision hash-code' "
                         "(scrypt$...); a setup code is never written in clear")
    return text


def _logo(base: Path) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> Path:
        text = string(node, path, ctx)
        logo = Path(text) if Path(text).is_absolute() else base / text
        if logo.suffix.lower() not in LOGO_TYPES:
            raise Bad(f"{text!r}: a logo is one of {', '.join(LOGO_TYPES)}", node)
        try:
            size = logo.stat().st_size
        except OSError as exc:
            raise Bad(f"{text!r}: cannot read: {exc.strerror or exc}", node) from None
        if size > MAX_LOGO_BYTES:
            raise Bad(f"{text!r}: {size:,} bytes, more than {MAX_LOGO_BYTES:,}", node)
        return logo
    return parse


def _schema(base: Path) -> Parser:
    return mapping({
        "brand": mapping({
            "name": string,
            "logo": _logo(base),
            "colours": mapping({k: converted(_colour) for k in ("primary", "accent", "background", "text")}),
        }),
        "upstreams": listof(converted(parse_upstream), allow_single=True),
        "helpline": mapping({"name": string, "phone": converted(_phone), "url": converted(_web_url)}),
        "profiles": listof(PROFILE_SCHEMA),
        "default_profile": string,
        "locked": listof(choice(*LOCKABLE), allow_single=True),
        "setup_code_hash": converted(_code_hash),
        "privacy": mapping({
            "mode": choice("full", "risks-only", "anonymous"),
            "query_days": integer(0, 3650),
            "event_days": integer(0, 3650),
        }),
        "anonymous_stats": boolean,
    })


def _key_lines(root: yaml.Node | None) -> dict[str, int]:
    """Line of each top-level key (and brand.name, helpline.name), for cross-checks."""
    lines: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            lines[str(key.value)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    lines[f"{key.value}.{sub.value}"] = sub.start_mark.line + 1
    return lines


def parse_file(text: str, filename: str, base: Path) -> tuple[dict[str, Any], dict[str, int], list[str]]:
    """One provisioning file -> (values, line of each key, problems as FILE:LINE)."""
    ctx = Context(filename)
    try:
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return {}, {}, [f"{filename}:{mark.line + 1 if mark else 1}: YAML syntax: {exc.problem or exc}"]
    except (yaml.YAMLError, RecursionError) as exc:
        return {}, {}, [f"{filename}:1: YAML: {exc}"]
    if root is None:
        return {}, {}, []
    try:
        values = _schema(base)(root, "", ctx)
    except Bad as bad:
        ctx.report(bad.node or root, "", str(bad))
        values = {}
    return values, _key_lines(root), ctx.problems


def files_for(config_path: str | os.PathLike[str]) -> list[Path]:
    """provision.yaml beside the configuration, then provision.d/*.yaml in name order."""
    here = Path(config_path).parent
    found = [here / PROVISION_FILE] if (here / PROVISION_FILE).is_file() else []
    drop_ins = here / DROP_IN_DIR
    if drop_ins.is_dir():
        found += sorted(p for p in drop_ins.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return found


def load(paths: list[Path]) -> Provision:
    """Read, check and merge these files. Raises ConfigError listing every problem."""
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}  # key -> "FILE:LINE" of the value that won
    problems: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{path}:1: cannot read: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{path}:1: not UTF-8 text")
            continue
        values, lines, found = parse_file(text, str(path), path.parent)
        problems += found
        for key, value in values.items():
            if key in ("brand", "helpline", "privacy"):
                merged[key] = {**merged.get(key, {}), **value}
                for sub in value:
                    where[f"{key}.{sub}"] = f"{path}:{lines.get(f'{key}.{sub}', 1)}"
            elif key == "locked":
                merged[key] = (*merged.get(key, ()), *value)
            else:
                merged[key] = value
            where[key] = f"{path}:{lines.get(key, 1)}"
    problems += _cross_check(merged, where)
    if problems:
        raise ConfigError(problems)
    return _build(tuple(paths), merged)


def _cross_check(merged: dict[str, Any], where: dict[str, str]) -> list[str]:
    problems = []
    if "brand" in merged and "name" not in merged["brand"]:
        problems.append(f"{where['brand']}: brand: missing required key 'name'")
    if "helpline" in merged:
        helpline = merged["helpline"]
        if "name" not in helpline:
            problems.append(f"{where['helpline']}: helpline: missing required key 'name'")
        if "phone" not in helpline and "url" not in helpline:
            problems.append(f"{where['helpline']}: helpline: give a phone number, a web address, or both")
    names = [p["name"] for p in merged.get("profiles", ()) if "name" in p]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"{where['profiles']}: profiles: {name!r} given twice")
    default = merged.get("default_profile")
    if default is not None and names and default not in names:
        problems.append(f"{where['default_profile']}: default_profile: {default!r} is not one of the profiles "
                        f"({', '.join(names)})")
    for key in dict.fromkeys(merged.get("locked", ())):
        section, _, sub = key.partition(".")
        provisioned = sub in merged.get(section, {}) if sub else section in merged
        if not provisioned:
            problems.append(f"{where['locked']}: locked: {key!r} is locked but not provisioned "
                            "(a locked setting needs its value here)")
    return problems


def _build(sources: tuple[Path, ...], merged: dict[str, Any]) -> Provision:
    brand = merged.get("brand")
    helpline = merged.get("helpline")
    return Provision(
        sources=sources,
        brand=Brand(brand["name"], brand.get("logo"), dict(brand.get("colours", {}))) if brand else None,
        upstreams=tuple(merged.get("upstreams", ())),
        helpline=Helpline(helpline["name"], helpline.get("phone"), helpline.get("url")) if helpline else None,
        profiles=tuple(merged.get("profiles", ())),
        default_profile=merged.get("default_profile"),
        locked=frozenset(merged.get("locked", ())),
        setup_code_hash=merged.get("setup_code_hash"),
        privacy=dict(merged.get("privacy", {})),
        anonymous_stats=merged.get("anonymous_stats"),
    )


def load_for(config_path: str | os.PathLike[str]) -> Provision:
    """The provisioning that goes with this configuration file (empty when there is none)."""
    return load(files_for(config_path))


# -- folding it into the settings ------------------------------------------------------------------

def _config_keys(settings: Settings) -> set[str]:
    """The keys the configuration file itself sets ("dns.upstreams", "privacy.mode", "household")."""
    if settings.path is None:
        return set()
    try:
        data = yaml.safe_load(settings.path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return set()
    keys = set()
    if isinstance(data, dict):
        for key, value in data.items():
            keys.add(str(key))
            if isinstance(value, dict):
                keys.update(f"{key}.{sub}" for sub in value)
    return keys


def apply_to(settings: Settings, provision: Provision) -> Settings:
    """Settings with the provisioning folded in: its values where the configuration sets none,
    and always for a locked key."""
    if not provision.sources:
        return settings
    given = _config_keys(settings)

    def wins(lock: str, config_key: str) -> bool:
        return lock in provision.locked or config_key not in given

    dns, privacy, store = settings.dns, settings.privacy, settings.store
    if provision.upstreams and wins("upstreams", "dns.upstreams"):
        dns = dataclasses.replace(dns, upstreams=provision.upstreams)
    if "mode" in provision.privacy and wins("privacy.mode", "privacy.mode"):
        privacy = dataclasses.replace(privacy, mode=provision.privacy["mode"])
    if provision.anonymous_stats is not None and wins("anonymous_stats", "privacy.anonymous_stats"):
        privacy = dataclasses.replace(privacy, anonymous_stats=provision.anonymous_stats)
    for key in ("query_days", "event_days"):
        if key in provision.privacy and wins(f"privacy.{key}", f"store.{key}"):
            store = dataclasses.replace(store, **{key: provision.privacy[key]})
    household = settings.household
    seed = provision.household_seed()
    if seed is not None and (household is None or "profiles" in provision.locked):
        household = {**(household or {}), **seed}
    return dataclasses.replace(settings, dns=dns, privacy=privacy, store=store, household=household)


# -- the setup code ---------------------------------------------------------------------------------

_N, _R, _P = 2**14, 8, 1  # scrypt: 16 MiB, ~50 ms on a Pi 4


def hash_setup_code(code: str) -> str:
    """The ``setup_code_hash`` value for ``code`` (a fresh random salt each time)."""
    if len(code.strip()) < 6:
        raise ValueError("a setup code has at least 6 characters")
    salt = secrets.token_bytes(16)
    digest = _scrypt()(_normal(code), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_setup_code(stored: str, code: str) -> bool:
    """Whether ``code`` (as typed: case, spaces and dashes do not matter) matches ``stored``."""
    found = _HASH.fullmatch(stored)
    if not found:
        return False
    n, r, p = (int(x) for x in found.group(1, 2, 3))
    if n > 2**20 or r > 32 or p > 16:
        return False  # not ours: refuse rather than spend the box's memory
    salt, expected = base64.b64decode(found.group(4)), base64.b64decode(found.group(5))
    digest = _scrypt()(_normal(code), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**27)
    return hmac.compare_digest(digest, expected)


def _scrypt() -> Callable[..., bytes]:
    """hashlib.scrypt, or OpenSSL's own where hashlib was imported without OpenSSL (the
    dashboard's process keeps it out until a setup code is typed: guardian/web/__init__.py)."""
    scrypt: Callable[..., bytes] | None = getattr(hashlib, "scrypt", None)
    if scrypt is None:
        import _hashlib

        scrypt = _hashlib.scrypt
    return scrypt


def _normal(code: str) -> bytes:
    """A code as printed on a box label: 'ab12-cd34' and 'AB12 CD34' are the same code."""
    return re.sub(r"[\s-]", "", code).upper().encode()


def main(argv: list[str] | None = None) -> int:
    """``python3 -m guardian.provision hash-code``: read a code, print its setup_code_hash line."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["hash-code"]:
        print("usage: python3 -m guardian.provision hash-code   (reads the code from standard input)",
              file=sys.stderr)
        return 2
    code = sys.stdin.readline().strip() if not sys.stdin.isatty() else __import__("getpass").getpass("setup code: ")
    try:
        print(f"setup_code_hash: \"{hash_setup_code(code)}\"")
    except ValueError as exc:
        print(f"guardian: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
