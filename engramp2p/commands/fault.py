"""``engramp2p fault drop PEER...`` / ``fault heal [PEER...]``: partition drills on a test agent.

Only an agent started with ``--fault-injection`` (or ``replication.fault_injection = true``) accepts
these; any other agent refuses them with one line, so a stray script cannot partition a fleet. Dropping
is one-sided (this agent stops sending to and receiving from the peers); a symmetric partition is made
by dropping on both sides. A peer is named by member name, node id (a unique prefix of at least 8 hex
digits) or host:port.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from engramp2p.commands.members import add_target, with_client

if TYPE_CHECKING:
    from engramp2p.api.messages import FaultPeer


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fault",
        help="inject network faults into a test agent (drop, heal)",
        description="Drop or restore all traffic between this agent and chosen peers. Only for agents "
        "started with --fault-injection.",
    )
    sub = parser.add_subparsers(dest="fault_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("drop", help="drop all traffic with PEER...", description="Start dropping all traffic "
                       "to and from each PEER (name, node id prefix or host:port).")
    add_target(p)
    p.add_argument("peers", metavar="PEER", nargs="+", help="peer to cut off")
    p.add_argument("--json", action="store_true", help="print the dropped peers as JSON")
    p.set_defaults(func=_drop)

    p = sub.add_parser("heal", help="stop dropping PEER... (all when none given)",
                       description="Restore traffic with each PEER, or with every peer when none is given.")
    add_target(p)
    p.add_argument("peers", metavar="PEER", nargs="*", help="peer to restore (default: all)")
    p.add_argument("--json", action="store_true", help="print the still-dropped peers as JSON")
    p.set_defaults(func=_heal)


def peer_json(p: FaultPeer) -> dict[str, Any]:
    return {"name": p.name, "node_id": p.node_id.hex(), "addr": p.addr}


def _report(dropped: list[FaultPeer], as_json: bool) -> None:
    if as_json:
        print(json.dumps([peer_json(p) for p in dropped], indent=2))
    elif dropped:
        print("Dropping traffic with: " + ", ".join(f"{p.name} ({p.addr})" for p in dropped))
    else:
        print("Dropping traffic with nobody.")


def _drop(args: argparse.Namespace) -> int:
    _report(with_client(args, lambda c: c.fault_drop(args.peers)), args.json)
    return 0


def _heal(args: argparse.Namespace) -> int:
    _report(with_client(args, lambda c: c.fault_heal(args.peers)), args.json)
    return 0
