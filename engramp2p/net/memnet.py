"""An in-memory network with faults, offering each peer the same interface as the real transport.

trio integration tests run real drivers on ``MemNet`` endpoints under ``trio.testing.MockClock``: the
code under test is the production driver and core; only the sockets are replaced. Messages travel as
objects (no sealing or encoding; the real transport's tests cover bytes).

Faults, all seeded from one ``random.Random`` so a run is reproducible:

- **loss** and **duplication** (per datagram), **delay** plus uniform **jitter** (which reorders);
  per-direction overrides with ``set_link`` (``loss=1.0`` one way is an asymmetric partition);
- **partitions**: ``partition(group, group, ...)`` splits the network; a datagram in flight across the
  cut is lost, a stream exchange across it hangs until the requester's ``tcp_timeout`` as with TCP;
- **pauses**: a paused peer is a stopped process -- it receives nothing (arrivals are held, up to its
  queue size, and handed over on ``resume``), and what it sends is held and leaves on ``resume``.
  Its core's timers still run in the driver; on resume it sees the late arrivals, as a real process
  that was stopped sees its timeouts all expire at once.

One ``run`` task delivers every datagram from a heap, so a busy simulation costs one task switch per
delivery rather than one task per packet (stack notes §1).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from engramp2p.net.transport import Counters, Datagram, StreamHandler, TrafficFilter
from engramp2p.sansio import Addr


@dataclass(slots=True)
class Link:
    """Fault settings of one direction; ``None`` fields fall back to the network's defaults."""

    loss: float | None = None
    delay: float | None = None
    jitter: float | None = None
    duplicate: float | None = None


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    cut: int = 0
    duplicated: int = 0
    unknown_dst: int = 0


