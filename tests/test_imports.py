"""Every module of the package imports on its own in a fresh interpreter (no import-order
luck, no circle), and the DNS process's modules leave aiohttp (13 MB, the dashboard's and
the list downloads' library) and SQLAlchemy (the writer's) unloaded: a house without DNS
over HTTPS never pays for them in the process that answers."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import guardian

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps({lib: lib in sys.modules for lib in ("aiohttp", "sqlalchemy", "apscheduler")}))
"""

# The modules the DNS process (guardian run's loop) imports to answer, and what each must
# leave out. aiohttp comes only with a DoH upstream, a list download or the dashboard's
# process; SQLAlchemy only in the writer's process and the read-only CLI reports.
DNS_SIDE = ("guardian.app", "guardian.dns", "guardian.policy", "guardian.household", "guardian.control")
NOT_IN_DNS_SIDE = ("aiohttp", "sqlalchemy")


def modules() -> list[str]:
    found = ["guardian"]
    for info in pkgutil.walk_packages(guardian.__path__, "guardian."):
        if not info.name.endswith(".__main__"):  # entry points: they run when imported
            found.append(info.name)
    return sorted(found)


def probe(name: str) -> tuple[str, int, str]:
    run = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=120)
    return name, run.returncode, run.stdout.strip() if run.returncode == 0 else run.stderr.strip()[-800:]


def test_every_module_imports_alone_and_the_dns_side_stays_light():
    names = modules()
    assert len(names) > 50  # the walk found the package, not an empty path
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(probe, names))
    failed = {name: out for name, code, out in results if code != 0}
    assert not failed, f"modules that do not import in a fresh interpreter: {failed}"
    heavy = {}
    for name, _code, out in results:
        loaded = json.loads(out)
        exempt = name.startswith(("guardian.dns.upstreams.doh", "guardian.lists"))
        if name.startswith(DNS_SIDE) and not exempt:
            extra = [lib for lib in NOT_IN_DNS_SIDE if loaded[lib]]
            if extra:
                heavy[name] = extra
    assert not heavy, f"DNS-side modules that load a library the answering process must not carry: {heavy}"


def test_every_top_level_module_has_its_place_in_the_layers_contract():
    """A module missing from setup.cfg's layers would escape the import-linter contract."""
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    listed = {name.strip() for line in cfg["importlinter:contract:layers"]["layers"].split("\n")
              for name in line.replace("|", ":").split(":") if name.strip()}
    top = {f"guardian.{info.name}" for info in pkgutil.iter_modules(guardian.__path__)}
    assert not top - listed, f"add these to the layers in setup.cfg: {sorted(top - listed)}"
