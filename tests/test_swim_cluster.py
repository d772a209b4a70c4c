"""Small clusters of real ``Swim`` cores on the simulator (``engramp2p.sim``): the rules working together."""

from __future__ import annotations

from typing import Any

from engramp2p.sim.cluster import SwimCluster
from engramp2p.sim.network import LINK_PROFILES
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.events import MemberFailed, MemberLeft, MemberRecovered
from engramp2p.swim.messages import State

N = 16


class Recorded(SwimCluster):
    """A ``SwimCluster`` that also keeps every event as ``(time, observer pid, event)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.events: list[tuple[float, int, Any]] = []
        super().__init__(*args, **kwargs)

    def _on_emit(self, pid: int, now: float, event: Any) -> None:
        self.events.append((now, pid, event))
        super()._on_emit(pid, now, event)

    @property
    def now(self) -> float:
        return self.loop.now

    def run_for(self, seconds: float) -> None:
        self.loop.run_until(self.now + seconds)

    def observers(self, kind: type, subject: int) -> set[int]:
        node_id = self.identities[subject].node_id
        return {pid for _, pid, e in self.events if type(e) is kind and e.member.node_id == node_id}

    def core(self, pid: int) -> Any:
        return self.driver.slots[pid].core


def build(n: int = N, seed: int = 7, cfg: SwimConfig | None = None) -> Recorded:
    c = Recorded(n, config=cfg or SwimConfig.profile("lan"), link=LINK_PROFILES["lan"], seed=seed, seeds=1)
    for pid in range(n):
        c.start(pid)
    c.run_for(20.0)
    return c


def alive_counts(c: Recorded) -> list[int]:
    return [sum(1 for v in c.views(pid) if v.state == State.ALIVE) for pid in c.up()]


def test_join_converges_and_a_killed_member_is_failed_by_all_within_the_bound() -> None:
    c = build()
    assert alive_counts(c) == [N] * N
    c.kill(5)
    cfg = c.config
    c.run_for(c.max_suspicion_timeout(N) + 2 * cfg.probe_interval)
    failed = [e for _, _, e in c.events if isinstance(e, MemberFailed)]
    assert {e.member.node_id for e in failed} == {c.identities[5].node_id}  # no false positives
    assert c.observers(MemberFailed, 5) == set(range(N)) - {5}  # every survivor
    victim = c.identities[5].node_id
    assert all(v.state != State.ALIVE for pid in c.up() for v in c.views(pid) if v.node_id == victim)


def test_paused_member_is_declared_dead_then_refutes_and_recovers() -> None:
    c = build(seed=8)
    inc_before = c.core(3).incarnation
    c.pause(3)
    c.run_for(3 * c.max_suspicion_timeout(N))
    paused = c.identities[3].node_id
    assert all(v.state == State.DEAD for pid in c.up() if pid != 3 for v in c.views(pid) if v.node_id == paused)
    c.resume(3)
    c.run_for(60.0)
    assert alive_counts(c) == [N] * N
    assert c.core(3).incarnation > inc_before
    assert c.observers(MemberRecovered, 3) == set(range(N)) - {3}


def test_partition_heals_to_full_membership() -> None:
    c = build(n=12, seed=9)
    start = c.now
    c.partition(start, start + 180.0, [list(range(0, 12, 2)), list(range(1, 12, 2))])
    c.loop.run_until(start + 179.0)
    assert alive_counts(c) == [6] * 12
    c.loop.run_until(start + 300.0)
    assert alive_counts(c) == [12] * 12


def test_graceful_leave_is_seen_as_left_not_failed() -> None:
    c = build(n=8, seed=10)
    leaver = c.core(2)
    c.driver.call(2, leaver.leave)
    c.run_for(c.config.leave_propagate_delay)
    assert leaver.left_done(c.now)
    c.crash(2)
    c.run_for(60.0)
    assert c.observers(MemberLeft, 2) == set(range(8)) - {2}
    assert not any(isinstance(e, MemberFailed) for _, _, e in c.events)


def test_restart_with_persisted_identity_recovers() -> None:
    c = build(n=8, seed=11)
    old = c.core(4).incarnation
    c.crash(4)
    c.run_for(60.0)
    c.restart(4)  # incarnation: stored + 1
    c.run_for(20.0)
    assert c.core(4).incarnation > old
    assert alive_counts(c) == [8] * 8
    assert c.observers(MemberRecovered, 4) == set(range(8)) - {4}


def test_same_seed_same_trace() -> None:
    def trace(seed: int) -> list[tuple[float, int, str]]:
        c = build(n=10, seed=seed)
        c.crash(1)
        c.run_for(40.0)
        return [(t, pid, type(e).__name__) for t, pid, e in c.events]

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)
