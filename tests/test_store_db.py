"""Round trips through the synchronous Store: logs, version vectors, materialized state, chunks."""

from __future__ import annotations

import itertools
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.entry import ZERO_HASH, Associate, Dot, Entry, Forget, Remember, entry_hash
from engramp2p.store import MemoryRow, ShardChanges, SlotRow, Store

A = b"A" * 16
B = b"B" * 16


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def vec(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


def chain(space: str, shard: int, origin: bytes, n: int, start: int = 1,
          prev: bytes = ZERO_HASH) -> list[tuple[Entry, bytes]]:
    """n entries of one origin's hash chain, alternating bodies."""
    out = []
    for seq in range(start, start + n):
        if seq % 3 == 0:
            body: object = Associate(mid(seq), mid(seq + 1), 0.5, 0.9)
        elif seq % 3 == 1:
            body = Remember(mid(seq), f"memory {seq}", vec(seq, 1.0, 0.0), 0.8, {"k": str(seq)})
        else:
            body = Forget(mid(seq - 1), [Dot(origin, seq - 1)])
        entry = Entry(origin, seq, seq << 16, prev, body)  # type: ignore[arg-type]
        digest = entry_hash(space, shard, entry)
        out.append((entry, digest))
        prev = digest
    return out


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path, durability="normal")
    yield s
    s.close()


def test_log_and_vv_round_trip(store: Store, tmp_path: Path) -> None:
    a = chain("s", 0, A, 10)
    b = chain("s", 0, B, 4)
    store.commit([ShardChanges("s", 0, entries=a[:6] + b, vv=[(A, 6, a[5][1]), (B, 4, b[3][1])])])
    store.commit([ShardChanges("s", 0, entries=a[6:], vv=[(A, 10, a[9][1])])])
    assert store.entries("s", 0, A) == a
    assert store.entries("s", 0, A, from_seq=3, to_seq=5) == a[2:5]
    assert store.entries("s", 0, A, from_seq=4, limit=2) == a[3:5]
    assert store.entries("s", 0, B) == b
    assert store.entries("s", 1, A) == [] and store.entries("nope", 0, A) == []
    assert store.entries("s", 0, b"C" * 16) == []
    raw = store.entries_raw("s", 0, B, 2, 2)
    assert [(seq, h) for seq, h, _ in raw] == [(2, b[1][1])]
    assert store.entry_count("s", 0) == 14 and store.entry_count("s", 0, B) == 4
    assert store.vv("s", 0) == {A: (10, a[9][1]), B: (4, b[3][1])}
    assert store.hosted_shards() == [("s", 0)]
    store.close()
    with Store.open(tmp_path) as again:
        assert again.entries("s", 0, A) == a
        assert again.vv("s", 0) == {A: (10, a[9][1]), B: (4, b[3][1])}


def test_memories_and_slots_round_trip(store: Store) -> None:
    m1 = MemoryRow(mid(1), A, 1, 10, "hello", vec(1, 2, 3), 0.9, {"a": "b"})
    m2 = MemoryRow(mid(2), B, 1, 11, "world", vec(4, 5, 6), 1.0)
    s1 = SlotRow(mid(1), mid(2), A, 3, False, 12, 0.25, 0.5)
    s2 = SlotRow(mid(1), mid(2), B, 2, True, 13, 0.0, 1.0)
    store.commit([ShardChanges("s", 0, memories_put=[m1, m2], slots_put=[s1, s2]),
                  ShardChanges("t", 2, memories_put=[m1])])
    assert store.memory("s", mid(1)) == m1
    assert store.memory("s", mid(2)) == m2
    assert store.memory("s", mid(3)) is None and store.memory("x", mid(1)) is None
    assert store.memory_count("s", 0) == 2 and store.slot_count("s", 0) == 2
    assert [r for c in store.iter_slots("s", 0) for r in c] == [s1, s2]
    assert store.hosted_shards() == [("s", 0), ("t", 2)]
    # A newer winner replaces the row; deletes remove memories and dropped tombstones.
    m1b = MemoryRow(mid(1), B, 7, 20, "hello again", vec(0, 0, 1), 0.4)
    s1b = SlotRow(mid(1), mid(2), A, 4, True, 21, 0.0, 1.0)
    store.commit([ShardChanges("s", 0, memories_put=[m1b], memories_del=[mid(2)], slots_put=[s1b],
                               slots_del=[(mid(1), mid(2), B)])])
    assert store.memory("s", mid(1)) == m1b
    assert store.memory("s", mid(2)) is None
    assert [r for c in store.iter_slots("s", 0) for r in c] == [s1b]
    assert store.max_hlc() == 21


