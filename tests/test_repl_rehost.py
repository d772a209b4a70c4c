"""A shard placed back on a peer that hosted it, wrote to it and dropped it (real nodes on ``memnet``).

The re-placed replica starts empty while the other hosts hold our own origin's earlier entries. Writing
under our origin there before anti-entropy has brought them back would re-use seq 1 with another hash:
the other hosts would see a fork and quarantine our origin for that shard. The agent must forward such
writes to a caught-up host instead, and continue its own chain once it has caught up. Helpers and the
inline-store fixture come from ``test_repl_service``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio
import trio.testing
from test_repl_service import DIM, digests, memnet_cluster, mid, store_on_the_loop, until, vec  # noqa: F401 (autouse fixture)

from engramp2p.crdt.entry import Dot
from engramp2p.repl.messages import AckLevel
from engramp2p.repl.placement import score
from engramp2p.repl.service import Replication
from engramp2p.store import Store

SPACE = "back"
KEY = (SPACE, 0)


def _identities(tmp: Path) -> None:
    """Make the four data directories up front so that placement of ``back/0`` (replicas=2) is known:
    with n0..n2 it is {n0, n1}; n3 outranks everyone, so its joining pushes n1 out, its leaving back in.
    (Node ids are random; the directories are ranked by score and named by rank.)"""
    made = []
    for k in range(4):
        with Store.open(tmp / f"g{k}") as s:
            made.append((score(SPACE, 0, s.node_id), tmp / f"g{k}"))
    ranked = [path for _, path in sorted(made, reverse=True)]
    for i, rank in ((3, 0), (0, 1), (1, 2), (2, 3)):
        shutil.move(ranked[rank], tmp / f"n{i}")


@pytest.mark.parametrize("when", ["after-drop", "during-drop", "after-restart"])
async def test_shard_placed_back_after_a_drop_does_not_fork_our_origin(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        when: str) -> None:
    """n1 hosts ``back/0`` and writes to it, n3 joins and takes it over, n1 drops it; n3 leaves and it
    comes back to n1 (after the drop, while the drop is still running, or after n1 restarted). Nothing
    forks, every acknowledged write is everywhere, and n1's own chain continues where it was."""
    slow_drop = when == "during-drop"
    _identities(tmp_path)
    async with memnet_cluster(tmp_path, seed=31) as c:
        for i in range(3):
            await c.start(i)
        await c.converged(3)
        b, a, n2 = c.repl[0], c.repl[1], c.repl[2]
        await a.create_space(SPACE, DIM, shards=1, replicas=2)
        await until(lambda: all(r.placement.get(KEY) == [b.node_id, a.node_id] for r in c.repl.values()))

        acked: list[bytes] = []
        dots_of_a: list[int] = []  # a's own seqs (its writes, and writes forwarded to it)

        async def write(r: Replication, first: int, n: int, ack: AckLevel = AckLevel.ALL) -> list[Dot]:
            items = [{"id": mid(i), "content": f"m{i}", "vector": vec(i)} for i in range(first, first + n)]
            ids, dots = await r.remember_dots(SPACE, items, ack=ack)
            acked.extend(ids)
            dots_of_a.extend(dot.seq for dot in dots if dot.writer == a.node_id)
            return dots

        assert {dot.writer for dot in await write(a, 0, 5)} == {a.node_id}  # a's own entries
        await write(b, 100, 3)
        await write(n2, 200, 2)  # forwarded by a non-host

        if slow_drop:  # a's drop is still in its transaction when the shard comes back
            assert a.store is not None
            real_drop = a.store.drop_shard

            async def drop_shard(space: str, shard: int, own_seq: int = 0) -> None:
                await trio.sleep(30.0)
                await real_drop(space, shard, own_seq)

            monkeypatch.setattr(a.store, "drop_shard", drop_shard)

        d = await c.start(3)
        await c.converged(4)
        await until(lambda: all(r.placement.get(KEY) == [d.node_id, b.node_id] for r in c.repl.values()))
        await until(lambda: KEY not in a.hosted, 60)  # handed off: d covers everything a held
        assert all(d.get(SPACE, m) is not None for m in acked) and d.counters.forks == 0
        if not slow_drop:
            await until(lambda: a.counters.shards_dropped == 1)
        if when == "after-restart":  # what a dropped shard leaves behind must be in the store
            await c.crash(1)
            a = await c.start(1)
            await c.converged(4)

        assert await c.nodes[3].leave()
        c.nodes.pop(3).stop()
        c.repl.pop(3)
        # After rebalance_delay, a is placed again and starts an empty replica. Write at once, before
        # anti-entropy (urged 50 ms after the placement change) had a chance to run.
        with trio.fail_after(60):
            while a.placement.get(KEY) != [b.node_id, a.node_id]:
                await trio.sleep(0.001)
        assert KEY in a.hosted
        if slow_drop:
            assert a.counters.shards_dropped == 0
        # (ack=one: a host that is itself catching up acknowledges a push only once the gap before it is
        # filled, so ack=all could time out here; that is not what this test is about.)
        before = max(dots_of_a)
        dots = await write(a, 10, 3, AckLevel.ONE)
        # Not appended under a's origin from seq 1 again (b holds those seqs with other hashes: a fork, and
        # a's origin quarantined there) but forwarded to b, whose origin writes it. (After the restart, a
        # briefly hosted the shard while it knew no other member and caught up then: it may append.)
        assert sorted(dots_of_a) == list(range(1, max(dots_of_a) + 1)), "a re-used its own seqs"
        if when != "after-restart":
            assert {dot.writer for dot in dots} == {b.node_id}
        await until(lambda: all(r.get(SPACE, m) is not None for r in (a, b) for m in acked), 60)

        def caught_up() -> bool:
            rows = a.space_info(SPACE).shards
            return bool(rows) and any(v.origin == a.node_id and v.seq >= before for v in rows[0].version_vector)

        # Caught up: a's next write of its own continues its chain where it was.
        if slow_drop:  # (commits of the new copy wait for the old copy's drop to end)
            await until(lambda: a.counters.shards_dropped == 1, 60)
        await until(caught_up, 60)
        await trio.sleep(1.0)  # (the commit of what brought it up to date)
        assert KEY not in a._catching_up
        last = max(dots_of_a)
        dots = await write(a, 20, 2)
        assert [(dot.writer, dot.seq) for dot in dots] == [(a.node_id, last + 1), (a.node_id, last + 2)]
        await write(b, 30, 2)
        await write(n2, 40, 2)

        await until(lambda: all(r.get(SPACE, m) is not None for r in (a, b) for m in acked), 60)
        await until(lambda: len({str(v) for i, v in digests(c, SPACE).items() if i in (0, 1)}) == 1, 60)
        for r in c.repl.values():
            assert r.counters.forks == 0
            assert all(not h.replica.quarantined for h in r.hosted.values())
        for i in (0, 1):  # and SQLite agrees with memory (the old copy's drop did not delete the new one)
            store = c.nodes[i].store
            assert store is not None
            assert KEY in await store.hosted_shards()
            assert await store.call(store.store.memory_count, SPACE, 0) == len(acked)
        if when == "after-restart":  # what a knew of its writes to the dropped shard came from its store
            assert a._own_seq[KEY] == before
