"""Validation at the edge: turn a client's request into checked Entry bodies, or refuse it naming the field.

Everything a client sends is checked here, before any placement, append or forward, so a bad request is
refused whole (nothing half-written) with one line that says which field is wrong. The checks mirror the
wire bounds (``bounds.py``) and are slightly stricter where the wire cannot be: content is measured in
UTF-8 *bytes*, metadata by its encoded size, vectors after the float32 conversion (a finite float64 such
as 1e39 overflows to inf in float32).

Bodies built here decode again under the wire types, so a peer never sees a write it would reject.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from engramp2p.bounds import MAX_CONTENT_BYTES, MAX_DIM, MAX_MEMORY_META_BYTES, MEMORY_ID_LEN
from engramp2p.crdt.entry import MAX_OBSERVED, Associate, Dissociate, Dot, Forget, Remember, Retract
from engramp2p.repl.messages import SpaceDescriptor
from engramp2p.repl.spaces import SpaceRegistry, valid_name

MAX_META_ENTRIES = 64
MAX_META_KEY = 128
DEFAULT_CONFIDENCE = 1.0

_meta_enc = msgspec.msgpack.Encoder(order="sorted")
_STR_HEADER = 5  # the largest msgpack str header (str 32); a map header is at most 5 bytes too


class WriteError(ValueError):
    """A request the client must fix; ``field`` names what is wrong, ``str()`` is ``"field: reason"``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def new_id() -> bytes:
    """A fresh random 16-byte memory id (when the client supplies none)."""
    return secrets.token_bytes(MEMORY_ID_LEN)


def parse_id(value: Any, field: str = "id") -> bytes:
    """A memory id: 16 raw bytes or 32 hex characters."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != MEMORY_ID_LEN:
            raise WriteError(field, f"must be {MEMORY_ID_LEN} bytes, got {len(raw)}")
        return raw
    if isinstance(value, str):
        text = value.strip()
        if len(text) != 2 * MEMORY_ID_LEN:
            raise WriteError(field, f"must be {2 * MEMORY_ID_LEN} hex characters, got {len(text)}")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise WriteError(field, "is not hexadecimal") from None
    raise WriteError(field, f"must be {2 * MEMORY_ID_LEN} hex characters")


def check_space_name(name: Any, field: str = "space") -> str:
    if not isinstance(name, str) or not valid_name(name):
        raise WriteError(field, f"{name!r} must match [a-z0-9_-]{{1,64}}")
    return name


def require_space(registry: SpaceRegistry, name: Any, field: str = "space") -> SpaceDescriptor:
    """The descriptor of an existing space (reads never create one)."""
    check_space_name(name, field)
    d = registry.get(name)
    if d is None:
        raise WriteError(field, f"unknown space {name!r}")
    return d


def _unit(value: Any, field: str, *, open_low: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise WriteError(field, "must be a number")
    x = float(value)
    low_ok = x > 0.0 if open_low else x >= 0.0
    if not math.isfinite(x) or not low_ok or x > 1.0:
        raise WriteError(field, f"{x!r} must be in {'(0, 1]' if open_low else '[0, 1]'}")
    return x + 0.0


def check_confidence(value: Any, field: str = "confidence") -> float:
    """Confidence in (0, 1]."""
    return _unit(value, field, open_low=True)


def check_weight(value: Any, field: str = "weight") -> float:
    """Edge weight in [0, 1]."""
    return _unit(value, field, open_low=False)


def vector_bytes(vector: Any, dim: int | None, field: str = "vector") -> bytes:
    """Little-endian float32 bytes of a finite vector of ``dim`` values (any dim 1..MAX_DIM if ``None``).

    Accepts a sequence of numbers, a 1-d numpy array, or raw float32 bytes.
    """
    raw: bytes | None = None
    try:
        if isinstance(vector, (bytes, bytearray, memoryview)):
            raw = bytes(vector)
            if len(raw) % 4:
                raise WriteError(field, "raw bytes must be a whole number of float32 values")
            arr = np.frombuffer(raw, dtype="<f4")
        else:
            if isinstance(vector, str):
                raise WriteError(field, "must be a list of numbers")
            arr = np.asarray(vector)
            if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                             or np.issubdtype(arr.dtype, np.integer)):
                raise WriteError(field, "must be a list of numbers")
            with np.errstate(over="ignore", invalid="ignore"):
                arr = arr.astype("<f4")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(field, "must be a list of numbers") from None
    if arr.ndim != 1:
        raise WriteError(field, f"must be one-dimensional, got shape {arr.shape}")
    n = arr.shape[0]
    if dim is not None and n != dim:
        raise WriteError(field, f"dimension mismatch: space has dim {dim}, vector has {n}")
    if not 1 <= n <= MAX_DIM:
        raise WriteError(field, f"dimension {n} outside 1..{MAX_DIM}")
    if not np.isfinite(arr).all():
        raise WriteError(field, "contains a non-finite value (NaN, inf, or beyond float32 range)")
    return raw if raw is not None else arr.tobytes()  # raw bytes already are the little-endian float32


def check_content(content: Any, field: str = "content") -> str:
    """UTF-8 text of at most 64 KiB (encoded)."""
    if not isinstance(content, str):
        raise WriteError(field, "must be text")
    if content.isascii():  # ASCII: one byte per character, and never a lone surrogate
        size = len(content)
    else:
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError:
            raise WriteError(field, "is not valid UTF-8 text") from None
    if size > MAX_CONTENT_BYTES:
        raise WriteError(field, f"is {size} bytes of UTF-8, limit {MAX_CONTENT_BYTES}")
    return content


def check_meta(meta: Any, field: str = "meta") -> dict[str, str]:
    """String -> string metadata, at most 4 KiB encoded and 64 entries."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise WriteError(field, "must be a map of strings")
    if len(meta) > MAX_META_ENTRIES:
        raise WriteError(field, f"has {len(meta)} entries, limit {MAX_META_ENTRIES}")
    out: dict[str, str] = {}
    ascii_bound = _STR_HEADER  # an upper bound of the encoded size while everything is ASCII
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise WriteError(field, "keys and values must be strings")
        if not k or len(k) > MAX_META_KEY:
            raise WriteError(field, f"key {k[:32]!r} must be 1..{MAX_META_KEY} characters")
        out[k] = v
        if ascii_bound >= 0:
            if k.isascii() and v.isascii():
                ascii_bound += 2 * _STR_HEADER + len(k) + len(v)
            else:
                ascii_bound = -1
    if 0 <= ascii_bound <= MAX_MEMORY_META_BYTES:
        return out  # ASCII encodes byte for byte and cannot fail; even the bound is within the limit
    try:
        size = len(_meta_enc.encode(out))
    except UnicodeEncodeError:
        raise WriteError(field, "is not valid UTF-8 text") from None
    if size > MAX_MEMORY_META_BYTES:
        raise WriteError(field, f"is {size} bytes encoded, limit {MAX_MEMORY_META_BYTES}")
    return out


