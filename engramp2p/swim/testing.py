"""A tiny in-memory network for unit tests of ``Swim`` (memberlist's ``mock_transport.go``, in spirit).

Fixed latency, a heap of timed deliveries, per-node wake-ups at ``next_deadline()``, and just enough
fault control for protocol tests: links cut by a predicate, nodes stopped (crashed or paused) and
resumed. The full fault model and scale live in ``engramp2p.sim``; this stays small so the SWIM tests
do not depend on it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from engramp2p.sansio import Action, Addr, Emit, SendPacket, SendStream
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.core import Swim
from engramp2p.swim.messages import State
from engramp2p.swim.state import LocalNode

_WAKE, _PACKET, _STREAM_REQ, _STREAM_REP = range(4)


class MiniCluster:
    """Deterministic from ``seed``: same calls, same trace."""

    def __init__(self, config: SwimConfig, seed: int = 0, latency: float = 0.002) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.latency = latency
        self.now = 0.0
        self.nodes: dict[Addr, Swim] = {}
        self.stopped: set[Addr] = set()
        self.cut: Callable[[Addr, Addr], bool] = lambda src, dst: False
        self.events: list[tuple[float, Addr, Any]] = []
        self.sent_packets: list[tuple[Addr, Addr, tuple[Any, ...]]] = []
        self.record_packets = False
        self._heap: list[tuple[float, int, int, Any]] = []
        self._order = 0
        self._wake: dict[Addr, float] = {}

    def add(self, index: int, seeds: tuple[Addr, ...] = (), incarnation: int = 1) -> Swim:
        addr = ("10.0.0.1", 7000 + index)
        node_id = index.to_bytes(16, "big")
        me = LocalNode(node_id, f"n{index}", addr[0], addr[1], incarnation)
        swim = Swim(self.config, me, random.Random(self.rng.getrandbits(64)), seeds=seeds)
        self.nodes[addr] = swim
        self.stopped.discard(addr)
        self._apply(addr, swim.start(self.now))
        return swim

    @staticmethod
    def addr_of(index: int) -> Addr:
        return ("10.0.0.1", 7000 + index)

    def stop(self, addr: Addr) -> None:
        self.stopped.add(addr)

    def resume(self, addr: Addr) -> None:
        self.stopped.discard(addr)
        self._apply(addr, self.nodes[addr].tick(self.now))

    def run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, kind, payload = heapq.heappop(heap)
            self.now = when
            if kind == _WAKE:
                addr = payload
                if self._wake.get(addr) != when:
                    continue
                del self._wake[addr]
                if addr in self.stopped:
                    continue
                self._apply(addr, self.nodes[addr].tick(when))
            elif kind == _PACKET:
                dst, src, msgs = payload
                if dst in self.stopped or dst not in self.nodes:
                    continue
                self._apply(dst, self.nodes[dst].handle_packet(when, src, msgs))
            elif kind == _STREAM_REQ:
                dst, src, msg, token = payload
                if dst in self.stopped or dst not in self.nodes or self.cut(src, dst) or self.cut(dst, src):
                    self._push(when + self.latency, _STREAM_REP, (src, token, None))
                    continue
                reply, actions = self.nodes[dst].handle_stream_request(when, src, msg)
                self._apply(dst, actions)
                self._push(when + self.latency, _STREAM_REP, (src, token, reply))
            else:
                src, token, reply = payload
                if src in self.stopped:
                    continue
                self._apply(src, self.nodes[src].handle_stream_reply(when, token, reply))
        self.now = t
        for addr, swim in self.nodes.items():
            if addr not in self.stopped:
                self._schedule(addr, swim)

    def views(self, addr: Addr) -> dict[bytes, State]:
        return {v.node_id: v.state for v in self.nodes[addr].members()}

    def events_of(self, kind: type) -> list[tuple[float, Addr, Any]]:
        return [e for e in self.events if isinstance(e[2], kind)]

    def _push(self, when: float, kind: int, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (when, self._order, kind, payload))

    def _schedule(self, addr: Addr, swim: Swim) -> None:
        d = swim.next_deadline()
        if d is None:
            return
        d = max(d, self.now)
        cur = self._wake.get(addr)
        if cur is None or d < cur:
            self._wake[addr] = d
            self._push(d, _WAKE, addr)

    def _apply(self, src: Addr, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendPacket):
                if self.record_packets:
                    self.sent_packets.append((src, a.addr, a.msgs))
                if not self.cut(src, a.addr):
                    self._push(self.now + self.latency, _PACKET, (a.addr, src, a.msgs))
            elif isinstance(a, SendStream):
                self._push(self.now + self.latency, _STREAM_REQ, (a.addr, src, a.msg, a.token))
            elif isinstance(a, Emit):
                self.events.append((self.now, src, a.event))
        self._schedule(src, self.nodes[src])
