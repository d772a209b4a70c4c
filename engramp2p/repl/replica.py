"""One hosted shard in memory: its multi-origin log, its materialized state, and the store rows they imply.

``ShardReplica`` is the seam between the pure CRDT layer and the store. Every way an entry can enter a
shard -- a local write, an eager push, an anti-entropy response, a replay at start-up -- goes through one
private path (``_fold``) that feeds the ``ShardLog`` (contiguity, duplicates, forks), folds what it
applied into the ``ShardState``, and reports *exactly* the rows that changed as one ``ShardChanges``.
The caller commits that (``AsyncStore.append``) before it acknowledges or pushes anything: the replica
never does I/O and never decides durability.

Why the rows are computed by diffing rather than by re-deriving them from the entry: ``ShardState`` owns
the join semantics (which memory wins, which slot beats which, when a tombstone is collected); a diff of
the touched keys before and after the fold is correct whatever those rules are. Tombstones that a later
entry *collects* (the writer's prefix caught up with them) are not touched keys, so the replica keeps a
small index of the edge tombstones it told the store about and deletes their rows when they go.

Restarts replay the durable log (``load``) instead of reading back the ``memories``/``slots`` tables:
the memories table holds only the *winning* remember per id, while the state also needs losing
remembers of other origins and memory tombstones that still wait for their dot. The log is the only
complete record, and replay is a pure function of it, so a restarted replica has bit-identical state.

Memory per 384-d memory is dominated by the ``Remember`` body the state keeps (1,569 B of vector bytes,
plus content, an often empty meta dict, the slot and the id map entry): about 2.1 KB measured with
tracemalloc for short contents (``tests/test_repl_replica.py``). The replica itself adds nothing per
memory; an index that copies the vectors into a matrix adds another 1.5 KB.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engramp2p.crdt.edges import Slot
from engramp2p.crdt.entry import Associate, Body, Dissociate, Dot, Entry, Remember, Retract
from engramp2p.crdt.log import DEFAULT_REORDER_BYTES, DEFAULT_REORDER_LIMIT, Outcome, ShardLog
from engramp2p.crdt.materialize import MemSlot, ShardState
from engramp2p.crdt.vv import VersionVector
from engramp2p.store.rows import MemoryRow, ShardChanges, SlotRow

EdgeKey = tuple[bytes, bytes]


MAX_KNOWN_ORIGINS = 4096
"""Origins remembered for ``lag``: any key-holder can name origins, so the map is bounded."""


class OriginQuarantined(RuntimeError):
    """A local write under an origin this shard has quarantined (another store writes with our identity)."""


@dataclass(frozen=True, slots=True)
class ForkReport:
    """An origin whose history forked in this shard: it is now quarantined here (persist it, alert)."""

    space: str
    shard: int
    origin: bytes
    reason: str


@dataclass(slots=True)
class ReceiveResult:
    """What ``receive`` did with a batch of remote entries.

    ``changes`` must be committed before any of ``applied`` is acknowledged or served. ``early`` counts
    entries parked in the reorder buffer (a gap before them: ask a peer for it soon); ``rejected`` counts
    entries dropped as quarantined, too far ahead or over the buffer bound (anti-entropy re-ships them).
    """

    applied: list[Entry]
    changes: ShardChanges
    forks: list[ForkReport] = field(default_factory=list)
    duplicates: int = 0
    early: int = 0
    rejected: int = 0
    max_hlc: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """One shard's numbers for ``space info --json`` and the ``top`` placement panel."""

    space: str
    shard: int
    memories: int
    edges: int
    digest: bytes
    version_vector: list[tuple[bytes, int, bytes]]
    lag: int
    buffered: int
    tombstones: int
    quarantined: list[bytes]


def memory_row(mem_id: bytes, slot: MemSlot) -> MemoryRow:
    """The store row of a visible memory."""
    body = slot.body
    assert body is not None  # a visible slot is never a tombstone
    return MemoryRow(mem_id, slot.origin, slot.seq, slot.hlc, body.content, body.vector, body.confidence,
                     dict(body.meta))


def _edge_key(body: Body) -> EdgeKey | None:
    if isinstance(body, (Associate, Dissociate, Retract)):
        return (body.src, body.dst)
    return None


def _has_live(state: Mapping[bytes, Slot]) -> bool:
    return any(not s.tomb for s in state.values())


