"""Space descriptors as a cluster-wide CRDT map, and the re-issue plan for writes made under a loser.

The map is name -> descriptor, joined per name by taking the *smallest* ``(created_hlc, creator)``
(DESIGN §6). ``min`` over a total order is a join-semilattice, so descriptors can arrive by membership
broadcast, push-pull and store reload in any order, any number of times, and every peer ends with the
same map. The order is made total by the encoded bytes as a last key: two different descriptors with the
same ``(created_hlc, creator)`` only come from a broken or cloned creator, but even then peers agree.

Descriptors that agree on everything but ``(created_hlc, creator)`` are *equal*: merging them changes
only bookkeeping. Conflicting ones (two peers created ``notes`` concurrently with other parameters)
resolve to the winner, and ``merge`` says whether the *layout* changed (dim, shards or metric: data must
move) or only ``replicas`` (placement changes; anti-entropy catches the new hosts up).

**Writes under a losing descriptor.** Log keys are ``(space, shard)`` and do not name the descriptor, so
entries written under the loser stay in the logs they went to; what can be wrong about them is the
*shard* (``blake2b(id) mod shards`` differs) and the *dimension*. ``plan_reissue`` computes, for one
shard a peer hosts, the origin's own live writes that the winner places in another shard: each is
re-issued there (a ``Remember`` / ``Associate`` with the same payload, written by the origin like any
client write, routed and acknowledged normally) and only *after* that is durable withdrawn from the old
shard (a ``Forget`` / ``Retract`` of the origin's own dot). Planning is a pure function of the shard
state, so it is idempotent: after a crash between the two steps, re-planning yields the same moves
(re-writing an identical memory is harmless) and the missing withdrawals; once done, the plan is empty.

What this does not cover, stated exactly:

- **Dimension conflicts.** A vector of the loser's dimension cannot live in the winner's space; such
  memories are reported as ``stranded`` (left in place, excluded from indexing by their dimension) and
  need an operator (export and re-import under another space). Their out-edges stay with them.
- **Other origins' writes.** Only an entry's origin may rewrite it (a slot belongs to its writer; a
  host rewriting another's edge slot would add a second vote). Writes of an origin that never comes
  back stay in the old shard: visible to reads of that shard, not found by id routing.
- **Losing remembers.** Only memories whose *visible* value is the origin's own are moved; an origin's
  slot that loses to another origin's remember of the same id is withdrawn only by that id's winner
  moving and forgetting it.
- **Edges whose source memory is not visible** in the shard are not moved (they are hidden anyway).
- A host must keep a shard that left the placement (``shard >= winner.shards``) until its own plan for
  it is empty; the service decides when to drop it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from engramp2p.bounds import MAX_DIM, NODE_ID_LEN
from engramp2p.crdt.entry import Associate, Body, Forget, Retract
from engramp2p.crdt.materialize import ShardState
from engramp2p.repl.messages import MAX_REPLICAS, MAX_SHARDS, SpaceDescriptor
from engramp2p.repl.placement import shard_of
from engramp2p.store.rows import SpaceRow

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
DEFAULT_SHARDS = 1
DEFAULT_REPLICAS = 3
DEFAULT_METRIC = "cosine"
METRICS = ("cosine",)
MAX_CREATED_HLC = 2**63 - 1
"""The wire allows any u64, but the store keeps ``created_hlc`` in a signed 64-bit SQLite INTEGER."""

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(SpaceDescriptor)


class SpaceError(ValueError):
    """A local request about spaces that cannot be honoured (bad name, bad parameters, conflict)."""


def valid_name(name: str) -> bool:
    """``[a-z0-9_-]{1,64}``, matched in full (no trailing newline loophole)."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def new_descriptor(name: str, dim: int, created_hlc: int, creator: bytes, *, shards: int = DEFAULT_SHARDS,
                   replicas: int = DEFAULT_REPLICAS, metric: str = DEFAULT_METRIC) -> SpaceDescriptor:
    """A checked descriptor; ``SpaceError`` names the offending field."""
    if not valid_name(name):
        raise SpaceError(f"name: {name!r} must match [a-z0-9_-]{{1,64}}")
    for fname, value, hi in (("dim", dim, MAX_DIM), ("shards", shards, MAX_SHARDS), ("replicas", replicas,
                                                                                     MAX_REPLICAS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise SpaceError(f"{fname}: {value!r} must be an integer in 1..{hi}")
    if metric not in METRICS:
        raise SpaceError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    if len(creator) != NODE_ID_LEN or not 0 <= created_hlc <= MAX_CREATED_HLC:
        raise SpaceError("creator/created_hlc: malformed")
    return SpaceDescriptor(name, dim, shards, replicas, metric, created_hlc, creator)  # type: ignore[arg-type]


def layout(d: SpaceDescriptor) -> tuple[int, int, str]:
    """What decides where data lives and whether it fits: a change here means writes must move."""
    return (d.dim, d.shards, d.metric)


def content(d: SpaceDescriptor) -> tuple[str, int, int, int, str]:
    """The descriptor without its provenance: equal contents are the same space."""
    return (d.name, d.dim, d.shards, d.replicas, d.metric)


def rank(d: SpaceDescriptor) -> tuple[int, bytes, bytes]:
    """Total order of descriptors of one name; the smallest wins."""
    return (d.created_hlc, d.creator, _enc.encode(d))


def encode(d: SpaceDescriptor) -> bytes:
    return _enc.encode(d)


def decode(data: bytes) -> SpaceDescriptor | None:
    """Decode a stored or received descriptor; malformed or badly named yields ``None``."""
    try:
        d = _dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return d if valid_name(d.name) else None


def to_row(d: SpaceDescriptor) -> SpaceRow:
    return SpaceRow(d.name, encode(d), d.created_hlc, d.creator)


def from_row(row: SpaceRow) -> SpaceDescriptor | None:
    d = decode(row.descriptor)
    return d if d is not None and d.name == row.name else None


@dataclass(frozen=True, slots=True)
class SpaceChange:
    """``name`` now resolves to ``new`` (was ``old``). ``relayout``: dim/shards/metric changed (re-issue);
    ``replaced``: a different content won (placement may change); neither: provenance only."""

    name: str
    old: SpaceDescriptor | None
    new: SpaceDescriptor
    relayout: bool
    replaced: bool


class SpaceRegistry:
    """The local replica of the descriptor map."""

    def __init__(self, descriptors: Iterable[SpaceDescriptor] = ()) -> None:
        self._spaces: dict[str, SpaceDescriptor] = {}
        self.merge(descriptors)

    def get(self, name: str) -> SpaceDescriptor | None:
        return self._spaces.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._spaces

    def __len__(self) -> int:
        return len(self._spaces)

    def names(self) -> list[str]:
        return sorted(self._spaces)

    def descriptors(self) -> list[SpaceDescriptor]:
        """All winners, by name (what push-pull and broadcasts carry)."""
        return [self._spaces[n] for n in sorted(self._spaces)]

    def merge(self, descriptors: Iterable[SpaceDescriptor]) -> list[SpaceChange]:
        """Join remote (or stored) descriptors in; returns each name whose winner changed, once.

        Descriptors with an invalid name, or a ``created_hlc`` the store cannot hold (> 2**63 - 1), are
        ignored (a remote's fault; msgspec already bounded the rest).
        """
        before: dict[str, SpaceDescriptor | None] = {}
        spaces = self._spaces
        for d in descriptors:
            if not valid_name(d.name) or not 0 <= d.created_hlc <= MAX_CREATED_HLC:
                continue
            cur = spaces.get(d.name)
            if cur is None or rank(d) < rank(cur):
                if d.name not in before:
                    before[d.name] = cur
                spaces[d.name] = d
        out = []
        for name in sorted(before):
            old, new = before[name], spaces[name]
            if old is not None and rank(old) == rank(new):
                continue
            out.append(SpaceChange(name, old, new,
                                   relayout=old is not None and layout(old) != layout(new),
                                   replaced=old is not None and content(old) != content(new)))
        return out

    def create(self, name: str, dim: int, created_hlc: int, creator: bytes, *, shards: int = DEFAULT_SHARDS,
               replicas: int = DEFAULT_REPLICAS, metric: str = DEFAULT_METRIC) -> tuple[SpaceDescriptor, bool]:
        """Explicit ``space create``: ``(descriptor, created)``. Idempotent for an identical request;
        ``SpaceError`` if the name exists with other parameters."""
        d = new_descriptor(name, dim, created_hlc, creator, shards=shards, replicas=replicas, metric=metric)
        cur = self._spaces.get(name)
        if cur is not None:
            if content(cur) == content(d):
                return cur, False
            raise SpaceError(f"name: space {name!r} already exists with dim={cur.dim} shards={cur.shards} "
                             f"replicas={cur.replicas}")
        self._spaces[name] = d
        return d, True

    def ensure(self, name: str, dim: int, created_hlc: int, creator: bytes) -> tuple[SpaceDescriptor, bool]:
        """Implicit creation by a first write: defaults (1 shard, 3 replicas, cosine), dim from the vector."""
        cur = self._spaces.get(name)
        if cur is not None:
            return cur, False
        d = new_descriptor(name, dim, created_hlc, creator)
        self._spaces[name] = d
        return d, True


# -- re-issue -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReissuePlan:
    """Bodies to write, in two phases: ``moves`` (target shard, body) first; once those are durable,
    ``withdrawals`` in this shard. ``stranded``: memory ids whose vector does not fit the winner's dim."""

    moves: list[tuple[int, Body]] = field(default_factory=list)
    withdrawals: list[Body] = field(default_factory=list)
    stranded: list[bytes] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.moves or self.withdrawals)


def plan_reissue(winner: SpaceDescriptor, origin: bytes, shard: int, state: ShardState) -> ReissuePlan:
    """``origin``'s own live writes in ``shard`` that ``winner`` places elsewhere (see the module doc)."""
    plan = ReissuePlan()
    width = 4 * winner.dim
    for mem_id, slot in sorted(state.memories(), key=lambda item: item[0]):
        body = slot.body
        if body is None or slot.origin != origin:
            continue
        if len(body.vector) != width:
            plan.stranded.append(mem_id)
            continue
        target = shard_of(mem_id, winner.shards)
        if target != shard:
            plan.moves.append((target, body))
            mine = [d for d in state.memory_dots(mem_id) if d.writer == origin]
            plan.withdrawals.append(Forget(mem_id, mine))
    stranded = set(plan.stranded)
    for src in state.edge_sources():
        target = shard_of(src, winner.shards)
        if target == shard or src in stranded:
            continue
        for dst, _, _ in state.out_edges(src):
            mine = state.edge_state(src, dst).get(origin)
            if mine is None or mine.tomb:
                continue
            plan.moves.append((target, Associate(src, dst, mine.weight, mine.conf)))
            plan.withdrawals.append(Retract(src, dst))
    return plan


__all__ = [
    "DEFAULT_METRIC",
    "DEFAULT_REPLICAS",
    "DEFAULT_SHARDS",
    "ReissuePlan",
    "SpaceChange",
    "SpaceError",
    "SpaceRegistry",
    "content",
    "decode",
    "encode",
    "from_row",
    "layout",
    "new_descriptor",
    "plan_reissue",
    "rank",
    "to_row",
    "valid_name",
]
