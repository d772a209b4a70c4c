"""The trio driver and the in-memory network, under MockClock (virtual time, no real waiting)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.net.drive import Driver, Router, drive
from engramp2p.net.memnet import MemNet
from engramp2p.sansio import Action, Addr, Emit, SendPacket, SendStream

A: Addr = ("10.0.0.1", 7946)
B: Addr = ("10.0.0.2", 7946)
C: Addr = ("10.0.0.3", 7946)


@dataclass(frozen=True)
class Hello:
    n: int


@dataclass(frozen=True)
class Reply:
    n: int


@dataclass(frozen=True)
class Other:
    n: int


@dataclass
class FakeCore:
    """Ticks at scheduled times; sends ``Hello`` to ``peer`` on each tick; answers hellos and streams."""

    wakeups: list[float] = field(default_factory=list)
    peer: Addr | None = None
    ticks: list[float] = field(default_factory=list)
    packets: list[tuple[float, Addr, tuple[Any, ...]]] = field(default_factory=list)
    replies: list[tuple[float, int, Any]] = field(default_factory=list)
    requests: list[tuple[float, Addr, Any]] = field(default_factory=list)
    pending: list[Action] = field(default_factory=list)
    answer_hello: bool = True
    sent: int = 0

    def next_deadline(self) -> float | None:
        return self.wakeups[0] if self.wakeups else None

    def tick(self, now: float) -> list[Action]:
        while self.wakeups and self.wakeups[0] <= now:
            self.wakeups.pop(0)
        self.ticks.append(now)
        actions, self.pending = self.pending, []
        if self.peer is not None:
            self.sent += 1
            actions.append(SendPacket(self.peer, (Hello(self.sent),)))
        return actions

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        self.packets.append((now, src, tuple(msgs)))
        out: list[Action] = [Emit(("packet", src))]
        for m in msgs:
            if isinstance(m, Hello) and self.answer_hello:
                out.append(SendPacket(src, (Reply(m.n),)))
        return out

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        self.requests.append((now, src, msg))
        return (Reply(msg.n) if isinstance(msg, Hello) else None), [Emit(("stream", msg))]

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        self.replies.append((now, token, reply))
        # A reply may move the deadline earlier: the driver must notice without any packet arriving.
        self.wakeups = sorted([*self.wakeups, now + 1.0])
        return []


async def _start(nursery: trio.Nursery, net: MemNet, addr: Addr, core: Any, **kw: Any) -> Driver:
    driver = Driver(core, net.endpoint(addr, tcp_timeout=kw.pop("tcp_timeout", 5.0)), **kw)
    await nursery.start(driver.run)
    return driver


async def test_deadlines_fire_at_their_virtual_times(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    core = FakeCore(wakeups=[t0 + 1.0, t0 + 2.5, t0 + 2.5, t0 + 3600.0])
    net = MemNet()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, core)
        await trio.sleep(7200)
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in core.ticks] == [1.0, 2.5, 3600.0]


async def test_custom_clock_is_translated(autojump_clock: trio.testing.MockClock) -> None:
    """A core may live on another time base (the agent's monotonic seconds since start)."""
    offset = 1000.0
    t0 = trio.current_time() + offset
    core = FakeCore(wakeups=[t0 + 5.0, t0 + 7.0])
    net = MemNet()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, core, clock=lambda: trio.current_time() + offset)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert [round(t - t0, 9) for t in core.ticks] == [5.0, 7.0]


async def test_packets_flow_with_latency_and_events(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(seed=1, delay=0.25)
    a = FakeCore(wakeups=[t0 + 1.0, t0 + 2.0], peer=B)
    b = FakeCore()
    send, receive = trio.open_memory_channel[Any](100)
    seen: list[Any] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a, events=seen.append)
        await _start(nursery, net, B, b, events=send)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [(round(t - t0, 9), src, m) for t, src, m in b.packets] == [
        (1.25, A, (Hello(1),)),
        (2.25, A, (Hello(2),)),
    ]
    assert [(round(t - t0, 9), m) for t, _, m in a.packets] == [(1.5, (Reply(1),)), (2.5, (Reply(2),))]
    assert seen == [("packet", B), ("packet", B)]
    assert [receive.receive_nowait() for _ in range(2)] == [("packet", A), ("packet", A)]


