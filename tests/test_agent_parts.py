"""The agent's small parts: lag gauges, replay guard, keyring file, key operations, log lines, CLI errors."""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p import agent_log, cli
from engramp2p.config import Config
from engramp2p.keyfile import KeyFileError, plan_keyring, read_key_file, write_key_file
from engramp2p.loopmon import BOUNDS_MS, LagHistogram, LagMonitor, TimerLagTap
from engramp2p.net.keymsgs import MAX_KEYS, KeyOp, KeyOpReply
from engramp2p.net.keyops import KeyCore, KeyringChanged, apply_key_op
from engramp2p.net.replay import ReplayGuardKeyring
from engramp2p.net.seal import Keyring, SealError, encode_key, generate_key
from engramp2p.sansio import Emit
from engramp2p.swim.events import IncarnationChanged, MemberFailed, MemberJoined
from engramp2p.swim.messages import State
from engramp2p.swim.state import MemberView

# --------------------------------------------------------------------------------------------- lag


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=300),
    q=st.sampled_from([0.5, 0.9, 0.99, 1.0]),
)
def test_percentile_is_a_tight_upper_bound(samples: list[float], q: float) -> None:
    h = LagHistogram()
    for x in samples:
        h.record(x)
    p = h.percentile(q)
    rank = max(1, math.ceil(q * len(samples)))
    # At least the q-quantile of the samples lies at or below the reported value...
    assert sum(1 for x in samples if x <= p) >= rank
    # ...and the report never exceeds the maximum, nor the next bucket bound above the true quantile.
    true_q = sorted(samples)[rank - 1]
    assert p <= max(samples)
    above = [b for b in BOUNDS_MS if b >= true_q]
    assert p <= (above[0] if above else max(samples))
    assert h.n == len(samples) and h.max_ms == max(samples)


