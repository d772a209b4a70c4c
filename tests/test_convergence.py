"""Stateful convergence of three replicas (crdt.md P5).

Local writes (remember, associate, dissociate, retract, forget) are pushed eagerly over a faulty network
(reorder, duplication, loss); pairwise anti-entropy rounds ship missing ranges under random byte budgets
with ``plan_missing`` + ``take_within_budget`` + ``offer``. After a final heal (sync until quiet) every
replica must hold equal version vectors, equal reads, equal digests and no tombstones.
"""

from __future__ import annotations

from hypothesis import settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engramp2p.crdt import edges
from engramp2p.crdt.entry import Associate, Dissociate, Entry, Forget, Remember, Retract
from engramp2p.crdt.hlc import HLC
from engramp2p.crdt.log import ShardLog, approx_size, plan_missing, take_within_budget
from engramp2p.crdt.materialize import ShardState

ORIGINS = [bytes([i]) * 16 for i in (1, 2, 3)]
IDS = [bytes([0xA0 + i]) * 16 for i in range(3)]
REPLICA = st.integers(0, 2)
PICK_ID = st.sampled_from(IDS)
PICK_END = st.sampled_from(IDS[:2])  # few edges, so removes and concurrent writes often collide
INDEX = st.integers(0, 10**6)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


class Replica:
    """A host of the shard: log + materialized state + an entry store (what store/ keeps in SQLite)."""

    def __init__(self, origin: bytes, clock: Clock) -> None:
        self.origin = origin
        self.log = ShardLog("s", 0, reorder_limit=4)
        self.state = ShardState("s", 0)
        self.store: dict[tuple[bytes, int], Entry] = {}
        self.hlc = HLC(now_ms=clock)

    def write(self, body: object) -> Entry:
        e = self.log.append_local(self.origin, self.hlc.tick(), body)
        self.store[(e.origin, e.seq)] = e
        self.state.apply(e)
        return e

    def receive(self, entry: Entry) -> None:
        self.hlc.observe(entry.hlc)
        r = self.log.offer(entry)
        for e, h in zip(r.applied, r.hashes, strict=True):
            self.store[(e.origin, e.seq)] = e
            self.state.apply(e, h)

    def fetch(self, origin: bytes, first: int, last: int):
        for seq in range(first, last + 1):
            yield self.store[(origin, seq)]


def reads(s: ShardState) -> tuple:
    mems = sorted((i, m.origin, m.seq, m.body) for i, m in s.memories())
    out = [(src, s.out_edges(src)) for src in IDS]
    raw = [edges.value(s.edge_state(a, b)) for a in IDS for b in IDS]
    return mems, out, raw, len(s)


