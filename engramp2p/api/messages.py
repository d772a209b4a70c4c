"""Control-socket messages: typed requests and responses between the CLI/client and the local agent.

A tagged union of typed requests rather than ``(command: str, args: dict)``: each command's arguments
are checked and bounded by msgspec when decoded, and a client gets a one-line error naming the bad field
instead of a ``KeyError`` deep inside the agent. Requests are map-like (field names on the wire,
``{"cmd": "members", "id": 1, ...}``) because the control socket is not a hot path and readable frames
make debugging easy; unknown fields are rejected so a typo in a client is caught at once.

Adding a command: subclass ``Request`` with ``tag="<name>"`` (its arguments as bounded fields), add it
to ``AnyRequest``; if it returns data, add a ``Result`` subclass to ``AnyResult``. Nothing else changes.

The socket is local and mode 0600, so frames are not sealed, but they are still length-prefixed and
size-checked (``engramp2p.net.framing``) and decoded with the same single error type, ``WireError``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from engramp2p.bounds import (
    MAX_DIM,
    U32,
    U64,
    Confidence,
    Content,
    Host,
    MemoryId,
    MemoryMeta,
    Name,
    NodeId,
    SpaceName,
    Unit,
    VectorBytes,
)
from engramp2p.crdt.entry import Dot
from engramp2p.net.wire import DECODE_ERRORS, WireError

MAX_ADDRS = 64
MAX_ROWS = 10_000
MAX_ERROR_CHARS = 4096

Address = Annotated[str, Meta(min_length=1, max_length=300)]
Key = Annotated[bytes, Meta(min_length=32, max_length=32)]
MemberStatus = Literal["alive", "suspect", "failed", "left"]

# -- replication bounds (control-socket side; the frame limit, server.MAX_REQUEST, is the real cap) --
MAX_BATCH = 4096
"""Memories in one ``remember`` request; the client sends a few hundred per request (``client.BATCH``)."""
MAX_SPACES = 1024
MAX_SHARDS = 4096
MAX_REPLICAS = 255
MAX_WRITERS = 4096
MAX_EDGES = 100_000
MAX_PEER_ARGS = 64
AckName = Literal["one", "quorum", "all"]
PeerArg = Annotated[str, Meta(min_length=1, max_length=300)]
Digest = Annotated[bytes, Meta(max_length=4096)]


class Request(Struct, tag_field="cmd", kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every request; ``id`` pairs a response with its request on one connection."""

    id: U32 = 0


class Members(Request, tag="members"):
    status: MemberStatus | None = None


class Join(Request, tag="join"):
    addrs: Annotated[list[Address], Meta(min_length=1, max_length=MAX_ADDRS)]


class Leave(Request, tag="leave"):
    pass


class Info(Request, tag="info"):
    pass


class KeysList(Request, tag="keys_list"):
    pass


class KeysInstall(Request, tag="keys_install"):
    key: Key


class KeysUse(Request, tag="keys_use"):
    key: Key


class KeysRemove(Request, tag="keys_remove"):
    key: Key


class Subscribe(Request, tag="events_subscribe"):
    """Turn the connection into an event stream: the agent answers with ``Event`` responses until closed."""


# -- replication: spaces, writes, reads, fault injection ------------------------------------------------
#
# A request names its space; ``ack`` (``None``: the agent's ``replication.ack``) is how many hosts of the
# shard must hold a write durably before the agent answers. Vectors are little-endian float32 bytes,
# as on the peer wire, so a batch of 384-d memories costs 1.5 KiB each rather than ~8 KiB of floats.


class SpaceCreate(Request, tag="space_create"):
    """Create a space explicitly (idempotent with identical parameters)."""

    name: SpaceName
    dim: Annotated[int, Meta(ge=1, le=MAX_DIM)]
    shards: Annotated[int, Meta(ge=1, le=MAX_SHARDS)] = 1
    replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)] = 3


class SpaceList(Request, tag="space_list"):
    """Every space descriptor this agent knows (the cluster-wide map as merged here)."""


class SpaceInfo(Request, tag="space_info"):
    """Per-shard replication status of one space on this agent."""

    name: SpaceName