class MemNet:
    """The shared medium; create endpoints with ``endpoint(addr)`` and run ``run`` in a nursery."""

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        delay: float = 0.001,
        jitter: float = 0.0,
        duplicate: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.default = Link(loss, delay, jitter, duplicate)
        self.stats = NetStats()
        self._links: dict[tuple[Addr, Addr], Link] = {}
        self._endpoints: dict[Addr, MemTransport] = {}
        self._side: dict[Addr, int] = {}
        self._heap: list[tuple[float, int, Addr, Addr, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._wake: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    def endpoint(self, addr: Addr, *, tcp_timeout: float = 10.0, queue_size: int = 1024) -> MemTransport:
        """A transport bound at ``addr``; binding an address twice is a local error."""
        if addr in self._endpoints:
            raise ValueError(f"{addr} is already bound")
        ep = MemTransport(self, addr, tcp_timeout=tcp_timeout, queue_size=queue_size)
        self._endpoints[addr] = ep
        return ep

    def remove(self, addr: Addr) -> None:
        """Unbind ``addr`` (a crashed peer); datagrams to it are dropped and streams refused."""
        ep = self._endpoints.pop(addr, None)
        if ep is not None:
            ep._close()

    # -- faults ---------------------------------------------------------------------------------

    def set_link(self, src: Addr, dst: Addr, **faults: float | None) -> None:
        """Override faults for datagrams from ``src`` to ``dst`` (one direction)."""
        self._links[(src, dst)] = Link(**faults)

    def clear_links(self) -> None:
        self._links.clear()

    def partition(self, *groups: Iterable[Addr]) -> None:
        """Split the network: peers talk only within their group; unlisted peers form one more group."""
        self._side.clear()
        for side, group in enumerate(groups, start=1):
            for addr in group:
                self._side[addr] = side

    def heal(self) -> None:
        self._side.clear()

    def reachable(self, src: Addr, dst: Addr) -> bool:
        return self._side.get(src, 0) == self._side.get(dst, 0)

    def pause(self, addr: Addr) -> None:
        self._endpoints[addr]._pause()

    def resume(self, addr: Addr) -> None:
        self._endpoints[addr]._resume()

    # -- delivery -------------------------------------------------------------------------------

    def _fault(self, src: Addr, dst: Addr, name: str) -> float:
        link = self._links.get((src, dst))
        value = getattr(link, name) if link is not None else None
        return getattr(self.default, name) if value is None else value

    def _latency(self, src: Addr, dst: Addr) -> float:
        jitter = self._fault(src, dst, "jitter")
        extra = self.rng.uniform(0.0, jitter) if jitter > 0 else 0.0
        return self._fault(src, dst, "delay") + extra

    def _send(self, src: Addr, dst: Addr, msgs: tuple[Any, ...]) -> None:
        self.stats.sent += 1
        if not self.reachable(src, dst):
            self.stats.cut += 1
            return
        loss = self._fault(src, dst, "loss")
        if loss > 0 and self.rng.random() < loss:
            self.stats.lost += 1
            return
        copies = 1
        dup = self._fault(src, dst, "duplicate")
        if dup > 0 and self.rng.random() < dup:
            copies = 2
            self.stats.duplicated += 1
        now = trio.current_time()
        for _ in range(copies):
            due = now + self._latency(src, dst)
            heapq.heappush(self._heap, (due, next(self._seq), dst, src, msgs))
            if self._wake is not None and due < self._wake.deadline:
                self._wake.deadline = due

    def _deliver_due(self) -> None:
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now:
            _, _, dst, src, msgs = heapq.heappop(self._heap)
            ep = self._endpoints.get(dst)
            if ep is None:
                self.stats.unknown_dst += 1
            elif not self.reachable(src, dst):
                self.stats.cut += 1  # the partition began while it was in flight
            else:
                self.stats.delivered += 1
                ep._arrive(Datagram(src, msgs))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver datagrams and host inbound stream handlers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    self._deliver_due()
                    with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as scope:
                        self._wake = scope
                        await trio.sleep_forever()
            finally:
                self._wake = None
                self._nursery = None

    async def _exchange(self, src: Addr, dst: Addr, msg: Any) -> Any | None:
        """One stream exchange as the requester sees it; the caller bounds it with its timeout."""
        ep = self._endpoints.get(dst)
        if ep is None or self._nursery is None:
            return None  # connection refused
        if not self.reachable(src, dst):
            await trio.sleep_forever()  # SYNs into the void
        await trio.sleep(self._fault(src, dst, "delay"))
        result: list[Any] = []
        done = trio.Event()
        # The handler runs in the network's nursery, as the server side runs in the remote process:
        # a requester giving up does not cancel the remote peer's work half way.
        self._nursery.start_soon(ep._serve_stream, src, msg, result, done)
        await done.wait()
        if not self.reachable(src, dst):
            await trio.sleep_forever()  # the partition began mid-exchange: the reply never arrives
        if not result:
            return None  # the remote closed without answering
        await trio.sleep(self._fault(dst, src, "delay"))
        return result[0]


class MemTransport:
    """One peer's view of a ``MemNet``: the ``Transport`` interface, without bytes."""

    def __init__(self, net: MemNet, addr: Addr, *, tcp_timeout: float, queue_size: int) -> None:
        self.net = net
        self.local_addr = addr
        self.tcp_timeout = tcp_timeout
        self.counters = Counters()
        self.stream_handler: StreamHandler | None = None
        self.traffic_filter: TrafficFilter | None = None
        self.handler_timeout = tcp_timeout  # interface parity with NetTransport (handlers are not bounded here)
        self._send_ch, self._recv_ch = trio.open_memory_channel[Datagram](queue_size)
        self._queue_size = queue_size
        self._paused = False
        self._resumed = trio.Event()
        self._held_in: list[Datagram] = []
        self._held_out: list[tuple[Addr, tuple[Any, ...]]] = []
        self._closed = False

    @property
    def paused(self) -> bool:
        return self._paused

    async def receive(self) -> Datagram:
        while True:
            while self._paused:
                await self._resumed.wait()
            datagram = await self._recv_ch.receive()
            if self._dropped(datagram.src):
                continue
            return datagram

    def _dropped(self, addr: Addr) -> bool:
        if self.traffic_filter is not None and self.traffic_filter.drops(addr):
            self.counters.fault_drops += 1
            return True
        return False

    async def send_packet(self, addr: Addr, msgs: Sequence[Any]) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed or self._dropped(addr):
            return
        self.counters.packets_out += 1
        if self._paused:
            self._held_out.append((addr, tuple(msgs)))
        else:
            self.net._send(self.local_addr, addr, tuple(msgs))

    async def request(self, addr: Addr, msg: Any, timeout: float | None = None) -> Any | None:
        self.counters.streams_out += 1
        reply = None
        if self._dropped(addr):
            self.counters.stream_failures += 1
            return None
        with trio.move_on_after(self.tcp_timeout if timeout is None else timeout):
            while self._paused:
                await self._resumed.wait()
            reply = await self.net._exchange(self.local_addr, addr, msg)
        if reply is None:
            self.counters.stream_failures += 1
        return reply

    # -- called by the network ------------------------------------------------------------------

    def _arrive(self, datagram: Datagram) -> None:
        if self._closed:
            return
        if self._paused:
            if len(self._held_in) < self._queue_size:
                self._held_in.append(datagram)
            else:
                self.counters.queue_drops += 1
            return
        self._enqueue(datagram)

    def _enqueue(self, datagram: Datagram) -> None:
        try:
            self._send_ch.send_nowait(datagram)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.counters.queue_drops += 1
            return
        self.counters.packets_in += 1

    async def _serve_stream(self, src: Addr, msg: Any, result: list[Any], done: trio.Event) -> None:
        try:
            while self._paused:
                await self._resumed.wait()
            handler = self.stream_handler
            if handler is None or self._closed or self._dropped(src):
                return
            self.counters.streams_in += 1
            reply = await handler(src, msg)
            if reply is not None:
                result.append(reply)
        finally:
            done.set()

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._resumed = trio.Event()

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._resumed.set()
        held_in, self._held_in = self._held_in, []
        for datagram in held_in:
            self._enqueue(datagram)
        held_out, self._held_out = self._held_out, []
        for addr, msgs in held_out:
            self.net._send(self.local_addr, addr, msgs)

    def _close(self) -> None:
        """A crashed peer: it hears nothing more (its driver, if still running, just waits)."""
        self._closed = True
