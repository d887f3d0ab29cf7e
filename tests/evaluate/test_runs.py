"""Evaluation with spread: directions, random starts, seeds, randomised frames, the completion rate over runs
and the comparison with the expert. Tiny runs (a second or two of simulated time), the expert drives."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.run import evaluate, make_sim
from pitlane.evaluate.runs import (
    evaluate_runs,
    parse_seeds,
    run_params,
    summarize_runs,
)
from pitlane.pilots.expert import EXPERT, ExpertPilot
from tests.evaluate.test_gate import make_report

SCENE = "generated_track"


def test_cw_and_ccw_runs_start_facing_opposite_ways():
    ccw = make_sim(SCENE, EvalParams(direction="ccw")).telemetry
    cw = make_sim(SCENE, EvalParams(direction="cw")).telemetry
    assert (cw.x_m, cw.y_m) == pytest.approx((ccw.x_m, ccw.y_m))  # same start line
    assert abs(math.remainder(cw.yaw_rad - ccw.yaw_rad, 2 * math.pi)) == pytest.approx(math.pi, abs=0.05)
    assert make_sim(SCENE, EvalParams(direction="cw")).track.clockwise


def test_the_expert_drives_forward_either_way():
    for direction in ("ccw", "cw"):
        params = EvalParams(laps=1, max_seconds=3.0, direction=direction, plots=False)
        report = evaluate(ExpertPilot(), SCENE, params)
        assert report.direction == direction and report.model == EXPERT
        assert report.progress_m is not None and report.progress_m > 2.0  # along the direction asked
        assert report.off_track_events == 0


def test_random_start_differs_by_seed_and_repeats_for_a_seed():
    def start(seed: int) -> float:
        params = EvalParams(laps=1, max_seconds=0.5, random_start=True, seed=seed, plots=False)
        return evaluate(ExpertPilot(), SCENE, params).start_s_m

    assert start(1) == start(1)
    assert len({start(1), start(2), start(3)}) == 3
    assert evaluate(ExpertPilot(), SCENE, EvalParams(laps=1, max_seconds=0.5, plots=False)).start_s_m == 0.0


def test_a_random_start_still_counts_whole_laps_from_the_start_line():
    params = EvalParams(laps=1, random_start=True, seed=4, plots=False)
    report = evaluate(ExpertPilot(), SCENE, params)
    assert report.start_s_m > 1.0
    assert report.laps_completed == 1 and report.end_reason == "laps_completed"
    assert report.progress_m == pytest.approx(report.track_length_m, abs=0.2)  # ended at the line
    assert params.time_limit_s(30.0) > EvalParams(laps=1).time_limit_s(30.0)


def test_randomized_frames_depend_on_the_seed_only():
    def frame(seed: int, randomize: bool) -> np.ndarray:
        return make_sim(SCENE, EvalParams(seed=seed, randomize=randomize)).render()

    assert np.array_equal(frame(3, True), frame(3, True))
    assert not np.array_equal(frame(3, True), frame(4, True))
    assert not np.array_equal(frame(3, True), frame(3, False))


def test_runs_are_every_direction_and_seed():
    runs = run_params(EvalParams(laps=2), parse_seeds("2", 5), "both")
    assert [(r.direction, r.seed) for r in runs] == [("ccw", 5), ("ccw", 6), ("cw", 5), ("cw", 6)]
    assert len({r.run_name for r in runs}) == 4
    assert [r.seed for r in run_params(EvalParams(seed=9))] == [9]
    assert parse_seeds("3,7,11") == (3, 7, 11) and parse_seeds(None, 4) == (4,)
    for bad in ("0", "x", "1,1"):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_completion_rate_is_laps_done_over_laps_asked_over_all_runs():
    reports = [
        make_report(laps_requested=3, laps_completed=3, steps=300, mean_abs_cte=0.1, mean_speed=2.0),
        make_report(laps_requested=3, laps_completed=1, steps=100, mean_abs_cte=0.3, mean_speed=1.0),
        make_report(laps_requested=3, laps_completed=0, steps=100, mean_abs_cte=0.5, mean_speed=1.0),
    ]
    s = summarize_runs(reports)
    assert (s.runs, s.laps_requested, s.laps_completed, s.runs_completed) == (3, 9, 4, 1)
    assert s.completion_rate == pytest.approx(4 / 9, abs=1e-4)
    assert s.mean_abs_cte == pytest.approx((30 + 30 + 50) / 500)  # over every step
    assert s.mean_speed == pytest.approx((600 + 100 + 100) / 500)
    assert s.vs_expert is None
    expert = summarize_runs([make_report(mean_speed=2.0, mean_abs_cte=0.05)])
    vs = summarize_runs(reports, expert).vs_expert
    assert vs == {"speed_pct": 80.0, "mean_abs_cte_ratio": pytest.approx(4.4)}


def test_several_runs_write_a_report_each_and_the_summary(tmp_path):
    runs = run_params(EvalParams(laps=1, max_seconds=1.0, plots=False), (1, 2), "cw")
    s = evaluate_runs(ExpertPilot(), SCENE, runs, tmp_path)
    assert [r.run for r in s.reports] == ["cw-seed1", "cw-seed2"]
    for r in s.reports:
        assert (tmp_path / r.run / "report.json").is_file()
    data = json.loads((tmp_path / "runs.json").read_text())
    assert data["runs"] == 2 and data["laps_requested"] == 2 and data["completion_rate"] == 0.0
    assert [r["direction"] for r in data["reports"]] == ["cw", "cw"]


def test_one_run_writes_as_before(tmp_path):
    s = evaluate_runs(ExpertPilot(), SCENE, [EvalParams(laps=1, max_seconds=1.0, plots=False)], tmp_path)
    assert s.reports[0].run == "" and (tmp_path / "report.json").is_file()
    assert not (tmp_path / "runs.json").exists()


def test_cli_expert_pilot_over_seeds_and_directions(tmp_path, capsys):
    args = ["evaluate", "--pilot", "expert", "--out", str(tmp_path), "--laps", "1", "--max-seconds", "1"]
    code = main([*args, "--direction", "both", "--seeds", "2", "--random-start", "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ccw-seed0-rs" in out and "cw-seed1-rs" in out and "over 4 run(s)" in out
    assert json.loads((tmp_path / "runs.json").read_text())["runs"] == 4


def test_cli_refuses_a_model_with_the_expert_pilot(tmp_path, capsys):
    code = main(["evaluate", "m.tflite", "--pilot", "expert", "--out", str(tmp_path)])
    assert code == 2 and "leave out the model file" in capsys.readouterr().err


@pytest.mark.slow
def test_model_report_relative_to_the_expert(models, tmp_path, capsys):
    args = ["evaluate", "--model", str(models["a"]), "--out", str(tmp_path), "--laps", "1"]
    code = main([*args, "--max-seconds", "2", "--no-plots", "--vs-expert"])
    assert code == 0
    data = json.loads((tmp_path / "runs.json").read_text())
    assert data["expert"]["model"] == EXPERT and data["expert"]["mean_speed"] > 0.5
    vs = data["vs_expert"]
    assert vs["speed_pct"] == pytest.approx(100 * data["mean_speed"] / data["expert"]["mean_speed"], abs=0.1)
    assert (tmp_path / "expert" / "report.json").is_file() and (tmp_path / "report.json").is_file()
    assert "vs expert: speed" in capsys.readouterr().out


@pytest.mark.slow
def test_the_reports_name_the_bytes_that_drove(models, tmp_path):
    """The model's digest is taken once, when its pilot loads: every run's report names what drove, even if
    the file on disk changes meanwhile (no run hashes the path again)."""
    from pitlane.pilots.model import ModelPilot
    from pitlane.provenance import file_digest

    model = tmp_path / "pilot.tflite"
    shutil.copy(models["a"], model)  # a copy: the session's models are shared
    pilot = ModelPilot(model)
    loaded = file_digest(model)
    assert (pilot.name, pilot.digest) == ("pilot.tflite", loaded)
    model.write_bytes(b"\x1c\x00\x00\x00TFL3 replaced after loading")
    runs = run_params(EvalParams(laps=1, max_seconds=0.5, plots=False), (1, 2))
    s = evaluate_runs(pilot, SCENE, runs, tmp_path / "report")
    assert [(r.model, r.model_digest) for r in s.reports] == [("pilot.tflite", loaded)] * 2


def test_policy_spread_runs_every_seed_and_direction():
    from pitlane.evaluate.gate import GatePolicy, load_policy

    assert GatePolicy().run_params() == [replace(EvalParams(laps=3), plots=True)]  # one run, as before
    runs = GatePolicy(seeds=(1, 2), direction="both", random_start=True).run_params()
    assert len(runs) == 4 and all(r.random_start for r in runs)
    with pytest.raises(UserError, match="min_completion_rate"):
        GatePolicy(min_completion_rate=1.5)
    assert load_policy().min_completion_rate is None and load_policy().direction is None


@pytest.mark.slow
def test_a_gate_with_spread_checks_every_run_and_the_completion_rate(models, tmp_path):
    from pitlane.evaluate.gate import GatePolicy, run_gate
    from pitlane.pilots.model import ModelPilot
    from pitlane.provenance import file_digest

    policy = GatePolicy(
        scenes=(SCENE,),
        laps=1,
        max_seconds=1.0,
        seeds=(1, 2),
        direction="both",
        min_laps_completed=0,
        min_mean_speed=None,
        max_abs_cte=None,
        max_off_track_events=None,
        min_completion_rate=0.5,
    )
    result = run_gate(ModelPilot(models["a"]), policy, tmp_path, plots=False)
    assert len(result.reports) == 4
    assert result.model_digest == file_digest(models["a"]) and result.model == models["a"].name
    rate = [c for c in result.checks if c.metric == "completion_rate"]
    assert len(rate) == 1 and rate[0].value == 0.0 and not rate[0].passed  # 1 s: no lap, the gate fails
    data = json.loads((tmp_path / "gate.json").read_text())
    assert sorted(data["reports"]) == [f"{SCENE} {d}-seed{s}" for d in ("ccw", "cw") for s in (1, 2)]
    assert data["policy"]["seeds"] == [1, 2] and (tmp_path / SCENE / "runs.json").is_file()
