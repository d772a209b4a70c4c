"""``engramp2p check-config FILE [--json]``: validate a config and show what the agent would run with.

The output is the *effective* config: every default filled in and the SWIM profile resolved into its
knobs, so an operator sees the numbers, not just the profile name. Keys are shown as fingerprints only
(the output is meant to be pasted into tickets). A bad config prints the loader's one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Validate a TOML config file. Prints the effective config (defaults filled in, "
        "SWIM profile resolved, keys redacted) and exits 0, or prints one error line and exits 2.",
    )
    parser.add_argument("file", metavar="FILE", help="TOML config file")
    parser.add_argument("--json", action="store_true", help="print the effective config as JSON")
    parser.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    from engramp2p.cli import CliError
    from engramp2p.config import ConfigError, effective, load_config, render_toml

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    data = effective(cfg)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"# effective config of {args.file}", end="\n\n")
        print(render_toml(data), end="")
    return 0
