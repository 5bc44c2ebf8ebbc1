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
from pathlib import Path

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

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    listed = {name.strip() for line in cfg["importlinter:contract:layers"]["layers"].split("\n")
              for name in line.replace("|", ":").split(":") if name.strip()}
    top = {f"guardian.{info.name}" for info in pkgutil.iter_modules(guardian.__path__)}
    assert not top - listed, f"add these to the layers in setup.cfg: {sorted(top - listed)}"


# What the dashboard's process (`guardian web`) must never load: the DNS side's wire and
# capture libraries, the writer's SQLAlchemy, the daemon's scheduler; nor the whole CLI (its
# parser of every command and the action table), aiohttp's client side (it only serves) and
# OpenSSL (it never speaks TLS; hashlib uses the built-in digests).
NOT_IN_WEB_PROCESS = ("dnslib", "scapy", "sqlalchemy", "apscheduler", "guardian.household", "aiohttp.client",
                      "aiohttp.connector", "aiohttp.cookiejar")
NOT_MAPPED_IN_WEB_PROCESS = ("libssl", "libcrypto", "/_ssl.", "/_hashlib.")  # OpenSSL and Python's modules of it


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _web_process_imports(entry: list[str], config: str, port: int) -> tuple[set[str], str]:
    """The modules a real `guardian web` imported by the time it answered /healthz (-X importtime:
    a halted import, None in sys.modules, is listed too) and the files it had mapped then."""
    import time
    import urllib.error
    import urllib.request

    err = Path(config).with_suffix(".imports")
    with err.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", *entry, "web", "--config", config],
                                stdout=subprocess.DEVNULL, stderr=sink)
        try:
            end = time.monotonic() + 60
            while True:
                try:  # no daemon runs: 503, "status": "down"; an answer all the same
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()
                    break
                except urllib.error.HTTPError as answer:
                    assert answer.code == 503, answer
                    break
                except OSError:
                    assert proc.poll() is None, err.read_text()[-2000:]
                    assert time.monotonic() < end, "guardian web did not answer /healthz within 60 s"
                    time.sleep(0.1)
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        finally:
            proc.terminate()
            proc.wait(20)
    lines = err.read_text().splitlines()
    return {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}, maps


def test_the_dashboard_process_loads_neither_the_dns_side_nor_the_cli(tmp_path):
    port = _free_port()
    config = tmp_path / "guardian.yaml"
    config.write_text(f"""
dns: {{listen: ["127.0.0.1:{_free_port()}"], upstreams: ["udp://127.0.0.1:9"]}}
dashboard: {{listen: ["127.0.0.1:{port}"]}}
data_dir: {tmp_path / "var"}
household: {{default_profile: Adult, profiles: [{{name: Adult}}]}}
""")
    script = str(Path(sys.executable).parent / "guardian")  # the console script the unit runs
    for entry in (["-m", "guardian"], [script]):  # guardian run starts `python -m guardian web`
        loaded, maps = _web_process_imports(entry, str(config), port)
        assert "guardian.web.app" in loaded and "aiohttp.web" in loaded  # it did import and serve
        assert not loaded & set(NOT_IN_WEB_PROCESS), (entry, sorted(loaded & set(NOT_IN_WEB_PROCESS)))
        mapped = [line.split()[-1] for line in maps.splitlines() if any(lib in line for lib in NOT_MAPPED_IN_WEB_PROCESS)]
        assert not mapped, (entry, sorted(set(mapped)))
