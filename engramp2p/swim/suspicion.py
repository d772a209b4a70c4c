"""One suspicion timer, as memberlist's ``suspicion.go`` (Lifeguard's dynamic suspicion).

A suspect is declared dead after a timeout that starts at ``max`` and shrinks towards ``min`` as
independent members confirm the suspicion: with few confirmations we wait long (we might be the one
with the bad link), with ``k`` of them we wait only ``min``. The object is pure: it holds the
deadline, and whoever owns it arranges to be woken then.
"""

from __future__ import annotations

import math


def suspicion_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """memberlist's minimum timeout: ``SuspicionMult · max(1, log10 n) · ProbeInterval``."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    # memberlist keeps three decimals of the node scale (it works in integer durations).
    return suspicion_mult * (math.floor(node_scale * 1000) / 1000) * probe_interval


def required_confirmations(suspicion_mult: int, n: int) -> int:
    """``k = SuspicionMult − 2``, or 0 when the cluster is too small to supply k other witnesses."""
    k = suspicion_mult - 2
    return 0 if n - 2 < k or k < 0 else k


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_t: float, max_t: float) -> float:
    """memberlist's ``remainingSuspicionTime``: time left after ``n`` of ``k`` confirmations.

    The full timeout is ``max − (ln(n+1)/ln(k+1))·(max − min)`` rounded down to milliseconds and never
    below ``min``; the result subtracts the time already ``elapsed`` (it may be negative: fire now).
    """
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_t - frac * (max_t - min_t)
    timeout = math.floor(1000.0 * raw) / 1000.0
    timeout = max(timeout, min_t)
    return timeout - elapsed


class Suspicion:
    """The timer for one suspect member, started at ``start`` by the member ``originator``."""

    __slots__ = ("start", "k", "min", "max", "n", "deadline", "_confirmers")

    def __init__(self, start: float, originator: bytes, k: int, min_t: float, max_t: float) -> None:
        self.start = start
        self.k = k
        self.min = min_t
        self.max = max_t
        self.n = 0
        # With nobody able to confirm there is no reason to wait longer than the minimum.
        self.deadline = start + (max_t if k >= 1 else min_t)
        self._confirmers = {originator}

    def confirm(self, source: bytes) -> bool:
        """Count an independent confirmation; True if it was new (and the deadline moved earlier)."""
        if self.n >= self.k or source in self._confirmers:
            return False
        self._confirmers.add(source)
        self.n += 1
        self.deadline = self.start + remaining_suspicion_time(self.n, self.k, 0.0, self.min, self.max)
        return True
