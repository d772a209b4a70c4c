"""Client commands that talk to a running agent: ``members``, ``join``, ``leave``, ``info``.

Each finds the control socket from ``--socket``, else ``--data-dir``, else the default data directory,
and speaks through the blocking ``engramp2p.api.Client`` (no trio import: these commands start in
tens of milliseconds). Any failure -- no agent running, a refused request -- is ONE line on stderr and
exit 1; bad usage is argparse's exit 2. Output follows Serf: aligned columns for people, ``--json``
for scripts (node ids in hex, times as unix seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from engramp2p.api.client import Client
    from engramp2p.api.messages import MemberRow, NodeInfo

T = TypeVar("T")
STATUSES = ("alive", "suspect", "failed", "left")


def add_target(parser: argparse.ArgumentParser) -> None:
    """``--data-dir D | --socket S``: which agent to talk to (shared by every client command)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="D", help="the agent's data directory (its control.sock)")
    where.add_argument("--socket", metavar="S", help="path of the agent's control socket")


def socket_path(args: argparse.Namespace) -> Path:
    from engramp2p.api.client import control_path

    if getattr(args, "socket", None):
        return Path(args.socket)
    if getattr(args, "data_dir", None):
        return control_path(Path(args.data_dir).expanduser())
    from engramp2p.config import Config

    return control_path(Config.default().node.data_path())


def with_client(args: argparse.Namespace, fn: Callable[[Client], T], timeout: float = 10.0) -> T:
    """Run ``fn`` against the agent; every client failure becomes one ``CliError`` line (exit 1)."""
    from engramp2p.api.client import Client, ClientError
    from engramp2p.cli import CliError

    try:
        with Client(socket_path(args), timeout=timeout) as client:
            return fn(client)
    except ClientError as exc:
        raise CliError(str(exc), 1) from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "members",
        help="list the cluster's members as this agent sees them",
        description="Members known to the local agent, itself first: name, address, state, incarnation, "
        "roles, round-trip time and last state change.",
    )
    add_target(p)
    p.add_argument("--status", choices=STATUSES, help="only members in this state")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(func=_members)

    p = subparsers.add_parser(
        "join",
        help="tell the agent to join a cluster through the given peers",
        description="Push-pull membership with each ADDR (host[:port]); fails if none answers.",
    )
    add_target(p)
    p.add_argument("addrs", metavar="ADDR", nargs="+", help="peer host[:port] (default port 7946)")
    p.set_defaults(func=_join)

    p = subparsers.add_parser(
        "leave",
        help="gracefully leave the cluster and stop the agent",
        description="The agent gossips its departure, waits until it has spread, and shuts down.",
    )
    add_target(p)
    p.set_defaults(func=_leave)

    p = subparsers.add_parser(
        "info",
        help="show the agent's identity, health, counters and event-loop lag",
        description="Node identity, Lifeguard health score (0 is healthy), traffic and failure counters, "
        "uptime, event-loop lag and heavy modules loaded.",
    )
    add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)


# ---------------------------------------------------------------------------------------------------
# members


def member_json(m: MemberRow) -> dict[str, Any]:
    return {
        "name": m.name,
        "node_id": m.node_id.hex(),
        "addr": m.addr,
        "state": m.state,
        "incarnation": m.incarnation,
        "roles": list(m.roles),
        "rtt_ms": m.rtt_ms,
        "last_change": m.last_change_ms / 1000.0,
    }


def _ago(unix_s: float, now: float) -> str:
    d = max(0.0, now - unix_s)
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    if d < 86400:
        return f"{d / 3600:.1f}h ago"
    return f"{d / 86400:.1f}d ago"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, as ``serf members`` prints them."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _members(args: argparse.Namespace) -> int:
    rows = with_client(args, lambda c: c.members(args.status))
    if args.json:
        print(json.dumps([member_json(m) for m in rows], indent=2))
        return 0
    now = time.time()
    body = [
        (
            m.name,
            m.addr,
            m.state,
            str(m.incarnation),
            ",".join(m.roles) or "-",
            f"{m.rtt_ms:.1f}ms" if m.rtt_ms is not None else "-",
            _ago(m.last_change_ms / 1000.0, now),
            m.node_id.hex()[:8],
        )
        for m in rows
    ]
    print(table(("Name", "Address", "Status", "Inc", "Roles", "RTT", "Changed", "Node"), body))
    return 0


# ---------------------------------------------------------------------------------------------------
# join, leave


def _join(args: argparse.Namespace) -> int:
    with_client(args, lambda c: c.join(args.addrs), timeout=60.0)
    print(f"Joined the cluster through {', '.join(args.addrs)}.")
    return 0


def _leave(args: argparse.Namespace) -> int:
    with_client(args, lambda c: c.leave(), timeout=60.0)
    print("Left the cluster gracefully; the agent is shutting down.")
    return 0


# ---------------------------------------------------------------------------------------------------
# info


def info_json(i: NodeInfo) -> dict[str, Any]:
    return {
        "node": {"name": i.name, "node_id": i.node_id.hex(), "addr": i.addr},
        "health_score": i.health,
        "uptime_s": round(i.uptime_s, 3),
        "counters": dict(sorted(i.counters.items())),
        "loop_lag_ms": dict(i.loop_lag_ms),
        "heavy_modules": list(i.heavy_modules),
    }


def _info(args: argparse.Namespace) -> int:
    info = with_client(args, lambda c: c.info())
    data = info_json(info)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    lines = ["node:"]
    lines += [f"    {k} = {v}" for k, v in data["node"].items()]
    lines.append(f"health score = {info.health} (0 is healthy)")
    lines.append(f"uptime = {info.uptime_s:.1f} s")
    lines.append("counters:")
    lines += [f"    {k} = {v}" for k, v in data["counters"].items()]
    lines.append("event-loop lag (ms):")
    lines += [f"    {k} = {v:g}" for k, v in data["loop_lag_ms"].items()]
    lines.append(f"heavy modules loaded = {', '.join(info.heavy_modules) or 'none'}")
    print("\n".join(lines))
    return 0