def test_failing_batch_rolls_back_alone(store: Store) -> None:
    a = chain("s", 0, A, 3)
    b = chain("s", 0, B, 2)
    before = store.transactions
    results = store.commit_batches([
        [ShardChanges("s", 0, entries=a[:2], vv=[(A, 2, a[1][1])])],
        [ShardChanges("s", 0, entries=[a[2]]), ShardChanges("s", 0, entries=[a[0]])],  # duplicate seq 1
        [ShardChanges("new", 5, entries=b, vv=[(B, 2, b[1][1])])],
    ])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert store.transactions == before + 1
    assert store.entries("s", 0, A) == a[:2]  # a[2] of the failed batch was rolled back too
    assert store.entries("new", 5, B) == b
    assert store.vv("new", 5) == {B: (2, b[1][1])}
    with pytest.raises(sqlite3.IntegrityError):
        store.commit([ShardChanges("s", 0, entries=[a[1]])])
    assert store.entries("s", 0, A) == a[:2]


def test_chunked_loading_pages_everything_once(store: Store) -> None:
    rows = [MemoryRow(mid(i), A, i + 1, i, f"m{i}", vec(i, 0), 1.0) for i in range(2_500)]
    slots = [SlotRow(mid(i // 3), mid(i), bytes([i % 3]) * 16, 1, False, 1, 0.5, 0.5) for i in range(2_100)]
    store.commit([ShardChanges("s", 1, memories_put=rows, slots_put=slots)])
    chunks = list(store.iter_memories("s", 1, chunk=1_000))
    assert [len(c) for c in chunks] == [1_000, 1_000, 500]
    assert [r for c in chunks for r in c] == sorted(rows, key=lambda r: r.id)
    slot_chunks = list(store.iter_slots("s", 1, chunk=700))
    assert [len(c) for c in slot_chunks] == [700, 700, 700]
    got = [r for c in slot_chunks for r in c]
    assert sorted(got, key=lambda s: (s.src, s.dst, s.writer)) == got
    assert sorted(got, key=lambda s: (s.src, s.dst, s.writer)) == sorted(
        slots, key=lambda s: (s.src, s.dst, s.writer))
    assert list(store.iter_memories("s", 9)) == [] and list(store.iter_slots("zz", 0)) == []


def test_drop_shard_and_quarantine(store: Store, tmp_path: Path) -> None:
    a = chain("s", 0, A, 3)
    m = MemoryRow(mid(1), A, 1, 1, "x", vec(1), 1.0)
    store.commit([ShardChanges("s", 0, entries=a, memories_put=[m], vv=[(A, 3, a[2][1])]),
                  ShardChanges("s", 1, memories_put=[m])])
    store.quarantine("s", 0, B, "fork at seq 4: head hash differs")
    assert [(q.space, q.shard, q.origin) for q in store.quarantined()] == [("s", 0, B)]
    store.close()
    with Store.open(tmp_path) as again:
        assert again.quarantined()[0].reason.startswith("fork")
        again.release_quarantine("s", 0, B)
        assert again.quarantined() == []
        again.drop_shard("s", 0, own_seq=7)
        assert again.entries("s", 0, A) == [] and again.vv("s", 0) == {}
        assert again.memory_count("s", 0) == 0
        assert again.hosted_shards() == [("s", 1)]
        assert again.memory("s", mid(1)) == m  # shard 1 untouched
        # Our own origin's last seq there outlives the drop; the next drop of it records its own.
        assert again.dropped() == {("s", 0): 7}
        again.drop_shard("s", 0, own_seq=9)
        again.drop_shard("s", 1)
        assert again.dropped() == {("s", 0): 9}
        again.drop_shard("s", 0)
        assert again.dropped() == {}


def test_spaces_round_trip(store: Store) -> None:
    from engramp2p.store import SpaceRow

    store.put_space(SpaceRow("b", b"\x01", 5, A))
    store.put_space(SpaceRow("a", b"\x02", 6, B))
    store.put_space(SpaceRow("b", b"\x03", 4, B))  # the spaces layer decided a new winner
    assert store.spaces() == [SpaceRow("a", b"\x02", 6, B), SpaceRow("b", b"\x03", 4, B)]


ORIGINS = [bytes([i]) * 16 for i in range(3)]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory):
    """One store for all hypothesis examples (each example uses a fresh space name)."""
    s = Store.open(tmp_path_factory.mktemp("model"), durability="normal")
    yield s
    s.close()


_example = itertools.count()


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from(ORIGINS), st.integers(0, 1), st.integers(1, 4)), max_size=4),
        min_size=1, max_size=6),
    query=st.tuples(st.sampled_from(ORIGINS), st.integers(0, 1), st.integers(1, 12), st.integers(0, 12),
                    st.none() | st.integers(0, 5)),
)
def test_log_reads_match_a_model(shared_store: Store, batches: list[list[tuple[bytes, int, int]]],
                                 query: tuple[bytes, int, int, int, int | None]) -> None:
    """Whatever is committed, in whatever batching, reads back as the model's ordered prefix."""
    model: dict[tuple[bytes, int], list[tuple[Entry, bytes]]] = {}
    store, space = shared_store, f"m{next(_example)}"
    for batch in batches:
        changes = []
        for origin, shard, n in batch:
            log = model.setdefault((origin, shard), [])
            prev = log[-1][1] if log else ZERO_HASH
            new = chain(space, shard, origin, n, start=len(log) + 1, prev=prev)
            log.extend(new)
            changes.append(ShardChanges(space, shard, entries=new, vv=[(origin, len(log), log[-1][1])]))
        store.commit(changes)
    origin, shard, lo, span, limit = query
    expect = [e for e in model.get((origin, shard), []) if lo <= e[0].seq <= lo + span]
    if limit is not None:
        expect = expect[:limit]
    assert store.entries(space, shard, origin, lo, lo + span, limit) == expect
    for s in (0, 1):
        assert store.vv(space, s) == {o: (len(log), log[-1][1]) for (o, sh), log in model.items() if sh == s}
        assert store.entry_count(space, s) == sum(len(v) for (o, sh), v in model.items() if sh == s)


