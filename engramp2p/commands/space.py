"""``engramp2p space create|list|info``: spaces (named memory graphs) as the local agent knows them.

``space info NAME --json`` is the replication check scripts and tests use: one row per shard this agent
hosts with its hosts, counts, state digest and version vector, so comparing two agents' output per shard
says whether their replicas converged. Like every client command it talks to the agent over the control
socket (``--data-dir`` or ``--socket``); failures are one line, exit 1 (bad usage: exit 2).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Any

from engramp2p.commands.members import add_target, table, with_client

if TYPE_CHECKING:
    from engramp2p.api.messages import ShardRow, SpaceRow, SpaceStatus


def _bounded(limit: str) -> Any:
    """An argparse type for an integer in 1..``api.messages.<limit>`` (the wire bound), so a bad value is
    usage (exit 2); the bound is looked up when parsing, so ``--help`` does not import the messages."""

    def parse(text: str) -> int:
        from engramp2p.api import messages

        high = int(getattr(messages, limit))
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not 1 <= n <= high:
            raise argparse.ArgumentTypeError(f"must be in 1..{high}, got {n}")
        return n

    return parse


def _space_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} must match [a-z0-9_-]{{1,64}}")
    return text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "space",
        help="create, list and inspect spaces",
        description="Spaces are named memory graphs with a fixed vector dimension, split into shards, "
        "each shard held by `replicas` peers.",
    )
    sub = parser.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "create",
        help="create a space (idempotent with identical parameters)",
        description="Create NAME cluster-wide. Creating an existing space with the same parameters is a "
        "no-op; different parameters are an error.",
    )
    add_target(p)
    p.add_argument("name", metavar="NAME", type=_space_name, help="space name, [a-z0-9_-]{1,64}")
    p.add_argument("--dim", type=_bounded("MAX_DIM"), required=True, help="vector dimension")
    p.add_argument("--shards", type=_bounded("MAX_SHARDS"), default=1, help="number of shards (default 1)")
    p.add_argument("--replicas", type=_bounded("MAX_REPLICAS"), default=3, help="hosts per shard (default 3)")
    p.set_defaults(func=_create)

    p = sub.add_parser("list", help="list known spaces", description="Every space descriptor this agent knows.")
    add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "info",
        help="replication status of a space on this agent",
        description="For each shard this agent hosts: hosts, memories, edges, state digest, version "
        "vector and lag (entries known to exist that this replica lacks).",
    )
    add_target(p)
    p.add_argument("name", metavar="NAME", type=_space_name, help="space name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)


def space_json(s: SpaceRow) -> dict[str, Any]:
    return {
        "name": s.name,
        "dim": s.dim,
        "shards": s.shards,
        "replicas": s.replicas,
        "metric": s.metric,
        "created_hlc": s.created_hlc,
        "creator": s.creator.hex() if s.creator is not None else None,
    }


def shard_json(r: ShardRow) -> dict[str, Any]:
    return {
        "shard": r.shard,
        "hosts": list(r.hosts),
        "memories": r.memories,
        "edges": r.edges,
        "digest": r.digest.hex(),
        "version_vector": {v.origin.hex(): v.seq for v in r.version_vector},
        "lag": r.lag,
        "buffered": r.buffered,
        "quarantined": [o.hex() for o in r.quarantined],
        "leaving": r.leaving,
        "peer_lag": dict(r.peer_lag),
    }


def status_json(st: SpaceStatus) -> dict[str, Any]:
    return {
        "space": space_json(st.space),
        "shards": [shard_json(r) for r in st.shards],
        "placement": [{"shard": p.shard, "hosts": list(p.hosts)} for p in st.placement],
    }


def _create(args: argparse.Namespace) -> int:
    s = with_client(args, lambda c: c.space_create(args.name, args.dim, args.shards, args.replicas), 60.0)
    print(f"Space {s.name}: dim {s.dim}, {s.shards} shard(s), {s.replicas} replica(s), metric {s.metric}.")
    return 0


def _list(args: argparse.Namespace) -> int:
    spaces = with_client(args, lambda c: c.space_list())
    if args.json:
        print(json.dumps([space_json(s) for s in spaces], indent=2))
        return 0
    if not spaces:
        print("No spaces.")
        return 0
    rows = [
        (s.name, str(s.dim), str(s.shards), str(s.replicas), s.metric,
         s.creator.hex()[:8] if s.creator is not None else "-")
        for s in sorted(spaces, key=lambda s: s.name)
    ]
    print(table(("Name", "Dim", "Shards", "Replicas", "Metric", "Creator"), rows))
    return 0


def _info(args: argparse.Namespace) -> int:
    st = with_client(args, lambda c: c.space_info(args.name))
    if args.json:
        print(json.dumps(status_json(st), indent=2))
        return 0
    s = st.space
    print(f"Space {s.name}: dim {s.dim}, {s.shards} shard(s), {s.replicas} replica(s), metric {s.metric}")
    if not st.shards:
        print("This agent hosts no shard of it.")
    else:
        rows = []
        for r in st.shards:
            flags = [f"{len(r.quarantined)} quarantined"] if r.quarantined else []
            if r.leaving:
                flags.append("leaving")
            if r.buffered:
                flags.append(f"{r.buffered} buffered")
            rows.append((str(r.shard), ",".join(r.hosts) or "-", str(r.memories), str(r.edges),
                         str(r.lag), r.digest.hex()[:16], str(len(r.version_vector)), " ".join(flags)))
        print(table(("Shard", "Hosts", "Memories", "Edges", "Lag", "Digest", "Origins", "Notes"), rows))
    hosted = {r.shard for r in st.shards}
    others = [p for p in st.placement if p.shard not in hosted]
    if others:
        print("Other shards (hosted elsewhere):")
        print(table(("Shard", "Hosts"), [(str(p.shard), ",".join(p.hosts) or "-") for p in others]))
    return 0