class Convergence(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.replicas = [Replica(o, self.clock) for o in ORIGINS]
        self.network: list[tuple[int, Entry]] = []  # (destination, entry) in flight
        self.rounds = 0
        self.tombstones_seen = 0  # steps at which some replica held a tombstone

    def _push(self, i: int, e: Entry) -> None:
        self.network.extend((j, e) for j in range(3) if j != i)

    # -- local writes ---------------------------------------------------------------------------------

    @rule(i=REPLICA, mem=PICK_ID, content=st.sampled_from(["a", "b"]))
    def remember(self, i: int, mem: bytes, content: str) -> None:
        self._push(i, self.replicas[i].write(Remember(mem, content, b"\x00\x00\x80?", 1.0)))

    @rule(
        i=REPLICA,
        src=PICK_END,
        dst=PICK_END,
        w=st.sampled_from([0.0, 0.3, 1.0]),
        c=st.sampled_from([0.2, 1.0]),
    )
    def associate(self, i: int, src: bytes, dst: bytes, w: float, c: float) -> None:
        self._push(i, self.replicas[i].write(Associate(src, dst, w, c)))

    @rule(i=REPLICA, src=PICK_END, dst=PICK_END)
    def dissociate(self, i: int, src: bytes, dst: bytes) -> None:
        r = self.replicas[i]
        self._push(i, r.write(Dissociate(src, dst, r.state.edge_dots(src, dst))))

    @rule(i=REPLICA, src=PICK_END, dst=PICK_END)
    def retract(self, i: int, src: bytes, dst: bytes) -> None:
        self._push(i, self.replicas[i].write(Retract(src, dst)))

    @rule(i=REPLICA, mem=PICK_ID)
    def forget(self, i: int, mem: bytes) -> None:
        r = self.replicas[i]
        self._push(i, r.write(Forget(mem, r.state.memory_dots(mem))))

    @rule(i=REPLICA, j=REPLICA, k=INDEX)
    def catch_up_then_remove(self, i: int, j: int, k: int) -> None:
        """``i`` pulls everything ``j`` has, then removes something written by another origin; the push
        races the removed entries to the third replica, which must hold a tombstone until they arrive."""
        if i != j:
            while self.sync(j, i, 10**6):
                pass
        st_i, me = self.replicas[i].state, ORIGINS[i]
        targets = [
            ("edge", a, b)
            for a in IDS[:2]
            for b in IDS[:2]
            if any(d.writer != me for d in st_i.edge_dots(a, b))
        ]
        targets += [("memory", m, m) for m in IDS if any(d.writer != me for d in st_i.memory_dots(m))]
        if not targets:
            return
        kind, a, b = targets[k % len(targets)]
        if kind == "edge":
            self.dissociate(i, a, b)
        else:
            self.forget(i, a)

    @rule(ms=st.integers(0, 100))
    def time_passes(self, ms: int) -> None:
        self.clock.ms += ms

    # -- the faulty network ---------------------------------------------------------------------------

    @precondition(lambda self: self.network)
    @rule(k=INDEX)
    def deliver(self, k: int) -> None:  # any in-flight message, so delivery is reordered
        j, e = self.network.pop(k % len(self.network))
        self.replicas[j].receive(e)

    @precondition(lambda self: self.network)
    @rule(k=INDEX)
    def duplicate(self, k: int) -> None:
        self.network.append(self.network[k % len(self.network)])

    @precondition(lambda self: self.network)
    @rule(k=INDEX)
    def lose(self, k: int) -> None:
        self.network.pop(k % len(self.network))

    @precondition(lambda self: self.network)
    @rule(j=REPLICA)
    def flush_backwards(self, j: int) -> None:
        """Everything in flight to ``j`` arrives, newest first: the worst reordering."""
        mine = [e for d, e in self.network if d == j]
        self.network = [(d, e) for d, e in self.network if d != j]
        for e in reversed(mine):
            self.replicas[j].receive(e)

    # -- anti-entropy -----------------------------------------------------------------------------------

    def chunk(self, i: int, j: int, budget: int) -> list[Entry]:
        """One budgeted chunk of what ``i`` holds and ``j`` lacks, as ``i`` would serve it."""
        a, b = self.replicas[i], self.replicas[j]
        self.rounds += 1
        ranges = plan_missing(a.log.vv, b.log.vv, rotate=self.rounds)
        batch, more = take_within_budget(ranges, a.fetch, budget, approx_size)
        assert bool(batch) == bool(ranges)
        assert len(batch) <= 1 or sum(approx_size(e) for e in batch) <= budget
        assert not more or len(batch) < sum(r.last_seq - r.first_seq + 1 for r in ranges)
        return batch

    def sync(self, i: int, j: int, budget: int) -> bool:
        """``i`` serves ``j`` one chunk over a reliable stream; True if ``j`` learned anything."""
        b = self.replicas[j]
        before = b.log.vv.copy()
        for e in self.chunk(i, j, budget):
            b.receive(e)
        return b.log.vv != before

    @rule(i=REPLICA, j=REPLICA, budget=st.integers(1, 1500))
    def sync_round(self, i: int, j: int, budget: int) -> None:
        if i != j:
            self.sync(i, j, budget)

    @rule(i=REPLICA, j=REPLICA, budget=st.integers(1, 1500))
    def sync_over_network(self, i: int, j: int, budget: int) -> None:
        """A chunk whose entries travel as separate messages: they race pushes, get lost or reordered."""
        if i != j:
            self.network.extend((j, e) for e in self.chunk(i, j, budget))

    # -- invariants -------------------------------------------------------------------------------------

    @invariant()
    def logs_and_states_agree(self) -> None:
        self.tombstones_seen += any(r.state.tombstones() for r in self.replicas)
        for r in self.replicas:
            assert r.log.buffered_count() <= r.log.reorder_limit
            assert not r.log.quarantined
            for o in ORIGINS:
                n = r.log.vv.seq_of(o)
                assert r.state.seq_of(o) == n  # the state saw exactly the contiguous prefix
                assert (o, n + 1) not in r.store and (n == 0 or (o, n) in r.store)

    def teardown(self) -> None:
        # Steer generation towards histories where tombstones wait in the reordering window.
        target(float(self.tombstones_seen), label="steps with a tombstone held")
        progress = True
        while progress:  # heal: sync every ordered pair until nothing moves
            progress = False
            for i in range(3):
                for j in range(3):
                    if i != j:
                        while self.sync(i, j, 700):
                            progress = True
        first = self.replicas[0]
        for r in self.replicas:
            assert r.log.vv == first.log.vv
            assert r.log.buffered_count() == 0
            assert reads(r.state) == reads(first.state)
            assert r.state.digest() == first.state.digest()
            assert r.state.tombstones() == 0


Convergence.TestCase.settings = settings(max_examples=250, stateful_step_count=40, deadline=None)
TestConvergence = Convergence.TestCase
