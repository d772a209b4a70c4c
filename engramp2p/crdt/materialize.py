"""Materialized state of one shard: memories and edges folded from log entries, plus a live-state digest.

The state is a pure function of the *set* of entries applied, whatever their order, including order
within one origin; applying an entry twice is a no-op. That holds because every piece of state is a
join of per-writer slots:

- **Memories.** Per memory id, one slot per origin, ordered by ``(seq, tomb)`` like edge slots: the
  origin's latest ``remember`` of that id, or a tombstone. ``forget`` is observed-remove: it tombstones
  exactly the remember dots it lists, so a concurrent ``remember`` (a dot the forgetter had not seen)
  survives (add-wins). The visible memory is the live slot with the largest ``(hlc, origin, seq)`` --
  deterministic, and "latest write wins" in time when several origins write one id. Live slots and
  tombstones are held apart (``_mems`` and ``_mem_tombs``), so a ``forget`` listing thousands of dots
  costs O(dots), not O(dots x slots), and reads only ever look at live slots.
- **Edges.** ``(src, dst)`` -> writer -> ``Slot`` (see ``edges``).
- **Tombstone GC.** We track which entries we applied per origin (a contiguous prefix plus a small set
  above it). A tombstone for ``(w, s)`` is dropped as soon as the prefix of ``w`` reaches ``s``: every
  live slot of ``w`` with seq ``<= s`` has then been applied (and lost to the tombstone), and every
  later one beats it anyway. Collecting eagerly, on each apply, makes even the set of remaining
  tombstones a function of the entry set.

Visibility: an edge whose ``src`` memory is absent (never remembered, or forgotten) is hidden from
reads but kept, so a later ``remember`` of ``src`` brings its edges back. ``dst`` is *not* checked:
it may live in another shard, so whether it exists is the reader's concern (spreading drops activation
that reaches a missing memory). Hidden edges are still digested; the digest is about replicated state.

Digest items: a live memory slot is digested as ``(id, entry hash)`` and a live edge slot as its fixed-
width fields, so an insert never re-hashes a vector when the caller passes the hash the log computed.

Memory footprint: a memory's live slots are stored as one ``MemSlot`` (the usual single-writer case) or a
tuple of them; the ``Remember`` body is kept as decoded (vector as ``bytes``) plus its 16-byte entry
hash, and nothing else is allocated per memory.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from msgspec import Struct

from engramp2p.crdt.digest import SetDigest
from engramp2p.crdt.edges import EdgeKey, EdgeState, Slot, delta_of, value
from engramp2p.crdt.entry import Dot, Entry, Forget, Remember, entry_hash

_QQdd = struct.Struct("<QQdd")
_MEM, _EDGE = 0, 1


class MemSlot(Struct, frozen=True, gc=False):
    """One origin's latest ``remember`` (``body``) of one memory id. ``tomb`` is always False: a
    forgotten dot is kept as a bare seq in ``ShardState._mem_tombs``, never as a ``MemSlot``.

    ``h`` is the remember entry's hash: the digest item of a live memory is ``(id, h)``, which names the
    whole entry (origin, seq, hlc, body) without re-hashing the vector on every insert and delete.
    """

    origin: bytes
    seq: int
    tomb: bool
    hlc: int
    body: Remember | None
    h: bytes = b""

    @property
    def dot(self) -> Dot:
        return Dot(self.origin, self.seq)


class Change(NamedTuple):
    """What an applied entry touched: the memory id whose visible value changed, or the edge it wrote."""

    memory: bytes | None = None
    edge: EdgeKey | None = None


def _mem_item(mem_id: bytes, s: MemSlot) -> bytes:
    return b"m" + mem_id + s.h


def _edge_item(src: bytes, dst: bytes, writer: bytes, s: Slot) -> bytes:
    return b"e" + src + dst + writer + _QQdd.pack(s.seq, s.hlc, s.weight, s.conf)


def _as_tuple(cur: MemSlot | tuple[MemSlot, ...] | None) -> tuple[MemSlot, ...]:
    if cur is None:
        return ()
    if isinstance(cur, MemSlot):
        return (cur,)
    return cur


def _winner(slots: tuple[MemSlot, ...]) -> MemSlot | None:
    best = None
    for s in slots:
        if best is None or (s.hlc, s.origin, s.seq) > (best.hlc, best.origin, best.seq):
            best = s
    return best


def _index_of(slots: tuple[MemSlot, ...], origin: bytes) -> int:
    for i, s in enumerate(slots):
        if s.origin == origin:
            return i
    return -1


class ShardState:
    """Memories, edges and digest of one shard, built by ``apply``-ing log entries in any order."""

    __slots__ = (
        "space",
        "shard",
        "digest_set",
        "_mems",
        "_mem_tombs",
        "_edges",
        "_prefix",
        "_extra",
        "_pending",
        "_tombs",
        "_origins",
    )

    def __init__(self, space: str, shard: int) -> None:
        """``space`` and ``shard`` must be the log's: memory digest items use entry hashes bound to them."""
        self.space = space
        self.shard = shard
        self.digest_set = SetDigest()
        self._mems: dict[bytes, MemSlot | tuple[MemSlot, ...]] = {}  # id -> live slots (visible if any)
        self._mem_tombs: dict[tuple[bytes, bytes], int] = {}  # (id, writer) -> seq of its tombstone
        self._edges: dict[bytes, dict[bytes, EdgeState]] = {}  # src -> dst -> writer -> slot
        self._prefix: dict[bytes, int] = {}  # origin -> contiguous applied seq
        self._extra: dict[bytes, set[int]] = {}  # origin -> applied seqs above the prefix
        self._pending: dict[bytes, list[tuple[int, int, object]]] = {}  # writer -> heap of tombstones
        self._tombs = 0
        # Interned origin ids: one bytes object per writer rather than one per slot.
        self._origins: dict[bytes, bytes] = {}

    # -- applying entries ---------------------------------------------------------------------------

    def apply(self, entry: Entry, h: bytes | None = None) -> Change | None:
        """Fold one entry in. Returns ``None`` for an entry already applied, else what it touched.

        ``h`` is the entry's hash in this shard's log (``OfferResult.hashes``); pass it to save re-hashing,
        it is computed when omitted. Assumes ``(origin, seq)`` names one entry: the log quarantines forked
        origins before their entries get here.
        """
        origin, seq = entry.origin, entry.seq
        prefix = self._prefix.get(origin, 0)
        extra = self._extra.get(origin)
        if seq <= prefix or (extra is not None and seq in extra):
            return None
        advanced = seq == prefix + 1
        if advanced:
            prefix = seq
            if extra:
                while prefix + 1 in extra:
                    prefix += 1
                    extra.remove(prefix)
                if not extra:
                    del self._extra[origin]
            self._prefix[origin] = prefix
        elif extra is None:
            self._extra[origin] = {seq}
        else:
            extra.add(seq)

        change = self._apply_body(entry, h)
        if advanced and origin in self._pending:
            self._collect(origin, prefix)
        return change

    def apply_all(self, entries: Iterable[Entry], hashes: Iterable[bytes] | None = None) -> None:
        """Apply many entries (with their log hashes if known, e.g. ``OfferResult.hashes``)."""
        if hashes is None:
            for entry in entries:
                self.apply(entry)
        else:
            for entry, h in zip(entries, hashes, strict=True):
                self.apply(entry, h)

    def _apply_body(self, entry: Entry, h: bytes | None) -> Change:
        body = entry.body
        origin = self._origins.setdefault(entry.origin, entry.origin)
        if isinstance(body, Remember):
            if h is None:
                h = entry_hash(self.space, self.shard, entry)
            slot = MemSlot(origin, entry.seq, False, entry.hlc, body, h)
            return Change(memory=body.id if self._remember(body.id, slot) else None)
        if isinstance(body, Forget):
            visible = False
            for dot in body.observed:
                visible = self._forget_dot(body.id, dot.writer, dot.seq) or visible
            return Change(memory=body.id if visible else None)
        edge = delta_of(entry)  # associate, dissociate, retract: the edge CRDT's own delta mutators
        if edge is None:
            return Change()  # unreachable for decoded entries: Body is a closed union
        key, delta = edge
        for writer, slot in delta.items():
            # Known writers share one bytes object; unknown ones (a dot naming a stranger) are not
            # interned, so hostile dots cannot grow ``_origins``.
            self._put_edge(key, self._origins.get(writer, writer), slot)
        return Change(edge=key)

    def _remember(self, mem_id: bytes, slot: MemSlot) -> bool:
        """Join one live memory slot; True if the visible memory changed."""
        key = (mem_id, slot.origin)
        tomb = self._mem_tombs.get(key)
        if tomb is not None:
            if tomb >= slot.seq:
                return False  # forgotten: at equal seq a tombstone beats a live slot
            del self._mem_tombs[key]  # a later remember by that writer beats its tombstone
            self._tombs -= 1
        cur = self._mems.get(mem_id)
        digest = self.digest_set
        if cur is None:  # fast path: a new memory
            self._mems[mem_id] = slot
            digest.add(_mem_item(mem_id, slot))
            return True
        slots = _as_tuple(cur)
        index = _index_of(slots, slot.origin)
        if index < 0:
            new = (*slots, slot)
        else:
            old = slots[index]
            if slot.seq <= old.seq:
                return False
            digest.remove(_mem_item(mem_id, old))
            new = (*slots[:index], slot, *slots[index + 1 :])
        digest.add(_mem_item(mem_id, slot))
        self._store_mem(mem_id, new)
        return _winner(slots) is not _winner(new)

    def _forget_dot(self, mem_id: bytes, writer: bytes, seq: int) -> bool:
        """Join the tombstone ``(writer, seq)`` into ``mem_id``; True if the visible memory changed."""
        key = (mem_id, writer)
        tomb = self._mem_tombs.get(key)
        if tomb is not None and tomb >= seq:
            return False
        changed = False
        slots = _as_tuple(self._mems.get(mem_id))
        index = _index_of(slots, writer)
        if index >= 0:
            old = slots[index]
            if old.seq > seq:
                return False  # a later remember by that writer: the forget did not observe it
            self.digest_set.remove(_mem_item(mem_id, old))
            new = slots[:index] + slots[index + 1 :]
            self._store_mem(mem_id, new)
            changed = _winner(slots) is not _winner(new)
        if tomb is not None:  # replaced by the higher tombstone below (or by nothing, if covered)
            del self._mem_tombs[key]
            self._tombs -= 1
        if self._prefix.get(writer, 0) < seq:  # not yet covered: it still has something to suppress
            self._mem_tombs[key] = seq
            self._tombs += 1
            heapq.heappush(self._pending.setdefault(writer, []), (seq, _MEM, mem_id))
        return changed

    def _store_mem(self, mem_id: bytes, slots: tuple[MemSlot, ...]) -> None:
        if not slots:
            self._mems.pop(mem_id, None)
        elif len(slots) == 1:
            self._mems[mem_id] = slots[0]
        else:
            self._mems[mem_id] = slots

    def _put_edge(self, key: EdgeKey, writer: bytes, slot: Slot) -> None:
        src, dst = key
        by_dst = self._edges.get(src)
        state = None if by_dst is None else by_dst.get(dst)
        old = None if state is None else state.get(writer)
        if old is not None and slot <= old:
            return
        digest = self.digest_set
        if old is not None:
            if old.tomb:
                self._tombs -= 1
            else:
                digest.remove(_edge_item(src, dst, writer, old))
        if slot.tomb and self._prefix.get(writer, 0) >= slot.seq:
            # Covered tombstone: just drop whatever it beat.
            if state is not None and old is not None:
                del state[writer]
                if not state:
                    self._drop_edge(src, dst)
            return
        if slot.tomb:
            self._tombs += 1
            heapq.heappush(self._pending.setdefault(writer, []), (slot.seq, _EDGE, key))
        else:
            digest.add(_edge_item(src, dst, writer, slot))
        if state is None:
            if by_dst is None:
                by_dst = self._edges[src] = {}
            state = by_dst[dst] = {}
        state[writer] = slot

    def _drop_edge(self, src: bytes, dst: bytes) -> None:
        by_dst = self._edges[src]
        del by_dst[dst]
        if not by_dst:
            del self._edges[src]

    def _collect(self, writer: bytes, prefix: int) -> None:
        """Drop ``writer``'s tombstones that its applied prefix now covers."""
        heap = self._pending[writer]
        while heap and heap[0][0] <= prefix:
            seq, kind, key = heapq.heappop(heap)
            if kind == _MEM:
                tkey = (key, writer)  # key is the memory id
                if self._mem_tombs.get(tkey) == seq:  # type: ignore[arg-type]
                    del self._mem_tombs[tkey]  # type: ignore[arg-type]
                    self._tombs -= 1
            else:
                src, dst = key  # type: ignore[misc]
                state = self._edges.get(src, {}).get(dst)
                s = None if state is None else state.get(writer)
                if state is not None and s is not None and s.tomb and s.seq == seq:
                    self._tombs -= 1
                    del state[writer]
                    if not state:
                        self._drop_edge(src, dst)
        if not heap:
            del self._pending[writer]

    # -- reads ----------------------------------------------------------------------------------------

    def seq_of(self, origin: bytes) -> int:
        """Contiguous prefix of ``origin``'s entries applied here (the GC horizon)."""
        return self._prefix.get(origin, 0)

    def memory(self, mem_id: bytes) -> MemSlot | None:
        """The visible memory (its ``body`` is the ``Remember``), or ``None`` if absent or forgotten."""
        return _winner(_as_tuple(self._mems.get(mem_id)))

    def memory_dots(self, mem_id: bytes) -> list[Dot]:
        """Dots of every live remember of ``mem_id``: what a ``Forget`` written here must list."""
        return sorted(s.dot for s in _as_tuple(self._mems.get(mem_id)))

    def memories(self) -> Iterator[tuple[bytes, MemSlot]]:
        """Every visible memory, in no particular order."""
        for mem_id, cur in self._mems.items():
            win = _winner(_as_tuple(cur))
            assert win is not None  # only ids with a live slot are held
            yield mem_id, win

    def edge_state(self, src: bytes, dst: bytes) -> Mapping[bytes, Slot]:
        """Raw slots of an edge (tombstones included); read-only view for writers building deltas."""
        return self._edges.get(src, {}).get(dst, {})

    def edge_dots(self, src: bytes, dst: bytes) -> list[Dot]:
        """Dots of the live slots of ``src -> dst``: what a ``Dissociate`` written here must list."""
        return [Dot(w, s.seq) for w, s in sorted(self.edge_state(src, dst).items()) if not s.tomb]

    def edge_value(self, src: bytes, dst: bytes) -> tuple[float, float] | None:
        """``(weight, confidence)`` of a visible edge; ``None`` if absent or ``src`` is not a live memory."""
        if self.memory(src) is None:
            return None
        return value(self.edge_state(src, dst))

    def out_edges(self, src: bytes) -> list[tuple[bytes, float, float]]:
        """Visible out-edges of ``src`` as ``(dst, weight, confidence)`` sorted by ``dst``."""
        by_dst = self._edges.get(src)
        if not by_dst or self.memory(src) is None:
            return []
        out = []
        for dst in sorted(by_dst):
            v = value(by_dst[dst])
            if v is not None:
                out.append((dst, v[0], v[1]))
        return out

    def edge_sources(self) -> list[bytes]:
        """Every ``src`` with stored edge state (visible or not), sorted."""
        return sorted(self._edges)

    def digest(self) -> bytes:
        """16-byte digest of the live state; equal live content gives equal digests."""
        return self.digest_set.digest()

    def tombstones(self) -> int:
        """Tombstone slots still held (they wait for the prefix of their writer to cover them)."""
        return self._tombs

    def __len__(self) -> int:
        """Number of visible memories."""
        return len(self._mems)
