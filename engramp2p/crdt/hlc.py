"""Hybrid logical clock, packed ``(wall_ms << 16) | logical`` in one unsigned 64-bit integer.

The packed form makes the Kulkarni et al. (OPODIS 2014) rules two ``max`` expressions:
``tick = max(pt << 16, last + 1)`` and ``observe(m) = max(pt << 16, last + 1, m + 1)``. A logical
counter that overflows carries into the millisecond field (the clock borrows a millisecond from the
future), which keeps it monotone and causal.

The HLC orders *time* semantics only (refractory checks, recency, decay); it never decides a CRDT merge,
so a peer with a wild clock can skew recency but cannot lose data. A remote timestamp more than
``max_offset_ms`` ahead of our physical clock is therefore not used to advance the clock, while the data
carrying it is still accepted (rejecting it would stall that origin's contiguous log prefix).

The physical clock is injected (``now_ms``) so tests and the simulator control time; the default reads
the system wall clock, which only the composition root should rely on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
HLC_MAX = (1 << 64) - 1
DEFAULT_MAX_OFFSET_MS = 60_000


def system_ms() -> int:
    """Wall clock in milliseconds since the epoch (the default physical clock)."""
    return time.time_ns() // 1_000_000


def hlc_pack(wall_ms: int, logical: int = 0) -> int:
    """Pack a wall time and logical counter; both must fit their fields."""
    if not 0 <= logical <= LOGICAL_MASK:
        raise ValueError(f"logical counter {logical} outside 0..{LOGICAL_MASK}")
    if not 0 <= wall_ms < 1 << (64 - LOGICAL_BITS):
        raise ValueError(f"wall time {wall_ms} ms outside the 48-bit field")
    return (wall_ms << LOGICAL_BITS) | logical


def hlc_wall_ms(h: int) -> int:
    """The millisecond part of a packed HLC."""
    return h >> LOGICAL_BITS


def hlc_logical(h: int) -> int:
    """The logical counter part of a packed HLC."""
    return h & LOGICAL_MASK


def elapsed_ms(now_hlc: int, h: int) -> int:
    """Milliseconds from ``h`` to ``now_hlc``, never negative (for refractory checks across peers).

    After ``observe(h)`` every later ``tick()`` exceeds ``h``, so for trusted inputs the error is at most
    the real clock offset between the two peers.
    """
    return max(0, hlc_wall_ms(now_hlc) - hlc_wall_ms(h))


class HLC:
    """One peer's hybrid logical clock; ``last`` is the largest timestamp issued or observed."""

    __slots__ = ("last", "max_offset_ms", "now_ms")

    def __init__(
        self,
        start: int = 0,
        max_offset_ms: int = DEFAULT_MAX_OFFSET_MS,
        now_ms: Callable[[], int] = system_ms,
    ) -> None:
        # ``start`` is the largest HLC found in the local store, so a restart never reissues a timestamp
        # even if the wall clock went backwards while we were down.
        if not 0 <= start <= HLC_MAX:
            raise ValueError(f"start HLC {start} outside 0..2**64-1")
        if max_offset_ms < 0:
            raise ValueError("max_offset_ms must be >= 0")
        self.last = start
        self.max_offset_ms = max_offset_ms
        self.now_ms = now_ms

    def tick(self) -> int:
        """Timestamp for a local or send event: strictly above everything issued or observed."""
        self.last = max(self.now_ms() << LOGICAL_BITS, self.last + 1)
        return self.last

    def observe(self, m: int) -> bool:
        """Receive event carrying remote timestamp ``m``.

        Returns False, leaving the clock untouched, when ``m`` is more than ``max_offset_ms`` ahead of
        our physical clock: the caller keeps the data and flags the peer's clock as suspect.
        """
        pt = self.now_ms()
        if hlc_wall_ms(m) - pt > self.max_offset_ms:
            return False
        self.last = max(pt << LOGICAL_BITS, self.last + 1, m + 1)
        return True

    def peek(self) -> int:
        """The last timestamp issued or observed, without ticking."""
        return self.last
