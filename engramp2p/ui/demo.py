"""A fake cluster for `engramp2p top --demo-data`: lets the UI be seen (and checked in tmux) with no agent.

``DemoCluster`` is a pure, seeded random walk over SWIM-like member states, advanced in whole steps
of virtual time, so the same seed always tells the same story. ``DemoSource`` serves it through the
``TopSource`` interface and, when asked, plays agent outages so the "unreachable" banner can be seen.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable

import trio
from msgspec import structs

from engramp2p.ui.placement import fold
from engramp2p.ui.shapes import Event, Info, MemberRow, NodeRef, Snapshot
from engramp2p.ui.source import SourceError

_NAMES = ("gateway", "rover", "arm", "lidar", "dock", "relay", "cam", "pi", "edge", "hub")


class DemoCluster:
    """N members whose states wander like a flaky fleet: suspicions that get refuted, failures that
    recover with a higher incarnation, the odd graceful leave and rejoin. The default seed keeps a
    member in every state for the first 30 s, so a screenshot taken early shows all four colours."""

    def __init__(self, n: int = 10, seed: int = 34, start: float = 0.0, step: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.step = step
        self.t = start
        self.members: list[MemberRow] = []
        for i in range(n):
            name = f"{_NAMES[i % len(_NAMES)]}-{i:02d}" if i else "gateway-00"
            node_id = f"{self.rng.getrandbits(128):032x}"
            self.members.append(
                MemberRow(
                    name=name,
                    node_id=node_id,
                    addr=f"10.0.{i // 250}.{i % 250 + 1}:7946",
                    state="alive",
                    incarnation=self.rng.randrange(1, 4),
                    roles=("storage",) if i % 3 else ("storage", "seed"),
                    rtt_ms=None if i == 0 else round(self.rng.uniform(0.3, 40.0), 1),
                    last_change=start - self.rng.uniform(5, 4000),
                )
            )
        # Start mid-story, with the history an agent would replay to a new subscriber.
        self.history: list[Event] = []
        for i, state, kind, age in (
            (-1, "left", "left", 95.0),
            (5, "dead", "failed", 12.0),
            (2, "suspect", "suspected", 2.0),
        ):
            m = _with(self.members[i], state=state, last_change=start - age)
            self.members[i] = m
            self.history.append(
                Event(ts=m.last_change, kind=kind, name=m.name, node_id=m.node_id, incarnation=m.incarnation)
            )
        self.health = 1

    @property
    def me(self) -> MemberRow:
        return self.members[0]

    def advance(self, now: float) -> list[Event]:
        """Run whole steps up to ``now``; returns the events they produced, oldest first."""
        out: list[Event] = []
        while self.t + self.step <= now:
            self.t += self.step
            out.extend(self._one_step())
        return out

    def _one_step(self) -> list[Event]:
        rng, out = self.rng, []
        for i, m in enumerate(self.members[1:], start=1):
            r = rng.random()
            kind = None
            if m.state == "alive" and r < 0.01:
                kind, new = "suspected", _with(m, state="suspect")
            elif m.state == "suspect" and r < 0.08:
                kind, new = "refuted", _with(m, state="alive", incarnation=m.incarnation + 1)
            elif m.state == "suspect" and r < 0.14:
                kind, new = "failed", _with(m, state="dead")
            elif m.state == "dead" and r < 0.02:
                kind, new = "recovered", _with(m, state="alive", incarnation=m.incarnation + 1)
            elif m.state == "left" and r < 0.03:
                kind, new = "joined", _with(m, state="alive", incarnation=m.incarnation + 1)
            elif m.state == "alive" and r > 0.997:
                kind, new = "left", _with(m, state="left", incarnation=m.incarnation + 1)
            if kind is None:
                if m.rtt_ms is not None and m.state == "alive":
                    rtt = max(0.1, m.rtt_ms * math.exp(rng.gauss(0, 0.1)))
                    self.members[i] = _with(m, rtt_ms=round(rtt, 1))
                continue
            new = _with(new, last_change=self.t)
            self.members[i] = new
            detail = f"addr {new.addr}" if kind in ("joined", "recovered") else ""
            out.append(
                Event(
                    ts=self.t,
                    kind=kind,
                    name=new.name,
                    node_id=new.node_id,
                    incarnation=new.incarnation,
                    detail=detail,
                )
            )
        suspects = sum(1 for m in self.members if m.state == "suspect")
        self.health = min(8, suspects)
        return out

    def snapshot(self, uptime: float) -> Snapshot:
        me = self.me
        info = Info(
            node=NodeRef(name=me.name, node_id=me.node_id, addr=me.addr),
            health_score=self.health,
            counters={"packets_in": int(uptime * 40), "packets_out": int(uptime * 41)},
            uptime_s=uptime,
        )
        placement, _ = fold(self.placement(uptime), {m.name: m.state for m in self.members}, me.name)
        return Snapshot(members=tuple(self.members), info=info, placement=placement)

    def placement(self, uptime: float) -> list[dict[str, object]]:
        """Two fake spaces placed over the members by a fixed shuffle; a shard hosted here lags for a
        few seconds now and then, so the panel shows catching up as well as synced copies."""
        names = [m.name for m in self.members]
        me = self.me.name
        out: list[dict[str, object]] = []
        for space, shards, replicas in (("fleet-map", 6, 3), ("robot-07-log", 2, 2)):
            placement, rows = [], []
            for shard in range(shards):
                hosts = random.Random(f"{space}/{shard}").sample(names, replicas)
                placement.append({"shard": shard, "hosts": hosts})
                if me in hosts:
                    lag = 40 if int(uptime + shard * 7) % 20 < 3 else 0
                    rows.append({"shard": shard, "hosts": hosts, "lag": lag,
                                 "peer_lag": {h: 0 for h in hosts if h != me}})
            out.append({"space": {"name": space}, "shards": rows, "placement": placement})
        return out


def _with(m: MemberRow, **changes: object) -> MemberRow:
    return structs.replace(m, **changes)


class DemoSource:
    """``TopSource`` over a ``DemoCluster``; with ``outage=(period, length)`` the fake agent is
    unreachable for ``length`` seconds out of every ``period``, starting ``period - length`` in."""

    label = "demo (fake cluster)"

    def __init__(
        self,
        wall: Callable[[], float],
        *,
        n: int = 10,
        seed: int = 34,
        outage: tuple[float, float] | None = None,
    ) -> None:
        self.wall = wall
        self.t0 = wall()
        self.cluster = DemoCluster(n=n, seed=seed, start=self.t0)
        self.outage = outage
        self.pending: deque[Event] = deque(self.cluster.history, maxlen=1000)
        self.wakeup = trio.Event()

    def _down(self) -> bool:
        if self.outage is None:
            return False
        period, length = self.outage
        return (self.wall() - self.t0) % period >= period - length

    def _advance(self) -> None:
        events = self.cluster.advance(self.wall())
        if events:
            self.pending.extend(events)
            self.wakeup.set()

    async def snapshot(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        if self._down():
            raise SourceError("connection refused (demo outage)")
        self._advance()
        return self.cluster.snapshot(self.wall() - self.t0)

    async def events(self) -> AsyncIterator[Event | None]:
        if self._down():
            raise SourceError("connection refused (demo outage)")
        while True:
            while self.pending:
                yield self.pending.popleft()
            self.wakeup = trio.Event()
            await self.wakeup.wait()
            if self._down():
                raise SourceError("event stream closed (demo outage)")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
