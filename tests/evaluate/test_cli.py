"""`pitlane evaluate` and `pitlane gate` as a user runs them: the expert with a policy, exit codes, and the
mistakes found before any model loads."""

from __future__ import annotations

import json

from pitlane.cli import main


def test_the_expert_checked_against_a_policy_writes_the_verdict(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_laps_completed: 0\nmin_mean_speed: 0.5\nmax_abs_cte: 0.45\n")
    args = ["evaluate", "--pilot", "expert", "--laps", "1", "--max-seconds", "3", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "r"), "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "report: " in out and "GATE PASS" in out
    gate = json.loads((tmp_path / "r" / "gate.json").read_text())
    assert gate["verdict"] == "pass" and gate["model"] == "expert" and gate["model_digest"] == ""
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["model"] == "expert" and report["model_type"] == "expert"


def test_a_failing_policy_exits_1(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_laps_completed: 1\n")  # 2 s of driving: no lap
    args = ["evaluate", "--pilot", "expert", "--laps", "1", "--max-seconds", "2", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "r"), "--policy", str(policy)]) == 1
    assert "GATE FAIL" in capsys.readouterr().out


def test_mistakes_are_found_before_a_model_loads(tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3 not a real model")  # would fail to load: never reached
    policy = tmp_path / "policy.yaml"
    policy.write_text("scenes: [moon]\n")
    assert main(["gate", "--model", str(model), "--out", str(tmp_path / "g"), "--policy", str(policy)]) == 2
    assert "unknown scene 'moon'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(model), "--out", str(tmp_path / "e"), "--laps", "0"]) == 2
    assert "--laps must be >= 1" in capsys.readouterr().err
    assert main(["evaluate", str(model), "--model", str(model), "--out", str(tmp_path / "e")]) == 2
    assert "two models given" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(tmp_path / "e")]) == 2
    assert "no model given" in capsys.readouterr().err