class ShardReplica:
    """Log + state of one ``(space, shard)``; turns entries into committed-row changes."""

    __slots__ = ("space", "shard", "log", "state", "_tomb_rows", "_live_edges", "_known")

    def __init__(
        self,
        space: str,
        shard: int,
        *,
        reorder_limit: int = DEFAULT_REORDER_LIMIT,
        reorder_bytes: int = DEFAULT_REORDER_BYTES,
        quarantined: Iterable[bytes] = (),
    ) -> None:
        self.space = space
        self.shard = shard
        self.log = ShardLog(space, shard, reorder_limit, reorder_bytes=reorder_bytes, quarantined=quarantined)
        self.state = ShardState(space, shard)
        # writer -> heap of (seq, src, dst): edge tombstone rows the store holds, to delete once collected
        self._tomb_rows: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        self._live_edges = 0
        # origin -> highest seq any peer claimed to hold (from their version vectors): the lag baseline
        self._known: dict[bytes, int] = {}

    # -- views ----------------------------------------------------------------------------------------

    @property
    def vv(self) -> VersionVector:
        """Contiguous prefix held per origin (live object: copy it before handing it to another thread)."""
        return self.log.vv

    def digest(self) -> bytes:
        """16-byte digest of the live materialized state (equal entry sets give equal digests)."""
        return self.state.digest()

    @property
    def quarantined(self) -> set[bytes]:
        return self.log.quarantined

    def memory_count(self) -> int:
        return len(self.state)

    def edge_count(self) -> int:
        """Edges with at least one live slot (whether or not ``src`` is currently visible)."""
        return self._live_edges

    def lag(self) -> int:
        """Entries some peer told us it holds that we do not hold contiguously yet (0 when caught up)."""
        vv = self.log.vv
        return sum(max(0, seq - vv.seq_of(o)) for o, seq in self._known.items())

    def observe_vv(self, pairs: Iterable[tuple[bytes, int, bytes]]) -> None:
        """Remember what a peer holds (from its request, response or push ack), for ``lag``."""
        known = self._known
        for origin, seq, _ in pairs:
            if seq > known.get(origin, 0) and (origin in known or len(known) < MAX_KNOWN_ORIGINS):
                known[origin] = seq

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            space=self.space,
            shard=self.shard,
            memories=len(self.state),
            edges=self._live_edges,
            digest=self.state.digest(),
            version_vector=self.log.vv.to_pairs(),
            lag=self.lag(),
            buffered=self.log.buffered_count(),
            tombstones=self.state.tombstones(),
            quarantined=sorted(self.log.quarantined),
        )

    # -- helpers for building bodies that must name what this replica has observed --------------------

    def observed_edge(self, src: bytes, dst: bytes) -> list[Dot]:
        """Live slots of ``src -> dst`` here: what a ``Dissociate`` written through this replica lists."""
        return self.state.edge_dots(src, dst)

    def observed_memory(self, mem_id: bytes) -> list[Dot]:
        """Live remembers of ``mem_id`` here: what a ``Forget`` written through this replica lists."""
        return self.state.memory_dots(mem_id)

    # -- local writes ---------------------------------------------------------------------------------

    def write(self, origin: bytes, hlc: int, body: Body) -> tuple[Entry, ShardChanges]:
        """Append our own entry (next seq of ``origin``) and fold it in; commit the changes before acking."""
        entries, changes = self.write_many(origin, [(hlc, body)])
        return entries[0], changes

    def write_many(self, origin: bytes, items: Iterable[tuple[int, Body]]) -> tuple[list[Entry], ShardChanges]:
        """Batched local writes: one ``ShardChanges`` for all (one commit, one push)."""
        if origin in self.log.quarantined:
            raise OriginQuarantined(f"origin {origin.hex()} is quarantined in {self.space}/{self.shard}")
        fold = _Fold(self)
        entries = []
        for hlc, body in items:
            entry = self.log.append_local(origin, hlc, body)
            entries.append(entry)
            fold.add(entry, self.log.vv.head_of(origin))
        return entries, fold.finish()

    # -- remote entries -------------------------------------------------------------------------------

    def receive(self, entries: Iterable[Entry]) -> ReceiveResult:
        """Offer pushed or synced entries; apply what extends a prefix, buffer what is early.

        Never raises on remote input: duplicates, gaps, forks and quarantined origins are classified and
        counted. Forked origins are quarantined by the log; each appears once in ``forks``.
        """
        fold = _Fold(self)
        result = ReceiveResult([], fold.changes)
        log = self.log
        for entry in entries:
            if entry.hlc > result.max_hlc:
                result.max_hlc = entry.hlc
            offered = log.offer(entry)
            outcome = offered.outcome
            for applied, h in zip(offered.applied, offered.hashes, strict=True):
                fold.add(applied, h)
                result.applied.append(applied)
            if outcome is Outcome.FORK:
                result.forks.append(ForkReport(self.space, self.shard, entry.origin, "conflicting entry"))
            elif outcome is Outcome.DUPLICATE:
                result.duplicates += 1
            elif outcome is Outcome.BUFFERED:
                result.early += 1
            elif outcome in (Outcome.QUARANTINED, Outcome.REJECTED):
                result.rejected += 1
        result.changes = fold.finish()
        return result

    def quarantine(self, origin: bytes, reason: str) -> ForkReport | None:
        """Quarantine ``origin`` because a peer's version vector shows a different head at equal seq.

        Returns a report the first time (persist it with ``store.quarantine``), ``None`` if it already was.
        Early entries of that origin waiting in the reorder buffer are freed: they can never drain.
        """
        if not self.log.quarantine(origin):
            return None
        return ForkReport(self.space, self.shard, origin, reason)

    # -- restart --------------------------------------------------------------------------------------

    def load(self, entries: Iterable[tuple[Entry, bytes]]) -> int:
        """Replay durable ``(entry, hash)`` pairs, each origin in ascending seq (call in chunks if large).

        Entries come from our own store, so hashes are trusted (no re-hash: that is the slow part of a
        cold start) but contiguity and chaining still are checked by the version vector. Returns the
        number applied; anything out of order is skipped, which ``finish_load`` then reports.
        """
        fold = _Fold(self, rows=False)
        vv = self.log.vv
        count = 0
        for entry, h in entries:
            have, head = vv.get(entry.origin)
            if entry.seq != have + 1 or entry.prev != head:
                continue
            vv.advance(entry.origin, entry.seq, h)
            fold.add(entry, h)
            count += 1
        fold.finish()
        return count

    def finish_load(self, stored_vv: Mapping[bytes, tuple[int, bytes]]) -> list[bytes]:
        """Compare the replayed prefix with the stored version vector; returns origins that disagree.

        A disagreement means the store is internally inconsistent (it commits entries and vv rows in one
        transaction, so it should not happen); the caller logs it and lets anti-entropy refill.
        """
        vv = self.log.vv
        return sorted(o for o, (seq, head) in stored_vv.items() if vv.get(o) != (seq, head))