async def test_full_event_channel_drops_and_counts(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet()
    a = FakeCore(wakeups=[t0 + i for i in range(1, 6)], peer=B)
    send, _receive = trio.open_memory_channel[Any](2)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        driver_b = await _start(nursery, net, B, FakeCore(), events=send)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert driver_b.stats["packets"] == 5
    assert driver_b.stats["events"] == 2
    assert driver_b.stats["events_dropped"] == 3


async def test_stream_exchange_and_rearm(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(delay=0.1)
    a = FakeCore(wakeups=[t0 + 1.0])
    a.pending = [SendStream(B, Hello(7), token=42)]
    b = FakeCore()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [(round(t - t0, 9), src, m) for t, src, m in b.requests] == [(1.1, A, Hello(7))]
    assert [(round(t - t0, 9), tok, r) for t, tok, r in a.replies] == [(1.2, 42, Reply(7))]
    # The driver was waiting with no deadline at all; the reply's new wakeup fired with no packet arriving.
    assert [round(t - t0, 9) for t in a.ticks] == [1.0, 2.2]


async def test_refused_stream_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(delay=0.1)
    a = FakeCore(wakeups=[t0 + 1.0])
    a.pending = [SendStream(("10.9.9.9", 1), Hello(8), token=43), SendStream(B, Hello(9), token=44)]
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        driver = await _start(nursery, net, A, a)
        await _start(nursery, net, B, FakeCore())
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    # Nobody listens at 10.9.9.9: refused at once; B answers after a round trip.
    assert [(round(t - t0, 9), tok, r) for t, tok, r in a.replies] == [(1.0, 43, None), (1.2, 44, Reply(9))]
    assert [round(t - t0, 9) for t in a.ticks] == [1.0, 2.0, 2.2]
    assert driver.transport.counters.stream_failures == 1
    assert driver.stats["stream_replies"] == 2


async def test_stream_across_partition_times_out(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet()
    net.partition([A], [B])
    a = FakeCore(wakeups=[t0 + 1.0])
    a.pending = [SendStream(B, Hello(1), token=1)]
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        driver = await _start(nursery, net, A, a, tcp_timeout=3.0)
        await _start(nursery, net, B, FakeCore())
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [(round(t - t0, 9), tok, r) for t, tok, r in a.replies] == [(4.0, 1, None)]
    assert driver.transport.counters.stream_failures == 1


async def _hellos(net: MemNet, until: float, **faults: Any) -> FakeCore:
    """A ticks every second for ``until`` seconds sending hellos to B; returns B's core."""
    t0 = trio.current_time()
    a = FakeCore(wakeups=[t0 + i for i in range(1, int(until) + 1)], peer=B)
    b = FakeCore(answer_hello=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        await trio.sleep(until + 5)
        nursery.cancel_scope.cancel()
    return b


def _ns(core: FakeCore) -> list[int]:
    return [m.n for _, _, msgs in core.packets for m in msgs]


async def test_memnet_loss_is_seeded_and_reproducible(autojump_clock: trio.testing.MockClock) -> None:
    first = _ns(await _hellos(MemNet(seed=7, loss=0.5), 40))
    second = _ns(await _hellos(MemNet(seed=7, loss=0.5), 40))
    assert first == second
    assert 5 < len(first) < 35
    assert _ns(await _hellos(MemNet(seed=7, loss=1.0), 10)) == []


async def test_memnet_duplication(autojump_clock: trio.testing.MockClock) -> None:
    net = MemNet(duplicate=1.0)
    assert _ns(await _hellos(net, 5)) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert net.stats.duplicated == 5


async def test_memnet_jitter_reorders(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(seed=3, delay=0.01, jitter=5.0)
    a = FakeCore(wakeups=[t0 + 1 + 0.1 * i for i in range(20)], peer=B)
    b = FakeCore(answer_hello=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    got = _ns(b)
    assert sorted(got) == list(range(1, 21))
    assert got != sorted(got)


async def test_memnet_one_way_link_fault(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet()
    net.set_link(B, A, loss=1.0)  # B's replies never reach A; A's hellos reach B
    a = FakeCore(wakeups=[t0 + 1, t0 + 2], peer=B)
    b = FakeCore()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert _ns(b) == [1, 2]
    assert a.packets == []


async def test_memnet_partition_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(delay=0.5)
    a = FakeCore(wakeups=[t0 + i for i in range(1, 11)], peer=B)
    b = FakeCore(answer_hello=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        await trio.sleep_until(t0 + 3.2)  # hellos 1..3 sent; 3 is in flight
        net.partition([A], [B, C])
        await trio.sleep_until(t0 + 6.2)
        net.heal()
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert _ns(b) == [1, 2, 7, 8, 9, 10]
    assert net.stats.cut == 4  # 3 lost in flight, 4..6 refused at send


async def test_memnet_pause_holds_traffic_until_resume(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    net = MemNet(delay=0.5)
    a = FakeCore(wakeups=[t0 + i for i in range(1, 6)], peer=B)
    a.answer_hello = False
    b = FakeCore(wakeups=[t0 + 2.0], peer=A, answer_hello=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await _start(nursery, net, A, a)
        await _start(nursery, net, B, b)
        net.pause(B)
        await trio.sleep_until(t0 + 10.0)
        assert b.packets == []
        assert a.packets == []  # B's hello from its t=2 timer is held with the process
        net.resume(B)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [(round(t - t0, 9), m[0].n) for t, _, m in b.packets] == [(10.0, i) for i in range(1, 6)]
    assert [(round(t - t0, 9), m[0].n) for t, _, m in a.packets] == [(10.5, 1)]


async def test_router_dispatches_by_type_and_renames_tokens(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()

    class OtherCore(FakeCore):
        def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
            self.packets.append((now, src, tuple(msgs)))
            return []

    first = FakeCore(wakeups=[t0 + 1.0])
    first.pending = [SendStream(B, Hello(1), token=1)]
    second = OtherCore(wakeups=[t0 + 1.0])
    second.pending = [SendStream(B, Hello(2), token=1), SendPacket(B, (Hello(3), Other(4), Hello(5)))]
    router = Router()
    router.add(first, [Reply])
    router.add(second, [Other])
    with pytest.raises(ValueError):
        router.add(FakeCore(), [Other])
    net = MemNet()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(drive, router, net.endpoint(A))
        b = FakeCore()
        await _start(nursery, net, B, b)
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    # B answered both hellos of the packet with replies to A: ``Reply`` is routed to ``first``.
    assert [(tok, r) for _, tok, r in first.replies] == [(1, Reply(1))]
    assert [(tok, r) for _, tok, r in second.replies] == [(1, Reply(2))]
    assert [m for _, _, msgs in first.packets for m in msgs] == [Reply(3), Reply(5)]
    assert router.unrouted == 0
    assert router.handle_packet(0.0, B, [Hello(9)]) == []
    assert router.unrouted == 1
    with pytest.raises(ValueError):
        router.handle_stream_reply(0.0, 999, None)


class Recorder:
    """A core that only records what the router hands it."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        assert msgs, "a core is never handed an empty packet"
        self.got.extend(msgs)
        return [SendStream(src, msgs[0], token=1)]

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        return None, []

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        self.got.append(("reply", token, reply))
        return []

    def tick(self, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float | None:
        return None


@settings(max_examples=100, deadline=None)
@given(
    packets=st.lists(
        st.lists(st.sampled_from([Hello, Reply, Other]).map(lambda t: t(0)), max_size=8), max_size=8
    )
)
def test_router_hands_each_core_its_messages_in_order(packets: list[list[Any]]) -> None:
    hello, reply = Recorder(), Recorder()
    router = Router()
    router.add(hello, [Hello])
    router.add(reply, [Reply])
    tokens: list[int] = []
    for packet in packets:
        for action in router.handle_packet(0.0, A, packet):
            assert isinstance(action, SendStream)
            tokens.append(action.token)
    assert hello.got == [m for p in packets for m in p if isinstance(m, Hello)]
    assert reply.got == [m for p in packets for m in p if isinstance(m, Reply)]
    assert router.unrouted == sum(isinstance(m, Other) for p in packets for m in p)
    assert len(set(tokens)) == len(tokens)  # renamed: unique although every core used token 1
    hello.got.clear()
    reply.got.clear()
    for token in tokens:
        router.handle_stream_reply(0.0, token, "r")
    assert all(g == ("reply", 1, "r") for g in hello.got + reply.got)
    assert len(hello.got) + len(reply.got) == len(tokens)


async def test_a_core_that_never_moves_its_deadline_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Stuck(FakeCore):
        def tick(self, now: float) -> list[Action]:
            return []  # forgets to drop its wakeup

    net = MemNet()
    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="keeps its deadline"), flatten_subgroups=True
    ):
        await drive(Stuck(wakeups=[trio.current_time() + 1.0]), net.endpoint(A))


class Boot:
    """Wraps a SWIM core so its ``start`` runs as the first tick, through the driver like everything else."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.booted = False

    def next_deadline(self) -> float | None:
        return -math.inf if not self.booted else self.core.next_deadline()

    def tick(self, now: float) -> list[Action]:
        if not self.booted:
            self.booted = True
            return self.core.start(now)
        return self.core.tick(now)

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        return self.core.handle_packet(now, src, msgs)

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        return self.core.handle_stream_request(now, src, msg)

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        return self.core.handle_stream_reply(now, token, reply)


async def test_swim_cluster_on_memnet_detects_a_partition_and_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The production SWIM core behind the production driver, over a lossy in-memory network."""
    from engramp2p.swim.config import SwimConfig
    from engramp2p.swim.core import Swim
    from engramp2p.swim.messages import State
    from engramp2p.swim.state import LocalNode

    n = 5
    cfg = SwimConfig.profile("local")
    addrs = [(f"10.0.0.{i + 1}", 7946) for i in range(n)]
    ids = [bytes([i + 1]) * 16 for i in range(n)]
    net = MemNet(seed=5, delay=0.002, jitter=0.003, loss=0.01)
    swims = [
        Swim(
            cfg,
            LocalNode(ids[i], f"n{i}", *addrs[i]),
            random.Random(i),
            seeds=[addrs[0]] if i else [],
            packet_budget=1400 - 32,
        )
        for i in range(n)
    ]

    def view(s: Any, node: bytes) -> State | None:
        return next((m.state for m in s.members() if m.node_id == node), None)

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        for s, addr in zip(swims, addrs, strict=True):
            await nursery.start(drive, Boot(s), net.endpoint(addr, tcp_timeout=cfg.tcp_timeout))
        await trio.sleep(20)
        assert [s.alive_count for s in swims] == [n] * n
        net.partition([addrs[3]])
        await trio.sleep(30)
        assert [view(s, ids[3]) for i, s in enumerate(swims) if i != 3] == [State.DEAD] * (n - 1)
        net.heal()
        await trio.sleep(60)
        assert [view(s, ids[3]) for s in swims] == [State.ALIVE] * n
        nursery.cancel_scope.cancel()
