"""The peer-to-peer message union and its MessagePack codec.

A datagram's plaintext is a bare msgpack array of messages -- no wrapper struct -- so a sender can
budget a packet as ``PACKET_ARRAY_OVERHEAD`` plus the sum of ``encoded_size(msg)`` of its messages and
stay exact to within two bytes. A stream frame's plaintext is one message.

Every decode goes through one error type, ``WireError``: bytes from the network are hostile, and a
receive loop should need exactly one ``except`` to drop and count them. Encoding our own messages never
raises ``WireError``; misuse (too many messages for one packet) is a plain ``ValueError``.

Sealing (``engramp2p.net.seal``) wraps these plaintexts; the header it adds carries ``MAGIC`` and
``PROTOCOL_VERSION`` so that a peer speaking another version is rejected before any decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from engramp2p.net.keymsgs import KeyMessage
from engramp2p.repl.messages import ReplMessage
from engramp2p.spread.messages import SpreadMessage
from engramp2p.swim.messages import SwimMessage

MAGIC = b"EP"
PROTOCOL_VERSION = 1
MAX_PACKET_MESSAGES = 64
# A msgpack array header: 1 byte up to 15 elements, 3 bytes up to 65535 (we allow 64).
PACKET_ARRAY_OVERHEAD = 3

Message = SwimMessage | ReplMessage | SpreadMessage | KeyMessage
Packet = Annotated[list[Message], Meta(max_length=MAX_PACKET_MESSAGES)]


class WireError(ValueError):
    """Bytes from the network that cannot be opened or decoded: a remote fault, to drop and count."""


# What msgspec may raise on hostile input: its own errors, and (found by test_hostile) a bare
# UnicodeDecodeError for invalid UTF-8 in a union tag.
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


_encoder = msgspec.msgpack.Encoder()
_packet_decoder = msgspec.msgpack.Decoder(Packet)
_frame_decoder = msgspec.msgpack.Decoder(Message)
_size_buf = bytearray(256)


def encode_packet(msgs: Iterable[Message | msgspec.Raw]) -> bytes:
    """Plaintext of one datagram. ``msgspec.Raw`` items (pre-encoded messages) are spliced in as is."""
    items = list(msgs)
    if len(items) > MAX_PACKET_MESSAGES:
        raise ValueError(f"a packet holds at most {MAX_PACKET_MESSAGES} messages, got {len(items)}")
    return _encoder.encode(items)


def decode_packet(data: bytes) -> list[Message]:
    """Messages of one datagram plaintext; any malformed, oversized or unknown input is a ``WireError``."""
    try:
        return _packet_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad packet: {exc}") from None


def encode_frame(msg: Message) -> bytes:
    """Plaintext of one stream frame: a single message."""
    return _encoder.encode(msg)


def decode_frame(data: bytes) -> Message:
    """The message of one stream frame plaintext, or ``WireError``."""
    try:
        return _frame_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad frame: {exc}") from None


def encoded_size(msg: Message | Any) -> int:
    """Bytes ``msg`` takes inside a packet; reuses one buffer so the probe allocates nothing per call."""
    _encoder.encode_into(msg, _size_buf)
    return len(_size_buf)


def encode_message(msg: Message) -> msgspec.Raw:
    """Encode once, keep the bytes: a broadcast queue can size and resend it without re-encoding."""
    return msgspec.Raw(_encoder.encode(msg))
