"""The confidence-weighted edge CRDT: one slot per writer per edge, joined by ``max`` (DESIGN §6).

A weighted average merged by summing confidences is not a CvRDT -- merging the same contribution twice
counts it twice -- and no other confidence combiner fixes that, because the merge cannot tell which
contributions two states share. So contributions stay *identified by writer*: an edge's state is a map
writer -> ``Slot``, slots are totally ordered (``seq``, then tombstone over live), and join keeps the
larger slot per writer. The weighted mean is computed only when read.

This is an add-wins observed-remove set with one dot ``(writer, log seq)`` per writer: ``dissociate``
tombstones exactly the live slots the remover has seen, so a concurrent reweight (a higher seq) survives;
``retract`` withdraws only the writer's own slot. A tombstone for ``(w, s)`` is needed only until the
local version vector covers ``s`` for ``w``: after that every live slot of ``w`` that can still arrive
has a higher seq (log-only delivery), so "no slot and ``vv[w] >= s``" says the same thing.

Tombstones are canonical (``hlc``, ``weight`` and ``conf`` all zero), so two removers that observed the
same slot write equal tombstones. Reads use ``math.fsum`` over writer-sorted slots, so every replica
computes bit-identical values whatever the arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol

from msgspec import Struct

from engramp2p.crdt.entry import Associate, Dissociate, Dot, Entry, Retract


class Slot(Struct, frozen=True, order=True, array_like=True, gc=False):
    """Writer ``w``'s latest contribution to one edge. Field order is the total order used by join."""

    seq: int  # the writer's log seq of the write: strictly increasing per writer
    tomb: bool = False  # observed-remove marker; at equal seq a tombstone beats a live value
    hlc: int = 0  # creation time: payload for decay/recency only, never causality
    weight: float = 0.0  # [0, 1]; 0.0 in tombstones
    conf: float = 0.0  # (0, 1]; 0.0 in tombstones


EdgeState = dict[bytes, Slot]
EdgeKey = tuple[bytes, bytes]


class SeqSource(Protocol):
    """Anything that knows the contiguous prefix held per writer (a ``VersionVector``, ``ShardState``)."""

    def seq_of(self, origin: bytes, /) -> int: ...


def live_slot(seq: int, hlc: int, weight: float, conf: float) -> Slot:
    """A live slot; ``+ 0.0`` folds ``-0.0`` into ``0.0`` so equal values have equal bytes."""
    return Slot(seq, False, hlc, weight + 0.0, conf + 0.0)


def tombstone(seq: int) -> Slot:
    """The canonical tombstone for a writer's slot up to ``seq``."""
    return Slot(seq, True)


# -- join ------------------------------------------------------------------------------------------


def join_edge(a: Mapping[bytes, Slot], b: Mapping[bytes, Slot]) -> EdgeState:
    """Pointwise max of two edge states (a join-semilattice because ``Slot`` is totally ordered)."""
    out = dict(a)
    for w, s in b.items():
        mine = out.get(w)
        if mine is None or s > mine:
            out[w] = s
    return out


def join(a: Mapping[EdgeKey, Mapping[bytes, Slot]], b: Mapping[EdgeKey, Mapping[bytes, Slot]]) -> dict:
    """Join of two edge sets, edge by edge."""
    out: dict[EdgeKey, EdgeState] = {k: dict(v) for k, v in a.items()}
    for k, v in b.items():
        out[k] = join_edge(out.get(k, {}), v)
    return out


def merge_slot(state: EdgeState, writer: bytes, slot: Slot) -> tuple[bool, Slot | None]:
    """In-place join of one slot: ``(changed, previous slot or None)``.

    The materializer uses this to keep its digest in step without copying states.
    """
    old = state.get(writer)
    if old is None or slot > old:
        state[writer] = slot
        return True, old
    return False, old


def leq(a: Mapping[bytes, Slot], b: Mapping[bytes, Slot]) -> bool:
    """Lattice order: ``a ⊑ b`` iff every slot of ``a`` is dominated by ``b``'s slot for that writer."""
    return all((t := b.get(w)) is not None and s <= t for w, s in a.items())


# -- delta mutators (each returns a small EdgeState that the writer logs as one entry) -----------------


def associate(writer: bytes, seq: int, hlc: int, weight: float, conf: float) -> EdgeState:
    """Set ``writer``'s slot (its log entry ``seq``)."""
    return {writer: live_slot(seq, hlc, weight, conf)}


def observed(state: Mapping[bytes, Slot]) -> list[Dot]:
    """Dots of the live slots in ``state``: what a ``Dissociate`` entry must list."""
    return [Dot(w, s.seq) for w, s in sorted(state.items()) if not s.tomb]


def dissociate(state: Mapping[bytes, Slot]) -> EdgeState:
    """Observed-remove: tombstone every live slot seen (add-wins against concurrent reweights)."""
    return {w: tombstone(s.seq) for w, s in state.items() if not s.tomb}


def retract(writer: bytes, seq: int) -> EdgeState:
    """Withdraw only ``writer``'s own vote (its log entry ``seq``)."""
    return {writer: tombstone(seq)}


def delta_of(entry: Entry) -> tuple[EdgeKey, EdgeState] | None:
    """The edge delta a log entry carries, or ``None`` if it is not an edge entry."""
    body = entry.body
    if isinstance(body, Associate):
        return (body.src, body.dst), associate(
            entry.origin, entry.seq, entry.hlc, body.weight, body.confidence
        )
    if isinstance(body, Dissociate):
        delta: EdgeState = {}
        for dot in body.observed:  # a hostile list may name a writer twice: keep the max
            merge_slot(delta, dot.writer, tombstone(dot.seq))
        return (body.src, body.dst), delta
    if isinstance(body, Retract):
        return (body.src, body.dst), retract(entry.origin, entry.seq)
    return None


# -- reads and GC ----------------------------------------------------------------------------------


def value(state: Mapping[bytes, Slot]) -> tuple[float, float] | None:
    """``(weight, confidence)`` or ``None`` if no live slot.

    Weight is the confidence-weighted mean of live slots; confidence is their noisy-OR. Both are computed
    over slots sorted by writer (``fsum`` is exact, the product is taken in that fixed order), so the
    result is bit-identical on every replica.
    """
    live = [s for _, s in sorted(state.items()) if not s.tomb and s.conf > 0.0]
    if not live:
        return None
    total = math.fsum(s.conf for s in live)
    weight = math.fsum(s.weight * s.conf for s in live) / total
    miss = 1.0
    for s in live:
        miss *= 1.0 - s.conf
    return min(1.0, max(0.0, weight)), 1.0 - miss


def gc(state: Mapping[bytes, Slot], vv: SeqSource) -> EdgeState:
    """Drop tombstones the version vector covers (valid under log-only delivery; see module doc)."""
    return {w: s for w, s in state.items() if not (s.tomb and vv.seq_of(w) >= s.seq)}


def tombstones(states: Iterable[Mapping[bytes, Slot]]) -> int:
    """Number of tombstone slots across ``states``."""
    return sum(1 for st in states for s in st.values() if s.tomb)
