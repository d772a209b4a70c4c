"""The control socket: round trips with both clients, mode 0600, clear errors, bounded frames, events."""

from __future__ import annotations

import os
import socket as _stdsocket
import stat
import struct
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import msgspec
import pytest
import trio

from engramp2p.api import AgentNotRunning, AsyncClient, Client, ClientError
from engramp2p.api.messages import (
    AnyRequest,
    AnyResult,
    Event,
    Join,
    MemberList,
    MemberRow,
    Members,
    NodeInfo,
    decode_response,
)
from engramp2p.api.server import AgentAlreadyRunning, CommandError, ControlServer
from engramp2p.net.framing import frame, read_frame

GUARD = 10.0
NODE = b"n" * 16


def _info() -> NodeInfo:
    return NodeInfo(
        name="n1", node_id=NODE, addr="127.0.0.1:7946", health=0, uptime_s=1.5, counters={"packets_in": 3}
    )


async def info_handler(req: AnyRequest) -> AnyResult | None:
    return _info()


async def members_handler(req: AnyRequest) -> AnyResult | None:
    assert isinstance(req, Members)
    rows = [
        MemberRow(name="n1", node_id=NODE, addr="127.0.0.1:7946", state="alive", incarnation=1),
        MemberRow(name="n2", node_id=b"m" * 16, addr="127.0.0.1:7947", state="suspect", incarnation=4),
    ]
    return MemberList(members=[r for r in rows if req.status in (None, r.state)])


async def join_handler(req: AnyRequest) -> AnyResult | None:
    assert isinstance(req, Join)
    if "bad:1" in req.addrs:
        raise CommandError("could not reach bad:1:\nconnection refused")
    return None


async def leave_handler(req: AnyRequest) -> AnyResult | None:
    raise RuntimeError("boom")


