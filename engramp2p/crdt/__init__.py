"""Pure replication core: HLC, version vectors, sequenced logs, the edge CRDT, materialization, digests.

Nothing in this package does I/O or reads a clock on its own (the HLC's physical clock is injected).
"""

from engramp2p.crdt.digest import SetDigest
from engramp2p.crdt.edges import EdgeState, Slot
from engramp2p.crdt.entry import (
    ZERO_HASH,
    Associate,
    Body,
    Dissociate,
    Dot,
    Entry,
    Forget,
    Remember,
    Retract,
    entry_hash,
)
from engramp2p.crdt.hlc import HLC, elapsed_ms, hlc_pack, hlc_wall_ms
from engramp2p.crdt.log import (
    LogStats,
    OfferResult,
    Outcome,
    Range,
    ShardLog,
    approx_size,
    plan_missing,
    take_within_budget,
)
from engramp2p.crdt.materialize import Change, MemSlot, ShardState
from engramp2p.crdt.vv import VersionVector

__all__ = [
    "HLC",
    "ZERO_HASH",
    "Associate",
    "Body",
    "Change",
    "Dissociate",
    "Dot",
    "EdgeState",
    "Entry",
    "Forget",
    "LogStats",
    "MemSlot",
    "OfferResult",
    "Outcome",
    "Range",
    "Remember",
    "Retract",
    "SetDigest",
    "ShardLog",
    "ShardState",
    "Slot",
    "VersionVector",
    "approx_size",
    "elapsed_ms",
    "entry_hash",
    "hlc_pack",
    "hlc_wall_ms",
    "plan_missing",
    "take_within_budget",
]
