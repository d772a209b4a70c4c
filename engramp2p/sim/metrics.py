"""What a membership simulation measured: detection, dissemination, false positives, traffic.

The recorder sees normalized observations ``(time, observer, kind, subject)`` (peers as ints) and the
ground truth the harness tells it (who was killed or joined when, and whether a peer was disturbed), so the
figures do not depend on how a particular core names its events.

Definitions, chosen to match the SWIM paper and memberlist's docs:

- *first suspicion*: kill -> the first ``suspected`` anywhere (the paper's "first detection", expected
  e/(e-1) probe periods plus a probe timeout);
- *first detection*: kill -> the first ``failed`` anywhere; *all survivors*: kill -> each survivor's own
  ``failed`` (one sample per survivor and kill);
- *failure dissemination*: first ``failed`` -> the last survivor's ``failed``;
- *join dissemination*: the joiner's join call -> the last live peer's ``joined``;
- *false positive*: ``failed`` about a peer that was up, unpaused and unpartitioned over the whole window
  before it (the observer undisturbed too); ``false suspicions`` the same for ``suspected``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


def percentiles(samples: Iterable[float]) -> dict[str, float | int | None]:
    """Nearest-rank p50/p90/p99/max (``None`` when there are no samples) and the sample count."""
    values = sorted(samples)
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    return {"n": len(values), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": values[-1]}


@dataclass(slots=True)
class MembershipRecorder:
    """Collects observations during a run; ``summary`` turns them into the reported figures."""

    clean: Callable[[int, float], bool]
    """``clean(peer, t)``: the peer was up, unpaused and unpartitioned throughout the window ending at t."""

    started_at: dict[int, float] = field(default_factory=dict)
    """Each peer's latest start: a peer (re)started after an event is not expected to have seen it."""
    killed_at: dict[int, float] = field(default_factory=dict)
    joined_at: dict[int, float] = field(default_factory=dict)
    first_suspect: dict[int, float] = field(default_factory=dict)
    failed_by: dict[int, dict[int, float]] = field(default_factory=dict)
    known_by: dict[int, dict[int, float]] = field(default_factory=dict)
    false_positives: list[tuple[float, int, int]] = field(default_factory=list)
    false_suspicions: int = 0
    observations: int = 0

    def start(self, peer: int, t: float) -> None:
        self.started_at[peer] = t

    def _watchers(self, survivors: set[int], subject: int, since: float) -> list[int]:
        started = self.started_at
        return sorted(p for p in survivors if p != subject and started.get(p, 0.0) <= since)

    def kill(self, peer: int, t: float) -> None:
        self.killed_at[peer] = t
        self.failed_by[peer] = {}

    def join(self, peer: int, t: float) -> None:
        self.joined_at[peer] = t
        self.known_by[peer] = {}

    def observe(self, t: float, observer: int, kind: str, subject: int) -> None:
        self.observations += 1
        if kind == "failed":
            killed = self.killed_at.get(subject)
            if killed is not None and t >= killed:
                self.failed_by[subject].setdefault(observer, t)
            elif self.clean(subject, t) and self.clean(observer, t):
                self.false_positives.append((t, observer, subject))
        elif kind == "suspected":
            killed = self.killed_at.get(subject)
            if killed is not None and t >= killed:
                self.first_suspect.setdefault(subject, t)
            elif self.clean(subject, t) and self.clean(observer, t):
                self.false_suspicions += 1
        elif kind in ("joined", "alive"):
            joined = self.joined_at.get(subject)
            if joined is not None and t >= joined:
                self.known_by[subject].setdefault(observer, t)

    def summary(self, survivors: set[int], exclude: frozenset[int] = frozenset()) -> dict[str, Any]:
        """Figures over the run; ``survivors`` are the peers up at the end. Of those, the ones already
        running when something happened are the ones that must have noticed it; ``exclude`` are peers
        whose own faults (pauses, restarts) would make their lateness the fault's, not the protocol's."""
        survivors = survivors - exclude
        first_suspect, first_detect, all_detect, fail_spread = [], [], [], []
        undetected = 0
        for subject, t_kill in sorted(self.killed_at.items()):
            if subject in self.first_suspect:
                first_suspect.append(self.first_suspect[subject] - t_kill)
            seen = self.failed_by[subject]
            if seen:
                first = min(seen.values())
                first_detect.append(first - t_kill)
            watchers = self._watchers(survivors, subject, t_kill)
            times = [seen[o] for o in watchers if o in seen]
            all_detect.extend(t - t_kill for t in times)
            undetected += len(watchers) - len(times)
            if seen and len(times) == len(watchers):
                fail_spread.append(max(times) - min(seen.values()))
        join_spread = []
        incomplete_joins = 0
        for subject, t_join in sorted(self.joined_at.items()):
            watchers = self._watchers(survivors, subject, t_join)
            seen = self.known_by[subject]
            if subject in survivors and all(o in seen for o in watchers):
                join_spread.append(max((seen[o] for o in watchers), default=t_join) - t_join)
            else:
                incomplete_joins += 1
        return {
            "kills": len(self.killed_at),
            "first_suspicion_s": percentiles(first_suspect),
            "first_detection_s": percentiles(first_detect),
            "all_survivors_detection_s": percentiles(all_detect),
            "undetected_pairs": undetected,
            "failure_dissemination_s": percentiles(fail_spread),
            "joins": len(self.joined_at),
            "join_dissemination_s": percentiles(join_spread),
            "incomplete_joins": incomplete_joins,
            "false_positives": len(self.false_positives),
            "false_suspicions": self.false_suspicions,
        }
