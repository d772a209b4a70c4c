"""The small SWIM building blocks on their own: suspicion timer, awareness, broadcast queue, metadata."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.bounds import MAX_META_BYTES
from engramp2p.swim.awareness import Awareness
from engramp2p.swim.broadcast import BroadcastQueue, encoded_size, retransmit_limit
from engramp2p.swim.core import push_pull_scale
from engramp2p.swim.messages import Alive, Dead, Suspect
from engramp2p.swim.meta import MemberMeta, MetaPublisher, decode_meta, encode_meta
from engramp2p.swim.state import IndexedSet
from engramp2p.swim.suspicion import (
    Suspicion,
    remaining_suspicion_time,
    required_confirmations,
    suspicion_timeout,
)


def nid(i: int) -> bytes:
    return i.to_bytes(16, "big")


# memberlist's suspicion_test.go table: (confirmations, k, elapsed, min, max) -> remaining.
@pytest.mark.parametrize(
    ("n", "k", "elapsed", "expected"),
    [
        (0, 3, 0.0, 30.0),
        (1, 3, 2.0, 14.0),
        (2, 3, 3.0, 4.81),
        (3, 3, 4.0, -2.0),
        (4, 3, 5.0, -3.0),
        (5, 3, 10.0, -8.0),
    ],
)
def test_remaining_suspicion_time_matches_memberlist_table(
    n: int, k: int, elapsed: float, expected: float
) -> None:
    assert remaining_suspicion_time(n, k, elapsed, 2.0, 30.0) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 4.0), (3, 4.0), (10, 4.0), (100, 8.0), (1000, 12.0), (10_000, 16.0)]
)
def test_suspicion_min_timeout_lan(n: int, expected: float) -> None:
    assert suspicion_timeout(4, n, 1.0) == pytest.approx(expected)
    assert 6 * suspicion_timeout(4, n, 1.0) == pytest.approx(6 * expected)


def test_required_confirmations_drop_to_zero_in_small_clusters() -> None:
    assert required_confirmations(4, 10) == 2
    assert required_confirmations(4, 4) == 2
    assert required_confirmations(4, 3) == 0  # n - 2 < k
    assert required_confirmations(3, 3) == 1


def test_suspicion_shrinks_with_independent_confirmations_only() -> None:
    s = Suspicion(100.0, nid(1), k=3, min_t=2.0, max_t=30.0)
    assert s.deadline == 130.0
    assert not s.confirm(nid(1))  # the originator does not confirm itself
    assert s.confirm(nid(2))
    assert s.deadline == pytest.approx(116.0)
    assert not s.confirm(nid(2))  # duplicates do not count
    assert s.confirm(nid(3))
    assert s.deadline == pytest.approx(107.81)
    assert s.confirm(nid(4))
    assert s.deadline == pytest.approx(102.0)
    assert not s.confirm(nid(5))  # k reached: nothing more to learn


def test_suspicion_without_possible_confirmers_waits_min() -> None:
    s = Suspicion(0.0, nid(1), k=0, min_t=4.0, max_t=24.0)
    assert s.deadline == 4.0
    assert not s.confirm(nid(2))


@given(st.lists(st.integers(-20, 20), max_size=50))
@settings(max_examples=200, deadline=None)
def test_awareness_stays_in_range(deltas: list[int]) -> None:
    a = Awareness(8)
    for d in deltas:
        score = a.apply_delta(d)
        assert 0 <= score <= 7
        assert a.scale_timeout(1.0) == pytest.approx(score + 1)


def test_retransmit_limit_and_push_pull_scale() -> None:
    assert [retransmit_limit(4, n) for n in (1, 9, 10, 100, 1000)] == [4, 4, 8, 12, 16]
    assert push_pull_scale(30.0, 32) == 30.0
    assert push_pull_scale(30.0, 100) == 90.0
    assert push_pull_scale(30.0, 1000) == 180.0


def test_queue_newer_news_about_a_member_replaces_older() -> None:
    q = BroadcastQueue()
    q.put(nid(1), Alive(1, nid(1), "a", "h", 1))
    q.put(nid(1), Suspect(1, nid(1), nid(2)))
    q.put(nid(2), Alive(1, nid(2), "b", "h", 2))
    assert len(q) == 2
    msgs, _ = q.take(1000, 10, 64)
    assert Suspect(1, nid(1), nid(2)) in msgs
    assert all(not (isinstance(m, Alive) and m.node == nid(1)) for m in msgs)


def test_queue_retransmit_limit_and_fewest_transmits_first() -> None:
    q = BroadcastQueue()
    old = Dead(1, nid(1), nid(9))
    q.put(nid(1), old)
    q.take(1000, 3, 1)  # old sent once
    new = Dead(1, nid(2), nid(9))
    q.put(nid(2), new)
    msgs, _ = q.take(1000, 3, 1)
    assert msgs == [new]  # zero transmits beats one
    sent = {nid(1): 1, nid(2): 1}
    while len(q):
        msgs, _ = q.take(1000, 3, 64)
        for m in msgs:
            sent[m.node] += 1
    assert sent == {nid(1): 3, nid(2): 3}


@given(st.lists(st.integers(1, 60), min_size=1, max_size=80), st.integers(20, 1400), st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_queue_take_respects_budget_and_count(names: list[int], budget: int, count: int) -> None:
    q = BroadcastQueue()
    for i, length in enumerate(names):
        q.put(nid(i), Alive(i, nid(i), "x" * length, "h", 1))
    msgs, used = q.take(budget, 4, count)
    assert len(msgs) <= count
    assert used == sum(encoded_size(m) for m in msgs) <= budget


def test_meta_round_trip_bound_and_hostile_bytes() -> None:
    meta = MemberMeta(roles=["storage"], capacity=10**9, spaces=["robots"])
    assert decode_meta(encode_meta(meta)) == meta
    assert decode_meta(b"") == MemberMeta()
    assert decode_meta(b"\xc1garbage") is None
    assert decode_meta(b"\x00" * (MAX_META_BYTES + 1)) is None
    with pytest.raises(ValueError):
        encode_meta(MemberMeta(extra={f"k{i}": "v" * 100 for i in range(16)}))


def test_meta_publisher_hook_updates_spaces_and_rejects_oversize() -> None:
    pub = MetaPublisher(MemberMeta(roles=["storage"]))
    data = pub.update(spaces=["a", "b"])
    assert decode_meta(data) == MemberMeta(roles=["storage"], spaces=["a", "b"])
    with pytest.raises(ValueError):
        pub.update(spaces=["s" * 64] * 9)
    assert pub.meta.spaces == ["a", "b"]
    assert math.isclose(len(pub.encoded), len(data))


@given(st.lists(st.integers(0, 30), max_size=40), st.lists(st.integers(0, 30), max_size=40))
def test_indexed_set_update_matches_adding_one_by_one(first: list[int], more: list[int]) -> None:
    bulk: IndexedSet[int] = IndexedSet()
    single: IndexedSet[int] = IndexedSet()
    for i in first:
        bulk.add(i)
        single.add(i)
    bulk.update(more)
    for i in more:
        single.add(i)
    assert list(bulk) == list(single) and len(bulk) == len(single)
    for i in set(first) | set(more):
        bulk.discard(i)
        assert i not in bulk
    assert len(bulk) == 0
