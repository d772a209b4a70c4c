"""The replication subsystem inside the agent: placement, the write path, eager push, anti-entropy, spaces.

``Replication`` is a node service (``node.add_service``). It is the trio side of replication: the
decisions live in pure code it calls -- ``placement`` (who hosts a shard), ``ShardReplica`` (what an entry
does to a shard and which rows change), ``SyncScheduler``/``answer``/``absorb`` (anti-entropy),
``SpaceRegistry`` (descriptors), ``validate`` (client input) -- and this module only moves bytes and
waits for the disk. One write, end to end:

    client -> ``remember`` -> validate -> shard_of -> a host?
        yes: ``replica.write_many`` -> ``AsyncStore.append`` (group commit: many writes, one fsync)
             -> acknowledge (after the commit, never before) -> push the entries to the other hosts
             (batched per peer every ``push_batch_ms``; each host commits, then answers ``PushAck``)
             -> ``ack=quorum|all`` waits for that many hosts' ``PushAck``
        no:  ``ForwardWrite`` to a host (lowest RTT first, then the others), acknowledged when it is.

A host whose replica lacks some of our own origin's entries (we hosted the shard, wrote to it, dropped
it, and it was placed back on us: they live on the other hosts) is *catching up*: it forwards writes
like a non-host until anti-entropy has brought them back, since appending under our origin there would
re-use a seq the others hold (a fork, and our origin quarantined there).

Durable before served: a peer only ever gets entries from the store (sync answers read SQLite in the
store's thread) or pushes sent after their commit; a ``PushAck`` carries the *durable* version vector, so
a pusher never counts a host that could still lose the entry.

Why stream requests are answered here and not by a sans-IO core: answering a push or a sync needs the
disk (commit, then reply; or read ranges in the store thread), which a synchronous ``handle_stream_request``
cannot wait for. So the service wraps the transport's stream handler for its own message types and
passes every other message on to the node's driver unchanged; the sans-IO parts stay pure functions.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from engramp2p.api.messages import (
    EdgeAssociate,
    EdgeDissociate,
    EdgeList,
    EdgeRetract,
    EdgeRow,
    FaultDrop,
    FaultHeal,
    FaultPeer,
    FaultState,
    MemoryEdges,
    MemoryForget,
    MemoryFound,
    MemoryGet,
    MemoryRecord,
    MemoryRemember,
    PlacementRow,
    ShardRow,
    SpaceCreate,
    SpaceInfo,
    SpaceRow,
    Spaces,
    SpaceStatus,
    VVRow,
    Written,
)
from engramp2p.api.server import CommandError
from engramp2p.crdt.entry import Associate, Body, Dissociate, Dot, Entry, Forget, Remember, Retract
from engramp2p.crdt.hlc import HLC
from engramp2p.crdt.log import approx_size
from engramp2p.crdt.vv import VersionVector
from engramp2p.repl import placement
from engramp2p.repl.antientropy import (
    BadSync,
    SchedulerConfig,
    Snapshot,
    SyncScheduler,
    SyncStart,
    absorb,
    answer,
    make_request,
    push_back,
    vv_from_wire,
    vv_wire,
)
from engramp2p.repl.faults import FaultError, Faults, Peer, resolve_peers
from engramp2p.repl.messages import (
    AckLevel,
    ForwardWrite,
    ForwardWriteResult,
    PushAck,
    PushEntries,
    SpaceDescriptor,
    SpaceList,
    SyncRequest,
    SyncResponse,
)
from engramp2p.repl.replica import ForkReport, OriginQuarantined, ShardReplica
from engramp2p.repl.spaces import SpaceChange, SpaceError, SpaceRegistry, from_row, plan_reissue, to_row
from engramp2p.repl.validate import (
    WriteError,
    build_associate,
    build_remember,
    build_retract,
    check_space_name,
    parse_id,
    require_space,
)
from engramp2p.sansio import Addr
from engramp2p.store import AsyncStore, ShardChanges, Store
from engramp2p.swim.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRecovered,
    MemberRefuted,
    MemberUpdated,
)
from engramp2p.swim.messages import State
from engramp2p.swim.meta import decode_meta

if TYPE_CHECKING:
    from engramp2p.config import Config
    from engramp2p.node import Node

log = logging.getLogger("engramp2p.repl")

ShardKey = tuple[str, int]

LOAD_CHUNK = 1024
"""Entries read (and decoded, in the store's thread) per round trip while loading a shard at start-up."""
LOAD_SLICE = 64
"""Entries folded on the event loop between checkpoints: a few ms, so the loop never stalls longer."""
FETCH_CHUNK = 256
"""Rows per SQLite read while filling a sync answer or a push-back (in the store thread)."""
OUTBOX_LIMIT = 50_000
"""Entries queued for one peer before we stop queueing and let anti-entropy carry them instead."""
PUSH_BUDGET = 256 * 1024
"""Approximate bytes per ``PushEntries`` frame (well inside ``max_frame``)."""
DESCRIPTOR_INTERVAL = 30.0
"""Seconds between descriptor push-pulls with a random member (creation also pushes at once)."""
SETTLE = 0.5
"""Seconds after its commit before anti-entropy ships an entry that pushes are carrying anyway."""
PUSH_QUIET = 1.0
"""A periodic (or follow-up) sync is skipped while pushes for the shard flowed within this many seconds
and this replica knows of nothing it lacks."""
PLACEMENT_COALESCE = 0.05
"""Seconds to let a burst of membership events settle before placement is recomputed."""
RELOAD_RETRY = 5.0
"""Seconds after a failed background load of a shard before a placement pass tries it again."""
NOT_HOSTED = "not-hosted: "
"""Prefix of a forwarded-write error that means "try another host" (the receiver's placement differs)."""
QUORUM_NAMES = {"one": AckLevel.ONE, "quorum": AckLevel.QUORUM, "all": AckLevel.ALL}


class ReplicationError(Exception):
    """A write or read that failed for a reason the user should read (control handlers re-raise it)."""


class AckTimeout(ReplicationError):
    """The write is durable on some hosts, but not on as many as ``ack`` asked for in time."""


class CatchingUp(ReplicationError):
    """This host's replica lacks some of our own origin's entries: the write goes to another host."""


class NoHostTook(ReplicationError):
    """No other host of the shard took a forwarded write (none placed, none answered, none hosts it)."""


# --------------------------------------------------------------------------------------------------
# small records


@dataclass(slots=True)
class _Waiter:
    """A write waiting for ``need`` more hosts to report ``seq`` of our origin durable."""

    seq: int
    pending: set[bytes]
    need: int
    acked: set[bytes] = field(default_factory=set)
    done: trio.Event = field(default_factory=trio.Event)

    def hit(self, peer: bytes) -> None:
        if peer in self.pending:
            self.pending.discard(peer)
            self.acked.add(peer)
            if len(self.acked) >= self.need:
                self.done.set()


FORWARD_RESENDS = 3
FORWARD_RESEND_DELAY = 0.05
"""Re-sends of an unanswered forwarded write to the same host (backoff x3 from ~50 ms, jittered)."""

FORWARD_MEMORY = 4096
"""Recent forwarded writes a host remembers, so that a re-sent one is answered instead of re-applied."""


@dataclass(slots=True)
class _ForwardOutcome:
    done: trio.Event = field(default_factory=trio.Event)
    result: ForwardWriteResult | None = None


@dataclass(slots=True)
class _CatchUp:
    """A hosted shard that lacks some of our own origin's entries (they are on other hosts)."""

    done: trio.Event = field(default_factory=trio.Event)
    alone_since: float | None = None  # placed on us alone since then (nobody to catch up with)


@dataclass(slots=True)
class _Outbox:
    """Entries committed here and not yet pushed to one peer, per shard (drained by one task)."""

    pending: dict[ShardKey, list[Entry]] = field(default_factory=dict)
    count: int = 0
    wake: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # cancelled when the peer is gone


@dataclass(slots=True)
class _Hosted:
    """One shard this peer holds: the replica plus what the service tracks around it."""

    replica: ShardReplica
    durable: dict[bytes, tuple[int, bytes]]
    hosts: list[bytes] = field(default_factory=list)
    leaving: bool = False
    last_commit: trio.Event | None = None
    peer_vv: dict[bytes, VersionVector] = field(default_factory=dict)  # durable, as peers reported
    rotate: int = 0
    last_push: float = -math.inf  # when a push for this shard last went out or came in
    # Per origin: (last seq of a commit, when it committed) for commits younger than SETTLE, and the
    # highest seq committed before them.
    recent: dict[bytes, collections.deque[tuple[int, float]]] = field(default_factory=dict)
    settled_seq: dict[bytes, int] = field(default_factory=dict)

    def committed(self, origin: bytes, before: int, seq: int, now: float) -> None:
        """Note that ``origin``'s entries up to ``seq`` (from ``before + 1``) were committed at ``now``."""
        q = self.recent.get(origin)
        if q is None:
            q = self.recent[origin] = collections.deque()
            self.settled_seq[origin] = before
        q.append((seq, now))
        self._age(origin, now)

    def settled(self, now: float) -> dict[bytes, int]:
        """Per origin with commits younger than ``SETTLE``: the last seq committed before them. That is
        what a routine sync round pushes back; younger entries are being pushed right now, and shipping
        them again would only make duplicates. Origins absent from the result are entirely settled."""
        cut: dict[bytes, int] = {}
        for origin in list(self.recent):
            if self._age(origin, now):
                cut[origin] = self.settled_seq[origin]
        return cut

    def _age(self, origin: bytes, now: float) -> bool:
        """Forget commits older than ``SETTLE``; False (and nothing kept) once all of them are."""
        q = self.recent[origin]
        while q and q[0][1] <= now - SETTLE:
            self.settled_seq[origin] = q.popleft()[0]
        if q:
            return True
        del self.recent[origin]
        del self.settled_seq[origin]
        return False


@dataclass(slots=True)
class Counters:
    """What replication did and refused (``Replication.counters``; ``snapshot()`` for metrics)."""

    writes: int = 0
    entries_appended: int = 0
    forwards_out: int = 0
    forwards_in: int = 0
    pushes_out: int = 0
    push_failures: int = 0
    pushes_in: int = 0
    entries_received: int = 0
    syncs_ok: int = 0
    syncs_failed: int = 0
    bad_messages: int = 0
    forks: int = 0
    clock_flags: int = 0
    commit_failures: int = 0
    outbox_overflows: int = 0
    shards_dropped: int = 0
    background_failures: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f"repl_{k}": getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def ack_needed(level: AckLevel, hosts: int) -> int:
    """Hosts (ourselves included) that must hold a write: one, a majority, or all of the placement."""
    if level is AckLevel.ONE or hosts <= 1:
        return 1
    if level is AckLevel.QUORUM:
        return hosts // 2 + 1
    return hosts


def _chunks(entries: Sequence[Entry], budget: int) -> Iterator[list[Entry]]:
    """Split entries into frames of about ``budget`` bytes (at least one entry each), keeping order."""
    out: list[Entry] = []
    used = 0
    for e in entries:
        size = approx_size(e)
        if out and used + size > budget:
            yield out
            out, used = [], 0
        out.append(e)
        used += size
    if out:
        yield out


def _dot_key(entry: Entry) -> tuple[bytes, int]:
    return (entry.origin, entry.seq)


def _store_fetch(store: Store, space: str, shard: int,
                 cut: Mapping[bytes, int] | None = None) -> Callable[[bytes, int, int], Iterator[Entry]]:
    """Durable entries of one origin ascending, read in chunks (runs in the store's thread).

    ``cut`` caps an origin's range (entries committed too recently to ship by anti-entropy; see
    ``SETTLE``); an origin cut short is still a prefix, so the receiver's vector stays exact.
    """

    def fetch(origin: bytes, first: int, last: int) -> Iterator[Entry]:
        if cut is not None and origin in cut:
            last = min(last, cut[origin])
        seq = first
        while seq <= last:
            rows = store.entries(space, shard, origin, seq, last, FETCH_CHUNK)
            if not rows:
                return
            for entry, _ in rows:
                yield entry
            seq = rows[-1][0].seq + 1

    return fetch


# --------------------------------------------------------------------------------------------------


class Replication:
    """The node service. Construct with the agent's ``Config``; ``node.add_service(Replication(cfg))``."""

    message_types: Sequence[type] = ()
    """Nothing is routed to a sans-IO core: this service answers its streams itself (module doc)."""
    core = None

    def __init__(self, config: Config, *, fault_injection: bool | None = None, seed: int | None = None,
                 now_ms: Callable[[], int] | None = None) -> None:
        self.config = config
        self.cfg = config.replication
        self.accept = tuple(config.node.spaces)
        self.roles = tuple(config.node.roles)
        enabled = self.cfg.fault_injection if fault_injection is None else fault_injection
        self.faults = Faults(enabled)
        self.rng = random.Random(seed)
        self._now_ms = now_ms
        self.counters = Counters()
        self.spaces = SpaceRegistry()
        self.ack_default = QUORUM_NAMES[self.cfg.ack]
        self.ack_timeout = self.cfg.ack_timeout_ms / 1000.0
        self.push_delay = self.cfg.push_batch_ms / 1000.0
        self.budget = self.cfg.sync_budget_bytes
        self.request_timeout = self.ack_timeout + 5.0
        self.hosted: dict[ShardKey, _Hosted] = {}
        self.placement: dict[ShardKey, list[bytes]] = {}
        self.ready = trio.Event()
        # set in run()
        self.node: Node | None = None
        self.store: AsyncStore | None = None
        self.node_id = b""
        self.hlc = HLC()
        self.scheduler: SyncScheduler | None = None
        self._nursery: trio.Nursery | None = None
        self._inner: Callable[[Addr, Any], Any] | None = None
        self._outboxes: dict[bytes, _Outbox] = {}
        self._waiters: dict[ShardKey, list[_Waiter]] = {}
        self._acked: dict[tuple[ShardKey, bytes], int] = {}
        # Shards the store holds but memory does not (a load or a drop failed): reloaded, never restarted
        # empty -- an empty replica would re-use our own origin's sequence numbers. Value: quarantined.
        self._unloaded: dict[ShardKey, list[bytes]] = {}
        self._loading: set[ShardKey] = set()
        # Our own origin's last seq in each shard we dropped (durable: ``store.dropped``), and the hosted
        # shards whose replica has not got back to it: there we do not append under our origin
        # (``_write_local``) until it has. Keyed by shard: a reload after a failed commit keeps it.
        self._own_seq: dict[ShardKey, int] = {}
        self._catching_up: dict[ShardKey, _CatchUp] = {}
        # Drops still in their store transaction: a shard placed back meanwhile commits after it.
        self._dropping: dict[ShardKey, trio.Event] = {}
        self._sync_scope: trio.CancelScope | None = None
        self._placement_dirty = trio.Event()
        self._meta_dirty = trio.Event()
        self._next_rebalance = math.inf
        # Random start: (forwarder, req_id) identifies a forwarded write across our restarts too.
        self._req_ids = random.getrandbits(62)
        # Hosts remember recent forwarded writes so a re-sent one is answered, not applied twice.
        self._forwarded: collections.OrderedDict[tuple[bytes, int], _ForwardOutcome] = collections.OrderedDict()
        self._handlers: dict[type, Callable[[Addr, Any], Any]] = {
            SyncRequest: self._on_sync_request,
            PushEntries: self._on_push,
            ForwardWrite: self._on_forward,
            SpaceList: self._on_space_list,
            SpaceDescriptor: self._on_space_descriptor,
        }

    # ============================================================== node service surface

    def control_handlers(self) -> Mapping[str, Any]:
        return _control_handlers(self)

    def on_member_event(self, event: Any) -> None:
        """Synchronous, from the driver: note what changed and let ``run``'s tasks do the work."""
        if isinstance(event, (MemberJoined, MemberFailed, MemberLeft, MemberRecovered, MemberUpdated,
                              MemberReaped)):
            self._placement_dirty.set()
        if isinstance(event, (MemberLeft, MemberReaped)):  # gone for good; a failed member may come back
            self._forget_peer(event.member.node_id)
        if self.scheduler is None or self._nursery is None:
            return
        if isinstance(event, (MemberRecovered, MemberRefuted, MemberJoined)):
            # Back (from dead, from suspicion, or rejoined): sync every shard we share with it now, with
            # any backoff from failed exchanges during its absence forgotten.
            self.scheduler.member_recovered(trio.current_time(), event.member.node_id)
            self._kick()
        if isinstance(event, (MemberJoined, MemberRecovered)):
            peer = event.member.node_id
            self._nursery.start_soon(self._background, "descriptor exchange", self._name(peer),
                                     self._exchange_spaces, peer)

    def _forget_peer(self, peer: bytes) -> None:
        """Drop what we keep per peer for one that left for good, so churn does not grow it forever.

        Its queued pushes go with it: they are durable here, and every remaining host has its own outbox
        and anti-entropy; if the peer ever rejoins, ``MemberJoined`` syncs it.
        """
        if peer == self.node_id:
            return
        box = self._outboxes.pop(peer, None)
        if box is not None:
            box.scope.cancel()  # its push task ends, even in the middle of an exchange
        for k in [k for k in self._acked if k[1] == peer]:
            del self._acked[k]
        for hosted in self.hosted.values():
            hosted.peer_vv.pop(peer, None)  # a departed host must never count for a hand-off

    async def _background(self, what: str, subject: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run one background step; a failure is logged and counted, since raised it would stop the agent."""
        try:
            await fn(*args)
        except Exception as exc:
            self.counters.background_failures += 1
            # Disk trouble is expected and its traceback is noise; anything else is a bug worth one.
            log.warning("background %s (%s) failed: %s", what, subject, exc,
                        exc_info=not isinstance(exc, (OSError, sqlite3.Error)))
            return False
        return True

    async def run(self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.node = node
        assert node.store is not None and node.transport is not None
        self.store = node.store
        self.node_id = node.store.node_id
        start = await self.store.call(self.store.store.max_hlc)
        kwargs = {} if self._now_ms is None else {"now_ms": self._now_ms}
        self.hlc = HLC(start, self.cfg.max_clock_offset_ms, **kwargs)
        self.scheduler = SyncScheduler(
            self.node_id,
            SchedulerConfig(sync_interval=self.cfg.sync_interval, budget=self.budget),
            seed=self.rng.randrange(2**32),
        )
        transport = node.transport
        # Our exchanges wait for disk commits and, for forwarded writes, for other hosts' acks: give them
        # longer than SWIM's tcp_timeout, on both ends.
        self.request_timeout = self.ack_timeout + max(5.0, node.swim_config.tcp_timeout)
        transport.handler_timeout = max(transport.handler_timeout, self.request_timeout)
        self._inner = transport.stream_handler
        transport.stream_handler = self._on_stream
        if self.faults.enabled:
            transport.traffic_filter = self.faults
        for row in await self.store.spaces():
            d = from_row(row)
            if d is not None:
                self.spaces.merge([d])
        self._own_seq = await self.store.dropped()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._publish_meta()
                task_status.started()
                await self._load_all()
                self.ready.set()
                self._meta_dirty.set()  # now we know what we host
                self._recompute_placement()
                nursery.start_soon(self._placement_loop)
                nursery.start_soon(self._sync_loop)
                nursery.start_soon(self._meta_loop)
                nursery.start_soon(self._descriptor_loop)
        finally:
            self._nursery = None
            if transport.stream_handler == self._on_stream:
                transport.stream_handler = self._inner

    # ============================================================== start-up

    async def _load_all(self) -> None:
        """Replay every hosted shard's durable log in chunks: the loop is never held for long."""
        store = self.store
        assert store is not None
        quarantined: dict[ShardKey, list[bytes]] = {}
        for q in await store.quarantined():
            quarantined.setdefault((q.space, q.shard), []).append(q.origin)
        for key in await store.hosted_shards():
            await self._load(key, quarantined.get(key, []))

    async def _load(self, key: ShardKey, quarantined: Sequence[bytes] = ()) -> _Hosted:
        store = self.store
        assert store is not None
        space, shard = key
        rep = ShardReplica(space, shard, reorder_limit=self.cfg.reorder_buffer, quarantined=quarantined)
        stored = await store.vv(space, shard)
        for origin, (top, _) in sorted(stored.items()):
            seq = 1
            while seq <= top:
                chunk = await store.entries(space, shard, origin, seq, top, LOAD_CHUNK)
                if not chunk:
                    break
                for i in range(0, len(chunk), LOAD_SLICE):
                    rep.load(chunk[i:i + LOAD_SLICE])
                    await trio.lowlevel.checkpoint()
                seq = chunk[-1][0].seq + 1
        bad = rep.finish_load(stored)
        if bad:
            log.error("%s/%d: stored version vector disagrees with the log for %d origin(s); anti-entropy "
                      "will refill", space, shard, len(bad))
        for origin in rep.quarantined:
            log.warning("%s/%d: origin %s is quarantined (forked history)", space, shard, origin.hex()[:8])
        hosted = _Hosted(rep, {o: (s, h) for o, s, h in rep.vv.to_pairs()})
        self.hosted[key] = hosted
        # Placed back on us and not caught up before a restart; or a stored vector ahead of the log.
        self._own_seq[key] = max(self._own_seq.get(key, 0), stored.get(self.node_id, (0, b""))[0])
        self._check_catch_up(key, hosted)
        log.info("loaded %s/%d: %d memories, %d edges", space, shard, rep.memory_count(), rep.edge_count())
        return hosted

    def _reload(self, key: ShardKey, quarantined: Sequence[bytes]) -> None:
        """Load a shard the store holds and memory does not, in the background (at most one at a time)."""
        self._unloaded[key] = list(quarantined)
        if key not in self._loading:
            self._loading.add(key)
            assert self._nursery is not None
            self._nursery.start_soon(self._reload_once, key)

    async def _reload_once(self, key: ShardKey) -> None:
        """One attempt; a failed one leaves the shard unloaded and asks for a placement pass later."""
        try:
            ok = await self._background("load", f"{key[0]}/{key[1]}", self._load, key, self._unloaded[key])
        finally:
            self._loading.discard(key)
        if ok:
            self._unloaded.pop(key, None)
        else:
            await trio.sleep(RELOAD_RETRY)
        self._placement_dirty.set()  # the reloaded shard's hosts and hand-off, or the next attempt

    # ============================================================== membership and placement

    def _members(self) -> list[Any]:
        node = self.node
        return [] if node is None or node.swim is None else node.swim.members()

    def _member(self, node_id: bytes) -> Any | None:
        node = self.node
        return None if node is None or node.swim is None else node.swim.member(node_id)

    def _name(self, node_id: bytes) -> str:
        m = self._member(node_id)
        return m.name if m is not None else node_id.hex()[:8]

    def _addr_of(self, node_id: bytes) -> Addr | None:
        m = self._member(node_id)
        return None if m is None else m.addr

    def _node_at(self, addr: Addr) -> bytes | None:
        for m in self._members():
            if m.addr == addr:
                return bytes(m.node_id)
        return None

    def _candidates(self, now: float) -> list[placement.Candidate]:
        out = []
        soonest = math.inf
        delay = self.cfg.rebalance_delay
        for i, m in enumerate(self._members()):
            if i == 0:  # ourselves: our own config, not what we last gossiped
                out.append(placement.Candidate(m.node_id, True, None, self.roles, self.accept))
                continue
            meta = decode_meta(m.meta)
            if meta is None:
                continue
            alive = m.state in (State.ALIVE, State.SUSPECT)
            dead_since = None if alive else m.last_change
            if dead_since is not None and now - dead_since < delay:
                soonest = min(soonest, dead_since + delay)
            out.append(placement.Candidate(m.node_id, alive, dead_since, tuple(meta.roles), tuple(meta.spaces)))
        self._next_rebalance = soonest
        return out

    def _recompute_placement(self) -> None:
        """Every known shard's hosts from the current membership; start or hand off shards accordingly."""
        if self.scheduler is None or not self.ready.is_set():
            return
        now = trio.current_time()
        cands = self._candidates(now)
        for key, quarantined in list(self._unloaded.items()):
            self._reload(key, quarantined)  # a failed load, tried again (placement applies once loaded)
        for d in self.spaces.descriptors():
            for shard in range(d.shards):
                key = (d.name, shard)
                hosts = placement.hosts(d.name, shard, d.replicas, cands, now, self.cfg.rebalance_delay)
                self.placement[key] = hosts
                hosted = self.hosted.get(key)
                if hosted is None and key in self._unloaded:
                    continue
                if self.node_id in hosts:
                    if hosted is None:
                        hosted = self._start_hosting(key)
                    if hosted.leaving:
                        log.info("%s/%d: back in our placement", *key)
                        hosted.leaving = False
                elif hosted is not None and not hosted.leaving:
                    log.info("%s/%d: left our placement; handing off to %s", d.name, shard,
                             ", ".join(self._name(h) for h in hosts) or "nobody")
                    hosted.leaving = True
                    self._meta_dirty.set()
                if hosted is not None:
                    if hosted.hosts != hosts:
                        hosted.hosts = hosts
                        self.scheduler.set_hosts(now, d.name, shard, hosts)
                        self._kick()
                    if key in self._catching_up:
                        self._check_catch_up(key, hosted)
                    if hosted.leaving:
                        self._maybe_drop(key)
        # Shards of spaces we no longer know (cannot happen with a grow-only map) are left alone.
        for cu in self._catching_up.values():
            if cu.alone_since is not None:
                self._next_rebalance = min(self._next_rebalance, cu.alone_since + self.cfg.rebalance_delay)

    def _start_hosting(self, key: ShardKey) -> _Hosted:
        """A shard newly placed on us: start empty; anti-entropy with the other hosts catches it up.

        If we wrote to it before (and dropped it), it is catching up until it holds those entries again.
        """
        log.info("%s/%d: now hosting; catching up by anti-entropy", *key)
        hosted = _Hosted(ShardReplica(key[0], key[1], reorder_limit=self.cfg.reorder_buffer), {})
        self.hosted[key] = hosted
        self._check_catch_up(key, hosted)
        self._meta_dirty.set()
        assert self._nursery is not None
        self._nursery.start_soon(self._background, "persist", f"{key[0]}/{key[1]}", self._persist_hosted, key)
        return hosted

    def _check_catch_up(self, key: ShardKey, hosted: _Hosted) -> None:
        """Mark or clear "catching up": whether the replica's *durable* prefix of our own origin is behind
        the last seq we know we wrote to this shard (``_own_seq``), so that appending would fork.

        Placed on us alone, there is nobody to catch up with -- for now (a leaving host is about to hand
        our entries back; at start-up we have not heard of the others yet) or for good (every copy is
        gone). Like placement itself, we wait ``rebalance_delay`` before taking it for good; then we
        write here again rather than refuse every write to the shard forever.
        """
        want = self._own_seq.get(key, 0)
        have = hosted.durable.get(self.node_id, (0, b""))[0]
        cu = self._catching_up.get(key)
        if have < want:
            if cu is None:
                cu = self._catching_up[key] = _CatchUp()
                log.info("%s/%d: our writes up to seq %d are on the other hosts; forwarding writes until "
                         "they are back here", *key, want)
            if self.placement.get(key) != [self.node_id]:
                cu.alone_since = None
                return
            now = trio.current_time()
            if cu.alone_since is None:
                cu.alone_since = now
                self._placement_dirty.set()  # so that a placement pass schedules the deadline below
            if now < cu.alone_since + self.cfg.rebalance_delay:
                return
            log.warning("%s/%d: placed on us alone for %.0f s while our writes %d..%d to it are elsewhere; "
                        "writing here again (those would fork if they came back)", *key,
                        self.cfg.rebalance_delay, have + 1, want)
            self._own_seq[key] = have
        elif cu is not None:
            log.info("%s/%d: caught up (our origin at seq %d); writing here again", *key, have)
        if cu is not None:
            del self._catching_up[key]
            cu.done.set()

    async def _persist_hosted(self, key: ShardKey) -> None:
        """Record "hosted" durably, in the background: a failure is ``_commit``'s to log, count and
        recover from (it reloads the shard); raised out of this task it would stop the whole agent."""
        with contextlib.suppress(ReplicationError):
            await self._commit(key, ShardChanges(key[0], key[1]))

    def _maybe_drop(self, key: ShardKey) -> None:
        """Drop a shard we no longer host once every new host's version vector covers ours."""
        hosted = self.hosted.get(key)
        if hosted is None or not hosted.leaving:
            return
        others = [h for h in hosted.hosts if h != self.node_id]
        if not others:
            return  # nobody to hand off to: keep it
        mine = VersionVector.from_pairs((o, s, h) for o, (s, h) in hosted.durable.items())
        if hosted.replica.vv != mine:
            return  # commits in flight
        for h in others:
            theirs = hosted.peer_vv.get(h)
            if theirs is None or not theirs.covers(mine):
                return
        assert self._nursery is not None
        self._nursery.start_soon(self._background, "drop", f"{key[0]}/{key[1]}", self._drop, key)

    async def _drop(self, key: ShardKey) -> None:
        hosted = self.hosted.get(key)
        if hosted is None or not hosted.leaving:
            return  # dropped already, or placed back on us in the meantime
        del self.hosted[key]
        # If it is placed back on us, the new replica must not write under our origin before it holds
        # what we wrote here (the new hosts have it), nor commit before the drop's transaction is over.
        ours = max(self._own_seq.get(key, 0), hosted.replica.vv.seq_of(self.node_id))
        if ours:
            self._own_seq[key] = ours
        cu = self._catching_up.pop(key, None)
        if cu is not None:
            cu.done.set()
        earlier = self._dropping.get(key)  # placed back and moved away again before that drop ended
        dropping = self._dropping[key] = trio.Event()
        assert self.store is not None and self.scheduler is not None
        self.scheduler.remove_shard(*key)
        try:
            if earlier is not None:
                await earlier.wait()
            if hosted.last_commit is not None:
                await hosted.last_commit.wait()
            await self.store.drop_shard(*key, ours)
        except Exception:
            if key not in self.hosted:
                # The drop is one transaction, so the store still holds the whole shard: keep serving it,
                # and the next hand-off check (a sync round, a placement pass) drops it again.
                self.hosted[key] = hosted
                self._check_catch_up(key, hosted)
                self.scheduler.set_hosts(trio.current_time(), key[0], key[1], hosted.hosts)
            raise
        finally:
            if self._dropping.get(key) is dropping:
                del self._dropping[key]
            dropping.set()
        self.counters.shards_dropped += 1
        self._meta_dirty.set()
        log.info("%s/%d: dropped (the new hosts cover everything we held)", *key)

    async def _placement_loop(self) -> None:
        """Recompute on membership events, and when a dead member's ``rebalance_delay`` runs out."""
        while True:
            with trio.move_on_at(self._next_rebalance):
                await self._placement_dirty.wait()
            self._placement_dirty = trio.Event()
            await trio.sleep(PLACEMENT_COALESCE)  # a burst of events (a restart, a partition) counts once
            self._recompute_placement()

    async def _meta_loop(self) -> None:
        while True:
            await self._meta_dirty.wait()
            self._meta_dirty = trio.Event()
            await self._background("metadata", "hosted spaces", self._publish_meta)
            await trio.sleep(0.5)  # coalesce bursts (a space with many shards placed at once)

    async def _publish_meta(self) -> None:
        """Member metadata: the spaces we accept (placement filter) and the names of spaces we host."""
        node = self.node
        if node is None or node.swim is None:
            return
        names = sorted({k[0] for k, h in self.hosted.items() if not h.leaving})
        hosted = ""
        for n in names:
            nxt = f"{hosted},{n}" if hosted else n
            if len(nxt) > 120:
                hosted += ",..."
                break
            hosted = nxt
        extra = dict(node.meta.meta.extra)
        extra["hosted"] = hosted
        try:
            await node.update_meta(spaces=list(self.accept[:64]), extra=extra)
        except ValueError as exc:
            log.warning("cannot publish replication metadata: %s", exc)

    # ============================================================== stream requests (inbound)

    async def _on_stream(self, src: Addr, msg: Any) -> Any | None:
        """The transport's stream handler: our message types here, everything else to the node's driver."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            inner = self._inner
            return await inner(src, msg) if inner is not None else None
        await self.ready.wait()
        try:
            return await handler(src, msg)
        except (BadSync, ValueError) as exc:  # the remote's fault: drop and count
            self.counters.bad_messages += 1
            log.debug("dropped %s from %s: %s", type(msg).__name__, src, exc)
        except ReplicationError as exc:  # ours, already logged where it happened (a failed commit)
            log.debug("no answer to %s from %s: %s", type(msg).__name__, src, exc)
        except Exception:  # a bug handling one message must not take the agent's receive loop down
            self.counters.bad_messages += 1
            log.exception("error handling %s from %s", type(msg).__name__, src)
        return None

    async def _on_sync_request(self, src: Addr, req: SyncRequest) -> SyncResponse | None:
        key = (req.space, req.shard)
        hosted = self._serving(key)
        if hosted is None:
            return None
        assert self.store is not None
        # A requester's vector may include entries it has not committed yet: good enough for ``lag``,
        # not for a hand-off (``peer_vv`` only takes durable vectors: sync answers and push acks).
        hosted.replica.observe_vv(vv_from_wire(req.vv).to_pairs())
        hosted.rotate += 1
        snap = self._snapshot(hosted)
        fn = functools.partial(answer, snap, req, _store_fetch(self.store.store, *key), self.budget,
                               rotate=hosted.rotate)
        return await self.store.call(fn)

    async def _on_push(self, src: Addr, msg: PushEntries) -> PushAck | None:
        key = (msg.space, msg.shard)
        hosted = self._serving(key)
        if hosted is None:
            return None
        self.counters.pushes_in += 1
        hosted.last_push = trio.current_time()
        result = hosted.replica.receive(msg.entries)
        self._observe_hlc(result.max_hlc)
        self.counters.entries_received += len(result.applied)
        if result.changes.entries:
            await self._commit(key, result.changes)
        elif hosted.last_commit is not None:
            await hosted.last_commit.wait()  # duplicates of entries whose commit is still in flight
        await self._report_forks(result.forks, self._node_at(src))
        if (result.early or result.rejected) and self.scheduler is not None:
            self.scheduler.nudge(trio.current_time(), msg.space, msg.shard, self._node_at(src), "gap")
            self._kick()
        return PushAck(msg.space, msg.shard, self._durable_wire(hosted))

    async def _on_forward(self, src: Addr, msg: ForwardWrite) -> ForwardWriteResult:
        self.counters.forwards_in += 1
        if msg.forwarder is None:
            return await self._apply_forward(msg)
        key = (msg.forwarder, msg.req_id)
        seen = self._forwarded.get(key)
        if seen is not None:  # a re-send after the forwarder heard nothing: answer, do not apply again
            await seen.done.wait()
            assert seen.result is not None
            return seen.result
        outcome = self._forwarded[key] = _ForwardOutcome()
        while len(self._forwarded) > FORWARD_MEMORY:
            old_key, old = next(iter(self._forwarded.items()))
            if not old.done.is_set():
                break  # never forget one still in flight; the bound is soft by the writes in flight
            del self._forwarded[old_key]
        try:
            outcome.result = await self._apply_forward(msg)
        finally:
            if outcome.result is None:  # cancelled: let a re-send try afresh
                del self._forwarded[key]
            outcome.done.set()
        return outcome.result

    async def _apply_forward(self, msg: ForwardWrite) -> ForwardWriteResult:
        try:
            d = require_space(self.spaces, msg.space)
            # The forwarder validated these, but bytes from the network are checked again: the wire
            # bounds cannot say "finite" or "UTF-8 size", and a bad memory must never enter our log.
            bodies = [build_remember(content=b.content, vector=b.vector, dim=d.dim, id=b.id,
                                     confidence=b.confidence, meta=b.meta) if isinstance(b, Remember) else b
                      for b in msg.bodies]
            groups = self._group(d, bodies)
            if len(groups) != 1:
                raise WriteError("bodies", "a forwarded write must stay within one shard")
            [(shard, items)] = groups.items()
            if self.node_id not in self.placement.get((msg.space, shard), []):
                return ForwardWriteResult(msg.req_id, False, f"{NOT_HOSTED}{self._name(self.node_id)} does not "
                                          f"host {msg.space}/{shard}")
            dots = await self._write_local(d, shard, [b for _, b in items], AckLevel(msg.ack))
        except (WriteError, ReplicationError, SpaceError) as exc:
            return ForwardWriteResult(msg.req_id, False, str(exc)[:1000])
        return ForwardWriteResult(msg.req_id, True, "", dots)

    async def _on_space_list(self, src: Addr, msg: SpaceList) -> SpaceList:
        await self._merge_spaces(msg.descriptors)
        return SpaceList(self.spaces.descriptors()[:1024])

    async def _on_space_descriptor(self, src: Addr, msg: SpaceDescriptor) -> SpaceList:
        await self._merge_spaces([msg])
        return SpaceList(self.spaces.descriptors()[:1024])

    def _serving(self, key: ShardKey) -> _Hosted | None:
        """The shard if we hold it, or a fresh replica if our placement says we should and do not yet."""
        hosted = self.hosted.get(key)
        if hosted is None and key not in self._unloaded and self.node_id in self.placement.get(key, ()):
            hosted = self._start_hosting(key)
            if self.scheduler is not None:
                hosted.hosts = self.placement[key]
                self.scheduler.set_hosts(trio.current_time(), key[0], key[1], hosted.hosts)
        return hosted

    # ============================================================== commits, durability, forks

    async def _commit(self, key: ShardKey, changes: ShardChanges) -> None:
        """Append durably; afterwards the shard's durable version vector includes ``changes.vv``.

        Commits of one shard complete in the order they were issued (the store's group commit is FIFO),
        so waiting on the last one issued waits for all before it.
        """
        assert self.store is not None
        hosted = self.hosted.get(key)
        done = trio.Event()
        if hosted is not None:
            hosted.last_commit = done
        try:
            dropping = self._dropping.get(key)
            if dropping is not None:  # placed back on us while the old copy is being deleted
                await dropping.wait()
            await self.store.append([changes])
        except Exception as exc:
            self.counters.commit_failures += 1
            log.error("%s/%d: commit failed (%s); reloading the shard from the store", key[0], key[1], exc)
            if hosted is not None and self.hosted.get(key) is hosted:
                del self.hosted[key]
                self._reload(key, sorted(hosted.replica.quarantined))
            raise ReplicationError(f"the store could not commit: {exc}") from None
        finally:
            done.set()
        if hosted is not None:
            durable = hosted.durable
            now = trio.current_time()
            for origin, seq, head in changes.vv:
                before = durable.get(origin, (0, b""))[0]
                if seq > before:
                    durable[origin] = (seq, head)
                    hosted.committed(origin, before, seq, now)
            if key in self._catching_up and self.hosted.get(key) is hosted:
                self._check_catch_up(key, hosted)

    def _durable_wire(self, hosted: _Hosted) -> list[Any]:
        return vv_wire(VersionVector.from_pairs((o, s, h) for o, (s, h) in hosted.durable.items()))

    def _snapshot(self, hosted: _Hosted) -> Snapshot:
        """What a sync answer may claim and serve: the *durable* prefixes, never in-flight ones."""
        rep = hosted.replica
        vv = VersionVector.from_pairs((o, s, h) for o, (s, h) in hosted.durable.items())
        # The digest describes the in-memory state; it only matches ``vv`` when nothing is in flight.
        # An empty digest tells the requester not to compare (no false "diverged" alarms under load).
        return Snapshot(rep.space, rep.shard, vv, rep.digest() if rep.vv == vv else b"")

    def _observe_hlc(self, hlc: int) -> None:
        if hlc and not self.hlc.observe(hlc):
            self.counters.clock_flags += 1

    async def _report_forks(self, forks: Iterable[ForkReport], peer: bytes | None) -> None:
        assert self.store is not None
        for f in forks:
            self.counters.forks += 1
            log.error("FORK in %s/%d: origin %s (%s), reported by %s; the origin is quarantined here",
                      f.space, f.shard, f.origin.hex(), f.reason, self._name(peer) if peer else "a push")
            await self.store.quarantine(f.space, f.shard, f.origin, f.reason)

    # ============================================================== the write path

    def _group(self, d: SpaceDescriptor, bodies: Sequence[Body]) -> dict[int, list[tuple[int, Body]]]:
        groups: dict[int, list[tuple[int, Body]]] = {}
        for i, body in enumerate(bodies):
            anchor = body.id if isinstance(body, (Remember, Forget)) else body.src
            groups.setdefault(placement.shard_of(anchor, d.shards), []).append((i, body))
        return groups

    async def write(self, space: str, bodies: Sequence[Body], ack: AckLevel | None = None) -> list[Dot]:
        """Write checked bodies of one space at any peer; returns each body's dot, in order.

        ``Dissociate``/``Forget`` bodies are rebuilt at the host from its own state (observed-remove
        names what the *writing replica* has seen), so callers may pass them with empty ``observed``.
        """
        await self.ready.wait()
        d = require_space(self.spaces, space)
        level = self.ack_default if ack is None else ack
        dots: list[Dot | None] = [None] * len(bodies)
        self.counters.writes += 1

        async def one(shard: int, items: list[tuple[int, Body]]) -> None:
            key = (space, shard)
            mine = [b for _, b in items]
            if self.node_id not in self.placement.get(key, ()):
                got = await self._forward(d, shard, mine, level)
            else:
                try:
                    got = await self._write_local(d, shard, mine, level)
                except CatchingUp:
                    got = await self._write_catching_up(d, shard, mine, level)
            for (i, _), dot in zip(items, got, strict=True):
                dots[i] = dot

        groups = self._group(d, bodies)
        if len(groups) == 1:
            [(shard, items)] = groups.items()
            await one(shard, items)
        else:
            try:
                async with trio.open_nursery() as nursery:
                    for shard, items in groups.items():
                        nursery.start_soon(one, shard, items)
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        return [dot for dot in dots if dot is not None]

    async def _write_local(self, d: SpaceDescriptor, shard: int, bodies: Sequence[Body],
                           level: AckLevel) -> list[Dot]:
        key = (d.name, shard)
        hosted = self._serving(key)
        if hosted is None:
            raise ReplicationError(f"{NOT_HOSTED}{d.name}/{shard} is not hosted here")
        if key in self._catching_up:  # (NOT_HOSTED: a forwarder then tries another host)
            raise CatchingUp(f"{NOT_HOSTED}{d.name}/{shard} is still catching up here")
        rep = hosted.replica
        items: list[tuple[int, Body]] = []
        for body in bodies:
            if isinstance(body, Remember) and len(body.vector) != 4 * d.dim:
                raise WriteError("vector", f"dimension mismatch: space has dim {d.dim}, vector has "
                                 f"{len(body.vector) // 4}")
            if isinstance(body, Dissociate):
                body = Dissociate(body.src, body.dst, rep.observed_edge(body.src, body.dst))
            elif isinstance(body, Forget):
                body = Forget(body.id, rep.observed_memory(body.id))
            items.append((self.hlc.tick(), body))
        try:
            entries, changes = rep.write_many(self.node_id, items)
        except OriginQuarantined as exc:
            raise ReplicationError(str(exc)) from None
        await self._commit(key, changes)
        self.counters.entries_appended += len(entries)
        hosts = self.placement.get(key) or [self.node_id]
        self._push(key, entries, hosts)
        need = ack_needed(level, len(hosts))
        if need > 1:
            await self._await_acks(key, entries[-1].seq, hosts, need)
        return [e.dot for e in entries]

    async def _write_catching_up(self, d: SpaceDescriptor, shard: int, bodies: Sequence[Body],
                                 level: AckLevel) -> list[Dot]:
        """A write to a shard we host but are still catching up on: forward it like a non-host (the
        host's origin then writes it). If no host takes it -- none answers, or each is catching up too --
        wait up to ``ack_timeout`` for our own catch-up and write here; failing that, the write fails."""
        key = (d.name, shard)
        try:
            return await self._forward(d, shard, bodies, level)
        except NoHostTook:
            cu = self._catching_up.get(key)
            if cu is not None:
                with trio.move_on_after(self.ack_timeout):
                    await cu.done.wait()
            if key in self._catching_up or self.node_id not in self.placement.get(key, ()):
                raise
        return await self._write_local(d, shard, bodies, level)

    async def _await_acks(self, key: ShardKey, seq: int, hosts: Sequence[bytes], need: int) -> None:
        others = [h for h in hosts if h != self.node_id]
        waiter = _Waiter(seq, set(others), need - 1)
        for h in others:
            if self._acked.get((key, h), 0) >= seq:
                waiter.hit(h)
        if waiter.done.is_set():
            return
        waiters = self._waiters.setdefault(key, [])
        waiters.append(waiter)
        try:
            with trio.move_on_after(self.ack_timeout):
                await waiter.done.wait()
        finally:
            waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(key, None)
        if not waiter.done.is_set():
            have = [self._name(self.node_id)] + [self._name(h) for h in sorted(waiter.acked)]
            missing = ", ".join(self._name(h) for h in sorted(waiter.pending))
            raise AckTimeout(
                f"ack timeout after {self.cfg.ack_timeout_ms} ms: {len(have)} of {need} hosts of "
                f"{key[0]}/{key[1]} hold the write ({', '.join(have)}); no answer from {missing}"
            )

    def _on_ack(self, peer: bytes, key: ShardKey, ack: PushAck) -> None:
        """A host reported its durable prefixes: count it for every write of ours it now covers."""
        if (ack.space, ack.shard) != key:
            self.counters.bad_messages += 1
            return
        try:
            theirs = vv_from_wire(ack.vv)
        except BadSync:
            self.counters.bad_messages += 1
            return
        hosted = self.hosted.get(key)
        if hosted is not None:
            hosted.replica.observe_vv(theirs.to_pairs())
            hosted.peer_vv[peer] = theirs
            if hosted.leaving:
                self._maybe_drop(key)
        seq = theirs.seq_of(self.node_id)
        if seq > self._acked.get((key, peer), 0):
            self._acked[(key, peer)] = seq
        for waiter in self._waiters.get(key, ()):
            if seq >= waiter.seq:
                waiter.hit(peer)

    async def _forward(self, d: SpaceDescriptor, shard: int, bodies: Sequence[Body],
                       level: AckLevel) -> list[Dot]:
        """Hand a write to a host of its shard: lowest RTT first, then the others; ack when it acks."""
        key = (d.name, shard)
        hosts = [h for h in self.placement.get(key, []) if h != self.node_id]
        if not hosts:
            raise NoHostTook(f"no host is available for {d.name}/{shard} (no eligible member)")
        def rank(h: bytes) -> tuple[int, float, bytes]:
            m = self._member(h)
            if m is None:
                return (2, math.inf, h)
            return (0 if m.state == State.ALIVE else 1, m.rtt if m.rtt is not None else math.inf, h)

        # A forwarded write is appended under the host's origin. Re-sending it to another host after
        # no answer is harmless for remember/forget/dissociate (same id, same observed dots), but an
        # associate or retract there would become a *second* writer's slot if the first host had in fact
        # committed it, so those are not retried after an unknown outcome.
        retry_safe = not any(isinstance(b, (Associate, Retract)) for b in bodies)
        errors = []
        for h in sorted(hosts, key=rank):
            addr = self._addr_of(h)
            if addr is None:
                continue
            req_id, reply = await self._forward_once(addr, d.name, bodies, level)
            if isinstance(reply, ForwardWriteResult) and not reply.ok and "unknown space" in reply.error:
                await self._send_spaces(h)  # it has not heard of the space yet: tell it, ask once more
                req_id, reply = await self._forward_once(addr, d.name, bodies, level)
            # Lost, refused (a host at its inbound-stream limit closes new exchanges) or timed out: ask the
            # same host again with the same req_id, which it answers without applying twice.
            delay = FORWARD_RESEND_DELAY
            for _ in range(FORWARD_RESENDS):
                if isinstance(reply, ForwardWriteResult):
                    break
                await trio.sleep(delay * (0.5 + self.rng.random()))
                delay *= 3
                _, reply = await self._forward_once(addr, d.name, bodies, level, req_id)
            if not isinstance(reply, ForwardWriteResult):
                if not retry_safe:
                    raise ReplicationError(
                        f"{self._name(h)} did not answer; the write may or may not have been applied "
                        "(not retried at another host, where it would count as a second writer)"
                    )
                errors.append(f"{self._name(h)}: no answer")
            elif reply.ok and len(reply.dots) == len(bodies):
                return list(reply.dots)
            elif reply.ok:
                errors.append(f"{self._name(h)}: malformed answer")
            elif reply.error.startswith(NOT_HOSTED):
                errors.append(f"{self._name(h)}: {reply.error[len(NOT_HOSTED):]}")
            else:  # the host refused the write itself (bad input, ack timeout): trying others won't help
                raise ReplicationError(f"{self._name(h)}: {reply.error}")
        raise NoHostTook(f"no host of {d.name}/{shard} took the write ({'; '.join(errors)})")

    async def _forward_once(self, addr: Addr, space: str, bodies: Sequence[Body], level: AckLevel,
                            req_id: int | None = None) -> tuple[int, Any]:
        """Send one forwarded write; with ``req_id`` it is a re-send the host answers without re-applying."""
        if req_id is None:
            self._req_ids += 1
            req_id = self._req_ids
        self.counters.forwards_out += 1
        reply = await self._request(addr, ForwardWrite(req_id, space, list(bodies), level, self.node_id))
        return req_id, reply

    async def _request(self, addr: Addr, msg: Any) -> Any | None:
        """One stream exchange of ours (``None`` on any failure), with the replication timeout."""
        node = self.node
        assert node is not None and node.transport is not None
        return await node.transport.request(addr, msg, timeout=self.request_timeout)

    # ============================================================== eager push

    def _push(self, key: ShardKey, entries: Sequence[Entry], hosts: Sequence[bytes]) -> None:
        """Queue committed entries for every other host; one task per peer sends them in batches."""
        for peer in hosts:
            if peer == self.node_id:
                continue
            box = self._outboxes.get(peer)
            if box is None:
                m = self._member(peer)
                if m is None or m.state == State.LEFT:
                    # Gone for good but still placed until ``rebalance_delay``: an outbox made now would
                    # never be pruned. Anti-entropy carries these if it ever rejoins.
                    continue
                box = self._outboxes[peer] = _Outbox()
                assert self._nursery is not None
                self._nursery.start_soon(self._push_loop, peer, box, name=f"repl push {peer.hex()}")
            if box.count + len(entries) > OUTBOX_LIMIT:
                # The peer is far behind or unreachable: anti-entropy carries these instead.
                self.counters.outbox_overflows += 1
                for k in box.pending:
                    self._nudge(k, peer, "outbox overflow")
                box.pending.clear()
                box.count = 0
                self._nudge(key, peer, "outbox overflow")
                continue
            box.pending.setdefault(key, []).extend(entries)
            box.count += len(entries)
            hosted = self.hosted.get(key)
            if hosted is not None:
                hosted.last_push = trio.current_time()
            box.wake.set()

    async def _push_loop(self, peer: bytes, box: _Outbox) -> None:
        """Drain one peer's outbox; ends when it leaves for good (``_forget_peer`` cancels ``box.scope``)."""
        with box.scope:
            await self._push_forever(peer, box)

    async def _push_forever(self, peer: bytes, box: _Outbox) -> None:
        while True:
            await box.wake.wait()
            if self.push_delay > 0:
                await trio.sleep(self.push_delay)  # let concurrent writes join this batch
            box.wake = trio.Event()
            pending, box.pending, box.count = box.pending, {}, 0
            m = self._member(peer)
            if m is None or m.state in (State.DEAD, State.LEFT):
                for key in pending:
                    self._nudge(key, peer, "push skipped")
                continue
            if not await self._background("push", self._name(peer), self._push_batch, peer, m.addr, pending):
                for key in pending:  # the entries are durable here: anti-entropy carries them instead
                    self._nudge(key, peer, "push error")

    async def _push_batch(self, peer: bytes, addr: Addr, pending: dict[ShardKey, list[Entry]]) -> None:
        """Send one peer what queued for it, shard by shard, in seq order and budget-sized chunks."""
        for key, entries in pending.items():
            # Writes whose commits finished together may have queued in any order (trio does not
            # promise FIFO wake-ups); in seq order the receiver applies them instead of buffering.
            entries.sort(key=_dot_key)
            for chunk in _chunks(entries, PUSH_BUDGET):
                self.counters.pushes_out += 1
                reply = await self._request(addr, PushEntries(key[0], key[1], chunk))
                if isinstance(reply, PushAck):
                    self._on_ack(peer, key, reply)
                    self._reachable(key, peer)
                else:
                    self.counters.push_failures += 1
                    self._nudge(key, peer, "push failed")
                    break  # later chunks would only sit in its reorder buffer

    def _reachable(self, key: ShardKey, peer: bytes) -> None:
        """A peer answered after failed syncs (a partition healed before SWIM even suspected it):
        forget the backoff and repair now, instead of waiting out up to ``backoff_max``."""
        sched = self.scheduler
        if sched is None:
            return
        ps = sched.peers(*key).get(peer)
        if ps is not None and ps.failures:
            sched.member_recovered(trio.current_time(), peer)
            self._kick()

    # ============================================================== anti-entropy

    def _nudge(self, key: ShardKey, peer: bytes | None, reason: str) -> None:
        if self.scheduler is not None:
            self.scheduler.nudge(trio.current_time(), key[0], key[1], peer, reason)
            self._kick()

    def _kick(self) -> None:
        scope = self._sync_scope
        if scope is not None:
            scope.deadline = trio.current_time()

    async def _sync_loop(self) -> None:
        sched = self.scheduler
        assert sched is not None and self._nursery is not None
        while True:
            now = trio.current_time()
            started = sched.due(now)
            for start in started:
                self._nursery.start_soon(self._exchange, start)
            deadline = sched.next_deadline()
            if deadline is None:
                deadline = math.inf
            elif deadline <= now and not started:
                deadline = now + 0.05  # at the in-flight limit: a finishing exchange kicks us sooner
            with trio.CancelScope(deadline=deadline) as scope:
                self._sync_scope = scope
                await trio.sleep_forever()
            self._sync_scope = None

    async def _exchange(self, start: SyncStart) -> None:
        """One sync round with one peer: request, absorb and commit, then push back what it lacks."""
        sched = self.scheduler
        node = self.node
        assert sched is not None and node is not None and node.transport is not None and self.store is not None
        key = (start.space, start.shard)
        ok = more = caught_up = False
        try:
            hosted = self.hosted.get(key)
            m = self._member(start.peer)
            if hosted is None or m is None or m.state in (State.DEAD, State.LEFT):
                return
            rep = hosted.replica
            now = trio.current_time()
            if (start.reason in ("periodic", "more") and now - hosted.last_push < PUSH_QUIET
                    and not rep.log.buffered_count() and not rep.lag() and key not in self._catching_up):
                # Pushes are flowing and we miss nothing we know of: a round now would mostly ship
                # entries already in flight (and push back what the peer is about to get anyway).
                # A peer that lags sees gaps in our pushes and asks itself; failures sync at once.
                ok = True
                return
            reply = await self._request(m.addr, make_request(rep, self.budget))
            if not isinstance(reply, SyncResponse) or self.hosted.get(key) is not hosted:
                return
            try:
                res = absorb(rep, reply)
            except BadSync:
                self.counters.bad_messages += 1
                return
            self._observe_hlc(res.receive.max_hlc)
            if res.receive.changes.entries:
                await self._commit(key, res.receive.changes)
                self.counters.entries_received += len(res.receive.applied)
            await self._report_forks(res.forks, start.peer)
            hosted.peer_vv[start.peer] = vv_from_wire(reply.vv)
            if res.diverged and reply.digest and rep.vv == self._snapshot(hosted).vv:
                log.error("%s/%d: equal version vectors but different state digests with %s", *key,
                          self._name(start.peer))
            pushed_more = False
            # Routine rounds leave the youngest entries to the pushes in flight; repairs ship everything.
            cut = hosted.settled(trio.current_time()) if start.reason in ("periodic", "more") else None
            if res.lacks:
                fn = functools.partial(push_back, self._snapshot(hosted), res.lacks,
                                       _store_fetch(self.store.store, *key, cut), self.budget)
                push, pushed_more = await self.store.call(fn)
                if push is not None:
                    self.counters.pushes_out += 1
                    ack = await self._request(m.addr, push)
                    if isinstance(ack, PushAck):
                        self._on_ack(start.peer, key, ack)
                    else:
                        return
            ok, more, caught_up = True, res.more or pushed_more, res.caught_up
            if hosted.leaving:
                self._maybe_drop(key)
        except ReplicationError:
            pass
        except Exception:  # a store failure or a bug in one round must not stop the agent (as _on_stream)
            log.exception("%s/%d: sync with %s failed", key[0], key[1], self._name(start.peer))
        finally:
            if ok:
                self.counters.syncs_ok += 1
            else:
                self.counters.syncs_failed += 1
            sched.finished(trio.current_time(), start.token, ok=ok, more=more, caught_up=caught_up)
            self._kick()

    async def sync_now(self) -> None:
        """Urge a sync of every hosted shard with each of its peers (tests and ``space sync``)."""
        assert self.scheduler is not None
        now = trio.current_time()
        for key, hosted in self.hosted.items():
            for peer in hosted.hosts:
                if peer != self.node_id:
                    self.scheduler.nudge(now, key[0], key[1], peer, "requested")
        self._kick()
        await trio.lowlevel.checkpoint()

    # ============================================================== spaces

    async def _merge_spaces(self, descriptors: Iterable[SpaceDescriptor]) -> list[SpaceChange]:
        changes = self.spaces.merge(descriptors)
        if changes:
            assert self.store is not None
            for ch in changes:
                await self.store.put_space(to_row(ch.new))
                if ch.relayout:
                    log.warning("space %s: a conflicting descriptor won (dim %d, %d shard(s)); re-issuing our "
                                "writes made under the loser", ch.name, ch.new.dim, ch.new.shards)
                    assert self._nursery is not None
                    self._nursery.start_soon(self._background, "re-issue", ch.name, self._reissue, ch.name)
                else:
                    log.info("space %s: descriptor learned (dim %d, %d shard(s), %d replica(s))", ch.name,
                             ch.new.dim, ch.new.shards, ch.new.replicas)
            self._recompute_placement()
        return changes

    async def _reissue(self, name: str) -> None:
        """Our own writes made under a descriptor that lost, re-issued where the winner places them.

        Per hosted shard of the space (including shards the winner no longer has): ``plan_reissue``
        lists our live writes that belong elsewhere now. They are written again through the normal
        write path (routed, durable, pushed), and only then withdrawn from the old shard with entries
        appended to *that* shard's log. The plan is a pure function of the state, so running it again
        after a failure (or a second conflict) redoes exactly what is missing.
        """
        await self.ready.wait()
        d = self.spaces.get(name)
        if d is None:
            return
        for key in sorted(k for k in self.hosted if k[0] == name):
            hosted = self.hosted.get(key)
            if hosted is None:
                continue
            plan = plan_reissue(d, self.node_id, key[1], hosted.replica.state)
            if plan.stranded:
                log.error("space %s shard %d: %d memories have the losing descriptor's dimension; left in "
                          "place (export and re-import them into another space)", name, key[1],
                          len(plan.stranded))
            if not plan:
                continue
            try:
                if plan.moves:
                    await self.write(name, [body for _, body in plan.moves], AckLevel.ONE)
                await self._append_here(key, plan.withdrawals)
            except (ReplicationError, WriteError, SpaceError) as exc:
                log.error("space %s: re-issue from shard %d failed (%s); it runs again on the next change",
                          name, key[1], exc)
                continue
            log.warning("space %s: moved %d of our writes out of shard %d under the winning descriptor", name,
                        len(plan.moves), key[1])

    async def _append_here(self, key: ShardKey, bodies: Sequence[Body]) -> None:
        """Append our own bodies to exactly this shard's log (no routing), commit, push to its hosts."""
        hosted = self.hosted.get(key)
        if hosted is None or not bodies:
            return
        if key in self._catching_up:
            raise CatchingUp(f"{key[0]}/{key[1]} is still catching up here")
        try:
            entries, changes = hosted.replica.write_many(self.node_id, [(self.hlc.tick(), b) for b in bodies])
        except OriginQuarantined as exc:
            raise ReplicationError(str(exc)) from None
        await self._commit(key, changes)
        self._push(key, entries, hosted.hosts or [self.node_id])

    async def _send_spaces(self, peer: bytes) -> bool:
        """Descriptor push-pull with one member; True if it answered."""
        node = self.node
        addr = self._addr_of(peer)
        if node is None or node.transport is None or addr is None or peer == self.node_id:
            return False
        reply = await self._request(addr, SpaceList(self.spaces.descriptors()[:1024]))
        if isinstance(reply, SpaceList):
            await self._merge_spaces(reply.descriptors)
            return True
        return False

    async def _exchange_spaces(self, peer: bytes) -> None:
        await self.ready.wait()
        await self._send_spaces(peer)

    async def _descriptor_loop(self) -> None:
        while True:
            await trio.sleep(DESCRIPTOR_INTERVAL * (0.8 + 0.4 * self.rng.random()))
            alive = [m.node_id for m in self._members()[1:] if m.state == State.ALIVE]
            if alive:
                peer = self.rng.choice(alive)
                await self._background("descriptor exchange", self._name(peer), self._send_spaces, peer)

    async def _announce(self, d: SpaceDescriptor) -> None:
        """A space created here: persist it, then push it to every alive member at once."""
        assert self.store is not None
        await self.store.put_space(to_row(d))
        self._recompute_placement()
        alive = [m.node_id for m in self._members()[1:] if m.state == State.ALIVE]
        async with trio.open_nursery() as nursery:
            for peer in alive:
                nursery.start_soon(self._send_spaces, peer)

    async def create_space(self, name: str, dim: int, shards: int = 1, replicas: int = 3) -> SpaceDescriptor:
        """``space create``: idempotent for identical parameters, an error for a conflicting existing name."""
        await self.ready.wait()
        try:
            d, created = self.spaces.create(name, dim, self.hlc.tick(), self.node_id, shards=shards,
                                            replicas=replicas)
        except SpaceError as exc:
            raise ReplicationError(str(exc)) from None
        if created:
            log.info("space %s created (dim %d, %d shard(s), %d replica(s))", name, dim, shards, replicas)
        await self._announce(d)
        return d

    async def ensure_space(self, name: str, dim: int) -> SpaceDescriptor:
        """Implicit creation by a first write (defaults; ``dim`` from the vector)."""
        check_space_name(name)
        d = self.spaces.get(name)
        if d is not None:
            return d
        d, created = self.spaces.ensure(name, dim, self.hlc.tick(), self.node_id)
        if created:
            log.info("space %s created implicitly by a write (dim %d)", name, dim)
            await self._announce(d)
        return d

    # ============================================================== client operations

    async def remember(self, space: str, items: Sequence[Mapping[str, Any]],
                       ack: AckLevel | None = None) -> list[bytes]:
        """Remember one or many memories (``id``?, ``content``, ``vector``, ``confidence``?, ``meta``?).

        Every item is validated before anything is written, so a bad item refuses the whole batch.
        Returns the memory ids in order (``remember_dots`` also returns their log positions).
        """
        ids, _ = await self.remember_dots(space, items, ack)
        return ids

    async def remember_dots(self, space: str, items: Sequence[Mapping[str, Any]],
                            ack: AckLevel | None = None) -> tuple[list[bytes], list[Dot]]:
        """``remember``, returning ``(ids, dots)``: each memory's id and its entry's ``(origin, seq)``."""
        await self.ready.wait()
        check_space_name(space)
        d = self.spaces.get(space)
        dim = d.dim if d is not None else None
        bodies: list[Body] = []
        for n, item in enumerate(items):
            try:
                bodies.append(build_remember(content=item.get("content", ""), vector=item.get("vector"),
                                             dim=dim, id=item.get("id"),
                                             confidence=item.get("confidence", 1.0), meta=item.get("meta")))
            except WriteError as exc:
                if len(items) > 1:
                    raise WriteError(f"item {n}: {exc.field}", exc.reason) from None
                raise
            if dim is None:
                dim = len(bodies[-1].vector) // 4  # type: ignore[union-attr]
        if not bodies:
            return [], []
        if d is None:
            assert dim is not None
            await self.ensure_space(space, dim)
        dots = await self.write(space, bodies, ack)
        return [b.id for b in bodies], dots  # type: ignore[union-attr]

    async def associate(self, space: str, src: Any, dst: Any, weight: Any, confidence: Any = 1.0,
                        ack: AckLevel | None = None) -> Dot:
        require_space(self.spaces, space)
        [dot] = await self.write(space, [build_associate(src, dst, weight, confidence)], ack)
        return dot

    async def dissociate(self, space: str, src: Any, dst: Any, ack: AckLevel | None = None) -> Dot:
        """Observed-remove of an edge: the host writing it tombstones every slot *it* has seen."""
        require_space(self.spaces, space)
        [dot] = await self.write(space, [Dissociate(parse_id(src, "src"), parse_id(dst, "dst"), [])], ack)
        return dot

    async def retract(self, space: str, src: Any, dst: Any, ack: AckLevel | None = None) -> Dot:
        require_space(self.spaces, space)
        [dot] = await self.write(space, [build_retract(src, dst)], ack)
        return dot

    async def forget(self, space: str, mem_id: Any, ack: AckLevel | None = None) -> Dot:
        require_space(self.spaces, space)
        [dot] = await self.write(space, [Forget(parse_id(mem_id, "id"), [])], ack)
        return dot

    def local_replica(self, space: str, mem_id: Any) -> ShardReplica:
        """The replica holding ``mem_id`` here; ``ReplicationError`` naming its hosts if this peer has none."""
        d = require_space(self.spaces, space)
        raw = parse_id(mem_id, "id")
        shard = placement.shard_of(raw, d.shards)
        hosted = self.hosted.get((space, shard))
        if hosted is None:
            hosts = ", ".join(self._name(h) for h in self.placement.get((space, shard), [])) or "none known"
            raise ReplicationError(f"this peer does not host {space}/{shard}; its hosts: {hosts}")
        return hosted.replica

    def get(self, space: str, mem_id: Any) -> Remember | None:
        """The visible memory ``mem_id`` (from this peer's replica of its shard), or ``None``."""
        slot = self.local_replica(space, mem_id).state.memory(parse_id(mem_id, "id"))
        return None if slot is None else slot.body

    def edges(self, space: str, mem_id: Any) -> list[tuple[bytes, float, float, list[bytes]]]:
        """Visible out-edges of ``mem_id``: ``(dst, weight, confidence, writers with a live slot)``."""
        raw = parse_id(mem_id, "id")
        state = self.local_replica(space, mem_id).state
        out = []
        for dst, w, c in state.out_edges(raw):
            writers = sorted(wr for wr, s in state.edge_state(raw, dst).items() if not s.tomb)
            out.append((dst, w, c, writers))
        return out

    def space_info(self, space: str) -> SpaceStatus:
        """``space info``: per shard this peer hosts, its hosts, counts, digest, version vector and lag;
        plus where every shard of the space lives according to this peer."""
        d = require_space(self.spaces, space)
        rows = []
        for (name, shard), hosted in sorted(self.hosted.items()):
            if name != space:
                continue
            rep = hosted.replica
            st = rep.stats()
            peer_lag = {}
            for peer, theirs in sorted(hosted.peer_vv.items()):
                if peer != self.node_id:
                    peer_lag[self._name(peer)] = sum(max(0, seq - theirs.seq_of(o)) for o, seq, _ in st.version_vector)
            rows.append(ShardRow(
                shard=shard,
                hosts=[self._name(h) for h in self.placement.get((name, shard), hosted.hosts)],
                memories=st.memories,
                edges=st.edges,
                digest=st.digest,
                version_vector=[VVRow(origin=o, seq=seq) for o, seq, _ in st.version_vector],
                lag=st.lag,
                buffered=st.buffered,
                quarantined=list(st.quarantined),
                leaving=hosted.leaving,
                peer_lag=peer_lag,
            ))
        where = [PlacementRow(shard=k[1], hosts=[self._name(h) for h in hosts])
                 for k, hosts in sorted(self.placement.items()) if k[0] == space]
        return SpaceStatus(space=_space_row(d), shards=rows, placement=where)

    # ============================================================== faults

    def _peers(self) -> list[Peer]:
        return [Peer(bytes(m.node_id), m.name, m.addr) for m in self._members()]

    def fault_drop(self, names: Sequence[str]) -> list[Peer]:
        self.faults.check()
        members = self._peers()
        targets = resolve_peers(names, members)
        if any(p.node_id == self.node_id for p in targets):
            raise FaultError("cannot drop traffic to this agent itself")
        dropped = self.faults.drop(targets, members)
        log.warning("fault injection: dropping traffic with %s", ", ".join(p.name for p in dropped))
        return dropped

    def fault_heal(self, names: Sequence[str] | None = None) -> list[Peer]:
        self.faults.check()
        members = self._peers()
        targets = None if not names else resolve_peers(names, members)
        before = {p.node_id for p in self.faults.dropped()}
        left = self.faults.heal(targets, members)
        if self.scheduler is not None:
            now = trio.current_time()
            for node_id in before - {p.node_id for p in left}:
                self.scheduler.member_recovered(now, node_id)
            self._kick()
        log.warning("fault injection: healed; still dropping %s", ", ".join(p.name for p in left) or "nobody")
        return left


# ================================================================== control socket


def _space_row(d: SpaceDescriptor) -> SpaceRow:
    return SpaceRow(name=d.name, dim=d.dim, shards=d.shards, replicas=d.replicas, metric=d.metric,
                    created_hlc=d.created_hlc, creator=d.creator)


def _ack(name: str | None) -> AckLevel | None:
    return None if name is None else QUORUM_NAMES[name]


def _fault_state(peers: Sequence[Peer]) -> FaultState:
    return FaultState(dropped=[FaultPeer(name=p.name, node_id=p.node_id, addr=f"{p.addr[0]}:{p.addr[1]}")
                               for p in peers])


def _control_handlers(svc: Replication) -> dict[str, Any]:
    """Control commands (request tag -> handler); every user-facing failure becomes ``CommandError``."""

    def guarded(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(fn)
        async def handler(req: Any) -> Any:
            try:
                return await fn(req)
            except (WriteError, ReplicationError, FaultError, SpaceError) as exc:
                raise CommandError(str(exc)) from None

        return handler

    async def space_create(req: SpaceCreate) -> Spaces:
        d = await svc.create_space(req.name, req.dim, req.shards, req.replicas)
        return Spaces(spaces=[_space_row(d)])

    async def space_list(req: Any) -> Spaces:
        await svc.ready.wait()
        return Spaces(spaces=[_space_row(d) for d in svc.spaces.descriptors()])

    async def space_info(req: SpaceInfo) -> SpaceStatus:
        await svc.ready.wait()
        return svc.space_info(req.name)

    async def remember(req: MemoryRemember) -> Written:
        items = [{"id": it.id, "content": it.content, "vector": it.vector, "confidence": it.confidence,
                  "meta": it.meta} for it in req.items]
        ids, dots = await svc.remember_dots(req.space, items, _ack(req.ack))
        return Written(ids=ids, dots=dots)

    async def associate(req: EdgeAssociate) -> Written:
        return Written(dots=[await svc.associate(req.space, req.src, req.dst, req.weight, req.confidence,
                                                 _ack(req.ack))])

    async def dissociate(req: EdgeDissociate) -> Written:
        return Written(dots=[await svc.dissociate(req.space, req.src, req.dst, _ack(req.ack))])

    async def retract(req: EdgeRetract) -> Written:
        return Written(dots=[await svc.retract(req.space, req.src, req.dst, _ack(req.ack))])

    async def forget(req: MemoryForget) -> Written:
        return Written(dots=[await svc.forget(req.space, req.mem_id, _ack(req.ack))])

    async def get(req: MemoryGet) -> MemoryFound:
        await svc.ready.wait()
        body = svc.get(req.space, req.mem_id)
        if body is None:
            return MemoryFound(memory=None)
        return MemoryFound(memory=MemoryRecord(id=body.id, content=body.content, vector=body.vector,
                                               confidence=body.confidence, meta=dict(body.meta)))

    async def edges(req: MemoryEdges) -> EdgeList:
        await svc.ready.wait()
        rows = [EdgeRow(dst=dst, weight=w, confidence=min(1.0, c), writers=writers)
                for dst, w, c, writers in svc.edges(req.space, req.mem_id)]
        return EdgeList(src=req.mem_id, edges=rows)

    async def fault_drop(req: FaultDrop) -> FaultState:
        return _fault_state(svc.fault_drop(req.peers))

    async def fault_heal(req: FaultHeal) -> FaultState:
        return _fault_state(svc.fault_heal(req.peers or None))

    table = {
        "space_create": space_create,
        "space_list": space_list,
        "space_info": space_info,
        "remember": remember,
        "associate": associate,
        "dissociate": dissociate,
        "retract": retract,
        "forget": forget,
        "get": get,
        "edges": edges,
        "fault_drop": fault_drop,
        "fault_heal": fault_heal,
    }
    return {name: guarded(fn) for name, fn in table.items()}


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group (a batch that failed in one shard reports that shard)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


__all__ = ["AckTimeout", "CatchingUp", "Counters", "NoHostTook", "Replication", "ReplicationError",
           "ack_needed"]
