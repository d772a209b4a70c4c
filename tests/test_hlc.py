"""HLC laws: monotone, observe dominates the message, max-offset rule, equal to the paper's (l, c) rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.hlc import HLC, LOGICAL_MASK, elapsed_ms, hlc_logical, hlc_pack, hlc_wall_ms

MAX_OFF = 60_000
T0 = 1_700_000_000_000  # a plausible wall clock in ms

SETTINGS = settings(max_examples=300, deadline=None)


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


# An event: ("tick", pt) or ("recv", pt, remote wall offset from pt, remote logical).
events = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(-5_000, 5_000)),
        st.tuples(
            st.just("recv"),
            st.integers(-5_000, 5_000),
            st.integers(-2 * MAX_OFF, 2 * MAX_OFF),
            st.integers(0, 1_000),
        ),
    ),
    max_size=60,
)


@SETTINGS
@given(events)
def test_monotone_dominates_and_max_offset(evs: list[tuple]) -> None:
    clock = FakeClock(T0)
    hlc = HLC(start=0, max_offset_ms=MAX_OFF, now_ms=clock)
    for ev in evs:
        clock.ms = T0 + ev[1]  # the physical clock may jump backwards
        before = hlc.last
        if ev[0] == "tick":
            t = hlc.tick()
            assert t > before
            assert hlc_wall_ms(t) >= clock.ms  # l >= pt
        else:
            m = hlc_pack(clock.ms + ev[2], ev[3])
            trusted = hlc.observe(m)
            assert trusted == (ev[2] <= MAX_OFF)
            if trusted:
                assert hlc.last > before and hlc.last > m
                assert hlc.tick() > m  # causality: anything after the receive is later
            else:
                assert hlc.last == before  # clock untouched, caller flags the peer


def paper_send(lc: tuple[int, int], pt: int) -> tuple[int, int]:
    """Kulkarni et al., send or local event."""
    lt, c = lc
    l2 = max(lt, pt)
    return (l2, c + 1 if l2 == lt else 0)


def paper_recv(lc: tuple[int, int], m: tuple[int, int], pt: int) -> tuple[int, int]:
    """Kulkarni et al., receive event."""
    (lt, c), (lm, cm) = lc, m
    l2 = max(lt, lm, pt)
    if l2 == lt == lm:
        c2 = max(c, cm) + 1
    elif l2 == lt:
        c2 = c + 1
    elif l2 == lm:
        c2 = cm + 1
    else:
        c2 = 0
    return l2, c2


@SETTINGS
@given(events)
def test_equals_paper_rules(evs: list[tuple]) -> None:
    clock = FakeClock(T0)
    hlc = HLC(start=hlc_pack(T0, 0), max_offset_ms=10 * MAX_OFF, now_ms=clock)
    oracle = (T0, 0)
    for ev in evs:
        clock.ms = T0 + ev[1]
        if ev[0] == "tick":
            hlc.tick()
            oracle = paper_send(oracle, clock.ms)
        else:
            lm, cm = clock.ms + ev[2], ev[3]
            assert hlc.observe(hlc_pack(lm, cm))
            oracle = paper_recv(oracle, (lm, cm), clock.ms)
        assert oracle[1] < LOGICAL_MASK  # the oracle has no overflow rule; stay inside its domain
        assert (hlc_wall_ms(hlc.last), hlc_logical(hlc.last)) == oracle


def test_logical_overflow_carries_into_ms() -> None:
    clock = FakeClock(T0)
    hlc = HLC(start=hlc_pack(T0, LOGICAL_MASK), now_ms=clock)
    t = hlc.tick()
    assert t == hlc_pack(T0 + 1, 0)
    assert hlc.tick() == hlc_pack(T0 + 1, 1)


def test_far_future_message_exactly_at_the_bound() -> None:
    clock = FakeClock(T0)
    hlc = HLC(now_ms=clock, max_offset_ms=MAX_OFF)
    assert hlc.observe(hlc_pack(T0 + MAX_OFF, 7))
    assert hlc.last == hlc_pack(T0 + MAX_OFF, 8)
    assert not hlc.observe(hlc_pack(T0 + MAX_OFF * 3, 0))
    assert hlc.last == hlc_pack(T0 + MAX_OFF, 8)


@SETTINGS
@given(st.integers(0, 2**48 - 1), st.integers(0, LOGICAL_MASK), st.integers(0, 2**64 - 1))
def test_pack_and_elapsed(wall: int, logical: int, other: int) -> None:
    h = hlc_pack(wall, logical)
    assert (hlc_wall_ms(h), hlc_logical(h)) == (wall, logical)
    assert elapsed_ms(h, other) == max(0, wall - (other >> 16))
    assert elapsed_ms(h, h) == 0


def test_bad_inputs_are_local_errors() -> None:
    with pytest.raises(ValueError):
        hlc_pack(0, LOGICAL_MASK + 1)
    with pytest.raises(ValueError):
        hlc_pack(2**48, 0)
    with pytest.raises(ValueError):
        HLC(start=-1)


def test_restart_never_reissues() -> None:
    clock = FakeClock(T0)
    first = HLC(now_ms=clock)
    issued = [first.tick() for _ in range(5)]
    clock.ms = T0 - 10_000  # wall clock stepped back while the process was down
    second = HLC(start=max(issued), now_ms=clock)
    assert second.tick() > max(issued)
