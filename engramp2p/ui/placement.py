"""Shards x peers for `engramp2p top`: who holds each shard and whether that copy is in sync. Pure.

The agent answers ``space_info`` per space with the placement of every shard and, for the shards it
hosts, its own lag and what it knows of the other hosts' (``peer_lag``). ``fold`` turns those replies
plus the member table into one ``ShardPlacement`` row per shard with a sync state per host, so the
panel only has to colour cells. The states, worst first:

- ``down``: the host is not alive in the member table (its copy is unreachable, not lost);
- ``fork``: this agent quarantined an origin of that shard (a cloned disk; needs a human);
- ``behind``: entries are known to exist that the copy lacks (it is catching up);
- ``leaving``: placement moved away; the copy serves until the new hosts cover it;
- ``unknown``: alive, but this agent has no lag figure for it (it does not host the shard itself);
- ``synced``: lag 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from engramp2p.ui.shapes import ShardPlacement, _scrub

SYNC_STATES: Final = ("down", "fork", "behind", "leaving", "unknown", "synced")
MAX_SHARD_ROWS = 4096


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def host_sync(
    host: str,
    *,
    alive: bool,
    me: bool,
    row: Any | None,
) -> tuple[str, int | None]:
    """The sync state of ``host``'s copy, given this agent's ``ShardRow`` for the shard (or ``None``)."""
    if not alive:
        return "down", None
    if row is None:
        return "unknown", None
    if me:
        if _field(row, "quarantined"):
            return "fork", None
        lag = int(_field(row, "lag", 0) or 0)
        if lag:
            return "behind", lag
        if _field(row, "leaving", False):
            return "leaving", 0
        return "synced", 0
    peer_lag = _field(row, "peer_lag", {}) or {}
    if host not in peer_lag:
        return "unknown", None
    lag = int(peer_lag[host])
    return ("behind" if lag else "synced"), lag


def fold(statuses: Iterable[Any], member_states: Mapping[str, str], self_name: str | None) -> tuple[
    tuple[ShardPlacement, ...], int
]:
    """``space_info`` replies (structs or their JSON) -> rows sorted by (space, shard); returns
    ``(rows, dropped)`` where ``dropped`` counts rows that did not fit their shape."""
    rows: list[ShardPlacement] = []
    dropped = 0
    for st in statuses:
        space = _field(_field(st, "space", {}), "name", "?")
        hosted = {int(_field(r, "shard", -1)): r for r in _field(st, "shards", []) or []}
        placement = {int(_field(p, "shard", -1)): list(_field(p, "hosts", [])) for p in
                     _field(st, "placement", []) or []}
        for shard, r in hosted.items():
            placement.setdefault(shard, list(_field(r, "hosts", [])))
        for shard in sorted(placement):
            row = hosted.get(shard)
            cells = []
            for host in placement[shard]:
                state, lag = host_sync(host, alive=member_states.get(host, "alive") == "alive",
                                       me=host == self_name, row=row)
                cells.append({"host": host, "sync": state, "lag": lag})
            try:
                rows.append(_scrub(msgspec.convert(
                    {"space": space, "shard": shard, "hosted": row is not None, "hosts": cells},
                    ShardPlacement,
                )))
            except msgspec.ValidationError:
                dropped += 1
            if len(rows) >= MAX_SHARD_ROWS:
                return tuple(rows), dropped
    rows.sort(key=lambda r: (r.space, r.shard))
    return tuple(rows), dropped


__all__ = ["SYNC_STATES", "fold", "host_sync"]
