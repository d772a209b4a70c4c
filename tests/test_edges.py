"""Edge CRDT laws (join-semilattice, inflation, order-independent reads, read-preserving GC), the
add-wins/observed-remove scenarios of crdt.md §3, and why summed-confidence averaging is not a CvRDT."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt import edges
from engramp2p.crdt.edges import EdgeState, Slot, join, join_edge, leq, merge_slot, value

SETTINGS = settings(max_examples=300, deadline=None)
A, B, C = (bytes([i]) * 16 for i in (1, 2, 3))
WRITERS = [A, B, C]

# Tie-heavy alphabets: few writers, few seqs, few weights, so equal and near-equal slots are common.
seqs = st.integers(1, 4)
weights = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 1.0])
confs = st.sampled_from([0.1, 0.3, 0.5, 1.0])
hlcs = st.integers(0, 2)
slots = st.one_of(
    st.builds(edges.live_slot, seqs, hlcs, weights, confs),
    st.builds(edges.tombstone, seqs),
)
states = st.dictionaries(st.sampled_from(WRITERS), slots, max_size=3)
keys = st.sampled_from([(A, B), (B, A), (A, C)])
edge_sets = st.dictionaries(keys, states, max_size=3)
PICK_WRITER = st.sampled_from(WRITERS)
OPS = st.sampled_from(["associate", "associate", "dissociate", "retract"])


def norm(x: dict) -> dict:
    """Edge sets compare equal regardless of empty edge states."""
    return {k: v for k, v in x.items() if v}


@SETTINGS
@given(states, states, states)
def test_join_edge_is_a_semilattice(a: EdgeState, b: EdgeState, c: EdgeState) -> None:
    assert join_edge(a, a) == a
    assert join_edge(a, b) == join_edge(b, a)
    assert join_edge(join_edge(a, b), c) == join_edge(a, join_edge(b, c))
    ab = join_edge(a, b)
    assert leq(a, ab) and leq(b, ab)


@SETTINGS
@given(edge_sets, edge_sets, edge_sets)
def test_join_edge_sets_is_a_semilattice(a: dict, b: dict, c: dict) -> None:
    assert norm(join(a, a)) == norm(a)
    assert norm(join(a, b)) == norm(join(b, a))
    assert norm(join(join(a, b), c)) == norm(join(a, join(b, c)))


def full_associate(s: EdgeState, w: bytes, seq: int, hlc: int, weight: float, conf: float) -> EdgeState:
    out = dict(s)
    new = edges.live_slot(seq, hlc, weight, conf)
    if w not in out or new > out[w]:
        out[w] = new
    return out


def full_dissociate(s: EdgeState) -> EdgeState:
    return {w: edges.tombstone(x.seq) if not x.tomb else x for w, x in s.items()}


def full_retract(s: EdgeState, w: bytes, seq: int) -> EdgeState:
    out = dict(s)
    new = edges.tombstone(seq)
    if w not in out or new > out[w]:
        out[w] = new
    return out


@SETTINGS
@given(states, st.sampled_from(WRITERS), seqs, hlcs, weights, confs)
def test_every_delta_is_an_inflation(
    s: EdgeState, w: bytes, seq: int, hlc: int, wt: float, cf: float
) -> None:
    # A writer's next entry has a seq above its own slot (log order); model that.
    nxt = (s[w].seq if w in s else 0) + seq
    for delta, full in (
        (edges.associate(w, nxt, hlc, wt, cf), full_associate(s, w, nxt, hlc, wt, cf)),
        (edges.dissociate(s), full_dissociate(s)),
        (edges.retract(w, nxt), full_retract(s, w, nxt)),
    ):
        joined = join_edge(s, delta)
        assert leq(s, joined)  # s ⊑ s ⊔ δ(s)
        assert joined == full  # the delta carries exactly the mutation
    # A dissociate leaves no live slot among what it observed.
    assert value(join_edge(s, edges.dissociate(s))) is None


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(WRITERS + [bytes([9]) * 16]), slots), max_size=12),
    st.randoms(use_true_random=False),
)
def test_value_is_bit_identical_under_any_arrival_order(arrivals: list, rnd: random.Random) -> None:
    def fold(order: list) -> EdgeState:
        s: EdgeState = {}
        for w, slot in order:
            merge_slot(s, w, slot)
        return s

    base = fold(arrivals)
    ref = value(base)
    for _ in range(4):
        shuffled = list(arrivals)
        rnd.shuffle(shuffled)
        s = fold(shuffled)
        assert s == base
        v = value(s)
        assert (v is None) == (ref is None)
        if v is not None:
            assert v[0].hex() == ref[0].hex() and v[1].hex() == ref[1].hex()
    if ref is not None:
        assert 0.0 <= ref[0] <= 1.0 and 0.0 < ref[1] <= 1.0


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list, list]:
    """Ops on one edge by 3 writers, each an entry of that writer's log, and a log-order delivery.

    A dissociate lists, for some writers, a dot at or below that writer's current seq (something it could
    have observed). The delivery interleaves the writers' logs but keeps each log in order (log-only).
    """
    counts = dict.fromkeys(WRITERS, 0)
    logs: dict[bytes, list] = {w: [] for w in WRITERS}
    for _ in range(draw(st.integers(0, 14))):
        w = draw(PICK_WRITER)
        counts[w] += 1
        seq = counts[w]
        kind = draw(OPS)
        if kind == "associate":
            delta = edges.associate(w, seq, seq, draw(weights), draw(confs))
        elif kind == "retract":
            delta = edges.retract(w, seq)
        else:
            delta = {}
            for x in WRITERS:
                if counts[x] and draw(st.booleans()):
                    delta[x] = edges.tombstone(draw(st.integers(1, counts[x])))
        logs[w].append((w, seq, delta))
    order = draw(st.permutations([w for w in WRITERS for _ in logs[w]]))
    cursor = dict.fromkeys(WRITERS, 0)
    delivery = []
    for w in order:
        delivery.append(logs[w][cursor[w]])
        cursor[w] += 1
    return delivery, logs


@SETTINGS
@given(scripts())
def test_gc_preserves_reads(script: tuple[list, list]) -> None:
    delivery, _ = script
    plain: EdgeState = {}
    collected: EdgeState = {}
    vv: dict[bytes, int] = {}

    class VV:
        @staticmethod
        def seq_of(w: bytes) -> int:
            return vv.get(w, 0)

    for w, seq, delta in delivery:
        vv[w] = seq
        plain = join_edge(plain, delta)
        collected = edges.gc(join_edge(collected, delta), VV)
        assert value(plain) == value(collected)
        assert value(edges.gc(plain, VV)) == value(plain)
    # Everything delivered: the VV covers every tombstone, none is left.
    assert edges.tombstones([collected]) == 0


# -- crdt.md §3 semantics table -----------------------------------------------------------------------


def test_remove_concurrent_with_reweight_is_add_wins() -> None:
    base = edges.associate(B, 1, 10, 0.3, 1.0)
    at_a = dict(base)
    at_b = dict(base)
    remove = edges.dissociate(at_a)  # A removes what it saw: B@1
    reweight = edges.associate(B, 2, 11, 0.8, 1.0)  # concurrently B reweights
    for s in (at_a, at_b):
        final = join_edge(join_edge(s, remove), reweight)
        assert final == join_edge(join_edge(s, reweight), remove)
        assert value(final) == (0.8, 1.0)


def test_observed_remove_removes_everywhere() -> None:
    s = join_edge(edges.associate(A, 1, 1, 0.2, 0.5), edges.associate(B, 1, 1, 0.9, 0.5))
    gone = join_edge(s, edges.dissociate(s))
    assert value(gone) is None
    assert value(join_edge(edges.associate(B, 1, 1, 0.9, 0.5), edges.dissociate(s))) is None


def test_remove_arriving_before_the_add_it_observed() -> None:
    add = edges.associate(B, 3, 1, 0.4, 0.5)
    remove = edges.dissociate(add)
    at_c = join_edge({}, remove)  # the tombstone waits in C's slot for B
    assert value(at_c) is None
    assert value(join_edge(at_c, add)) is None  # the late add is dominated


def test_readd_after_remove_is_live() -> None:
    s = edges.associate(A, 1, 1, 0.4, 0.5)
    s = join_edge(s, edges.dissociate(s))
    s = join_edge(s, edges.associate(A, 2, 2, 0.6, 0.5))
    assert value(s) == (0.6, 0.5)


def test_far_future_clock_has_no_effect() -> None:
    s = edges.associate(B, 1, 2**60, 0.3, 1.0)  # B's clock is wildly ahead
    s = join_edge(s, edges.dissociate(s))
    assert value(s) is None
    s = join_edge(s, edges.associate(A, 1, 1, 0.7, 1.0))
    assert value(s) == (0.7, 1.0)


def test_retract_only_withdraws_own_vote() -> None:
    s = join_edge(edges.associate(A, 1, 1, 0.9, 1.0), edges.associate(B, 1, 1, 0.3, 1.0))
    s = join_edge(s, edges.retract(A, 2))
    # The per-writer tombstone flag is not a remove: B's observed slot keeps the edge at 0.3.
    assert value(s) == (0.3, 1.0)


def test_value_is_weighted_mean_and_noisy_or() -> None:
    s = join_edge(edges.associate(A, 1, 1, 1.0, 0.5), edges.associate(B, 1, 1, 0.0, 0.5))
    w, c = value(s)
    assert w == 0.5 and c == 0.75


def test_negative_zero_is_canonical() -> None:
    assert edges.live_slot(1, 0, -0.0, 1.0) == edges.live_slot(1, 0, 0.0, 1.0)
    assert str(edges.live_slot(1, 0, -0.0, 1.0).weight) == "0.0"


# -- counterexample: summed-confidence averaging --------------------------------------------------------


def avg_sum(x: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    (w1, c1), (w2, c2) = x, y
    return (w1 * c1 + w2 * c2) / (c1 + c2), c1 + c2


def avg_max(x: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    (w1, c1), (w2, c2) = x, y
    return (w1 * c1 + w2 * c2) / (c1 + c2), max(c1, c2)


def test_summed_confidence_average_is_not_a_cvrdt_and_the_slot_map_is() -> None:
    x, y = (0.0, 1.0), (1.0, 1.0)
    m = avg_sum(x, y)
    assert m == (0.5, 2.0)
    assert avg_sum(x, x) != x  # not idempotent
    assert avg_sum(m, y) != m  # re-delivering y changes the value: (0.667, 3)
    # Max-confidence fixes idempotence but breaks associativity.
    a, b, c = (0.0, 1.0), (1.0, 1.0), (1.0, 1.0)
    assert avg_max(avg_max(a, b), c)[0] == 0.75
    assert avg_max(a, avg_max(b, c))[0] == 0.5
    # The slot map: the same opinions, identified by writer, merged any number of times.
    sx, sy = edges.associate(A, 1, 1, 0.0, 1.0), edges.associate(B, 1, 1, 1.0, 1.0)
    sm = join_edge(sx, sy)
    assert join_edge(sm, sy) == sm and value(join_edge(sm, sy)) == value(sm) == (0.5, 1.0)
    sa, sb, sc = (edges.associate(w, 1, 1, wt, 1.0) for w, wt in ((A, 0.0), (B, 1.0), (C, 1.0)))
    left = join_edge(join_edge(sa, sb), sc)
    right = join_edge(sa, join_edge(sb, sc))
    assert left == right and value(left) == value(right)


def test_delta_of_entries() -> None:
    from engramp2p.crdt.entry import ZERO_HASH, Associate, Dissociate, Dot, Entry, Remember, Retract

    mid = bytes(16)
    e = Entry(A, 3, 7, ZERO_HASH, Associate(A, B, 0.5, 0.5))
    assert edges.delta_of(e) == ((A, B), {A: Slot(3, False, 7, 0.5, 0.5)})
    e = Entry(A, 4, 7, ZERO_HASH, Dissociate(A, B, [Dot(B, 2), Dot(B, 5), Dot(C, 1)]))
    assert edges.delta_of(e) == ((A, B), {B: edges.tombstone(5), C: edges.tombstone(1)})
    e = Entry(A, 5, 7, ZERO_HASH, Retract(A, B))
    assert edges.delta_of(e) == ((A, B), {A: edges.tombstone(5)})
    assert edges.delta_of(Entry(A, 6, 7, ZERO_HASH, Remember(mid, "x", b"", 1.0))) is None
    assert edges.observed({A: edges.tombstone(1), B: edges.live_slot(2, 0, 0.1, 0.1)}) == [Dot(B, 2)]
