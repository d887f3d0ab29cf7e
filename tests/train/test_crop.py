"""The horizon crop: a model that cuts the rows above the horizon inside itself still takes whole camera
frames, never looks at the rows it cut, costs less per step, and a warm start or a crop that leaves too
little is refused in one line."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pitlane.errors import UserError
from pitlane.pilots.model import ModelPilot
from pitlane.train import TrainParams, train_model
from pitlane.train.crop import horizon_rows
from pitlane.twin.camera import CameraParams

TINY: dict[str, Any] = dict(epochs=1, batch_size=16, threads=1)


def test_the_twin_cameras_horizon_is_28_rows_down():
    cam = CameraParams()
    assert horizon_rows(cam.img_h, cam.fov_deg, cam.rot_x_deg) == 28
    assert horizon_rows(120, 70.0, 60.0) == 0  # pitched so far down that no sky is in the frame
    assert horizon_rows(120, 70.0, 0.0) == 59  # level: the horizon is the middle row


@pytest.mark.slow
def test_a_cropped_model_takes_whole_frames_and_never_sees_the_rows_it_cut(make_tub, tmp_path):
    from tensorflow import keras

    from pitlane.train.flops import forward_flops

    tub = make_tub(records=40)
    cropped = train_model([tub], tmp_path / "c.keras", TrainParams(crop_top=28, **TINY))
    whole = train_model([tub], tmp_path / "w.keras", TrainParams(**TINY))
    assert cropped.input_shape == (120, 160, 3) and cropped.params["crop_top"] == 28
    model = keras.models.load_model(cropped.model_path, compile=False)
    assert [layer.name for layer in model.layers][:2] == ["img_in", "horizon_crop"]
    fewer = forward_flops(model) / forward_flops(keras.models.load_model(whole.model_path, compile=False))
    assert 0.6 < fewer < 0.85  # a quarter of the rows, less the rounding of each strided convolution

    assert cropped.tflite_path is not None
    pilots = [ModelPilot(path) for path in (cropped.tflite_path, cropped.model_path)]
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    painted = frame.copy()
    painted[:28] = 255  # the sky turns white
    below = frame.copy()
    below[28:30] = 0  # the first ground rows turn black
    for pilot in pilots:
        assert pilot.input_shape == (120, 160, 3)
        assert pilot.run(painted) == pytest.approx(pilot.run(frame), abs=1e-6)
        assert pilot.run(below) != pytest.approx(pilot.run(frame), abs=1e-6)


@pytest.mark.slow
def test_a_warm_start_with_another_crop_is_refused_in_one_line(make_tub, tmp_path):
    tub = make_tub(records=20)
    first = train_model([tub], tmp_path / "a.keras", TrainParams(crop_top=20, **TINY))
    with pytest.raises(UserError, match="crops 20 rows .* training crops 0") as err:
        train_model([tub], tmp_path / "b.keras", TrainParams(**TINY), start_from=first.model_path)
    assert "\n" not in str(err.value)


def test_a_crop_that_leaves_too_little_is_refused(make_tub, tmp_path):
    tub = make_tub(records=10)
    with pytest.raises(UserError, match="leaves 20 of 120 rows, too few for the linear model") as err:
        train_model([tub], tmp_path / "m.keras", TrainParams(crop_top=100, **TINY))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="leaves nothing"):
        train_model([tub], tmp_path / "m.keras", TrainParams(crop_top=120, **TINY))
    for bad in (-1, 2.5, True):
        with pytest.raises(UserError, match="whole number of rows"):
            TrainParams(crop_top=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "m.keras").exists()