def _observed(observed: Sequence[Dot], field: str) -> list[Dot]:
    dots = list(observed)
    if len(dots) > MAX_OBSERVED:
        raise WriteError(field, f"observes {len(dots)} writers, limit {MAX_OBSERVED}")
    return dots


# -- bodies -------------------------------------------------------------------------------------------


def build_remember(*, content: Any, vector: Any, dim: int | None, id: Any = None,
                   confidence: Any = DEFAULT_CONFIDENCE, meta: Any = None) -> Remember:
    """A checked ``remember``; ``dim=None`` accepts any dimension (implicit space creation takes it)."""
    mem_id = new_id() if id is None else parse_id(id, "id")
    return Remember(mem_id, check_content(content), vector_bytes(vector, dim), check_confidence(confidence),
                    check_meta(meta))


def build_associate(src: Any, dst: Any, weight: Any, confidence: Any = DEFAULT_CONFIDENCE) -> Associate:
    return Associate(parse_id(src, "src"), parse_id(dst, "dst"), check_weight(weight),
                     check_confidence(confidence))


def build_dissociate(src: Any, dst: Any, observed: Sequence[Dot]) -> Dissociate:
    """``observed``: the live slots the writing replica sees (``ShardReplica.observed_edge``)."""
    return Dissociate(parse_id(src, "src"), parse_id(dst, "dst"), _observed(observed, "dst"))


def build_retract(src: Any, dst: Any) -> Retract:
    return Retract(parse_id(src, "src"), parse_id(dst, "dst"))


def build_forget(id: Any, observed: Sequence[Dot]) -> Forget:
    """``observed``: the live remembers the writing replica sees (``ShardReplica.observed_memory``)."""
    return Forget(parse_id(id, "id"), _observed(observed, "id"))


__all__ = [
    "WriteError",
    "build_associate",
    "build_dissociate",
    "build_forget",
    "build_remember",
    "build_retract",
    "check_confidence",
    "check_content",
    "check_meta",
    "check_space_name",
    "check_weight",
    "new_id",
    "parse_id",
    "require_space",
    "vector_bytes",
]
