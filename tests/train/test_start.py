"""Training from a previous model's weights (the DAgger retrain): the run goes on from them, a model that
does not fit is refused in one line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitlane.errors import UserError
from pitlane.train import TrainParams, run_record_path, train_model

TINY: dict[str, Any] = dict(epochs=2, batch_size=16, threads=1)


@pytest.mark.slow
def test_training_starts_from_a_previous_model_in_place(make_tub, tmp_path):
    tub = make_tub(records=48)
    out = tmp_path / "m.keras"
    cold = train_model([tub], out, TrainParams(seed=2, **TINY))
    first_digest = cold.model_digest
    # a step size so small that the weights stay where they start: the first epoch's validation loss is
    # the start model's, the best checkpoint of the first training (same seed, same validation records)
    still = TrainParams(seed=2, learning_rate=1e-9, **{**TINY, "epochs": 1})
    warm = train_model([tub], out, still, overwrite=True, start_from=out)
    assert warm.history["val_loss"][0] == pytest.approx(min(cold.history["val_loss"]), rel=1e-4)
    fresh = train_model([tub], tmp_path / "fresh.keras", still)
    assert fresh.history["val_loss"][0] != pytest.approx(warm.history["val_loss"][0], rel=1e-2)
    assert warm.extra["started_from"] == {"model": str(out), "digest": first_digest}
    assert warm.model_digest != first_digest and out.with_suffix(".tflite").is_file()
    saved = json.loads(run_record_path(out).read_text())
    assert saved["extra"]["started_from"]["digest"] == first_digest


def test_a_start_model_that_does_not_fit_is_refused(make_tub, tmp_path):
    tub = make_tub(records=10)
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"TFL3")
    with pytest.raises(UserError, match="must be a Keras model"):
        train_model([tub], tmp_path / "a.keras", TrainParams(**TINY), start_from=tflite)
    with pytest.raises(UserError, match="does not exist"):
        train_model([tub], tmp_path / "a.keras", TrainParams(**TINY), start_from=tmp_path / "none.keras")


@pytest.mark.slow
def test_a_start_model_of_another_type_is_refused_in_one_line(make_tub, tmp_path):
    tub = make_tub(records=20)
    other = train_model([tub], tmp_path / "c.keras", TrainParams(model_type="categorical", **TINY))
    with pytest.raises(UserError, match="is a categorical model for .* training makes a linear model") as err:
        train_model([tub], tmp_path / "l.keras", TrainParams(**TINY), start_from=other.model_path)
    assert "\n" not in str(err.value)
