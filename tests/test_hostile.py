"""Hostile bytes: whatever a peer sends, the codec raises ``WireError`` or returns bounded messages.

Random and mutated datagrams and frames (mutations of valid encodings reach deep into the decoder,
where purely random bytes rarely get past the first byte), in sealed and insecure mode, must never
raise anything else. Adversarial headers claiming huge lengths must be rejected fast and without
allocating anything near what they claim (tracemalloc peak).
"""

from __future__ import annotations

import struct
import tracemalloc
import typing
from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire import strategy_for

from engramp2p.api import messages as api
from engramp2p.crdt.entry import Associate, Dissociate, Dot, Entry, Forget, Remember, Retract
from engramp2p.net import wire
from engramp2p.net.framing import FrameDecoder, FrameTooLarge, frame, read_frame, unpack_datagram
from engramp2p.net.keymsgs import KeyOp, KeyOpReply
from engramp2p.net.seal import Keyring, generate_key
from engramp2p.repl.messages import (
    AckLevel,
    ForwardWrite,
    ForwardWriteResult,
    PushAck,
    PushEntries,
    SpaceDescriptor,
    SpaceList,
    SyncRequest,
    SyncResponse,
    VVEntry,
)
from engramp2p.spread.messages import (
    Activated,
    Hit,
    RecallRequest,
    RecallResponse,
    SpreadForward,
    SpreadItem,
    SpreadParams,
    SpreadReport,
    StartedForward,
)
from engramp2p.swim.messages import Ack, Alive, Dead, IndirectPing, MemberState, Nack, Ping, PushPull, Suspect

SEALED = Keyring([generate_key()], label="fleet")
INSECURE = Keyring.insecure()
PACKET_SIZE = 1400
HOSTILE = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_wire_errors(fn: Callable[[bytes], typing.Any], data: bytes) -> typing.Any:
    """Run a decoder on hostile input: success or ``WireError`` are fine; anything else fails the test."""
    try:
        return fn(data)
    except wire.WireError:
        return None


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few random edits: flips, overwrites, insertions, deletions, truncation."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCB, 0xCF, 0xD3, 0xDB, 0xDD, 0xDF, 0xFF])
            )
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=5))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup" and data:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def _corpus() -> list[wire.Message]:
    """One fully populated instance of every message type: cheap seeds that reach every decoder path."""
    n, m, h = b"n" * 16, b"m" * 16, b"h" * 16
    entries = [
        Entry(n, 1, 7, bytes(16), Remember(m, "content é", b"\x00\x00\x80?" * 2, 0.5, {"k": "v"})),
        Entry(n, 2, 8, h, Associate(m, h, 0.25, 1.0)),
        Entry(n, 3, 9, h, Dissociate(m, h, [Dot(n, 2)])),
        Entry(n, 4, 10, h, Retract(m, h)),
        Entry(n, 5, 11, h, Forget(m, [Dot(n, 1)])),
    ]
    vv = [VVEntry(n, 5, h), VVEntry(m, 0, bytes(16))]
    params = SpreadParams(0.5, 0.01, 6, 200, 3)
    return [
        Ping(1, n, m, "127.0.0.1", 7946),
        IndirectPing(2, n, "10.0.0.2", 7946, True, m, "10.0.0.1", 7946),
        Ack(3),
        Nack(4),
        Alive(5, n, "node-a", "10.0.0.1", 7946, b"meta"),
        Suspect(6, n, m),
        Dead(7, n, n, True),
        PushPull(True, [MemberState(n, "a", "h", 1, 2, 0, b"x"), MemberState(m, "b", "h", 2, 3, 3)]),
        SyncRequest("space", 0, vv, h, 1 << 20),
        SyncResponse("space", 1, entries, vv, h, True),
        PushEntries("space", 2, entries),
        PushAck("space", 2, vv),
        ForwardWrite(9, "space", [e.body for e in entries], AckLevel.QUORUM),
        ForwardWriteResult(9, False, "no host", [Dot(n, 1), Dot(m, 2)]),
        SpaceDescriptor("space", 384, 4, 3, "cosine", 12345, n),
        SpaceList([SpaceDescriptor("space", 384, 4, 3, "cosine", 12345, n)]),
        SpreadForward(1, 2, n, 3, 4, "space", 5, [SpreadItem(m, 0.75, 2), SpreadItem(h, 1.0, 0)], params),
        SpreadReport(1, 2, [Activated(m, 0.5, 0.9)], [StartedForward(3, 4, 1.5)]),
        RecallRequest(1, "space", 0, b"\x00\x00\x80?" * 4, 10),
        RecallResponse(1, [Hit(m, 0.99), Hit(h, -0.5)], ""),
        KeyOp("install", b"k" * 32),
        KeyOpReply(False, "refused", [b"k" * 32]),
    ]


CORPUS = _corpus()
corpus_packets = st.lists(st.sampled_from(CORPUS), min_size=1, max_size=6).map(wire.encode_packet)
corpus_frames = st.sampled_from(CORPUS).map(wire.encode_frame)
packet_plaintexts = st.lists(strategy_for(wire.Message), max_size=4).map(wire.encode_packet)
frame_plaintexts = strategy_for(wire.Message).map(wire.encode_frame)
request_plaintexts = strategy_for(api.AnyRequest).map(api.encode_request)
response_plaintexts = strategy_for(api.Response).map(api.encode_response)


def test_corpus_covers_every_message_type() -> None:
    assert {type(m) for m in CORPUS} == set(typing.get_args(wire.Message))
    assert wire.decode_packet(wire.encode_packet(CORPUS[:20])) == CORPUS[:20]


