"""The simulator engine (event loop, fault model, generic driver) against a toy sans-IO core.

The toy core is the smallest thing that has timers, packets and streams, so these tests pin the engine's
semantics without depending on SWIM: loss, duplication, reordering, one-way loss, partitions, pauses,
crashes and restarts, stream timeouts, lazy timers, and determinism from a seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.sansio import Action, Addr, Emit, SendPacket, SendStream
from engramp2p.sim.driver import Driver, encoded_size
from engramp2p.sim.loop import EventLoop
from engramp2p.sim.metrics import percentiles
from engramp2p.sim.network import LinkProfile, Network

FLAT = LinkProfile(base=0.01, spread=0.0, jitter_median=0.0, jitter_sigma=0.0)
JITTERY = LinkProfile(base=0.001, spread=0.002, jitter_median=0.005, jitter_sigma=1.0)


class Toy:
    """Pings one peer every ``period``; answers pings with acks; answers stream requests with their double."""

    def __init__(self, me: Addr, peers: Sequence[Addr], rng: random.Random, period: float = 1.0) -> None:
        self.me = me
        self.peers = [p for p in peers if p != me]
        self.rng = rng
        self.period = period
        self.next_at: float | None = None
        self.ticks = 0
        self.received: list[tuple[float, Addr, Any]] = []
        self.replies: list[tuple[float, int, Any]] = []
        self.counter = 0

    def start(self, now: float) -> list[Action]:
        self.next_at = now + self.period
        return []

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        out: list[Action] = []
        for msg in msgs:
            self.received.append((now, src, msg))
            if msg[0] == "ping":
                out.append(SendPacket(src, (("ack", msg[1]),)))
        return out

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        return (msg * 2, [Emit(("served", src))])

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        self.replies.append((now, token, reply))
        return []

    def tick(self, now: float) -> list[Action]:
        if self.next_at is None or now < self.next_at:
            return []
        self.ticks += 1
        following = self.next_at + self.period
        self.next_at = following if following > now else now + self.period  # a ticker: no catching up
        self.counter += 1
        return [SendPacket(self.rng.choice(self.peers), (("ping", self.counter),))]

    def next_deadline(self) -> float | None:
        return self.next_at


def build(n: int, link: LinkProfile, seed: int = 1, *, trace: bool = False, **driver_kw: Any):
    loop = EventLoop(trace=trace)
    net = Network(link, random.Random(f"{seed}:net"))
    emitted: list[tuple[int, float, Any]] = []
    driver = Driver(loop, net, on_emit=lambda pid, now, ev: emitted.append((pid, now, ev)), **driver_kw)
    addrs = [(f"10.0.0.{i}", 7946) for i in range(n)]
    cores = [Toy(a, addrs, random.Random(f"{seed}:{i}")) for i, a in enumerate(addrs)]
    for addr, core in zip(addrs, cores, strict=True):
        driver.add(addr, core, stream_timeout=5.0)
    for pid, core in enumerate(cores):
        driver.call(pid, core.start)
    return loop, net, driver, cores, emitted


def acks(core: Toy) -> int:
    return sum(1 for _, _, m in core.received if m[0] == "ack")


def test_same_seed_same_trace_and_different_seed_differs() -> None:
    hashes = []
    for seed in (7, 7, 8):
        loop, *_ = build(20, lossy_jittery(), seed, trace=True)
        loop.run_until(50.0)
        hashes.append(loop.trace_hash())
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def lossy_jittery() -> LinkProfile:
    return LinkProfile(
        base=0.001, spread=0.002, jitter_median=0.005, jitter_sigma=1.0, loss=0.1, duplicate=0.05
    )


def test_every_ping_is_acked_on_a_clean_network() -> None:
    loop, _, driver, cores, _ = build(10, FLAT)
    loop.run_until(100.5)
    for core in cores:
        assert core.ticks == 100
        assert acks(core) == 100
    assert driver.drops.network == 0
    sent = sum(s.stats.packets_sent for s in driver.slots)
    assert sent == 2000
    assert all(s.stats.bytes_sent > 0 for s in driver.slots)


def test_loss_drops_about_the_configured_fraction() -> None:
    lossy = LinkProfile(base=0.01, spread=0.0, jitter_median=0.0, jitter_sigma=0.0, loss=0.2)
    loop, _, driver, cores, _ = build(20, lossy)
    loop.run_until(200.5)
    sent = sum(s.stats.packets_sent for s in driver.slots)
    assert 0.17 < driver.drops.network / sent < 0.23
    # an ack needs both legs: about 0.8**2 of pings
    ratio = sum(acks(c) for c in cores) / sum(c.ticks for c in cores)
    assert 0.58 < ratio < 0.70


def test_duplication_delivers_two_copies() -> None:
    dup = LinkProfile(base=0.01, spread=0.0, jitter_median=0.0, jitter_sigma=0.0, duplicate=1.0)
    loop, _, _, cores, _ = build(4, dup)
    loop.run_until(10.5)
    pings = sum(1 for c in cores for _, _, m in c.received if m[0] == "ping")
    assert pings == 2 * sum(c.ticks for c in cores)


def test_jitter_reorders_packets_on_one_link() -> None:
    loop, net, driver, _, _ = build(2, JITTERY)
    sink = Toy(("10.0.0.9", 7946), [], random.Random(0))
    dst = driver.add(("10.0.0.9", 7946), sink, stream_timeout=1.0)
    for i in range(200):
        loop.at(i * 0.001, driver.perform, driver.slots[0], [SendPacket(("10.0.0.9", 7946), (("n", i),))])
    loop.run_until(5.0)
    order = [m[1] for _, _, m in sink.received]
    assert sorted(order) == list(range(200))
    assert order != sorted(order)
    assert dst == 2


def test_one_way_block_drops_one_direction_only() -> None:
    loop, net, driver, cores, _ = build(2, FLAT)
    net.block(0, 1, 0.0, 50.0)
    loop.run_until(40.5)
    assert not any(m[0] == "ping" for _, _, m in cores[1].received)  # 0 -> 1 never arrives
    assert sum(1 for _, _, m in cores[0].received if m[0] == "ping") == 40  # 1 -> 0 does
    assert acks(cores[0]) == 0 and acks(cores[1]) == 0  # every ack would cross 0 -> 1 or answer a lost ping
    loop.run_until(60.5)
    assert acks(cores[0]) > 0


def test_partition_cuts_groups_and_heals_on_schedule() -> None:
    loop, net, driver, cores, _ = build(6, FLAT)
    net.partition(10.0, 30.0, [[0, 1, 2], [3, 4, 5]])
    loop.run_until(31.0)
    for pid, core in enumerate(cores):
        cross = [
            t for t, src, _ in core.received if 10.02 < t < 30.0 and (driver.by_addr[src] < 3) != (pid < 3)
        ]
        assert cross == []
    before = sum(len(c.received) for c in cores)
    loop.run_until(60.0)
    later = [
        t
        for pid, c in enumerate(cores)
        for t, src, _ in c.received
        if t > 31 and (driver.by_addr[src] < 3) != (pid < 3)
    ]
    assert later and sum(len(c.received) for c in cores) > before


def test_paused_peer_queues_inputs_and_its_timers_wait() -> None:
    loop, _, driver, cores, _ = build(3, FLAT, recv_buffer=5)
    loop.run_until(10.5)
    ticks = cores[0].ticks
    received = len(cores[0].received)
    driver.pause(0)
    loop.run_until(40.5)
    assert cores[0].ticks == ticks  # no timer fired while stopped
    assert len(cores[0].received) == received  # nothing read while stopped
    assert driver.drops.buffer_full > 0  # the socket buffer (5 packets) overflowed
    driver.resume(0)
    assert len(cores[0].received) == received + 5  # the buffered datagrams are read first...
    assert cores[0].ticks == ticks
    loop.run_until(40.5)
    assert cores[0].ticks == ticks + 1  # ...then the overdue timer fires once (one big jump)
    assert all(t == 40.5 for t, _, _ in cores[0].received[received:])


def test_crash_drops_traffic_and_restart_forgets_old_timers() -> None:
    loop, _, driver, cores, _ = build(3, FLAT)
    loop.run_until(5.5)
    driver.crash(1)
    loop.run_until(20.5)
    assert driver.drops.to_down > 0
    fresh = Toy(("10.0.0.1", 7946), [("10.0.0.0", 7946)], random.Random(5), period=0.5)
    driver.restart(1, fresh)
    driver.call(1, fresh.start)
    loop.run_until(30.6)
    assert fresh.ticks == 20  # only the new core's own timers, every 0.5 s from 20.5
    assert cores[1].ticks == 5  # the old core never ran again


def test_stream_round_trip_and_timeout_across_partition() -> None:
    loop, net, driver, cores, emitted = build(3, FLAT)
    net.partition(100.0, 200.0, [[0], [1, 2]])
    driver.perform(driver.slots[0], [SendStream(("10.0.0.1", 7946), 21, token=1)])
    loop.run_until(1.0)
    assert cores[0].replies == [(0.02, 1, 42)]  # latency both ways
    assert emitted == [(1, 0.01, ("served", ("10.0.0.0", 7946)))]
    loop.run_until(100.0)
    driver.perform(driver.slots[0], [SendStream(("10.0.0.1", 7946), 5, token=2)])
    driver.perform(driver.slots[0], [SendStream(("10.0.0.99", 7946), 5, token=3)])  # nobody there
    loop.run_until(110.0)
    assert cores[0].replies[1:] == [(105.0, 2, None), (105.0, 3, None)]  # tcp timeout
    assert driver.drops.stream_timeouts == 2


def test_stream_to_crashed_peer_times_out_and_reply_to_restarted_requester_is_dropped() -> None:
    loop, _, driver, cores, _ = build(3, FLAT)
    driver.crash(2)
    driver.perform(driver.slots[0], [SendStream(("10.0.0.2", 7946), 1, token=9)])
    driver.perform(driver.slots[1], [SendStream(("10.0.0.0", 7946), 1, token=9)])
    driver.crash(1)
    fresh = Toy(("10.0.0.1", 7946), [], random.Random(1))
    driver.restart(1, fresh)
    loop.run_until(10.0)
    assert cores[0].replies == [(5.0, 9, None)]
    assert fresh.replies == [] and cores[1].replies == []


class Restless(Toy):
    """Pulls its deadline earlier on every packet: the driver must not pile up stale wakes."""

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        out = super().handle_packet(now, src, msgs)
        if self.next_at is not None:
            self.next_at = max(now, self.next_at - 0.001)
        return out


def test_lazy_timers_keep_one_wake_per_peer() -> None:
    loop = EventLoop()
    net = Network(FLAT, random.Random(1))
    driver = Driver(loop, net)
    addrs = [(f"10.0.0.{i}", 7946) for i in range(30)]
    cores = [Restless(a, addrs, random.Random(i), period=0.1) for i, a in enumerate(addrs)]
    for a, c in zip(addrs, cores, strict=True):
        driver.add(a, c, stream_timeout=1.0)
    for pid, c in enumerate(cores):
        driver.call(pid, c.start)
    loop.run_until(30.0)
    ticks = sum(c.ticks for c in cores)
    packets = sum(s.stats.packets_received for s in driver.slots)
    # every event is a delivery, a wake that ticks, or at most one stale/early wake per delivery
    assert loop.events_run <= packets + 2 * ticks + packets
    assert len(loop._heap) <= 2 * len(cores) + packets


def test_encoded_size_counts_msgpack_and_seal() -> None:
    assert encoded_size((1, 2)) == 3 + 28


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_samples(samples: list[float]) -> None:
    p = percentiles(samples)
    assert p["n"] == len(samples)
    assert p["p50"] <= p["p90"] <= p["p99"] <= p["max"] == max(samples)
    assert {p["p50"], p["p90"], p["p99"]} <= set(samples)


def test_percentiles_of_nothing() -> None:
    assert percentiles([]) == {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
