"""The simulated network's fault model: latency, loss, duplication, one-way loss and partitions.

Peers are small integers here; the driver maps addresses to them. Everything random comes from the one
``random.Random`` handed in, so the network is as deterministic as the seed. Jitter is drawn from a table
of 65,536 lognormal samples made from that generator at the start (one table lookup per datagram instead
of a normal draw and an exponential: the simulator sends millions). Reordering is not a separate
knob: two packets on one link draw independent jitter, so a later one can overtake an earlier one, as on a
real network. Partitions and one-way blocks are judged when a packet is sent; a packet already in flight
when a partition starts still arrives (it was already on the wire).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How one class of network behaves: ``base`` + per-link ``spread`` + lognormal jitter, all seconds."""

    base: float
    spread: float
    jitter_median: float
    jitter_sigma: float
    loss: float = 0.0
    duplicate: float = 0.0


#: Rough shapes of the three memberlist profiles' intended networks (one switch, a campus, continents).
LINK_PROFILES: dict[str, LinkProfile] = {
    "local": LinkProfile(base=0.0001, spread=0.0001, jitter_median=0.00005, jitter_sigma=0.5),
    "lan": LinkProfile(base=0.0005, spread=0.001, jitter_median=0.0002, jitter_sigma=0.8),
    "wan": LinkProfile(base=0.02, spread=0.08, jitter_median=0.005, jitter_sigma=1.0),
}


@dataclass(slots=True)
class Partition:
    """Between ``start`` and ``end`` peers talk only within their group; unlisted peers form one group."""

    start: float
    end: float
    group_of: dict[int, int]


_JITTER_BITS = 16
_JITTER_SAMPLES = 1 << _JITTER_BITS


@dataclass(slots=True)
class Network:
    """Decides, per packet, whether it arrives and after how long (and whether a copy arrives too)."""

    profile: LinkProfile
    rng: random.Random
    partitions: list[Partition] = field(default_factory=list)
    blocks: dict[tuple[int, int], list[tuple[float, float]]] = field(default_factory=dict)
    _offset: list[float] = field(default_factory=list)
    _jitter: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        p = self.profile
        if p.jitter_median > 0:
            gauss = self.rng.gauss
            self._jitter = [p.jitter_median * math.exp(p.jitter_sigma * gauss()) for _ in range(_JITTER_SAMPLES)]
        else:
            self._jitter = [0.0] * _JITTER_SAMPLES

    # -- topology ---------------------------------------------------------------------------------------

    def add_peer(self, peer: int) -> None:
        """Give the new peer a fixed distance, so each link has its own base latency."""
        while len(self._offset) <= peer:
            self._offset.append(self.rng.uniform(0.0, self.profile.spread / 2))

    def partition(self, start: float, end: float, groups: list[list[int]]) -> None:
        group_of = {peer: index for index, members in enumerate(groups) for peer in members}
        self.partitions.append(Partition(start, end, group_of))

    def block(self, src: int, dst: int, start: float, end: float) -> None:
        """One-way loss: ``src -> dst`` is dropped during ``[start, end)``, ``dst -> src`` still flows."""
        self.blocks.setdefault((src, dst), []).append((start, end))

    def connected(self, src: int, dst: int, now: float) -> bool:
        for part in self.partitions:
            if part.start <= now < part.end and part.group_of.get(src, -1) != part.group_of.get(dst, -1):
                return False
        if self.blocks:
            for start, end in self.blocks.get((src, dst), ()):
                if start <= now < end:
                    return False
        return True

    def separated(self, peer: int, start: float, end: float) -> bool:
        """Whether any partition or block touching ``peer`` overlapped ``[start, end]`` (for metrics)."""
        for part in self.partitions:
            if part.start <= end and start < part.end:
                return True
        for (src, dst), spans in self.blocks.items():
            if peer in (src, dst) and any(s <= end and start < e for s, e in spans):
                return True
        return False

    # -- per-packet decisions ---------------------------------------------------------------------------

    def latency(self, src: int, dst: int) -> float:
        return (
            self.profile.base
            + self._offset[src]
            + self._offset[dst]
            + self._jitter[self.rng.getrandbits(_JITTER_BITS)]
        )

    def packet_delays(self, src: int, dst: int, now: float) -> tuple[float, ...]:
        """Delays of the copies that arrive: none (lost, partitioned), one, or two (duplicated)."""
        if (self.partitions or self.blocks) and not self.connected(src, dst, now):
            return ()
        p = self.profile
        rng = self.rng
        if p.loss and rng.random() < p.loss:
            return ()
        # ``latency`` inlined (same draws, same order): this runs once per datagram.
        offset = self._offset
        first = p.base + offset[src] + offset[dst] + self._jitter[rng.getrandbits(_JITTER_BITS)]
        if p.duplicate and rng.random() < p.duplicate:
            return (first, self.latency(src, dst))
        return (first,)
