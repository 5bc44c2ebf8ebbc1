"""A telco's provisioning (provision.yaml + provision.d/): checked by check-config with
FILE:LINE problems, folded into the settings, seeding the household on first boot only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import Running, free_port

from guardian import config, provision
from guardian.errors import ConfigError

GUARDIAN = [sys.executable, "-m", "guardian"]
HASH = provision.hash_setup_code("K7Q2-9XWM")

GOOD = f"""\
brand:
  name: Telco Kids
  logo: logo.svg
  colours: {{primary: "#0055AA", accent: "#fa0"}}
upstreams: [udp://127.0.0.1:9]
helpline: {{name: Childline, phone: "0800 1111", url: "https://www.childline.org.uk/"}}
profiles:
  - {{name: Kid, template: Young child}}
  - {{name: Grown, template: Adult}}
default_profile: Kid
locked: [upstreams, privacy.mode]
setup_code_hash: "{HASH}"
privacy: {{mode: risks-only, query_days: 3, event_days: 30}}
anonymous_stats: true
"""


def write(tmp_path: Path, provision_text: str, config_text: str = "data_dir: ./var\n",
          drop_ins: dict[str, str] | None = None) -> Path:
    (tmp_path / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    cfg = tmp_path / "guardian.yaml"
    cfg.write_text(config_text)
    (tmp_path / "provision.yaml").write_text(provision_text)
    for name, text in (drop_ins or {}).items():
        (tmp_path / "provision.d").mkdir(exist_ok=True)
        (tmp_path / "provision.d" / name).write_text(text)
    return cfg


def check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARDIAN, "check-config", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=60)


def test_a_good_file_passes_check_config_and_is_read_whole(tmp_path):
    cfg = write(tmp_path, GOOD)
    result = check_config(cfg)
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'provision.yaml'}: OK (provisioning)" in result.stdout
    prov = provision.load_for(cfg)
    assert prov.brand == provision.Brand("Telco Kids", tmp_path / "logo.svg", {"primary": "#0055aa",
                                                                               "accent": "#fa0"})
    assert prov.helpline == provision.Helpline("Childline", "0800 1111", "https://www.childline.org.uk/")
    assert prov.managed_by == "Telco Kids" and prov.is_locked("upstreams") and not prov.is_locked("profiles")
    assert [p["name"] for p in prov.profiles] == ["Kid", "Grown"] and prov.default_profile == "Kid"
    assert provision.verify_setup_code(prov.setup_code_hash or "", "k7q2 9xwm")  # as typed from the label
    assert not provision.verify_setup_code(prov.setup_code_hash or "", "K7Q2-9XWN")
    assert "K7Q2" not in (tmp_path / "provision.yaml").read_text()


def test_provisioning_fills_the_settings_and_locked_keys_win_over_the_config(tmp_path):
    cfg = write(tmp_path, GOOD, "data_dir: ./var\ndns:\n  upstreams: [udp://198.51.100.1:53]\n"
                                "privacy:\n  mode: full\nstore:\n  query_days: 10\n")
    settings = config.load(cfg)
    assert [u.url for u in settings.dns.upstreams] == ["udp://127.0.0.1:9"]  # locked: the telco's
    assert settings.privacy.mode == "risks-only"  # locked
    assert settings.store.query_days == 10  # not locked: the config's own value stays
    assert settings.store.event_days == 30 and settings.privacy.anonymous_stats is True  # provisioned defaults
    assert settings.household == {"profiles": provision.load_for(cfg).profiles, "default_profile": "Kid"}


def test_drop_ins_override_key_by_key_in_name_order(tmp_path):
    cfg = write(tmp_path, GOOD, drop_ins={
        "20-region.yaml": "helpline: {phone: '116 111'}\nlocked: [anonymous_stats]\n",
        "10-brand.yaml": "brand: {name: Telco Junior}\nanonymous_stats: false\n",
    })
    prov = provision.load_for(cfg)
    assert prov.brand is not None and prov.brand.name == "Telco Junior" and prov.brand.colours["primary"] == "#0055aa"
    assert prov.helpline == provision.Helpline("Childline", "116 111", "https://www.childline.org.uk/")
    assert prov.locked == {"upstreams", "privacy.mode", "anonymous_stats"} and prov.anonymous_stats is False


BAD = [
    ("unknown key", "brand:\n  name: T\n  slogan: hi\n", 3, "brand.slogan: unknown key"),
    ("bad colour", "brand:\n  name: T\n  colours: {primary: blue}\n", 3, "'blue' is not a colour"),
    ("missing logo", "brand:\n  name: T\n  logo: nowhere.png\n", 3, "'nowhere.png': cannot read"),
    ("logo type", "brand:\n  name: T\n  logo: guardian.yaml\n", 3, "a logo is one of"),
    ("brand without name", "\nbrand: {colours: {primary: '#000'}}\n", 2, "brand: missing required key 'name'"),
    ("bad upstream", "upstreams: [ftp://1.2.3.4]\n", 1, "upstreams[0]"),
    ("helpline url", "helpline:\n  name: H\n  url: childline\n", 3, "is not a web address"),
    ("helpline phone", "helpline:\n  name: H\n  phone: call us\n", 3, "is not a phone number"),
    ("helpline empty", "helpline:\n  name: H\n", 1, "give a phone number, a web address, or both"),
    ("default profile", "profiles:\n  - {name: Kid}\ndefault_profile: Teen\n", 3, "'Teen' is not one of the profiles"),
    ("profile key", "profiles:\n  - name: Kid\n    colour: red\n", 3, "profiles[0].colour: unknown key"),
    ("twice", "profiles:\n  - {name: Kid}\n  - {name: Kid}\n", 1, "'Kid' given twice"),
    ("lock unknown", "locked: [dns.listen]\n", 1, "'dns.listen' is not one of"),
    ("lock unprovisioned", "\nlocked: [upstreams]\n", 2, "'upstreams' is locked but not provisioned"),
    ("clear code", "setup_code_hash: K7Q2-9XWM\n", 1, "a setup code is never written in clear"),
    ("privacy mode", "privacy:\n  mode: paranoid\n", 2, "'paranoid' is not one of"),
    ("retention", "privacy:\n  query_days: -1\n", 2, "out of range"),
    ("stats", "anonymous_stats: maybe\n", 1, "expected true or false"),
    ("yaml", "brand:\n  name: [unclosed\n", 3, "YAML syntax"),
]


@pytest.mark.parametrize(("text", "line", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_kind_of_bad_file_is_reported_with_file_and_line(tmp_path, text, line, message):
    cfg = write(tmp_path, text)
    result = check_config(cfg)
    assert result.returncode == 1
    assert f"{tmp_path / 'provision.yaml'}:{line}: " in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_drop_in_names_its_own_file(tmp_path):
    cfg = write(tmp_path, GOOD, drop_ins={"50-x.yaml": "anonymous_stats: true\nbrand: {name: X, logo: a.gif}\n"})
    with pytest.raises(ConfigError) as caught:
        provision.load_for(cfg)
    assert caught.value.problems == [f"{tmp_path / 'provision.d' / '50-x.yaml'}:2: brand.logo: 'a.gif': a logo is one "
                                     "of .png, .svg, .jpg, .jpeg, .webp"]


def test_hash_code_command_never_prints_the_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "guardian.provision", "hash-code"], input="ab12-cd34\n",
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    line = result.stdout.strip()
    assert line.startswith('setup_code_hash: "scrypt$') and "ab12" not in line.lower()
    stored = line.split('"')[1]
    assert provision.verify_setup_code(stored, "AB12CD34")
    short = subprocess.run([sys.executable, "-m", "guardian.provision", "hash-code"], input="123\n",
                           capture_output=True, text=True, timeout=30)
    assert short.returncode == 1 and "at least 6 characters" in short.stderr


def _daemon(cfg: Path) -> Running:
    return Running(config.load(cfg))


def test_first_boot_seeds_the_household_and_an_upgrade_keeps_the_parents_choices(tmp_path):
    port = free_port()
    # No downloads of the rule packs' public lists: the daemon stays on loopback.
    base = f"data_dir: ./var\npack_lists: false\ndashboard: {{enabled: false}}\ndns:\n  listen: ['127.0.0.1:{port}']\n"
    cfg = write(tmp_path, GOOD.replace("locked: [upstreams, privacy.mode]\n", ""), base)
    first = _daemon(cfg)
    try:
        household = first.daemon.policy.current.household  # type: ignore[union-attr]
        assert [p.name for p in household.profiles] == ["Kid", "Grown"]
        first.call(_import(first, "household:\n  profiles:\n    - {name: Family, template: Adult}\n"
                                  "  default_profile: Family\n"))
    finally:
        first.stop()
    # The upgrade ships a new provisioning: the family's own household stays.
    (tmp_path / "provision.yaml").write_text(GOOD.replace("default_profile: Kid", "default_profile: Grown"))
    second = _daemon(cfg)
    try:
        household = second.daemon.policy.current.household  # type: ignore[union-attr]
        assert [p.name for p in household.profiles] == ["Family"]
    finally:
        second.stop()


async def _import(running: Running, text: str) -> None:
    assert running.daemon is not None
    running.daemon.household.import_(text)
