"""The per-``(space, shard)`` multi-origin log as a pure state machine, plus the Scuttlebutt range planner.

``ShardLog`` decides what an arriving entry *is* -- the next contiguous entry of its origin (applied,
together with any buffered successors it unblocks), a duplicate, an early entry (buffered), a fork, or
something to reject -- and keeps the version vector. It stores no entries: ``store/`` persists the
``applied`` ones (in order) and ``materialize`` folds them into state. Every entry here may come from a
hostile or broken peer, so nothing in ``offer`` raises; outcomes are classified and counted.

Forks: an origin that shows two different entries at one seq (or an entry whose ``prev`` does not match
the head we hold) has had its store cloned or restored. We cannot tell which history is right, so the
origin is quarantined: its buffered entries are dropped and everything further from it is rejected until
an operator intervenes. Its already-applied prefix stays (it was valid when applied).

The reorder buffer is bounded by count and by (approximate) bytes. When full, the *arriving* entry is
rejected rather than evicting an older one: early entries nearest their origin's head are the ones that
drain first, and anti-entropy re-ships everything from ``seq + 1`` anyway, so rejecting loses nothing.
Entries more than ``reorder_limit`` seqs ahead of their head are rejected for the same reason.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from engramp2p.crdt.entry import Associate, Body, Dissociate, Entry, Forget, Remember, Retract, entry_hash
from engramp2p.crdt.vv import VersionVector

DEFAULT_REORDER_LIMIT = 1024
DEFAULT_REORDER_BYTES = 16 * 1024 * 1024


def approx_size(entry: Entry) -> int:
    """Cheap upper-ish estimate of an entry's encoded size (for buffer and budget accounting).

    Exact sizes need an encode; this walks only the variable-length fields, which dominate.
    """
    body = entry.body
    size = 64  # origin, seq, hlc, prev, framing
    if isinstance(body, Remember):
        size += 32 + len(body.vector) + 4 * len(body.content)
        for k, v in body.meta.items():
            size += 8 + 4 * (len(k) + len(v))
    elif isinstance(body, Associate):
        size += 56
    elif isinstance(body, Retract):
        size += 36
    elif isinstance(body, (Dissociate, Forget)):
        size += 40 + 26 * len(body.observed)
    return size


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # extended its origin's contiguous prefix (maybe unblocking buffered ones)
    DUPLICATE = "duplicate"  # already held (applied or buffered) with the same hash
    BUFFERED = "buffered"  # early: waits for the gap before it
    FORK = "fork"  # conflicts with what we hold: origin now quarantined
    QUARANTINED = "quarantined"  # origin was already quarantined: rejected
    REJECTED = "rejected"  # buffer full or too far ahead: anti-entropy will re-ship it


@dataclass(slots=True)
class OfferResult:
    """What ``offer`` did. ``applied``/``hashes`` list, in log order, every entry that became contiguous."""

    outcome: Outcome
    applied: list[Entry] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class LogStats:
    """Counters for remote misbehaviour and buffer pressure (exported as metrics by the caller)."""

    applied: int = 0
    duplicates: int = 0
    buffered: int = 0
    forks: int = 0
    rejected_quarantined: int = 0
    rejected_full: int = 0
    rejected_far: int = 0


class ShardLog:
    """Multi-origin sequenced log of one shard of one space: version vector, reorder buffer, fork check."""

    __slots__ = (
        "space",
        "shard",
        "reorder_limit",
        "reorder_bytes",
        "vv",
        "quarantined",
        "stats",
        "_early",
        "_early_count",
        "_early_bytes",
    )

    def __init__(
        self,
        space: str,
        shard: int,
        reorder_limit: int = DEFAULT_REORDER_LIMIT,
        *,
        reorder_bytes: int = DEFAULT_REORDER_BYTES,
        vv: VersionVector | None = None,
        quarantined: Iterable[bytes] = (),
    ) -> None:
        """``vv`` and ``quarantined`` restore a log loaded from the store."""
        self.space = space
        self.shard = shard
        self.reorder_limit = reorder_limit
        self.reorder_bytes = reorder_bytes
        self.vv = vv if vv is not None else VersionVector()
        self.quarantined: set[bytes] = set(quarantined)
        self.stats = LogStats()
        # origin -> seq -> (entry, hash, approx size)
        self._early: dict[bytes, dict[int, tuple[Entry, bytes, int]]] = {}
        self._early_count = 0
        self._early_bytes = 0

    # -- local writes -------------------------------------------------------------------------------

    def append_local(self, origin: bytes, hlc: int, body: Body) -> Entry:
        """Create our own next entry (next seq, ``prev`` = head hash) and extend the prefix with it.

        Raises if ``origin`` is quarantined: that means another store is writing with our identity.
        Early entries of ``origin`` waiting in the buffer are dropped: they belong to another history
        under our identity (a cloned store, or our own entries from before a crash rolled the store back),
        so they can never chain onto the entry just written, and left there they would hold buffer space
        until restart. That history is not lost from view: when anti-entropy brings it back, at our head
        or chained onto it, ``offer`` reports the fork.
        """
        if origin in self.quarantined:
            raise RuntimeError("this origin is quarantined (forked); refusing to write under it")
        seq, head = self.vv.get(origin)
        entry = Entry(origin, seq + 1, hlc, head, body)
        self.vv.advance(origin, seq + 1, entry_hash(self.space, self.shard, entry))
        self.stats.applied += 1
        if origin in self._early:
            self._drop_buffered(origin)
        return entry

    def hash_of(self, entry: Entry) -> bytes:
        """The entry's hash in this log (bound to space and shard)."""
        return entry_hash(self.space, self.shard, entry)

    # -- remote entries -----------------------------------------------------------------------------

    def offer(self, entry: Entry) -> OfferResult:
        """Classify an entry from a peer and apply it (plus any buffered successors) if it is next."""
        origin = entry.origin
        stats = self.stats
        if origin in self.quarantined:
            stats.rejected_quarantined += 1
            return OfferResult(Outcome.QUARANTINED)
        have, head = self.vv.get(origin)
        seq = entry.seq
        if seq < 1:  # impossible after bounded decoding; never let it reach the fork check
            stats.rejected_far += 1
            return OfferResult(Outcome.REJECTED)
        if seq < have:
            # Below the head we cannot compare without the store; the prefix is pinned by the chain.
            stats.duplicates += 1
            return OfferResult(Outcome.DUPLICATE)
        h = entry_hash(self.space, self.shard, entry)
        if seq == have:
            if h == head:
                stats.duplicates += 1
                return OfferResult(Outcome.DUPLICATE)
            return self._fork(origin)
        if seq == have + 1:
            if entry.prev != head:
                return self._fork(origin)
            result = OfferResult(Outcome.APPLIED, [entry], [h])
            self.vv.advance(origin, seq, h)
            self._drain(origin, seq, h, result)
            if result.outcome is Outcome.FORK:
                return result
            stats.applied += len(result.applied)
            return result
        return self._buffer(entry, h, have)

    def _buffer(self, entry: Entry, h: bytes, have: int) -> OfferResult:
        origin, seq = entry.origin, entry.seq
        pending = self._early.get(origin)
        if pending is not None and seq in pending:
            if pending[seq][1] == h:
                self.stats.duplicates += 1
                return OfferResult(Outcome.DUPLICATE)
            return self._fork(origin)
        if seq - have > self.reorder_limit:
            self.stats.rejected_far += 1
            return OfferResult(Outcome.REJECTED)
        size = approx_size(entry)
        if self._early_count >= self.reorder_limit or self._early_bytes + size > self.reorder_bytes:
            self.stats.rejected_full += 1
            return OfferResult(Outcome.REJECTED)
        if pending is None:
            pending = self._early[origin] = {}
        pending[seq] = (entry, h, size)
        self._early_count += 1
        self._early_bytes += size
        self.stats.buffered += 1
        return OfferResult(Outcome.BUFFERED)

    def _drain(self, origin: bytes, seq: int, head: bytes, result: OfferResult) -> None:
        """Move buffered successors of ``seq`` into the prefix while they chain correctly."""
        pending = self._early.get(origin)
        if not pending:
            return
        while (item := pending.get(seq + 1)) is not None:
            entry, h, size = item
            del pending[seq + 1]
            self._early_count -= 1
            self._early_bytes -= size
            if entry.prev != head:
                # The entries applied so far in this call are valid and stay applied; report them.
                self._fork(origin)
                result.outcome = Outcome.FORK
                self.stats.applied += len(result.applied)
                return
            seq, head = seq + 1, h
            self.vv.advance(origin, seq, h)
            result.applied.append(entry)
            result.hashes.append(h)
        if not pending:
            del self._early[origin]

    def _fork(self, origin: bytes) -> OfferResult:
        self.stats.forks += 1
        self.quarantine(origin)
        return OfferResult(Outcome.FORK)

    def quarantine(self, origin: bytes) -> bool:
        """Reject everything further from ``origin`` and free its buffered entries (they can never drain).

        For forks found outside ``offer`` too (a peer's version vector shows another head at equal seq).
        Returns False if it already was quarantined.
        """
        if origin in self.quarantined:
            return False
        self.quarantined.add(origin)
        self._drop_buffered(origin)
        return True

    def _drop_buffered(self, origin: bytes) -> None:
        pending = self._early.pop(origin, None)
        if pending:
            self._early_count -= len(pending)
            self._early_bytes -= sum(size for _, _, size in pending.values())

    def buffered_count(self) -> int:
        """Entries waiting in the reorder buffer."""
        return self._early_count

    def buffered_bytes(self) -> int:
        return self._early_bytes


