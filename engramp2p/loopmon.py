"""Event-loop lag: how late a 50 ms sleep wakes up, kept as a fixed-bucket histogram.

Lag is what every timer in the agent suffers: a probe timeout that fires 30 ms late turns a healthy
member into a suspect. A task that sleeps ``interval`` and measures its overshoot samples exactly that
delay (memberlist has no such gauge; Node.js's ``monitorEventLoopDelay`` is the same idea). The
histogram has fixed log-spaced buckets, so it costs a few hundred bytes however long the agent runs
and a percentile is read without keeping samples; a percentile is reported as its bucket's upper
bound, i.e. rounded *up* (pessimistic, never flattering).

Cost, measured on the project VM: each timer wake-up of an idle trio process costs ~0.4 ms of CPU
there, so sampling every 50 ms without pause (20 wake-ups/s) alone took 0.77 % of a core -- most of
the 1 % idle budget of an edge agent. So the monitor samples in bursts: ``burst`` seconds of 50 ms
sleeps every ``every`` seconds (1 s in 5 by default, ~4 wake-ups/s). Sustained lag, which is what
makes probes time out, shows in every burst; a single stall between bursts is caught by the second
gauge, ``TimerLagTap``, which costs no wake-up at all: it wraps the driver's core and records how
late each protocol deadline (probe timeout, suspicion timer, gossip tick) was actually served.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

import trio

from engramp2p.sansio import Action, Addr, Core

DEFAULT_INTERVAL = 0.050
DEFAULT_BURST = 1.0
DEFAULT_EVERY = 5.0
# Upper bounds of the buckets, milliseconds; the last bucket is everything above 2 s.
BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0,
)


class LagHistogram:
    """Counts of lag samples per bucket, plus the exact maximum and the sum (for the mean)."""

    def __init__(self, bounds_ms: tuple[float, ...] = BOUNDS_MS) -> None:
        self.bounds_ms = bounds_ms
        self.counts = [0] * (len(bounds_ms) + 1)
        self.n = 0
        self.max_ms = 0.0
        self.sum_ms = 0.0

    def record(self, lag_ms: float) -> None:
        lag_ms = max(0.0, lag_ms)
        self.counts[bisect.bisect_left(self.bounds_ms, lag_ms)] += 1
        self.n += 1
        self.sum_ms += lag_ms
        self.max_ms = max(self.max_ms, lag_ms)

    def percentile(self, q: float) -> float:
        """The upper bound of the bucket holding the ``q``-quantile (0 < q <= 1); the max if beyond."""
        if self.n == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self.bounds_ms[i], self.max_ms) if i < len(self.bounds_ms) else self.max_ms
        return self.max_ms

    def summary(self) -> dict[str, float]:
        """What ``info --json`` shows: sample count, mean, p50, p99 and max, in milliseconds."""
        return {
            "samples": float(self.n),
            "mean_ms": round(self.sum_ms / self.n, 3) if self.n else 0.0,
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "max_ms": round(self.max_ms, 3),
        }


class LagMonitor:
    """Run ``run`` in the agent's nursery; read ``histogram``. ``burst >= every`` samples without pause."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = trio.current_time,
        *,
        burst: float = DEFAULT_BURST,
        every: float = DEFAULT_EVERY,
    ) -> None:
        if interval <= 0 or burst <= 0 or every <= 0:
            raise ValueError("interval, burst and every must be > 0")
        self.interval = interval
        self.clock = clock
        self.burst = burst
        self.every = every
        self.histogram = LagHistogram()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            burst_start = self.clock()
            while self.clock() - burst_start < self.burst:
                start = self.clock()
                await trio.sleep(self.interval)
                self.histogram.record((self.clock() - start - self.interval) * 1000.0)
            pause = self.every - (self.clock() - burst_start)
            if pause > 0:
                await trio.sleep(pause)


class TimerLagTap:
    """A transparent ``Core`` wrapper recording how late the driver serves the core's deadlines.

    The driver asks ``next_deadline()`` and calls ``tick(now)`` once ``now`` has reached it; the gap is
    the lateness every protocol timer suffered, measured on wake-ups the agent makes anyway. A deadline
    that was already past when the core set it (a suspicion timeout shrunk by confirmations) is not
    lag and is not recorded: only deadlines later than the last ``now`` the core was given count.
    """

    def __init__(self, core: Core, histogram: LagHistogram | None = None) -> None:
        self.core = core
        self.histogram = histogram if histogram is not None else LagHistogram()
        self._deadline: float | None = None
        self._future = False  # the current deadline was ahead of the last ``now`` when first seen
        self._last_now = -math.inf

    def next_deadline(self) -> float | None:
        deadline = self.core.next_deadline()
        if deadline != self._deadline:
            self._deadline = deadline
            self._future = deadline is not None and deadline > self._last_now
        return deadline

    def tick(self, now: float) -> list[Action]:
        if self._future and self._deadline is not None and now >= self._deadline:
            self.histogram.record((now - self._deadline) * 1000.0)
            self._future = False
        self._last_now = now
        return self.core.tick(now)

    def handle_packet(self, now: float, src: Addr, msgs: Sequence[Any]) -> list[Action]:
        self._last_now = now
        return self.core.handle_packet(now, src, msgs)

    def handle_stream_request(self, now: float, src: Addr, msg: Any) -> tuple[Any | None, list[Action]]:
        self._last_now = now
        return self.core.handle_stream_request(now, src, msg)

    def handle_stream_reply(self, now: float, token: int, reply: Any | None) -> list[Action]:
        self._last_now = now
        return self.core.handle_stream_reply(now, token, reply)
