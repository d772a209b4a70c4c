"""Benchmark the SWIM simulator at scale and compare against SWIM's expected values (outside CI).

Runs the same seeded scenario with fast confirmations on and off (default: 1,000 peers, 10 virtual
minutes, 1% loss, 10 kills and 10 late joins), prints one table with detection and dissemination
percentiles next to the SWIM paper's expectations (first probe of a failed member after e/(e-1) protocol
periods; dissemination in O(log n) gossip rounds), the wall time of each phase, and the command that
produced it. ``--cprofile`` profiles one run and prints the hottest functions instead.

    /work/venv/bin/python tools/bench_sim.py                 # the full benchmark (several minutes)
    /work/venv/bin/python tools/bench_sim.py --nodes 200 --duration 120
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shlex
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from engramp2p.sim.scenario import Scenario, Simulation  # noqa: E402


def run_once(args: argparse.Namespace, fast_confirm: bool) -> dict[str, Any]:
    sim = Simulation(
        Scenario(
            nodes=args.nodes,
            duration=args.duration,
            profile=args.profile,
            loss=args.loss,
            kills=args.kills,
            kill_at=args.kill_at,
            joins=args.joins,
            seed=args.seed,
            fast_confirm=fast_confirm,
            stagger=args.stagger,
            formed=args.formed,
            check_every=5.0,
        )
    )
    # The simulation holds millions of long-lived objects (member tables, queued broadcasts); moving
    # them out of the collector's generations keeps each full collection from walking them all again.
    gc.freeze()
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    sim.form(_progress if args.progress else None)
    gc.freeze()
    formed = time.perf_counter()
    formed_cpu = time.process_time()
    before = sim._traffic()
    sim.schedule_faults()
    sim.measure(_progress if args.progress else None)
    done = time.perf_counter()
    done_cpu = time.process_time()
    report = sim.report(before, done - wall0)
    report["formation_wall_s"] = formed - wall0
    report["measured_wall_s"] = done - formed
    report["formation_cpu_s"] = formed_cpu - cpu0
    report["measured_cpu_s"] = done_cpu - formed_cpu
    return report


def swim_digest() -> str:
    """Digest of the SWIM core's sources: the numbers belong to this exact protocol code."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "engramp2p" / "swim"
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(root.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _progress(phase: str, now: float, end: float) -> None:
    print(f"\r{phase} {now:7.0f}/{end:.0f} virtual s", end="", file=sys.stderr, flush=True)


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def label(report: dict[str, Any]) -> str:
    """Column title: the fast-confirm setting and how the cluster was formed."""
    sc = report["scenario"]
    start = "formed start" if sc.get("formed") else "mass join"
    return f"fast-confirm {'on' if sc['fast_confirm'] else 'off'}, {start}"


def table(reports: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per figure, one column per run, plus SWIM's expectation."""
    any_report = next(iter(reports.values()))
    exp = any_report["expected"]
    period, gossip = exp["probe_interval_s"], exp["gossip_interval_s"]
    names = list(reports)
    lines = [
        "| figure | " + " | ".join(names) + " | SWIM expectation |",
        "|---|" + "---|" * len(names) + "---|",
    ]

    def row(label: str, values: list[str], expectation: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(values) + f" | {expectation} |")

    def pct(key: str, label: str, expectation: str = "") -> None:
        row(
            label,
            [
                f"p50 {_f(r[key]['p50'])} / p90 {_f(r[key]['p90'])} / p99 {_f(r[key]['p99'])} / max "
                f"{_f(r[key]['max'])} (n={r[key]['n']})"
                for r in reports.values()
            ],
            expectation,
        )

    pct(
        "first_suspicion_s",
        "first suspicion after kill (s)",
        f"e/(e-1) x {period:g} s = {exp['first_probe_of_failed_s']:.2f} s (+ probe timeout)",
    )
    pct(
        "first_detection_s",
        "failure detection, first peer (s)",
        f"first suspicion + suspicion timeout (min {exp['suspicion_min_s']:.1f} s, max {exp['suspicion_max_s']:.1f} s)",
    )
    pct(
        "all_survivors_detection_s",
        "failure detection, every survivor (s)",
        f"bound {exp['detection_bound_s']:.1f} s (max timeout + 2 periods)",
    )
    pct(
        "failure_dissemination_s",
        "failure dissemination, first -> last survivor (s)",
        f"O(log n): log_{{fanout+1}}(n) = {exp['gossip_rounds_log_n']:.1f} gossip rounds x {gossip:g} s = "
        f"{exp['gossip_rounds_log_n'] * gossip:.2f} s",
    )
    pct("join_dissemination_s", "join dissemination, join -> last peer (s)", "same O(log n) rounds")
    for key, label in (
        ("failure_dissemination_s", "failure dissemination p50 in gossip rounds"),
        ("join_dissemination_s", "join dissemination p50 in gossip rounds"),
    ):
        row(
            label,
            [_f(r[key]["p50"] / gossip if r[key]["p50"] is not None else None, 1) for r in reports.values()],
            f"{exp['gossip_rounds_log_n']:.1f}",
        )
    row(
        "false positives (live peer marked failed)",
        [str(r["false_positives"]) for r in reports.values()],
        "0",
    )
    row("false suspicions (refuted)", [str(r["false_suspicions"]) for r in reports.values()])
    row("undetected (survivor, killed) pairs", [str(r["undetected_pairs"]) for r in reports.values()], "0")
    row("converged at end", ["yes" if r["converged"] else "NO" for r in reports.values()], "yes")
    row("packets / member / s", [_f(r["traffic"]["msgs_per_member_s"]) for r in reports.values()])
    row("UDP bytes / member / s", [_f(r["traffic"]["bytes_per_member_s"], 0) for r in reports.values()])
    row(
        "stream bytes / member / s",
        [_f(r["traffic"]["stream_bytes_per_member_s"], 0) for r in reports.values()],
    )
    row(
        "formation: virtual s / wall s / CPU s",
        [
            f"{_f(r['formation_s'], 0)} / {r['formation_wall_s']:.1f} / {r['formation_cpu_s']:.1f}"
            for r in reports.values()
        ],
    )
    row(
        "measured phase: virtual s / wall s / CPU s",
        [
            f"{r['scenario']['duration_s']:.0f} / {r['measured_wall_s']:.1f} / {r['measured_cpu_s']:.1f}"
            for r in reports.values()
        ],
    )
    row(
        "whole run (formation + measured): wall s / CPU s",
        [
            f"{r['formation_wall_s'] + r['measured_wall_s']:.1f} / {r['formation_cpu_s'] + r['measured_cpu_s']:.1f}"
            for r in reports.values()
        ],
    )
    row("events processed", [str(r["events"]) for r in reports.values()])
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="lan")
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--kill-at", type=float, default=30.0)
    p.add_argument("--joins", type=int, default=10)
    p.add_argument("--stagger", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--formed",
        action="store_true",
        help="start from a formed cluster (Swim.restore) instead of a mass join within --stagger seconds",
    )
    p.add_argument("--only", choices=("on", "off"), help="run just one fast-confirm setting")
    p.add_argument("--cprofile", action="store_true", help="profile one run (fast-confirm on)")
    p.add_argument("--progress", action="store_true", help="progress on stderr")
    p.add_argument("--json", metavar="PATH", help="also write the raw reports here")
    p.add_argument("--table-from", nargs="+", metavar="PATH", help="print the table of saved --json reports")
    args = p.parse_args()

    if args.table_from:
        reports: dict[str, dict[str, Any]] = {}
        for path in args.table_from:
            with open(path) as fh:
                for report in json.load(fh).values():
                    reports[label(report)] = report
        print(table(reports))
        return 0

    command = "/work/venv/bin/python tools/bench_sim.py " + shlex.join(sys.argv[1:])
    if args.cprofile:
        prof = cProfile.Profile()
        prof.enable()
        report = run_once(args, True)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
        print(
            f"(profiled run: formation {report['formation_wall_s']:.1f} s, measured {report['measured_wall_s']:.1f} s wall)"
        )
        print(f"command: {command}")
        return 0

    settings = ["on", "off"] if args.only is None else [args.only]
    reports = {name: run_once(args, name == "on") for name in settings}
    titled = {label(report): report for report in reports.values()}
    if args.progress:
        print(file=sys.stderr)
    print(
        f"{args.nodes} peers, profile {args.profile}, loss {args.loss:.1%}, {args.kills} kills at +{args.kill_at:g} s, "
        f"{args.joins} late joins, {args.duration:g} virtual s after formation, seed {args.seed}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, swim/ sources {swim_digest()}"
    )
    print()
    print(table(titled))
    print()
    print(f"command: {command}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(reports, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
