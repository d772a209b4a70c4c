"""Which members host which shard: rendezvous (highest-random-weight) hashing.

Every peer computes the same answer from the same membership view, with no coordination: a shard is held
by the ``replicas`` eligible members with the highest ``H(space, shard, node_id)``. Adding or removing one
member moves only the shards for which it is (or was) in the top ``replicas`` -- about ``replicas/n`` of
them -- which is why rendezvous hashing suits a fleet that churns.

Eligibility follows DESIGN §7: members with the ``storage`` role whose ``spaces`` filter accepts the
space. A member that is merely suspect stays in the placement, and so does a dead one until it has been
dead for ``rebalance_delay``: a peer that reboots must not trigger a full re-replication of its shards.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

STORAGE_ROLE = "storage"


@dataclass(frozen=True, slots=True)
class Candidate:
    """What placement needs to know about one member (including ourselves)."""

    node_id: bytes
    alive: bool
    dead_since: float | None = None
    roles: tuple[str, ...] = (STORAGE_ROLE,)
    spaces: tuple[str, ...] = ("*",)


def accepts(patterns: Sequence[str], space: str) -> bool:
    """A ``spaces`` filter is a list of shell-style globs; an empty list accepts nothing."""
    return any(fnmatch.fnmatchcase(space, p) for p in patterns)


def shard_of(memory_id: bytes, shards: int) -> int:
    """A memory's shard: ``blake2b(id) mod shards`` (DESIGN §6); an edge lives in its ``src``'s shard."""
    digest = hashlib.blake2b(memory_id, digest_size=8, person=b"engramp2p-shard").digest()
    return int.from_bytes(digest, "big") % shards


def score(space: str, shard: int, node_id: bytes) -> int:
    data = b"%s\x00%d\x00%s" % (space.encode(), shard, node_id)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"engramp2p-place").digest(), "big")


def eligible(members: Iterable[Candidate], space: str, now: float, rebalance_delay: float) -> list[Candidate]:
    out = []
    for m in members:
        if STORAGE_ROLE not in m.roles or not accepts(m.spaces, space):
            continue
        if not m.alive and (m.dead_since is None or now - m.dead_since >= rebalance_delay):
            continue
        out.append(m)
    return out


def hosts(
    space: str,
    shard: int,
    replicas: int,
    members: Iterable[Candidate],
    now: float,
    rebalance_delay: float,
) -> list[bytes]:
    """The node ids hosting ``(space, shard)``, best first (ties broken by node id, so it is total)."""
    ranked = sorted(
        eligible(members, space, now, rebalance_delay),
        key=lambda m: (score(space, shard, m.node_id), m.node_id),
        reverse=True,
    )
    return [m.node_id for m in ranked[:replicas]]
