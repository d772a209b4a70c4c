"""Version vectors: per origin, the contiguous prefix of its log that we hold, plus that prefix's head hash.

A version vector here is *local truth*, not a CRDT: it only ever advances one entry at a time, as the
log appends the next contiguous entry of an origin, so it is always a down-set of the origin's log. That
is what makes the Scuttlebutt handshake exact (ship ``remote seq + 1 ..`` per origin), lets one hash pin
a whole prefix (the per-origin hash chain), and makes tombstone GC a local decision (``seq_of(w) >= s``).
Early entries never touch it; they wait in the log's reorder buffer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from engramp2p.bounds import HASH_LEN, NODE_ID_LEN
from engramp2p.crdt.entry import ZERO_HASH

_ABSENT = (0, ZERO_HASH)


class VersionVector:
    """origin -> (contiguous max seq, hash of the entry at that seq); absent origins are ``(0, ZERO_HASH)``."""

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads: dict[bytes, tuple[int, bytes]] = {}

    def get(self, origin: bytes) -> tuple[int, bytes]:
        """``(seq, head hash)`` of ``origin``'s contiguous prefix."""
        return self._heads.get(origin, _ABSENT)

    def seq_of(self, origin: bytes) -> int:
        """Contiguous max seq held for ``origin`` (0 if none)."""
        head = self._heads.get(origin)
        return 0 if head is None else head[0]

    def head_of(self, origin: bytes) -> bytes:
        """Hash of the last contiguous entry of ``origin`` (``ZERO_HASH`` if none): the next entry's ``prev``."""
        head = self._heads.get(origin)
        return ZERO_HASH if head is None else head[1]

    def advance(self, origin: bytes, seq: int, head: bytes) -> None:
        """Record that entry ``seq`` of ``origin`` (hash ``head``) now extends the contiguous prefix.

        A skip is a local bug, not remote input (the log checks contiguity first), so it raises.
        """
        have = self.seq_of(origin)
        if seq != have + 1:
            raise ValueError(f"version vector may only advance contiguously: have {have}, got {seq}")
        if len(head) != HASH_LEN:
            raise ValueError("head hash has the wrong length")
        self._heads[origin] = (seq, head)

    def covers(self, other: VersionVector) -> bool:
        """True when we hold at least every prefix ``other`` holds (seqs only; see ``forked_with``)."""
        mine = self._heads
        return all(mine.get(o, _ABSENT)[0] >= seq for o, (seq, _) in other._heads.items())

    def forked_with(self, other: VersionVector) -> list[bytes]:
        """Origins whose heads differ at equal seq: one of the two histories is a fork (a cloned store)."""
        out = []
        for origin, (seq, head) in other._heads.items():
            mine = self._heads.get(origin)
            if mine is not None and mine[0] == seq and mine[1] != head:
                out.append(origin)
        return sorted(out)

    def origins(self) -> list[bytes]:
        """Known origins in canonical (byte) order."""
        return sorted(self._heads)

    def copy(self) -> VersionVector:
        vv = VersionVector()
        vv._heads = dict(self._heads)
        return vv

    def to_pairs(self) -> list[tuple[bytes, int, bytes]]:
        """Wire form ``[(origin, seq, head)]`` sorted by origin (repl's ``VVEntry`` mirrors it)."""
        return [(o, seq, head) for o, (seq, head) in sorted(self._heads.items())]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes, int, bytes]]) -> VersionVector:
        """Build from wire or stored pairs; malformed input (remote's fault) raises ``ValueError``.

        ``seq == 0`` rows are tolerated and dropped (they say nothing); duplicates are rejected because two
        different claims about one origin in one vector cannot both be true.
        """
        vv = cls()
        heads = vv._heads
        seen: set[bytes] = set()
        for origin, seq, head in pairs:
            if len(origin) != NODE_ID_LEN or len(head) != HASH_LEN:
                raise ValueError("version vector entry has a malformed origin or head")
            if seq < 0:
                raise ValueError("version vector seq must be >= 0")
            if origin in seen:
                raise ValueError("version vector names an origin twice")
            seen.add(origin)
            if seq:
                heads[bytes(origin)] = (seq, bytes(head))
        return vv

    def __len__(self) -> int:
        return len(self._heads)

    def __iter__(self) -> Iterator[tuple[bytes, int, bytes]]:
        return iter(self.to_pairs())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._heads == other._heads

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{o.hex()[:8]}:{seq}" for o, seq, _ in self.to_pairs())
        return f"VersionVector({inner})"
