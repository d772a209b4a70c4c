"""``engramp2p simulate``: JSON report shape, the rich table, and one-line usage errors."""

from __future__ import annotations

import json

import pytest

from engramp2p.cli import main


def test_simulate_json_reports_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--nodes",
            "12",
            "--duration",
            "40",
            "--kill",
            "1",
            "--join",
            "1",
            "--loss",
            "0.02",
            "--pause",
            "5:10",
            "--partition",
            "20:5:0.25",
            "--restart",
            "25:0.2:2",
            "--seed",
            "9",
            "--json",
        ]
    )
    assert code == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["scenario"]["nodes"] == 12 and report["scenario"]["seed"] == 9
    for key in (
        "first_detection_s",
        "all_survivors_detection_s",
        "failure_dissemination_s",
        "join_dissemination_s",
    ):
        assert set(report[key]) == {"n", "p50", "p90", "p99", "max"}
    assert report["first_detection_s"]["n"] == 1
    assert report["false_positives"] >= 0
    assert report["traffic"]["msgs_per_member_s"] > 0
    assert report["traffic"]["bytes_per_member_s"] > 0
    assert report["wall_s"] > 0
    assert err == ""  # no progress bar in --json mode


def test_simulate_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--nodes", "8", "--duration", "20", "--kill", "1", "--no-fast-confirm"]) == 0
    out = capsys.readouterr().out
    assert "failure detection, all survivors" in out
    assert "fast-confirm off" in out
    assert "false positives" in out


def test_simulate_formed_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--nodes", "30", "--duration", "40", "--kill", "1", "--formed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"]["formed"] is True and report["formation_s"] == 1.0
    assert report["converged"] and report["undetected_pairs"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--nodes", "0"],
        ["--loss", "1.5"],
        ["--kill", "10", "--nodes", "10"],
        ["--partition", "10"],
        ["--partition", "a:b"],
        ["--pause", "5:0"],
        ["--restart", "5:2"],
    ],
)
def test_simulate_rejects_bad_flags_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("engramp2p simulate:") and "\n" not in err