async def test_lag_monitor_samples_in_bursts(autojump_clock: trio.testing.MockClock) -> None:
    mon = LagMonitor(0.05, burst=1.0, every=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(mon.run)
        await trio.sleep(20.0)
        nursery.cancel_scope.cancel()
    # 4 bursts of 20 samples (+ the start of a fifth), each without lag under a mock clock.
    assert 80 <= mon.histogram.n <= 101
    assert mon.histogram.max_ms == pytest.approx(0.0, abs=1e-6)


class _Timed:
    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = deadlines

    def next_deadline(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def tick(self, now: float) -> list[object]:
        while self.deadlines and self.deadlines[0] <= now:
            self.deadlines.pop(0)
        return []

    def handle_packet(self, now: float, src: object, msgs: object) -> list[object]:
        self.deadlines.insert(0, now - 1.0)  # a deadline set in the past, as a shrunk suspicion timer
        return []


def test_timer_lag_tap_records_lateness_but_not_deadlines_set_in_the_past() -> None:
    core = _Timed([10.0, 20.0])
    tap = TimerLagTap(core)  # type: ignore[arg-type]
    assert tap.next_deadline() == 10.0
    tap.tick(10.004)
    assert tap.histogram.n == 1 and tap.histogram.max_ms == pytest.approx(4.0)
    tap.handle_packet(15.0, ("h", 1), [])
    assert tap.next_deadline() == 14.0
    tap.tick(15.0)  # served at once: the core set it in the past, that is not lag
    assert tap.histogram.n == 1
    assert tap.next_deadline() == 20.0
    tap.tick(20.0)
    assert tap.histogram.n == 2


# -------------------------------------------------------------------------------------------- replay


def test_replay_guard_refuses_a_second_copy_but_not_fresh_packets() -> None:
    key = generate_key()
    sender, ring = Keyring([key]), ReplayGuardKeyring([key], window=4)
    packets = [sender.seal(b"p%d" % i) for i in range(6)]
    assert ring.open(packets[0]) == b"p0"
    with pytest.raises(SealError, match="replayed"):
        ring.open(packets[0])
    assert ring.replays == 1
    for p in packets[1:]:
        ring.open(p)
    # The window is a count: the oldest nonce has been forgotten (documented trade-off).
    assert ring.open(packets[0]) == b"p0"


def test_replay_guard_does_not_remember_forgeries() -> None:
    key = generate_key()
    sealed = Keyring([key]).seal(b"x")
    forged = bytearray(sealed)
    forged[-1] ^= 1
    ring = ReplayGuardKeyring([key])
    with pytest.raises(SealError, match="no installed key"):
        ring.open(bytes(forged))
    assert ring.open(sealed) == b"x" and ring.replays == 0


# ------------------------------------------------------------------------------------------- keyfile


def _cfg(tmp: Path, *keys: bytes) -> Config:
    cfg = Config.default().with_flags(data_dir=str(tmp))
    if keys:
        cfg = cfg.with_overrides({"keyring.keys": [encode_key(k) for k in keys]})
    return cfg


def test_no_key_configured_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    plan = plan_keyring(_cfg(tmp_path))
    assert plan.source == "generated" and len(plan.keys) == 1
    assert stat.S_IMODE(os.stat(plan.path).st_mode) == 0o600
    again = plan_keyring(_cfg(tmp_path))
    assert again.source == "file" and again.keys == plan.keys


def test_key_file_outranks_configured_keys_but_installs_them(tmp_path: Path) -> None:
    rotated, old = generate_key(), generate_key()
    write_key_file(tmp_path / "keyring.key", [rotated])
    plan = plan_keyring(_cfg(tmp_path, old))
    assert plan.source == "file" and plan.keys == [rotated, old] and plan.ignored_primary
    assert read_key_file(tmp_path / "keyring.key") == [rotated, old]


def test_configured_keys_are_written_for_later_rotations(tmp_path: Path) -> None:
    a, b = generate_key(), generate_key()
    plan = plan_keyring(_cfg(tmp_path, a, b))
    assert plan.source == "config" and plan.keys == [a, b]
    assert read_key_file(plan.path) == [a, b]


@pytest.mark.parametrize(
    "text, error",
    [("", "holds no key"), ("not base64!\n", "line 1: not valid base64"), ("# c\n\nAAAA\n", "line 3: key must be 32")],
)
def test_bad_key_files_are_one_line_errors(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "keyring.key"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=re.escape(error)):
        read_key_file(path)


# ------------------------------------------------------------------------------------------- keyops


def test_key_operations_and_their_refusals() -> None:
    a, b = generate_key(), generate_key()
    ring = Keyring([a])
    assert apply_key_op(ring, "install", b) == KeyOpReply(True, "", [a, b])
    refused = apply_key_op(ring, "remove", a)
    assert not refused.ok and "primary" in refused.error
    assert apply_key_op(ring, "use", b).keys == [b, a]
    assert apply_key_op(ring, "remove", a).keys == [b]
    assert not apply_key_op(ring, "use", a).ok  # not installed
    assert not apply_key_op(ring, "install", b"short").ok
    for _ in range(MAX_KEYS - 1):
        assert apply_key_op(ring, "install", generate_key()).ok
    full = apply_key_op(ring, "install", generate_key())
    assert not full.ok and "full" in full.error


def test_key_core_answers_streams_and_emits_changes() -> None:
    a, b = generate_key(), generate_key()
    core = KeyCore(Keyring([a]))
    reply, actions = core.handle_stream_request(0.0, ("h", 1), KeyOp("install", b))
    assert reply.ok and actions == [Emit(KeyringChanged("install", b))]
    reply, actions = core.handle_stream_request(0.0, ("h", 1), KeyOp("list"))
    assert reply.keys == [a, b] and actions == []
    reply, actions = core.handle_stream_request(0.0, ("h", 1), KeyOp("remove", a))
    assert not reply.ok and actions == [] and core.counters["key_ops_refused"] == 1
    assert core.handle_packet(0.0, ("h", 1), [KeyOp("list")]) == []
    assert core.counters["key_msgs_unexpected"] == 1 and core.next_deadline() is None


# ---------------------------------------------------------------------------------------------- log


def _view(name: str = "pi-kitchen") -> MemberView:
    return MemberView(bytes.fromhex("3fa2c1d0") + bytes(12), name, ("127.0.0.1", 7947), State.ALIVE, 3, b"", 0.0, None)


def test_log_lines_are_one_line_with_utc_time_and_level() -> None:
    record = logging.LogRecord("engramp2p.node", logging.WARNING, __file__, 1, "member failed: x", None, None)
    line = agent_log.LineFormatter().format(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[WARN\] member failed: x", line)
    assert agent_log.member_line(MemberJoined(_view())) == (
        logging.INFO,
        "member joined: pi-kitchen (3fa2c1d0) 127.0.0.1:7947 incarnation 3",
    )
    assert agent_log.member_line(MemberFailed(_view()))[0] == logging.WARNING
    assert agent_log.member_line(IncarnationChanged(4))[0] == logging.DEBUG
    assert agent_log.member_line(object()) is None
    assert agent_log.event_name(MemberJoined(_view())) == "member_joined"


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "argv",
    [["members"], ["info", "--json"], ["join", "127.0.0.1:7946"], ["leave"], ["keys", "list"]],
)
def test_client_commands_without_an_agent_fail_with_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no agent running" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["members", "--status", "dead"],
        ["keys", "install", "not-a-key"],
        ["agent", "--bind", "not an ip"],
        ["members", "--data-dir", "a", "--socket", "b"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert capsys.readouterr().err.strip()


def test_agent_reports_a_busy_data_directory_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engramp2p.store import Store

    try:
        with Store.open(tmp_path / "d"):
            code = cli.main(["agent", "--data-dir", str(tmp_path / "d"), "--bind", "127.0.0.1:0"])
    finally:
        logging.getLogger(agent_log.LOGGER_NAME).handlers.clear()  # the agent pointed it at capsys
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot start" in err and "in use by another engramp2p process" in err
