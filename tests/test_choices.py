"""The parents' choices (guardian/choices.py): upstreams, privacy mode, retention and
time zone changed through the control socket (the dashboard's Settings) take effect at
once, are kept in data_dir/choices.yaml over guardian.yaml across a restart, never
over a provider's locked setting, and a wrong value changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fakedns import FakeDns
from support import ZONE, Running, dig, free_port

from guardian import choices
from guardian.config import load
from guardian.errors import ConfigError
from guardian.store.records import DB_NAME

CONFIG = """
# The operator's own words: never rewritten by the dashboard.
dns:
  listen: ["127.0.0.1:{dns}"]
  upstreams: [udp://127.0.0.1:{up}]
  rate_limit: 0
data_dir: {data}
timezone: Europe/Paris
store: {{flush_seconds: 0.2}}
household:
  default_profile: Adult
  profiles:
    - {{name: Child, categories: [adult]}}
    - {{name: Adult, categories: []}}
  devices:
    - {{name: Tablet, ip: 127.0.0.2, profile: Child}}
"""


@pytest.fixture
def second_upstream():
    fake = FakeDns(zone={k: [(t, v.replace("93.184", "93.185")) for t, v in r] for k, r in ZONE.items()}).start()
    yield fake
    fake.stop()


@pytest.fixture
def box(tmp_path: Path, upstream):
    config = tmp_path / "guardian.yaml"
    config.write_text(CONFIG.format(up=upstream.port, dns=free_port(), data=tmp_path / "var"))
    started: list[Running] = []

    def start() -> Running:
        running = Running(load(config))
        started.append(running)
        return running

    yield config, start
    for r in started:
        r.stop()


def upstream_port(config: Path) -> int:
    return int(config.read_text().split("udp://127.0.0.1:")[1].split("]")[0])


def act(home: Running, **payload):
    return home.call(home.daemon.control.handle(payload))


def test_a_new_upstream_answers_at_once_and_after_a_restart(box, second_upstream) -> None:
    config, start = box
    home = start()
    assert dig(home.port(), "example.com").values == ["93.184.216.34"]
    answer = act(home, action="settings-set", upstreams=[f"udp://127.0.0.1:{second_upstream.port}"])
    assert answer["ok"], answer
    assert dig(home.port(), "example.com").values == ["93.185.216.34"]  # the cache was not kept
    assert config.read_text() == CONFIG.format(up=upstream_port(config), dns=home.settings.dns.listen[0][1],
                                               data=home.settings.data_dir)  # guardian.yaml untouched
    stored = choices.path_for(home.settings.data_dir)
    assert f"127.0.0.1:{second_upstream.port}" in stored.read_text()
    assert oct(stored.stat().st_mode & 0o777) == "0o640"
    home.stop()
    again = start()
    assert [u.url for u in again.settings.dns.upstreams] == [f"udp://127.0.0.1:{second_upstream.port}"]
    assert dig(again.port(), "example.com").values == ["93.185.216.34"]


def test_a_wrong_value_is_refused_with_what_is_wrong_and_nothing_changes(box) -> None:
    _config, start = box
    home = start()
    before = [u.url for u in home.daemon.settings.dns.upstreams]
    for payload, words in (({"upstreams": ["ftp://nowhere"]}, "upstream"), ({"upstreams": []}, "at least one"),
                           ({"privacy": "everything"}, "privacy.mode"), ({"query_days": -3}, "query_days"),
                           ({"timezone": "Mars/Olympus"}, "timezone"), ({}, "say what to change")):
        answer = act(home, action="settings-set", **payload)
        assert not answer["ok"] and words in str(answer), (payload, answer)
    assert [u.url for u in home.daemon.settings.dns.upstreams] == before
    assert not choices.path_for(home.settings.data_dir).exists()
    assert dig(home.port(), "example.com").status == "NOERROR"


def test_switching_to_anonymous_erases_who_asked_what_at_once(box) -> None:
    _config, start = box
    home = start()
    dig(home.port(), "example.com", source="127.0.0.2", tool="kdig")
    home.call(home.daemon.recorder.flush())
    db = home.settings.data_dir / DB_NAME
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM queries WHERE client_id IS NOT NULL").fetchone()[0] >= 1
    assert act(home, action="settings-set", privacy="anonymous", query_days=3, event_days=30)["ok"]
    assert home.daemon.settings.privacy.mode == "anonymous" and home.daemon.settings.store.query_days == 3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM queries WHERE client_id IS NOT NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM clients WHERE device != ''").fetchone()[0] == 0
    state = act(home, action="settings")["data"]
    assert state["privacy"] == "anonymous" and state["retention"]["query_days"] == 3


def test_a_time_zone_chosen_by_a_parent_is_the_households(box) -> None:
    _config, start = box
    home = start()
    assert act(home, action="settings-set", timezone="America/New_York")["ok"]
    assert act(home, action="state")["data"]["zone"] == "America/New_York"


def test_a_locked_setting_is_refused_and_a_stored_choice_does_not_beat_the_lock(box, tmp_path) -> None:
    config, start = box
    data = tmp_path / "var"
    data.mkdir(parents=True, exist_ok=True)
    choices.save(data, "privacy: {mode: anonymous}\n")  # chosen before the provider locked it
    (config.parent / "provision.yaml").write_text("privacy: {mode: risks-only}\nlocked: [privacy.mode]\n")
    home = start()
    assert home.daemon.settings.privacy.mode == "risks-only"
    answer = act(home, action="settings-set", privacy="full")
    assert not answer["ok"] and "cannot be changed here" in answer["error"]
    assert act(home, action="settings-set", query_days=2)["ok"]  # not locked


def test_a_broken_choices_file_is_reported_with_file_and_line(tmp_path: Path) -> None:
    choices.save(tmp_path, "store:\n  query_days: many\n")
    with pytest.raises(ConfigError) as err:
        choices.read(tmp_path)
    assert f"{tmp_path / 'choices.yaml'}:2:" in str(err.value) and "query_days" in str(err.value)


def test_settings_changes_and_the_operators_reseeds_are_in_the_audit_log(box) -> None:
    from guardian import audit
    from guardian.control import SOCKET_NAME, request

    config, start = box
    home = start()
    data = home.settings.data_dir
    answer = request(data / SOCKET_NAME, {"action": "settings-set", "upstreams": [home.settings.dns.upstreams[0].url],
                                          "query_days": 5}, timeout=30)
    assert answer["ok"], answer
    row = audit.read(data)[0]
    assert row["action"] == "settings-set" and row["account"].startswith("cli ")
    assert "query_days" in row["detail"] and "127.0.0.1" in row["detail"]
    config.write_text(config.read_text().replace("{name: Adult, categories: []}",
                                                 "{name: Adult, categories: [gambling]}"))
    home.call(home.daemon.reload(load(config)))
    row = audit.read(data)[0]
    assert (row["action"], row["account"]) == ("reseed", "config guardian.yaml")
