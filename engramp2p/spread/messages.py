"""Distributed spreading and recall fan-out messages (DESIGN §9, §10).

A ``SpreadForward`` carries activation into a shard the sender does not host; the receiver spreads on,
forwards onward itself, and sends the coordinator one ``SpreadReport`` per forward it handled. The report
lists the forwards that receiver started, with the activation mass each carried, so the coordinator can
detect termination exactly (every forward it has heard of is reported) and, at its deadline, compute the
lost mass and name the shards that did not answer.

Activations and scores are bounded floats: a bound also rejects NaN, so a hostile peer cannot poison a
ranking with it. All structs are ``array_like`` (see ``engramp2p.repl.messages``).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from engramp2p.bounds import U32, U64, MemoryId, NodeId, Shard, SpaceName, Unit, VectorBytes

MAX_ITEMS = 10_000
MAX_FORWARDS = 4096
MAX_HOPS = 64
MAX_K = 10_000

Depth = Annotated[int, Meta(ge=0, le=MAX_HOPS)]
# Cosine scores lie in [-1, 1]; float32 rounding may step slightly outside, so allow a margin.
Score = Annotated[float, Meta(ge=-2.0, le=2.0)]
Mass = Annotated[float, Meta(ge=0.0, le=float(MAX_ITEMS))]


class SpreadItem(Struct, array_like=True, frozen=True):
    """Activation arriving at one memory, ``depth`` hops from the seeds."""

    id: MemoryId
    activation: Unit
    depth: Depth


class SpreadParams(Struct, array_like=True, frozen=True):
    """The query's spreading rules, fixed by the coordinator so every peer spreads alike."""

    decay_rate: Annotated[float, Meta(ge=0.0, le=100.0)]
    threshold: Unit
    max_depth: Depth
    refractory_ms: U32
    revisit_budget: Annotated[int, Meta(ge=0, le=1024)]


class SpreadForward(Struct, tag="spread_fwd", array_like=True, frozen=True):
    """Activation handed hop by hop to the one host that owns ``(space, shard)`` for this query."""

    query_id: U64
    forward_id: U64
    coordinator: NodeId
    hop: Depth
    sender_hlc: U64
    space: SpaceName
    shard: Shard
    items: Annotated[list[SpreadItem], Meta(max_length=MAX_ITEMS)]
    params: SpreadParams


class Activated(Struct, array_like=True, frozen=True):
    """A memory's final activation at the reporting host, with its confidence for ranking."""

    id: MemoryId
    activation: Unit
    confidence: Unit


class StartedForward(Struct, array_like=True, frozen=True):
    """A forward the reporter sent onward; the coordinator now waits for its report too."""

    forward_id: U64
    shard: Shard
    mass: Mass


class SpreadReport(Struct, tag="spread_report", array_like=True, frozen=True):
    """What handling ``forward_id`` produced: activations and the forwards it started."""

    query_id: U64
    forward_id: U64
    activations: Annotated[list[Activated], Meta(max_length=MAX_ITEMS)]
    forwards_started: Annotated[list[StartedForward], Meta(max_length=MAX_FORWARDS)]


class RecallRequest(Struct, tag="recall_req", array_like=True, frozen=True):
    """Top-``k`` nearest memories of one shard to ``vector`` (little-endian float32)."""

    query_id: U64
    space: SpaceName
    shard: Shard
    vector: VectorBytes
    k: Annotated[int, Meta(ge=1, le=MAX_K)]

    def __post_init__(self) -> None:
        if len(self.vector) % 4:
            raise ValueError("vector length must be a multiple of 4 (float32)")


class Hit(Struct, array_like=True, frozen=True):
    id: MemoryId
    score: Score


class RecallResponse(Struct, tag="recall_resp", array_like=True, frozen=True):
    """Hits best first; a non-empty ``error`` (e.g. shard not hosted here) means ``hits`` is meaningless."""

    query_id: U64
    hits: Annotated[list[Hit], Meta(max_length=MAX_K)]
    error: Annotated[str, Meta(max_length=1024)] = ""


SpreadMessage = SpreadForward | SpreadReport | RecallRequest | RecallResponse
