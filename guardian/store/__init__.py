"""The local event store: query log, risk events, usage, retention and privacy.

- ``Recorder`` (recorder.py): what the DNS chain calls per query; batches to the writer.
- ``StoreWriter`` (writer.py): prepares and commits batches, in the writer process
  (process.py, ``python -m guardian.store``) or a thread.
- ``StoreReader`` (queries.py): the dashboard's and CLI's questions, from rollups.
- ``Retention`` (retention.py): age limits and the size cap, run hourly by the writer process.
- ``commands`` : ``guardian events`` / ``guardian stats`` output.

Names are imported on first use, so the DNS process, which needs only ``Recorder`` and
``QueryRecord``, never loads SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

from .records import DB_NAME, QueryRecord, RiskEvent, StoredEvent

_LAZY = {"Recorder": ".recorder", "StoreError": ".db", "open_database": ".db"}

__all__ = ["DB_NAME", "QueryRecord", "Recorder", "RiskEvent", "StoreError", "StoredEvent", "open_database"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
