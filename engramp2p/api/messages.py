"""Control-socket messages: typed requests and responses between the CLI/client and the local agent.

A tagged union of typed requests rather than ``(command: str, args: dict)``: each command's arguments
are checked and bounded by msgspec when decoded, and a client gets a one-line error naming the bad field
instead of a ``KeyError`` deep inside the agent. Requests are map-like (field names on the wire,
``{"cmd": "members", "id": 1, ...}``) because the control socket is not a hot path and readable frames
make debugging easy; unknown fields are rejected so a typo in a client is caught at once.

Adding a command: subclass ``Request`` with ``tag="<name>"`` (its arguments as bounded fields), add it
to ``AnyRequest``; if it returns data, add a ``Result`` subclass to ``AnyResult``. Nothing else changes.

The socket is local and mode 0600, so frames are not sealed, but they are still length-prefixed and
size-checked (``engramp2p.net.framing``) and decoded with the same single error type, ``WireError``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from engramp2p.bounds import U32, U64, Host, Name, NodeId
from engramp2p.net.wire import DECODE_ERRORS, WireError

MAX_ADDRS = 64
MAX_ROWS = 10_000
MAX_ERROR_CHARS = 4096

Address = Annotated[str, Meta(min_length=1, max_length=300)]
Key = Annotated[bytes, Meta(min_length=32, max_length=32)]
MemberStatus = Literal["alive", "suspect", "failed", "left"]


class Request(Struct, tag_field="cmd", kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every request; ``id`` pairs a response with its request on one connection."""

    id: U32 = 0


class Members(Request, tag="members"):
    status: MemberStatus | None = None


class Join(Request, tag="join"):
    addrs: Annotated[list[Address], Meta(min_length=1, max_length=MAX_ADDRS)]


class Leave(Request, tag="leave"):
    pass


class Info(Request, tag="info"):
    pass


class KeysList(Request, tag="keys_list"):
    pass


class KeysInstall(Request, tag="keys_install"):
    key: Key


class KeysUse(Request, tag="keys_use"):
    key: Key


class KeysRemove(Request, tag="keys_remove"):
    key: Key


class Subscribe(Request, tag="events_subscribe"):
    """Turn the connection into an event stream: the agent answers with ``Event`` responses until closed."""


AnyRequest = Members | Join | Leave | Info | KeysList | KeysInstall | KeysUse | KeysRemove | Subscribe


class Result(Struct, tag_field="kind", kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every typed result payload."""


class MemberRow(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    node_id: NodeId
    addr: Address
    state: MemberStatus
    incarnation: U64
    roles: Annotated[list[Name], Meta(max_length=32)] = []
    rtt_ms: Annotated[float, Meta(ge=0.0, le=3.6e6)] | None = None
    last_change_ms: U64 = 0


class MemberList(Result, tag="members"):
    members: Annotated[list[MemberRow], Meta(max_length=MAX_ROWS)]


class NodeInfo(Result, tag="info"):
    name: Name
    node_id: NodeId
    addr: Address
    health: Annotated[int, Meta(ge=0, le=255)]
    uptime_s: Annotated[float, Meta(ge=0.0, le=1e10)]
    counters: Annotated[dict[Annotated[str, Meta(max_length=64)], U64], Meta(max_length=256)] = {}
    # Event-loop lag (samples, mean_ms, p50_ms, p99_ms, max_ms) from the agent's lag monitor.
    loop_lag_ms: Annotated[dict[Annotated[str, Meta(max_length=32)], float], Meta(max_length=16)] = {}
    # Heavy optional modules loaded in the agent process (numpy, numba, pynndescent...): edge budget.
    heavy_modules: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=64)] = []


class KeyMemberResult(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One member's answer to a cluster key operation: its keyring after it, or why it failed."""

    name: Name
    node_id: NodeId
    addr: Address
    ok: bool
    error: Annotated[str, Meta(max_length=MAX_ERROR_CHARS)] = ""
    keys: Annotated[list[Key], Meta(max_length=256)] = []


class KeyList(Result, tag="keys"):
    primary: Key | None
    keys: Annotated[list[Key], Meta(max_length=256)]
    # Every other alive member's keyring, as answered over sealed TCP (empty when alone).
    members: Annotated[list[KeyMemberResult], Meta(max_length=MAX_ROWS)] = []


class KeyResults(Result, tag="key_results"):
    """Per-member outcome of ``keys install|use|remove`` spread to the cluster (the local agent first)."""

    op: Annotated[str, Meta(max_length=16)]
    members: Annotated[list[KeyMemberResult], Meta(max_length=MAX_ROWS)]


class Event(Result, tag="event"):
    """One line of the agent's event log (joins, suspicions, failures, refutations, recoveries)."""

    seq: U64
    at_ms: U64
    type: Annotated[str, Meta(min_length=1, max_length=64)]
    node: NodeId | None = None
    name: Name | None = None
    host: Host | None = None
    detail: Annotated[str, Meta(max_length=1024)] = ""


AnyResult = MemberList | NodeInfo | KeyList | KeyResults | Event


class Response(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``ok`` with an optional typed ``result``, or not ``ok`` with a one-line ``error`` for the user."""

    id: U32
    ok: bool
    result: AnyResult | None = None
    error: Annotated[str, Meta(max_length=MAX_ERROR_CHARS)] = ""


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)
_response_decoder = msgspec.msgpack.Decoder(Response)


def encode_request(req: AnyRequest) -> bytes:
    return _encoder.encode(req)


def decode_request(data: bytes) -> AnyRequest:
    """A request from a client, or ``WireError`` naming what is wrong with it."""
    try:
        return _request_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad request: {exc}") from None


def encode_response(resp: Response) -> bytes:
    return _encoder.encode(resp)


def decode_response(data: bytes) -> Response:
    """A response from the agent, or ``WireError``."""
    try:
        return _response_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"bad response: {exc}") from None