def test_grouped_batches_keep_their_order_per_row(store: Store) -> None:
    """Group commit coalesces row writes; a delete between two puts must still land between them."""
    m1 = MemoryRow(mid(1), A, 1, 1, "one", vec(1), 1.0)
    m1b = MemoryRow(mid(1), B, 2, 2, "one again", vec(2), 1.0)
    m2 = MemoryRow(mid(2), A, 3, 3, "two", vec(3), 1.0)
    s1 = SlotRow(mid(1), mid(2), A, 1, False, 1, 0.5, 0.5)
    results = store.commit_batches([
        [ShardChanges("s", 0, memories_put=[m1, m2], slots_put=[s1])],
        [ShardChanges("s", 0, memories_del=[mid(1), mid(2)], slots_del=[(mid(1), mid(2), A)])],
        [ShardChanges("s", 0, memories_put=[m1b], vv=[(A, 1, b"x" * 16)])],
        [ShardChanges("s", 0, slots_put=[s1], vv=[(A, 3, b"y" * 16)])],
    ])
    assert results == [None] * 4
    assert store.memory("s", mid(1)) == m1b
    assert store.memory("s", mid(2)) is None
    assert [r for c in store.iter_slots("s", 0) for r in c] == [s1]
    assert store.vv("s", 0) == {A: (3, b"y" * 16)}


def test_batch_failing_before_its_rows_are_written_leaks_nothing(store: Store) -> None:
    a = chain("s", 0, A, 2)
    bad = MemoryRow(mid(9), A, 2, 2, "bad", vec(1), 1.0, {"k": object()})  # type: ignore[dict-item]
    results = store.commit_batches([
        [ShardChanges("s", 0, entries=[a[0]])],
        [ShardChanges("s", 0, entries=[a[1]], memories_put=[bad])],  # fails while being queued
        [ShardChanges("s", 1, memories_put=[MemoryRow(mid(3), A, 1, 1, "ok", vec(1), 1.0)])],
    ])
    assert results[0] is None and results[2] is None and isinstance(results[1], TypeError)
    assert store.entries("s", 0, A) == a[:1]
    assert store.memory("s", mid(9)) is None and store.memory("s", mid(3)) is not None
