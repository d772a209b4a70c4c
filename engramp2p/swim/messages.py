"""SWIM + Lifeguard messages as bounded msgspec Structs.

These are the membership half of the wire union in ``engramp2p.net.wire``. A member is keyed by its
16-byte ``node_id``; ``name`` is for people. Addresses travel as ``host``/``port`` so a relayed ack
can find its way back.
"""

from __future__ import annotations

import enum
from typing import Annotated

from msgspec import Meta, Struct

from engramp2p.bounds import MAX_MEMBERS, U32, U64, Host, MemberMetaBytes, Name, NodeId, Port


class State(enum.IntEnum):
    """A member's state as gossiped; ordered so that at equal incarnation the larger one wins."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class Ping(Struct, tag="ping", array_like=True, frozen=True):
    """Direct probe. ``target`` lets a restarted peer on a reused address say "not me"."""

    seq: U32
    target: NodeId
    source: NodeId
    source_host: Host
    source_port: Port


class IndirectPing(Struct, tag="ping_req", array_like=True, frozen=True):
    """Ask a helper to probe ``target`` for us; ``nack`` asks it to report a missed ack (Lifeguard)."""

    seq: U32
    target: NodeId
    target_host: Host
    target_port: Port
    nack: bool
    source: NodeId
    source_host: Host
    source_port: Port


class Ack(Struct, tag="ack", array_like=True, frozen=True):
    seq: U32


class Nack(Struct, tag="nack", array_like=True, frozen=True):
    """A helper reached out to the target but got no ack: the fault may be on our side of the network."""

    seq: U32


class Alive(Struct, tag="alive", array_like=True, frozen=True):
    incarnation: U64
    node: NodeId
    name: Name
    host: Host
    port: Port
    meta: MemberMetaBytes = b""


class Suspect(Struct, tag="suspect", array_like=True, frozen=True):
    incarnation: U64
    node: NodeId
    source: NodeId


class Dead(Struct, tag="dead", array_like=True, frozen=True):
    """``node == source`` with ``left=True`` is a graceful leave."""

    incarnation: U64
    node: NodeId
    source: NodeId
    left: bool = False


class MemberState(Struct, array_like=True, frozen=True):
    node: NodeId
    name: Name
    host: Host
    port: Port
    incarnation: U64
    state: Annotated[int, Meta(ge=0, le=3)]
    meta: MemberMetaBytes = b""


class PushPull(Struct, tag="push_pull", array_like=True, frozen=True):
    """Full membership exchange over a stream; ``join`` marks the first exchange of a joining peer."""

    join: bool
    states: Annotated[list[MemberState], Meta(max_length=MAX_MEMBERS)]


SwimMessage = Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead | PushPull
