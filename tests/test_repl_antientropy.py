"""Anti-entropy steps (make_request / answer / absorb / push_back) and the sync scheduler."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.entry import Associate, Entry, Remember
from engramp2p.crdt.log import approx_size
from engramp2p.repl.antientropy import (
    BadSync,
    SchedulerConfig,
    SyncScheduler,
    absorb,
    answer,
    make_request,
    out_of_sync,
    push_back,
    snapshot,
)
from engramp2p.repl.messages import SyncRequest, SyncResponse, VVEntry
from engramp2p.repl.replica import ShardReplica

ORIG = [bytes([i]) * 16 for i in (1, 2, 3, 4)]
IDS = [bytes([0xB0 + i]) * 16 for i in range(8)]


class Durable:
    """A peer's committed log (what ``fetch`` serves): only entries whose changes were committed."""

    def __init__(self) -> None:
        self.log: dict[bytes, list[Entry]] = {}

    def commit(self, entries: list[Entry]) -> None:
        for e in entries:
            lst = self.log.setdefault(e.origin, [])
            assert e.seq == len(lst) + 1
            lst.append(e)

    def fetch(self, origin: bytes, first: int, last: int) -> list[Entry]:
        return self.log.get(origin, [])[first - 1: last]


class Peer:
    def __init__(self) -> None:
        self.rep = ShardReplica("s", 0)
        self.store = Durable()

    def write(self, origin: bytes, hlc: int, body: object) -> Entry:
        e, ch = self.rep.write(origin, hlc, body)  # type: ignore[arg-type]
        self.store.commit([x for x, _ in ch.entries])
        return e

    def take(self, entries: list[Entry]) -> int:
        res = self.rep.receive(entries)
        self.store.commit(res.applied)
        return len(res.applied)


def sync_round(a: Peer, b: Peer, budget: int) -> tuple[bool, bool]:
    """A asks B; A absorbs; A pushes back what B lacks. Returns (more, push_more)."""
    req = make_request(a.rep, budget)
    resp = answer(snapshot(b.rep), req, b.store.fetch, budget)
    res = absorb(a.rep, resp)
    a.store.commit(res.receive.applied)
    push, push_more = push_back(a.rep, res.lacks, a.store.fetch, budget)
    if push is not None:
        b.take(push.entries)
    return res.more, push_more


def remember(i: int, content: str = "x") -> Remember:
    return Remember(IDS[i % len(IDS)], content, bytes(16), 0.5)


def test_answer_ships_ascending_within_budget_and_never_skips() -> None:
    a, b = Peer(), Peer()
    for i in range(10):
        b.write(ORIG[0], i, remember(i, "c" * 100))
        b.write(ORIG[1], i, remember(i, "d" * 100))
    size = approx_size(b.store.log[ORIG[0]][0])
    resp = answer(b.rep, make_request(a.rep), b.store.fetch, budget=size * 3)
    assert resp.more and len(resp.entries) == 3
    per_origin: dict[bytes, list[int]] = {}
    for e in resp.entries:
        per_origin.setdefault(e.origin, []).append(e.seq)
    for seqs in per_origin.values():
        assert seqs == list(range(1, len(seqs) + 1))
    # A budget below one entry still ships one: every round makes progress.
    tiny = answer(b.rep, make_request(a.rep), b.store.fetch, budget=1)
    assert len(tiny.entries) == 1 and tiny.more


def test_only_durable_entries_are_served() -> None:
    b = Peer()
    for i in range(5):
        b.write(ORIG[0], i, remember(i))
    b.store.log[ORIG[0]] = b.store.log[ORIG[0]][:3]  # entries 4, 5 not committed yet
    resp = answer(b.rep, make_request(ShardReplica("s", 0)), b.store.fetch)
    assert [e.seq for e in resp.entries] == [1, 2, 3]


def test_one_round_repairs_both_directions() -> None:
    a, b = Peer(), Peer()
    for i in range(4):
        a.write(ORIG[0], i, remember(i, "a"))
        b.write(ORIG[1], i, Associate(IDS[i], IDS[i + 1], 0.5, 1.0))
    more, push_more = sync_round(a, b, 1 << 20)
    assert not more and not push_more
    assert a.rep.vv == b.rep.vv and a.rep.digest() == b.rep.digest()
    assert a.rep.lag() == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(60, 3000))
def test_rounds_with_tiny_budgets_converge(seed: int, budget: int) -> None:
    rng = random.Random(seed)
    peers = [Peer() for _ in range(3)]
    for _ in range(rng.randint(0, 40)):
        p = rng.randrange(3)
        peers[p].write(ORIG[p], rng.randint(1, 50), remember(rng.randrange(8), "z" * rng.randint(0, 200)))
    for _ in range(200):
        i, j = rng.sample(range(3), 2)
        sync_round(peers[i], peers[j], budget)
        if all(p.rep.vv == peers[0].rep.vv for p in peers):
            break
    assert all(p.rep.vv == peers[0].rep.vv and p.rep.digest() == peers[0].rep.digest() for p in peers)


def test_more_continues_until_caught_up() -> None:
    a, b = Peer(), Peer()
    for i in range(30):
        b.write(ORIG[1], i, remember(i, "q" * 50))
    rounds = 0
    while True:
        rounds += 1
        more, _ = sync_round(a, b, 400)
        if not more:
            break
    assert rounds > 1 and a.rep.vv == b.rep.vv


