"""The report of an evaluation (and of a car run): metrics from a hand-made trace (pure), run names, the
report.json round trip, and one clear error for a file that is not a report."""

from __future__ import annotations

import json

import pytest

from pitlane.errors import UserError
from pitlane.evaluate.report import (
    END_LAPS,
    REPORT_FILE,
    SCHEMA,
    TRACE_FILE,
    CarRun,
    Episode,
    EvalParams,
    ModelInfo,
    Report,
    Trace,
    load_report,
    summarize,
    write_report,
)
from pitlane.twin.scenes import load_scene

TRACK = load_scene("generated_track")


def trace() -> Trace:
    t = Trace()
    for i, cte in enumerate((0.1, -0.3, 0.2, -0.4)):
        t.append(0.05 * (i + 1), float(i), 0.0, cte, 1.0 + i, 0.0, 0.5)
    t.lap_times_s.append(12.3456)
    t.nonfinite_s.append(0.2)
    return t


def test_summarize_is_the_metrics_of_the_trace():
    ep = Episode(
        trace(), laps_completed=1, end_reason=END_LAPS, progress_m=30.0, wall_seconds=0.5, start_s_m=2.0
    )
    r = summarize(ep, TRACK, ModelInfo("pilot.tflite", "sha256:ab", "linear"), EvalParams(laps=2, seed=3))
    assert (r.scene, r.model, r.model_digest, r.model_type) == (
        TRACK.name,
        "pilot.tflite",
        "sha256:ab",
        "linear",
    )
    assert (r.laps_requested, r.laps_completed, r.lap_times) == (2, 1, [12.346])
    assert r.steps == 4 and r.sim_seconds == 0.2 and r.mean_speed == 2.5
    assert (r.mean_abs_cte, r.max_abs_cte) == (0.25, 0.4)  # |CTE|: either side of the line counts
    assert r.nonfinite_outputs == 1 and r.off_track_events == 0 and r.seed == 3 and r.start_s_m == 2.0
    assert r.schema == SCHEMA and r.car is None and r.run == ""


def test_a_car_run_asks_for_no_laps_and_keeps_its_car_block():
    car = CarRun("twin", "local", 100, 19.8, [], {}, 0, None, 0, 8887)
    ep = Episode(Trace(), 0, "time_limit", None, 5.0)
    r = summarize(ep, TRACK, ModelInfo(""), EvalParams(laps=1), scene="mine", car=car)
    assert r.laps_requested == 0 and r.car == car and r.scene == "mine" and r.progress_m is None
    assert r.mean_abs_cte == 0.0 and r.steps == 0
    with pytest.raises(ValueError, match="unknown end reason"):
        summarize(Episode(Trace(), 0, "tired", None, 1.0), TRACK, ModelInfo(""), EvalParams())


def test_run_names_say_the_conditions():
    assert EvalParams().run_name == "fwd-seed0"
    assert EvalParams(seed=4, direction="cw", random_start=True, randomize=True).run_name == "cw-seed4-rs-dr"
    with pytest.raises(UserError, match="direction must be one of"):
        EvalParams(direction="sideways")


def test_report_and_trace_round_trip(tmp_path):
    car = CarRun(
        "twin", "local", 10, 20.0, [{"reason": "stale_frame", "time": 1.0}], {"stale_frame": 1}, 0, "t", 9, 0
    )
    ep = Episode(trace(), 1, END_LAPS, 30.0, 0.5)
    report = summarize(ep, TRACK, ModelInfo("m"), EvalParams(), car=car)
    path = write_report(report, tmp_path / "r", ep.trace)
    assert path == tmp_path / "r" / REPORT_FILE and not list((tmp_path / "r").glob("*.tmp"))
    assert load_report(tmp_path / "r") == load_report(path) == report
    back = Trace.load(tmp_path / "r" / TRACE_FILE)
    assert back.lap_times_s == ep.trace.lap_times_s and len(back.cte_m) == 4
    data = json.loads(path.read_text())
    data["added_by_a_newer_pitlane"] = True
    assert Report.from_json(data) == report


def test_a_file_that_is_not_a_report_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no evaluation report at"):
        load_report(tmp_path)
    (tmp_path / REPORT_FILE).write_text('{"scene": "x"}')
    with pytest.raises(UserError, match="is not a pitlane evaluation report"):
        load_report(tmp_path)
