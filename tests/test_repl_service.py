"""The replication service inside real ``Node`` objects on ``memnet`` under MockClock (DESIGN §12 layer 3).

Each test runs 2-3 production nodes (store, SWIM, driver, transport hooks) with only the sockets replaced,
so what is asserted is the agent's behaviour: a write at one peer is readable at the others, a non-host
forwards, ``ack=all`` waits for every host's commit, a partition made with the fault hooks heals by
anti-entropy with nothing lost, and no acknowledgement ever precedes the commit it stands for.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing

from engramp2p.api.messages import (
    EdgeAssociate,
    FaultDrop,
    MemoryEdges,
    MemoryGet,
    MemoryItem,
    MemoryRemember,
    SpaceCreate,
    SpaceInfo,
)
from engramp2p.api.messages import SpaceList as ApiSpaceList
from engramp2p.api.server import CommandError
from engramp2p.config import Config
from engramp2p.crdt.entry import Associate
from engramp2p.net.memnet import MemNet
from engramp2p.net.seal import encode_key, generate_key
from engramp2p.node import Node
from engramp2p.repl.faults import FaultError, Faults, Peer, resolve_peers
from engramp2p.repl.messages import AckLevel, ForwardWrite, SpaceDescriptor, SpaceList
from engramp2p.repl.placement import shard_of
from engramp2p.repl.service import AckTimeout, Replication, ReplicationError
from engramp2p.repl.validate import WriteError
from engramp2p.sansio import Addr
from engramp2p.store import Store

ADDRS: list[Addr] = [(f"10.0.1.{i + 1}", 7946) for i in range(4)]
KEY = encode_key(generate_key())
DIM = 8


@pytest.fixture(autouse=True)
def store_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the store's SQLite calls inline instead of in a worker thread.

    Under MockClock's autojump a task waiting for a thread looks idle, so virtual time races ahead
    while SQLite works and every timeout in the system (acks, stream exchanges) fires at random.
    Inline, virtual time only moves when the whole cluster waits, so runs are reproducible and
    timeouts mean what they say. (The threaded path is covered by the store's own tests.)
    """

    async def inline(fn: Callable[..., object], *args: object, **_: object) -> object:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)


def _config(tmp: Path, i: int, swim: Mapping[str, object] | None = None, **repl: object) -> Config:
    cfg = Config.default().with_flags(
        name=f"n{i}", data_dir=str(tmp / f"n{i}"), profile="local",
        join=[f"{ADDRS[0][0]}:{ADDRS[0][1]}"] if i else [], key=KEY,
    )
    overrides = {"replication.sync_interval": 2.0, "replication.rebalance_delay": 5.0,
                 "replication.ack_timeout_ms": 3_000, "storage.synchronous": "normal", **{f"replication.{k}": v for k, v in repl.items()},
                 **{f"swim.{k}": v for k, v in (swim or {}).items()}}
    return cfg.with_overrides(overrides)


