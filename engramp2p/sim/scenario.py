"""A membership scenario end to end: form a cluster, inject faults on schedule, measure, report.

This is what ``engramp2p simulate``, ``tools/bench_sim.py`` and the simulation tests share. A run has two
phases: *formation* (every peer starts within ``stagger`` seconds and joins the seeds, or with ``formed``
all start at once already knowing each other; it ends when every live peer holds every other one alive)
and the *measured phase* of ``duration`` virtual seconds, in which
fault times are given relative to its start. The report is a plain dict (JSON-ready).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from engramp2p.sim.cluster import SwimCluster
from engramp2p.sim.network import LINK_PROFILES, LinkProfile
from engramp2p.swim.config import Profile, SwimConfig

E_RATIO = math.e / (math.e - 1)
"""SWIM's expected number of protocol periods until some member first probes a failed one."""


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """Cut ``fraction`` of the peers off from the rest at ``start`` for ``duration`` seconds."""

    start: float
    duration: float
    fraction: float = 0.5


@dataclass(frozen=True, slots=True)
class PauseSpec:
    """SIGSTOP ``count`` random peers at ``start``, SIGCONT them ``duration`` seconds later."""

    start: float
    duration: float
    count: int = 1


@dataclass(frozen=True, slots=True)
class RestartSpec:
    """Crash ``fraction`` of the peers at ``start`` and restart them ``downtime`` seconds later."""

    start: float
    fraction: float
    downtime: float = 5.0


@dataclass(slots=True)
class Scenario:
    nodes: int = 50
    duration: float = 120.0
    profile: Profile = "lan"
    loss: float = 0.0
    duplicate: float = 0.0
    kills: int = 0
    kill_at: float = 10.0
    joins: int = 0
    partitions: list[PartitionSpec] = field(default_factory=list)
    pauses: list[PauseSpec] = field(default_factory=list)
    restarts: list[RestartSpec] = field(default_factory=list)
    one_way: int = 0
    """Links cut in one direction only (A -> B dropped, B -> A fine) for the whole measured phase."""
    seed: int = 1
    fast_confirm: bool = True
    stagger: float = 5.0
    formed: bool = False
    """Start from a formed cluster (every table complete, ``SwimCluster.start_formed``) instead of
    a mass join within ``stagger`` seconds: for the steady state of a large cluster, whose mass join
    costs as much simulation time as ten minutes of running."""
    formation_timeout: float = 300.0
    check_every: float = 1.0
    trace: bool = False
    config: SwimConfig | None = None
    """Overrides ``profile``'s SWIM settings (``fast_confirm`` is still applied)."""
    link: LinkProfile | None = None
    """Overrides ``profile``'s network shape (``loss`` and ``duplicate`` are still applied)."""

    def swim_config(self) -> SwimConfig:
        base = self.config if self.config is not None else SwimConfig.profile(self.profile)
        return msgspec.structs.replace(base, fast_confirm=self.fast_confirm)

    def link_profile(self) -> LinkProfile:
        base = self.link if self.link is not None else LINK_PROFILES[self.profile]
        return LinkProfile(
            base.base, base.spread, base.jitter_median, base.jitter_sigma, self.loss, self.duplicate
        )


Progress = Callable[[str, float, float], None]
"""``progress(phase, virtual_now, virtual_end)`` -- called about once per check interval."""


@contextlib.contextmanager
def _collections_between_checks() -> Iterator[Callable[[], None]]:
    """Pause automatic cyclic garbage collection while events run; yield a young collection to call
    between check intervals.

    A simulation allocates millions of short-lived tuples, messages and actions, so automatic
    collections ran thousands of times and kept re-walking the long-lived member tables (about a
    fifth of the run time at 400 peers). Events create no reference cycles of their own, so collecting the
    young generations at a check once 200,000 tracked objects have piled up keeps memory flat; the
    previous setting is restored on exit.
    """

    def collect_young() -> None:
        if gc.get_count()[0] > 200_000:
            gc.collect(1)

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield collect_young
    finally:
        if was_enabled:
            gc.enable()


