"""A cluster of SWIM cores on the simulator: identities, faults with ground truth, and convergence checks.

This is the only SWIM-specific part of ``sim/``. It owns what a real fleet keeps on disk (node id, name,
address, last incarnation), so a crash followed by a restart builds a new ``Swim`` with incarnation
``stored + 1`` that rejoins through its seeds and the members it last knew, as ``node.py`` will. Every
peer gets its own ``random.Random`` derived from the seed, its pid and its restart count; the network gets
another, so one seed fixes the whole run.

It also keeps the ground truth the metrics need: when each peer was down, paused or cut off, so that a
``failed`` about a peer that was fine all along can be told apart from a correct detection.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engramp2p.sim.driver import Driver
from engramp2p.sim.loop import EventLoop
from engramp2p.sim.metrics import MembershipRecorder
from engramp2p.sim.network import LinkProfile, Network
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.core import Swim
from engramp2p.swim.events import IncarnationChanged
from engramp2p.swim.messages import MemberState, State
from engramp2p.swim.state import LocalNode

PORT = 7946

#: Event class name -> the recorder's normalized kind (``None``: not a liveness change).
EVENT_KINDS: dict[str, str | None] = {
    "MemberJoined": "joined",
    "MemberRecovered": "alive",
    "MemberRefuted": "alive",
    "MemberSuspected": "suspected",
    "MemberFailed": "failed",
    "MemberLeft": "left",
    "MemberUpdated": None,
    "MemberReaped": "reaped",
}
ALIVE_KINDS = frozenset({"joined", "alive"})


@dataclass(slots=True)
class Identity:
    """What a peer persists across restarts (DESIGN §3): id, name, address, last incarnation (0: never
    started). A start runs at ``incarnation + 1``; ``IncarnationChanged`` events keep it current."""

    node_id: bytes
    name: str
    host: str
    port: int
    incarnation: int = 0
    restarts: int = 0


def peer_host(pid: int) -> str:
    return f"10.{pid >> 16 & 255}.{pid >> 8 & 255}.{pid & 255}"


class SwimCluster:
    """``n`` SWIM peers (pids ``0..n-1``) on one ``EventLoop``; peers ``0..seeds-1`` are the seed list."""

    def __init__(
        self,
        n: int,
        *,
        config: SwimConfig,
        link: LinkProfile,
        seed: int,
        seeds: int = 3,
        packet_budget: int = 1360,
        trace: bool = False,
        keep_trace: bool = False,
        fault_window: float | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.packet_budget = packet_budget
        self.loop = EventLoop(trace=trace, keep_trace=keep_trace)
        self.network = Network(link, random.Random(f"{seed}:network"))
        self.driver = Driver(self.loop, self.network, on_emit=self._on_emit)
        self.rng = random.Random(f"{seed}:cluster")
        ids = random.Random(f"{seed}:ids")
        self.identities = [
            Identity(ids.randbytes(16), f"peer-{pid}", peer_host(pid), PORT) for pid in range(n)
        ]
        self.pid_of = {ident.node_id: pid for pid, ident in enumerate(self.identities)}
        for ident in self.identities:
            self.driver.add((ident.host, ident.port), None, stream_timeout=config.tcp_timeout)
        self.seed_addrs = [(i.host, i.port) for i in self.identities[: max(1, min(seeds, n))]]
        #: Faults per peer as ``[start, end)`` spans (end ``inf`` while ongoing): down or paused.
        self.disturbed: list[list[list[float]]] = [[] for _ in range(n)]
        self.window = (
            fault_window
            if fault_window is not None
            else self.max_suspicion_timeout(n) + (3 * config.probe_interval * config.awareness_max_multiplier)
        )
        self.recorder = MembershipRecorder(clean=self.clean)
        self.unknown_events = 0
        self._last_known: dict[int, list[int]] = {}
        #: What each peer's events say it believes: subject -> kind, and how many it holds alive.
        self.view: list[dict[int, str]] = [{} for _ in range(n)]
        self.seen_alive = [0] * n
        self._kind_by_type: dict[type, str | None] = {}

    # -- protocol bounds ---------------------------------------------------------------------------------

    def min_suspicion_timeout(self, n: int) -> float:
        """memberlist's ``SuspicionMult * max(1, log10 n) * ProbeInterval``."""
        c = self.config
        return c.suspicion_mult * max(1.0, math.log10(max(1, n))) * c.probe_interval

    def max_suspicion_timeout(self, n: int) -> float:
        return self.config.suspicion_max_timeout_mult * self.min_suspicion_timeout(n)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _new_core(self, pid: int) -> Swim:
        ident = self.identities[pid]
        ident.incarnation += 1
        me = LocalNode(
            node_id=ident.node_id,
            name=ident.name,
            host=ident.host,
            port=ident.port,
            incarnation=ident.incarnation,
            meta=b"",
        )
        rng = random.Random(f"{self.seed}:peer:{pid}:{ident.restarts}")
        return Swim(self.config, me, rng, seeds=tuple(self.seed_addrs), packet_budget=self.packet_budget)

    def start(self, pid: int, also_join: Sequence[tuple[str, int]] = ()) -> None:
        """Start a peer that is down (never started, or crashed): it joins the seeds by itself
        (``Swim.start``), and ``also_join`` too (the members a restarted peer remembers)."""
        own = (self.identities[pid].host, self.identities[pid].port)
        extra = [a for a in also_join if a != own and a not in self.seed_addrs]
        self.driver.restart(pid, self._new_core(pid))
        self._end_disturbance(pid)
        core = self.driver.slots[pid].core
        self.driver.call(pid, core.start)
        if extra:
            self.driver.call(pid, lambda now: core.join(now, extra))
        self.recorder.start(pid, self.loop.now)

    def start_formed(self, pids: Sequence[int]) -> None:
        """Start ``pids`` as an already formed cluster: each holds every other one alive from the
        start (``Swim.restore`` before ``Swim.start``, so nobody joins the seeds or re-announces
        anyone). For measuring a cluster's steady state, not how it forms (``start`` is the mass join)."""
        for pid in pids:
            self.driver.restart(pid, self._new_core(pid))
            self._end_disturbance(pid)
        states = [
            MemberState(i.node_id, i.name, i.host, i.port, i.incarnation, int(State.ALIVE))
            for i in (self.identities[pid] for pid in pids)
        ]
        for pid in pids:
            core = self.driver.slots[pid].core
            self.driver.call(pid, lambda now, core=core: core.restore(now, states))
            self.driver.call(pid, core.start)
            self.recorder.start(pid, self.loop.now)

    def crash(self, pid: int) -> None:
        """``kill -9``: the process and its in-memory table are gone; its identity stays (``identities``)."""
        self.driver.crash(pid)
        self.view[pid] = {}
        self.seen_alive[pid] = 0
        self._begin_disturbance(pid)

    def kill(self, pid: int) -> None:
        """A crash that is never undone, measured for detection."""
        self.crash(pid)
        self.recorder.kill(pid, self.loop.now)

    def restart(self, pid: int) -> None:
        """Restart with persisted identity and incarnation stored+1; rejoin seeds plus members it knew."""
        ident = self.identities[pid]
        ident.restarts += 1
        known = [self.identities[p] for p in self._last_known.pop(pid, [])]
        self.start(pid, [(i.host, i.port) for i in known])

    def crash_for_restart(self, pid: int) -> None:
        """Crash, remembering a few members this peer knew alive (the store keeps the member list)."""
        alive = [
            self.pid_of[v.node_id]
            for v in self.views(pid)
            if v.state == State.ALIVE
            and v.node_id in self.pid_of
            and v.node_id != self.identities[pid].node_id
        ]
        self._last_known[pid] = self.rng.sample(alive, min(5, len(alive)))
        self.crash(pid)

    def pause(self, pid: int) -> None:
        self.driver.pause(pid)
        self._begin_disturbance(pid)

    def resume(self, pid: int) -> None:
        self.driver.resume(pid)
        self._end_disturbance(pid)

    def partition(self, start: float, end: float, groups: list[list[int]]) -> None:
        self.network.partition(start, end, groups)

    def block(self, src: int, dst: int, start: float, end: float) -> None:
        self.network.block(src, dst, start, end)

    # -- observation -------------------------------------------------------------------------------------

    def views(self, pid: int) -> list[Any]:
        core = self.driver.slots[pid].core
        return [] if core is None else list(core.members())

    def _on_emit(self, pid: int, now: float, event: Any) -> None:
        """Feed the recorder and the event-derived views; runs once per membership event (n² while a
        cluster forms), hence the kind lookup by type, cached from ``EVENT_KINDS`` by class name."""
        cls = type(event)
        if cls is IncarnationChanged:
            ident = self.identities[pid]
            ident.incarnation = max(ident.incarnation, event.incarnation)
            return
        kinds = self._kind_by_type
        if cls in kinds:
            kind = kinds[cls]
        else:
            kind = kinds[cls] = EVENT_KINDS.get(cls.__name__, "?")
        if kind is None:
            return
        member = getattr(event, "member", None)
        subject = self.pid_of.get(getattr(member, "node_id", b""))
        if kind == "?" or subject is None:
            self.unknown_events += 1
            return
        if subject != pid:
            self.recorder.observe(now, pid, kind, subject)
            view = self.view[pid]
            before = view.get(subject) in ALIVE_KINDS
            view[subject] = kind
            self.seen_alive[pid] += (kind in ALIVE_KINDS) - before

    def _begin_disturbance(self, pid: int) -> None:
        spans = self.disturbed[pid]
        if not spans or spans[-1][1] != float("inf"):
            spans.append([self.loop.now, float("inf")])

    def _end_disturbance(self, pid: int) -> None:
        spans = self.disturbed[pid]
        if spans and spans[-1][1] == float("inf"):
            spans[-1][1] = self.loop.now

    def clean(self, pid: int, t: float) -> bool:
        """Up, unpaused and unpartitioned throughout ``[t - window, t]``: any failure of it is false."""
        start = t - self.window
        if any(s <= t and start < e for s, e in self.disturbed[pid]):
            return False
        return not self.network.separated(pid, start, t)

    def up(self) -> list[int]:
        return [pid for pid in range(len(self.identities)) if self.driver.is_up(pid)]

    def looks_converged(self) -> bool:
        """Cheap O(n) filter from the events: every live peer holds as many members alive as there are
        other live peers. ``convergence_gaps`` is the exact check to confirm it with."""
        live = self.up()
        want = len(live) - 1
        return all(self.seen_alive[pid] == want for pid in live)

    def convergence_gaps(self) -> int:
        """Wrong (observer, subject) pairs by the cores' own tables: live peers must see every other live
        peer alive, and must not see a down peer alive. 0 means converged."""
        live = set(self.up())
        live_ids = {self.identities[p].node_id for p in live}
        gaps = 0
        slots = self.driver.slots
        for pid in sorted(live):
            own = self.identities[pid].node_id
            alive = slots[pid].core.alive_ids()
            alive.discard(own)
            expected = live_ids - {own}
            gaps += len(expected - alive) + len(alive - expected)
        return gaps

    def incarnation_seen(self, observer: int, subject: int) -> tuple[int, int] | None:
        """``(state, incarnation)`` of ``subject`` in ``observer``'s table, or ``None`` if unknown."""
        target = self.identities[subject].node_id
        for view in self.views(observer):
            if view.node_id == target:
                return int(view.state), int(view.incarnation)
        return None
