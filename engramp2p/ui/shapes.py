"""The data shapes `engramp2p top` consumes from the agent, in one place.

The agent serves exactly these over the control socket (``members --json`` rows, ``info --json`` and the
event stream). They are converted into bounded, frozen msgspec Structs at the UI's edge so that the model
and the renderers can trust them: a row that does not fit is dropped and counted, never raised into the
UI loop. Field names match the agent's JSON, so both plain dicts and same-named Structs convert.

``state`` and ``kind`` are bounded strings rather than Literals on purpose: an agent newer than this UI
may add a state or an event kind, and the UI should show it plainly instead of dropping it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

# The vocabulary this UI knows how to colour and fold; anything else is displayed as-is.
STATES: Final = ("alive", "suspect", "dead", "left")
# Other spellings of a state (the control-socket messages say "failed" where SWIM says "dead").
STATE_ALIASES: Final = {"failed": "dead"}
EVENT_KINDS: Final = ("joined", "suspected", "failed", "left", "recovered", "updated", "refuted")

Text = Annotated[str, Meta(max_length=256)]
Label = Annotated[str, Meta(max_length=64)]
HexId = Annotated[str, Meta(max_length=64)]
Seconds = Annotated[float, Meta(ge=0.0)]
Roles = Annotated[tuple[Annotated[str, Meta(max_length=64)], ...], Meta(max_length=32)]
Counters = Annotated[dict[Annotated[str, Meta(max_length=64)], int | float], Meta(max_length=128)]


class MemberRow(Struct, frozen=True, kw_only=True):
    """One member as the agent sees it (a ``members --json`` row)."""

    name: Text
    node_id: HexId
    addr: Text
    state: Label
    incarnation: Annotated[int, Meta(ge=0)]
    roles: Roles = ()
    rtt_ms: Seconds | None = None
    last_change: Seconds = 0.0


class NodeRef(Struct, frozen=True, kw_only=True):
    """Who the agent we are watching is."""

    name: Text
    node_id: HexId
    addr: Text


class Info(Struct, frozen=True, kw_only=True):
    """The agent's own view of itself (``info --json``): Lifeguard health score 0 is healthy."""

    node: NodeRef
    health_score: Annotated[int, Meta(ge=0, le=1_000)]
    counters: Counters = {}
    uptime_s: Seconds = 0.0


class Event(Struct, frozen=True, kw_only=True):
    """One membership event from the agent's stream; ``ts`` is the agent's unix time. ``node_id`` is
    empty for an event about no member in particular; ``incarnation`` is ``None`` when not reported."""

    ts: Seconds
    kind: Label
    name: Text
    node_id: HexId
    incarnation: Annotated[int, Meta(ge=0)] | None = None
    detail: Text = ""


class HostCell(Struct, frozen=True, kw_only=True):
    """One host of one shard."""

    host: Text
    sync: Label
    lag: Annotated[int, Meta(ge=0)] | None = None


class ShardPlacement(Struct, frozen=True, kw_only=True):
    """One shard for the placement panel (``ui.placement``): its hosts in placement order, each with a
    sync state; ``hosted`` when the watched agent holds a copy itself."""

    space: Label
    shard: Annotated[int, Meta(ge=0, le=65535)]
    hosted: bool
    hosts: tuple[HostCell, ...]


class Snapshot(Struct, frozen=True, kw_only=True):
    """What one poll of the agent returns: the member table, the agent's info and shard placement."""

    members: tuple[MemberRow, ...]
    info: Info | None = None
    dropped: int = 0  # rows that failed validation while converting
    placement: tuple[ShardPlacement, ...] = ()


class ShapeError(ValueError):
    """The agent answered with something that is not the expected shape (a whole reply, not a row)."""


# C0/C1 controls (ESC would let a peer's name drive our terminal), line/paragraph separators and
# bidi overrides (they reorder the rest of a line).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _scrub(value: Any) -> Any:
    """Replace characters that would reach the terminal as control sequences; names are gossiped from
    remote peers, so they are as hostile as any other byte from the network."""
    if isinstance(value, str):
        return _UNSAFE.sub("?", value)
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    if isinstance(value, dict):
        return {_scrub(k): v for k, v in value.items()}
    if isinstance(value, Struct):
        changed = {f: _scrub(getattr(value, f)) for f in value.__struct_fields__}
        return msgspec.structs.replace(value, **changed)
    return value


def _convert(obj: Any, typ: type) -> Any:
    return _scrub(msgspec.convert(obj, typ, from_attributes=True))


def to_members(rows: Iterable[Any]) -> tuple[tuple[MemberRow, ...], int]:
    """Convert agent rows, keeping the good ones; returns ``(rows, dropped)``."""
    good: list[MemberRow] = []
    dropped = 0
    for row in rows:
        try:
            member = _convert(row, MemberRow)
        except msgspec.ValidationError:
            dropped += 1
            continue
        if member.state in STATE_ALIASES:
            member = msgspec.structs.replace(member, state=STATE_ALIASES[member.state])
        good.append(member)
    return tuple(good), dropped


def to_info(obj: Any) -> Info:
    try:
        return _convert(obj, Info)
    except msgspec.ValidationError as exc:
        raise ShapeError(f"bad info reply: {exc}") from None


def to_event(obj: Any) -> Event | None:
    """One event, or ``None`` when it does not fit (the caller counts it)."""
    try:
        return _convert(obj, Event)
    except msgspec.ValidationError:
        return None


def to_snapshot(members: Iterable[Any], info: Any | None) -> Snapshot:
    rows, dropped = to_members(members)
    return Snapshot(members=rows, info=None if info is None else to_info(info), dropped=dropped)
