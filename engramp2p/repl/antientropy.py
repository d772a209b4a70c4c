"""Anti-entropy: when and with whom each hosted shard syncs (``SyncScheduler``), and the pure exchange steps.

Scuttlebutt-style push-pull per shard (DESIGN §7, reference/crdt.md §4). The requester sends its version
vector and digest (``make_request``); the responder ships, per origin, the entries the requester lacks, in
ascending seq, under a byte budget and never skipping within an origin (``answer``); the requester offers
them to its log and learns from the responder's version vector what the *responder* lacks, which it pushes
back (``absorb`` then ``push_back``): one round trip repairs both directions. ``more`` on either side means
a budget cut the exchange short, and the scheduler runs the next round at once.

Nothing here does I/O or reads a clock. The protocol steps take a ``fetch(origin, first, last)`` callable
that returns *durable* entries ascending -- the agent serves from SQLite in the store thread, tests from
memory -- so only committed entries are ever shipped, whatever the in-memory replica holds. Entries a
requester absorbs are not durable until its caller commits ``result.receive.changes``.

The scheduler decides *when*: every ``sync_interval`` (with jitter, so hosts do not synchronise) each
hosted shard syncs with one other host, rotating; ``MemberRecovered``, a placement change, a push that
arrived early (a gap) and a digest mismatch make a sync with that peer due at once. It keeps at most one
exchange in flight per (shard, peer) and ``max_in_flight`` overall, and backs off a peer exponentially
after failed exchanges, without ever stopping to try: convergence after a partition heals depends on it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engramp2p.crdt.entry import Entry
from engramp2p.crdt.log import Range, approx_size, plan_missing, take_within_budget
from engramp2p.crdt.vv import VersionVector
from engramp2p.repl.messages import PushEntries, SyncRequest, SyncResponse, VVEntry
from engramp2p.repl.replica import ForkReport, ReceiveResult, ShardReplica

ShardKey = tuple[str, int]
Fetch = Callable[[bytes, int, int], Iterable[Entry]]

DEFAULT_BUDGET = 512 * 1024
#: Hard cap on any response, whatever both sides ask for (config keeps budgets <= max_frame / 2).
MAX_BUDGET = 32 * 1024 * 1024


class BadSync(ValueError):
    """A sync message that is malformed or about another shard: the remote's fault, drop and count it."""


# -- events the driver emits upward -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForkDetected:
    """An origin forked in this shard (cloned or restored store); it is quarantined here."""

    space: str
    shard: int
    origin: bytes
    peer: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class StateDiverged:
    """Equal version vectors but different digests: materialization differs (a bug); logged loudly."""

    space: str
    shard: int
    peer: bytes


@dataclass(frozen=True, slots=True)
class SyncDone:
    """One exchange finished: ``received`` entries applied here, ``caught_up`` when we now cover the peer."""

    space: str
    shard: int
    peer: bytes
    received: int
    caught_up: bool


# -- the protocol steps -------------------------------------------------------------------------------


class SyncView(Protocol):
    """What answering needs of a replica: a snapshot is enough (answer may run in the store thread)."""

    space: str
    shard: int

    @property
    def vv(self) -> VersionVector: ...

    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A replica's version vector and digest frozen at one moment, safe to use from another thread."""

    space: str
    shard: int
    vv: VersionVector
    state_digest: bytes

    def digest(self) -> bytes:
        return self.state_digest


def snapshot(replica: ShardReplica) -> Snapshot:
    """Freeze what ``answer`` reads, so the agent can answer from the store thread without racing writes."""
    return Snapshot(replica.space, replica.shard, replica.vv.copy(), replica.digest())


def vv_wire(vv: VersionVector) -> list[VVEntry]:
    return [VVEntry(o, seq, head) for o, seq, head in vv.to_pairs()]


def vv_from_wire(entries: Sequence[VVEntry]) -> VersionVector:
    """Decode a peer's version vector; malformed (an origin twice) raises ``BadSync``."""
    try:
        return VersionVector.from_pairs((e.origin, e.seq, e.head) for e in entries)
    except ValueError as exc:
        raise BadSync(str(exc)) from None