class Simulation:
    """One scenario on one ``SwimCluster``; ``run()`` returns the report, ``cluster`` stays inspectable."""

    def __init__(self, scenario: Scenario) -> None:
        sc = self.scenario = scenario
        if sc.nodes < 1:
            raise ValueError("a simulation needs at least one node")
        self.config = sc.swim_config()
        self.cluster = SwimCluster(
            sc.nodes + sc.joins, config=self.config, link=sc.link_profile(), seed=sc.seed, trace=sc.trace
        )
        self.rng = random.Random(f"{sc.seed}:scenario")
        self.formation_s: float | None = None
        self.t0 = 0.0
        self.last_fault_end = 0.0
        self.converged_after_s: float | None = None
        self.killed: list[int] = []
        self.paused: list[int] = []
        self.restarted: list[int] = []
        self.late: list[int] = list(range(sc.nodes, sc.nodes + sc.joins))
        self._live_member_seconds = 0.0

    # -- phases ------------------------------------------------------------------------------------------

    def form(self, progress: Progress | None = None) -> None:
        """Start the first ``nodes`` peers and run until they all see each other alive."""
        sc, cluster, loop = self.scenario, self.cluster, self.cluster.loop
        if sc.formed:
            loop.at(0.0, cluster.start_formed, range(sc.nodes))
        else:
            loop.at(0.0, cluster.start, 0)
            for pid in range(1, sc.nodes):
                loop.at(self.rng.uniform(0.0, sc.stagger), cluster.start, pid)
        settle = 0.0 if sc.formed else sc.stagger
        t = 0.0
        with _collections_between_checks() as collect:
            while t < sc.formation_timeout:
                t += sc.check_every
                loop.run_until(t)
                collect()
                if progress is not None:
                    progress("formation", t, sc.formation_timeout)
                if t >= settle and cluster.looks_converged() and cluster.convergence_gaps() == 0:
                    self.formation_s = t
                    break
        self.t0 = loop.now

    def schedule_faults(self) -> None:
        sc, cluster, rng = self.scenario, self.cluster, self.rng
        loop, t0 = cluster.loop, self.t0
        seeds = set(range(len(cluster.seed_addrs)))
        pool = [p for p in range(sc.nodes) if p not in seeds]
        rng.shuffle(pool)
        ends = [t0]
        self.killed = pool[: sc.kills]
        for pid in self.killed:
            when = t0 + sc.kill_at + rng.random()
            loop.at(when, cluster.kill, pid)
            ends.append(when)
        spare = pool[sc.kills :]
        for spec in sc.pauses:
            chosen, spare = spare[: spec.count], spare[spec.count :]
            for pid in chosen:
                loop.at(t0 + spec.start, cluster.pause, pid)
                loop.at(t0 + spec.start + spec.duration, cluster.resume, pid)
                self.paused.append(pid)
            ends.append(t0 + spec.start + spec.duration)
        for spec in sc.partitions:
            everyone = list(range(sc.nodes + sc.joins))
            rng.shuffle(everyone)
            cut = round(len(everyone) * spec.fraction)
            groups = [sorted(everyone[:cut]), sorted(everyone[cut:])]
            cluster.partition(t0 + spec.start, t0 + spec.start + spec.duration, groups)
            ends.append(t0 + spec.start + spec.duration)
        for spec in sc.restarts:
            candidates = [p for p in range(sc.nodes) if p not in self.killed]
            chosen = sorted(rng.sample(candidates, round(len(candidates) * spec.fraction)))
            for pid in chosen:
                loop.at(t0 + spec.start, cluster.crash_for_restart, pid)
                loop.at(t0 + spec.start + spec.downtime, cluster.restart, pid)
            self.restarted.extend(chosen)
            ends.append(t0 + spec.start + spec.downtime)
        for _ in range(sc.one_way):
            src, dst = rng.sample(range(sc.nodes), 2)
            cluster.block(src, dst, t0, t0 + sc.duration)
            ends.append(t0 + sc.duration)
        if self.late:
            window = max(1.0, sc.duration / 2 - sc.kill_at)
            for pid in self.late:
                when = t0 + sc.kill_at + rng.uniform(0.0, window)
                loop.at(when, self._late_join, pid)
                ends.append(when)
        self.last_fault_end = max(ends)

    def _late_join(self, pid: int) -> None:
        self.cluster.recorder.join(pid, self.cluster.loop.now)
        self.cluster.start(pid)

    def measure(self, progress: Progress | None = None) -> None:
        sc, cluster, loop = self.scenario, self.cluster, self.cluster.loop
        end = self.t0 + sc.duration
        t = self.t0
        with _collections_between_checks() as collect:
            while t < end:
                step = min(sc.check_every, end - t)
                self._live_member_seconds += step * len(cluster.up())
                t += step
                loop.run_until(t)
                collect()
                if progress is not None:
                    progress("measure", t - self.t0, sc.duration)
                if (
                    self.converged_after_s is None
                    and t >= self.last_fault_end
                    and cluster.looks_converged()
                    and cluster.convergence_gaps() == 0
                ):
                    self.converged_after_s = t - self.last_fault_end

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        wall0 = time.perf_counter()
        self.form(progress)
        before = self._traffic()
        self.schedule_faults()
        self.measure(progress)
        wall = time.perf_counter() - wall0
        return self.report(before, wall)

    # -- report ------------------------------------------------------------------------------------------

    def _traffic(self) -> tuple[int, int, int]:
        slots = self.cluster.driver.slots
        return (
            sum(s.stats.packets_sent for s in slots),
            sum(s.stats.bytes_sent for s in slots),
            sum(s.stats.stream_bytes for s in slots),
        )

    def report(self, before: tuple[int, int, int], wall: float) -> dict[str, Any]:
        sc, cluster, cfg = self.scenario, self.cluster, self.config
        packets, udp_bytes, stream_bytes = (a - b for a, b in zip(self._traffic(), before, strict=True))
        member_s = max(self._live_member_seconds, 1e-9)
        n = sc.nodes
        min_s, max_s = cluster.min_suspicion_timeout(n), cluster.max_suspicion_timeout(n)
        survivors = set(cluster.up())
        out: dict[str, Any] = {
            "scenario": {
                "nodes": sc.nodes,
                "duration_s": sc.duration,
                "profile": sc.profile,
                "loss": sc.loss,
                "duplicate": sc.duplicate,
                "kills": sc.kills,
                "joins": sc.joins,
                "partitions": [[p.start, p.duration, p.fraction] for p in sc.partitions],
                "pauses": [[p.start, p.duration, p.count] for p in sc.pauses],
                "restarts": [[r.start, r.fraction, r.downtime] for r in sc.restarts],
                "one_way": sc.one_way,
                "seed": sc.seed,
                "fast_confirm": sc.fast_confirm,
                "formed": sc.formed,
            },
            "expected": {
                "probe_interval_s": cfg.probe_interval,
                "first_probe_of_failed_s": E_RATIO * cfg.probe_interval,
                "suspicion_min_s": min_s,
                "suspicion_max_s": max_s,
                "detection_bound_s": max_s + 2 * cfg.probe_interval,
                "gossip_rounds_log_n": math.log(max(n, 2)) / math.log(cfg.gossip_nodes + 1),
                "gossip_interval_s": cfg.gossip_interval,
            },
            "formation_s": self.formation_s,
            **cluster.recorder.summary(survivors, frozenset(self.paused + self.restarted)),
            "converged": cluster.looks_converged() and cluster.convergence_gaps() == 0,
            "converged_after_last_fault_s": self.converged_after_s,
            "traffic": {
                "msgs_per_member_s": packets / member_s,
                "bytes_per_member_s": udp_bytes / member_s,
                "stream_bytes_per_member_s": stream_bytes / member_s,
            },
            "drops": dataclasses.asdict(cluster.driver.drops),
            "virtual_s": cluster.loop.now,
            "events": cluster.loop.events_run,
            "wall_s": wall,
        }
        if sc.trace:
            out["trace_hash"] = cluster.loop.trace_hash()
        return out


def run_scenario(scenario: Scenario, progress: Progress | None = None) -> dict[str, Any]:
    return Simulation(scenario).run(progress)
