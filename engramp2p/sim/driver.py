"""Drive any sans-IO cores (``engramp2p.sansio.Core``) over the simulated network.

This is the simulator's stand-in for the trio drivers: it delivers datagrams and stream exchanges with the
network's delays and faults, wakes each core at its ``next_deadline``, and hands every ``Emit`` to an
observer. Nothing here knows about SWIM, so anti-entropy and spreading cores can be driven the same way.

Process faults live here because they are about the process, not the protocol:

- **pause** (SIGSTOP): inputs queue in a bounded buffer (beyond it they are dropped, as a full socket
  buffer drops datagrams), timers do not fire; on resume the core first reads what queued, then sees its
  overdue timers -- one big time jump.
- **crash**: the process is gone; packets to it are dropped, its timers and pending streams are forgotten.
  A restart installs a new core on the same address (the caller builds it from persisted identity).

Timers are lazy: a peer has at most one live wake event; a wake that became stale (the deadline moved
later, the peer restarted) is skipped when popped, and an early one re-arms for the real deadline.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from engramp2p.sansio import Action, Addr, Core, Emit, SendPacket, SendStream
from engramp2p.sim.loop import EventLoop
from engramp2p.sim.network import Network

#: Bytes a sealed datagram or frame carries beyond its msgpack payload: ChaCha20-Poly1305's random 12-byte
#: nonce plus its 16-byte tag (DESIGN §4).
SEAL_OVERHEAD = 28
#: Length prefix of a stream frame.
FRAME_HEADER = 4

_encoder = msgspec.msgpack.Encoder()
_encode_into = _encoder.encode_into
_buffer = bytearray()


def encoded_size(payload: Any) -> int:
    """Sealed wire size of ``payload`` (a tuple of messages or one stream message).

    Not cached: msgspec encodes a whole datagram in about a microsecond, and a per-message size cache
    keyed by identity measured slower (the Python loop over messages costs more than the encoding).
    Encoded into one reused buffer: we only want the length, and skipping a fresh ``bytes`` per
    datagram saves about a quarter of the encoding cost (the simulator is single-threaded).
    """
    _encode_into(payload, _buffer)
    return len(_buffer) + SEAL_OVERHEAD


class Status(enum.Enum):
    UP = "up"
    PAUSED = "paused"
    DOWN = "down"


@dataclass(slots=True)
class PeerStats:
    """Traffic one peer sent and received; stream bytes count both the request and the reply."""

    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    streams_opened: int = 0
    stream_bytes: int = 0


@dataclass(slots=True)
class Slot:
    """One simulated process: an address, the core running there now, and its fault status."""

    pid: int
    addr: Addr
    core: Any
    stream_timeout: float
    epoch: int = 0
    status: Status = Status.UP
    wake_at: float | None = None
    spins: int = 0
    inbox: deque[tuple[Any, ...]] = field(default_factory=deque)
    stats: PeerStats = field(default_factory=PeerStats)


@dataclass(slots=True)
class DropCounts:
    """Why inputs never reached a core."""

    network: int = 0
    unroutable: int = 0
    to_down: int = 0
    buffer_full: int = 0
    stream_timeouts: int = 0


Observer = Callable[[int, float, Any], None]


class Driver:
    """Runs cores on an ``EventLoop`` over a ``Network``; peers are ``pid`` integers in add order."""

    MAX_SPINS = 10_000

    def __init__(
        self,
        loop: EventLoop,
        network: Network,
        *,
        on_emit: Observer | None = None,
        recv_buffer: int = 4096,
        size_of: Callable[[Any], int] = encoded_size,
    ) -> None:
        self.loop = loop
        self.network = network
        self.on_emit = on_emit
        self.recv_buffer = recv_buffer
        self.size_of = size_of
        self.slots: list[Slot] = []
        self.by_addr: dict[Addr, int] = {}
        self.drops = DropCounts()
        self._pending: set[tuple[int, int, int]] = set()
        # Stream message sizes by identity (the message is kept, so its id stays valid): cores hand out
        # the same push-pull object until their table changes, and encoding a thousand states per
        # exchange just to learn the size was 4 % of a 1,000-peer run's time.
        self._stream_sizes: dict[int, tuple[Any, int]] = {}
        # The loop's heap and sequence, for the per-packet hot path (see ``EventLoop.raw_queue``).
        self._heap, self._next_seq = loop.raw_queue()

    # -- processes --------------------------------------------------------------------------------------

    def add(self, addr: Addr, core: Core | None, *, stream_timeout: float) -> int:
        """Add a process; with ``core=None`` it starts down (a peer that will join later via ``restart``)."""
        pid = len(self.slots)
        slot = Slot(pid, addr, core, stream_timeout)
        if core is None:
            slot.status = Status.DOWN
        self.slots.append(slot)
        self.by_addr[addr] = pid
        self.network.add_peer(pid)
        return pid

    def call(self, pid: int, fn: Callable[[float], Sequence[Action]]) -> None:
        """Run ``fn(now)`` against the peer's core (start, join, leave...) and perform what it returns."""
        slot = self.slots[pid]
        if slot.status is not Status.UP:
            raise RuntimeError(f"peer {pid} is {slot.status.value}")
        self.perform(slot, fn(self.loop.now))
        self._rearm(slot)

    def pause(self, pid: int) -> None:
        slot = self.slots[pid]
        if slot.status is Status.UP:
            slot.status = Status.PAUSED
            self._trace(f"pause {pid}")

    def resume(self, pid: int) -> None:
        """Continue a paused process: it reads its queued inputs, then its overdue timers fire."""
        slot = self.slots[pid]
        if slot.status is not Status.PAUSED:
            return
        slot.status = Status.UP
        self._trace(f"resume {pid}")
        epoch = slot.epoch
        while slot.inbox and slot.status is Status.UP and slot.epoch == epoch:
            kind, *rest = slot.inbox.popleft()
            if kind == "pkt":
                self._handle_packet(slot, *rest)
            elif kind == "req":
                self._handle_request(slot, *rest)
            else:
                self._handle_reply(slot, *rest)
        self._rearm(slot)

    def crash(self, pid: int) -> None:
        slot = self.slots[pid]
        slot.status = Status.DOWN
        slot.epoch += 1
        slot.core = None
        slot.inbox.clear()
        slot.wake_at = None
        self._trace(f"crash {pid}")

    def restart(self, pid: int, core: Core) -> None:
        """Install a fresh core on a crashed peer's address; the caller then starts and joins it."""
        slot = self.slots[pid]
        if slot.status is not Status.DOWN:
            self.crash(pid)
        slot.core = core
        slot.status = Status.UP
        slot.epoch += 1
        slot.wake_at = None
        self._trace(f"restart {pid}")

    def is_up(self, pid: int) -> bool:
        return self.slots[pid].status is Status.UP

    # -- actions ----------------------------------------------------------------------------------------

    def perform(self, slot: Slot, actions: Sequence[Action]) -> None:
        if not actions:
            return
        now = self.loop.now
        for action in actions:
            kind = type(action)
            if kind is SendPacket:
                self._send_packet(slot, action.addr, action.msgs, now)  # type: ignore[union-attr]
            elif kind is Emit:
                if self.loop.tracing:
                    self._trace(f"emit {slot.pid} {action.event!r}")  # type: ignore[union-attr]
                if self.on_emit is not None:
                    self.on_emit(slot.pid, now, action.event)  # type: ignore[union-attr]
            elif kind is SendStream:
                self._send_stream(slot, action, now)
            else:
                raise TypeError(f"unknown action {action!r}")

    def _send_packet(self, slot: Slot, addr: Addr, msgs: tuple[Any, ...], now: float) -> None:
        stats = slot.stats
        size_of = self.size_of
        if size_of is encoded_size:  # the default, inlined (one call fewer per datagram)
            _encode_into(msgs, _buffer)
            size = len(_buffer) + SEAL_OVERHEAD
        else:
            size = size_of(msgs)
        stats.packets_sent += 1
        stats.bytes_sent += size
        dst = self.by_addr.get(addr)
        if dst is None:
            self.drops.unroutable += 1
            return
        delays = self.network.packet_delays(slot.pid, dst, now)
        if not delays:
            self.drops.network += 1
            return
        # Pushed straight onto the loop's heap: one datagram is one event, the commonest of all, and
        # ``loop.at``'s call and argument packing were a visible share of the simulator's time.
        args = (dst, slot.addr, msgs, size)
        for delay in delays:
            heapq.heappush(self._heap, (now + delay, self._next_seq(), self._deliver, args))

    def _deliver(self, dst: int, src: Addr, msgs: tuple[Any, ...], size: int) -> None:
        slot = self.slots[dst]
        status = slot.status
        if status is Status.UP:
            # ``_handle_packet`` inlined: this runs once per delivered datagram.
            stats = slot.stats
            stats.packets_received += 1
            stats.bytes_received += size
            loop = self.loop
            now = loop.now
            if loop.tracing:
                self._trace(f"pkt {src}->{slot.pid} {msgs!r}")
            core = slot.core
            actions = core.handle_packet(now, src, msgs)
            if actions:
                self.perform(slot, actions)
            # ``_rearm`` inlined too (one call fewer per delivered datagram).
            if slot.status is Status.UP:
                deadline = core.next_deadline()
                if deadline is not None:
                    wake_at = slot.wake_at
                    if wake_at is None or deadline < wake_at:
                        slot.wake_at = deadline
                        entry = (slot, slot.epoch, deadline)
                        heapq.heappush(
                            self._heap, (deadline if deadline > now else now, self._next_seq(), self._wake, entry)
                        )
        elif status is Status.PAUSED:
            self._enqueue(slot, ("pkt", src, msgs, size))
        else:
            self.drops.to_down += 1

    def _handle_packet(self, slot: Slot, src: Addr, msgs: tuple[Any, ...], size: int) -> None:
        slot.stats.packets_received += 1
        slot.stats.bytes_received += size
        if self.loop.tracing:
            self._trace(f"pkt {src}->{slot.pid} {msgs!r}")
        self.perform(slot, slot.core.handle_packet(self.loop.now, src, msgs))
        self._rearm(slot)

    def _enqueue(self, slot: Slot, item: tuple[Any, ...]) -> None:
        if len(slot.inbox) >= self.recv_buffer:
            self.drops.buffer_full += 1
        else:
            slot.inbox.append(item)

    # -- streams: request/response with latency both ways, None after the requester's timeout -----------

    def _send_stream(self, slot: Slot, action: SendStream, now: float) -> None:
        key = (slot.pid, slot.epoch, action.token)
        self._pending.add(key)
        size = self._stream_size(action.msg)
        slot.stats.streams_opened += 1
        slot.stats.stream_bytes += size
        self.loop.at(now + slot.stream_timeout, self._stream_timeout, key)
        dst = self.by_addr.get(action.addr)
        if dst is None or not self.network.connected(slot.pid, dst, now):
            return
        delay = self.network.latency(slot.pid, dst)
        self.loop.at(now + delay, self._request_arrives, dst, slot.addr, key, action.msg)

    def _stream_size(self, msg: Any) -> int:
        """Framed, sealed size of one stream message, cached by identity."""
        sizes = self._stream_sizes
        cached = sizes.get(id(msg))
        if cached is not None and cached[0] is msg:
            return cached[1]
        size = self.size_of(msg) + FRAME_HEADER
        if len(sizes) >= 1024:
            sizes.clear()
        sizes[id(msg)] = (msg, size)
        return size

    def _request_arrives(self, dst: int, src: Addr, key: tuple[int, int, int], msg: Any) -> None:
        slot = self.slots[dst]
        if slot.status is Status.UP:
            self._handle_request(slot, src, key, msg)
        elif slot.status is Status.PAUSED:
            self._enqueue(slot, ("req", src, key, msg))

    def _handle_request(self, slot: Slot, src: Addr, key: tuple[int, int, int], msg: Any) -> None:
        now = self.loop.now
        if self.loop.tracing:
            self._trace(f"req {src}->{slot.pid} {msg!r}")
        reply, actions = slot.core.handle_stream_request(now, src, msg)
        self.perform(slot, actions)
        self._rearm(slot)
        requester = key[0]
        if not self.network.connected(slot.pid, requester, now):
            return
        if reply is not None:
            slot.stats.stream_bytes += self._stream_size(reply)
        delay = self.network.latency(slot.pid, requester)
        self.loop.at(now + delay, self._reply_arrives, key, reply)

    def _reply_arrives(self, key: tuple[int, int, int], reply: Any) -> None:
        if key not in self._pending:
            return
        self._pending.discard(key)
        self._complete(key, reply)

    def _stream_timeout(self, key: tuple[int, int, int]) -> None:
        if key in self._pending:
            self._pending.discard(key)
            self.drops.stream_timeouts += 1
            self._complete(key, None)

    def _complete(self, key: tuple[int, int, int], reply: Any) -> None:
        pid, epoch, token = key
        slot = self.slots[pid]
        if slot.epoch != epoch:
            return
        if slot.status is Status.UP:
            self._handle_reply(slot, token, reply)
        elif slot.status is Status.PAUSED:
            self._enqueue(slot, ("rep", token, reply))

    def _handle_reply(self, slot: Slot, token: int, reply: Any) -> None:
        if self.loop.tracing:
            self._trace(f"rep {slot.pid} {token} {reply!r}")
        self.perform(slot, slot.core.handle_stream_reply(self.loop.now, token, reply))
        self._rearm(slot)

    # -- timers -----------------------------------------------------------------------------------------

    def _rearm(self, slot: Slot) -> None:
        if slot.status is not Status.UP:
            return
        deadline = slot.core.next_deadline()
        if deadline is None:
            return
        wake_at = slot.wake_at
        if wake_at is None or deadline < wake_at:
            slot.wake_at = deadline
            when = deadline if deadline > self.loop.now else self.loop.now
            heapq.heappush(self._heap, (when, self._next_seq(), self._wake, (slot, slot.epoch, deadline)))

    def _wake(self, slot: Slot, epoch: int, when: float) -> None:
        if slot.epoch != epoch or slot.wake_at != when:
            return
        slot.wake_at = None
        if slot.status is not Status.UP:
            return
        now = self.loop.now
        core = slot.core
        deadline = core.next_deadline()
        if deadline is None:
            return
        heap, next_seq, wake = self._heap, self._next_seq, self._wake
        if deadline > now:
            # Stale (the deadline moved later since this wake was armed): re-arm, no tick.
            slot.spins = 0
            slot.wake_at = deadline
            heapq.heappush(heap, (deadline, next_seq(), wake, (slot, epoch, deadline)))
            return
        if self.loop.tracing:
            self._trace(f"tick {slot.pid}")
        self.perform(slot, core.tick(now))
        if slot.epoch != epoch or slot.status is not Status.UP:
            return
        after = core.next_deadline()
        if after is None:
            return
        if after <= now:
            slot.spins += 1
            if slot.spins > self.MAX_SPINS:
                raise RuntimeError(f"peer {slot.pid}: core keeps asking to be woken at {now} after tick")
        else:
            slot.spins = 0
        wake_at = slot.wake_at
        if wake_at is None or after < wake_at:
            slot.wake_at = after
            heapq.heappush(heap, (after if after > now else now, next_seq(), wake, (slot, epoch, after)))

    def _trace(self, label: str) -> None:
        if self.loop.tracing:
            self.loop.record(label)
