"""Hypothesis on the SWIM state machine: hostile event sequences never break its invariants."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.sansio import Emit, SendPacket
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.core import Swim
from engramp2p.swim.events import IncarnationChanged
from engramp2p.swim.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    State,
    Suspect,
)
from engramp2p.swim.state import LocalNode

ME = 0
IDS = range(0, 7)  # 0 is us; 6 is never introduced (an unknown member)


def nid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def addr(i: int) -> tuple[str, int]:
    return ("10.0.0.1", 7000 + i)


inc_delta = st.one_of(st.integers(-2, 3), st.integers(0, 2**64 - 1).map(lambda x: ("abs", x)))
claim = st.tuples(
    st.just("claim"),
    st.sampled_from(["alive", "suspect", "dead", "left"]),
    st.sampled_from(list(IDS)),
    inc_delta,
    st.sampled_from(list(IDS)),
)
ops = st.lists(
    st.one_of(
        claim,
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
        st.tuples(st.just("ack"), st.booleans(), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("nack"), st.booleans()),
        st.tuples(st.just("ping"), st.sampled_from(list(IDS))),
        st.tuples(st.just("relay"), st.sampled_from(list(IDS))),
        st.tuples(
            st.just("stream"),
            st.booleans(),
            st.lists(st.tuples(st.sampled_from(list(IDS)), st.integers(0, 3), inc_delta), max_size=6),
        ),
        st.tuples(st.just("reply"), st.booleans()),
        st.tuples(
            st.just("restore"),
            st.lists(st.tuples(st.sampled_from(list(IDS)), st.integers(0, 3), inc_delta), max_size=6),
        ),
        st.tuples(st.just("leave")),
    ),
    max_size=60,
)


def resolve(delta: int | tuple[str, int], known: int) -> int:
    if isinstance(delta, tuple):
        return delta[1]
    return min(2**64 - 1, max(0, known + delta))


@given(ops, st.integers(0, 2**32))
@settings(max_examples=200, deadline=None)
def test_hostile_sequences_never_make_a_peer_doubt_itself(seq: list, seed: int) -> None:
    s = Swim(
        SwimConfig(), LocalNode(nid(ME), "n0", *addr(ME), incarnation=3), random.Random(seed), seeds=[addr(9)]
    )
    now = 0.0
    actions = s.start(now)
    for i in range(1, 4):
        actions += s.handle_packet(now, addr(i), [Alive(1, nid(i), f"n{i}", *addr(i))])
    left = False
    last_inc = s.incarnation
    last_ping_seq = 0
    tokens: list[int] = []
    for op in seq:
        kind = op[0]
        if kind == "claim":
            _, what, about, delta, source = op
            view = s.member(nid(about))
            inc = resolve(delta, view.incarnation if view else 1)
            msg = {
                "alive": Alive(inc, nid(about), "x", *addr(about)),
                "suspect": Suspect(inc, nid(about), nid(source)),
                "dead": Dead(inc, nid(about), nid(source)),
                "left": Dead(inc, nid(about), nid(source), True),
            }[what]
            actions = s.handle_packet(now, addr(source), [msg])
        elif kind == "tick":
            now += op[1]
            actions = s.tick(now)
            d = s.next_deadline()
            assert d is None or d > now  # a driver never spins
        elif kind == "ack":
            actions = s.handle_packet(now, addr(1), [Ack(last_ping_seq if op[1] else op[2])])
        elif kind == "nack":
            actions = s.handle_packet(now, addr(1), [Nack(last_ping_seq if op[1] else 5)])
        elif kind == "ping":
            actions = s.handle_packet(now, addr(1), [Ping(1, nid(op[1]), nid(1), *addr(1))])
        elif kind == "relay":
            req = IndirectPing(2, nid(op[1]), *addr(op[1]), True, nid(1), *addr(1))
            actions = s.handle_packet(now, addr(1), [req])
        elif kind == "stream":
            _, as_request, rows = op
            states = []
            for about, state, delta in rows:
                view = s.member(nid(about))
                states.append(
                    MemberState(
                        nid(about), "x", *addr(about), resolve(delta, view.incarnation if view else 1), state
                    )
                )
            if as_request or not tokens:
                reply, actions = s.handle_stream_request(now, addr(2), PushPull(False, states))
                assert reply is not None
            else:
                actions = s.handle_stream_reply(now, tokens.pop(0), PushPull(False, states))
        elif kind == "restore":
            rows = [
                MemberState(nid(about), "r", *addr(about), resolve(delta, 1), state) for about, state, delta in op[1]
            ]
            actions = s.restore(now, rows)
        elif kind == "reply":
            actions = s.handle_stream_reply(
                now, tokens.pop(0) if tokens else 12345, None if op[1] else PushPull(False, [])
            )
        else:
            left = True
            actions = s.leave(now)
        reported = [
            a.event.incarnation
            for a in actions
            if isinstance(a, Emit) and isinstance(a.event, IncarnationChanged)
        ]
        assert reported == sorted(reported) and (not reported or reported[-1] == s.incarnation)
        for a in actions:
            if isinstance(a, SendPacket):
                for m in a.msgs:
                    if isinstance(m, Ping) and m.source == nid(ME):
                        last_ping_seq = m.seq
            elif hasattr(a, "token"):
                tokens.append(a.token)
        me = s.member(nid(ME))
        assert me is not None
        assert me.state == (State.LEFT if left else State.ALIVE)
        assert s.incarnation >= last_inc
        assert s.incarnation <= 2**64 - 1
        last_inc = s.incarnation
        assert 0 <= s.health_score < SwimConfig().awareness_max_multiplier
        # The cached push-pull (and the set the merge fast path checks against) is never stale.
        cached = s._push_pull(False).states
        fresh = s._local_states()
        assert len(cached) == len(fresh) and set(cached) == set(fresh)


@given(st.integers(1, 12), st.integers(0, 2**32), st.lists(st.integers(20, 40), max_size=3))
@settings(max_examples=60, deadline=None)
def test_every_alive_member_is_probed_each_round(n: int, seed: int, late_joiners: list[int]) -> None:
    cfg = SwimConfig()
    s = Swim(cfg, LocalNode(nid(ME), "n0", *addr(ME)), random.Random(seed))
    now = 0.0
    s.start(now)
    for i in range(1, n + 1):
        s.handle_packet(now, addr(i), [Alive(1, nid(i), f"n{i}", *addr(i))])
    probed: dict[bytes, list[float]] = {}
    joined_at = {nid(i): 0.0 for i in range(1, n + 1)}
    pending_joins = sorted(set(late_joiners))
    end = (pending_joins[-1] if pending_joins else 0.0) + 2.0 * (
        n + len(pending_joins) + 2
    ) * cfg.probe_interval
    while now < end:
        d = s.next_deadline()
        assert d is not None
        if pending_joins and pending_joins[0] <= d:
            now = float(pending_joins.pop(0))
            who = 100 + len(joined_at)
            s.handle_packet(now, addr(who), [Alive(1, nid(who), "late", *addr(who))])
            joined_at[nid(who)] = now
            continue
        now = d
        for a in s.tick(now):
            if isinstance(a, SendPacket) and isinstance(a.msgs[0], Ping):
                ping = a.msgs[0]
                probed.setdefault(ping.target, []).append(now)
                s.handle_packet(now, a.addr, [Ack(ping.seq)])
    total = len(joined_at)
    for node, t_join in joined_at.items():
        times = [t for t in probed.get(node, []) if t >= t_join]
        # One round visits everyone once; a member joining mid-round is placed ahead of the cursor.
        assert times, node
        assert times[0] - t_join <= (total + 1) * cfg.probe_interval + 1.0
