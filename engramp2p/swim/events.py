"""Membership events the core emits (as ``Emit(event)``) for the layers above.

Each carries a snapshot of the member at the moment of the change, so a consumer never races the
table. Replication reacts to ``MemberRecovered`` (sync every shared shard at once) and to placement
changes; the driver persists our incarnation on ``IncarnationChanged``.
"""

from __future__ import annotations

import msgspec

from engramp2p.swim.state import MemberView


class MemberJoined(msgspec.Struct, frozen=True, gc=False):
    """A member we did not know (or that had left) is alive."""

    member: MemberView


class MemberSuspected(msgspec.Struct, frozen=True, gc=False):
    member: MemberView


class MemberRefuted(msgspec.Struct, frozen=True, gc=False):
    """A suspect proved itself alive with a higher incarnation before it was declared dead."""

    member: MemberView


class MemberFailed(msgspec.Struct, frozen=True, gc=False):
    """Declared dead; kept as a tombstone and retried until ``reconnect_timeout``."""

    member: MemberView


class MemberLeft(msgspec.Struct, frozen=True, gc=False):
    member: MemberView


class MemberRecovered(msgspec.Struct, frozen=True, gc=False):
    """A dead member is alive again (a healed partition, a restart after failure)."""

    member: MemberView


class MemberUpdated(msgspec.Struct, frozen=True, gc=False):
    """An alive member changed its metadata or address."""

    member: MemberView


class MemberReaped(msgspec.Struct, frozen=True, gc=False):
    """A dead or left tombstone was forgotten after its timeout."""

    member: MemberView


class IncarnationChanged(msgspec.Struct, frozen=True, gc=False):
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
