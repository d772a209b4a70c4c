"""Log entries: the unit of replication.

Every write is an entry in the writer's per-``(space, shard, origin)`` log: ``(origin, seq, hlc, prev,
body)``. ``seq`` is gap-free per origin, ``prev`` is the hash of the origin's previous entry in that log
(all zeros for ``seq == 1``), so a version vector entry ``(seq, head hash)`` pins a whole prefix and a
cloned disk that writes a different entry at the same seq is detected as a fork.

The hash binds the entry to its space and shard, so an entry cannot be replayed into another log.
Canonical bytes come from one deterministic msgpack encoder (dict keys sorted).
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from engramp2p.bounds import (
    HASH_LEN,
    Confidence,
    Content,
    Hash,
    HlcValue,
    MemoryId,
    MemoryMeta,
    NodeId,
    Seq,
    Shard,
    SpaceName,
    Unit,
    VectorBytes,
)

MAX_OBSERVED = 4096
ZERO_HASH = bytes(HASH_LEN)


class Dot(Struct, array_like=True, frozen=True, order=True):
    """One writer's contribution as identified by its log position."""

    writer: NodeId
    seq: Seq


class Remember(Struct, tag="remember", array_like=True, frozen=True):
    """Store (or replace) a memory. ``vector`` is little-endian float32 of the space's dimension."""

    id: MemoryId
    content: Content
    vector: VectorBytes
    confidence: Confidence
    meta: MemoryMeta = {}


class Associate(Struct, tag="associate", array_like=True, frozen=True):
    """Set the writer's slot on edge ``src -> dst`` (the slot's seq is this entry's seq)."""

    src: MemoryId
    dst: MemoryId
    weight: Unit
    confidence: Confidence


class Dissociate(Struct, tag="dissociate", array_like=True, frozen=True):
    """Observed-remove: tombstone exactly the live slots the remover had seen (add-wins)."""

    src: MemoryId
    dst: MemoryId
    observed: Annotated[list[Dot], Meta(max_length=MAX_OBSERVED)]


class Retract(Struct, tag="retract", array_like=True, frozen=True):
    """Withdraw only the writer's own slot on ``src -> dst``."""

    src: MemoryId
    dst: MemoryId


class Forget(Struct, tag="forget", array_like=True, frozen=True):
    """Observed-remove of a memory: the ``remember`` entries seen by the forgetter are removed."""

    id: MemoryId
    observed: Annotated[list[Dot], Meta(max_length=MAX_OBSERVED)]


Body = Remember | Associate | Dissociate | Retract | Forget


class Entry(Struct, array_like=True, frozen=True):
    origin: NodeId
    seq: Seq
    hlc: HlcValue
    prev: Hash
    body: Body

    @property
    def dot(self) -> Dot:
        return Dot(self.origin, self.seq)


class _Context(Struct, array_like=True, frozen=True):
    space: SpaceName
    shard: Shard
    entry: Entry


_canonical = msgspec.msgpack.Encoder(order="sorted")


def entry_hash(space: str, shard: int, entry: Entry) -> bytes:
    """16-byte blake2b of the canonical encoding of the entry in its log."""
    data = _canonical.encode(_Context(space, shard, entry))
    return hashlib.blake2b(data, digest_size=HASH_LEN, person=b"engramp2p-entry").digest()
