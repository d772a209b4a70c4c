"""Member metadata: what a peer tells the cluster about itself, bounded to 512 encoded bytes.

SWIM carries metadata as opaque bytes (``Alive.meta``); this module gives them a shape. It is a msgpack
map rather than an array so later versions can add fields that older peers ignore. Replication
publishes the spaces a peer hosts through ``MetaPublisher`` (the narrow hook) instead of editing SWIM.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from engramp2p.bounds import MAX_META_BYTES

PROTOCOL_VERSION = 1

Role = Annotated[str, Meta(min_length=1, max_length=32)]
Label = Annotated[str, Meta(min_length=1, max_length=64)]


class MemberMeta(Struct, frozen=True, kw_only=True):
    """Roles (e.g. ``storage``), protocol version, storage capacity in bytes, hosted/accepted spaces."""

    protocol: Annotated[int, Meta(ge=0, le=65535)] = PROTOCOL_VERSION
    roles: Annotated[list[Role], Meta(max_length=16)] = []
    capacity: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    spaces: Annotated[list[Label], Meta(max_length=64)] = []
    extra: Annotated[dict[Label, Annotated[str, Meta(max_length=128)]], Meta(max_length=16)] = {}


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(MemberMeta)


def encode_meta(meta: MemberMeta) -> bytes:
    """Encode our own metadata; too large is our own (local) mistake, so it raises ``ValueError``."""
    data = _ENCODER.encode(meta)
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"member metadata is {len(data)} bytes, limit {MAX_META_BYTES}")
    return data


def decode_meta(data: bytes) -> MemberMeta | None:
    """Decode a peer's metadata; anything malformed is the peer's problem and yields ``None``."""
    if not data:
        return MemberMeta()
    if len(data) > MAX_META_BYTES:
        return None
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class MetaPublisher:
    """Holds our metadata and lets other layers change their part of it.

    ``update(spaces=[...])`` returns the new encoded bytes for ``Swim.set_meta``; a change that would
    exceed the size bound raises and leaves the current value untouched.
    """

    def __init__(self, base: MemberMeta | None = None) -> None:
        self._meta = base if base is not None else MemberMeta()
        self._bytes = encode_meta(self._meta)

    @property
    def meta(self) -> MemberMeta:
        return self._meta

    @property
    def encoded(self) -> bytes:
        return self._bytes

    def update(self, **fields: Any) -> bytes:
        new = msgspec.structs.replace(self._meta, **fields)
        # Round-trip through the decoder so the bounds of every field are enforced on our own data too.
        data = encode_meta(new)
        try:
            new = _DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid member metadata: {exc}") from None
        self._meta, self._bytes = new, data
        return data
