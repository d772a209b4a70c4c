"""Plain row types the store takes and returns.

They are deliberately dumb: the CRDT layer owns the semantics (slot joins, version vectors, which
memory wins) and hands the store the *result* as these rows, so the two layers meet on data, not on
each other's classes. Every field is a plain Python value; ``embedding`` is little-endian float32 bytes.
"""

from __future__ import annotations

from msgspec import Struct, field

from engramp2p.crdt.entry import Entry

OriginId = bytes  # 16 bytes
MemoryIdBytes = bytes  # 16 bytes


class MemoryRow(Struct, frozen=True):
    """A materialized memory: the winning ``remember`` (dot ``origin``/``seq``) for ``id``."""

    id: MemoryIdBytes
    origin: OriginId
    seq: int
    hlc: int
    content: str
    embedding: bytes
    confidence: float
    meta: dict[str, str] = field(default_factory=dict)


class SlotRow(Struct, frozen=True):
    """One writer's slot on edge ``src -> dst`` (see DESIGN.md §6)."""

    src: MemoryIdBytes
    dst: MemoryIdBytes
    writer: OriginId
    seq: int
    tomb: bool
    hlc: int
    weight: float
    conf: float


class ShardChanges(Struct):
    """Everything one write (or one applied chunk of remote entries) changes in one shard.

    A list of these is committed atomically: log entries, materialized state and the version vector
    move together, so a restart never sees a version vector ahead of the data it claims.
    """

    space: str
    shard: int
    entries: list[tuple[Entry, bytes]] = []  # (entry, entry_hash)
    memories_put: list[MemoryRow] = []
    memories_del: list[MemoryIdBytes] = []
    slots_put: list[SlotRow] = []
    slots_del: list[tuple[MemoryIdBytes, MemoryIdBytes, OriginId]] = []  # (src, dst, writer)
    vv: list[tuple[OriginId, int, bytes]] = []  # (origin, contiguous seq, head hash)


class SpaceRow(Struct, frozen=True):
    """A stored space descriptor; ``descriptor`` is the spaces layer's own encoding."""

    name: str
    descriptor: bytes
    created_hlc: int
    creator: OriginId


class QuarantineRow(Struct, frozen=True):
    """An origin whose log forked in this shard (a cloned or restored disk); its entries are not applied."""

    space: str
    shard: int
    origin: OriginId
    reason: str
