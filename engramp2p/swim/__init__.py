"""Membership: SWIM + Lifeguard as a sans-IO state machine (``Swim``), one module per concept.

``core`` (the protocol object), ``state`` (member table and its rules), ``suspicion``, ``awareness``,
``broadcast`` (retransmit-limited queue), ``meta`` (bounded member metadata), ``events``, ``messages``
(wire Structs), ``config`` (profiles), ``testing`` (a tiny in-memory network for unit tests).
"""

from engramp2p.swim.config import SwimConfig
from engramp2p.swim.core import Swim
from engramp2p.swim.events import (
    IncarnationChanged,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRecovered,
    MemberRefuted,
    MembershipEvent,
    MemberSuspected,
    MemberUpdated,
)
from engramp2p.swim.meta import MemberMeta, MetaPublisher, decode_meta, encode_meta
from engramp2p.swim.state import LocalNode, MemberView

__all__ = [
    "IncarnationChanged",
    "LocalNode",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberMeta",
    "MemberReaped",
    "MemberRecovered",
    "MemberRefuted",
    "MemberSuspected",
    "MemberUpdated",
    "MemberView",
    "MembershipEvent",
    "MetaPublisher",
    "Swim",
    "SwimConfig",
    "decode_meta",
    "encode_meta",
]
