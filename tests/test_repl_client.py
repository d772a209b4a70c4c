"""The replication client surface without a cluster: control messages and their bounds, the clients'
argument conversion and batching, the CLI (exit codes, JSON, JSONL batches) against a fake agent on a
real control socket, and the `top` placement panel rendered headless."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from engramp2p.api import messages as api
from engramp2p.api.client import (
    AsyncClient,
    ClientError,
    batches,
    item_size,
    memory_id,
    memory_item,
    vector_bytes,
)
from engramp2p.api.server import CommandError, ControlServer
from engramp2p.cli import main as cli_main
from engramp2p.crdt.entry import Dot
from engramp2p.net.wire import WireError
from engramp2p.ui.agent_source import AgentSource
from engramp2p.ui.model import TopModel
from engramp2p.ui.placement import fold, host_sync
from engramp2p.ui.render import frame, placement_panel
from engramp2p.ui.shapes import Info, MemberRow, NodeRef, Snapshot

ME = b"\x01" * 16
PEER = b"\x02" * 16


# ---------------------------------------------------------------------------------------------------
# messages


def test_requests_round_trip_and_refuse_out_of_bound_fields() -> None:
    item = api.MemoryItem(id=b"i" * 16, content="hello", vector=struct.pack("<2f", 1, 2), meta={"k": "v"})
    req = api.MemoryRemember(space="s", items=[item], ack="quorum", id=7)
    assert api.decode_request(api.encode_request(req)) == req
    enc = msgspec.msgpack.Encoder()
    hostile = [
        {"cmd": "remember", "space": "s", "items": []},  # empty batch
        {"cmd": "remember", "space": "S!", "items": [{"vector": b"\0" * 4}]},  # bad space name
        {"cmd": "remember", "space": "s", "items": [{"vector": b"\0" * 4, "id": b"x" * 15}]},
        {"cmd": "remember", "space": "s", "items": [{"vector": b"\0" * 4}] * (api.MAX_BATCH + 1)},
        {"cmd": "remember", "space": "s", "items": [{"vector": b"\0" * 4, "confidence": 0.0}]},
        {"cmd": "associate", "space": "s", "src": b"a" * 16, "dst": b"b" * 16, "weight": 1.5},
        {"cmd": "associate", "space": "s", "src": b"a" * 16, "dst": b"b" * 16, "weight": 0.5, "x": 1},
        {"cmd": "forget", "space": "s", "mem_id": b"a" * 16, "ack": "most"},
        {"cmd": "fault_drop", "peers": []},
        {"cmd": "space_create", "name": "s", "dim": 0},
    ]
    for obj in hostile:
        with pytest.raises(WireError):
            api.decode_request(enc.encode(obj))


def test_results_round_trip() -> None:
    status = api.SpaceStatus(
        space=api.SpaceRow(name="s", dim=4, shards=2, replicas=2, creator=ME),
        shards=[api.ShardRow(shard=1, hosts=["a", "b"], memories=3, edges=1, digest=b"d" * 16,
                             version_vector=[api.VVRow(origin=ME, seq=4)], lag=0, peer_lag={"b": 2})],
        placement=[api.PlacementRow(shard=0, hosts=["b", "c"])],
    )
    for result in (status, api.Written(dots=[Dot(ME, 3)]), api.MemoryFound(memory=None),
                   api.EdgeList(src=b"a" * 16, edges=[api.EdgeRow(dst=b"b" * 16, weight=0.5, confidence=1.0,
                                                                   writers=[ME])])):
        resp = api.Response(id=1, ok=True, result=result)
        assert api.decode_response(api.encode_response(resp)) == resp


# ---------------------------------------------------------------------------------------------------
# client-side conversion and batching


def test_argument_conversion() -> None:
    assert memory_id("ab" * 16) == b"\xab" * 16 and memory_id(b"x" * 16) == b"x" * 16
    for bad in ("ab", "zz" * 16, b"x" * 15, 5):
        with pytest.raises(ClientError):
            memory_id(bad)  # type: ignore[arg-type]
    assert vector_bytes([1, 2.5]) == struct.pack("<2f", 1, 2.5)
    assert vector_bytes(np.array([1.0, 2.0])) == struct.pack("<2f", 1, 2)
    assert vector_bytes(b"\0" * 8) == b"\0" * 8
    assert vector_bytes([1e39]) == struct.pack("<f", float("inf"))  # the agent refuses it, naming the field
    for bad in ("[1,2]", [True], [[1.0]], b"\0" * 3, np.zeros((2, 2)), {"a": 1}):
        with pytest.raises(ClientError):
            vector_bytes(bad)
    with pytest.raises(ClientError, match="item 4: confidence"):
        memory_item({"vector": [1.0], "confidence": 2}, 4)
    with pytest.raises(ClientError, match="unknown field"):
        memory_item({"vector": [1.0], "colour": "red"})


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), max_size=60),
    count=st.integers(1, 20),
    budget=st.integers(1, 20_000),
)
def test_batches_keep_order_and_respect_count_and_budget(sizes: list[int], count: int, budget: int) -> None:
    items = [{"id": i.to_bytes(16, "big"), "content": "x" * n, "vector": [0.0]} for i, n in enumerate(sizes)]
    out = list(batches(items, count, budget))
    flat = [it.id for b in out for it in b]
    assert flat == [i.to_bytes(16, "big") for i in range(len(sizes))]
    for b in out:
        assert 1 <= len(b) <= count
        assert len(b) == 1 or sum(item_size(it) for it in b) <= budget


def test_default_batch_of_384d_memories_fits_a_request_frame() -> None:
    from engramp2p.api.server import MAX_REQUEST

    items = [{"content": "c" * 200, "vector": np.ones(384, dtype=np.float32), "meta": {"k": "v" * 50}}] * 2000
    for b in batches(items):
        assert len(api.encode_request(api.MemoryRemember(space="s", items=b))) < MAX_REQUEST


# ---------------------------------------------------------------------------------------------------
# a fake agent: just enough state to check what the clients and the CLI send and print


class FakeAgent:
    def __init__(self) -> None:
        self.spaces: dict[str, api.SpaceRow] = {}
        self.memories: dict[bytes, api.MemoryItem] = {}
        self.edges: dict[tuple[bytes, bytes], float] = {}
        self.requests: list[api.AnyRequest] = []
        self.dropped: list[str] = []
        self.seq = 0

    def _dot(self) -> Dot:
        self.seq += 1
        return Dot(ME, self.seq)

    def _space(self, name: str) -> api.SpaceRow:
        if name not in self.spaces:
            raise CommandError(f"space: unknown space {name!r}")
        return self.spaces[name]

    async def handle(self, req: api.AnyRequest) -> api.AnyResult | None:
        self.requests.append(req)
        if isinstance(req, api.SpaceCreate):
            row = api.SpaceRow(name=req.name, dim=req.dim, shards=req.shards, replicas=req.replicas, creator=ME)
            self.spaces.setdefault(req.name, row)
            return api.Spaces(spaces=[self.spaces[req.name]])
        if isinstance(req, api.SpaceList):
            return api.Spaces(spaces=list(self.spaces.values()))
        if isinstance(req, api.SpaceInfo):
            sp = self._space(req.name)
            return api.SpaceStatus(space=sp, shards=[api.ShardRow(
                shard=0, hosts=["me", "peer"], memories=len(self.memories), edges=len(self.edges),
                digest=b"\xaa" * 16, version_vector=[api.VVRow(origin=ME, seq=self.seq)])],
                placement=[api.PlacementRow(shard=s, hosts=["me", "peer"]) for s in range(sp.shards)])
        if isinstance(req, api.MemoryRemember):
            sp = self._space(req.space)
            ids = []
            for n, item in enumerate(req.items):
                if len(item.vector) != 4 * sp.dim:
                    raise CommandError(f"item {n}: vector: dimension mismatch")
            for item in req.items:
                mid = item.id or (10**6 + self.seq + len(ids)).to_bytes(16, "big")
                self.memories[mid] = item
                ids.append(mid)
            return api.Written(dots=[self._dot() for _ in ids], ids=ids)
        if isinstance(req, api.EdgeAssociate):
            self.edges[(req.src, req.dst)] = req.weight
            return api.Written(dots=[self._dot()])
        if isinstance(req, api.EdgeDissociate | api.EdgeRetract):
            self.edges.pop((req.src, req.dst), None)
            return api.Written(dots=[self._dot()])
        if isinstance(req, api.MemoryForget):
            self.memories.pop(req.mem_id, None)
            return api.Written(dots=[self._dot()])
        if isinstance(req, api.MemoryGet):
            m = self.memories.get(req.mem_id)
            rec = None if m is None else api.MemoryRecord(id=req.mem_id, content=m.content, vector=m.vector,
                                                          confidence=m.confidence, meta=m.meta)
            return api.MemoryFound(memory=rec)
        if isinstance(req, api.MemoryEdges):
            rows = [api.EdgeRow(dst=d, weight=w, confidence=1.0, writers=[ME])
                    for (s, d), w in sorted(self.edges.items()) if s == req.mem_id]
            return api.EdgeList(src=req.mem_id, edges=rows)
        if isinstance(req, api.FaultDrop):
            self.dropped = sorted(set(self.dropped) | set(req.peers))
        elif isinstance(req, api.FaultHeal):
            self.dropped = [p for p in self.dropped if req.peers and p not in req.peers]
        else:
            raise CommandError("unexpected")
        return api.FaultState(dropped=[api.FaultPeer(name=p, node_id=PEER, addr="127.0.0.1:1")
                                       for p in self.dropped])


TAGS = ["space_create", "space_list", "space_info", "remember", "associate", "dissociate", "retract",
        "forget", "get", "edges", "fault_drop", "fault_heal"]


@pytest.fixture
async def agent(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[tuple[FakeAgent, Path]]:
    fake = FakeAgent()
    srv = ControlServer.for_data_dir(tmp_path)
    for tag in TAGS:
        srv.register(tag, fake.handle)
    await nursery.start(srv.serve)
    yield fake, tmp_path


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    def main() -> int:
        try:
            return cli_main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            return int(exc.code or 0)

    code = await trio.to_thread.run_sync(main)
    out, err = capsys.readouterr()
    return code, out, err


async def test_async_client_methods(agent: tuple[FakeAgent, Path]) -> None:
    fake, d = agent
    async with AsyncClient.for_data_dir(d) as c:
        row = await c.space_create("s", 2, shards=3, replicas=2)
        assert (row.name, row.dim, row.shards) == ("s", 2, 3)
        assert [s.name for s in await c.space_list()] == ["s"]
        a = await c.remember("s", [1.0, 2.0], "first", meta={"k": "v"}, ack="all")
        ids = await c.remember_batch("s", [{"vector": [0.5, 0.5], "content": str(i)} for i in range(600)],
                                     batch=256)
        assert len(ids) == 600 and [len(r.items) for r in fake.requests if isinstance(r, api.MemoryRemember)] == [
            1, 256, 256, 88]
        dot = await c.associate("s", a, ids[0], 0.25, 0.5)
        assert dot.writer == ME
        assert [e.dst for e in await c.edges("s", a.hex())] == [ids[0]]
        await c.dissociate("s", a, ids[0])
        assert await c.edges("s", a) == []
        got = await c.get("s", a)
        assert got is not None and got.content == "first" and got.meta == {"k": "v"}
        await c.forget("s", a)
        assert await c.get("s", a) is None
        assert [p.name for p in await c.fault_drop(["peer"])] == ["peer"]
        assert await c.fault_heal() == []
        status = await c.space_info("s")
        assert status.shards[0].memories == 600
        with pytest.raises(ClientError, match="unknown space"):
            await c.space_info("nope")
        with pytest.raises(ClientError, match="item 0: vector: dimension mismatch"):
            await c.remember_batch("s", [{"vector": [1.0]}])


async def test_cli_space_and_memory_commands(agent: tuple[FakeAgent, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fake, d = agent
    dd = ["--data-dir", str(d)]
    code, out, _ = await run_cli(capsys, "space", "create", "s", "--dim", "2", "--shards", "2", "--replicas", "2",
                                 *dd)
    assert code == 0 and "Space s: dim 2, 2 shard(s)" in out
    code, out, _ = await run_cli(capsys, "space", "list", "--json", *dd)
    assert json.loads(out)[0]["name"] == "s"

    mid = "ab" * 16
    code, out, _ = await run_cli(capsys, "remember", "--space", "s", "hello", "--vector", "[0.5, 1]",
                                 "--meta", "k=v", "--id", mid, "--ack", "quorum", *dd)
    assert code == 0 and out.strip() == mid
    sent = fake.requests[-1]
    assert isinstance(sent, api.MemoryRemember) and sent.ack == "quorum" and sent.items[0].meta == {"k": "v"}

    npy = tmp_path / "v.npy"
    np.save(npy, np.array([1.0, 2.0], dtype=np.float32))
    code, out, _ = await run_cli(capsys, "remember", "--space", "s", "--vector", str(npy), *dd)
    assert code == 0 and len(out.strip()) == 32

    code, out, _ = await run_cli(capsys, "get", mid, "--space", "s", "--json", *dd)
    assert code == 0 and json.loads(out) == {"id": mid, "content": "hello", "vector": [0.5, 1.0],
                                             "confidence": 1.0, "meta": {"k": "v"}}
    dst = "cd" * 16
    code, out, _ = await run_cli(capsys, "associate", mid, dst, "--space", "s", "--weight", "0.75", *dd)
    assert code == 0 and "weight 0.75" in out
    code, out, _ = await run_cli(capsys, "edges", mid, "--space", "s", "--json", *dd)
    assert json.loads(out) == [{"dst": dst, "weight": 0.75, "confidence": 1.0, "writers": [ME.hex()]}]
    code, out, _ = await run_cli(capsys, "dissociate", mid, dst, "--space", "s", *dd)
    assert code == 0 and "dissociated" in out
    code, out, _ = await run_cli(capsys, "space", "info", "s", "--json", *dd)
    info = json.loads(out)
    assert info["shards"][0]["digest"] == "aa" * 16 and info["shards"][0]["version_vector"] == {ME.hex(): 4}
    assert [p["shard"] for p in info["placement"]] == [0, 1]
    code, out, _ = await run_cli(capsys, "forget", mid, "--space", "s", *dd)
    assert code == 0
    code, _, err = await run_cli(capsys, "get", mid, "--space", "s", *dd)
    assert code == 1 and err.count("\n") == 1 and "no memory" in err


async def test_cli_errors_are_one_line_with_the_right_code(agent: tuple[FakeAgent, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, d = agent
    dd = ["--data-dir", str(d)]
    cases = [
        (2, ["remember", "--space", "s", "--vector", "[1, 2"]),          # malformed JSON
        (2, ["remember", "--space", "s", "x"]),                         # no vector
        (2, ["get", "xyz", "--space", "s"]),                             # bad id
        (2, ["associate", "ab" * 16, "cd" * 16, "--space", "s", "--weight", "2"]),
        (1, ["space", "info", "nope"]),                                  # refused by the agent
        (1, ["remember", "--space", "nope", "--vector", "[1, 2]"]),
    ]
    for code, argv in cases:
        got, _, err = await run_cli(capsys, *argv, *dd)
        assert got == code, (argv, err)
        if code == 1:
            assert err.count("\n") == 1, err


async def test_cli_remember_file_batches_and_names_a_bad_line(agent: tuple[FakeAgent, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake, d = agent
    dd = ["--data-dir", str(d)]
    await run_cli(capsys, "space", "create", "s", "--dim", "2", *dd)
    good = tmp_path / "good.jsonl"
    lines = [json.dumps({"id": f"{i:032x}", "content": f"m{i}", "vector": [i, 1], "confidence": 0.5,
                         "meta": {"n": str(i)}}) for i in range(700)]
    good.write_text("\n".join(lines[:350]) + "\n\n" + "\n".join(lines[350:]) + "\n")
    code, out, _ = await run_cli(capsys, "remember", "--space", "s", "--file", str(good), "--batch", "300", *dd)
    assert code == 0 and "Remembered 700 memories" in out
    assert [len(r.items) for r in fake.requests if isinstance(r, api.MemoryRemember)] == [300, 300, 100]
    assert fake.memories[(699).to_bytes(16, "big")].meta == {"n": "699"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:5] + ['{"content": "no vector"}'] + lines[5:8]) + "\n")
    code, _, err = await run_cli(capsys, "remember", "--space", "s", "--file", str(bad), "--batch", "2", *dd)
    assert code == 2 and f"{bad}:6: vector: missing" in err and err.count("\n") == 1
    code, _, err = await run_cli(capsys, "remember", "--space", "s", "--file", str(good), "--vector", "[1]", *dd)
    assert code == 2


async def test_cli_fault_commands(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, d = agent
    dd = ["--data-dir", str(d)]
    code, out, _ = await run_cli(capsys, "fault", "drop", "a1", "a2", *dd)
    assert code == 0 and "a1" in out and "a2" in out
    code, out, _ = await run_cli(capsys, "fault", "heal", "a1", "--json", *dd)
    assert [p["name"] for p in json.loads(out)] == ["a2"]
    code, out, _ = await run_cli(capsys, "fault", "heal", *dd)
    assert code == 0 and "nobody" in out


# ---------------------------------------------------------------------------------------------------
# `top`: the placement panel


def _status(peer_lag: dict[str, int], lag: int = 0) -> api.SpaceStatus:
    return api.SpaceStatus(
        space=api.SpaceRow(name="mem", dim=4, shards=3, replicas=2),
        shards=[api.ShardRow(shard=0, hosts=["me", "b"], memories=1, edges=0, digest=b"", version_vector=[],
                             lag=lag, peer_lag=peer_lag)],
        placement=[api.PlacementRow(shard=0, hosts=["me", "b"]), api.PlacementRow(shard=1, hosts=["b", "c"]),
                   api.PlacementRow(shard=2, hosts=["c", "me"])],
    )


def test_placement_fold_gives_each_host_a_sync_state() -> None:
    rows, dropped = fold([_status({"b": 3}, lag=0)], {"me": "alive", "b": "alive", "c": "dead"}, "me")
    assert dropped == 0
    cells = {(r.shard, c.host): c.sync for r in rows for c in r.hosts}
    assert cells == {(0, "me"): "synced", (0, "b"): "behind", (1, "b"): "unknown", (1, "c"): "down",
                     (2, "c"): "down", (2, "me"): "unknown"}
    assert [r.hosted for r in rows] == [True, False, False]
    assert host_sync("me", alive=True, me=True, row={"lag": 0, "quarantined": [b"x"]}) == ("fork", None)
    assert host_sync("me", alive=True, me=True, row={"lag": 4}) == ("behind", 4)


def _render(rows: Any, width: int, height: int) -> str:
    members = tuple(MemberRow(name=n, node_id=(n.encode().hex() * 16)[:32], addr="127.0.0.1:1", state=s,
                              incarnation=1) for n, s in (("me", "alive"), ("b", "alive"), ("c", "dead")))
    info = Info(node=NodeRef(name="me", node_id=members[0].node_id, addr="x"), health_score=0)
    model = TopModel(target="t")
    model.apply_snapshot(0.0, Snapshot(members=members, info=info, placement=rows))
    console = Console(file=io.StringIO(), width=width, height=height, record=True, color_system=None)
    console.print(frame(model.view(1.0), width, height))
    return console.export_text()


def test_placement_panel_renders_beside_topology_and_degrades() -> None:
    rows, _ = fold([_status({"b": 0})], {"me": "alive", "b": "alive", "c": "dead"}, "me")
    wide = _render(rows, 120, 32)
    assert "placement" in wide and "topology" in wide and "mem/0*" in wide and "A me*" in wide
    assert "placement" not in _render((), 120, 32)  # no spaces: no panel, topology keeps the column
    assert "placement" not in _render(rows, 80, 24)  # narrow: the ring line instead of side panels
    many = tuple(msgspec.structs.replace(rows[0], shard=i) for i in range(200))
    short = _render(many, 120, 30)
    assert "more shards" in short
    view = TopModel().view(0.0)
    assert placement_panel(view, 30, 10) is None


async def _members(req: api.AnyRequest) -> api.AnyResult | None:
    return api.MemberList(members=[
        api.MemberRow(name="me", node_id=ME, addr="127.0.0.1:1", state="alive", incarnation=1),
        api.MemberRow(name="peer", node_id=PEER, addr="127.0.0.1:2", state="failed", incarnation=2),
    ])


async def _info(req: api.AnyRequest) -> api.AnyResult | None:
    return api.NodeInfo(name="me", node_id=ME, addr="127.0.0.1:1", health=0, uptime_s=1.0)


@pytest.mark.parametrize("with_spaces", [True, False])
async def test_agent_source_polls_placement_when_the_agent_serves_spaces(
    tmp_path: Path, nursery: trio.Nursery, with_spaces: bool
) -> None:
    fake = FakeAgent()
    srv = ControlServer.for_data_dir(tmp_path)
    srv.register("members", _members)
    srv.register("info", _info)
    if with_spaces:
        for tag in TAGS:
            srv.register(tag, fake.handle)
        await fake.handle(api.SpaceCreate(name="s", dim=2, shards=2, replicas=2))
    await nursery.start(srv.serve)
    source = AgentSource(srv.path)
    try:
        snap = await source.snapshot()
    finally:
        await source.aclose()
    assert [m.name for m in snap.members] == ["me", "peer"]
    if not with_spaces:
        assert snap.placement == ()  # an agent without replication: no panel, not an outage
        return
    assert [(r.space, r.shard, r.hosted) for r in snap.placement] == [("s", 0, True), ("s", 1, False)]
    assert {c.host: c.sync for c in snap.placement[0].hosts} == {"me": "synced", "peer": "down"}
