"""Round trips of every wire and control-socket message, packet budgeting, and the codec's error type.

Strategies are derived from the msgspec types themselves (``strategy_for``), so every bound declared on
a field (lengths, ranges, patterns) is what the generated values respect -- a new message type or field
is covered without touching this file. ``test_hostile`` reuses ``strategy_for``.
"""

from __future__ import annotations

import math
import typing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import inspect as mi

from engramp2p.api import messages as api
from engramp2p.net import wire
from engramp2p.net.framing import PacketTooLarge, message_budget, pack_datagram, unpack_datagram
from engramp2p.net.seal import Keyring, generate_key
from engramp2p.repl.messages import SyncRequest, VVEntry
from engramp2p.spread.messages import Activated, RecallRequest, SpreadReport
from engramp2p.swim.messages import Ack, Alive, Ping

# Generated lists, strings and bytes are capped: bounds are checked by dedicated tests, and a few
# elements exercise nesting as well as ten thousand would.
CAP = 3

MESSAGE_TYPES: tuple[type, ...] = typing.get_args(wire.Message)
REQUEST_TYPES: tuple[type, ...] = typing.get_args(api.AnyRequest)


def _int_strategy(t: mi.IntType) -> st.SearchStrategy[int]:
    lo = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
    hi = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**64 - 1)
    return st.integers(lo, hi)


def _float_strategy(t: mi.FloatType) -> st.SearchStrategy[float]:
    lo = t.ge if t.ge is not None else t.gt
    hi = t.le if t.le is not None else t.lt
    return st.floats(
        lo,
        hi,
        exclude_min=t.gt is not None,
        exclude_max=t.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def _build(cls: type, kwargs: dict[str, typing.Any]) -> typing.Any:
    """Construct, or None when ``__post_init__`` rejects the combination (then filtered out)."""
    try:
        return cls(**kwargs)
    except ValueError:
        return None


def _from_info(t: mi.Type) -> st.SearchStrategy[typing.Any]:
    if isinstance(t, mi.StructType):
        fields = {f.name: _from_info(f.type) for f in t.fields}
        return (
            st.fixed_dictionaries(fields)
            .map(lambda kw, cls=t.cls: _build(cls, kw))
            .filter(lambda v: v is not None)
        )
    if isinstance(t, mi.UnionType):
        return st.one_of([_from_info(x) for x in t.types])
    if isinstance(t, mi.IntType):
        return _int_strategy(t)
    if isinstance(t, mi.FloatType):
        return _float_strategy(t)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return st.from_regex(t.pattern, fullmatch=True)
        hi = min(t.max_length if t.max_length is not None else CAP, max(CAP, t.min_length or 0))
        return st.text(min_size=t.min_length or 0, max_size=hi)
    if isinstance(t, mi.BytesType):
        hi = min(t.max_length if t.max_length is not None else CAP, max(CAP, t.min_length or 0))
        return st.binary(min_size=t.min_length or 0, max_size=hi)
    if isinstance(t, mi.ListType):
        return st.lists(_from_info(t.item_type), min_size=t.min_length or 0, max_size=CAP)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_from_info(t.key_type), _from_info(t.value_type), max_size=CAP)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    raise NotImplementedError(f"no strategy for {t!r}")


def strategy_for(tp: typing.Any) -> st.SearchStrategy[typing.Any]:
    """Values of a msgspec-annotated type that respect every declared bound."""
    return _from_info(mi.type_info(tp))


any_message = strategy_for(wire.Message)
packets = st.lists(any_message, max_size=5)
RING = Keyring([generate_key()], label="lab")


def test_union_is_complete_and_tags_unique() -> None:
    tags = [mi.type_info(t).tag for t in MESSAGE_TYPES]
    assert len(tags) == len(set(tags))
    expected = {"ping", "ping_req", "ack", "nack", "alive", "suspect", "dead", "push_pull", "sync_req"}
    expected |= {"sync_resp", "push", "push_ack", "fwd_write", "fwd_write_result", "space", "spaces"}
    expected |= {"spread_fwd", "spread_report", "recall_req", "recall_resp"}
    expected |= {"key_op", "key_op_reply"}
    assert set(tags) == expected


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    encoded = wire.encode_frame(msg)
    assert wire.decode_frame(encoded) == msg
    assert wire.encoded_size(msg) == len(encoded)
    assert wire.decode_packet(wire.encode_packet([msg])) == [msg]


@settings(max_examples=80, deadline=None)
@given(msgs=packets)
def test_packet_round_trip_and_size_budget(msgs: list[typing.Any]) -> None:
    plain = wire.encode_packet(msgs)
    assert wire.decode_packet(plain) == msgs
    assert len(plain) <= wire.PACKET_ARRAY_OVERHEAD + sum(wire.encoded_size(m) for m in msgs)
    # Pre-encoded messages splice in byte for byte.
    assert wire.encode_packet([wire.encode_message(m) for m in msgs]) == plain
    # A sender that sums ``encoded_size`` within ``message_budget`` never overflows the sealed size.
    packet_size = 1400
    chosen, used = [], 0
    for m in msgs:
        size = wire.encoded_size(m)
        if used + size <= message_budget(packet_size):
            chosen.append(m)
            used += size
    data = pack_datagram(RING, chosen, packet_size)
    assert len(data) <= packet_size
    assert unpack_datagram(RING, data, packet_size) == chosen


