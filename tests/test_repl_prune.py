"""Robustness of the replication service over churn and disk trouble (real nodes on ``memnet``, MockClock).

Per-peer state (outbox and push task, acknowledged seqs, durable vectors) of a member that left for good
is dropped, while a merely failed member keeps it and still gets what was written meanwhile; and a
background step that fails (a load, a drop) is logged, counted and done again later instead of
cancelling the agent. Helpers and the inline-store fixture come from ``test_repl_service``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from test_repl_service import DIM, memnet_cluster, mid, store_on_the_loop, until, vec  # noqa: F401 (autouse fixture)

from engramp2p.crdt.entry import Dot
from engramp2p.repl.messages import AckLevel
from engramp2p.repl.placement import shard_of
from engramp2p.repl.service import Replication, ReplicationError
from engramp2p.swim.events import MemberFailed, MemberRecovered
from engramp2p.swim.messages import State

REAP = {"reconnect_timeout": 15.0, "left_reap_timeout": 15.0}
"""Short tombstone timeouts, so a crashed member is reaped within the test."""


def push_tasks(r: Replication) -> set[str]:
    """Names of the push tasks running in the service's nursery (one per peer with an outbox)."""
    assert r._nursery is not None
    return {t.name for t in r._nursery.child_tasks if t.name.startswith("repl push ")}


def per_peer(r: Replication, peer: bytes) -> list[str]:
    """Which per-peer maps of ``r`` still mention ``peer`` (empty once it is forgotten)."""
    where = []
    if peer in r._outboxes:
        where.append("outbox")
    if f"repl push {peer.hex()}" in push_tasks(r):
        where.append("push task")
    if any(p == peer for _, p in r._acked):
        where.append("acked")
    if any(peer in h.peer_vv for h in r.hosted.values()):
        where.append("peer_vv")
    return where


