"""Datagram packing and stream framing: the sans-IO ``FrameDecoder`` and the trio helpers."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.net.framing import (
    LENGTH_PREFIX,
    FrameDecoder,
    FrameTooLarge,
    frame,
    open_frame,
    pack_datagram,
    read_frame,
    seal_frame,
    unpack_datagram,
    write_frame,
)
from engramp2p.net.seal import Keyring, SealError, generate_key
from engramp2p.net.wire import WireError
from engramp2p.swim.messages import Ack, Nack, Suspect

RING = Keyring([generate_key()], label="t")


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points + [len(data)]:
        chunks.append(data[last:p])
        last = p
    return chunks


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=12)
)
def test_decoder_reassembles_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(b) for b in bodies)
    dec = FrameDecoder(max_frame=300)
    got: list[bytes] = []
    for chunk in _split(stream, cuts):
        got += dec.feed(chunk)
        assert dec.buffered <= LENGTH_PREFIX + 300
    assert got == bodies
    assert dec.at_boundary
    dec.eof()


def test_oversized_header_is_rejected_from_the_header_alone() -> None:
    dec = FrameDecoder(max_frame=1024)
    assert dec.feed(struct.pack(">I", 1025)[:3]) == []  # not yet a whole header
    with pytest.raises(FrameTooLarge, match="1025"):
        dec.feed(struct.pack(">I", 1025)[3:])  # the fourth byte decides, no body needed
    assert dec.buffered == 0
    with pytest.raises(FrameTooLarge):  # the stream stays failed
        dec.feed(b"\x00" * 10)
    assert issubclass(FrameTooLarge, WireError)


def test_frames_at_the_limit_pass() -> None:
    dec = FrameDecoder(max_frame=1024)
    assert dec.feed(frame(b"a" * 1024) + frame(b"") + frame(b"z")) == [b"a" * 1024, b"", b"z"]


def test_eof_inside_a_frame_is_an_error() -> None:
    dec = FrameDecoder(max_frame=100)
    dec.feed(frame(b"abcdef")[:7])
    assert not dec.at_boundary
    with pytest.raises(WireError, match="inside a frame"):
        dec.eof()
    header_only = FrameDecoder(max_frame=100)
    header_only.feed(b"\x00\x00")
    with pytest.raises(WireError):
        header_only.eof()


def test_bad_max_frame_is_a_local_error() -> None:
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError):
            FrameDecoder(bad)


def test_sealed_frames_through_the_decoder() -> None:
    msgs = [Ack(1), Suspect(3, b"n" * 16, b"s" * 16), Nack(9)]
    wire_bytes = b"".join(seal_frame(RING, m) for m in msgs)
    dec = FrameDecoder(max_frame=4096)
    bodies = [b for i in range(len(wire_bytes)) for b in dec.feed(wire_bytes[i : i + 1])]
    assert [open_frame(RING, b) for b in bodies] == msgs
    with pytest.raises(SealError):
        open_frame(Keyring([generate_key()], label="t"), bodies[0])


def test_datagram_size_is_checked_before_opening() -> None:
    data = pack_datagram(RING, [Ack(1), Nack(2)], 1400)
    assert unpack_datagram(RING, data, 1400) == [Ack(1), Nack(2)]
    with pytest.raises(WireError, match="exceeds packet_size"):
        unpack_datagram(RING, data, len(data) - 1)  # a valid packet, but over budget: never opened
    with pytest.raises(SealError):
        unpack_datagram(Keyring([generate_key()], label="t"), data, 1400)


async def test_read_and_write_frames_over_a_stream() -> None:
    left, right = trio.testing.memory_stream_pair()
    bodies = [b"one", b"", b"x" * 200_000, b"last"]
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            for b in bodies:
                await write_frame(left, b)
            await left.send_eof()

        nursery.start_soon(send)
        got = []
        while (body := await read_frame(right, max_frame=300_000)) is not None:
            got.append(body)
    assert got == bodies


async def test_read_frame_never_reads_past_its_frame() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(frame(b"first") + b"\x01\x02\x03")
    assert await read_frame(right, 100) == b"first"
    assert await right.receive_some(100) == b"\x01\x02\x03"  # left for whoever reads next


async def test_read_frame_rejects_oversized_header_without_waiting_for_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(struct.pack(">I", 2**32 - 1))  # and no body ever follows
    with trio.fail_after(5), pytest.raises(FrameTooLarge):
        await read_frame(right, max_frame=1 << 20)


async def test_read_frame_eof_mid_frame() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(frame(b"abcdef")[:6])
    await left.send_eof()
    with pytest.raises(WireError, match="inside a frame"):
        await read_frame(right, 100)
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"\x00\x00")
    await left.send_eof()
    with pytest.raises(WireError):
        await read_frame(right, 100)
