"""README's main command, `pitlane demo`, end to end on its embedded defaults (a few minutes on 2 cores)."""

from __future__ import annotations

import json

import pytest

from pitlane.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_loop_and_leaves_what_readme_promises(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--max-seconds", "25"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "GATE PASS" in printed

    for png in (
        "twin/camera.png",
        "twin/map.png",
        "twin/strip.png",
        "car/trajectory.png",
        "car/cte_speed.png",
        "recipe/gate/generated_track/trajectory.png",
        "recipe/gate/mini_monaco/cte_speed.png",
        "unseen/trajectory.png",
    ):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "recipe/model/pilot.tflite").stat().st_size > 0
    assert json.loads((out / "recipe/gate/gate.json").read_text())["verdict"] == "pass"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["gate"] == "pass"
    assert summary["car"]["laps_completed"] >= 1
    assert summary["car"]["loop_hz"] > 15
    # the car ran the signed bundle it pulled by digest, and refused the tampered copy while driving
    bundle = summary["model_bundle"]
    assert bundle["signed"] and bundle["verified"] and bundle["car_ran"] == bundle["reference"]
    assert bundle["tampered_refused"] and "signs another digest" in bundle["tampered_refusal"]
    status = json.loads((out / "car-model" / "status.json").read_text())
    assert status["digest"] == bundle["reference"].split("@")[1]

    # the tub the car app recorded is one `pitlane data check` accepts
    assert main(["data", "check", str(out / "car" / "tub")]) == 0
