"""``Node`` as a whole, on the in-memory network under MockClock: the production composition root (store,
keyring, driver, SWIM, control socket, persistence), with only the sockets replaced by ``memnet``."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from engramp2p.api.client import AsyncClient, ClientError, control_path
from engramp2p.api.messages import KeyResults, KeysInstall
from engramp2p.config import Config
from engramp2p.keyfile import read_key_file
from engramp2p.net.memnet import MemNet
from engramp2p.net.seal import generate_key
from engramp2p.node import HEAVY_MODULES, Node
from engramp2p.sansio import Addr
from engramp2p.store import DB_FILE, Store
from engramp2p.swim.messages import Suspect

ADDRS: list[Addr] = [(f"10.0.0.{i + 1}", 7946) for i in range(4)]
KEY = generate_key()


def _config(tmp: Path, i: int, seeds: list[Addr]) -> Config:
    from engramp2p.net.seal import encode_key

    return Config.default().with_flags(
        name=f"n{i}",
        data_dir=str(tmp / f"n{i}"),
        profile="local",
        join=[f"{h}:{p}" for h, p in seeds],
        key=encode_key(KEY),
    )


class Cluster:
    def __init__(self, nursery: trio.Nursery, net: MemNet, tmp: Path) -> None:
        self.nursery = nursery
        self.net = net
        self.tmp = tmp
        self.nodes: dict[int, Node] = {}

    async def start(self, i: int, *, seeds: list[Addr] | None = None, control: bool = False) -> Node:
        transport = self.net.endpoint(ADDRS[i], tcp_timeout=1.0)
        cfg = _config(self.tmp, i, [ADDRS[0]] if seeds is None and i else (seeds or []))
        node = Node(cfg, transport=transport, rng=random.Random(i), control=control)
        await self.nursery.start(node.run)
        self.nodes[i] = node
        return node

    async def crash(self, i: int) -> None:
        """A crashed process: its sockets vanish and its tasks stop, with no leave."""
        self.net.remove(ADDRS[i])
        node = self.nodes.pop(i)
        node.stop()
        await node.stopped.wait()  # the data directory's lock is free for the restart

    def states(self, i: int) -> dict[str, tuple[str, int]]:
        return {r.name: (r.state, r.incarnation) for r in self.nodes[i].member_rows()}


async def until(pred: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll ``pred`` in virtual time; fail if it does not hold within ``timeout`` virtual seconds."""
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.1)


async def test_nodes_join_fail_restart_and_leave(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemNet(seed=7, delay=0.002)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        c = Cluster(nursery, net, tmp_path)
        for i in range(4):
            await c.start(i)

        everyone = {f"n{i}" for i in range(4)}
        await until(lambda: all({n for n, (s, _) in c.states(i).items() if s == "alive"} == everyone for i in range(4)))

        # A crash is detected as a failure everywhere (no leave was sent).
        inc_before = c.states(0)["n3"][1]
        await c.crash(3)
        await until(lambda: all(c.states(i)["n3"][0] == "failed" for i in range(3)))

        # Restarted with the same data directory: same node id, incarnation stored + 1, alive again.
        node_id = c.nodes[0].member_rows()[0].node_id
        restarted = await c.start(3)
        assert restarted.swim is not None and restarted.swim.incarnation > inc_before
        await until(lambda: all(c.states(i)["n3"] == ("alive", restarted.swim.incarnation) for i in range(3)))
        assert c.nodes[0].member_rows()[0].node_id == node_id

        # A graceful leave is seen as "left", not "failed".
        assert await c.nodes[2].leave()
        c.nodes[2].stop()
        await until(lambda: all(c.states(i)["n2"][0] == "left" for i in (0, 1, 3)))
        nursery.cancel_scope.cancel()


async def test_incarnation_is_persisted_across_restarts(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemNet(seed=1)
    incarnations = []
    for _ in range(3):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            node = await Cluster(nursery, net, tmp_path).start(0)
            assert node.swim is not None
            incarnations.append(node.swim.incarnation)
            node.stop()
            nursery.cancel_scope.cancel()
        net.remove(ADDRS[0])
    assert incarnations == [1, 2, 3]
    with Store.open(tmp_path / "n0") as store:
        assert store.load_incarnation() == 3


def _disk_incarnation(data_dir: Path) -> int:
    """Read the identity row beside the running store (WAL lets a reader in)."""
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return int(conn.execute("SELECT incarnation FROM identity").fetchone()[0])
    finally:
        conn.close()


async def test_refuted_incarnation_is_persisted(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """A suspicion about us is refuted with a higher incarnation, which is on disk before a restart."""
    net = MemNet(seed=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        node = await Cluster(nursery, net, tmp_path).start(0)
        assert node.swim is not None and node.swim.incarnation == 1
        liar = net.endpoint(ADDRS[3])
        await liar.send_packet(ADDRS[0], [Suspect(41, node.node_id, bytes(16))])
        await until(lambda: node.swim is not None and node.swim.incarnation == 42)
        assert node.info().counters["refutations"] == 1
        await until(lambda: _disk_incarnation(tmp_path / "n0") == 42)  # written on the change, not at exit
        node.stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
    with Store.open(tmp_path / "n0") as store:
        assert store.load_incarnation() == 42


async def test_control_socket_commands(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemNet(seed=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        c = Cluster(nursery, net, tmp_path)
        a = await c.start(0, control=True)
        await c.start(1)
        await until(lambda: len([r for r in a.member_rows() if r.state == "alive"]) == 2)
        async with AsyncClient(control_path(tmp_path / "n0")) as client:
            rows = await client.members()
            assert [r.name for r in rows] == ["n0", "n1"]
            assert {r.state for r in rows} == {"alive"}
            assert rows[1].roles == ["storage"]
            assert [r.name for r in await client.members("failed")] == []
            info = await client.info()
            assert info.name == "n0" and info.health == 0
            for counter in ("packets_in", "packets_out", "auth_failures", "decode_failures", "suspicions",
                            "refutations", "replays"):
                assert counter in info.counters
            assert info.counters["packets_in"] > 0
            assert set(info.loop_lag_ms) >= {"p50_ms", "p99_ms", "max_ms"}
            assert not {"numba", "pynndescent"} & set(info.heavy_modules)
            assert set(info.heavy_modules) <= set(HEAVY_MODULES)

            # Key rotation spreads to the member over the (memnet) stream path.
            new = generate_key()
            result = await client.call(KeysInstall(key=new))
            assert isinstance(result, KeyResults)
            assert [(m.name, m.ok) for m in result.members] == [("n0", True), ("n1", True)]
            assert all(new in m.keys for m in result.members)
            listed = await client.keys_list()
            assert listed.primary == KEY and set(listed.keys) == {KEY, new}
            assert [m.name for m in listed.members] == ["n1"] and set(listed.members[0].keys) == {KEY, new}
            with pytest.raises(ClientError, match="primary"):
                await client.keys_remove(KEY)
            await client.keys_use(new)
            await client.keys_remove(KEY)
            assert c.nodes[1].keyring is not None and c.nodes[1].keyring.keys() == [new]
            # The keyring file follows, so a restart keeps the rotation.
            await until(lambda: read_key_file(tmp_path / "n0" / "keyring.key") == [new])
            await until(lambda: read_key_file(tmp_path / "n1" / "keyring.key") == [new])

            with pytest.raises(ClientError, match="could not join"):
                await client.join(["10.9.9.9:7946"])
        nursery.cancel_scope.cancel()
