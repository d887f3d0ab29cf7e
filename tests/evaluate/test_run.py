"""Closed-loop driving in the twin: each way an episode ends, and the report + plots it leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pitlane.errors import UserError
from pitlane.evaluate.plots import TIMESERIES_PNG, TRAJECTORY_PNG, write_plots
from pitlane.evaluate.report import EvalParams, ModelInfo, Trace, load_report, summarize, write_report
from pitlane.evaluate.run import drive
from pitlane.pilots.expert import ExpertDriver
from pitlane.twin.sim import Sim


def expert_pilot(sim: Sim):
    """A pilot that ignores the frame and drives from the twin's ground truth (no TensorFlow needed)."""
    driver = ExpertDriver(sim.track)

    def pilot(frame: np.ndarray) -> tuple[float, float]:
        assert frame.shape == (120, 160, 3)
        label, _ = driver.act(sim.telemetry)
        return label.steering, label.throttle

    return pilot


def test_expert_completes_the_laps():
    sim = Sim("generated_track")
    ep = drive(expert_pilot(sim), sim, EvalParams(laps=1))
    assert ep.end_reason == "laps_completed" and ep.laps_completed == 1
    assert len(ep.trace.lap_times_s) == 1 and 5.0 < ep.trace.lap_times_s[0] < 60.0
    assert max(abs(c) for c in ep.trace.cte_m) < 0.3
    assert ep.trace.off_track_s == []


def test_hard_left_leaves_the_track():
    sim = Sim("generated_track")
    ep = drive(lambda frame: (-1.0, 0.5), sim, EvalParams(laps=3))
    assert ep.end_reason == "off_track" and ep.laps_completed == 0
    assert len(ep.trace.off_track_s) == 1
    assert abs(ep.trace.cte_m[-1]) > 0.5 * sim.track.width_m


def test_standing_still_hits_the_time_limit(capsys):
    sim = Sim("generated_track")
    ep = drive(lambda frame: (0.0, 0.0), sim, EvalParams(laps=1, max_seconds=2.0, progress=True))
    assert "generated_track: 0.0/1 laps" in capsys.readouterr().err
    assert ep.end_reason == "time_limit"
    assert ep.trace.time_s[-1] == pytest.approx(2.0)
    assert len(ep.trace.time_s) == 40  # 2 s at 20 Hz


def test_nan_outputs_are_driven_as_a_stop_and_counted():
    sim = Sim("generated_track")
    ep = drive(lambda frame: (float("nan"), float("nan")), sim, EvalParams(laps=1, max_seconds=1.0))
    assert ep.end_reason == "time_limit" and ep.trace.steering[0] == 0.0
    assert len(ep.trace.nonfinite_s) == 20 and max(ep.trace.speed_mps) == 0.0


def test_a_pilot_nan_on_a_few_frames_is_counted_in_the_report():
    calls = iter(range(10**6))

    def pilot(frame):
        n = next(calls)
        return (float("inf"), 0.3) if n % 25 == 0 else (0.0, 0.3)

    sim = Sim("generated_track")
    params = EvalParams(laps=1, max_seconds=2.0)
    report = summarize(drive(pilot, sim, params), sim.track, ModelInfo("m"), params)
    assert report.nonfinite_outputs == 2  # steps 0 and 25 of 40


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"laps": 1_000_000_000}, "laps must be between 1 and 100"),
        ({"seed": -1}, "seed must be between"),
    ],
)
def test_run_time_is_bounded_with_a_clear_message(kwargs, message):
    with pytest.raises(UserError, match=message):
        EvalParams(**kwargs)


def test_an_evaluation_longer_than_an_hour_is_refused():
    from pitlane.evaluate.run import evaluate
    from pitlane.pilots.expert import ExpertPilot

    with pytest.raises(UserError, match="max seconds must be <= 3600"):
        evaluate(ExpertPilot(), params=EvalParams(max_seconds=1e9))


def test_derived_time_limit_scales_with_laps():
    assert EvalParams(laps=2).time_limit_s(30.0) > EvalParams(laps=1).time_limit_s(30.0)
    assert EvalParams(laps=2, max_seconds=7.0).time_limit_s(30.0) == 7.0


@pytest.mark.slow
def test_report_fields_and_plots(tmp_path):
    sim = Sim("mini_monaco")
    ep = drive(expert_pilot(sim), sim, EvalParams(laps=1))
    report = summarize(ep, sim.track, ModelInfo("expert", "sha256:0", "expert"), EvalParams(laps=1))
    plots = write_plots(sim.track, ep.trace, report, tmp_path)
    write_report(report, tmp_path, ep.trace)
    data = json.loads((tmp_path / "report.json").read_text())
    for key in (
        "laps_completed",
        "laps_requested",
        "lap_times",
        "mean_abs_cte",
        "max_abs_cte",
        "off_track_events",
        "mean_speed",
        "steps",
        "wall_seconds",
        "end_reason",
        "scene",
        "model_digest",
    ):
        assert key in data
    assert data["laps_completed"] == 1 and data["end_reason"] == "laps_completed"
    assert data["steps"] == len(ep.trace.time_s)
    assert 0 < data["mean_abs_cte"] <= data["max_abs_cte"] < 0.3
    assert 0.5 < data["mean_speed"] < 3.0
    assert data["progress_m"] >= sim.track.length_m
    assert load_report(tmp_path) == report
    assert Trace.load(tmp_path / "trace.npz").cte_m == pytest.approx(ep.trace.cte_m)
    assert plots == [TRAJECTORY_PNG, TIMESERIES_PNG]
    for name in plots:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / name).stat().st_size > 20_000
