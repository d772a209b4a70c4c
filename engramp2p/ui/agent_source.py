"""``TopSource`` over a live agent's control socket (``engramp2p.api.client.AsyncClient``).

This is the one place that knows how the control-socket messages are spelled; it turns them into the
shapes in ``engramp2p.ui.shapes`` (hex node ids, unix seconds, "dead" for "failed", the UI's event
kinds) so the rest of the UI never depends on the wire. Every client failure becomes a ``SourceError``
carrying the client's one-line message.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from msgspec import structs

from engramp2p.api.client import AsyncClient, ClientError
from engramp2p.ui.placement import fold
from engramp2p.ui.shapes import Event, ShapeError, ShardPlacement, Snapshot, to_event, to_snapshot
from engramp2p.ui.source import SourceError

# The agent's event type names, however it spells them, to the UI's kinds.
_KIND = {
    "join": "joined",
    "joined": "joined",
    "alive": "joined",
    "suspect": "suspected",
    "suspected": "suspected",
    "fail": "failed",
    "failed": "failed",
    "dead": "failed",
    "leave": "left",
    "left": "left",
    "recover": "recovered",
    "recovered": "recovered",
    "refute": "refuted",
    "refuted": "refuted",
    "update": "updated",
    "updated": "updated",
}


def event_kind(agent_type: str) -> str:
    """``"MemberJoined"``, ``"member_joined"``, ``"joined"`` -> ``"joined"``; unknown types pass through."""
    t = agent_type.strip().lower().replace("-", "_")
    for prefix in ("member_", "member"):
        if t.startswith(prefix) and t != prefix:
            t = t[len(prefix) :]
            break
    return _KIND.get(t, t)


def _hex(node_id: Any) -> str:
    if isinstance(node_id, bytes | bytearray):
        return bytes(node_id).hex()
    return "" if node_id is None else str(node_id)


def _seconds(obj: Any, secs: str, millis: str) -> float:
    if getattr(obj, secs, None) is not None:
        return float(getattr(obj, secs))
    return float(getattr(obj, millis, 0) or 0) / 1000.0


def member_dict(m: Any) -> dict[str, Any]:
    return {
        "name": m.name,
        "node_id": _hex(m.node_id),
        "addr": m.addr,
        "state": m.state,
        "incarnation": m.incarnation,
        "roles": list(getattr(m, "roles", ()) or ()),
        "rtt_ms": getattr(m, "rtt_ms", None),
        "last_change": _seconds(m, "last_change", "last_change_ms"),
    }


def info_dict(i: Any) -> dict[str, Any]:
    node = getattr(i, "node", None)
    if node is None:
        node = {"name": i.name, "node_id": _hex(i.node_id), "addr": i.addr}
    health = getattr(i, "health_score", None)
    return {
        "node": node,
        "health_score": getattr(i, "health", 0) if health is None else health,
        "counters": dict(getattr(i, "counters", {}) or {}),
        "uptime_s": getattr(i, "uptime_s", 0.0),
    }


def event_dict(e: Any) -> dict[str, Any]:
    kind = getattr(e, "kind", None) or getattr(e, "type", "")
    node_id = getattr(e, "node_id", None)
    return {
        "ts": _seconds(e, "ts", "at_ms"),
        "kind": event_kind(str(kind)),
        "name": getattr(e, "name", None) or getattr(e, "host", None) or "",
        "node_id": _hex(getattr(e, "node", None) if node_id is None else node_id),
        "incarnation": getattr(e, "incarnation", None),
        "detail": getattr(e, "detail", "") or "",
    }


MAX_SPACES_POLLED = 16
"""Spaces whose placement one poll asks for (one ``space_info`` each); more are left out of the panel."""


class AgentSource:
    """Polls ``members`` + ``info`` (+ ``space_list`` and ``space_info`` per space, for the placement
    panel) on one connection and streams events on another (the client opens a connection per
    subscription). The client reconnects on the next call after a failure. An agent that does not
    serve spaces (no replication) simply has no placement panel."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 2.0) -> None:
        self.label = str(socket_path)
        self.client = AsyncClient(socket_path, timeout=timeout)

    async def snapshot(self) -> Snapshot:
        try:
            members = await self.client.members()
            info = await self.client.info()
            snap = to_snapshot([member_dict(m) for m in members], info_dict(info))
        except (ClientError, ShapeError) as exc:
            raise SourceError(str(exc)) from None
        rows, dropped = await self._placement(snap)
        return structs.replace(snap, placement=rows, dropped=snap.dropped + dropped)

    async def _placement(self, snap: Snapshot) -> tuple[tuple[ShardPlacement, ...], int]:
        """Every known space's shards x hosts; nothing (not an outage) if the agent has no spaces API."""
        try:
            spaces = await self.client.space_list()
        except ClientError as exc:
            if "does not support" in str(exc):
                return (), 0
            raise SourceError(str(exc)) from None
        statuses = []
        for space in sorted(spaces, key=lambda s: s.name)[:MAX_SPACES_POLLED]:
            try:
                statuses.append(await self.client.space_info(space.name))
            except ClientError:
                continue  # gone since the list, or a broken link the next poll's ``members`` reports
        states = {m.name: m.state for m in snap.members}
        me = snap.info.node.name if snap.info is not None else None
        return fold(statuses, states, me)

    async def events(self) -> AsyncIterator[Event | None]:
        try:
            async for ev in self.client.events():
                yield to_event(event_dict(ev))
        except ClientError as exc:
            raise SourceError(str(exc)) from None

    async def aclose(self) -> None:
        await self.client.aclose()
