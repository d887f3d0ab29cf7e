"""`pitlane car run` as a user runs it: a mistake is one line before donkeycar loads; a short headless drive
prints its summary and leaves the report."""

from __future__ import annotations

import json

import pytest

from pitlane.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port 70000 outside 0..65535"),
        (["--web-port", "-1"], "--web-port -1 outside 0..65535"),
        (["--max-seconds", "inf"], "--max-seconds must be a positive number of seconds"),
        (["--model", "{tmp}/missing.tflite"], "does not exist"),
        (["--tub", "{tmp}/afile"], "--tub {tmp}/afile is a file"),
    ],
)
def test_a_mistake_is_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "afile").write_text("x")
    assert main(["car", "run", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: ") and message.format(tmp=tmp_path) in err


@pytest.mark.slow  # the real car loop for a few seconds, with its own twin
def test_a_short_drive_prints_its_summary_and_writes_the_report(tmp_path, capsys):
    args = [
        "car",
        "run",
        "--mode",
        "user",
        "--max-seconds",
        "2",
        "--port",
        "0",
        "--web-port",
        "0",
        "--no-plots",
    ]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {
        "laps_completed",
        "mean_abs_cte",
        "loop_hz",
        "tub_records",
        "stops",
        "nonfinite_outputs",
    }
    assert summary["loop_hz"] > 5.0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["car"]["mode"] == "user" and report["laps_requested"] == 0
