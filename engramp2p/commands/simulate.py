"""``engramp2p simulate``: run a seeded SWIM cluster simulation and print what an operator would see.

A planning tool as much as a test ("what will 500 devices on 5% loss see?"): it reports failure-detection
and dissemination percentiles, false positives, convergence after faults, and per-member traffic. The
simulator and rich are imported inside ``run`` so ``engramp2p --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engramp2p.cli import CliError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a SWIM cluster with faults (deterministic from --seed)",
        description="Run a deterministic discrete-event simulation of a SWIM/Lifeguard cluster. Times are "
        "virtual seconds from the end of cluster formation.",
    )
    p.add_argument("--nodes", type=int, default=50, help="cluster size (default 50)")
    p.add_argument("--duration", type=float, default=120.0, help="measured virtual seconds (default 120)")
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="lan", help="SWIM + network profile")
    p.add_argument("--loss", type=float, default=0.0, help="packet loss probability, 0..1 (e.g. 0.05)")
    p.add_argument("--duplicate", type=float, default=0.0, help="packet duplication probability, 0..1")
    p.add_argument("--kill", type=int, default=0, metavar="K", help="crash K random peers for good")
    p.add_argument("--kill-at", type=float, default=10.0, metavar="T", help="when to kill them (default 10)")
    p.add_argument("--join", type=int, default=0, metavar="J", help="J extra peers join during the run")
    p.add_argument(
        "--partition",
        action="append",
        default=[],
        metavar="START:DURATION[:FRACTION]",
        help="cut FRACTION (default 0.5) of the peers off the rest; repeatable",
    )
    p.add_argument(
        "--pause",
        action="append",
        default=[],
        metavar="START:DURATION[:COUNT]",
        help="SIGSTOP COUNT (default 1) random peers for DURATION seconds; repeatable",
    )
    p.add_argument(
        "--restart",
        action="append",
        default=[],
        metavar="START:FRACTION[:DOWNTIME]",
        help="crash FRACTION of the peers and restart them DOWNTIME (default 5) s later; repeatable",
    )
    p.add_argument("--one-way", type=int, default=0, metavar="L", help="L random links lose one direction")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--no-fast-confirm", action="store_true", help="disable probing suspects ahead of turn")
    p.add_argument(
        "--formed",
        action="store_true",
        help="start from a formed cluster (every peer knows every other) instead of a mass join; "
        "for steady-state runs of large clusters, whose mass join is the costliest part to simulate",
    )
    p.add_argument("--trace", action="store_true", help="also report the event-trace hash (slower)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _fields(text: str, flag: str, count: int) -> list[float]:
    parts = text.split(":")
    if not 2 <= len(parts) <= count:
        raise CliError(f"{flag} {text!r}: expected 2 or {count} ':'-separated numbers", 2)
    try:
        return [float(x) for x in parts]
    except ValueError:
        raise CliError(f"{flag} {text!r}: not a number", 2) from None


def build_scenario(args: argparse.Namespace) -> Any:
    """Turn the parsed flags into a ``Scenario``; inconsistent values are usage errors (exit 2)."""
    from engramp2p.sim.scenario import PartitionSpec, PauseSpec, RestartSpec, Scenario

    if args.nodes < 1 or args.nodes > 10_000:
        raise CliError("--nodes must be between 1 and 10000", 2)
    if args.duration <= 0:
        raise CliError("--duration must be positive", 2)
    for flag, value in (("--loss", args.loss), ("--duplicate", args.duplicate)):
        if not 0.0 <= value < 1.0:
            raise CliError(f"{flag} must be a probability in [0, 1)", 2)
    if not 0 <= args.kill < args.nodes:
        raise CliError("--kill must be between 0 and nodes - 1", 2)
    if args.join < 0 or args.one_way < 0:
        raise CliError("--join and --one-way must not be negative", 2)
    partitions = []
    for text in args.partition:
        start, duration, *rest = _fields(text, "--partition", 3)
        fraction = rest[0] if rest else 0.5
        if start < 0 or duration <= 0 or not 0 < fraction < 1:
            raise CliError(f"--partition {text!r}: need START >= 0, DURATION > 0, 0 < FRACTION < 1", 2)
        partitions.append(PartitionSpec(start, duration, fraction))
    pauses = []
    for text in args.pause:
        start, duration, *rest = _fields(text, "--pause", 3)
        count = int(rest[0]) if rest else 1
        if start < 0 or duration <= 0 or count < 1:
            raise CliError(f"--pause {text!r}: need START >= 0, DURATION > 0, COUNT >= 1", 2)
        pauses.append(PauseSpec(start, duration, count))
    restarts = []
    for text in args.restart:
        start, fraction, *rest = _fields(text, "--restart", 3)
        downtime = rest[0] if rest else 5.0
        if start < 0 or not 0 < fraction <= 1 or downtime < 0:
            raise CliError(f"--restart {text!r}: need START >= 0, 0 < FRACTION <= 1, DOWNTIME >= 0", 2)
        restarts.append(RestartSpec(start, fraction, downtime))
    if sum(p.count for p in pauses) + args.kill > max(0, args.nodes - 3):
        raise CliError("--kill plus paused peers must leave the 3 seed peers alone", 2)
    return Scenario(
        nodes=args.nodes,
        duration=args.duration,
        profile=args.profile,
        loss=args.loss,
        duplicate=args.duplicate,
        kills=args.kill,
        kill_at=args.kill_at,
        joins=args.join,
        partitions=partitions,
        pauses=pauses,
        restarts=restarts,
        one_way=args.one_way,
        seed=args.seed,
        fast_confirm=not args.no_fast_confirm,
        formed=args.formed,
        trace=args.trace,
    )


def run(args: argparse.Namespace) -> int:
    from engramp2p.sim.scenario import Simulation

    scenario = build_scenario(args)
    sim = Simulation(scenario)
    if args.json:
        report = sim.run()
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        report = _run_with_progress(sim)
        render(report)
    return 0


def _run_with_progress(sim: Any) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, now: float, end: float) -> None:
            if phase not in tasks:
                for other in tasks.values():
                    bar.update(other, visible=False)
                tasks[phase] = bar.add_task(phase, total=end)
            bar.update(tasks[phase], completed=now)

        return sim.run(progress)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sc, exp = report["scenario"], report["expected"]
    title = (
        f"{sc['nodes']} peers, {sc['profile']}, loss {sc['loss']:.1%}, {sc['duration_s']:.0f} virtual s, "
        f"seed {sc['seed']}, fast-confirm {'on' if sc['fast_confirm'] else 'off'}"
    )
    table = Table(title=title)
    table.add_column("seconds")
    for col in ("p50", "p90", "p99", "max", "n"):
        table.add_column(col, justify="right")
    for label, key in (
        ("first suspicion (SWIM: e/(e-1) periods)", "first_suspicion_s"),
        ("failure detection, first peer", "first_detection_s"),
        ("failure detection, all survivors", "all_survivors_detection_s"),
        ("failure dissemination", "failure_dissemination_s"),
        ("join dissemination", "join_dissemination_s"),
    ):
        row = report[key]
        table.add_row(label, *(_fmt(row[c]) for c in ("p50", "p90", "p99", "max")), str(row["n"]))
    console.print(table)

    summary = Table(show_header=False, title="summary")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    traffic = report["traffic"]
    for label, value in (
        ("cluster formation (s)" + (", formed start" if sc.get("formed") else ""), _fmt(report["formation_s"], 1)),
        ("false positives (live peer marked failed)", report["false_positives"]),
        ("false suspicions", report["false_suspicions"]),
        ("undetected (survivor, killed) pairs", report["undetected_pairs"]),
        ("converged at end", "yes" if report["converged"] else "NO"),
        ("converged after last fault (s)", _fmt(report["converged_after_last_fault_s"], 1)),
        ("expected first probe of a failed peer (s)", _fmt(exp["first_probe_of_failed_s"])),
        ("suspicion timeout min / max (s)", f"{exp['suspicion_min_s']:.1f} / {exp['suspicion_max_s']:.1f}"),
        ("packets per member per s", _fmt(traffic["msgs_per_member_s"])),
        ("UDP bytes per member per s", _fmt(traffic["bytes_per_member_s"], 0)),
        ("stream bytes per member per s", _fmt(traffic["stream_bytes_per_member_s"], 0)),
        ("events / wall time (s)", f"{report['events']} / {report['wall_s']:.1f}"),
    ):
        summary.add_row(label, str(value))
    if "trace_hash" in report:
        summary.add_row("trace hash", report["trace_hash"])
    console.print(summary)
    sys.stdout.flush()