class MemoryItem(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One memory to remember; ``id`` absent means the agent picks a random one."""

    id: MemoryId | None = None
    content: Content = ""
    vector: VectorBytes
    confidence: Confidence = 1.0
    meta: MemoryMeta = {}


class MemoryRemember(Request, tag="remember"):
    """One or many memories; validated whole before anything is written (a bad item refuses the batch)."""

    space: SpaceName
    items: Annotated[list[MemoryItem], Meta(min_length=1, max_length=MAX_BATCH)]
    ack: AckName | None = None


class EdgeAssociate(Request, tag="associate"):
    """Set this writer's slot on ``src -> dst``."""

    space: SpaceName
    src: MemoryId
    dst: MemoryId
    weight: Unit
    confidence: Confidence = 1.0
    ack: AckName | None = None


class EdgeDissociate(Request, tag="dissociate"):
    """Observed-remove of ``src -> dst`` (add-wins against concurrent reweights)."""

    space: SpaceName
    src: MemoryId
    dst: MemoryId
    ack: AckName | None = None


class EdgeRetract(Request, tag="retract"):
    """Withdraw only this writer's own slot on ``src -> dst``."""

    space: SpaceName
    src: MemoryId
    dst: MemoryId
    ack: AckName | None = None


class MemoryForget(Request, tag="forget"):
    space: SpaceName
    mem_id: MemoryId  # not ``id``: that is the request id every request carries
    ack: AckName | None = None


class MemoryGet(Request, tag="get"):
    """A memory from this agent's replica of its shard (an error if this agent does not host it)."""

    space: SpaceName
    mem_id: MemoryId


class MemoryEdges(Request, tag="edges"):
    """Visible out-edges of a memory, from this agent's replica of its shard."""

    space: SpaceName
    mem_id: MemoryId


class FaultDrop(Request, tag="fault_drop"):
    """Drop all traffic to and from these peers (name, node id prefix or host:port); test agents only."""

    peers: Annotated[list[PeerArg], Meta(min_length=1, max_length=MAX_PEER_ARGS)]


class FaultHeal(Request, tag="fault_heal"):
    """Stop dropping these peers (every peer when empty)."""

    peers: Annotated[list[PeerArg], Meta(max_length=MAX_PEER_ARGS)] = []


AnyRequest = (
    Members
    | Join
    | Leave
    | Info
    | KeysList
    | KeysInstall
    | KeysUse
    | KeysRemove
    | Subscribe
    | SpaceCreate
    | SpaceList
    | SpaceInfo
    | MemoryRemember
    | EdgeAssociate
    | EdgeDissociate
    | EdgeRetract
    | MemoryForget
    | MemoryGet
    | MemoryEdges
    | FaultDrop
    | FaultHeal
)


class Result(Struct, tag_field="kind", kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every typed result payload."""


class MemberRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    node_id: NodeId
    addr: Address
    state: MemberStatus
    incarnation: U64
    roles: Annotated[list[Name], Meta(max_length=32)] = []
    rtt_ms: Annotated[float, Meta(ge=0.0, le=3.6e6)] | None = None
    last_change_ms: U64 = 0


class MemberList(Result, tag="members"):
    members: Annotated[list[MemberRow], Meta(max_length=MAX_ROWS)]


class NodeInfo(Result, tag="info"):
    name: Name
    node_id: NodeId
    addr: Address
    health: Annotated[int, Meta(ge=0, le=255)]
    uptime_s: Annotated[float, Meta(ge=0.0, le=1e10)]
    counters: Annotated[dict[Annotated[str, Meta(max_length=64)], U64], Meta(max_length=256)] = {}
    # Event-loop lag (samples, mean_ms, p50_ms, p99_ms, max_ms) from the agent's lag monitor.
    loop_lag_ms: Annotated[dict[Annotated[str, Meta(max_length=32)], float], Meta(max_length=16)] = {}
    # Heavy optional modules loaded in the agent process (numpy, numba, pynndescent...): edge budget.
    heavy_modules: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=64)] = []


class KeyMemberResult(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One member's answer to a cluster key operation: its keyring after it, or why it failed."""

    name: Name
    node_id: NodeId
    addr: Address
    ok: bool
    error: Annotated[str, Meta(max_length=MAX_ERROR_CHARS)] = ""
    keys: Annotated[list[Key], Meta(max_length=256)] = []


class KeyList(Result, tag="keys"):
    primary: Key | None
    keys: Annotated[list[Key], Meta(max_length=256)]
    # Every other alive member's keyring, as answered over sealed TCP (empty when alone).
    members: Annotated[list[KeyMemberResult], Meta(max_length=MAX_ROWS)] = []


class KeyResults(Result, tag="key_results"):
    """Per-member outcome of ``keys install|use|remove`` spread to the cluster (the local agent first)."""

    op: Annotated[str, Meta(max_length=16)]
    members: Annotated[list[KeyMemberResult], Meta(max_length=MAX_ROWS)]


class Event(Result, tag="event"):
    """One line of the agent's event log (joins, suspicions, failures, refutations, recoveries)."""

    seq: U64
    at_ms: U64
    type: Annotated[str, Meta(min_length=1, max_length=64)]
    node: NodeId | None = None
    name: Name | None = None
    host: Host | None = None
    detail: Annotated[str, Meta(max_length=1024)] = ""


class SpaceRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A space descriptor as the agent holds it."""

    name: SpaceName
    dim: Annotated[int, Meta(ge=1, le=MAX_DIM)]
    shards: Annotated[int, Meta(ge=1, le=MAX_SHARDS)]
    replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)]
    metric: Annotated[str, Meta(max_length=32)] = "cosine"
    created_hlc: U64 = 0
    creator: NodeId | None = None


class Spaces(Result, tag="spaces"):
    """Answer to ``space_list`` (every known space) and ``space_create`` (the created one)."""

    spaces: Annotated[list[SpaceRow], Meta(max_length=MAX_SPACES)]


class VVRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    origin: NodeId
    seq: U64


class ShardRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One shard this agent hosts: its placement, counts, digest and version vector.

    ``lag`` is how many entries this replica is known to lack (peers claimed more than it holds);
    ``peer_lag`` the same for each other host, by name, as far as this agent knows (omitted if unknown).
    """

    shard: Annotated[int, Meta(ge=0, le=65535)]
    hosts: Annotated[list[Name], Meta(max_length=MAX_REPLICAS)]
    memories: U64
    edges: U64
    digest: Digest
    version_vector: Annotated[list[VVRow], Meta(max_length=MAX_ROWS)]
    lag: U64 = 0
    buffered: U64 = 0
    quarantined: Annotated[list[NodeId], Meta(max_length=MAX_ROWS)] = []
    leaving: bool = False
    peer_lag: Annotated[dict[Name, U64], Meta(max_length=MAX_REPLICAS)] = {}


class PlacementRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Where one shard lives according to this agent (every shard, hosted here or not)."""

    shard: Annotated[int, Meta(ge=0, le=65535)]
    hosts: Annotated[list[Name], Meta(max_length=MAX_REPLICAS)]


class SpaceStatus(Result, tag="space_info"):
    space: SpaceRow
    shards: Annotated[list[ShardRow], Meta(max_length=MAX_SHARDS)]
    placement: Annotated[list[PlacementRow], Meta(max_length=MAX_SHARDS)] = []


class Written(Result, tag="written"):
    """A write's log positions (one per entry, in request order); ``ids`` for ``remember``."""

    dots: Annotated[list[Dot], Meta(max_length=MAX_BATCH)] = []
    ids: Annotated[list[MemoryId], Meta(max_length=MAX_BATCH)] = []


class MemoryRecord(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    id: MemoryId
    content: Content
    vector: VectorBytes
    confidence: Confidence
    meta: MemoryMeta = {}


class MemoryFound(Result, tag="memory"):
    """Answer to ``get``: the memory, or ``None`` when this replica has no visible memory by that id."""

    memory: MemoryRecord | None = None


class EdgeRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A visible edge: merged weight, noisy-OR confidence, and the writers holding a live slot."""

    dst: MemoryId
    weight: Unit
    confidence: Unit
    writers: Annotated[list[NodeId], Meta(max_length=MAX_WRITERS)] = []


class EdgeList(Result, tag="edges"):
    src: MemoryId
    edges: Annotated[list[EdgeRow], Meta(max_length=MAX_EDGES)]


class FaultPeer(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    node_id: NodeId
    addr: Address


class FaultState(Result, tag="faults"):
    """The peers this agent drops traffic with after a ``fault_drop`` or ``fault_heal``."""

    dropped: Annotated[list[FaultPeer], Meta(max_length=MAX_ROWS)]


AnyResult = (
    MemberList
    | NodeInfo
    | KeyList
    | KeyResults
    | Event
    | Spaces
    | SpaceStatus
    | Written
    | MemoryFound
    | EdgeList
    | FaultState
)


class Response(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``ok`` with an optional typed ``result``, or not ``ok`` with a one-line ``error`` for the user."""

    id: U32
    ok: bool
    result: AnyResult | None = None
    error: Annotated[str, Meta(max_length=MAX_ERROR_CHARS)] = ""


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)
_response_decoder = msgspec.msgpack.Decoder(Response)


def encode_request(req: AnyRequest) -> bytes:
    return _encoder.encode(req)


def decode_request(data: bytes) -> AnyRequest:
    """A request from a client, or ``WireError`` naming what is wrong with it."""
    try:
        return _request_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad request: {exc}") from None


def encode_response(resp: Response) -> bytes:
    return _encoder.encode(resp)


def decode_response(data: bytes) -> Response:
    """A response from the agent, or ``WireError``."""
    try:
        return _response_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad response: {exc}") from None
