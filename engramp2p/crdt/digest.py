"""Incremental, order-independent digest of a shard's live state (LtHash-style).

Each live item (a live memory slot, a live edge slot) is hashed to 16 lanes of uint64; the digest is the
lane-wise sum mod 2**64 of those hashes. Addition commutes and has an inverse, so the digest is a function
of the *set* of live items, can be updated in O(1) on insert/replace/delete, and does not care about the
history that produced the set -- in particular not about when each replica collected its tombstones,
which is why tombstones are never digested. Two hosts compare it when their version vectors are equal.

Unlike XOR of hashes, a modular sum does not cancel an item added twice, and 16 x 64-bit lanes keep
accidental collisions out of reach. (Between untrusted parties LtHash wants ~1024 lanes; cluster
traffic is authenticated, so this digest only has to catch bugs and divergence, not forgery.)
"""

from __future__ import annotations

import hashlib

from engramp2p.bounds import HASH_LEN

LANES = 16
_LANE_BITS = 64
_SLOT_BYTES = 12  # each lane lives in a 96-bit slot of one Python int: 32 spare bits absorb the carry
_WIDTH = LANES * _SLOT_BYTES
_MASK = sum(((1 << _LANE_BITS) - 1) << (8 * _SLOT_BYTES * i) for i in range(LANES))
_TWO64 = sum(1 << (_LANE_BITS + 8 * _SLOT_BYTES * i) for i in range(LANES))


def item_value(item: bytes) -> int:
    """One item's 16 lane values (64 bits each, from shake-256), laid out in 96-bit slots.

    Keeping the lanes in one int makes an update three big-int operations instead of 16 Python ones:
    a lane sum never reaches its slot's spare bits, so masking reduces every lane mod 2**64 at once.
    """
    return int.from_bytes(hashlib.shake_256(item).digest(_WIDTH), "little") & _MASK


class SetDigest:
    """A multiset hash: ``add`` and ``remove`` canonical item bytes; ``digest()`` is 16 bytes."""

    __slots__ = ("_acc", "count")

    def __init__(self) -> None:
        self._acc = 0
        self.count = 0  # live items, for diagnostics; not part of the digest

    def add(self, item: bytes) -> None:
        self._acc = (self._acc + item_value(item)) & _MASK
        self.count += 1

    def remove(self, item: bytes) -> None:
        """Undo one ``add`` of the same bytes (removing an absent item corrupts the digest: a local bug)."""
        # Adding 2**64 - v in every lane subtracts v mod 2**64 with no borrow between lanes.
        self._acc = (self._acc + (_TWO64 - item_value(item))) & _MASK
        self.count -= 1

    def lanes(self) -> bytes:
        """The 16 lanes as little-endian uint64 (128 bytes; lanes of disjoint sets add)."""
        raw = self._acc.to_bytes(_WIDTH, "little")
        return b"".join(raw[i : i + 8] for i in range(0, _WIDTH, _SLOT_BYTES))

    def digest(self) -> bytes:
        """A 16-byte summary of the lanes, for the wire (``bounds.Hash``)."""
        return hashlib.blake2b(self.lanes(), digest_size=HASH_LEN, person=b"engramp2p-state").digest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SetDigest):
            return NotImplemented
        return self._acc == other._acc

    __hash__ = None  # type: ignore[assignment]  # mutable
