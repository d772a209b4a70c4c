"""Replication messages: anti-entropy, eager push, write forwarding and space descriptors.

These are the replication half of the wire union in ``engramp2p.net.wire``. Every list is bounded, but
the real limit is the frame size (``max_frame``) checked before decoding: 10,000 entries of 64 KiB
content would not fit in one frame, so a sender fills a response by bytes (``SyncRequest.budget``) and
sets ``more`` when it stopped early.

All structs are ``array_like`` (positional, no field names on the wire), like the SWIM messages: msgspec
cannot mix array-like and map-like structs in one tagged union, and positional fields are smaller.
Evolution is append-only: add a field at the end with a default, and old decoders ignore it.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from msgspec import Meta, Struct

from engramp2p.bounds import MAX_DIM, U32, U64, Hash, NodeId, Shard, SpaceName
from engramp2p.crdt.entry import Body, Dot, Entry

MAX_ENTRIES = 10_000
MAX_VV = 10_000
MAX_BODIES = 10_000
MAX_DIGEST_BYTES = 4096
MAX_ERROR_CHARS = 1024
MAX_SHARDS = 4096
MAX_REPLICAS = 255
MAX_SPACES = 1024

# A version vector position: 0 means "nothing from this origin yet" (head is then all zeros).
SeqOrZero = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Digest = Annotated[bytes, Meta(max_length=MAX_DIGEST_BYTES)]
ErrorText = Annotated[str, Meta(max_length=MAX_ERROR_CHARS)]
Metric = Literal["cosine"]


class AckLevel(enum.IntEnum):
    """How many hosts must hold a write before it is acknowledged (DESIGN §7)."""

    ONE = 1
    QUORUM = 2
    ALL = 3


class VVEntry(Struct, array_like=True, frozen=True):
    """One origin's contiguous prefix: every entry up to ``seq`` is held, ``head`` is the hash of entry ``seq``."""

    origin: NodeId
    seq: SeqOrZero
    head: Hash


VersionVector = Annotated[list[VVEntry], Meta(max_length=MAX_VV)]
Entries = Annotated[list[Entry], Meta(max_length=MAX_ENTRIES)]


class SyncRequest(Struct, tag="sync_req", array_like=True, frozen=True):
    """Anti-entropy opener: what I hold of ``(space, shard)`` and how many bytes of entries I will take."""

    space: SpaceName
    shard: Shard
    vv: VersionVector
    digest: Digest
    budget: U32


class SyncResponse(Struct, tag="sync_resp", array_like=True, frozen=True):
    """Entries the requester lacks, in ascending seq per origin; ``more`` says the budget cut the range short."""

    space: SpaceName
    shard: Shard
    entries: Entries
    vv: VersionVector
    digest: Digest
    more: bool


class PushEntries(Struct, tag="push", array_like=True, frozen=True):
    """Eager push of freshly appended entries from a host to the other hosts of the shard."""

    space: SpaceName
    shard: Shard
    entries: Entries


class PushAck(Struct, tag="push_ack", array_like=True, frozen=True):
    """The receiver's contiguous prefixes after storing a push durably; the pusher counts acks from it."""

    space: SpaceName
    shard: Shard
    vv: VersionVector


class ForwardWrite(Struct, tag="fwd_write", array_like=True, frozen=True):
    """A write taken by a peer that does not host the shard, handed to one that does."""

    req_id: U64
    space: SpaceName
    bodies: Annotated[list[Body], Meta(max_length=MAX_BODIES)]
    ack: AckLevel = AckLevel.ONE
    forwarder: NodeId | None = None  # with req_id, lets the host answer a re-sent request without re-applying


class ForwardWriteResult(Struct, tag="fwd_write_result", array_like=True, frozen=True):
    """Outcome of a forwarded write; ``dots`` name the appended entries, in the order of ``bodies``."""

    req_id: U64
    ok: bool
    error: ErrorText = ""
    dots: Annotated[list[Dot], Meta(max_length=MAX_BODIES)] = []


class SpaceDescriptor(Struct, tag="space", array_like=True, frozen=True):
    """A space as created; conflicting descriptors resolve to the smallest ``(created_hlc, creator)``."""

    name: SpaceName
    dim: Annotated[int, Meta(ge=1, le=MAX_DIM)]
    shards: Annotated[int, Meta(ge=1, le=MAX_SHARDS)]
    replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)]
    metric: Metric
    created_hlc: U64
    creator: NodeId


class SpaceList(Struct, tag="spaces", array_like=True, frozen=True):
    """Descriptor push-pull: the sender's whole map; the receiver merges it and answers with its own."""

    descriptors: Annotated[list[SpaceDescriptor], Meta(max_length=MAX_SPACES)]


ReplMessage = (
    SyncRequest
    | SyncResponse
    | PushEntries
    | PushAck
    | ForwardWrite
    | ForwardWriteResult
    | SpaceDescriptor
    | SpaceList
)
