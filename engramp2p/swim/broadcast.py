"""The retransmit-limited broadcast queue, as memberlist's ``queue.go`` (TransmitLimitedQueue).

Membership news rides piggybacked on every packet we send anyway. Each item is sent at most
``RetransmitMult · ceil(log10(n+1))`` times, which is enough for epidemic spread to reach everyone with
high probability. Items sent fewer times go first (then larger ones, then newer ones), and a newer item
about the same member replaces the older one, so the queue holds at most one item per member.

Sizes are computed once when an item is queued, so filling a packet costs no encoding.
"""

from __future__ import annotations

import math
from itertools import compress
from typing import Any

import msgspec

_ENCODER = msgspec.msgpack.Encoder()
_ENCODE = _ENCODER.encode

PACKET_OVERHEAD = 3
"""msgpack array header of a compound: 1 byte up to 15 messages, 3 bytes up to 65 535."""

MAX_PACKET_MESSAGES = 64
_MIN_ITEM = 8  # no message in the union encodes smaller than this
_MAX_SKIPS = 8  # items too large for the space left before we stop looking


def encoded_size(msg: Any) -> int:
    """The msgpack size of one message, as it travels inside a compound."""
    return len(_ENCODER.encode(msg))


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """memberlist's ``retransmitLimit``: ``mult · ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


class _Item:
    __slots__ = ("key", "msg", "size", "live")

    def __init__(self, key: Any, msg: Any, size: int) -> None:
        self.key = key
        self.msg = msg
        self.size = size
        self.live = True


class BroadcastQueue:
    """At most one pending broadcast per key (a member's node_id); invalidated items are dropped lazily.

    Items live in buckets by transmit count; within a bucket the newest goes first. That is
    memberlist's order except its "larger first" tie-break, which we replace by skipping items that do
    not fit (a bucketed list costs O(1) per item where a heap costs O(log n) Python comparisons).
    """

    def __init__(self) -> None:
        self._buckets: list[list[_Item]] = [[]]
        # Read-only for others: a dict is the cheapest "anything queued?" test on the hot path.
        self.pending: dict[Any, _Item] = {}
        self._stale = 0

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, key: Any) -> bool:
        return key in self.pending

    def put(self, key: Any, msg: Any, size: int | None = None) -> None:
        """Queue ``msg``; it replaces whatever was queued under ``key``."""
        old = self.pending.get(key)
        if old is not None:
            old.live = False
            self._stale += 1
        item = _Item(key, msg, len(_ENCODE(msg)) if size is None else size)
        self.pending[key] = item
        self._buckets[0].append(item)

    def drop(self, key: Any) -> None:
        """Forget the item queued under ``key``, if any."""
        old = self.pending.pop(key, None)
        if old is not None:
            old.live = False
            self._stale += 1

    def take(self, budget: int, limit: int, max_count: int) -> tuple[list[Any], int]:
        """Messages fitting in ``budget`` bytes (at most ``max_count``); returns them and their total size.

        Each returned item counts one transmission; it leaves the queue after ``limit`` of them.

        Cost is O(items taken + stale items met + skips), never O(queue): buckets are consumed from
        their tail, and while nothing was skipped the consumed tail is cut off with one ``del`` instead
        of one ``pop`` per item (this loop runs for every packet sent, ~25 items each while a cluster
        forms, so per-item work is what matters).
        """
        if not self.pending or max_count <= 0 or budget < _MIN_ITEM:
            return [], 0
        out: list[Any] = []
        promoted: list[tuple[int, list[_Item]]] = []  # (destination bucket, items in the order taken)
        remaining = budget
        room = max_count
        skips = 0
        stale_met = 0
        by_key = self.pending
        buckets = self._buckets
        # Only the non-empty buckets, skipped in C: after a few rounds the items sit in the high
        # buckets and walking the empty ones cost more than taking the items.
        for t in compress(range(len(buckets)), buckets):
            bucket = buckets[t]
            last = t + 1 >= limit
            moved: list[_Item] = []
            i = len(bucket) - 1
            cut = i + 1  # bucket[cut:] is consumed (taken or stale) while ``tail`` holds
            tail = True
            while i >= 0:
                item = bucket[i]
                if not item.live:
                    stale_met += 1
                    if tail:
                        cut = i
                    else:
                        bucket.pop(i)
                elif (size := item.size) > remaining:
                    if tail:
                        del bucket[cut:]
                        tail = False
                    skips += 1
                    if skips >= _MAX_SKIPS:
                        break
                else:
                    if tail:
                        cut = i
                    else:
                        bucket.pop(i)
                    out.append(item.msg)
                    remaining -= size
                    if last:
                        item.live = False
                        del by_key[item.key]
                    else:
                        moved.append(item)
                    room -= 1
                    if room == 0 or remaining < _MIN_ITEM:
                        break
                i -= 1
            if tail:
                del bucket[cut:]
            if moved:
                promoted.append((t + 1, moved))
            if room == 0 or remaining < _MIN_ITEM or skips >= _MAX_SKIPS:
                break
        self._stale -= stale_met
        # Promote after the scan, so an item is sent at most once per packet.
        for t, moved in promoted:
            if len(buckets) <= t:
                buckets.append([])
            buckets[t].extend(moved)
        if self._stale > 2 * len(self.pending) + 64:
            self._buckets = [[i for i in b if i.live] for b in buckets]
            self._stale = 0
        return out, budget - remaining