class _Fold:
    """Folds entries into one replica's state and accumulates the exact store rows that changed."""

    __slots__ = ("rep", "rows", "changes", "mems", "edges_before", "origins")

    def __init__(self, rep: ShardReplica, *, rows: bool = True) -> None:
        self.rep = rep
        self.rows = rows
        self.changes = ShardChanges(rep.space, rep.shard, entries=[], memories_put=[], memories_del=[],
                                    slots_put=[], slots_del=[], vv=[])
        self.mems: set[bytes] = set()
        self.edges_before: dict[EdgeKey, dict[bytes, Slot]] = {}
        self.origins: set[bytes] = set()

    def add(self, entry: Entry, h: bytes) -> None:
        state = self.rep.state
        body = entry.body
        key = _edge_key(body)
        if key is not None and key not in self.edges_before:
            self.edges_before[key] = dict(state.edge_state(*key))
        change = state.apply(entry, h)
        if self.rows:
            self.changes.entries.append((entry, h))
            if change is not None and change.memory is not None:
                self.mems.add(change.memory)
        self.origins.add(entry.origin)

    def finish(self) -> ShardChanges:
        rep = self.rep
        state = rep.state
        ch = self.changes
        puts: dict[tuple[bytes, bytes, bytes], SlotRow] = {}
        dels: set[tuple[bytes, bytes, bytes]] = set()
        for key, before in self.edges_before.items():
            after = state.edge_state(*key)
            src, dst = key
            for writer, slot in after.items():
                if before.get(writer) != slot:
                    puts[(src, dst, writer)] = SlotRow(src, dst, writer, slot.seq, slot.tomb, slot.hlc,
                                                       slot.weight, slot.conf)
                    if slot.tomb:
                        heapq.heappush(rep._tomb_rows.setdefault(writer, []), (slot.seq, src, dst))
            for writer in before:
                if writer not in after:
                    dels.add((src, dst, writer))
            rep._live_edges += int(_has_live(after)) - int(_has_live(before))
        # Tombstones collected because their writer's prefix caught up (not a touched key).
        for origin in sorted(self.origins):
            heap = rep._tomb_rows.get(origin)
            if not heap:
                continue
            prefix = state.seq_of(origin)
            while heap and heap[0][0] <= prefix:
                seq, src, dst = heapq.heappop(heap)
                # Gone: collected, so its row goes too. Still there: a newer slot replaced it (its own row
                # and, if a tombstone, its own index item exist) or it was not collectable; nothing to do.
                if origin not in state.edge_state(src, dst):
                    dels.add((src, dst, origin))
                    puts.pop((src, dst, origin), None)
            if not heap:
                del rep._tomb_rows[origin]
        if not self.rows:
            return ch
        ch.slots_put = list(puts.values())
        ch.slots_del = sorted(dels - set(puts))
        for mem_id in sorted(self.mems):
            win = state.memory(mem_id)
            if win is None:
                ch.memories_del.append(mem_id)
            else:
                ch.memories_put.append(memory_row(mem_id, win))
        vv = rep.log.vv
        ch.vv = [(o, *vv.get(o)) for o in sorted(self.origins)]
        return ch


def memories_of(replica: ShardReplica) -> Iterable[tuple[bytes, Remember]]:
    """Every visible memory's id and ``Remember`` body (for index builds and reads)."""
    for mem_id, slot in replica.state.memories():
        if slot.body is not None:
            yield mem_id, slot.body


__all__ = [
    "ForkReport",
    "OriginQuarantined",
    "ReceiveResult",
    "ReplicaStats",
    "ShardReplica",
    "memories_of",
    "memory_row",
]
