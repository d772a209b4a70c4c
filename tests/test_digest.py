"""The live-state digest: order-independent, exactly invertible, maintained incrementally by ShardState,
and equal for equal live content whatever the history or tombstone GC."""

from __future__ import annotations

import hashlib
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.digest import SetDigest
from engramp2p.crdt.entry import ZERO_HASH, Associate, Dissociate, Dot, Entry, Forget, Remember, Retract
from engramp2p.crdt.materialize import ShardState, _edge_item, _mem_item

SETTINGS = settings(max_examples=200, deadline=None)
ORIGINS = [bytes([i]) * 16 for i in (1, 2, 3)]
IDS = [bytes([0xA0 + i]) * 16 for i in range(3)]
EMPTY = SetDigest().digest()

items = st.lists(st.binary(max_size=24), max_size=20)


@SETTINGS
@given(items, st.randoms(use_true_random=False))
def test_set_digest_is_order_independent_and_invertible(xs: list[bytes], rnd: random.Random) -> None:
    a, b = SetDigest(), SetDigest()
    for x in xs:
        a.add(x)
    ys = list(xs)
    rnd.shuffle(ys)
    for y in ys:
        b.add(y)
    assert a == b and a.digest() == b.digest() and len(a.digest()) == 16
    for y in ys:
        b.remove(y)
    assert b.digest() == EMPTY and b.count == 0


def test_lanes_are_plain_modular_sums() -> None:
    """The packed-int lanes equal 16 independent uint64 sums of the item's shake-256 words."""
    rnd = random.Random(7)
    xs = [rnd.randbytes(rnd.randint(0, 40)) for _ in range(300)]

    def words(x: bytes) -> list[int]:
        raw = hashlib.shake_256(x).digest(192)
        return [int.from_bytes(raw[12 * i : 12 * i + 8], "little") for i in range(16)]

    d, ref = SetDigest(), [0] * 16
    for i, x in enumerate(xs):
        if i % 3 == 2:
            d.remove(xs[i - 1])
            ref = [(a - b) % 2**64 for a, b in zip(ref, words(xs[i - 1]), strict=True)]
        else:
            d.add(x)
            ref = [(a + b) % 2**64 for a, b in zip(ref, words(x), strict=True)]
        assert d.lanes() == struct.pack("<16Q", *ref)


def test_set_digest_counts_multiplicity() -> None:
    once, twice = SetDigest(), SetDigest()
    once.add(b"x")
    twice.add(b"x")
    twice.add(b"x")
    assert once.digest() != twice.digest()  # unlike XOR, a double add does not cancel
    assert once.digest() != EMPTY


def scratch(s: ShardState) -> SetDigest:
    """The digest recomputed from the live slots the state holds right now."""
    d = SetDigest()
    for mem_id, cur in s._mems.items():
        for slot in cur if isinstance(cur, tuple) else (cur,):
            if not slot.tomb:
                d.add(_mem_item(mem_id, slot))
    for src, by_dst in s._edges.items():
        for dst, state in by_dst.items():
            for w, slot in state.items():
                if not slot.tomb:
                    d.add(_edge_item(src, dst, w, slot))
    return d


PICK_ID = st.sampled_from(IDS)
PICK_ORIGIN = st.sampled_from(ORIGINS)
dots = st.lists(st.builds(Dot, PICK_ORIGIN, st.integers(1, 6)), max_size=4)
bodies = st.one_of(
    st.builds(
        Remember, PICK_ID, st.sampled_from(["a", "b"]), st.sampled_from([b"", b"\x00" * 8]), st.just(0.5)
    ),
    st.builds(Associate, PICK_ID, PICK_ID, st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.5, 1.0])),
    st.builds(Dissociate, PICK_ID, PICK_ID, dots),
    st.builds(Retract, PICK_ID, PICK_ID),
    st.builds(Forget, PICK_ID, dots),
)
# Arbitrary (even nonsensical) dots, as a hostile origin could send; one entry per (origin, seq).
entry_sets = st.dictionaries(
    st.tuples(PICK_ORIGIN, st.integers(1, 6)), st.tuples(st.integers(0, 3), bodies), max_size=18
)


@SETTINGS
@given(entry_sets, st.randoms(use_true_random=False))
def test_incremental_digest_matches_scratch_under_hostile_entries(es: dict, rnd: random.Random) -> None:
    entries = [Entry(o, seq, hlc, ZERO_HASH, body) for (o, seq), (hlc, body) in es.items()]
    rnd.shuffle(entries)
    s = ShardState("s", 0)
    for e in entries:
        s.apply(e)
        assert s.digest_set == scratch(s)
    assert s.digest_set.count == scratch(s).count
    rnd.shuffle(entries)
    t = ShardState("s", 0)
    t.apply_all(entries)
    assert t.digest() == s.digest() and t.tombstones() == s.tombstones()


O1, O2 = ORIGINS[0], ORIGINS[1]
M1, M2 = IDS[0], IDS[1]


def test_equal_live_content_equal_digest_whatever_the_history() -> None:
    remember = Entry(O1, 1, 5, ZERO_HASH, Remember(M1, "m", b"\x01" * 4, 1.0))
    assoc = Entry(O2, 1, 6, ZERO_HASH, Associate(M1, M2, 0.5, 0.5))
    dissoc = Entry(O2, 2, 7, ZERO_HASH, Dissociate(M1, M2, [Dot(O2, 1)]))
    plain = ShardState("s", 0)
    plain.apply(remember)
    churned = ShardState("s", 0)
    churned.apply_all([assoc, remember, dissoc])
    assert churned.digest() == plain.digest()
    # A held tombstone (its writer's prefix not yet covered) vs none at all: same live content.
    early_forget = Entry(O2, 1, 9, ZERO_HASH, Forget(M2, [Dot(O1, 3)]))
    waiting = ShardState("s", 0)
    waiting.apply_all([remember, early_forget])
    assert waiting.tombstones() == 1 and waiting.digest() == plain.digest()
    forgotten = ShardState("s", 0)
    forgotten.apply_all([remember, Entry(O2, 1, 9, ZERO_HASH, Forget(M1, [Dot(O1, 1)]))])
    assert forgotten.digest() == EMPTY and forgotten.tombstones() == 0


def test_digest_tracks_replacement() -> None:
    s = ShardState("s", 0)
    s.apply(Entry(O1, 1, 1, ZERO_HASH, Remember(M1, "v1", b"", 1.0)))
    d1 = s.digest()
    s.apply(Entry(O1, 2, 2, ZERO_HASH, Remember(M1, "v2", b"", 1.0)))
    assert s.digest() not in (d1, EMPTY)
    only_v2 = ShardState("s", 0)
    only_v2.apply(Entry(O1, 2, 2, ZERO_HASH, Remember(M1, "v2", b"", 1.0)))
    assert only_v2.digest() == s.digest()  # the superseded remember is no longer live content