@pytest.fixture
async def server(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[ControlServer]:
    srv = ControlServer.for_data_dir(tmp_path)
    srv.register("info", info_handler)
    srv.register("members", members_handler)
    srv.register("join", join_handler)
    srv.register("leave", leave_handler)
    await nursery.start(srv.serve)
    yield srv


async def test_socket_is_private(server: ControlServer) -> None:
    mode = server.path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_async_client_round_trip(server: ControlServer) -> None:
    with trio.fail_after(GUARD):
        async with AsyncClient(server.path) as client:
            assert await client.info() == _info()
            assert [m.name for m in await client.members()] == ["n1", "n2"]
            assert [m.name for m in await client.members(status="suspect")] == ["n2"]
            await client.join(["127.0.0.1:7000"])
            with pytest.raises(ClientError, match=r"^could not reach bad:1: connection refused$"):
                await client.join(["bad:1"])
            with pytest.raises(ClientError, match="internal error: RuntimeError: boom"):
                await client.leave()
            with pytest.raises(ClientError, match="does not support 'keys_list'"):
                await client.keys_list()
            assert await client.info() == _info()  # still serving after the failures
    assert server.stats["errors"] == 1


async def test_sync_client_round_trip(server: ControlServer) -> None:
    def use() -> tuple[NodeInfo, list[str]]:
        with Client(server.path, timeout=GUARD) as client:
            info = client.info()
            names = [m.name for m in client.members()]
            with pytest.raises(ClientError, match="could not reach"):
                client.join(["bad:1"])
            return info, names

    with trio.fail_after(GUARD):
        info, names = await trio.to_thread.run_sync(use)
    assert info == _info() and names == ["n1", "n2"]


async def test_missing_agent_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    expected = f"no agent running at {path} (is 'engramp2p agent' started?)"
    with pytest.raises(AgentNotRunning) as info:
        Client(path).info()
    assert str(info.value) == expected
    with pytest.raises(AgentNotRunning):
        await AsyncClient(path).info()
    # A socket file left behind by a dead agent: connection refused, the same message.
    stale = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(AgentNotRunning) as info:
        Client.for_data_dir(tmp_path).members()
    assert str(info.value) == expected
    # ... and a new agent takes the stale socket over.
    async with trio.open_nursery() as nursery:
        srv = ControlServer(path)
        srv.register("info", info_handler)
        await nursery.start(srv.serve)
        with trio.fail_after(GUARD):
            assert await AsyncClient(path).info() == _info()
        with pytest.raises(AgentAlreadyRunning):
            await ControlServer(path).serve()
        nursery.cancel_scope.cancel()
    assert not path.exists()  # removed on shutdown


async def test_bad_frames_get_an_error_and_never_crash(server: ControlServer) -> None:
    with trio.fail_after(GUARD):
        stream = await trio.open_unix_socket(str(server.path))
        async with stream:
            await stream.send_all(frame(b"\xc1not msgpack"))
            resp = decode_response(await read_frame(stream) or b"")
            assert not resp.ok and "bad request" in resp.error
            await stream.send_all(frame(b"\x81\xa3cmd\xa4nope"))  # {"cmd": "nope"}
            resp = decode_response(await read_frame(stream) or b"")
            assert not resp.ok and "nope" in resp.error
            await stream.send_all(frame(msgspec.msgpack.encode({"cmd": "info", "id": 5, "extra": 1})))
            assert not decode_response(await read_frame(stream) or b"").ok
        stream = await trio.open_unix_socket(str(server.path))
        async with stream:
            await stream.send_all(struct.pack(">I", server.max_request + 1))
            resp = decode_response(await read_frame(stream) or b"")
            assert resp.error == "request frame too large"
            assert await read_frame(stream) is None  # and the server hung up
        async with AsyncClient(server.path) as client:
            assert await client.info() == _info()
    assert server.stats["bad_requests"] == 4


async def test_event_stream(server: ControlServer) -> None:
    def event(seq: int) -> Event:
        return Event(seq=seq, at_ms=1000 + seq, type="member_join", node=NODE, name="n1", detail=f"e{seq}")

    server.publish(event(1))  # history: a late subscriber still sees it
    got: list[Event] = []
    with trio.fail_after(GUARD):
        async with aclosing(AsyncClient(server.path).events()) as events:
            async for ev in events:
                got.append(ev)
                if ev.seq == 1:  # subscribed (the history came first): publish more
                    for seq in (2, 3):
                        server.publish(event(seq))
                if ev.seq == 3:
                    break
        while server.subscribers:  # the server notices the hang-up
            await trio.sleep(0.001)
    assert got == [event(1), event(2), event(3)]


async def test_sync_event_stream_and_slow_subscriber(tmp_path: Path, nursery: trio.Nursery) -> None:
    server = ControlServer(tmp_path / "c.sock", subscriber_queue=4, history=2)
    await nursery.start(server.serve)
    for seq in range(1, 4):
        server.publish(Event(seq=seq, at_ms=seq, type="t"))
    subscribed = trio.Event()
    token = trio.lowlevel.current_trio_token()
    result: list[list[int]] = []

    def consume() -> list[int]:
        seqs = []
        for ev in Client(server.path, timeout=GUARD).events():
            seqs.append(ev.seq)
            if len(seqs) == 1:
                trio.from_thread.run_sync(subscribed.set, trio_token=token)
            if ev.seq == 999:
                return seqs
        return seqs

    async def run() -> None:
        result.append(await trio.to_thread.run_sync(consume))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as inner:
            inner.start_soon(run)
            await subscribed.wait()
            # A burst with no checkpoint: the subscriber's queue fills, publish must drop, not block.
            for seq in range(4, 51):
                server.publish(Event(seq=seq, at_ms=seq, type="t"))
            while not result:  # poll until the stream has drained and a final event got through
                server.publish(Event(seq=999, at_ms=999, type="t"))
                await trio.sleep(0.01)
    seqs = result[0]
    assert seqs[:2] == [2, 3]  # the history holds the last two
    assert seqs[-1] == 999 and seqs == sorted(seqs)
    assert server.stats["events_dropped"] > 0
    assert len([s for s in seqs if 4 <= s <= 50]) <= 5  # the queue, plus one handed to a waiting sender


async def test_frames_are_size_checked_on_the_client(tmp_path: Path, nursery: trio.Nursery) -> None:
    path = tmp_path / "fake.sock"
    listener = trio.socket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(1)

    async def fake_agent() -> None:
        conn, _ = await listener.accept()
        with conn:
            await conn.recv(65536)
            await conn.send(struct.pack(">I", 2**31))  # claims a 2 GiB response

    nursery.start_soon(fake_agent)
    with pytest.raises(ClientError, match="limit"):
        await trio.to_thread.run_sync(lambda: Client(path, timeout=GUARD).info())
    listener.close()
    os.unlink(path)
