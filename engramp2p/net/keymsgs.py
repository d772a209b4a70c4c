"""Wire messages of cluster key rotation (``engramp2p keys``), part of the union in ``net.wire``.

Kept apart from ``net.keyops`` (the core that applies them) because ``net.wire`` imports every message
module, and the core needs ``net.seal``, which itself imports ``net.wire``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

KEY_LEN = 32
MAX_KEYS = 16
"""Installed keys at most: every packet is tried against each key in turn, so the ring stays short."""

KeyBytes = Annotated[bytes, Meta(min_length=KEY_LEN, max_length=KEY_LEN)]
KeyOpName = Literal["install", "use", "remove", "list"]


class KeyOp(Struct, tag="key_op", array_like=True, frozen=True):
    """Apply ``op`` to the receiver's keyring; ``key`` is empty for ``list``."""

    op: KeyOpName
    key: Annotated[bytes, Meta(max_length=KEY_LEN)] = b""


class KeyOpReply(Struct, tag="key_op_reply", array_like=True, frozen=True):
    """The receiver's keyring after the operation (primary first), or why it refused."""

    ok: bool
    error: Annotated[str, Meta(max_length=256)] = ""
    keys: Annotated[list[KeyBytes], Meta(max_length=MAX_KEYS)] = []


KeyMessage = KeyOp | KeyOpReply
