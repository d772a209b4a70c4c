"""Validation at the edge: every refusal names its field, and every accepted body survives the wire."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramp2p.crdt.entry import Body, Dot
from engramp2p.repl.spaces import SpaceRegistry
from engramp2p.repl.validate import (
    WriteError,
    build_associate,
    build_dissociate,
    build_forget,
    build_remember,
    build_retract,
    check_meta,
    parse_id,
    require_space,
    vector_bytes,
)

ID = "ab" * 16
ID2 = "cd" * 16


def field_of(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(WriteError) as info:
        fn(*args, **kw)
    assert str(info.value).startswith(info.value.field + ": ")
    return info.value.field


def test_ids_are_16_bytes_or_32_hex() -> None:
    assert parse_id(ID) == bytes.fromhex(ID) and parse_id(bytes(16)) == bytes(16)
    for bad in ["ab", "zz" * 16, bytes(15), 12, None, "ab" * 17]:
        assert field_of(parse_id, bad) == "id"
    assert field_of(build_associate, ID, "nope", 0.5) == "dst"
    assert field_of(build_retract, "nope", ID) == "src"


def test_vector_checks() -> None:
    assert vector_bytes([1, 2.5], 2) == np.array([1, 2.5], "<f4").tobytes()
    assert vector_bytes(np.ones(3, np.float64), None) == np.ones(3, "<f4").tobytes()
    raw = np.arange(4, dtype="<f4").tobytes()
    assert vector_bytes(raw, 4) == raw
    with pytest.raises(WriteError, match="^vector: dimension mismatch: space has dim 3, vector has 2"):
        vector_bytes([1.0, 2.0], 3)
    for bad in ([1.0, math.nan], [math.inf], [1e39], "abc", [[1.0, 2.0]], [True, False], ["x"], b"abc", []):
        assert field_of(vector_bytes, bad, None) == "vector"


def test_content_and_meta_bounds() -> None:
    ok = build_remember(id=ID, content="é" * 32768, vector=[1.0], dim=1)  # exactly 64 KiB of UTF-8
    assert len(ok.content.encode()) == 65536
    assert field_of(build_remember, id=ID, content="é" * 32769, vector=[1.0], dim=1) == "content"
    assert field_of(build_remember, id=ID, content="\ud800", vector=[1.0], dim=1) == "content"
    assert field_of(build_remember, id=ID, content=5, vector=[1.0], dim=1) == "content"
    assert check_meta({"k": "v" * 4000}) == {"k": "v" * 4000}
    assert field_of(check_meta, {"k": "v" * 4096}) == "meta"
    assert field_of(check_meta, {"k": 1}) == "meta"
    assert field_of(check_meta, {str(i): "" for i in range(65)}) == "meta"
    assert field_of(check_meta, {"": "x"}) == "meta"


def test_ranges() -> None:
    assert field_of(build_remember, id=ID, content="", vector=[1.0], dim=1, confidence=0.0) == "confidence"
    assert field_of(build_remember, id=ID, content="", vector=[1.0], dim=1, confidence=1.5) == "confidence"
    assert field_of(build_remember, id=ID, content="", vector=[1.0], dim=1, confidence=math.nan) == "confidence"
    assert field_of(build_associate, ID, ID2, -0.1) == "weight"
    assert field_of(build_associate, ID, ID2, True) == "weight"
    assert field_of(build_associate, ID, ID2, 0.5, 0.0) == "confidence"
    a = build_associate(ID, ID2, -0.0, 1)
    assert math.copysign(1.0, a.weight) == 1.0 and a.confidence == 1.0


def test_unknown_space_for_a_read() -> None:
    reg = SpaceRegistry()
    assert field_of(require_space, reg, "nope") == "space"
    assert field_of(require_space, reg, "Bad Name") == "space"
    reg.ensure("yes", 4, 1, bytes(16))
    assert require_space(reg, "yes").dim == 4


def test_observed_lists_are_bounded() -> None:
    dots = [Dot(bytes(16), i + 1) for i in range(5000)]
    assert field_of(build_dissociate, ID, ID2, dots) == "dst"
    assert field_of(build_forget, ID, dots) == "id"
    assert build_forget(ID, dots[:3]).observed == dots[:3]


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Body)


@settings(max_examples=200, deadline=None)
@given(
    content=st.text(max_size=200),
    vec=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=16),
    conf=st.floats(0.0, 1.0, exclude_min=True),
    meta=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5),
)
def test_accepted_bodies_decode_under_wire_bounds(content: str, vec: list[float], conf: float,
                                                 meta: dict[str, str]) -> None:
    try:
        body = build_remember(content=content, vector=vec, dim=len(vec), confidence=conf, meta=meta)
    except WriteError as exc:
        assert exc.field == "content"  # lone surrogates from st.text
        return
    assert _dec.decode(_enc.encode(body)) == body
    assert np.array_equal(np.frombuffer(body.vector, "<f4"), np.array(vec, "<f4"))
