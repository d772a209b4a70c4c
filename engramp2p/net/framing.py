"""Datagram packing and stream framing, each check done before the next, costlier step.

Datagrams: size check, then open (authenticate), then decode -- a forged or oversized packet costs no
decode work. Streams: each frame is ``4-byte big-endian length | sealed bytes``; the length is checked
against ``max_frame`` from the header alone, before a byte of the body is buffered, so a peer claiming
4 GiB costs us four bytes.

``FrameDecoder`` is the sans-IO part (fed bytes, yields frames) and is what the tests hammer; the trio
helpers ``read_frame``/``write_frame`` read exactly one frame from a stream and never past its end, so
a stream can carry a request/response exchange without a decoder object kept between calls.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from engramp2p.net.seal import SEAL_OVERHEAD, Keyring
from engramp2p.net.wire import (
    PACKET_ARRAY_OVERHEAD,
    Message,
    WireError,
    decode_frame,
    decode_packet,
    encode_frame,
    encode_packet,
)

if TYPE_CHECKING:
    import trio

LENGTH_PREFIX = 4
MAX_FRAME_LIMIT = 2**32 - 1
DEFAULT_MAX_FRAME = 8 * 1024 * 1024
DEFAULT_PACKET_SIZE = 1400
_LENGTH = struct.Struct(">I")
_READ_CHUNK = 64 * 1024  # a receive never asks the OS for more than this, whatever the frame size


class FrameTooLarge(WireError):
    """A frame header announced more than ``max_frame`` bytes; the stream must be closed."""


class PacketTooLarge(ValueError):
    """Our own messages do not fit the datagram budget: a local error (the caller mis-budgeted)."""


def message_budget(packet_size: int) -> int:
    """Bytes available for the sum of ``encoded_size`` of one datagram's messages."""
    return packet_size - SEAL_OVERHEAD - PACKET_ARRAY_OVERHEAD


def pack_datagram(keyring: Keyring, msgs: Iterable[Message | msgspec.Raw], packet_size: int) -> bytes:
    """Seal ``msgs`` as one datagram of at most ``packet_size`` bytes."""
    sealed = keyring.seal(encode_packet(msgs))
    if len(sealed) > packet_size:
        raise PacketTooLarge(f"sealed datagram is {len(sealed)} bytes, budget {packet_size}")
    return sealed


def unpack_datagram(keyring: Keyring, data: bytes, packet_size: int) -> list[Message]:
    """Messages of a received datagram, or ``WireError`` (size, then authentication, then decoding)."""
    if len(data) > packet_size:
        raise WireError(f"datagram of {len(data)} bytes exceeds packet_size {packet_size}")
    return decode_packet(keyring.open(data))


def frame(sealed: bytes) -> bytes:
    """Length-prefix one sealed frame for a stream."""
    if len(sealed) > MAX_FRAME_LIMIT:
        raise ValueError(f"frame of {len(sealed)} bytes cannot be length-prefixed")
    return _LENGTH.pack(len(sealed)) + sealed


def seal_frame(keyring: Keyring, msg: Message) -> bytes:
    """One message, sealed and length-prefixed, ready for ``send_all``."""
    return frame(keyring.seal(encode_frame(msg)))


def open_frame(keyring: Keyring, sealed: bytes) -> Message:
    """The message in a frame body returned by ``FrameDecoder`` or ``read_frame``."""
    return decode_frame(keyring.open(sealed))


def _check_max_frame(max_frame: int) -> int:
    if not 0 < max_frame <= MAX_FRAME_LIMIT:
        raise ValueError(f"max_frame must be in 1..{MAX_FRAME_LIMIT}, got {max_frame}")
    return max_frame


class FrameDecoder:
    """Sans-IO splitter of a byte stream into length-prefixed frames.

    Holds at most one partial header or one partial frame body (never more than ``max_frame`` bytes
    plus the four-byte prefix); bytes beyond the current frame wait in the buffer of the chunk that
    brought them. After ``FrameTooLarge`` the stream is unusable and every later ``feed`` raises again.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = _check_max_frame(max_frame)
        self._buf = bytearray()
        self._need: int | None = None  # body length once the header is read
        self._failed: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete frame."""
        return len(self._buf)

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is pending: end of stream here is a clean close."""
        return not self._buf and self._need is None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every frame body they complete, in order."""
        if self._failed is not None:
            raise self._failed
        frames: list[bytes] = []
        view = memoryview(data)
        while view:
            if self._need is None:
                take = min(LENGTH_PREFIX - len(self._buf), len(view))
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) < LENGTH_PREFIX:
                    break
                (length,) = _LENGTH.unpack(self._buf)
                self._buf.clear()
                if length > self.max_frame:
                    self._failed = FrameTooLarge(
                        f"frame header claims {length} bytes, max_frame {self.max_frame}"
                    )
                    raise self._failed
                self._need = length
            take = min(self._need - len(self._buf), len(view))
            if not self._buf and take == self._need:
                frames.append(bytes(view[:take]))  # whole body (possibly empty) in this chunk: one copy
            else:
                self._buf += view[:take]
                if len(self._buf) < self._need:
                    break
                frames.append(bytes(self._buf))
                self._buf.clear()
            view = view[take:]
            self._need = None
        return frames

    def eof(self) -> None:
        """The peer closed the stream: fine at a frame boundary, a ``WireError`` mid-frame."""
        if not self.at_boundary:
            raise WireError(f"stream ended inside a frame ({len(self._buf)} bytes pending)")


async def _receive_exactly(stream: trio.abc.ReceiveStream, n: int, *, allow_eof: bool) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(n - len(buf), _READ_CHUNK))
        if not chunk:
            if allow_eof and not buf:
                return None
            raise WireError(f"stream ended inside a frame ({len(buf)} of {n} bytes)")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: trio.abc.ReceiveStream, max_frame: int = DEFAULT_MAX_FRAME) -> bytes | None:
    """The next frame body from ``stream``; ``None`` on a clean close between frames.

    Reads exactly the prefix and the body it announces (never past them), and rejects an oversized
    announcement with ``FrameTooLarge`` before reading or allocating any of the body.
    """
    _check_max_frame(max_frame)
    header = await _receive_exactly(stream, LENGTH_PREFIX, allow_eof=True)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > max_frame:
        raise FrameTooLarge(f"frame header claims {length} bytes, max_frame {max_frame}")
    if length == 0:
        return b""
    return await _receive_exactly(stream, length, allow_eof=False)


async def write_frame(stream: trio.abc.SendStream, sealed: bytes) -> None:
    """Send one length-prefixed frame."""
    await stream.send_all(frame(sealed))
