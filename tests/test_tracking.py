"""pitlane.tracking: training, the gate and a push land in one MLflow run per model (a real MLflow, SQLite store);
without MLFLOW_TRACKING_URI nothing is imported or written; a tracking server that is down never fails the work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pitlane import tracking
from pitlane.evaluate.gate import Check, GatePolicy, GateResult
from pitlane.provenance import RunRecord, file_digest


def _trained(folder: Path) -> tuple[RunRecord, Path]:
    """A run record as `pitlane train` writes it, with model files of its own bytes."""
    keras, tflite = folder / "pilot.keras", folder / "pilot.tflite"
    keras.write_bytes(b"keras model " + folder.name.encode())
    tflite.write_bytes(b"tflite model " + folder.name.encode())
    record = RunRecord(
        model_type="linear", model_path=str(keras), tflite_path=str(tflite), input_shape=(120, 160, 3), tubs=(),
        data_digest="sha256:" + "d" * 64, records_total=500, params={"epochs": 3, "overrides": {"MIN_DELTA": 0.1}},
        history={"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.2]}, epochs_run=3, best_val_loss=0.2,
        git_commit="abc", git_dirty=False, versions={}, timings_s={"train": 12.5}, created_at="2026-01-01T00:00:00+00:00",
        model_digest=file_digest(keras), tflite_digest=file_digest(tflite),
    )  # fmt: skip
    path = record.save(folder / "pilot.run.json")
    return record, path


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's local artifact root (./mlruns) lands here
    monkeypatch.setenv(tracking.TRACKING_ENV, f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    return tmp_path


def test_train_gate_and_push_are_one_run_of_the_model(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    record, record_path = _trained(tmp_path)
    run_id = tracking.log_training(record, record_path)
    assert run_id

    gate_dir = tmp_path / "gate"
    (gate_dir / "mini_monaco").mkdir(parents=True)
    (gate_dir / "mini_monaco" / "trajectory.png").write_bytes(b"\x89PNG plot")
    checks = (Check("mini_monaco", "laps_completed", ">=", 3, 3, True),
              Check("mini_monaco", "max_abs_cte", "<=", 0.45, 0.6, False))  # fmt: skip
    GateResult("pilot.tflite", record.tflite_digest, GatePolicy(), (), checks).save(gate_dir / "gate.json")
    assert record.tflite_path is not None
    assert (
        tracking.log_bundle(Path(record.tflite_path), "127.0.0.1:5000/models/pilot@sha256:" + "e" * 64)
        == run_id
    )

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["epochs"] == "3" and run.data.params["records_total"] == "500"
    assert [m.value for m in client.get_metric_history(run_id, "val_loss")] == [0.35, 0.25, 0.2]
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2]  # the curve, per epoch
    assert run.data.metrics["gate_passed"] == 0.0 and run.data.metrics["gate/mini_monaco/max_abs_cte"] == 0.6
    assert run.data.tags[tracking.TAG_VERDICT] == "fail" and run.data.tags["mlflow.user"] == "alice"
    assert run.data.tags[tracking.TAG_BUNDLE].endswith("@sha256:" + "e" * 64)
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path
        for folder in ("model", "gate", "gate/mini_monaco")
        for a in client.list_artifacts(run_id, folder)
    }
    assert {"pilot.run.json", "model/pilot.keras", "model/pilot.tflite", "gate/gate.json", "gate/policy.json",
            "gate/mini_monaco/trajectory.png"} <= artifacts  # fmt: skip


def test_a_gate_of_an_untracked_model_gets_a_run_of_its_own(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    result = GateResult(
        "other.tflite", "sha256:" + "f" * 64, GatePolicy(), (), (Check("s", "m", ">=", 1, 1, True),)
    )
    result.save(tmp_path / "gate.json")
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags[tracking.TAG_VERDICT] == "pass"
    assert runs[0].data.tags[tracking.TAG_TFLITE] == "sha256:" + "f" * 64


def test_without_a_tracking_uri_nothing_is_imported_or_written(tmp_path):
    record, record_path = _trained(tmp_path)
    code = (
        "import sys, json; from pathlib import Path; from pitlane import tracking; "
        "from pitlane.provenance import RunRecord; "
        f"r = RunRecord.from_json(json.loads(Path({str(record_path)!r}).read_text())); "
        f"print(tracking.log_training(r, Path({str(record_path)!r})), 'mlflow' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != tracking.TRACKING_ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["None", "False"], out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pilot.keras", "pilot.run.json", "pilot.tflite"]


def test_a_tracking_server_that_is_down_is_one_warning_and_the_work_goes_on(tmp_path, monkeypatch, caplog):
    record, record_path = _trained(tmp_path)
    monkeypatch.setenv(tracking.TRACKING_ENV, "http://127.0.0.1:9")  # discard port: nothing answers
    assert tracking.log_training(record, record_path) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "pitlane.tracking"]
    assert (
        len(warnings) == 1 and "the training run not recorded in MLflow at http://127.0.0.1:9" in warnings[0]
    )