def make_request(replica: SyncView, budget: int = DEFAULT_BUDGET) -> SyncRequest:
    """Open an exchange: our prefixes, our digest, and how many bytes of entries we will take."""
    return SyncRequest(replica.space, replica.shard, vv_wire(replica.vv), replica.digest(),
                       max(1, min(budget, MAX_BUDGET)))


def answer(replica: SyncView, request: SyncRequest, fetch: Fetch, budget: int = DEFAULT_BUDGET,
           *, rotate: int = 0) -> SyncResponse:
    """Ship what the requester lacks, ascending per origin, within ``min(budget, request.budget)`` bytes.

    ``rotate`` (a per-shard round counter) moves the starting origin so a tight budget cannot starve the
    last origin. At least one entry goes out if anything is missing, so every round makes progress.
    Raises ``BadSync`` for a request about another shard or with a malformed version vector.
    """
    if request.space != replica.space or request.shard != replica.shard:
        raise BadSync("sync request for another shard")
    theirs = vv_from_wire(request.vv)
    ranges = plan_missing(replica.vv, theirs, rotate=rotate)
    limit = max(1, min(budget, request.budget, MAX_BUDGET))
    entries, more = take_within_budget(ranges, fetch, limit)
    return SyncResponse(replica.space, replica.shard, entries, vv_wire(replica.vv), replica.digest(), more)


def out_of_sync(replica: SyncView, vv: Sequence[VVEntry], digest: bytes) -> bool:
    """Whether a peer's advertised state (a push ack, gossip) differs from ours: then ``nudge`` a sync.

    Differing prefixes are the normal case after a write; equal prefixes with different digests are the
    "digest mismatch" trigger. Malformed vectors count as out of sync (the exchange will reject them).
    """
    try:
        theirs = vv_from_wire(vv)
    except BadSync:
        return True
    return theirs != replica.vv or digest != replica.digest()


@dataclass(slots=True)
class AbsorbResult:
    """What one response did here, and what to do next.

    Commit ``receive.changes`` before serving or acknowledging any of ``receive.applied``. ``lacks`` are
    the ranges the responder does not hold (``push_back`` them); ``more`` asks for another round at once;
    ``diverged`` means equal version vectors with different digests.
    """

    receive: ReceiveResult
    lacks: list[Range]
    more: bool
    caught_up: bool
    diverged: bool
    forks: list[ForkReport] = field(default_factory=list)


def absorb(replica: ShardReplica, response: SyncResponse) -> AbsorbResult:
    """Offer the response's entries, compare version vectors, and plan the push back. ``BadSync`` if malformed."""
    if response.space != replica.space or response.shard != replica.shard:
        raise BadSync("sync response for another shard")
    theirs = vv_from_wire(response.vv)
    received = replica.receive(response.entries)
    replica.observe_vv(theirs.to_pairs())
    forks = list(received.forks)
    mine = replica.vv
    for origin in mine.forked_with(theirs):
        report = replica.quarantine(origin, "peer holds a different entry at the same seq")
        if report is not None:
            forks.append(report)
    quarantined = replica.quarantined
    lacks = [r for r in plan_missing(mine, theirs) if r.origin not in quarantined]
    caught_up = all(mine.seq_of(o) >= seq or o in quarantined for o, seq, _ in theirs.to_pairs())
    diverged = (not response.more and caught_up and not lacks and not forks
                and mine == theirs and replica.digest() != response.digest)
    return AbsorbResult(received, lacks, response.more, caught_up, diverged, forks)


def push_back(replica: SyncView, lacks: Sequence[Range], fetch: Fetch,
              budget: int = DEFAULT_BUDGET) -> tuple[PushEntries | None, bool]:
    """The responder's missing entries as one ``PushEntries`` within ``budget``; ``more`` if cut short."""
    if not lacks:
        return None, False
    entries, more = take_within_budget(lacks, fetch, max(1, budget), approx_size)
    if not entries:
        return None, False
    return PushEntries(replica.space, replica.shard, entries), more


