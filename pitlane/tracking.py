"""Experiment tracking in MLflow, where data scientists look for it; nothing at all without a tracking server.

When `MLFLOW_TRACKING_URI` is set (the hub sets it for every user), training, the gate and `model push` each
record what they did in the MLflow run of the model they worked on: training opens the run (parameters, the
training curve per epoch, the run record, the model files), the gate adds its verdict, thresholds, figures
and plots, a push adds the bundle's reference. The run is found again by the model's digest, so a model
trained in one process and gated or pushed in another (a notebook, then `pitlane model push`) is one run.
All users share one experiment (`pitlane`, or MLFLOW_EXPERIMENT_NAME), each run tagged with its user, so
their runs compare side by side.

Without the variable nothing is imported and nothing changes. A tracking server that fails never fails the
work it records: one warning line says what was not recorded.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pitlane.provenance import file_digest

log = logging.getLogger(__name__)

TRACKING_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"  # MLflow's own variable
DEFAULT_EXPERIMENT = "pitlane"
TAG_MODEL = "pitlane.model_digest"  # the trained model file (.keras)
TAG_TFLITE = "pitlane.tflite_digest"  # its TFLite export: what the gate drives and a bundle ships
TAG_VERDICT = "pitlane.gate_verdict"
TAG_BUNDLE = "pitlane.bundle"  # REGISTRY/REPO@sha256:... of the candidate bundle
PARAM_MAX = 500  # [characters] MLflow keeps parameter values short


def enabled() -> bool:
    return bool(os.environ.get(TRACKING_ENV))


def user() -> str:
    """Whose run it is: the hub's user (JUPYTERHUB_USER), else the login name."""
    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # an arbitrary uid with no passwd entry (OpenShift)
        return "unknown"


def _guarded(what: str, record: Callable[[], str]) -> str | None:
    """Run `record` when tracking is on; a failure is a warning, never an error of the work it records."""
    if not enabled():
        return None
    try:
        return record()
    except Exception as exc:  # noqa: BLE001 - the tracking server is a witness, not a gate
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        log.warning("tracking: %s not recorded in MLflow at %s (%s)", what, os.environ[TRACKING_ENV], why)
        return None


def _client() -> tuple[Any, str]:
    """MLflow's client and the shared experiment's id (created on first use)."""
    # MLflow retries a request that fails 7 times with growing waits (minutes): a training run would hang on
    # a server that is down, so fewer and shorter, unless the user set their own
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # [s]
    from mlflow.tracking import MlflowClient  # lazy: MLflow takes seconds to import

    client = MlflowClient()
    name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            # MLflow's page opens an experiment of this kind on its runs ("Model training"), not on GenAI traces
            return client, client.create_experiment(
                name, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        except Exception:  # noqa: BLE001 - another user created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    return client, experiment.experiment_id


def find_run(client: Any, experiment_id: str, digests: Iterable[str]) -> str | None:
    """The newest run of a model with one of these digests (its .keras or .tflite), if any."""
    for digest in digests:
        if not digest:
            continue
        for tag in (TAG_TFLITE, TAG_MODEL):
            runs = client.search_runs(
                [experiment_id],
                f"tags.`{tag}` = '{digest}'",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if runs:
                return str(runs[0].info.run_id)
    return None


def _run_for(client: Any, experiment_id: str, digests: list[str], name: str, tags: dict[str, str]) -> str:
    run_id = find_run(client, experiment_id, digests)
    if run_id is None:
        run_id = client.create_run(
            experiment_id, run_name=name, tags={"mlflow.user": user(), **tags}
        ).info.run_id
    return str(run_id)


def metric_key(text: str) -> str:
    """MLflow accepts letters, digits and `_ - . / space` in a metric name."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text)


def _params(params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
        out[metric_key(key)] = text[:PARAM_MAX]
    return out


def log_training(record: Any, record_path: Path) -> str | None:
    """A new run for a trained model (a provenance.RunRecord): parameters, curve, run record, model files."""

    def go() -> str:
        from mlflow.entities import Metric, Param

        client, experiment_id = _client()
        tags = {TAG_MODEL: record.model_digest, TAG_TFLITE: record.tflite_digest,
                "pitlane.data_digest": record.data_digest, "pitlane.git_commit": record.git_commit,
                "mlflow.user": user()}  # fmt: skip
        name = f"{user()}-{Path(record.model_path).stem}"  # alice-pilot: whose model, at a glance
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        params = _params(
            {**record.params, "records_total": record.records_total, "input_shape": list(record.input_shape)}
        )
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(k), float(v), now, epoch)
            for k, vs in record.history.items()
            for epoch, v in enumerate(vs)
        ]
        if record.best_val_loss is not None:
            metrics.append(Metric("best_val_loss", float(record.best_val_loss), now, 0))
        metrics += [Metric(f"seconds_{metric_key(k)}", float(v), now, 0) for k, v in record.timings_s.items()]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        client.log_artifact(run_id, str(record_path))
        for path in (record.model_path, record.tflite_path):
            if path and Path(path).is_file():
                client.log_artifact(run_id, str(path), "model")
        client.set_terminated(run_id)
        log.info("tracking: training recorded as MLflow run %s", run_id)
        return str(run_id)

    return _guarded("the training run", go)


def log_gate(result: Any, gate_file: Path) -> str | None:
    """The gate's verdict (an evaluate.gate.GateResult), its checks, gate.json and the plots beside it, in the
    run of the model it drove."""

    def go() -> str:
        from mlflow.entities import Metric

        client, experiment_id = _client()
        verdict = "pass" if result.passed else "fail"
        run_id = _run_for(client, experiment_id, [result.model_digest], f"gate {result.model}",
                          {TAG_TFLITE: result.model_digest})  # fmt: skip
        now = int(time.time() * 1000)
        metrics = [Metric("gate_passed", 1.0 if result.passed else 0.0, now, 0)]
        for c in result.checks:
            metrics.append(Metric(metric_key(f"gate/{c.scene}/{c.metric}"), float(c.value), now, 0))
        client.log_batch(run_id, metrics=metrics)
        client.set_tag(run_id, TAG_VERDICT, verdict)
        client.log_dict(run_id, result.policy.to_json(), "gate/policy.json")
        client.log_artifact(run_id, str(gate_file), "gate")
        folder = Path(gate_file).parent
        for plot in sorted(folder.rglob("*.png")):
            client.log_artifact(run_id, str(plot), str(Path("gate") / plot.parent.relative_to(folder)))
        log.info("tracking: gate verdict (%s) recorded in MLflow run %s", verdict, run_id)
        return run_id

    return _guarded("the gate's verdict", go)


def log_bundle(model: Path, reference: str) -> str | None:
    """The candidate bundle's reference (REGISTRY/REPO@sha256:...) on the run of the model file it ships."""

    def go() -> str:
        client, experiment_id = _client()
        model_digest = file_digest(model)
        run_id = _run_for(client, experiment_id, [model_digest], "bundle", {TAG_TFLITE: model_digest})
        client.set_tag(run_id, TAG_BUNDLE, reference)
        log.info("tracking: bundle %s recorded in MLflow run %s", reference, run_id)
        return run_id

    return _guarded("the bundle reference", go)
