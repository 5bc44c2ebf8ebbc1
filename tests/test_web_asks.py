"""The requests file (data_dir/web/requests.db) on a fake clock: the limits, expiry after a
day unanswered, an answer only to an open request, retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian.web.asks import OPEN_SECONDS, AlreadyAsked, Asks, NotOpen, TooMany


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make(asks: Asks, name: str, asker: str = "d:Sam's tablet") -> int:
    return asks.create(asker=asker, device="Sam's tablet", client="192.168.1.23", profile="Sam", name=name,
                       rule=name, reason="category", category="gambling").id


def test_limits_expiry_answers_and_retention(tmp_path: Path) -> None:
    clock = Clock()
    asks = Asks(tmp_path, clock, retention_days=90)
    first = make(asks, "10bet.com")
    with pytest.raises(AlreadyAsked) as open_one:
        make(asks, "10bet.com")
    assert open_one.value.ask.id == first
    for name in ("a.example", "b.example", "c.example", "d.example"):
        make(asks, name)
    with pytest.raises(TooMany):
        make(asks, "e.example")
    make(asks, "e.example", asker="d:Other")  # another device has its own five
    clock.now += 3601
    assert asks.count_open() == 6
    declined = asks.decide(first, "declined", "Alex", message="Not now")
    assert declined.state == "declined" and declined.decided_by == "Alex" and declined.message == "Not now"
    with pytest.raises(NotOpen):
        asks.decide(first, "approved", "Alex")
    again = make(asks, "10bet.com")  # answered: the child may ask again (a new hour)
    clock.now += OPEN_SECONDS + 1
    assert asks.get(again) is not None and asks.count_open() == 0
    asks.expire()
    assert asks.get(again).state == "expired"  # type: ignore[union-attr]
    with pytest.raises(NotOpen):
        asks.decide(again, "approved", "Alex")
    clock.now += 91 * 86400
    asks.expire()
    assert asks.get(first) is None and asks.listing() == []


def test_an_approval_keeps_what_it_allowed_and_a_first_version_file_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from guardian.web.asks import MIGRATIONS

    path = tmp_path / "web" / "requests.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0][1])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO requests (key, time, asker, profile, name, rule, service, state)"
                 " VALUES ('k', 1799999000, 'd:Sam', 'Sam', 'i.ytimg.com', 'ytimg.com', 'youtube', 'approved')")
    conn.commit()
    conn.close()
    asks = Asks(tmp_path, Clock())
    old = asks.get(1)
    assert old is not None and old.name == "i.ytimg.com" and old.allowed == ""  # kept, nothing invented
    ident = make(asks, "www.youtube.com")
    assert asks.decide(ident, "approved", "Alex", None, "", "service").allowed == "service"
    assert asks.get(ident).as_dict()["allowed"] == "service"  # type: ignore[union-attr]
    declined = asks.decide(make(asks, "10bet.com"), "declined", "Alex", None, "", "service")
    assert declined.allowed == ""  # a decline allows nothing
    with pytest.raises(Exception, match="the rule or the service"):
        asks.decide(make(asks, "a.example"), "approved", "Alex", None, "", "everything")


STATE = {"household": {"profiles": [{"name": "Sam", "categories": ["gambling"], "services": ["youtube"]},
                                    {"name": "Both", "categories": ["video"], "services": ["youtube"]}]},
         "services": [{"id": "youtube", "name": "YouTube", "category": "video"}]}


@pytest.mark.parametrize(("profile", "service", "reason", "locked", "expected"), [
    ("Sam", "youtube", "service", False, "youtube"),  # the profile's own service block: off its services
    ("Both", "youtube", "service", False, ""),  # its category blocks it too: only the rule helps
    ("Sam", "youtube", "service", True, ""),  # the provisioning locks the profiles' filters
    ("Sam", "youtube", "schedule", False, ""),  # bedtime decided, not the service block
    ("Sam", "", "category", False, ""),
    ("Gone", "youtube", "service", False, ""),  # no such profile any more
])
def test_what_always_allows(tmp_path: Path, profile: str, service: str, reason: str, locked: bool,
                            expected: str) -> None:
    from guardian.web.asking import service_to_allow

    asks = Asks(tmp_path, Clock())
    made = asks.create(asker="d:Sam", device="Sam", client="", profile=profile, name="i.ytimg.com", rule="ytimg.com",
                       service=service, reason=reason)
    assert service_to_allow(made, STATE, locked) == expected
