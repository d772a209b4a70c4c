"""Version vectors and the shard log: duplicates, reordering, the reorder-buffer bound, forks, and the
Scuttlebutt planner (never skips within an origin, respects the byte budget, always progresses)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.entry import ZERO_HASH, Entry, Retract
from engramp2p.crdt.log import Outcome, Range, ShardLog, approx_size, plan_missing, take_within_budget
from engramp2p.crdt.vv import VersionVector

SETTINGS = settings(max_examples=200, deadline=None)
ORIGINS = [bytes([i]) * 16 for i in (1, 2, 3)]
X, Y = b"x" * 16, b"y" * 16


def build_chains(lengths: list[int], space: str = "s") -> tuple[ShardLog, dict[tuple[bytes, int], Entry]]:
    """A source log holding ``lengths[i]`` entries of origin i (interleaved), and the entries by dot."""
    src = ShardLog(space, 0)
    store: dict[tuple[bytes, int], Entry] = {}
    left = dict(zip(ORIGINS, lengths, strict=False))
    hlc = 0
    while any(left.values()):
        for o in ORIGINS:
            if left.get(o):
                left[o] -= 1
                hlc += 1
                e = src.append_local(o, hlc, Retract(X, Y))
                store[(o, e.seq)] = e
    return src, store


def fetch_from(store: dict[tuple[bytes, int], Entry]):
    def fetch(origin: bytes, first: int, last: int):
        for seq in range(first, last + 1):
            e = store.get((origin, seq))
            if e is None:
                return
            yield e

    return fetch


# -- version vectors --------------------------------------------------------------------------------


def test_vv_advance_is_contiguous_and_round_trips() -> None:
    vv = VersionVector()
    h1, h2 = b"\x01" * 16, b"\x02" * 16
    vv.advance(ORIGINS[0], 1, h1)
    vv.advance(ORIGINS[0], 2, h2)
    with pytest.raises(ValueError):
        vv.advance(ORIGINS[0], 4, h2)
    assert vv.get(ORIGINS[0]) == (2, h2)
    assert vv.get(ORIGINS[1]) == (0, ZERO_HASH) and vv.head_of(ORIGINS[1]) == ZERO_HASH
    back = VersionVector.from_pairs(vv.to_pairs())
    assert back == vv and back.to_pairs() == [(ORIGINS[0], 2, h2)]
    other = VersionVector.from_pairs([(ORIGINS[0], 2, h1), (ORIGINS[1], 0, h1)])
    assert vv.covers(other) and other.covers(vv)
    assert vv.forked_with(other) == [ORIGINS[0]]
    assert not VersionVector().covers(vv) and vv.covers(VersionVector())


@pytest.mark.parametrize(
    "pairs",
    [
        [(b"short", 1, b"\x00" * 16)],
        [(ORIGINS[0], 1, b"\x00" * 3)],
        [(ORIGINS[0], -1, b"\x00" * 16)],
        [(ORIGINS[0], 1, b"\x00" * 16), (ORIGINS[0], 2, b"\x00" * 16)],
        [(ORIGINS[0], 0, b"\x00" * 16), (ORIGINS[0], 2, b"\x00" * 16)],
    ],
)
def test_vv_from_pairs_rejects_malformed(pairs: list) -> None:
    with pytest.raises(ValueError):
        VersionVector.from_pairs(pairs)


# -- offer: duplicates, reordering, buffer bound ----------------------------------------------------


@SETTINGS
@given(
    st.lists(st.integers(0, 12), min_size=3, max_size=3),
    st.integers(1, 40),
    st.randoms(use_true_random=False),
)
def test_any_order_with_duplicates_converges(lengths: list[int], limit: int, rnd: random.Random) -> None:
    src, store = build_chains(lengths)
    entries = list(store.values())
    arrivals = entries + rnd.sample(entries, k=len(entries) // 2)  # duplicates
    rnd.shuffle(arrivals)
    dst = ShardLog("s", 0, reorder_limit=limit)
    applied: list[Entry] = []
    for e in arrivals:
        r = dst.offer(e)
        assert r.outcome is not Outcome.FORK
        assert len(r.applied) == len(r.hashes)
        if r.outcome is Outcome.APPLIED:
            assert r.applied[0] is e
        else:
            assert not r.applied
        applied.extend(r.applied)
        assert dst.buffered_count() <= limit
    # Anti-entropy re-ships what the buffer had to reject; entries come in order then.
    for o in ORIGINS:
        for seq in range(dst.vv.seq_of(o) + 1, src.vv.seq_of(o) + 1):
            r = dst.offer(store[(o, seq)])
            applied.extend(r.applied)
    assert dst.vv == src.vv
    assert dst.buffered_count() == 0 and dst.buffered_bytes() == 0
    for o in ORIGINS:
        assert [e.seq for e in applied if e.origin == o] == list(range(1, src.vv.seq_of(o) + 1))
    assert dst.stats.applied == len(entries)
    if entries:
        assert dst.offer(entries[0]).outcome is Outcome.DUPLICATE


def test_buffer_drains_in_order_and_rejects_when_full() -> None:
    src, store = build_chains([6, 3, 0])
    o, p = ORIGINS[0], ORIGINS[1]
    dst = ShardLog("s", 0, reorder_limit=3)
    assert dst.offer(store[(o, 3)]).outcome is Outcome.BUFFERED
    assert dst.offer(store[(o, 3)]).outcome is Outcome.DUPLICATE
    assert dst.offer(store[(o, 2)]).outcome is Outcome.BUFFERED
    assert dst.offer(store[(p, 2)]).outcome is Outcome.BUFFERED
    assert dst.offer(store[(p, 3)]).outcome is Outcome.REJECTED  # full: the newcomer is refused
    assert dst.stats.rejected_full == 1 and dst.buffered_count() == 3
    r = dst.offer(store[(o, 1)])
    assert r.outcome is Outcome.APPLIED and [e.seq for e in r.applied] == [1, 2, 3]
    assert r.hashes == [src.hash_of(e) for e in r.applied]
    assert r.hashes[-1] == dst.vv.head_of(o)
    assert dst.vv.seq_of(o) == 3 and dst.buffered_count() == 1
    assert dst.offer(store[(o, 4)]).outcome is Outcome.APPLIED
    far = ShardLog("s", 0, reorder_limit=3)
    assert far.offer(store[(o, 5)]).outcome is Outcome.REJECTED  # more than the limit ahead
    assert far.stats.rejected_far == 1


def test_reorder_buffer_byte_bound() -> None:
    _, store = build_chains([5, 0, 0])
    o = ORIGINS[0]
    dst = ShardLog("s", 0, reorder_limit=100, reorder_bytes=2 * approx_size(store[(o, 2)]))
    assert dst.offer(store[(o, 2)]).outcome is Outcome.BUFFERED
    assert dst.offer(store[(o, 3)]).outcome is Outcome.BUFFERED
    assert dst.offer(store[(o, 4)]).outcome is Outcome.REJECTED
    assert dst.buffered_bytes() <= dst.reorder_bytes


# -- forks ------------------------------------------------------------------------------------------


def clone_fork() -> tuple[dict, dict]:
    """Two stores of one origin that diverge at seq 3 (a cloned SD card)."""
    o = ORIGINS[0]
    a, b = ShardLog("s", 0), ShardLog("s", 0)
    sa, sb = {}, {}
    for i in range(1, 6):
        ea = a.append_local(o, i, Retract(X, Y))
        eb = b.append_local(o, i, Retract(X, Y) if i < 3 else Retract(Y, X))
        sa[i], sb[i] = ea, eb
    assert sa[2] == sb[2] and sa[3] != sb[3]
    return sa, sb


def test_fork_at_head_quarantines_the_origin() -> None:
    sa, sb = clone_fork()
    dst = ShardLog("s", 0)
    for i in (1, 2, 3):
        assert dst.offer(sa[i]).outcome is Outcome.APPLIED
    assert dst.offer(sb[3]).outcome is Outcome.FORK
    assert ORIGINS[0] in dst.quarantined and dst.stats.forks == 1
    assert dst.offer(sa[4]).outcome is Outcome.QUARANTINED
    with pytest.raises(RuntimeError):
        dst.append_local(ORIGINS[0], 9, Retract(X, Y))


def test_fork_by_prev_mismatch_at_next_seq() -> None:
    sa, sb = clone_fork()
    dst = ShardLog("s", 0)
    for i in (1, 2, 3):
        dst.offer(sa[i])
    assert dst.offer(sb[4]).outcome is Outcome.FORK  # sb[4].prev is the hash of sb[3]


def test_fork_in_buffer_and_while_draining() -> None:
    sa, sb = clone_fork()
    dst = ShardLog("s", 0)
    assert dst.offer(sa[3]).outcome is Outcome.BUFFERED
    assert dst.offer(sb[3]).outcome is Outcome.FORK  # two different entries claim seq 3
    assert dst.buffered_count() == 0
    dst = ShardLog("s", 0)
    dst.offer(sb[3])
    dst.offer(sa[4])  # chains onto sa[3], not sb[3]
    dst.offer(sa[1])
    r = dst.offer(sa[2])
    assert r.outcome is Outcome.FORK
    assert [e.seq for e in r.applied] == [2, 3]  # valid prefix stays applied and is reported
    assert dst.vv.seq_of(ORIGINS[0]) == 3 and dst.buffered_count() == 0


def test_entry_hash_binds_space_and_shard() -> None:
    _, store = build_chains([2, 0, 0])
    other = ShardLog("t", 0)
    assert other.offer(store[(ORIGINS[0], 1)]).outcome is Outcome.APPLIED
    # The same entries hash differently in another space, so seq 2's prev does not chain there.
    assert other.offer(store[(ORIGINS[0], 2)]).outcome is Outcome.FORK


# -- planner ----------------------------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(st.integers(0, 15), min_size=3, max_size=3),
    st.lists(st.integers(0, 15), min_size=3, max_size=3),
    st.lists(st.integers(1, 400), min_size=1, max_size=40),
    st.integers(0, 5),
)
def test_sync_rounds_never_skip_and_respect_budget(
    lengths: list[int], have: list[int], budgets: list[int], rotate: int
) -> None:
    src, store = build_chains(lengths)
    dst = ShardLog("s", 0)
    for o, n in zip(ORIGINS, have, strict=True):
        for seq in range(1, min(n, src.vv.seq_of(o)) + 1):
            dst.offer(store[(o, seq)])
    fetch = fetch_from(store)
    rounds = 0
    while True:
        ranges = plan_missing(src.vv, dst.vv, rotate=rotate + rounds)
        for r in ranges:
            assert r.first_seq == dst.vv.seq_of(r.origin) + 1 and r.last_seq == src.vv.seq_of(r.origin)
        budget = budgets[rounds % len(budgets)]
        batch, more = take_within_budget(ranges, fetch, budget, approx_size)
        if not ranges:
            assert batch == [] and not more
            break
        assert batch, "every round must make progress"
        assert len(batch) == 1 or sum(approx_size(e) for e in batch) <= budget
        nxt = {o: dst.vv.seq_of(o) + 1 for o in ORIGINS}
        for e in batch:  # per origin, a contiguous run right after the remote's prefix
            assert e.seq == nxt[e.origin]
            nxt[e.origin] += 1
        assert more == (len(batch) < sum(r.last_seq - r.first_seq + 1 for r in ranges))
        for e in batch:
            assert dst.offer(e).outcome is Outcome.APPLIED
        rounds += 1
        assert rounds <= sum(lengths) + 1
    assert dst.vv == src.vv


def test_take_cuts_an_origin_at_a_hole_and_moves_on() -> None:
    _, store = build_chains([4, 2, 0])
    del store[(ORIGINS[0], 2)]
    ranges = [Range(ORIGINS[0], 1, 4), Range(ORIGINS[1], 1, 2)]
    batch, more = take_within_budget(ranges, fetch_from(store), 10**6)
    assert [(e.origin, e.seq) for e in batch] == [(ORIGINS[0], 1), (ORIGINS[1], 1), (ORIGINS[1], 2)]
    assert not more
    one, more = take_within_budget(ranges, fetch_from(store), 1)  # budget below one entry: still one
    assert len(one) == 1 and more


def test_plan_missing_rotates_origins() -> None:
    src, _ = build_chains([1, 1, 1])
    plain = plan_missing(src.vv, VersionVector())
    assert [r.origin for r in plain] == ORIGINS
    assert [r.origin for r in plan_missing(src.vv, VersionVector(), rotate=4)] == ORIGINS[1:] + ORIGINS[:1]
    assert plan_missing(VersionVector(), src.vv) == []


def test_own_write_drops_buffered_entries_of_another_history() -> None:
    """Another store wrote seq 3..4 under our identity; once we write our own seq 2, they can never chain
    onto our log and must not hold buffer space. The fork still shows when that history comes back."""
    sa, sb = clone_fork()
    me = ShardLog("s", 0)
    assert me.offer(sb[3]).outcome is Outcome.BUFFERED
    assert me.offer(sb[4]).outcome is Outcome.BUFFERED
    me.append_local(ORIGINS[0], 1, sa[1].body)
    assert me.buffered_count() == 0 and me.buffered_bytes() == 0
    me.append_local(ORIGINS[0], 2, Retract(Y, Y))  # differs from both histories' seq 2
    me.append_local(ORIGINS[0], 3, sa[3].body)
    assert me.offer(sb[3]).outcome is Outcome.FORK  # re-shipped at our head: a different entry


def test_quarantine_frees_buffered_entries() -> None:
    sa, _ = clone_fork()
    dst = ShardLog("s", 0)
    assert dst.offer(sa[3]).outcome is Outcome.BUFFERED
    assert dst.quarantine(ORIGINS[0]) and not dst.quarantine(ORIGINS[0])
    assert dst.buffered_count() == 0 and dst.buffered_bytes() == 0
    assert dst.offer(sa[1]).outcome is Outcome.QUARANTINED
