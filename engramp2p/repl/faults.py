"""Fault injection for system tests and chaos drills: drop all traffic to and from chosen peers, then heal.

Off unless the agent runs with ``replication.fault_injection = true`` (or ``--fault-injection``): a
production agent refuses the control commands with a clear error, so a stray script cannot partition a
fleet. When on, ``Faults`` is installed as the transport's ``traffic_filter`` -- the one narrow hook in
the send/receive path (``net.transport.TrafficFilter``) -- and every datagram, outbound stream and
inbound stream is checked against the dropped set. Nothing above the transport knows: SWIM suspects the
peer, pushes fail, anti-entropy backs off, exactly as with a real partition.

Peers are named by member name, node id (hex, or a unique prefix of at least 8 hex digits) or
``host:port``, resolved against the membership table at the moment of the command. Inbound TCP
connections arrive from an ephemeral port, so they are matched by host -- but only when no peer that is
still reachable shares that host (on one loopback address every agent does). A symmetric partition is
therefore made by dropping on both sides, which is what a drill does anyway (``fault drop`` on each).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engramp2p.sansio import Addr

FAULTS_OFF = (
    "fault injection is disabled on this agent; start it with --fault-injection "
    "(or replication.fault_injection = true) to use fault commands"
)


class FaultError(ValueError):
    """A fault command that cannot be honoured (disabled, unknown peer); the message is for the user."""


@dataclass(frozen=True, slots=True)
class Peer:
    """What resolving a peer name needs of one member."""

    node_id: bytes
    name: str
    addr: Addr


def resolve_peers(names: Iterable[str], members: Sequence[Peer]) -> list[Peer]:
    """Each name as exactly one member; ``FaultError`` naming the first that matches none or several."""
    out: list[Peer] = []
    for text in names:
        text = text.strip()
        found = [m for m in members if m.name == text]
        if not found:
            found = [m for m in members if f"{m.addr[0]}:{m.addr[1]}" == text]
        if not found and len(text) >= 8:
            low = text.lower()
            found = [m for m in members if m.node_id.hex().startswith(low)]
        if not found:
            raise FaultError(f"peer {text!r}: no member has this name, node id or address")
        if len(found) > 1:
            raise FaultError(f"peer {text!r} is ambiguous: {', '.join(m.name for m in found)}")
        if found[0] not in out:
            out.append(found[0])
    return out


class Faults:
    """The dropped-peer set and the ``TrafficFilter`` the transport consults."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._peers: dict[bytes, Peer] = {}
        self._addrs: set[Addr] = set()
        self._hosts: set[str] = set()

    def check(self) -> None:
        """Refuse every fault command on an agent that was not started for fault injection."""
        if not self.enabled:
            raise FaultError(FAULTS_OFF)

    # -- the transport hook -------------------------------------------------------------------------

    def drops(self, addr: Addr) -> bool:
        """True for traffic to or from a dropped peer (``TrafficFilter``)."""
        return addr in self._addrs or addr[0] in self._hosts

    # -- commands -----------------------------------------------------------------------------------

    def drop(self, peers: Iterable[Peer], members: Sequence[Peer]) -> list[Peer]:
        """Start dropping ``peers`` (in addition to those already dropped); returns the dropped set."""
        self.check()
        for p in peers:
            self._peers[p.node_id] = p
        self._recompute(members)
        return self.dropped()

    def heal(self, peers: Iterable[Peer] | None, members: Sequence[Peer]) -> list[Peer]:
        """Stop dropping ``peers`` (all of them when ``None``); returns what is still dropped."""
        self.check()
        if peers is None:
            self._peers.clear()
        else:
            for p in peers:
                self._peers.pop(p.node_id, None)
        self._recompute(members)
        return self.dropped()

    def dropped(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.name)

    def is_dropped(self, node_id: bytes) -> bool:
        return node_id in self._peers

    def _recompute(self, members: Sequence[Peer]) -> None:
        self._addrs = {p.addr for p in self._peers.values()}
        shared = {m.addr[0] for m in members if m.node_id not in self._peers}
        self._hosts = {p.addr[0] for p in self._peers.values()} - shared


__all__ = ["FAULTS_OFF", "FaultError", "Faults", "Peer", "resolve_peers"]