async def test_left_and_reaped_members_are_forgotten_failed_ones_are_not(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with memnet_cluster(tmp_path, seed=21) as c:
        for i in range(4):
            await c.start(i, REAP)
        await c.converged(4)
        a = c.repl[0]
        crashed, leaver = c.repl[2].node_id, c.repl[3].node_id
        await a.create_space("p", DIM, replicas=4)
        await until(lambda: all(len(r.placement.get(("p", 0), [])) == 4 for r in c.repl.values()))
        await a.remember("p", [{"id": mid(i), "content": "x", "vector": vec(i)} for i in range(5)],
                         ack=AckLevel.ALL)
        assert per_peer(a, leaver) == per_peer(a, crashed) == ["outbox", "push task", "acked", "peer_vv"]

        # A graceful leave is final: everything kept for it goes, and its push task ends.
        assert await c.nodes[3].leave()
        c.nodes.pop(3).stop()
        c.repl.pop(3)
        await until(lambda: a._member(leaver) is not None and a._member(leaver).state == State.LEFT)
        await until(lambda: not per_peer(a, leaver))
        # Still placed until rebalance_delay runs out, but no outbox is made for it again.
        await a.remember("p", [{"id": mid(10), "content": "y", "vector": vec(10)}], ack=AckLevel.ONE)
        assert not per_peer(a, leaver)

        # A failure is not final (the member may come back): its state stays ...
        await c.crash(2)
        await until(lambda: a._member(crashed) is not None and a._member(crashed).state == State.DEAD)
        assert per_peer(a, crashed) == ["outbox", "push task", "acked", "peer_vv"]
        await a.remember("p", [{"id": mid(11), "content": "z", "vector": vec(11)}], ack=AckLevel.ONE)
        # ... until its tombstone is reaped.
        await until(lambda: a._member(crashed) is None, 60)
        await until(lambda: not per_peer(a, crashed))

        assert push_tasks(a) == {f"repl push {c.repl[1].node_id.hex()}"}
        assert not c.stopped[0].is_set()
        await until(lambda: c.repl[1].get("p", mid(11)) is not None)


async def test_writes_queued_for_a_failed_member_reach_it_when_it_recovers(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with memnet_cluster(tmp_path, seed=22) as c:
        for i in range(3):
            await c.start(i, rebalance_delay=600.0)  # it stays placed while down
        await c.converged(3)
        a = c.repl[0]
        events: list[Any] = []
        inner = a.on_member_event

        def record(event: Any) -> None:
            events.append(event)
            inner(event)

        a.on_member_event = record  # type: ignore[method-assign]
        d_id = c.repl[2].node_id
        await a.create_space("q", DIM, replicas=3)
        await until(lambda: all(len(r.placement.get(("q", 0), [])) == 3 for r in c.repl.values()))
        await a.remember("q", [{"id": mid(0), "content": "before", "vector": vec(0)}], ack=AckLevel.ALL)
        box = a._outboxes[d_id]

        await c.crash(2)
        while_down = [mid(100 + i) for i in range(20)]
        for m in while_down[:10]:  # queued while it is only suspected ...
            await a.remember("q", [{"id": m, "content": "down", "vector": vec(1)}])
        await until(lambda: any(isinstance(e, MemberFailed) and e.member.node_id == d_id for e in events))
        for m in while_down[10:]:  # ... and after it was declared dead
            await a.remember("q", [{"id": m, "content": "down", "vector": vec(2)}])
        assert a._outboxes[d_id] is box and f"repl push {d_id.hex()}" in push_tasks(a)

        d = await c.start(2, rebalance_delay=600.0)
        await until(lambda: any(isinstance(e, MemberRecovered) and e.member.node_id == d_id for e in events))
        await until(lambda: d.ready.is_set() and all(d.get("q", m) is not None for m in [mid(0), *while_down]))
        assert a._outboxes[d_id] is box
        assert not c.stopped[0].is_set()


async def test_a_failed_background_load_is_counted_and_retried(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit fails, so the shard is reloaded from the store in the background; that load fails too
    (``disk I/O error``). The agent keeps running, counts it, does not take the shard for loaded (nor
    restart it empty), and a later placement pass loads it with everything it held."""
    async with memnet_cluster(tmp_path, seed=23) as c:
        a = await c.start(0)
        await c.converged(1)
        await a.create_space("notes", DIM, replicas=1)
        ids = await a.remember("notes", [{"id": mid(i), "content": str(i), "vector": vec(i)} for i in range(5)])
        store = a.store
        assert store is not None
        real_append, real_vv = store.append, store.vv
        broken = {"append": 1, "vv": 1}

        async def append(changes: Any) -> None:
            if broken["append"]:
                broken["append"] -= 1
                raise OSError("disk full")
            await real_append(changes)

        async def vv(space: str, shard: int) -> Any:
            if broken["vv"]:
                broken["vv"] -= 1
                raise sqlite3.OperationalError("disk I/O error")
            return await real_vv(space, shard)

        monkeypatch.setattr(store, "append", append)
        monkeypatch.setattr(store, "vv", vv)
        with pytest.raises(ReplicationError, match="could not commit"):
            await a.remember("notes", [{"id": mid(9), "content": "lost", "vector": vec(9)}])
        await until(lambda: a.counters.background_failures == 1)
        assert ("notes", 0) not in a.hosted
        with pytest.raises(ReplicationError, match="not-hosted"):  # not served, and not restarted empty
            await a.remember("notes", [{"id": mid(8), "content": "early", "vector": vec(8)}])

        await until(lambda: ("notes", 0) in a.hosted, 30)
        assert all(a.get("notes", m) is not None for m in ids)
        assert await a.forget("notes", mid(0)) == Dot(a.node_id, 6)  # our sequence goes on from the stored log
        assert a.counters.background_failures == 1 and a.counters.commit_failures == 1
        assert not c.stopped[0].is_set()


async def test_a_failed_drop_is_retried(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old host of a moved shard fails to drop it (``database is locked``): it keeps the shard,
    counts the failure, stays up, and drops it on a later hand-off check."""
    async with memnet_cluster(tmp_path, seed=24) as c:
        a = await c.start(0)
        await c.converged(1)
        await a.create_space("h", DIM, shards=16, replicas=1)  # node ids are random: 16 makes a move certain
        ids = [mid(i) for i in range(40)]
        await a.remember("h", [{"id": m, "content": m.hex(), "vector": vec(i)} for i, m in enumerate(ids)])
        store = a.store
        assert store is not None
        real_drop = store.drop_shard
        locked = [1]

        async def drop_shard(space: str, shard: int, own_seq: int = 0) -> None:
            if locked:
                locked.pop()
                raise sqlite3.OperationalError("database is locked")
            await real_drop(space, shard, own_seq)

        monkeypatch.setattr(store, "drop_shard", drop_shard)
        b = await c.start(1)
        await c.converged(2)
        await until(lambda: len(b.placement) == 16 and b.placement == a.placement)
        moved = {k for k, hosts in b.placement.items() if hosts == [b.node_id]}
        assert moved

        async def settled() -> bool:
            mine = {k for k, hosts in a.placement.items() if a.node_id in hosts}
            return set(a.hosted) == mine and set(await store.hosted_shards()) == mine

        with trio.fail_after(120):
            while not await settled():
                await trio.sleep(0.05)
        assert a.counters.background_failures == 1 and not locked
        assert a.counters.shards_dropped == len(moved)
        for m in ids:
            owner = a if a.node_id in a.placement[("h", shard_of(m, 16))] else b
            assert owner.get("h", m) is not None
        assert not c.stopped[0].is_set()


async def test_a_push_that_raises_is_counted_and_anti_entropy_delivers(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error while pushing to a peer (a bug, not a network failure) ends neither the push
    task nor the agent: it is counted, and the entries reach the peer by anti-entropy."""
    async with memnet_cluster(tmp_path, seed=25) as c:
        for i in range(2):
            await c.start(i)
        await c.converged(2)
        a, b = c.repl[0], c.repl[1]
        await a.create_space("q", DIM, replicas=2)
        await until(lambda: all(len(r.placement.get(("q", 0), [])) == 2 for r in c.repl.values()))
        real_batch = a._push_batch
        broken = [1]

        async def push_batch(peer: bytes, addr: Any, pending: Any) -> None:
            if broken:
                broken.pop()
                raise RuntimeError("injected bug")
            await real_batch(peer, addr, pending)

        monkeypatch.setattr(a, "_push_batch", push_batch)
        await a.remember("q", [{"id": mid(i), "content": "x", "vector": vec(i)} for i in range(3)], ack=AckLevel.ONE)
        await until(lambda: all(b.get("q", mid(i)) is not None for i in range(3)), 60)
        assert a.counters.background_failures == 1 and not broken
        await a.remember("q", [{"id": mid(9), "content": "y", "vector": vec(9)}], ack=AckLevel.ALL)
        assert b.get("q", mid(9)) is not None and not c.stopped[0].is_set()
