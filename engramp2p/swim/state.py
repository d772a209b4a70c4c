"""The member table: who we know, in which state, at which incarnation, and the rules for changing it.

A member's state is only ever changed by news carrying an incarnation; the rules below decide whether
news is newer than what we hold (memberlist's ``aliveNode``/``suspectNode``/``deadNode`` conditions):

=========  ==============================================  ==========================================
news       applies to another member when                  about ourselves
=========  ==============================================  ==========================================
alive      incarnation > ours for it                       refute if ≥ own and differs from ours
suspect    incarnation ≥ ours and it is alive              refute (never believe we are suspect)
dead       incarnation ≥ ours and it is alive or suspect   refute unless we are leaving
left       incarnation ≥ ours and it is not left yet       refute unless we are leaving
=========  ==============================================  ==========================================

Suspect news about a member that is already suspect confirms its timer instead; about a member we
hold dead, it makes us repeat our Dead (the sender missed it). A claim whose incarnation is more than
``max_incarnation_jump`` above what we know is implausible and dropped. Refuting means taking
incarnation ``max(own, claimed) + 1`` and broadcasting Alive.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from engramp2p.sansio import Addr
from engramp2p.swim.messages import MemberState, State
from engramp2p.swim.suspicion import Suspicion

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LocalNode:
    """Who we are. ``incarnation`` is the persisted value + 1, set by the driver before start."""

    node_id: bytes
    name: str
    host: str
    port: int
    incarnation: int = 1
    meta: bytes = b""


class MemberView(msgspec.Struct, frozen=True, gc=False):
    """A snapshot of one member for readers and events; ``rtt`` is None until a direct probe was acked.

    A frozen msgspec ``Struct`` rather than a frozen dataclass: one is built for every membership event
    (a million while 1,000 peers form a cluster), and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost ~8x more. Same fields, order, equality, hashing and
    immutability; ``gc=False`` because it holds only atoms and a tuple of atoms.
    """

    node_id: bytes
    name: str
    addr: Addr
    state: State
    incarnation: int
    meta: bytes
    last_change: float
    rtt: float | None


class Member:
    """Mutable table row. ``wire`` caches the push-pull form until the next change."""

    __slots__ = (
        "node_id",
        "name",
        "addr",
        "incarnation",
        "state",
        "meta",
        "last_change",
        "rtt",
        "suspicion",
        "wire",
        "in_probe_list",
    )

    def __init__(
        self, node_id: bytes, name: str, addr: Addr, incarnation: int, state: State, meta: bytes, now: float
    ) -> None:
        self.node_id = node_id
        self.name = name
        self.addr = addr
        self.incarnation = incarnation
        self.state = state
        self.meta = meta
        self.last_change = now
        self.rtt: float | None = None
        self.suspicion: Suspicion | None = None
        self.wire: MemberState | None = None
        self.in_probe_list = False

    def to_wire(self) -> MemberState:
        w = self.wire
        if w is None:
            w = self.wire = MemberState(
                self.node_id,
                self.name,
                self.addr[0],
                self.addr[1],
                self.incarnation,
                int(self.state),
                self.meta,
            )
        return w

    def view(self) -> MemberView:
        return MemberView(
            self.node_id,
            self.name,
            self.addr,
            self.state,
            self.incarnation,
            self.meta,
            self.last_change,
            self.rtt,
        )


def plausible(known: int, claimed: int, max_jump: int) -> bool:
    """A claim more than ``max_jump`` incarnations ahead of what we know is hostile or corrupt."""
    return claimed - known <= max_jump


class IndexedSet(Generic[T]):
    """A set with O(1) add, discard and uniform random choice (for helpers, gossip targets, reconnects)."""

    __slots__ = ("_items", "_pos")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._pos: dict[T, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: T) -> bool:
        return item in self._pos

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def add(self, item: T) -> None:
        pos = self._pos
        if item not in pos:
            items = self._items
            pos[item] = len(items)
            items.append(item)

    def update(self, items: list[T]) -> None:
        """Add many at once (``dict.update`` over the new ones instead of one call each)."""
        pos = self._pos
        fresh = [i for i in dict.fromkeys(items) if i not in pos]
        start = len(self._items)
        self._items.extend(fresh)
        pos.update(zip(fresh, range(start, start + len(fresh)), strict=True))

    def discard(self, item: T) -> None:
        i = self._pos.pop(item, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._pos[last] = i

    def choice(self, rng: random.Random) -> T:
        items = self._items
        return items[int(rng.random() * len(items))]  # uniform; cheaper than randrange on a hot path

    def sample(self, rng: random.Random, k: int) -> list[T]:
        """Up to ``k`` distinct items chosen uniformly."""
        if k >= len(self._items):
            out = list(self._items)
            rng.shuffle(out)
            return out
        return rng.sample(self._items, k)
