"""``engramp2p agent``: run the daemon on this device until SIGINT/SIGTERM.

Flags override the TOML config (``--config``) the way Serf's do: ``--bind ip[:port]``, ``--advertise``,
``--join`` (repeatable: the seed list), ``--data-dir``, ``--profile``, ``--key`` (base64, like Serf's
``-encrypt``). With no key configured the agent creates one in the data directory (mode 0600) and
prints the command other peers join with.

Shutdown: the first SIGINT/SIGTERM leaves gracefully (our departure gossiped, bounded wait) and then
stops; a second one stops at once. Either way the store is closed cleanly. trio, the node and their
dependencies are imported only when the command runs, so ``engramp2p --help`` stays fast.
"""

from __future__ import annotations

import argparse
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engramp2p.config import Config
    from engramp2p.node import Node

LOG_LEVELS = ("debug", "info", "warn", "error")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run the engramp2p agent (the daemon) on this device",
        description="Run the agent until SIGINT/SIGTERM (the first one leaves the cluster gracefully, "
        "a second one stops at once). Flags override the config file.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--name", help="node name shown to people (default: the host name)")
    parser.add_argument("--bind", metavar="IP[:PORT]", help="address to bind UDP and TCP (port 0: any free port)")
    parser.add_argument("--advertise", metavar="IP", help="address other peers should use to reach us")
    parser.add_argument(
        "--join", metavar="ADDR", action="append", help="seed peer host[:port] to join (repeatable)"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (database, keyring, control.sock)")
    parser.add_argument("--profile", choices=("lan", "wan", "local"), help="SWIM timing profile")
    parser.add_argument("--key", metavar="BASE64", help="cluster key (32 bytes, base64); becomes the primary")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default info)")
    parser.add_argument("--fault-injection", action="store_true",
                        help="accept `fault drop|heal` commands (test agents and chaos drills only)")
    parser.set_defaults(func=_agent)


def load(args: argparse.Namespace) -> Config:
    """The effective config: the file (or defaults) with the flags applied; bad input is exit 2."""
    from engramp2p.cli import CliError
    from engramp2p.config import Config, ConfigError, load_config

    try:
        cfg = load_config(args.config) if args.config else Config.default()
        cfg = cfg.with_flags(
            name=args.name,
            bind=args.bind,
            advertise=args.advertise,
            join=args.join,
            data_dir=args.data_dir,
            profile=args.profile,
            key=args.key,
        )
        if getattr(args, "fault_injection", False):
            cfg = cfg.with_overrides({"replication.fault_injection": True})
        return cfg
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None


def _agent(args: argparse.Namespace) -> int:
    import trio

    from engramp2p import agent_log

    cfg = load(args)
    agent_log.setup(args.log_level)
    trio.run(_serve, cfg)
    return 0


async def _serve(cfg: Config) -> None:
    import logging

    import trio

    from engramp2p.node import Node
    from engramp2p.repl.service import Replication

    log = logging.getLogger("engramp2p.agent")
    node = Node(cfg)
    node.add_service(Replication(cfg))
    failed: Exception | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(_run_node, node, nursery.cancel_scope)
            except Exception as exc:  # startup failed: reported below, outside the nursery
                failed = exc
            else:
                _print_join_hint(cfg, node)
                received = 0
                async for signum in signals:
                    received += 1
                    name = signal.Signals(signum).name
                    if received == 1:
                        log.info("received %s: leaving the cluster (again to stop at once)", name)
                        nursery.start_soon(_leave_and_stop, node)
                    else:
                        log.info("received %s again: stopping now", name)
                        node.stop()
    if failed is not None:
        _raise_startup_error(failed)
    log.info("agent stopped")


async def _run_node(node: Node, scope: Any, *, task_status: Any) -> None:
    """The node's task; when it ends (``leave`` over the control socket, a signal) the agent ends."""
    try:
        await node.run(task_status=task_status)
    finally:
        scope.cancel()


async def _leave_and_stop(node: Node) -> None:
    await node.leave()
    node.stop()


def _raise_startup_error(exc: BaseException) -> None:
    """Turn what stopped the node from starting into ``CliError`` (exit 1); a bug is re-raised."""
    from engramp2p.api.server import AgentAlreadyRunning
    from engramp2p.cli import CliError
    from engramp2p.keyfile import KeyFileError
    from engramp2p.store import SchemaError, StoreError

    expected = (OSError, StoreError, SchemaError, KeyFileError, AgentAlreadyRunning, ValueError)
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, expected):
        if isinstance(leaf, OSError) and leaf.strerror:
            where = f" ({leaf.filename})" if leaf.filename else ""
            raise CliError(f"cannot start: {leaf.strerror}{where}") from None
        raise CliError(f"cannot start: {leaf}") from None
    raise exc


def _print_join_hint(cfg: Config, node: Node) -> None:
    """With no key configured, say where the key is and how another peer joins this cluster."""
    from engramp2p.net.seal import encode_key

    plan = node.key_plan
    if plan is None or cfg.keyring.keys or node.keyring is None or node.keyring.primary is None:
        return
    host, port = node.addr
    what = "created a new cluster key" if plan.source == "generated" else "using the cluster key"
    print(f"engramp2p agent: {what} in {plan.path} (mode 0600).", flush=True)
    print("Other peers join this cluster with:", flush=True)
    print(f"    engramp2p agent --join {host}:{port} --key {encode_key(node.keyring.primary)}", flush=True)
