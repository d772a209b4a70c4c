"""SQLite persistence of one peer: identity, space descriptors, logs, materialized state (DESIGN.md §8).

``Store`` is the synchronous core (one connection, one thread); ``AsyncStore``/``open_store`` put it
behind a worker thread with group commit for the trio side. Row types are in ``rows``.
"""

from engramp2p.store.db import DB_FILE, Durability, Store, StoreError, StoreLocked
from engramp2p.store.identity import Identity
from engramp2p.store.rows import MemoryRow, QuarantineRow, ShardChanges, SlotRow, SpaceRow
from engramp2p.store.schema import SCHEMA_VERSION, SchemaError
from engramp2p.store.writer import AsyncStore, open_store

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "AsyncStore",
    "Durability",
    "Identity",
    "MemoryRow",
    "QuarantineRow",
    "SchemaError",
    "ShardChanges",
    "SlotRow",
    "SpaceRow",
    "Store",
    "StoreError",
    "StoreLocked",
    "open_store",
]
