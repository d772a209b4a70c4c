"""The ``engramp2p`` command line: a thin argparse front over the commands in ``engramp2p.commands``.

Each command module exposes ``register(subparsers)``; it adds its parsers and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Command modules import their heavy
dependencies inside ``func`` so that ``engramp2p --help`` stays fast.

Errors meant for the user are raised as ``CliError`` and printed as one line; bad usage or config
exits 2 (argparse's own convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engramp2p import __version__

# Order is the order in --help.
COMMAND_MODULES = [
    "engramp2p.commands.agent",
    "engramp2p.commands.members",
    "engramp2p.commands.space",
    "engramp2p.commands.memory",
    "engramp2p.commands.fault",
    "engramp2p.commands.keys",
    "engramp2p.commands.config",
    "engramp2p.commands.top",
    "engramp2p.commands.simulate",
    "engramp2p.commands.demo",
]


class CliError(Exception):
    """A failure to report as one line; ``code`` is the exit status (2 for usage/config)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engramp2p",
        description="A leaderless peer-to-peer associative memory for fleets of edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"engramp2p {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"engramp2p {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