# -- the scheduler ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Knobs with their reasons.

    ``sync_interval``: the repair bound when pushes are lost (10 s, like Consul's push-pull on a LAN is
    30 s; shards are smaller). ``jitter``: +-fraction so hosts spread their rounds. ``urgent_delay``:
    immediate triggers wait this long so a burst (a recovered member hosting 50 shards, a push storm)
    coalesces. ``backoff_*``: a failed peer is retried at base * 2**(failures-1), capped.
    """

    sync_interval: float = 10.0
    jitter: float = 0.2
    urgent_delay: float = 0.05
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_in_flight: int = 8
    budget: int = DEFAULT_BUDGET


@dataclass(frozen=True, slots=True)
class SyncStart:
    """Start one exchange now: send ``make_request`` for ``(space, shard)`` to ``peer``, then report ``token``."""

    token: int
    space: str
    shard: int
    peer: bytes
    reason: str


@dataclass(slots=True)
class PeerSync:
    """Sync state of one (shard, peer) pair (also what ``top`` colours)."""

    urgent_at: float | None = None
    reason: str = ""
    retry_at: float = 0.0
    failures: int = 0
    in_flight: int | None = None
    last_ok: float | None = None
    caught_up: bool = False


@dataclass(slots=True)
class _Shard:
    peers: dict[bytes, PeerSync]
    periodic_at: float
    turn: int = 0


class SyncScheduler:
    """Per hosted shard and peer: when the next exchange is due, what is in flight, who is backing off."""

    def __init__(self, node_id: bytes, config: SchedulerConfig | None = None, *, seed: int = 0) -> None:
        self.node_id = node_id
        self.config = config or SchedulerConfig()
        self._rng = random.Random(seed)
        self._shards: dict[ShardKey, _Shard] = {}
        self._tokens = itertools.count(1)
        self._flights: dict[int, tuple[ShardKey, bytes]] = {}
        self.started = 0
        self.failed = 0

    # -- inputs -------------------------------------------------------------------------------------

    def set_hosts(self, now: float, space: str, shard: int, hosts: Iterable[bytes]) -> None:
        """Declare the hosts of a shard we host (ourselves included or not); new peers sync at once."""
        key = (space, shard)
        peers = sorted(set(hosts) - {self.node_id})
        entry = self._shards.get(key)
        if entry is None:
            entry = self._shards[key] = _Shard({}, now + self._spread(self.config.sync_interval))
        old = entry.peers
        entry.peers = {p: old.get(p) or PeerSync() for p in peers}
        for p in peers:
            if p not in old:
                self._urge(entry.peers[p], now, "placement")

    def remove_shard(self, space: str, shard: int) -> None:
        """We no longer host it: forget its schedule (in-flight results are ignored when they come)."""
        entry = self._shards.pop((space, shard), None)
        if entry is not None:
            for ps in entry.peers.values():
                if ps.in_flight is not None:
                    self._flights.pop(ps.in_flight, None)

    def member_recovered(self, now: float, node_id: bytes) -> None:
        """A member came back (or was refuted alive): sync every shard we share with it, now."""
        for entry in self._shards.values():
            ps = entry.peers.get(node_id)
            if ps is not None:
                ps.failures = 0
                ps.retry_at = 0.0
                self._urge(ps, now, "recovered")

    def nudge(self, now: float, space: str, shard: int, peer: bytes | None = None, reason: str = "nudge") -> None:
        """Sync soon: a push arrived early (gap before it), or a peer's digest differs from ours."""
        entry = self._shards.get((space, shard))
        if entry is None or not entry.peers:
            return
        if peer is None or peer not in entry.peers:
            peer = self._pick(entry, now)
            if peer is None:
                return
        self._urge(entry.peers[peer], now, reason)

    def due(self, now: float) -> list[SyncStart]:
        """Exchanges to start now (each marked in flight until ``finished``)."""
        out: list[SyncStart] = []
        cfg = self.config
        keys = sorted(self._shards)
        for key in keys:
            entry = self._shards[key]
            if entry.periodic_at <= now:
                entry.periodic_at = now + self._spread(cfg.sync_interval)
                peer = self._pick(entry, now)
                if peer is not None:
                    self._urge(entry.peers[peer], now, "periodic", delay=0.0)
        for key in keys:
            for peer, ps in self._shards[key].peers.items():
                if len(self._flights) >= cfg.max_in_flight:
                    return out
                if ps.in_flight is None and ps.urgent_at is not None and ps.urgent_at <= now and ps.retry_at <= now:
                    token = next(self._tokens)
                    ps.in_flight = token
                    self._flights[token] = (key, peer)
                    out.append(SyncStart(token, key[0], key[1], peer, ps.reason))
                    ps.urgent_at = None
                    self.started += 1
        return out

    def finished(self, now: float, token: int, *, ok: bool, more: bool = False, caught_up: bool = False) -> None:
        """Report an exchange's end. ``ok=False``: timeout, refused, undecodable -> back off that peer."""
        flight = self._flights.pop(token, None)
        if flight is None:
            return
        key, peer = flight
        entry = self._shards.get(key)
        ps = None if entry is None else entry.peers.get(peer)
        if ps is None or ps.in_flight != token:
            return
        ps.in_flight = None
        if ok:
            ps.failures = 0
            ps.retry_at = 0.0
            ps.last_ok = now
            ps.caught_up = caught_up and not more
            if more:
                self._urge(ps, now, "more", delay=0.0)
        else:
            self.failed += 1
            ps.failures += 1
            cfg = self.config
            backoff = min(cfg.backoff_max, cfg.backoff_base * 2 ** min(ps.failures - 1, 30))
            ps.retry_at = now + self._spread(backoff)
            ps.caught_up = False

    # -- timers -------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Earliest periodic round, or urgent exchange that could start (none while at the in-flight cap:
        a finishing exchange, an input, frees a slot)."""
        best: float | None = None
        full = len(self._flights) >= self.config.max_in_flight
        for entry in self._shards.values():
            t = entry.periodic_at
            if best is None or t < best:
                best = t
            if full:
                continue
            for ps in entry.peers.values():
                if ps.urgent_at is not None and ps.in_flight is None:
                    t = max(ps.urgent_at, ps.retry_at)
                    if t < best:
                        best = t
        return best

    # -- views --------------------------------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._flights)

    def shards(self) -> list[ShardKey]:
        return sorted(self._shards)

    def peers(self, space: str, shard: int) -> dict[bytes, PeerSync]:
        """Per-peer sync state of one shard (read-only use: the ``top`` placement panel)."""
        entry = self._shards.get((space, shard))
        return {} if entry is None else dict(entry.peers)

    # -- internals ----------------------------------------------------------------------------------

    def _spread(self, base: float) -> float:
        j = self.config.jitter
        return base * (1.0 + self._rng.uniform(-j, j)) if j else base

    def _urge(self, ps: PeerSync, now: float, reason: str, *, delay: float | None = None) -> None:
        when = now + (self.config.urgent_delay if delay is None else delay)
        if ps.urgent_at is None or when < ps.urgent_at:
            ps.urgent_at = when
            ps.reason = reason

    def _pick(self, entry: _Shard, now: float) -> bytes | None:
        """Next peer in rotation that is not busy and not backing off (fall back to any)."""
        peers = list(entry.peers)
        if not peers:
            return None
        n = len(peers)
        for i in range(n):
            p = peers[(entry.turn + i) % n]
            ps = entry.peers[p]
            if ps.in_flight is None and ps.retry_at <= now:
                entry.turn = (entry.turn + i + 1) % n
                return p
        p = peers[entry.turn % n]
        entry.turn = (entry.turn + 1) % n
        return p


__all__ = [
    "DEFAULT_BUDGET",
    "MAX_BUDGET",
    "AbsorbResult",
    "BadSync",
    "Fetch",
    "ForkDetected",
    "PeerSync",
    "SchedulerConfig",
    "Snapshot",
    "StateDiverged",
    "SyncDone",
    "SyncScheduler",
    "SyncStart",
    "SyncView",
    "absorb",
    "answer",
    "make_request",
    "out_of_sync",
    "push_back",
    "snapshot",
    "vv_from_wire",
    "vv_wire",
]
