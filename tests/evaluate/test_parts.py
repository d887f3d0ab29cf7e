"""The gate in parts (one CI job each, a Tekton matrix): the parts' summaries aggregate to the serial gate's
verdict and gate.json, fit a Tekton result, and are refused when they are not one gate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.evaluate.gate import GatePolicy, GateResult, gate_result, run_gate, write_gate
from pitlane.evaluate.parts import (
    RESULT_BUDGET,
    RESULT_LIMIT,
    aggregate,
    dumps,
    load_summary,
    policy_digest,
    result_size,
    summary,
    write_summary,
)
from pitlane.pilots.expert import ExpertPilot
from tests.evaluate.report_trees import assert_same_tree
from tests.evaluate.test_gate import make_report

SPREAD = GatePolicy(
    scenes=("generated_track", "mini_monaco"),
    laps=1,
    max_seconds=1.0,
    seeds=(0, 1),
    direction="both",
    min_laps_completed=0,
    min_mean_speed=0.5,
    min_completion_rate=0.5,
)


def test_the_parts_of_a_gate_are_its_scenes_and_directions():
    assert GatePolicy().parts() == ["generated_track", "mini_monaco"]
    assert SPREAD.parts() == [f"{s}:{d}" for s in SPREAD.scenes for d in ("ccw", "cw")]
    runs = SPREAD.part_runs("mini_monaco:cw")
    assert [(scene, p.run_name) for scene, p in runs] == [
        ("mini_monaco", "cw-seed0"),
        ("mini_monaco", "cw-seed1"),
    ]
    assert len(SPREAD.part_runs("mini_monaco")) == 4  # a scene alone: all its directions
    assert len(SPREAD.part_runs(None)) == 8
    for bad in ("moon:cw", "mini_monaco:up", "mini_monaco:"):
        with pytest.raises(UserError, match="is not a part of this gate; its parts: generated_track:ccw"):
            SPREAD.part_runs(bad)
    with pytest.raises(UserError, match="its parts: generated_track, mini_monaco"):
        GatePolicy().part_runs("mini_monaco:cw")  # the default gate drives each track's own order


def _parts(tmp_path, policy: GatePolicy) -> list[dict]:
    """Every part driven on its own into tmp/parts, its summary handed on as a file or as JSON text."""
    docs = []
    for i, part in enumerate(policy.parts()):
        result = run_gate(ExpertPilot(), policy, tmp_path / "parts", plots=False, only=part)
        assert {r.scene for r in result.reports} == {part.split(":")[0]}
        if i % 2:
            path = tmp_path / "summaries" / f"{i}.json"
            assert write_summary(summary(result, part), path) < RESULT_LIMIT
            docs.append(load_summary(str(path)))
        else:
            docs.append(load_summary(dumps(summary(result, part))))
    return docs


def test_the_parts_aggregate_to_the_serial_gate(tmp_path):
    serial = run_gate(ExpertPilot(), SPREAD, tmp_path / "serial", plots=False)
    docs = _parts(tmp_path, SPREAD)
    assert not (tmp_path / "parts" / "gate.json").exists()  # a part gives no verdict
    result = aggregate(docs, SPREAD)
    write_gate(result, tmp_path / "parts")
    assert result.checks == serial.checks and result.passed == serial.passed
    assert [c.metric for c in result.checks].count("completion_rate") == 2  # over each scene's 4 runs
    assert [replace(r, wall_seconds=0) for r in result.reports] == [
        replace(r, wall_seconds=0) for r in serial.reports
    ]
    # gate.json byte for byte but wall_seconds, runs.json byte for byte, every run's report and trace
    assert assert_same_tree(tmp_path / "serial", tmp_path / "parts") == 8 * 2 + 2 + 1
    assert aggregate(docs[::-1], SPREAD).to_json()["checks"] == serial.to_json()["checks"]  # any order


def test_aggregate_refuses_what_is_not_one_gate(tmp_path):
    docs = _parts(tmp_path, SPREAD)
    with pytest.raises(UserError, match="no summary holds run.s. mini_monaco cw-seed0, mini_monaco cw-seed1"):
        aggregate(docs[:-1], SPREAD)
    with pytest.raises(UserError, match="'generated_track ccw-seed0' is in two summaries"):
        aggregate([*docs, docs[0]], SPREAD)
    with pytest.raises(UserError, match="was driven under another policy"):
        aggregate(docs, replace(SPREAD, max_abs_cte=0.3))
    other = dict(docs[0], model="other.tflite", model_digest="sha256:" + "1" * 64)
    with pytest.raises(UserError, match="the summaries gate different models"):
        aggregate([other, *docs[1:]], SPREAD)
    with pytest.raises(UserError, match="no summaries"):
        aggregate([], SPREAD)
    with pytest.raises(UserError, match="its reports do not decode"):
        aggregate([dict(docs[0], reports_gz="bm90IGd6aXA="), *docs[1:]], SPREAD)
    (tmp_path / "gate.json").write_text(json.dumps({"verdict": "pass"}))
    for source, message in [
        (str(tmp_path / "gate.json"), "is not a gate part's summary"),
        (str(tmp_path / "none.json"), "does not exist"),
        ("{not json", "is not JSON"),
    ]:
        with pytest.raises(UserError, match=message):
            load_summary(source)


def test_a_part_summary_fits_a_tekton_result():
    """Ten runs of ten laps each in one part (a generous spread) stay well under 4 KiB."""
    policy = GatePolicy(scenes=("mini_monaco",), laps=10, seeds=tuple(range(5)), direction="both")
    reports = [
        make_report(
            scene="mini_monaco",
            model_digest="sha256:" + "ab" * 32,
            laps_requested=10,
            laps_completed=10,
            lap_times=[20.6 + 0.013 * (i * 10 + k) for k in range(10)],
            mean_abs_cte=0.03 + 0.001 * i,
            direction="cw",
            seed=i,
            run=f"cw-seed{i}",
            plots=["trajectory.png", "cte_speed.png"],
        )
        for i in range(10)
    ]
    result = gate_result("pilot.tflite", "sha256:" + "ab" * 32, policy, reports, 123.4)
    text = dumps(summary(result, "mini_monaco:cw"))
    assert len(text.encode()) < RESULT_LIMIT / 2, len(text)
    assert result_size(text) < RESULT_BUDGET / 2
    doc = json.loads(text)
    assert doc["policy_digest"] == policy_digest(policy) and doc["checks_failed"] == 0
    assert doc["runs"][0] == "mini_monaco cw-seed0" and doc["checks"] == len(result.checks)


def test_a_whole_gate_summary_aggregates_alone(tmp_path):
    result = run_gate(ExpertPilot(), SPREAD, tmp_path / "serial", plots=False)
    again = aggregate([load_summary(dumps(summary(result, None)))], SPREAD)
    assert isinstance(again, GateResult) and again.to_json()["checks"] == result.to_json()["checks"]


@pytest.mark.slow
def test_the_cli_gate_in_parts_gives_the_serial_verdict_and_gate_json(models, tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "scenes: [generated_track, mini_monaco]\nlaps: 1\nmax_seconds: 1.0\ndirection: both\n"
        "min_laps_completed: 0\nmin_mean_speed: 0.5\n"
    )
    model = ["--model", str(models["a"]), "--policy", str(policy)]
    serial = main(["gate", *model, "--out", str(tmp_path / "serial"), "--executor", "serial"])
    table = capsys.readouterr().out
    assert main(["gate", "parts", "--policy", str(policy)]) == 0
    parts = json.loads(capsys.readouterr().out)
    assert parts == ["generated_track:ccw", "generated_track:cw", "mini_monaco:ccw", "mini_monaco:cw"]
    summaries = []
    for i, part in enumerate(parts):
        out = str(tmp_path / "summaries" / f"{i}.json")
        argv = ["gate", *model, "--out", str(tmp_path / "parts"), "--only", part, "--summary-out", out]
        assert main(argv) == 0  # a part's own checks may fail: the verdict is the aggregate's
        assert f"PART {part}:" in capsys.readouterr().out
        summaries.append(out)
    summaries[0] = (tmp_path / "summaries" / "0.json").read_text()  # a Tekton result: the JSON text itself
    code = main(["gate", "aggregate", *summaries, "--policy", str(policy), "--out", str(tmp_path / "parts")])
    assert (code, capsys.readouterr().out) == (serial, table)
    assert assert_same_tree(tmp_path / "serial", tmp_path / "parts") == 4 * 4 + 2 + 1


def test_the_result_budget_is_the_one_the_gate_part_task_enforces():
    """`pitlane gate --summary-out`'s note and the Task's refusal count the same bytes against the same budget."""
    script = (Path(__file__).parents[2] / "pipelines" / "task-gate-part.yaml").read_text()
    assert f"limit={RESULT_BUDGET}" in script
    assert result_size('{"a":"b\\"}') == len('{"a":"b\\"}') + 4 + 1  # four quotes and a backslash escaped