def test_bad_messages_raise_badsync() -> None:
    rep = ShardReplica("s", 0)
    with pytest.raises(BadSync):
        answer(rep, SyncRequest("other", 0, [], b"", 100), lambda o, f, last: [])
    dup = [VVEntry(ORIG[0], 1, bytes(16)), VVEntry(ORIG[0], 2, bytes(16))]
    with pytest.raises(BadSync):
        answer(rep, SyncRequest("s", 0, dup, b"", 100), lambda o, f, last: [])
    with pytest.raises(BadSync):
        absorb(rep, SyncResponse("s", 1, [], [], b"", False))


def test_head_mismatch_at_equal_seq_quarantines_and_reports() -> None:
    a, clone = Peer(), Peer()
    a.write(ORIG[0], 1, remember(0, "real"))
    clone.write(ORIG[0], 1, remember(0, "cloned disk"))
    res = absorb(a.rep, answer(clone.rep, make_request(a.rep), clone.store.fetch))
    assert [f.origin for f in res.forks] == [ORIG[0]] and ORIG[0] in a.rep.quarantined
    again = absorb(a.rep, answer(clone.rep, make_request(a.rep), clone.store.fetch))
    assert again.forks == []  # reported once


def test_equal_vv_different_digest_is_divergence() -> None:
    a, b = Peer(), Peer()
    e = a.write(ORIG[0], 1, remember(0))
    b.take([e])
    resp = answer(b.rep, make_request(a.rep), b.store.fetch)
    forged = SyncResponse(resp.space, resp.shard, resp.entries, resp.vv, bytes(16), resp.more)
    assert absorb(a.rep, forged).diverged
    assert not absorb(a.rep, resp).diverged
    assert out_of_sync(a.rep, forged.vv, forged.digest) and not out_of_sync(a.rep, resp.vv, resp.digest)
    assert out_of_sync(a.rep, [], resp.digest)


# -- scheduler ----------------------------------------------------------------------------------------


ME, P1, P2, P3 = ORIG


def cfg(**kw: float) -> SchedulerConfig:
    base = dict(sync_interval=10.0, jitter=0.2, urgent_delay=0.05, backoff_base=1.0, backoff_max=8.0,
                max_in_flight=8)
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


def test_new_hosts_sync_at_once_then_periodically_with_jitter() -> None:
    s = SyncScheduler(ME, cfg(), seed=1)
    s.set_hosts(0.0, "s", 0, [ME, P1, P2])
    assert s.next_deadline() == pytest.approx(0.05)
    starts = s.due(0.05)
    assert sorted(x.peer for x in starts) == [P1, P2] and {x.reason for x in starts} == {"placement"}
    assert s.due(0.05) == []  # in flight: not started twice
    for x in starts:
        s.finished(0.1, x.token, ok=True, caught_up=True)
    times = []
    now = 0.1
    for _ in range(20):
        now = s.next_deadline()
        assert now is not None
        got = s.due(now)
        if got:
            times.append(now)
            assert len(got) == 1 and got[0].reason == "periodic"
            s.finished(now, got[0].token, ok=True)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and all(8.0 - 1e-9 <= g <= 12.0 + 1e-9 for g in gaps)


def test_periodic_rotates_over_peers() -> None:
    s = SyncScheduler(ME, cfg(jitter=0.0), seed=2)
    s.set_hosts(0.0, "s", 0, [P1, P2, P3])
    for x in s.due(1.0):
        s.finished(1.0, x.token, ok=True)
    seen = []
    now = 1.0
    while len(seen) < 6:
        now = s.next_deadline()
        for x in s.due(now):
            seen.append(x.peer)
            s.finished(now, x.token, ok=True)
    assert set(seen[:3]) == {P1, P2, P3} and seen[:3] == seen[3:]


def test_failures_back_off_exponentially_and_recovery_resets() -> None:
    s = SyncScheduler(ME, cfg(jitter=0.0, sync_interval=100.0), seed=3)
    s.set_hosts(0.0, "s", 0, [P1])
    now = 0.05
    retries = []
    for _ in range(5):
        (x,) = s.due(now)
        s.finished(now, x.token, ok=False)
        s.nudge(now, "s", 0, P1, "early")
        nxt = s.next_deadline()
        assert nxt is not None
        retries.append(nxt - now)
        now = nxt
    assert retries == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0])
    (x,) = s.due(now)
    s.finished(now, x.token, ok=False)
    s.member_recovered(now, P1)
    assert s.next_deadline() == pytest.approx(now + 0.05)
    assert [y.reason for y in s.due(now + 0.05)] == ["recovered"]


def test_more_runs_next_round_immediately_and_in_flight_is_capped() -> None:
    s = SyncScheduler(ME, cfg(max_in_flight=2), seed=4)
    for shard in range(3):
        s.set_hosts(0.0, "s", shard, [P1])
    first = s.due(1.0)
    assert len(first) == 2 and s.in_flight() == 2
    s.finished(1.5, first[0].token, ok=True, more=True)
    nxt = s.due(1.5)
    assert len(nxt) == 1 and s.in_flight() == 2
    again = [x for x in nxt if (x.space, x.shard) == (first[0].space, first[0].shard)]
    assert (again and again[0].reason == "more") or len(nxt) == 1


def test_removed_shard_and_stale_tokens_are_ignored() -> None:
    s = SyncScheduler(ME, cfg(), seed=5)
    s.set_hosts(0.0, "s", 0, [P1])
    (x,) = s.due(1.0)
    s.remove_shard("s", 0)
    s.finished(2.0, x.token, ok=True)
    s.finished(2.0, 999, ok=False)
    assert s.next_deadline() is None and s.in_flight() == 0
