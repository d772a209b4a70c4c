"""Space descriptors: the map is a join-semilattice (smallest (created_hlc, creator) wins), names are
checked in full, rows round-trip, and the re-issue plan moves an origin's misplaced writes exactly once."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.entry import Associate, Remember
from engramp2p.repl.messages import SpaceDescriptor
from engramp2p.repl.placement import shard_of
from engramp2p.repl.replica import ShardReplica
from engramp2p.repl.spaces import (
    SpaceError,
    SpaceRegistry,
    decode,
    from_row,
    new_descriptor,
    plan_reissue,
    rank,
    to_row,
    valid_name,
)
from engramp2p.store.rows import SpaceRow

A, B, C = (bytes([i]) * 16 for i in (1, 2, 3))

DESCS = st.builds(
    SpaceDescriptor,
    name=st.sampled_from(["a", "b"]),
    dim=st.sampled_from([3, 4]),
    shards=st.sampled_from([1, 2]),
    replicas=st.sampled_from([1, 3]),
    metric=st.just("cosine"),
    created_hlc=st.integers(0, 3),
    creator=st.sampled_from([A, B, C]),
)


def final(descs: list[SpaceDescriptor]) -> list[SpaceDescriptor]:
    return SpaceRegistry(descs).descriptors()


@settings(max_examples=200, deadline=None)
@given(st.lists(DESCS, max_size=8), st.lists(DESCS, max_size=8), st.randoms(use_true_random=False))
def test_merge_is_a_semilattice(xs: list[SpaceDescriptor], ys: list[SpaceDescriptor], rnd: random.Random) -> None:
    shuffled = xs + ys + xs  # duplicated
    rnd.shuffle(shuffled)
    assert final(xs + ys) == final(shuffled) == final(ys + xs)
    # Merging registry states (not just lists) gives the same map: associative via incremental merges.
    r = SpaceRegistry(xs)
    r.merge(SpaceRegistry(ys).descriptors())
    assert r.descriptors() == final(xs + ys)
    for d in r.descriptors():
        assert d == min((x for x in xs + ys if x.name == d.name), key=rank)


def test_merge_reports_each_changed_name_once_with_its_kind() -> None:
    r = SpaceRegistry()
    late = new_descriptor("notes", 4, 100, B, shards=2)
    (ch,) = r.merge([late])
    assert ch.old is None and ch.new == late and not ch.relayout
    early_same = new_descriptor("notes", 4, 50, C, shards=2)
    (ch,) = r.merge([early_same, early_same])
    assert not ch.relayout and not ch.replaced  # equal content: provenance only
    more_replicas = new_descriptor("notes", 4, 40, C, shards=2, replicas=5)
    (ch,) = r.merge([more_replicas])
    assert ch.replaced and not ch.relayout
    reshaped = new_descriptor("notes", 4, 10, A, shards=3)
    (ch,) = r.merge([reshaped, late])
    assert ch.relayout and ch.old == more_replicas and ch.new == reshaped
    assert r.merge([late, more_replicas]) == []  # losers change nothing


def test_names_are_matched_in_full() -> None:
    assert valid_name("notes_2-x") and valid_name("a" * 64)
    for bad in ["", "A", "a" * 65, "notes\n", "no tes", "é", "a/b"]:
        assert not valid_name(bad)
        with pytest.raises(SpaceError, match="^name"):
            new_descriptor(bad, 4, 1, A)


def test_parameters_are_checked_naming_the_field() -> None:
    with pytest.raises(SpaceError, match="^dim"):
        new_descriptor("x", 0, 1, A)
    with pytest.raises(SpaceError, match="^shards"):
        new_descriptor("x", 4, 1, A, shards=0)
    with pytest.raises(SpaceError, match="^replicas"):
        new_descriptor("x", 4, 1, A, replicas=True)  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match="^metric"):
        new_descriptor("x", 4, 1, A, metric="l2")


def test_create_is_idempotent_and_conflicts_are_refused() -> None:
    r = SpaceRegistry()
    d, created = r.create("notes", 384, 10, A, shards=4, replicas=2)
    assert created
    again, created = r.create("notes", 384, 99, B, shards=4, replicas=2)
    assert again == d and not created
    with pytest.raises(SpaceError, match="^name: space 'notes' already exists"):
        r.create("notes", 128, 99, B)


def test_implicit_creation_uses_defaults_and_the_vector_dim() -> None:
    r = SpaceRegistry()
    d, created = r.ensure("auto", 7, 5, A)
    assert created and (d.dim, d.shards, d.replicas, d.metric) == (7, 1, 3, "cosine")
    assert r.ensure("auto", 9, 6, B) == (d, False)


def test_rows_round_trip_and_garbage_is_rejected() -> None:
    d = new_descriptor("notes", 4, 10, A)
    row = to_row(d)
    assert (row.name, row.created_hlc, row.creator) == ("notes", 10, A)
    assert from_row(row) == d
    assert from_row(SpaceRow("other", row.descriptor, 10, A)) is None
    assert decode(b"\xff\x00garbage") is None


def _host_shard0_writes(origin: bytes, other: bytes, n: int) -> tuple[ShardReplica, list[bytes]]:
    """A shard written under a one-shard loser: ``n`` memories and edges by ``origin``, one by ``other``."""
    rep = ShardReplica("s", 0)
    rng = random.Random(3)
    ids = [rng.randbytes(16) for _ in range(n)]
    for i, mid in enumerate(ids):
        rep.write(origin, 10 + i, Remember(mid, f"m{i}", bytes(16), 0.5))
    for i in range(n - 1):
        rep.write(origin, 100 + i, Associate(ids[i], ids[i + 1], 0.5, 0.8))
    foreign = ShardReplica("s", 0)
    fe, _ = foreign.write(other, 5, Remember(rng.randbytes(16), "theirs", bytes(16), 0.5))
    rep.receive([fe])
    return rep, ids


def test_reissue_moves_own_misplaced_writes_then_plan_is_empty() -> None:
    winner = new_descriptor("s", 4, 1, B, shards=3)
    rep0, ids = _host_shard0_writes(A, C, 12)
    plan = plan_reissue(winner, A, 0, rep0.state)
    misplaced = {mid for mid in ids if shard_of(mid, 3) != 0}
    assert misplaced and {b.id for _, b in plan.moves if isinstance(b, Remember)} == misplaced
    assert all(t == shard_of(b.id if isinstance(b, Remember) else b.src, 3) for t, b in plan.moves)
    assert plan.stranded == []
    # Apply: moves into their target shards first, then withdrawals in shard 0.
    targets = {s: ShardReplica("s", s) for s in (1, 2)}
    for t, body in plan.moves:
        targets[t].write(A, 500, body)
    rep0.write_many(A, [(600, body) for body in plan.withdrawals])
    assert not plan_reissue(winner, A, 0, rep0.state)
    for mid in ids:
        homes = [s for s, r in [(0, rep0), *targets.items()] if r.state.memory(mid) is not None]
        assert homes == [shard_of(mid, 3)]
    moved_edges = [(b.src, b.dst) for _, b in plan.moves if isinstance(b, Associate)]
    for src, dst in moved_edges:
        assert targets[shard_of(src, 3)].state.edge_value(src, dst) == (0.5, 0.8)
        assert rep0.state.edge_state(src, dst).get(A) is None
    assert len(rep0.state) >= 1  # the other origin's memory stays for its origin to move


def test_reissue_strands_vectors_of_another_dimension() -> None:
    rep0, ids = _host_shard0_writes(A, C, 4)
    plan = plan_reissue(new_descriptor("s", 8, 1, B, shards=1), A, 0, rep0.state)
    assert sorted(plan.stranded) == sorted(ids) and not plan.moves


def test_created_hlc_beyond_what_the_store_holds_is_ignored() -> None:
    """The wire lets ``created_hlc`` be any u64, SQLite only a signed 64-bit integer: a descriptor past
    2**63 - 1 from a peer must be dropped by ``merge``, not learned and then fail ``put_space`` (on the
    descriptor push-pull task that was an OverflowError that stopped the whole agent)."""
    r = SpaceRegistry()
    evil = SpaceDescriptor("x", 4, 1, 3, "cosine", 2**63, A)
    assert r.merge([evil]) == [] and r.get("x") is None
    edge = SpaceDescriptor("x", 4, 1, 3, "cosine", 2**63 - 1, A)
    (ch,) = r.merge([edge])
    assert ch.new == edge and to_row(edge).created_hlc == 2**63 - 1
    with pytest.raises(SpaceError, match="created_hlc"):
        new_descriptor("y", 4, 2**63, A)