def _check_packet(msgs: list[typing.Any] | None) -> None:
    if msgs is not None:
        assert len(msgs) <= wire.MAX_PACKET_MESSAGES
        assert all(isinstance(m, wire.Message) for m in msgs)


@HOSTILE
@given(data=st.binary(max_size=2 * PACKET_SIZE))
def test_random_datagrams(data: bytes) -> None:
    for ring in (SEALED, INSECURE):
        _check_packet(_only_wire_errors(lambda d, r=ring: unpack_datagram(r, d, PACKET_SIZE), data))
    _check_packet(_only_wire_errors(wire.decode_packet, data))
    _only_wire_errors(wire.decode_frame, data)
    _only_wire_errors(api.decode_request, data)
    _only_wire_errors(api.decode_response, data)


def _mutated_packet_property(plain: bytes) -> None:
    """Insecure mode lets mutated plaintext reach the decoder; sealed mode must refuse it at the seal."""
    _check_packet(_only_wire_errors(lambda d: unpack_datagram(INSECURE, INSECURE.seal(d), 1 << 20), plain))
    assert _only_wire_errors(lambda d: unpack_datagram(SEALED, d, 1 << 20), INSECURE.seal(plain)) is None
    msg = _only_wire_errors(wire.decode_frame, plain)
    assert msg is None or isinstance(msg, wire.Message)


@HOSTILE
@given(plain=mutated(st.one_of(corpus_packets, corpus_frames)))
def test_mutated_corpus(plain: bytes) -> None:
    _mutated_packet_property(plain)


@settings(max_examples=150, deadline=None)
@given(plain=mutated(st.one_of(packet_plaintexts, frame_plaintexts)))
def test_mutated_generated_messages(plain: bytes) -> None:
    _mutated_packet_property(plain)


@settings(max_examples=300, deadline=None)
@given(plain=mutated(st.one_of(request_plaintexts, response_plaintexts)))
def test_mutated_control_messages(plain: bytes) -> None:
    req = _only_wire_errors(api.decode_request, plain)
    assert req is None or isinstance(req, api.Request)
    resp = _only_wire_errors(api.decode_response, plain)
    assert resp is None or isinstance(resp, api.Response)


@settings(max_examples=500, deadline=None)
@given(stream=st.binary(max_size=512), cuts=st.lists(st.integers(0, 512), max_size=6))
def test_random_streams_through_the_frame_decoder(stream: bytes, cuts: list[int]) -> None:
    dec = FrameDecoder(max_frame=256)
    last = 0
    try:
        for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
            for body in dec.feed(stream[last:cut]):
                assert len(body) <= 256
                _only_wire_errors(lambda b: wire.decode_frame(SEALED.open(b)), body)
            last = cut
            assert dec.buffered <= 4 + 256
        dec.eof()
    except wire.WireError:
        pass


# Inputs that claim far more than they carry. Each is tiny; decoding must not believe the claim.
_U32 = 2**32 - 1
ADVERSARIAL_PLAINTEXTS = {
    "array32 of 4G messages": b"\xdd" + struct.pack(">I", _U32),
    "array16 of 65535 messages": b"\xdc\xff\xff" + b"\x91" * 64,
    "push_pull claiming 4G states": b"\x91\x93\xa9push_pull\xc3\xdd" + struct.pack(">I", _U32),
    "alive with a 4 GiB name": b"\x91\x97\xa5alive\x01\xc4\x10"
    + b"n" * 16
    + b"\xdb"
    + struct.pack(">I", _U32),
    "alive with a 4 GiB meta": b"\x91\x97\xa5alive\x01\xc4\x10"
    + b"n" * 16
    + b"\xa1n\xa1h\x01\xc6"
    + struct.pack(">I", _U32),
    "sync_resp with 4G entries": b"\x91\x97\xa9sync_resp\xa1s\x00\xdd" + struct.pack(">I", _U32),
    "deep nesting": b"\x91" * 100_000,
    "map32 of 4G pairs": b"\xdf" + struct.pack(">I", _U32),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL_PLAINTEXTS))
def test_huge_claims_are_rejected_without_allocating(name: str) -> None:
    plain = ADVERSARIAL_PLAINTEXTS[name]
    sealed = INSECURE.seal(plain)
    tracemalloc.start()
    try:
        for _ in range(3):
            with pytest.raises(wire.WireError):
                unpack_datagram(INSECURE, sealed, 1 << 20)
            with pytest.raises(wire.WireError):
                wire.decode_frame(plain)
            with pytest.raises(wire.WireError):
                api.decode_request(plain)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(plain) + 256 * 1024, f"{name}: peak {peak} bytes"


def test_frame_header_claiming_4_gib_allocates_nothing() -> None:
    tracemalloc.start()
    try:
        dec = FrameDecoder(max_frame=8 * 1024 * 1024)
        with pytest.raises(FrameTooLarge):
            dec.feed(struct.pack(">I", _U32) + b"\x00" * 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


async def test_read_frame_with_a_huge_header_allocates_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(struct.pack(">I", _U32))
    tracemalloc.start()
    try:
        with trio.fail_after(5), pytest.raises(FrameTooLarge):
            await read_frame(right, max_frame=8 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_a_full_size_frame_of_tiny_items_stays_bounded() -> None:
    """The largest legal list in the smallest encoding: decoding cost is bounded by the declared max."""
    acks = [Ack(0)] * wire.MAX_PACKET_MESSAGES
    plain = wire.encode_packet(acks)
    assert wire.decode_packet(plain) == acks
    too_many = b"\xdc" + struct.pack(">H", wire.MAX_PACKET_MESSAGES + 1) + b"\x92\xa3ack\x00" * 65
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError, match="length <= 64"):
            wire.decode_packet(too_many)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert len(frame(plain)) == len(plain) + 4