# -- Scuttlebutt planning ---------------------------------------------------------------------------


class Range(NamedTuple):
    """Entries ``first_seq..last_seq`` (inclusive) of ``origin``."""

    origin: bytes
    first_seq: int
    last_seq: int


def plan_missing(local_vv: VersionVector, remote_vv: VersionVector, *, rotate: int = 0) -> list[Range]:
    """Per origin, the suffix of our contiguous prefix that the remote lacks.

    Origins come in byte order rotated by ``rotate`` (pass a round counter) so that, under a tight budget,
    no origin always goes last. Each range starts right after the remote's prefix, so shipping it in order
    extends the remote's prefix and never leaves a gap.
    """
    out = [
        Range(origin, theirs + 1, seq)
        for origin, seq, _ in local_vv.to_pairs()
        if seq > (theirs := remote_vv.seq_of(origin))
    ]
    if out and rotate:
        k = rotate % len(out)
        out = out[k:] + out[:k]
    return out


Fetch = Callable[[bytes, int, int], Iterable[Entry]]


def take_within_budget(
    ranges: Iterable[Range],
    fetch: Fetch,
    budget_bytes: int,
    size_of: Callable[[Entry], int] = approx_size,
) -> tuple[list[Entry], bool]:
    """Walk ``ranges`` in order, fetching entries, and stop before ``budget_bytes`` would be exceeded.

    ``fetch(origin, first, last)`` yields that origin's entries ascending (lazily, e.g. a DB cursor).
    The first entry is always taken, so every exchange makes progress even if one entry exceeds the
    budget. An origin whose entries come back with a hole (compacted or missing) is cut at the hole --
    never skipped over -- and the walk moves to the next origin. Returns ``(entries, more)`` where
    ``more`` means the budget stopped us before everything planned was shipped.
    """
    out: list[Entry] = []
    used = 0
    for origin, first, last in ranges:
        expect = first
        for entry in fetch(origin, first, last):
            if entry.origin != origin or entry.seq != expect:
                break
            size = size_of(entry)
            if out and used + size > budget_bytes:
                return out, True
            out.append(entry)
            used += size
            expect += 1
            if expect > last:
                break
    return out, False
