"""The release's gate as written (pipelines/task-gate-*.yaml, wired as in pipelines/pipeline.yaml: gate-parts
-> gate-part with a matrix -> gate-model) run by the local runner against a real registry and a tiny real
model: the parts aggregate to the serial gate's verdict and gate.json, a summary over Tekton's result
limit is refused in one line, and a part that cannot be driven fails the fan-out before any verdict."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from model_support import write_gate_report

from pitlane.evaluate.gate import GatePolicy
from pitlane.release import tekton
from pitlane.release.local import FAILED, SKIPPED, SUCCEEDED, LocalRun, Secrets

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = tekton.load(ROOT / "pipelines")
PITLANE = [sys.executable, "-m", "pitlane.cli"]
TOOLS = "registry.invalid/pitlane/tools@sha256:" + "0" * 64
LAX = {"laps": 1, "max_seconds": 2.0, "min_laps_completed": 0, "max_abs_cte": None,
       "max_off_track_events": None, "min_mean_speed": None}  # fmt: skip


@pytest.fixture(scope="module")
def candidate(registry, models, tmp_path_factory) -> str:
    gate = write_gate_report(models["a"], tmp_path_factory.mktemp("gate") / "gate.json")
    proc = subprocess.run([*PITLANE, "model", "push", str(models["a"]), "--gate", str(gate),
                           "--to", f"{registry.host}/pitlane/gate-matrix"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return proc.stdout.strip().splitlines()[-1]


def gate_pipeline(parts: list[str] | None = None) -> dict[str, Any]:
    """The release Pipeline's three gate tasks, the candidate and policy as params instead of fetch-source's
    results (and, given `parts`, those as the matrix's values instead of gate-parts')."""
    release = OBJECTS.get("Pipeline", "pitlane-release")
    tasks = [t for t in release["spec"]["tasks"] if t["name"] in ("gate-parts", "gate-part", "gate-model")]
    text = json.dumps(tasks).replace("$(tasks.fetch-source.results.model)", "$(params.model)")
    tasks = json.loads(text.replace("$(tasks.fetch-source.results.gate-policy)", "$(params.policy)"))
    if parts is not None:
        tasks[1]["matrix"]["params"][0]["value"] = parts
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "gate"},
        "spec": {
            "params": [{"name": n, "type": "string"} for n in ("model", "policy", "tools-image")],
            "workspaces": [{"name": "source"}],
            "tasks": tasks,
        },
    }


def run_gate(tmp_path: Path, model: str, policy: GatePolicy, parts: list[str] | None = None):
    objects = tekton.Objects((*OBJECTS.docs, gate_pipeline(parts)))
    assert tekton.check_all(objects) == []
    lines: list[str] = []
    params = {"model": model, "policy": json.dumps(policy.to_json()), "tools-image": TOOLS}
    source = {"source": {"name": "source", "folder": str(tmp_path / "source")}}
    runner = LocalRun(objects, "gate", params, source, tmp_path / "run", Secrets(None), echo=lines.append)
    return runner.run(), "\n".join(lines)


def without_wall_seconds(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: without_wall_seconds(v) for k, v in doc.items() if k != "wall_seconds"}
    if isinstance(doc, list):
        return [without_wall_seconds(v) for v in doc]
    return doc


def test_the_parts_aggregate_to_the_serial_gate(tmp_path, candidate):
    policy = GatePolicy(scenes=("generated_track",), direction="both", **LAX)  # type: ignore[arg-type]
    outcome, log = run_gate(tmp_path, candidate, policy)
    assert outcome.status == SUCCEEDED, log
    assert outcome.task("gate-parts").results["parts"] == '["generated_track:ccw", "generated_track:cw"]'
    assert outcome.task("gate-part").matrix == ["part=generated_track:ccw", "part=generated_track:cw"]
    summaries = json.loads(outcome.task("gate-part").results["summary"])
    assert [json.loads(s)["part"] for s in summaries] == ["generated_track:ccw", "generated_track:cw"]
    assert all(tekton.stored_size({"summary": s}) < tekton.RESULT_LIMIT for s in summaries)
    gate = tmp_path / "source" / "gate"
    results = outcome.task("gate-model").results
    assert results["passed"] == "true"
    assert (
        results["report-digest"] == "sha256:" + hashlib.sha256((gate / "gate.json").read_bytes()).hexdigest()
    )
    assert "PASS" in (gate / "verdict.txt").read_text().upper()
    model = tmp_path / "source" / "candidate" / "pilot.tflite"
    (tmp_path / "policy.json").write_text(json.dumps(policy.to_json()))
    subprocess.run([*PITLANE, "gate", "--model", str(model), "--policy", str(tmp_path / "policy.json"),
                    "--out", str(tmp_path / "serial"), "--no-plots"], check=True, capture_output=True)  # fmt: skip
    serial = json.loads((tmp_path / "serial" / "gate.json").read_text())
    aggregated = json.loads((gate / "gate.json").read_text())
    assert len(aggregated["reports"]) == 2
    assert without_wall_seconds(aggregated) == without_wall_seconds(serial)


def test_a_summary_over_the_result_limit_is_refused_in_one_line(tmp_path, candidate):
    """150 seeds in one part: its summary would not fit a Tekton result, so the part fails, naming its size
    and what to do; nothing is cut and no verdict is given."""
    lax = {**LAX, "max_seconds": 0.1}
    policy = GatePolicy(scenes=("generated_track",), direction="cw", seeds=tuple(range(150)), **lax)  # type: ignore[arg-type]
    outcome, log = run_gate(tmp_path, candidate, policy)
    assert outcome.status == FAILED
    assert outcome.task("gate-part").reason == "gate-part-0 (part=generated_track:cw): step drive exited 1"
    (line,) = [ln for ln in log.splitlines() if "its summary is" in ln]
    assert line.startswith("[gate-part-0 : drive] gate part generated_track:cw: its summary is ")
    assert line.endswith(
        "over the 3968 a TaskRun's result may take: give the gate policy fewer seeds (one run each in every part)"
    )
    assert outcome.task("gate-model").status == SKIPPED and not (tmp_path / "source" / "gate").exists()


def test_a_part_that_cannot_be_driven_fails_the_gate_before_any_verdict(tmp_path, candidate):
    marker = tmp_path / "PWNED"
    policy = GatePolicy(scenes=("generated_track",), **LAX)  # type: ignore[arg-type]
    outcome, log = run_gate(tmp_path, candidate, policy, parts=["generated_track", f"moon$(touch {marker})"])
    assert outcome.status == FAILED
    part = outcome.task("gate-part")
    assert part.matrix == ["part=generated_track", f"part=moon$(touch {marker})"]
    assert part.reason == f"gate-part-1 (part=moon$(touch {marker})): step drive exited 2"
    assert f"--only 'moon$(touch {marker})' is not a part of this gate; its parts: generated_track" in log
    assert "PART generated_track: " in log  # the other part was driven
    assert outcome.task("gate-model").status == SKIPPED and not (tmp_path / "source" / "gate").exists()
    assert not marker.exists()
