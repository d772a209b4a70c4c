"""``engramp2p top [--data-dir D | --socket S] [--refresh HZ]``: the live topology view of a running agent.

``--demo-data`` (hidden) shows a fake, evolving cluster with a short agent outage every 45 s instead of
connecting anywhere, so the UI can be checked in a terminal (``tmux new -d 'engramp2p top --demo-data'``)
before or without an agent. rich and trio are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

DEMO_OUTAGE = (45.0, 6.0)  # (period, length) of the demo's fake agent outages, seconds


def _hz(text: str) -> float:
    try:
        hz = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.5 <= hz <= 10.0:
        raise argparse.ArgumentTypeError("must be between 0.5 and 10 Hz")
    return hz


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "top",
        help="live view of the cluster as the local agent sees it",
        description="Live membership table, topology and event log of the agent at --data-dir or --socket. "
        "Keeps running, and says so, while the agent is unreachable. q or Ctrl-C quits.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="D", help="the agent's data directory (its control.sock)")
    where.add_argument("--socket", metavar="S", help="path of the agent's control socket")
    parser.add_argument(
        "--refresh", metavar="HZ", type=_hz, default=4.0, help="redraws per second (default 4)"
    )
    parser.add_argument("--demo-data", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=_top)


def _socket_path(args: argparse.Namespace) -> str:
    from engramp2p.api.client import control_path

    if args.socket:
        return str(args.socket)
    if args.data_dir:
        return str(control_path(args.data_dir))
    from engramp2p.config import Config

    return str(control_path(Config.default().node.data_path()))


def _top(args: argparse.Namespace) -> int:
    import time

    import trio

    from engramp2p.cli import CliError
    from engramp2p.ui.app import TopApp
    from engramp2p.ui.source import UNREACHABLE, TopSource

    source: TopSource
    if args.demo_data:
        from engramp2p.ui.demo import DemoSource

        source = DemoSource(time.time, outage=DEMO_OUTAGE)
    else:
        from engramp2p.ui.agent_source import AgentSource

        source = AgentSource(_socket_path(args))

    async def main() -> None:
        try:
            with trio.fail_after(5.0):
                await source.snapshot()  # fail with one line if there is no agent at all
        except UNREACHABLE as exc:
            await source.aclose()
            msg = "the agent did not answer within 5 s" if isinstance(exc, trio.TooSlowError) else str(exc)
            raise CliError(msg) from None
        try:
            await TopApp(source, refresh_hz=args.refresh).run()
        finally:
            await source.aclose()

    trio.run(main)
    return 0
