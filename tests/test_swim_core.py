"""Unit tests of each SWIM/Lifeguard rule, driving one ``Swim`` by hand (no network)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from engramp2p.sansio import Action, Addr, Emit, SendPacket, SendStream
from engramp2p.swim.broadcast import PACKET_OVERHEAD, encoded_size
from engramp2p.swim.config import SwimConfig
from engramp2p.swim.core import Swim
from engramp2p.swim.events import (
    IncarnationChanged,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRecovered,
    MemberRefuted,
    MemberSuspected,
    MemberUpdated,
)
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
OWN_INC = 5


def nid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def addr(i: int) -> Addr:
    return ("10.0.0.1", 7000 + i)


def alive(i: int, inc: int = 1, meta: bytes = b"", port: int | None = None) -> Alive:
    return Alive(inc, nid(i), f"n{i}", "10.0.0.1", 7000 + i if port is None else port, meta)


def make(n_members: int = 4, cfg: SwimConfig | None = None, seed: int = 1, **kw) -> Swim:
    s = Swim(
        cfg or SwimConfig(),
        LocalNode(nid(ME), "n0", *addr(ME), incarnation=OWN_INC),
        random.Random(seed),
        **kw,
    )
    s.start(0.0)
    for i in range(1, n_members + 1):
        s.handle_packet(0.0, addr(i), [alive(i)])
    return s


def packets(actions: list[Action]) -> list[SendPacket]:
    return [a for a in actions if isinstance(a, SendPacket)]


def events(actions: list[Action], kind: type) -> list:
    return [a.event for a in actions if isinstance(a, Emit) and isinstance(a.event, kind)]


def msgs_of(actions: list[Action], kind: type) -> list[tuple[Addr, object]]:
    return [(p.addr, m) for p in packets(actions) for m in p.msgs if isinstance(m, kind)]


Responder = Callable[[Swim, float, SendPacket], list[Action]]


def run(
    s: Swim, until: float, respond: Responder | None = None, start: float = 0.0
) -> list[tuple[float, Action]]:
    """Tick ``s`` at each deadline up to ``until``; ``respond`` answers its packets at the same instant.

    Like a real driver, the clock never goes back: a deadline already passed fires at ``start``.
    """
    log: list[tuple[float, Action]] = []
    pending: list[tuple[float, list[Action]]] = []
    while True:
        d = s.next_deadline()
        if d is None or d > until:
            break
        d = start = max(d, start)
        acts = s.tick(d)
        pending.append((d, acts))
        while pending:
            t, acts = pending.pop()
            for a in acts:
                log.append((t, a))
                if respond is not None and isinstance(a, SendPacket):
                    more = respond(s, t, a)
                    if more:
                        pending.append((t, more))
    return log


def ack_pings(s: Swim, t: float, p: SendPacket) -> list[Action]:
    out: list[Action] = []
    for m in p.msgs:
        if isinstance(m, Ping):
            out += s.handle_packet(t, p.addr, [Ack(m.seq)])
    return out


def acts(log: list[tuple[float, Action]]) -> list[Action]:
    return [a for _, a in log]


def tick_to_ping(s: Swim) -> tuple[float, list[Action]]:
    """Tick through gossip rounds until the next probe goes out; returns its time and actions."""
    for _ in range(1000):
        t = s.next_deadline()
        assert t is not None
        out = s.tick(t)
        if msgs_of(out, Ping):
            return t, out
    raise AssertionError("no probe")


# ---------------------------------------------------------------- probe cycle


def test_round_robin_probes_every_member_once_per_round_and_never_self() -> None:
    s = make(5)
    log = run(s, 10.5, ack_pings)
    targets = [m.target for _, m in msgs_of(acts(log), Ping)]
    assert len(targets) >= 10
    assert nid(ME) not in targets
    assert sorted(targets[:5]) == [nid(i) for i in range(1, 6)]
    assert sorted(targets[5:10]) == [nid(i) for i in range(1, 6)]
    assert targets[:5] != targets[5:10] or targets[:5] != sorted(targets[:5])  # reshuffled, not fixed order


def test_dead_and_left_members_are_skipped() -> None:
    s = make(4)
    s.handle_packet(0.0, addr(1), [Dead(1, nid(3), nid(1)), Dead(1, nid(4), nid(4), left=True)])
    log = run(s, 20.0, ack_pings)
    targets = {m.target for _, m in msgs_of(acts(log), Ping)}
    assert targets == {nid(1), nid(2)}


def test_failed_probe_goes_indirect_with_nack_then_suspects() -> None:
    cfg = SwimConfig()
    s = make(4, cfg)
    t0, ping_acts = tick_to_ping(s)
    ((dst, ping),) = msgs_of(ping_acts, Ping)
    assert s.next_deadline() == pytest.approx(t0 + cfg.probe_timeout)
    ind = s.tick(t0 + cfg.probe_timeout)
    reqs = msgs_of(ind, IndirectPing)
    assert len(reqs) == cfg.indirect_checks
    assert all(r.target == ping.target and r.seq == ping.seq and r.nack for _, r in reqs)
    assert dst not in {a for a, _ in reqs}
    assert not events(ind, MemberSuspected)
    verdict = s.tick(t0 + cfg.probe_interval)
    (ev,) = events(verdict, MemberSuspected)
    assert ev.member.node_id == ping.target
    assert s.member(ping.target).state == State.SUSPECT
    assert s.health_score == 3  # three nacks expected, none came


def test_awareness_nacks_received_mean_no_penalty_and_success_heals() -> None:
    cfg = SwimConfig()
    s = make(4, cfg)
    t0, out = tick_to_ping(s)
    ((_, ping),) = msgs_of(out, Ping)
    s.tick(t0 + cfg.probe_timeout)
    s.handle_packet(t0 + 0.6, addr(1), [Nack(ping.seq), Nack(ping.seq), Nack(ping.seq)])
    verdict = s.tick(t0 + cfg.probe_interval)
    assert events(verdict, MemberSuspected)
    assert s.health_score == 0
    ((_, ping2),) = msgs_of(verdict, Ping)  # the next probe starts right away
    s.handle_packet(t0 + 1.01, addr(1), [Suspect(OWN_INC, nid(ME), nid(1))])  # refuting costs +1
    assert s.health_score == 1
    s.handle_packet(t0 + 1.02, addr(2), [Ack(ping2.seq)])
    assert s.health_score == 0


def test_awareness_without_helpers_counts_one_and_stretches_the_probe_deadline() -> None:
    cfg = SwimConfig()
    s = make(1, cfg)
    t0, _ = tick_to_ping(s)
    for expected in (1, 2, 3):
        s.tick(t0 + cfg.probe_timeout)
        deadline = t0 + cfg.probe_interval * expected  # scaled by (score + 1) when the probe started
        s.tick(deadline - 0.001)
        assert s.member(nid(1)).state == State.ALIVE
        out = s.tick(deadline)
        assert events(out, MemberSuspected)
        assert s.health_score == expected
        assert msgs_of(out, Ping)  # the next probe starts at once
        s.handle_packet(deadline, addr(1), [alive(1, inc=10 + expected)])  # it refutes
        t0 = deadline


def test_buddy_system_ping_to_a_suspect_carries_the_suspicion() -> None:
    s = make(1)
    s.handle_packet(0.0, addr(1), [Suspect(1, nid(1), nid(9))])
    _, out = tick_to_ping(s)
    (p,) = [p for p in packets(out) if isinstance(p.msgs[0], Ping)]
    assert any(isinstance(m, Ping) for m in p.msgs)
    assert Suspect(1, nid(1), nid(ME)) in p.msgs


def test_misrouted_and_unknown_inputs_are_counted_and_dropped() -> None:
    s = make(2)
    out = s.handle_packet(0.1, addr(1), [Ping(7, nid(42), nid(1), *addr(1))])
    assert not msgs_of(out, Ack)
    assert s.counters["ping_misrouted"] == 1
    s.handle_packet(
        0.1, addr(1), [Ack(123456), Nack(99), Suspect(1, nid(77), nid(1)), Dead(1, nid(78), nid(1))]
    )
    assert s.counters["ack_unknown"] == 1
    assert s.counters["nack_unknown"] == 1
    assert s.counters["unknown_member"] == 2
    out = s.handle_packet(0.1, addr(1), [PushPull(False, [])])
    assert s.counters["msg_unexpected"] == 1
    assert s.handle_stream_reply(0.1, 999, None) == []
    assert s.counters["stream_unknown_token"] == 1


def test_ping_is_acked_to_its_source() -> None:
    s = make(1)
    out = s.handle_packet(0.1, addr(1), [Ping(7, nid(ME), nid(1), *addr(1))])
    assert msgs_of(out, Ack) == [(addr(1), Ack(7))]


def test_relay_forwards_ack_or_nacks_after_probe_timeout() -> None:
    cfg = SwimConfig()
    s = make(2, cfg)
    req = IndirectPing(11, nid(2), *addr(2), True, nid(1), *addr(1))
    out = s.handle_packet(1.0, addr(1), [req])
    ((dst, ping),) = msgs_of(out, Ping)
    assert dst == addr(2) and ping.target == nid(2)
    out = s.handle_packet(1.1, addr(2), [Ack(ping.seq)])
    assert msgs_of(out, Ack) == [(addr(1), Ack(11))]
    out = s.handle_packet(2.0, addr(1), [IndirectPing(12, nid(2), *addr(2), True, nid(1), *addr(1))])
    out = s.tick(2.0 + cfg.probe_timeout)
    assert msgs_of(out, Nack) == [(addr(1), Nack(12))]


# ---------------------------------------------------------------- suspicion


def test_suspicion_runs_to_max_without_confirmations_and_min_with_k() -> None:
    cfg = SwimConfig()
    # 5 members + us: n = 6, k = 2, min = 4 s, max = 24 s.
    s = make(5, cfg)
    s.handle_packet(10.0, addr(2), [Suspect(1, nid(1), nid(2))])
    assert s.member(nid(1)).state == State.SUSPECT
    log = run(s, 35.0, ack_pings)
    # Our own probes of 1 are acked, so nobody confirms: the timer runs to max (24 s).
    (t_dead,) = [t for t, a in log if isinstance(a, Emit) and isinstance(a.event, MemberFailed)]
    assert t_dead == pytest.approx(34.0)
    s2 = make(5, cfg)
    s2.handle_packet(10.0, addr(2), [Suspect(1, nid(1), nid(2))])
    s2.handle_packet(10.5, addr(3), [Suspect(1, nid(1), nid(3)), Suspect(1, nid(1), nid(4))])
    log2 = run(s2, 40.0, ack_pings)
    (t2,) = [t for t, a in log2 if isinstance(a, Emit) and isinstance(a.event, MemberFailed)]
    assert t2 == pytest.approx(14.0)
    assert s2.member(nid(1)).state == State.DEAD


def test_suspicion_timeout_uses_max_without_confirmations() -> None:
    s = make(5, SwimConfig(fast_confirm=False))

    def ack_all_but_1(sw: Swim, t: float, p: SendPacket) -> list[Action]:
        return [] if p.addr == addr(1) else ack_pings(sw, t, p)

    s.handle_packet(10.0, addr(2), [Suspect(1, nid(1), nid(2))])
    # Our own failed probes of 1 would confirm; answer nobody's indirect pings so only we confirm.
    log = run(s, 40.0, ack_all_but_1)
    (t_dead,) = [t for t, a in log if isinstance(a, Emit) and isinstance(a.event, MemberFailed)]
    # One confirmation (ours) at most: timeout between the 1-confirmation value and max.
    assert 10.0 + 4.0 < t_dead <= 10.0 + 24.0


def test_fast_confirm_probes_a_suspect_first_and_its_failure_confirms() -> None:
    cfg = SwimConfig(fast_confirm=True)
    s = make(3, cfg)  # n = 4, k = 2, probability min(1, 2k/n) = 1
    s.handle_packet(0.0, addr(2), [Suspect(1, nid(3), nid(2))])
    t0, out = tick_to_ping(s)
    ((_, ping),) = msgs_of(out, Ping)
    assert ping.target == nid(3)
    assert s.counters["probes_fast_confirm"] == 1
    s.tick(t0 + cfg.probe_timeout)
    s.tick(t0 + cfg.probe_interval)
    susp = s._members[nid(3)].suspicion  # noqa: SLF001 - white-box check of the confirmation
    assert susp is not None and susp.n == 1


def test_suspect_about_a_suspect_confirms_and_is_rebroadcast() -> None:
    s = make(5)
    s.handle_packet(1.0, addr(2), [Suspect(1, nid(1), nid(2))])
    s.handle_packet(1.0, addr(3), [Suspect(1, nid(1), nid(3))])
    gossip = run(s, 1.5)
    assert any(m == Suspect(1, nid(1), nid(3)) for _, m in msgs_of(acts(gossip), Suspect))


# ---------------------------------------------------------------- incarnations


def test_refutes_suspicion_about_self_with_max_plus_one() -> None:
    s = make(2)
    out = s.handle_packet(1.0, addr(1), [Suspect(OWN_INC, nid(ME), nid(1))])
    assert s.incarnation == OWN_INC + 1
    assert events(out, IncarnationChanged) == [IncarnationChanged(OWN_INC + 1)]
    out = s.handle_packet(1.0, addr(1), [Dead(40, nid(ME), nid(1))])
    assert s.incarnation == 41
    out = s.handle_packet(1.0, addr(1), [Suspect(3, nid(ME), nid(1)), Dead(40, nid(ME), nid(1))])
    assert s.incarnation == 41 and not events(out, IncarnationChanged)  # stale claims
    log = run(s, 2.0)
    sent_alive = [m for _, m in msgs_of(acts(log), Alive) if m.node == nid(ME)]
    assert sent_alive and sent_alive[0].incarnation == 41
    assert s.member(nid(ME)).state == State.ALIVE


def test_alive_about_self_refuted_only_when_it_differs() -> None:
    s = make(1)
    s.handle_packet(1.0, addr(1), [Alive(OWN_INC, nid(ME), "n0", *addr(ME))])
    assert s.incarnation == OWN_INC
    s.handle_packet(1.0, addr(1), [Alive(OWN_INC, nid(ME), "n0", "6.6.6.6", 1)])
    assert s.incarnation == OWN_INC + 1


def test_implausible_incarnation_jumps_are_rejected() -> None:
    cfg = SwimConfig(max_incarnation_jump=100)
    s = make(2, cfg)
    s.handle_packet(1.0, addr(1), [Suspect(OWN_INC + 101, nid(ME), nid(1)), Dead(2**64 - 1, nid(ME), nid(1))])
    assert s.incarnation == OWN_INC
    s.handle_packet(1.0, addr(1), [alive(2, inc=102), Suspect(10**6, nid(1), nid(2))])
    assert s.member(nid(2)).incarnation == 1
    assert s.member(nid(1)).state == State.ALIVE
    assert s.counters["implausible_incarnation"] == 4


def test_stale_alive_ignored_newer_alive_updates_and_recovers() -> None:
    s = make(2)
    out = s.handle_packet(1.0, addr(1), [alive(1, inc=1, meta=b"x")])
    assert not events(out, MemberUpdated) and s.member(nid(1)).meta == b""
    out = s.handle_packet(1.0, addr(1), [alive(1, inc=2, meta=b"x")])
    assert [e.member.meta for e in events(out, MemberUpdated)] == [b"x"]
    out = s.handle_packet(2.0, addr(1), [alive(1, inc=3, port=9000)])
    assert events(out, MemberUpdated)[0].member.addr == ("10.0.0.1", 9000)
    s.handle_packet(3.0, addr(2), [Suspect(3, nid(1), nid(2))])
    out = s.handle_packet(3.5, addr(1), [alive(1, inc=4)])
    assert events(out, MemberRefuted)
    s.handle_packet(4.0, addr(2), [Dead(4, nid(1), nid(2))])
    assert s.member(nid(1)).state == State.DEAD
    out = s.handle_packet(5.0, addr(1), [alive(1, inc=5)])
    assert events(out, MemberRecovered) and s.member(nid(1)).state == State.ALIVE
    out = s.handle_packet(5.0, addr(3), [alive(3)])
    assert events(out, MemberJoined)


# ---------------------------------------------------------------- leave, reap, reconnect, seeds


def test_graceful_leave_broadcasts_left_and_reports_done() -> None:
    cfg = SwimConfig()
    s = make(3, cfg)
    out = s.leave(10.0)
    assert any(m == Dead(OWN_INC, nid(ME), nid(ME), True) for _, m in msgs_of(out, Dead))
    assert not s.left_done(10.0)
    assert s.left_done(10.0 + cfg.leave_propagate_delay)
    s.handle_packet(10.1, addr(1), [Suspect(OWN_INC, nid(ME), nid(1)), Dead(OWN_INC, nid(ME), nid(1))])
    assert s.incarnation == OWN_INC  # a leaving peer does not refute
    assert s.member(nid(ME)).state == State.LEFT
    log = run(s, 20.0)
    assert not msgs_of(acts(log), Ping)  # no more probing
    assert s.next_deadline() is None or s.next_deadline() > 20.0


def test_left_and_dead_members_are_reaped_after_their_timeouts() -> None:
    cfg = SwimConfig(left_reap_timeout=100.0, reconnect_timeout=200.0)
    s = make(3, cfg)
    out = s.handle_packet(1.0, addr(1), [Dead(1, nid(1), nid(1), left=True), Dead(1, nid(2), nid(3))])
    assert events(out, MemberLeft) and events(out, MemberFailed)
    log = run(s, 150.0, ack_pings)
    assert [e.member.node_id for e in events(acts(log), MemberReaped)] == [nid(1)]
    assert s.member(nid(2)).state == State.DEAD
    log = run(s, 250.0, ack_pings)
    assert [e.member.node_id for e in events(acts(log), MemberReaped)] == [nid(2)]
    assert s.member(nid(2)) is None


def test_dead_member_is_retried_by_push_pull_every_reconnect_interval() -> None:
    cfg = SwimConfig()
    s = make(1, cfg)
    s.handle_packet(1.0, addr(1), [Dead(1, nid(1), nid(9))])
    log = run(s, 1.0 + 2 * cfg.reconnect_interval)
    streams = [a for a in acts(log) if isinstance(a, SendStream)]
    assert len(streams) == 2 and all(a.addr == addr(1) and a.msg.join for a in streams)
    # The failed member answers with its state: it recovers.
    reply = PushPull(False, [MemberState(nid(1), "n1", *addr(1), 2, int(State.ALIVE))])
    out = s.handle_stream_reply(70.0, streams[0].token, reply)
    assert events(out, MemberRecovered)


def test_seeds_are_retried_with_backoff_while_nobody_is_alive() -> None:
    cfg = SwimConfig(seed_retry_min=1.0, seed_retry_max=8.0)
    s = Swim(cfg, LocalNode(nid(ME), "n0", *addr(ME)), random.Random(3), seeds=[addr(1), addr(ME)])
    out = s.start(0.0)
    times = [0.0]
    tokens = [a.token for a in out if isinstance(a, SendStream)]
    assert len(tokens) == 1  # our own address is not a seed
    t = 0.0
    while t < 40.0:
        for tok in tokens:
            s.handle_stream_reply(t, tok, None)
        t = s.next_deadline()
        tokens = [a.token for a in s.tick(t) if isinstance(a, SendStream) and a.addr == addr(1)]
        if tokens:
            times.append(t)
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:6] == [1.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    s.handle_packet(t, addr(1), [alive(1)])
    before = len(times)
    log = run(s, t + 30.0, ack_pings)
    assert not [a for a in acts(log) if isinstance(a, SendStream) and a.msg.join]
    assert before == len(times)


def test_push_pull_downgrades_remote_dead_to_suspect_and_applies_left() -> None:
    s = make(3)
    token = next(a.token for a in s.join(1.0, [addr(9)]) if isinstance(a, SendStream))
    reply = PushPull(
        False,
        [
            MemberState(nid(1), "n1", *addr(1), 1, int(State.DEAD)),
            MemberState(nid(2), "n2", *addr(2), 1, int(State.LEFT)),
            MemberState(nid(ME), "n0", *addr(ME), OWN_INC, int(State.DEAD)),
            MemberState(nid(9), "n9", *addr(9), 1, int(State.ALIVE)),
            MemberState(nid(10), "n10", *addr(10), 1, int(State.DEAD)),
        ],
    )
    out = s.handle_stream_reply(1.1, token, reply)
    assert s.member(nid(1)).state == State.SUSPECT
    assert s.member(nid(2)).state == State.LEFT
    assert s.member(nid(ME)).state == State.ALIVE and s.incarnation == OWN_INC + 1
    assert s.member(nid(9)).state == State.ALIVE
    assert s.member(nid(10)) is None  # a stranger's tombstone is not adopted
    assert events(out, MemberSuspected) and events(out, MemberLeft) and events(out, MemberJoined)


def test_stream_request_answers_with_state_before_merge() -> None:
    s = make(2)
    reply, out = s.handle_stream_request(
        1.0, addr(5), PushPull(True, [MemberState(nid(5), "n5", *addr(5), 1, 0)])
    )
    assert reply is not None
    assert {st.node for st in reply.states} == {nid(0), nid(1), nid(2)}
    assert events(out, MemberJoined)[0].member.node_id == nid(5)


def test_periodic_push_pull_to_a_random_alive_member() -> None:
    cfg = SwimConfig()
    s = make(3, cfg)
    log = run(s, 2 * cfg.push_pull_interval + 0.1, ack_pings)
    streams = [a for a in acts(log) if isinstance(a, SendStream)]
    assert len(streams) >= 2 and all(
        not a.msg.join and a.addr in {addr(1), addr(2), addr(3)} for a in streams
    )


def test_gossip_reaches_recently_dead_only_within_gossip_to_the_dead_time() -> None:
    cfg = SwimConfig(gossip_nodes=5)
    s = make(2, cfg)
    s.handle_packet(0.0, addr(1), [Dead(1, nid(2), nid(1))])
    early = run(s, 5.0, ack_pings)
    assert addr(2) in {p.addr for p in packets(acts(early)) if not any(isinstance(m, Ping) for m in p.msgs)}
    s.handle_packet(40.0, addr(1), [alive(3)])
    late = run(s, 45.0, ack_pings, start=40.0)
    gossip_addrs = {
        p.addr for p in packets(acts(late)) if not any(isinstance(m, (Ping, Ack)) for m in p.msgs)
    }
    assert addr(3) in gossip_addrs and addr(2) not in gossip_addrs


def test_every_packet_fits_the_budget_and_is_filled_with_broadcasts() -> None:
    budget = 600
    cfg = SwimConfig(gossip_nodes=0)  # no gossip rounds: only probes and acks carry the news
    s = Swim(cfg, LocalNode(nid(ME), "n0", *addr(ME)), random.Random(5), packet_budget=budget)
    s.start(0.0)
    out = s.handle_packet(0.0, addr(1), [alive(i) for i in range(1, 60)])
    log = run(s, 3.0, ack_pings)
    pk = packets(out + acts(log))
    assert pk
    for p in pk:
        assert PACKET_OVERHEAD + sum(encoded_size(m) for m in p.msgs) <= budget
        assert len(p.msgs) <= 64
    pings = [p for p in pk if isinstance(p.msgs[0], Ping)]
    assert pings and all(len(p.msgs) > 1 for p in pings[:3])


def test_set_meta_bumps_incarnation_and_is_bounded() -> None:
    s = make(1)
    out = s.set_meta(1.0, b"m" * 10)
    assert events(out, IncarnationChanged) == [IncarnationChanged(OWN_INC + 1)]
    assert s.member(nid(ME)).meta == b"m" * 10
    with pytest.raises(ValueError):
        s.set_meta(1.0, b"m" * 513)


def test_a_stalled_peer_gives_refutations_and_helpers_time_before_judging() -> None:
    cfg = SwimConfig()
    s = make(3, cfg)
    s.handle_packet(1.0, addr(2), [Suspect(1, nid(1), nid(2))])
    t0, out = tick_to_ping(s)
    # The process stops for a minute: every timer is long overdue when it runs again.
    late = s.tick(t0 + 60.0)
    assert not events(late, MemberFailed) and not events(late, MemberSuspected)
    assert msgs_of(late, IndirectPing)  # the helpers are asked now, and get their full window
    assert s.counters["stall_grace"] == 1
    out = s.handle_packet(t0 + 60.1, addr(1), [alive(1, inc=2)])  # the refutation that was waiting
    assert events(out, MemberRefuted)
    log = run(s, t0 + 70.0, ack_pings, start=t0 + 60.1)
    assert not events(acts(log), MemberFailed)


def test_a_peer_that_missed_a_death_is_told_when_it_asks_about_the_member() -> None:
    s = make(3)
    s.handle_packet(1.0, addr(2), [Dead(1, nid(1), nid(2))])
    out = s.handle_packet(2.0, addr(3), [IndirectPing(5, nid(1), *addr(1), True, nid(3), *addr(3))])
    assert (addr(3), Dead(1, nid(1), nid(ME))) in msgs_of(out, Dead)
    assert msgs_of(out, Ping)  # the ping is still relayed, in case the member is alive after all
    run(s, 10.0, ack_pings, start=2.0)  # our Dead news drains from the queue
    assert nid(1) not in s._queue  # noqa: SLF001
    s.handle_packet(10.0, addr(3), [Suspect(1, nid(1), nid(3))])  # a stale suspicion...
    log = run(s, 11.0, ack_pings, start=10.0)
    assert any(m.node == nid(1) for _, m in msgs_of(acts(log), Dead))  # ...is answered with our Dead


def test_push_pull_message_is_reused_until_the_table_changes() -> None:
    s = make(2)
    first, _ = s.handle_stream_request(1.0, addr(1), PushPull(False, []))
    again, _ = s.handle_stream_request(1.1, addr(1), PushPull(False, []))
    assert again is first  # nothing changed: the very same message (and states list)
    s.handle_packet(1.2, addr(3), [alive(3)])
    grown, _ = s.handle_stream_request(1.3, addr(1), PushPull(False, []))
    assert grown is not first and {st.node for st in grown.states} == {nid(0), nid(1), nid(2), nid(3)}
    s.handle_packet(1.4, addr(3), [Suspect(1, nid(3), nid(1))])
    suspected, _ = s.handle_stream_request(1.5, addr(1), PushPull(False, []))
    assert {st.node: st.state for st in suspected.states}[nid(3)] == State.SUSPECT
    s.set_meta(1.6, b"v2")
    renewed, _ = s.handle_stream_request(1.7, addr(1), PushPull(False, []))
    own = next(st for st in renewed.states if st.node == nid(0))
    assert own.meta == b"v2" and own.incarnation == OWN_INC + 1


def test_restore_adds_alive_members_silently_and_probes_them() -> None:
    s = make(1)
    snapshot = [
        MemberState(nid(2), "n2", *addr(2), 3, int(State.ALIVE)),
        MemberState(nid(3), "n3", *addr(3), 1, int(State.DEAD)),  # not alive: skipped
        MemberState(nid(1), "n1", *addr(1), 9, int(State.ALIVE)),  # known already: untouched
        MemberState(nid(ME), "n0", *addr(ME), 1, int(State.ALIVE)),  # ourselves: skipped
    ]
    out = s.restore(1.0, snapshot)
    assert [e.member.node_id for e in events(out, MemberJoined)] == [nid(2)]
    assert not packets(out)
    assert nid(2) not in s._queue  # nobody is told what everybody knows
    views = {v.node_id: v for v in s.members()}
    assert views[nid(2)].state == State.ALIVE and views[nid(2)].incarnation == 3
    assert views[nid(1)].incarnation == 1 and nid(3) not in views
    log = run(s, 6.0, ack_pings, start=1.0)
    assert nid(2) in {m.target for _, m in msgs_of(acts(log), Ping)}