class Cluster:
    def __init__(self, nursery: trio.Nursery, net: MemNet, tmp: Path) -> None:
        self.nursery = nursery
        self.net = net
        self.tmp = tmp
        self.nodes: dict[int, Node] = {}
        self.repl: dict[int, Replication] = {}
        self.stopped: dict[int, trio.Event] = {}

    @staticmethod
    async def _run(node: Node, stopped: trio.Event, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await node.run(task_status=task_status)
        finally:
            stopped.set()

    async def start(self, i: int, swim: Mapping[str, object] | None = None, **repl: object) -> Replication:
        transport = self.net.endpoint(ADDRS[i], tcp_timeout=2.0)
        cfg = _config(self.tmp, i, swim, **repl)
        node = Node(cfg, transport=transport, rng=random.Random(i), control=False)
        svc = Replication(cfg, seed=i)
        node.add_service(svc)
        self.stopped[i] = trio.Event()
        await self.nursery.start(self._run, node, self.stopped[i])
        self.nodes[i] = node
        self.repl[i] = svc
        return svc

    async def crash(self, i: int) -> None:
        """A killed process: sockets gone at once, no leave; returns when its store is closed."""
        self.net.remove(ADDRS[i])
        self.nodes.pop(i).stop()
        self.repl.pop(i)
        await self.stopped[i].wait()

    async def converged(self, n: int) -> None:
        def alive() -> bool:
            return all(
                sum(r.state == "alive" for r in node.member_rows()) == n for node in self.nodes.values())
        await until(alive)


@asynccontextmanager
async def memnet_cluster(tmp: Path, *, seed: int) -> AsyncIterator[Cluster]:
    """A ``Cluster`` on a fresh ``MemNet`` (1 ms links); its nodes and the network stop on exit."""
    net = MemNet(seed=seed, delay=0.001)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        yield Cluster(nursery, net, tmp)
        nursery.cancel_scope.cancel()


async def until(pred: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``pred`` in virtual time; fail if it does not hold within ``timeout`` virtual seconds."""
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.05)


def vec(seed: int) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).standard_normal(DIM)]


def mid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def digests(c: Cluster, space: str) -> dict[int, dict[int, str]]:
    return {i: {row.shard: row.digest for row in r.space_info(space).shards} for i, r in c.repl.items()}


async def test_write_at_one_read_at_others_and_edges(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with memnet_cluster(tmp_path, seed=1) as c:
        for i in range(3):
            await c.start(i)
        await c.converged(3)
        a, b, d = c.repl[0], c.repl[1], c.repl[2]
        await a.create_space("notes", DIM, shards=2, replicas=3)
        await until(lambda: all("notes" in r.spaces for r in c.repl.values()))

        ids = await a.remember("notes", [{"id": mid(i), "content": f"m{i}", "vector": vec(i)} for i in range(20)],
                               ack=AckLevel.ALL)
        assert ids == [mid(i) for i in range(20)]
        for r in (b, d):  # ack=all: every host has committed it already
            assert all(r.get("notes", mid(i)) is not None for i in range(20))
            assert r.get("notes", mid(3)).content == "m3"

        await b.associate("notes", mid(1), mid(2), 0.8, 0.5, ack=AckLevel.ALL)
        await d.associate("notes", mid(1), mid(2), 0.2, 1.0, ack=AckLevel.ALL)
        edges = a.edges("notes", mid(1))
        assert [(dst, round(w, 6)) for dst, w, _, _ in edges] == [(mid(2), round((0.8 * 0.5 + 0.2) / 1.5, 6))]
        assert set(edges[0][3]) == {b.node_id, d.node_id}

        # Dissociate at a: tombstones both slots it has seen; everyone converges to "no edge".
        await a.dissociate("notes", mid(1), mid(2), ack=AckLevel.ALL)
        assert all(r.edges("notes", mid(1)) == [] for r in c.repl.values())
        await a.forget("notes", mid(5), ack=AckLevel.ALL)
        assert all(r.get("notes", mid(5)) is None for r in c.repl.values())

        # Bad input is refused whole, naming the field; nothing is written.
        with pytest.raises(WriteError, match="vector"):
            await b.remember("notes", [{"content": "ok", "vector": vec(1)}, {"content": "x", "vector": [1.0]}])
        with pytest.raises(WriteError, match="unknown space"):
            await b.associate("nope", mid(1), mid(2), 0.5)
        await until(lambda: len({str(v) for v in digests(c, "notes").values()}) == 1)
        info = a.space_info("notes")
        assert sum(row.memories for row in info.shards) == 19
        assert all(row.lag == 0 and sorted(row.hosts) == ["n0", "n1", "n2"] for row in info.shards)
        assert [p.shard for p in info.placement] == [0, 1]


async def test_forward_from_non_host_and_ack_timeout(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with memnet_cluster(tmp_path, seed=2) as c:
        for i in range(3):
            await c.start(i, fault_injection=i != 1)
        await c.converged(3)
        a = c.repl[0]
        await a.create_space("one", DIM, shards=1, replicas=1)
        await until(lambda: all("one" in r.spaces and r.placement.get(("one", 0)) for r in c.repl.values()))
        [host] = a.placement[("one", 0)]
        hi = next(i for i, r in c.repl.items() if r.node_id == host)
        others = [i for i in c.repl if i != hi]
        writer = c.repl[others[0]]
        ids = await writer.remember("one", [{"id": mid(7), "content": "fwd", "vector": vec(7)}])
        assert ids == [mid(7)]
        assert writer.counters.forwards_out >= 1 and c.repl[hi].counters.forwards_in >= 1
        assert c.repl[hi].get("one", mid(7)).content == "fwd"
        with pytest.raises(ReplicationError, match="does not host"):
            writer.get("one", mid(7))

        # ack=all over 3 replicas with one host unreachable: a timeout naming who did not answer.
        await a.create_space("three", DIM, shards=1, replicas=3)
        await until(lambda: all(len(r.placement.get(("three", 0), [])) == 3 for r in c.repl.values()))
        with pytest.raises(FaultError, match="disabled"):
            c.repl[1].fault_drop(["n0"])  # not started with fault injection
        c.repl[0].fault_drop(["n2"])
        with pytest.raises(AckTimeout, match="n2"):
            await c.repl[0].remember("three", [{"content": "x", "vector": vec(1)}], ack=AckLevel.ALL)
        # quorum (2 of 3) still succeeds: n1 answers.
        await c.repl[0].remember("three", [{"content": "y", "vector": vec(2)}], ack=AckLevel.QUORUM)
        c.repl[0].fault_heal()


async def test_partition_and_heal_converges(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with memnet_cluster(tmp_path, seed=3) as c:
        for i in range(3):
            await c.start(i, fault_injection=True)
        await c.converged(3)
        a, b, d = c.repl[0], c.repl[1], c.repl[2]
        await a.create_space("p", DIM, shards=2, replicas=3)
        await until(lambda: all(len(r.placement.get(("p", 1), [])) == 3 for r in c.repl.values()))
        await a.remember("p", [{"id": mid(i), "content": f"base{i}", "vector": vec(i)} for i in range(10)],
                         ack=AckLevel.ALL)
        await a.associate("p", mid(1), mid(2), 0.5, 1.0, ack=AckLevel.ALL)

        # Cut n2 off on both sides (a drill does exactly this with `fault drop` on each agent).
        d.fault_drop(["n0", "n1"])
        a.fault_drop(["n2"])
        b.fault_drop(["n2"])
        await a.remember("p", [{"id": mid(100 + i), "content": "left", "vector": vec(100 + i)} for i in range(30)])
        await b.associate("p", mid(1), mid(2), 0.9, 1.0)  # concurrent reweight on one side ...
        await d.dissociate("p", mid(1), mid(2))  # ... and a dissociate of the same edge on the other
        await d.remember("p", [{"id": mid(200 + i), "content": "right", "vector": vec(200 + i)} for i in range(30)])
        assert d.get("p", mid(100)) is None and a.get("p", mid(200)) is None

        for r in c.repl.values():
            r.fault_heal()
        everything = [mid(i) for i in range(10)] + [mid(100 + i) for i in range(30)] + [mid(200 + i) for i in range(30)]
        await until(lambda: all(r.get("p", m) is not None for r in c.repl.values() for m in everything), 120)
        await until(lambda: len({str(v) for v in digests(c, "p").values()}) == 1, 60)
        # Add-wins: the reweight the dissociating side had not seen survives, alone.
        for r in c.repl.values():
            [(dst, w, conf, writers)] = r.edges("p", mid(1))
            assert (dst, w, writers) == (mid(2), 0.9, [b.node_id])


async def test_durable_before_ack_and_restart(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """Every acknowledged write is in SQLite when the ack returns, and a restarted peer still has it."""
    async with memnet_cluster(tmp_path, seed=4) as c:
        a = await c.start(0)
        b = await c.start(1)
        await c.converged(2)
        await a.create_space("d", DIM, shards=1, replicas=2)
        await until(lambda: len(b.placement.get(("d", 0), [])) == 2)

        store = c.nodes[1].store
        assert store is not None
        committed_before_ack: list[bool] = []
        real_append = store.append

        async def slow_append(changes):  # the disk is slow: the ack must still wait for it
            await trio.sleep(0.5)
            await real_append(changes)

        store.append = slow_append  # type: ignore[method-assign]
        for i in range(5):
            await a.remember("d", [{"id": mid(i), "content": str(i), "vector": vec(i)}], ack=AckLevel.ALL)
            row = await store.memory("d", mid(i))
            committed_before_ack.append(row is not None)
        assert committed_before_ack == [True] * 5
        store.append = real_append  # type: ignore[method-assign]

        ids = await b.remember("d", [{"content": f"b{i}", "vector": vec(50 + i)} for i in range(40)])
        await c.crash(1)
        b2 = await c.start(1)
        await until(lambda: b2.ready.is_set())
        assert all(b2.get("d", m) is not None for m in ids + [mid(i) for i in range(5)])
        await a.remember("d", [{"id": mid(99), "content": "later", "vector": vec(99)}])
        await until(lambda: b2.get("d", mid(99)) is not None)
    with Store.open(tmp_path / "n1") as s:
        assert s.memory_count("d", shard_of(mid(99), 1)) == 46


async def test_control_commands(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """The handlers behind ``space``/``remember``/``get``/``edges``/``fault`` on the control socket."""
    async with memnet_cluster(tmp_path, seed=5) as c:
        a = await c.start(0)
        b = await c.start(1)
        await c.converged(2)
        h = a.control_handlers()
        spaces = await h["space_create"](SpaceCreate(name="cli", dim=DIM, shards=1, replicas=2))
        assert [s.name for s in spaces.spaces] == ["cli"]
        with pytest.raises(CommandError, match="already exists"):
            await h["space_create"](SpaceCreate(name="cli", dim=DIM + 1))
        v = np.asarray(vec(1), dtype="<f4").tobytes()
        written = await h["remember"](MemoryRemember(space="cli", items=[
            MemoryItem(id=mid(1), content="one", vector=v), MemoryItem(id=mid(2), content="two", vector=v)],
            ack="all"))
        assert written.ids == [mid(1), mid(2)]
        with pytest.raises(CommandError, match="dimension mismatch"):
            await h["remember"](MemoryRemember(space="cli", items=[MemoryItem(content="x", vector=v[:8])]))
        # Implicit creation by a first write takes the vector's dimension.
        await h["remember"](MemoryRemember(space="fresh", items=[MemoryItem(content="x", vector=v[:8])]))
        assert a.spaces.get("fresh").dim == 2
        await h["associate"](EdgeAssociate(space="cli", src=mid(1), dst=mid(2), weight=0.25, ack="all"))
        hb = b.control_handlers()
        found = await hb["get"](MemoryGet(space="cli", mem_id=mid(2)))
        assert found.memory is not None and found.memory.content == "two" and found.memory.vector == v
        assert (await hb["get"](MemoryGet(space="cli", mem_id=mid(9)))).memory is None
        listed = await hb["edges"](MemoryEdges(space="cli", mem_id=mid(1)))
        assert [(e.dst, e.weight, e.writers) for e in listed.edges] == [(mid(2), 0.25, [a.node_id])]
        info = await hb["space_info"](SpaceInfo(name="cli"))
        assert info.space.dim == DIM and [r.memories for r in info.shards] == [2]
        assert {o.origin for o in info.shards[0].version_vector} == {a.node_id}
        with pytest.raises(CommandError, match="unknown space"):
            await hb["space_info"](SpaceInfo(name="nope"))
        with pytest.raises(CommandError, match="fault injection is disabled"):
            await hb["fault_drop"](FaultDrop(peers=["n0"]))
        assert {s.name for s in (await hb["space_list"](ApiSpaceList())).spaces} == {"cli", "fresh"}


async def test_new_hosts_catch_up_and_old_hosts_hand_off(autojump_clock: trio.testing.MockClock,
                                                          tmp_path: Path) -> None:
    """Members joining move shards (rendezvous): each new host catches up by anti-entropy, and the old
    host drops its copy only once the new host's version vector covers it -- nothing is lost."""
    async with memnet_cluster(tmp_path, seed=6) as c:
        a = await c.start(0)
        await c.start(1)
        await c.converged(2)
        await a.create_space("h", DIM, shards=8, replicas=1)
        ids = [mid(i) for i in range(80)]
        await a.remember("h", [{"id": m, "content": m.hex(), "vector": vec(i)} for i, m in enumerate(ids)])
        before = {k: list(v) for k, v in a.placement.items()}
        await c.start(2)
        await c.start(3)
        await c.converged(4)

        def settled() -> bool:
            views = [r.placement for r in c.repl.values()]
            if any(v != views[0] for v in views):
                return False
            for r in c.repl.values():
                mine = {k for k, hosts in r.placement.items() if r.node_id in hosts}
                if set(r.hosted) != mine:
                    return False
            return True

        await until(settled, 120)
        by_id = {r.node_id: r for r in c.repl.values()}
        for m in ids:
            [host] = a.placement[("h", shard_of(m, 8))]
            got = by_id[host].get("h", m)
            assert got is not None and got.content == m.hex()
        # Every shard that moved was dropped by its old host, from memory and from SQLite (a shard that
        # moved twice, to a newcomer and on to the next one, is dropped twice).
        moved = sum(before[k] != v for k, v in a.placement.items())
        assert sum(r.counters.shards_dropped for r in c.repl.values()) >= moved
        for i, r in c.repl.items():
            store = c.nodes[i].store
            assert store is not None
            assert set(await store.hosted_shards()) == set(r.hosted)


def test_fault_peer_resolution_and_filter() -> None:
    """Peers resolve by name, address or node-id prefix; inbound streams match by host only when no
    reachable member shares it (on one loopback address, dropping both ways is the drill's job)."""
    me = Peer(b"\x01" * 16, "me", ("127.0.0.1", 7000))
    b = Peer(b"\xab" * 16, "b", ("127.0.0.1", 7001))
    far = Peer(b"\xcd" * 16, "far", ("10.9.9.9", 7946))
    members = [me, b, far]
    assert resolve_peers(["b", "10.9.9.9:7946", "abababab"], members) == [b, far]
    with pytest.raises(FaultError, match="no member"):
        resolve_peers(["nobody"], members)
    with pytest.raises(FaultError, match="disabled"):
        Faults(False).drop([b], members)
    f = Faults(True)
    f.drop([b, far], members)
    assert f.drops(b.addr) and f.drops(far.addr)
    assert f.drops(("10.9.9.9", 55555))  # far's inbound TCP arrives from an ephemeral port
    assert not f.drops(("127.0.0.1", 55555))  # shared with us: cannot tell, not dropped
    assert not f.drops(me.addr)
    assert [p.name for p in f.heal([far], members)] == ["b"]
    assert not f.drops(("10.9.9.9", 55555))
    assert f.heal(None, members) == [] and not f.drops(b.addr)


@pytest.mark.parametrize("many_first", [False, True], ids=["one-shard-wins", "three-shards-win"])
async def test_conflicting_descriptors_resolve_and_writes_move(autojump_clock: trio.testing.MockClock,
                                                               tmp_path: Path, many_first: bool) -> None:
    """Two sides of a partition create one space with different shard counts and write to it. After the
    heal one descriptor wins everywhere and the losing side re-issues its writes where the winner places
    them: every memory is found by id routing on every peer."""
    async with memnet_cluster(tmp_path, seed=7) as c:
        a = await c.start(0, fault_injection=True)
        b = await c.start(1, fault_injection=True)
        await c.converged(2)
        a.fault_drop(["n1"])
        b.fault_drop(["n0"])
        # The earlier creation (smaller created HLC) wins; HLCs follow the wall clock, so wait a few ms.
        first, second = ((b, 3), (a, 1)) if many_first else ((a, 1), (b, 3))
        await first[0].create_space("x", DIM, shards=first[1], replicas=2)
        second[0].hlc.observe(first[0].hlc.peek() + (5 << 16))  # as if 5 ms later on the other side
        await second[0].create_space("x", DIM, shards=second[1], replicas=2)
        left = [mid(300 + i) for i in range(12)]
        right = [mid(400 + i) for i in range(12)]
        await a.remember("x", [{"id": m, "content": "a", "vector": vec(i)} for i, m in enumerate(left)])
        await b.remember("x", [{"id": m, "content": "b", "vector": vec(i)} for i, m in enumerate(right)])
        await a.associate("x", left[0], left[1], 0.5)
        await b.associate("x", right[0], right[1], 0.7)
        a.fault_heal()
        b.fault_heal()
        await until(lambda: a.spaces.get("x") == b.spaces.get("x"), 120)
        winner = a.spaces.get("x")
        assert winner is not None and winner.shards == first[1]

        def found_everywhere() -> bool:
            try:
                return all(r.get("x", m) is not None for r in (a, b) for m in left + right)
            except ReplicationError:
                return False

        await until(found_everywhere, 120)
        for r in (a, b):
            assert [dst for dst, *_ in r.edges("x", left[0])] == [left[1]]
            assert [dst for dst, *_ in r.edges("x", right[0])] == [right[1]]


async def test_peer_answering_with_an_unstorable_descriptor_does_not_stop_the_agent(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """A descriptor push-pull answer is bytes from the network: one whose ``created_hlc`` the store
    cannot hold is ignored, and the asking node keeps running (it used to raise OverflowError out of
    the descriptor task and take the agent down)."""
    async with memnet_cluster(tmp_path, seed=11) as c:
        a = await c.start(0)
        b = await c.start(1)
        await c.converged(2)
        evil = SpaceDescriptor("evil", DIM, 1, 2, "cosine", 2**63 + 1, b"\x07" * 16)

        async def hostile(src: Addr, msg: SpaceList) -> SpaceList:
            return SpaceList([evil])

        b._handlers[SpaceList] = hostile
        assert await a._send_spaces(b.node_id)
        assert a.spaces.get("evil") is None
        await trio.sleep(1.0)
        assert not c.stopped[0].is_set()
        await a.create_space("fine", DIM, replicas=2)


async def test_failed_commit_of_a_newly_hosted_shard_does_not_stop_the_agent(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """A shard newly placed on us is persisted by a background commit; if that commit fails (a full
    disk), the failure is logged and counted and the shard reloaded -- it must not escape the task and
    stop the agent."""
    async with memnet_cluster(tmp_path, seed=12) as c:
        a = await c.start(0)
        await c.converged(1)
        assert a.store is not None
        real_append = a.store.append
        failures = [1]

        async def failing_append(changes: object) -> None:
            if failures:
                failures.pop()
                raise OSError("disk full")
            await real_append(changes)  # type: ignore[arg-type]

        a.store.append = failing_append  # type: ignore[method-assign]
        await a.create_space("notes", DIM, replicas=1)
        await until(lambda: a.counters.commit_failures == 1 and ("notes", 0) in a.hosted)
        await trio.sleep(1.0)
        assert not c.stopped[0].is_set()
        assert await a.remember("notes", [{"id": mid(1), "content": "m", "vector": vec(1)}]) == [mid(1)]
        assert a.get("notes", mid(1)) is not None


async def test_an_error_inside_a_sync_round_fails_that_round_only(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error while absorbing a sync answer (a store failure, a bug) is logged and counts as
    a failed round, like the inbound handlers do; it must not escape the round's task and stop the agent."""
    import engramp2p.repl.service as service

    async with memnet_cluster(tmp_path, seed=13) as c:
        a = await c.start(0)
        b = await c.start(1)
        await c.converged(2)
        await a.create_space("notes", DIM, replicas=2)
        await until(lambda: ("notes", 0) in a.hosted and ("notes", 0) in b.hosted)

        real_absorb = service.absorb
        armed = [True]

        def broken(*args: object) -> object:
            if armed[0]:
                raise RuntimeError("boom")
            return real_absorb(*args)  # type: ignore[arg-type]

        # (not ``monkeypatch.undo()`` later: that would also undo ``store_on_the_loop``)
        monkeypatch.setattr(service, "absorb", broken)
        failed = a.counters.syncs_failed
        await a.sync_now()
        await until(lambda: a.counters.syncs_failed > failed)
        await trio.sleep(1.0)
        assert not c.stopped[0].is_set()
        armed[0] = False
        assert await b.remember("notes", [{"id": mid(1), "content": "m", "vector": vec(1)}],
                                ack=AckLevel.ALL) == [mid(1)]


async def test_forwarded_associate_is_not_retried_at_another_host_after_no_answer(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """An unanswered forward may have been committed: an associate re-sent to the second host would add
    a second writer's slot (and raise the edge's noisy-OR confidence), so it fails instead; a remember,
    idempotent by id, goes on to the next host."""
    async with memnet_cluster(tmp_path, seed=5) as c:
        for i in range(3):
            await c.start(i, fault_injection=True)
        await c.converged(3)
        await c.repl[0].create_space("two", DIM, shards=1, replicas=2)
        await until(lambda: all(len(r.placement.get(("two", 0), [])) == 2 for r in c.repl.values()))
        hosts = c.repl[0].placement[("two", 0)]
        [wi] = [i for i, r in c.repl.items() if r.node_id not in hosts]
        writer = c.repl[wi]
        host_names = [n for i, n in ((i, f"n{i}") for i in c.repl) if c.repl[i].node_id in hosts]
        writer.fault_drop(host_names)  # neither host answers
        before = writer.counters.forwards_out
        with pytest.raises(ReplicationError, match="may or may not have been applied"):
            await writer.associate("two", mid(1).hex(), mid(2).hex(), 0.5)
        assert writer.counters.forwards_out == before + 4  # one host asked 4 times (same req_id), not both
        before = writer.counters.forwards_out
        with pytest.raises(ReplicationError, match="no host of two/0 took the write"):
            await writer.remember("two", [{"id": mid(3), "content": "r", "vector": vec(3)}])
        assert writer.counters.forwards_out == before + 8  # idempotent: both hosts tried (4 times each)
        writer.fault_heal()

        # A host answers a re-sent forward (same forwarder and req_id) without applying it again.
        host = next(r for r in c.repl.values() if r.node_id == hosts[0])
        await host.remember("two", [{"id": mid(4), "content": "src", "vector": vec(4)}])
        fwd = ForwardWrite(77, "two", [Associate(mid(4), mid(5), 0.25, 0.5)], AckLevel.ONE, writer.node_id)
        first = await host._on_forward(("127.0.0.1", 1), fwd)
        again = await host._on_forward(("127.0.0.1", 2), fwd)
        assert first.ok and again == first
        [(_dst, _w, conf, writers)] = host.edges("two", mid(4))
        assert writers == [host.node_id] and conf == pytest.approx(0.5)
