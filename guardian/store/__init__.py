"""The local event store: query log, risk events, usage, retention and privacy.

- ``Recorder`` (writer.py): what the DNS chain calls per query; batches to SQLite.
- ``StoreReader`` (queries.py): the dashboard's and CLI's questions, from rollups.
- ``Retention`` (retention.py): age limits and the size cap, run by a scheduler job.
- ``commands`` : ``guardian events`` / ``guardian stats`` output.
"""

from .db import DB_NAME, StoreError, open_database
from .records import QueryRecord, RiskEvent, StoredEvent
from .writer import Recorder

__all__ = ["DB_NAME", "QueryRecord", "Recorder", "RiskEvent", "StoreError", "StoredEvent", "open_database"]
