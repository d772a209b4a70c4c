"""Membership events the core emits (as ``Emit(event)``) for the layers above.

Each carries a snapshot of the member at the moment of the change, so a consumer never races the
table. Replication reacts to ``MemberRecovered`` (sync every shared shard at once) and to placement
changes; the driver persists our incarnation on ``IncarnationChanged``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engramp2p.swim.state import MemberView


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member we did not know (or that had left) is alive."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberRefuted:
    """A suspect proved itself alive with a higher incarnation before it was declared dead."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberFailed:
    """Declared dead; kept as a tombstone and retried until ``reconnect_timeout``."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberLeft:
    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberRecovered:
    """A dead member is alive again (a healed partition, a restart after failure)."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """An alive member changed its metadata or address."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class MemberReaped:
    """A dead or left tombstone was forgotten after its timeout."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class IncarnationChanged:
    """Our own incarnation changed (refutation, metadata update, leave): persist it."""

    incarnation: int


MembershipEvent = (
    MemberJoined
    | MemberSuspected
    | MemberRefuted
    | MemberFailed
    | MemberLeft
    | MemberRecovered
    | MemberUpdated
    | MemberReaped
    | IncarnationChanged
)
