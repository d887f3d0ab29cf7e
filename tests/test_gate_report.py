"""The gate report's format: what the gate writes, the one reader reads; every malformed report is named;
reports from before the schema key still read; the reader pulls in no twin, OpenCV or TensorFlow code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pitlane import gate_report
from pitlane.errors import BadInput

DIGEST = "sha256:" + "ab" * 32
CHECK = {
    "scene": "generated_track",
    "metric": "laps_completed",
    "op": ">=",
    "threshold": 3,
    "value": 3,
    "passed": True,
}


def doc(**changes) -> dict:
    base = {
        "schema": gate_report.SCHEMA,
        "verdict": "pass",
        "model": "pilot.tflite",
        "model_digest": DIGEST,
        "checks": [CHECK],
        "reports": {"generated_track": {}, "mini_monaco cw": {}},
        "policy": {},
        "wall_seconds": 1.0,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_what_the_gate_writes_the_reader_reads(tmp_path):
    from pitlane.evaluate.gate import Check, GatePolicy, GateResult

    checks = (Check("generated_track", "laps_completed", ">=", 3.0, 3.0, True),)
    result = GateResult("pilot.tflite", DIGEST, GatePolicy(), (), checks, 2.5)
    path = result.save(tmp_path / "gate.json")
    assert json.loads(path.read_text())["schema"] == "pitlane.gate-report/1"
    report, data = gate_report.read(path)
    assert data == path.read_bytes()
    assert report.passed and report.model_digest == DIGEST and report.schema == gate_report.SCHEMA
    assert report.checks == (gate_report.Check("generated_track", "laps_completed", ">=", 3.0, 3.0, True),)
    summary = report.summary(data)
    assert summary["checks_passed"] == summary["checks"] == 1 and summary["report_digest"].startswith(
        "sha256:"
    )


def test_runs_and_summary():
    report = gate_report.parse(doc())
    assert report.runs == ("generated_track", "mini_monaco cw")
    assert report.summary(b"x")["scenes"] == ["generated_track", "mini_monaco cw"]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"schema": "pitlane.gate-report/2"}, "this pitlane reads pitlane.gate-report/1"),
        ({"verdict": None}, "no verdict/model_digest"),
        ({"verdict": "maybe"}, "verdict 'maybe' is not one of pass, fail"),
        ({"model_digest": "sha256:00"}, "model_digest 'sha256:00' is not sha256"),
        ({"checks": None}, "checks must be a list"),
        ({"checks": [{"scene": "x"}]}, "checks[0] needs scene, metric and op"),
        ({"checks": [CHECK | {"value": "3"}]}, "checks[0] needs a numeric threshold and value"),
        ({"reports": None}, "reports must map each run"),
        ({"checks": [CHECK | {"passed": False}]}, "verdict 'pass' disagrees with its checks"),
        ({"checks": []}, "verdict 'pass' disagrees with its checks"),  # a pass needs checks
    ],
)
def test_malformed_reports_are_named(changes, why):
    with pytest.raises(BadInput, match=re.escape(why)):
        gate_report.parse(doc(**changes), "gate report g.json")


def test_reports_from_before_the_schema_key_read_when_they_have_verdict_and_digest():
    old = gate_report.parse({"verdict": "pass", "model_digest": DIGEST})
    assert old.schema is None and old.passed and old.checks == () and old.runs == ()
    with_checks = gate_report.parse(
        {"verdict": "fail", "model_digest": DIGEST, "checks": [CHECK | {"passed": False}]}
    )
    assert not with_checks.passed and len(with_checks.checks) == 1
    with pytest.raises(BadInput, match="no verdict/model_digest"):
        gate_report.parse({"verdict": "pass"})


def test_files_that_are_not_reports(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        gate_report.read(tmp_path / "none.json")
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(BadInput, match="is not JSON"):
        gate_report.read(tmp_path / "g.json")


def test_the_table():
    checks = gate_report.parse(
        doc(checks=[CHECK, CHECK | {"scene": "mini_monaco", "value": 1, "passed": False}], verdict="fail")
    ).checks
    lines = gate_report.format_table(checks).splitlines()
    assert lines[0].split() == ["scene", "check", "threshold", "value", "verdict"]
    assert lines[-1] == "GATE FAIL: 1/2 checks passed on 2 scene(s)"


def test_the_reader_imports_nothing_heavy():
    """The car image has no OpenCV (and no TensorFlow): reading a report must not need them."""
    code = (
        "import sys, pitlane.gate_report; "
        "heavy = [m for m in ('cv2', 'tensorflow', 'numpy', 'pitlane.twin', 'pitlane.evaluate') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
