"""Gate policies: parsing (and refusing unknown keys), checks both ways, the verdict table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitlane.errors import UserError
from pitlane.evaluate.gate import GatePolicy, check, format_table, load_policy
from pitlane.evaluate.report import Report


def make_report(**changes) -> Report:
    base: dict[str, Any] = dict(
        scene="generated_track",
        model="pilot.tflite",
        model_digest="sha256:00",
        laps_requested=3,
        laps_completed=3,
        lap_times=[16.4, 16.3, 16.3],
        mean_abs_cte=0.03,
        max_abs_cte=0.09,
        off_track_events=0,
        mean_speed=2.0,
        steps=1000,
        sim_seconds=50.0,
        wall_seconds=3.0,
        end_reason="laps_completed",
        seed=0,
        control_hz=20.0,
        track_length_m=33.8,
        track_width_m=1.0,
        progress_m=101.4,
    )
    base.update(changes)
    return Report(**base)


def test_default_policy_is_shipped_and_valid():
    policy = load_policy()
    assert policy.scenes == ("generated_track", "mini_monaco")
    assert policy.min_laps_completed == policy.laps == 3
    assert policy.max_off_track_events == 0


def test_default_policy_scenes_are_the_recipes_training_scenes():
    from pitlane.orchestration.recipe import DEFAULT_SCENES

    assert load_policy().scenes == tuple(DEFAULT_SCENES)


def test_good_report_passes_every_check():
    checks = check(make_report(), load_policy())
    assert checks and all(c.passed for c in checks)
    assert {c.metric for c in checks} == {
        "laps_completed",
        "max_abs_cte",
        "off_track_events",
        "mean_speed",
        "nonfinite_outputs",
    }


@pytest.mark.parametrize(
    "changes, failing",
    [
        (
            dict(laps_completed=2, end_reason="off_track", off_track_events=1),
            {"laps_completed", "off_track_events"},
        ),
        (dict(max_abs_cte=0.6), {"max_abs_cte"}),
        (dict(mean_speed=0.2), {"mean_speed"}),
        (dict(max_abs_cte=float("nan")), {"max_abs_cte"}),
    ],
)
def test_bad_reports_fail_the_named_checks(changes, failing):
    checks = check(make_report(**changes), load_policy())
    assert {c.metric for c in checks if not c.passed} == failing


def test_policy_files_yaml_and_json(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text(
        "scenes: [warehouse]\nlaps: 1\nmin_laps_completed: 1\nmax_abs_cte: 0.3\nmin_mean_speed: null\n"
    )
    policy = load_policy(y)
    assert policy.scenes == ("warehouse",) and policy.min_mean_speed is None
    assert "mean_speed" not in {c.metric for c in check(make_report(), policy)}
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"scenes": "mini_monaco", "max_mean_abs_cte": 0.01}))
    policy = load_policy(j)
    assert policy.scenes == ("mini_monaco",)
    assert [c.passed for c in check(make_report(), policy) if c.metric == "mean_abs_cte"] == [False]


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_cte: 0.3\nlaps: 2\n", r"unknown key\(s\) max_cte; known keys: scenes"),
        ("scenes: []\n", "scenes must be a non-empty list"),
        ("laps: 0\n", "laps must be an integer between 1 and 100"),
        ("laps: 1000000000\n", "laps must be an integer between 1 and 100"),
        ("laps: true\n", "laps must be an integer"),
        ("seed: -1\n", "seed must be an integer between 0 and 4294967295"),
        ("max_abs_cte: wide\n", "max_abs_cte must be a number >= 0"),
        ("max_abs_cte: -0.1\n", "max_abs_cte must be a number >= 0"),
        ("max_abs_cte: .nan\n", "max_abs_cte must be a number >= 0"),
        ("min_mean_speed: -1\n", "min_mean_speed must be a number >= 0"),
        ("max_mean_abs_cte: -1\n", "max_mean_abs_cte must be a number >= 0"),
        ("max_off_track_events: -1\n", "max_off_track_events must be an integer >= 0"),
        ("max_nonfinite_outputs: -1\n", "max_nonfinite_outputs must be an integer >= 0"),
        ("max_nonfinite_outputs: 0.5\n", "max_nonfinite_outputs must be an integer >= 0"),
        ("min_laps_completed: -3\n", "min_laps_completed must be an integer between 0 and 3"),
        ("laps: 1\nmin_laps_completed: 2\n", "min_laps_completed must be an integer between 0 and 1"),
        ("max_seconds: 0\n", "max_seconds must be a number > 0 and <= 3600"),
        ("max_seconds: 1e9\n", "max_seconds must be a number > 0 and <= 3600"),
        ("scenes: [a, a]\n", "listed twice"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- just\n- a list\n", "mapping"),
        ("scenes: [unclosed\n", "not valid YAML/JSON"),
    ],
)
def test_bad_policies_are_named(text, message, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        load_policy(path)
    assert "policy.yaml" in str(err.value)


def test_missing_policy_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_verdict_table():
    policy = GatePolicy(scenes=("generated_track", "mini_monaco"))
    checks = check(make_report(), policy) + check(make_report(scene="mini_monaco", max_abs_cte=0.7), policy)
    table = format_table(checks)
    lines = table.splitlines()
    assert lines[0].split() == ["scene", "check", "threshold", "value", "verdict"]
    assert any("mini_monaco" in line and "max_abs_cte <=" in line and "FAIL" in line for line in lines)
    assert lines[-1].startswith("GATE FAIL: 9/10 checks passed on 2 scene(s)")
    assert format_table(check(make_report(), policy)).splitlines()[-1].startswith("GATE PASS")


def test_default_policy_fails_a_model_with_one_nonfinite_output():
    policy = load_policy()
    assert policy.max_nonfinite_outputs == 0
    failing = [c for c in check(make_report(nonfinite_outputs=1), policy) if not c.passed]
    assert [(c.metric, c.value) for c in failing] == [("nonfinite_outputs", 1.0)]
    assert all(c.passed for c in check(make_report(), policy))


def test_a_scene_given_as_a_path_gets_a_report_folder_inside_report():
    policy = GatePolicy(scenes=("../../../etc/track.json", "/abs/track.json", "mini_monaco", ".."))
    dirs = policy.scene_dirs()
    assert dirs == {
        "../../../etc/track.json": "track",
        "/abs/track.json": "track-1",
        "mini_monaco": "mini_monaco",
        "..": "scene3",
    }
    assert all("/" not in d and not d.startswith(".") for d in dirs.values())
