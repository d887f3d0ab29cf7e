"""The release's words, from what the pipeline's tasks left in the workspace (pure, no network)."""

from __future__ import annotations

import json

from pitlane.gate_report import SCHEMA
from pitlane.release.notes import gate_lines, pull_request_text, release_text

DIGEST = "sha256:" + "cd" * 32


def write(workspace, rel: str, text: str) -> None:
    path = workspace / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_gate_table_is_drawn_from_gate_json_when_the_gate_printed_none(tmp_path):
    assert gate_lines(tmp_path) == ["The gate did not run."]
    check = {"scene": "generated_track", "metric": "laps_completed", "op": ">=", "threshold": 3, "value": 1}
    report = {
        "schema": SCHEMA,
        "verdict": "fail",
        "model_digest": DIGEST,
        "checks": [check | {"passed": False}],
        "reports": {"generated_track": {}},
    }
    write(tmp_path, "gate/gate.json", json.dumps(report))
    lines = gate_lines(tmp_path)
    assert lines[0] == lines[-1] == "```"
    assert "laps_completed >=" in lines[1] and "FAIL" in lines[1]
    assert lines[1].splitlines()[-1] == "GATE FAIL: 0/1 checks passed on 1 scene(s)"
    write(tmp_path, "gate/verdict.txt", "as the gate printed it\n")
    assert gate_lines(tmp_path) == ["```", "as the gate printed it", "```"]


def test_an_unreadable_gate_report_is_said_not_hidden(tmp_path):
    write(tmp_path, "gate/gate.json", json.dumps({"verdict": "pass"}))
    (line,) = gate_lines(tmp_path)
    assert "unreadable" in line and "no verdict/model_digest" in line


def test_release_and_pull_request_text(tmp_path):
    write(tmp_path, "release/plan.json", json.dumps({"model": f"reg.io/m@{DIGEST}", "code_changed": False}))
    write(tmp_path, "images/car.ref", f"reg.io/pitlane/car@{DIGEST}\n")
    text = release_text("v1.2.0", "Succeeded", {"gate-model": "Succeeded", "build-car": "None"}, tmp_path)
    assert text.title == "v1.2.0" and not text.draft
    assert f"- Model: `reg.io/m@{DIGEST}`" in text.body and "model-only release" in text.body
    assert "- build-car: Skipped" in text.body
    pr = pull_request_text("v1.2.0", tmp_path)
    assert f"- Image car: `reg.io/pitlane/car@{DIGEST}`" in pr.body
