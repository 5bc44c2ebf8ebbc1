"""The store's tables as SQLAlchemy Core objects (the current schema version).

The DDL that creates them lives in ``db.MIGRATIONS`` as ordered, frozen steps; these
objects are what the writer and readers build statements from, and a test checks the two
agree.

Layout (in the style of Pi-hole FTL): the raw ``queries`` log holds integer ids into
``domains``, ``clients`` (ip + mac + device name) and ``labels`` (every low-cardinality
text: action, source, reason, category, service, list, rule, schedule, threat, severity,
profile). Rollups, written by the writer in the same transaction as the raw rows, answer
the dashboard without scanning the log:
- ``hourly``: query counts per hour, client, profile, category, service and action;
- ``blocked_hourly``: blocked counts per hour, domain, client and profile;
- ``usage_hourly``: estimated active minutes per local day and hour, profile and target;
- ``daily``, ``daily_services``, ``blocked_daily``: the hourly counts summed per local day of
  the household's zone (``day`` = epoch second of the day's first hour; see days.py), per
  client, profile, category or service, and action, and blocked per domain and profile:
  the 7- and 30-day questions read these. ``settings.daily_zone`` names the zone they are
  kept in (no row: not built yet); ``blocked_totals``: blocked per domain over everything
  kept (the bound that lets the 30-day top blocked look at a few hundred domains).
The device registry (``devices``, ``device_addresses``) is discovery's: one row per
device (its current MAC; earlier private MACs in ``macs``) and one per address it holds.
In rollups 0 stands for "none" (NULLs would defeat the primary keys). ``hour`` is the
epoch second at the start of a UTC-aligned hour.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, Table, Text

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),  # ids_generation: bumped when ids are deleted
    Column("value", Integer, nullable=False),
    sqlite_with_rowid=False,
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("text", Text, nullable=False, unique=True),
)

domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
)

clients = Table(
    "clients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ip", Text, nullable=False),
    Column("mac", Text, nullable=False, server_default=""),  # "" = unknown (NULLs defeat UNIQUE)
    Column("device", Text, nullable=False, server_default=""),
    Column("first_seen", Float),  # epoch seconds
)

queries = Table(
    "queries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("time", Float, nullable=False),  # epoch seconds
    Column("client_id", Integer),  # NULL in anonymous mode
    Column("profile_id", Integer),
    Column("domain_id", Integer, nullable=False),
    Column("qtype", Integer, nullable=False),
    Column("action_id", Integer, nullable=False),
    Column("rcode", Integer, nullable=False),
    Column("source_id", Integer),
    Column("reason_id", Integer),
    Column("category_id", Integer),
    Column("service_id", Integer),
    Column("list_id", Integer),
    Column("rule_id", Integer),
    Column("schedule_id", Integer),
    Column("threat_id", Integer),
    Column("severity_id", Integer),
    Column("duration_ms", Float),
    Index("queries_time", "time"),
    Index("queries_client_time", "client_id", "time"),
)

hourly = Table(
    "hourly",
    metadata,
    Column("hour", Integer, nullable=False),
    Column("client_id", Integer, nullable=False),
    Column("profile_id", Integer, nullable=False),
    Column("category_id", Integer, nullable=False),
    Column("service_id", Integer, nullable=False),
    Column("action_id", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("hour", "client_id", "profile_id", "category_id", "service_id", "action_id"),
    sqlite_with_rowid=False,
)

blocked_hourly = Table(
    "blocked_hourly",
    metadata,
    Column("hour", Integer, nullable=False),
    Column("domain_id", Integer, nullable=False),
    Column("client_id", Integer, nullable=False),
    Column("profile_id", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("hour", "domain_id", "client_id", "profile_id"),
    sqlite_with_rowid=False,
)

usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("day", Text, nullable=False),  # local day, YYYY-MM-DD
    Column("hour", Integer, nullable=False),  # local hour 0..23
    Column("profile", Text, nullable=False),
    Column("target", Text, nullable=False),  # category or service
    Column("minutes", Integer, nullable=False),
    PrimaryKeyConstraint("day", "profile", "target", "hour"),
    sqlite_with_rowid=False,
)

settings = Table(
    "settings",
    metadata,
    Column("key", Text, primary_key=True),  # daily_zone: the zone the daily rollups are kept in
    Column("value", Text, nullable=False),
    sqlite_with_rowid=False,
)

daily = Table(
    "daily",
    metadata,
    Column("day", Integer, nullable=False),
    Column("client_id", Integer, nullable=False),
    Column("profile_id", Integer, nullable=False),
    Column("category_id", Integer, nullable=False),
    Column("action_id", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("day", "client_id", "profile_id", "category_id", "action_id"),
    sqlite_with_rowid=False,
)

daily_services = Table(
    "daily_services",
    metadata,
    Column("day", Integer, nullable=False),
    Column("client_id", Integer, nullable=False),
    Column("profile_id", Integer, nullable=False),
    Column("service_id", Integer, nullable=False),
    Column("action_id", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("day", "client_id", "profile_id", "service_id", "action_id"),
    sqlite_with_rowid=False,
)

# Domain first: "these 400 domains over 30 days" seeks them (queries.top_blocked); the
# index by day serves a range of a few days.
blocked_daily = Table(
    "blocked_daily",
    metadata,
    Column("domain_id", Integer, nullable=False),
    Column("profile_id", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("domain_id", "profile_id", "day"),
    Index("blocked_daily_day", "day", "domain_id", "profile_id", "count"),  # a few days' rows, covering
    sqlite_with_rowid=False,
)

# blocked_hourly summed per domain over everything kept: an upper bound for any range.
blocked_totals = Table(
    "blocked_totals",
    metadata,
    Column("domain_id", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
)

risk_events = Table(
    "risk_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("first", Float, nullable=False),  # epoch seconds
    Column("last", Float, nullable=False),
    Column("device", Text),
    Column("client", Text),
    Column("profile", Text),
    Column("threat", Text),
    Column("category", Text),
    Column("service", Text),
    Column("severity", Text, nullable=False),
    Column("examples", Text, nullable=False, server_default=""),  # space-separated names
    Column("message", Text, nullable=False, server_default=""),
    Column("count", Integer, nullable=False),
    Column("state", Text, nullable=False, server_default="new"),  # new | seen | dismissed
    Index("risk_events_last", "last"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mac", Text, nullable=False, unique=True),  # current MAC, lowercase aa:bb:...
    Column("macs", Text, nullable=False, server_default=""),  # earlier (private) MACs, space-separated
    Column("name", Text, nullable=False, server_default=""),  # household name, hostname or vendor label
    Column("hostname", Text),  # DHCP option 12
    Column("vendor", Text, nullable=False, server_default="unknown"),  # from the MAC's OUI
    Column("vendor_class", Text),  # DHCP option 60
    Column("client_id", Text),  # DHCP option 61, hex
    Column("fingerprint", Text),  # DHCP option 55, comma-separated option numbers
    Column("random_mac", Integer, nullable=False, server_default="0"),  # locally administered bit
    Column("profile", Text),
    Column("interface", Text),
    Column("sources", Text, nullable=False, server_default=""),  # arp dhcp ndp neigh sweep dns, space-separated
    Column("first_seen", Float, nullable=False),  # epoch seconds
    Column("last_seen", Float, nullable=False),
    Column("announced", Integer, nullable=False, server_default="0"),  # new-device event sent
    Index("devices_last_seen", "last_seen"),
)

device_addresses = Table(
    "device_addresses",
    metadata,
    Column("ip", Text, primary_key=True),
    Column("device_id", Integer, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("device_addresses_device", "device_id"),
    sqlite_with_rowid=False,
)