def test_budget_is_tight_and_overflow_is_a_local_error() -> None:
    ring = Keyring([generate_key()])
    ack = Ack(2**32 - 1)
    n = message_budget(1400) // wire.encoded_size(ack)
    data = pack_datagram(ring, [ack] * min(n, wire.MAX_PACKET_MESSAGES), 1400)
    assert len(data) <= 1400
    big = Alive(1, b"n" * 16, "x" * 128, "h" * 255, 7946, b"m" * 512)
    small = 1400 - 600
    with pytest.raises(PacketTooLarge):
        pack_datagram(ring, [big, big], small)
    assert not issubclass(PacketTooLarge, wire.WireError)


def test_too_many_messages() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        wire.encode_packet([Ack(1)] * 65)
    with pytest.raises(wire.WireError):
        wire.decode_packet(msgspec.msgpack.encode([Ack(1)] * 65))
    assert len(wire.decode_packet(msgspec.msgpack.encode([Ack(1)] * 64))) == 64


def test_decode_errors_are_wire_errors() -> None:
    assert issubclass(wire.WireError, ValueError)
    good = wire.encode_frame(Ack(5))
    bad_inputs = [
        b"",
        good + b"\x00",  # trailing byte
        good[:-1],  # truncated
        msgspec.msgpack.encode(["nope", 1]),  # unknown tag
        msgspec.msgpack.encode(["ack", -1]),  # out of range
        msgspec.msgpack.encode(["ping", 1, b"short", b"b" * 16, "h", 1]),  # node id too short
        msgspec.msgpack.encode({"type": "ack", "seq": 1}),  # map where an array is expected
    ]
    for data in bad_inputs:
        with pytest.raises(wire.WireError):
            wire.decode_frame(data)


def test_semantic_bounds() -> None:
    """Values a peer could use to poison computations are rejected at decode time."""
    nan_report = msgspec.msgpack.encode(
        ["spread_report", 1, 2, [[b"i" * 16, math.nan, 0.5]], []],
    )
    with pytest.raises(wire.WireError):
        wire.decode_frame(nan_report)
    ok_report = SpreadReport(1, 2, [Activated(b"i" * 16, 1.0, 0.5)], [])
    assert wire.decode_frame(wire.encode_frame(ok_report)) == ok_report
    odd_vector = msgspec.msgpack.encode(["recall_req", 1, "s", 0, b"\x00" * 6, 10])
    with pytest.raises(wire.WireError, match="multiple of 4"):
        wire.decode_frame(odd_vector)
    with pytest.raises(ValueError):
        RecallRequest(1, "s", 0, b"\x00" * 6, 10)
    bad_space = msgspec.msgpack.encode(["sync_req", "Bad Space", 0, [], b"", 0])
    with pytest.raises(wire.WireError):
        wire.decode_frame(bad_space)
    empty_origin = SyncRequest("s", 0, [VVEntry(b"o" * 16, 0, bytes(16))], b"", 1 << 20)
    assert wire.decode_frame(wire.encode_frame(empty_origin)) == empty_origin


def test_trailing_fields_from_a_newer_peer_are_ignored() -> None:
    """Append-only evolution: an old decoder accepts a message with extra trailing fields."""
    newer = msgspec.msgpack.encode(["ping", 1, b"t" * 16, b"s" * 16, "h", 1, "future"])
    assert wire.decode_frame(newer) == Ping(1, b"t" * 16, b"s" * 16, "h", 1)


@settings(max_examples=100, deadline=None)
@given(req=strategy_for(api.AnyRequest), rid=st.integers(0, 2**32 - 1))
def test_requests_round_trip(req: api.Request, rid: int) -> None:
    req = msgspec.structs.replace(req, id=rid)
    assert api.decode_request(api.encode_request(req)) == req


@settings(max_examples=60, deadline=None)
@given(resp=strategy_for(api.Response))
def test_responses_round_trip(resp: api.Response) -> None:
    assert api.decode_response(api.encode_response(resp)) == resp


def test_request_errors_name_the_field() -> None:
    assert len(REQUEST_TYPES) == len({mi.type_info(t).tag for t in REQUEST_TYPES})
    typo = msgspec.msgpack.encode({"cmd": "join", "adrs": ["x"]})
    with pytest.raises(wire.WireError, match="adrs"):
        api.decode_request(typo)
    short_key = msgspec.msgpack.encode({"cmd": "keys_install", "key": b"k" * 31})
    with pytest.raises(wire.WireError, match=r"\$\.key"):
        api.decode_request(short_key)
    with pytest.raises(wire.WireError, match="cmd"):
        api.decode_request(msgspec.msgpack.encode({"cmd": "rm -rf"}))
