"""Materialization: the shard state (reads, digest, tombstones) is a pure function of the entry set,
whatever the order, duplication or interleaving; forget is observed-remove and add-wins."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt import edges
from engramp2p.crdt.entry import Associate, Dissociate, Dot, Entry, Forget, Remember, Retract, entry_hash
from engramp2p.crdt.log import ShardLog
from engramp2p.crdt.materialize import ShardState

SETTINGS = settings(max_examples=200, deadline=None)
ORIGINS = [bytes([i]) * 16 for i in (1, 2, 3)]
IDS = [bytes([0xA0 + i]) * 16 for i in range(4)]


def reads(s: ShardState) -> tuple:
    """Everything a client can observe, in canonical form."""
    mems = sorted((i, m.origin, m.seq, m.hlc, m.body) for i, m in s.memories())
    out = {src: s.out_edges(src) for src in s.edge_sources()}
    raw = {(a, b): edges.value(s.edge_state(a, b)) for a in s.edge_sources() for b in IDS}
    return mems, out, raw, len(s)


def full_view(s: ShardState) -> tuple:
    """Reads plus digest, tombstone count and applied prefixes."""
    return reads(s), s.digest(), s.tombstones(), tuple(s.seq_of(o) for o in ORIGINS)


# Strategies are built once: hypothesis re-derives properties of every new strategy object it sees.
ACTIONS = st.sampled_from(
    ["remember", "associate", "associate", "dissociate", "retract", "forget", "deliver", "deliver"]
)
PICK_ORIGIN = st.sampled_from(ORIGINS)
PICK_ID = st.sampled_from(IDS)
CONTENTS = st.sampled_from(["x", "y"])
VEC_BYTE = st.integers(0, 3)
WEIGHTS = st.sampled_from([0.0, 0.2, 0.5, 1.0])
CONFS = st.sampled_from([0.1, 0.5, 1.0])
HLC_STEP = st.integers(0, 2)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 30) -> list[Entry]:
    """Three writers, each with its own replica that sees its own writes and, in log order, some of the
    others'. Forget/dissociate list what the writer's replica had observed, so concurrency is real."""
    logs = {o: ShardLog("s", 0) for o in ORIGINS}
    views = {o: ShardState("s", 0) for o in ORIGINS}
    written: dict[bytes, list[Entry]] = {o: [] for o in ORIGINS}
    hlc = 0
    for _ in range(draw(st.integers(0, max_steps))):
        o = draw(PICK_ORIGIN)
        view = views[o]
        action = draw(ACTIONS)
        if action == "deliver":
            p = draw(PICK_ORIGIN)
            nxt = view.seq_of(p)
            if nxt < len(written[p]):
                view.apply(written[p][nxt])
            continue
        a, b = draw(PICK_ID), draw(PICK_ID)
        if action == "remember":
            body = Remember(a, draw(CONTENTS), bytes([draw(VEC_BYTE)]) * 8, 0.5)
        elif action == "associate":
            body = Associate(a, b, draw(WEIGHTS), draw(CONFS))
        elif action == "dissociate":
            body = Dissociate(a, b, view.edge_dots(a, b))
        elif action == "retract":
            body = Retract(a, b)
        else:
            body = Forget(a, view.memory_dots(a))
        hlc += draw(HLC_STEP)  # ties in hlc are common on purpose
        e = logs[o].append_local(o, hlc, body)
        written[o].append(e)
        view.apply(e)
    return [e for o in ORIGINS for e in written[o]]


@SETTINGS
@given(histories(), st.randoms(use_true_random=False))
def test_state_is_a_function_of_the_entry_set(entries: list[Entry], rnd: random.Random) -> None:
    ref = ShardState("s", 0)
    ref.apply_all(entries)  # log order per origin
    expect = full_view(ref)
    assert ref.tombstones() == 0  # every origin's log complete: every tombstone is covered
    hashed = ShardState("s", 0)
    hashed.apply_all(entries, [entry_hash("s", 0, e) for e in entries])  # hashes as the log passes them
    assert full_view(hashed) == expect
    for _ in range(3):
        arrivals = entries + rnd.sample(entries, k=len(entries) // 3)
        rnd.shuffle(arrivals)  # any order, even within an origin, with duplicates
        s = ShardState("s", 0)
        for e in arrivals:
            s.apply(e)
        assert full_view(s) == expect
    # Prefixes of the interleaving: duplicates are no-ops at every point.
    s = ShardState("s", 0)
    for e in entries:
        s.apply(e)
        before = full_view(s)
        assert s.apply(e) is None
        assert full_view(s) == before


O1, O2, O3 = ORIGINS
M1, M2 = IDS[0], IDS[1]


def chain(origin: bytes, bodies: list, log: ShardLog | None = None, hlc0: int = 0) -> list[Entry]:
    log = log or ShardLog("s", 0)
    return [log.append_local(origin, hlc0 + i, b) for i, b in enumerate(bodies, 1)]


def test_forget_is_observed_remove_and_add_wins() -> None:
    r1 = chain(O1, [Remember(M1, "one", b"\x01" * 4, 1.0)])
    seen = ShardState("s", 0)
    seen.apply_all(r1)
    forget = chain(O2, [Forget(M1, seen.memory_dots(M1))])
    concurrent = chain(O3, [Remember(M1, "three", b"\x03" * 4, 1.0)], hlc0=-1)  # older hlc, unseen
    s = ShardState("s", 0)
    s.apply_all(forget + r1 + concurrent)
    m = s.memory(M1)
    assert m is not None and m.body.content == "three"  # the unseen remember survives
    s2 = ShardState("s", 0)
    s2.apply_all(r1 + forget)
    assert s2.memory(M1) is None and len(s2) == 0 and s2.tombstones() == 0
    # A forget that arrives before the remember it observed still wins over it.
    s3 = ShardState("s", 0)
    s3.apply(forget[0])
    assert s3.tombstones() == 1
    s3.apply(r1[0])
    assert s3.memory(M1) is None and s3.tombstones() == 0


def test_concurrent_remembers_resolve_by_hlc_then_origin() -> None:
    a = chain(O1, [Remember(M1, "a", b"", 1.0)], hlc0=10)
    b = chain(O2, [Remember(M1, "b", b"", 1.0)], hlc0=10)
    c = chain(O3, [Remember(M1, "c", b"", 1.0)], hlc0=5)
    for order in (a + b + c, c + b + a, b + c + a):
        s = ShardState("s", 0)
        s.apply_all(order)
        assert s.memory(M1).body.content == "b"  # equal hlc: larger origin
        assert s.memory_dots(M1) == [Dot(O1, 1), Dot(O2, 1), Dot(O3, 1)]
        assert len(s) == 1


def test_replace_by_same_origin_keeps_latest() -> None:
    entries = chain(O1, [Remember(M1, "v1", b"", 1.0), Remember(M1, "v2", b"", 0.5)])
    for order in (entries, entries[::-1]):
        s = ShardState("s", 0)
        changes = [s.apply(e) for e in order]
        assert s.memory(M1).body.content == "v2"
        assert changes[0].memory == M1
    s = ShardState("s", 0)
    s.apply(entries[1])
    assert s.apply(entries[0]).memory is None  # superseded on arrival: nothing visible changed


def test_edges_hidden_without_src_memory_and_back_after_remember() -> None:
    log = ShardLog("s", 0)
    entries = chain(O1, [Associate(M1, M2, 0.4, 0.5)], log)
    s = ShardState("s", 0)
    s.apply_all(entries)
    assert s.out_edges(M1) == [] and s.edge_value(M1, M2) is None
    assert edges.value(s.edge_state(M1, M2)) == (0.4, 0.5)
    s.apply_all(chain(O1, [Remember(M1, "src", b"", 1.0)], log, hlc0=5))
    assert s.out_edges(M1) == [(M2, 0.4, 0.5)] and s.edge_value(M1, M2) == (0.4, 0.5)
    s.apply_all(chain(O1, [Forget(M1, s.memory_dots(M1))], log, hlc0=9))
    assert s.out_edges(M1) == []


def test_dissociate_and_retract_through_entries() -> None:
    log1, log2 = ShardLog("s", 0), ShardLog("s", 0)
    base = chain(O1, [Remember(M1, "m", b"", 1.0), Associate(M1, M2, 1.0, 0.5)], log1)
    other = chain(O2, [Associate(M1, M2, 0.0, 0.5)], log2)
    s = ShardState("s", 0)
    s.apply_all(base + other)
    assert s.edge_value(M1, M2) == (0.5, 0.75)
    s.apply_all(chain(O2, [Retract(M1, M2)], log2, hlc0=3))
    assert s.edge_value(M1, M2) == (1.0, 0.5) and s.tombstones() == 0
    removal = chain(O1, [Dissociate(M1, M2, s.edge_dots(M1, M2))], log1, hlc0=5)
    s.apply_all(removal)
    assert s.edge_value(M1, M2) is None and s.tombstones() == 0
    assert s.edge_sources() == []  # a fully removed edge costs nothing


def test_forget_listing_thousands_of_writers() -> None:
    """The largest legal forget (``MAX_OBSERVED`` dots, as a hostile or huge fleet could send) is joined
    dot by dot without touching the live slots of other writers, and an unlisted remember survives."""
    from engramp2p.crdt.entry import MAX_OBSERVED

    many = [Dot(i.to_bytes(16, "big"), 1) for i in range(1, MAX_OBSERVED)] + [Dot(O1, 1)]
    s = ShardState("s", 0)
    s.apply_all(chain(O1, [Remember(M1, "one", b"", 1.0)]) + chain(O2, [Remember(M1, "two", b"", 1.0)]))
    s.apply_all(chain(O3, [Forget(M1, many)]))
    assert s.memory(M1).body.content == "two" and s.memory_dots(M1) == [Dot(O2, 1)]
    assert s.tombstones() == MAX_OBSERVED - 1  # O1's is covered by its prefix; the rest wait
    again = ShardState("s", 0)
    again.apply_all(chain(O3, [Forget(M1, many)]) + chain(O2, [Remember(M1, "two", b"", 1.0)]))
    assert again.digest() == s.digest()
