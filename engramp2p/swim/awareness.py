"""Lifeguard's local health score ("awareness"), as memberlist's ``awareness.go``.

A peer that is itself slow (overloaded CPU, a saturated link) misses acks and would wrongly accuse
healthy members. The score counts recent evidence of our own trouble and stretches how long we wait
for a probe before suspecting, so a sick peer accuses less. It rises on failed probes that got fewer
nacks than expected and when we have to refute a claim about ourselves; it falls on each successful
probe.
"""

from __future__ import annotations


class Awareness:
    """Health score in ``0 .. max_multiplier - 1``; 0 is healthy."""

    __slots__ = ("_max", "score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("awareness max multiplier must be >= 1")
        self._max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> int:
        """Add ``delta``, clamped to the range; returns the new score."""
        self.score = min(self._max - 1, max(0, self.score + delta))
        return self.score

    def scale_timeout(self, timeout: float) -> float:
        """``timeout × (score + 1)``: the probe deadline of a peer that doubts its own health."""
        return timeout * (self.score + 1)
