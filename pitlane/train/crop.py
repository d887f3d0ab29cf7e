"""The horizon crop: rows cut off the top of the camera frame inside the model, as its first layer.

What the camera sees above the horizon (sky, walls, whatever stands behind the track) says nothing about
where the road goes; on a track nobody trained on it is one more colour a model can take as a shortcut, and
in training it is a quarter of every frame's convolutions spent on nothing. The crop is a Keras `Cropping2D`
layer named `horizon_crop` placed before donkeycar's convolutions (`core_cnn_layers`, which its linear,
categorical and inferred models share), so the model's input stays the camera's whole frame: the car, the
evaluation, the gate and the TFLite export feed it exactly as before, and a cropped model is recognisable
from its file (`crop_of`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from pitlane.errors import UserError

CROP_LAYER = "horizon_crop"


def horizon_rows(img_h: int, fov_deg: float, pitch_down_deg: float) -> int:
    """Whole image rows above the horizon of a level camera pitched down `pitch_down_deg` with a vertical
    field of view `fov_deg` (0 when the horizon is above the frame): what a horizon crop may cut and
    lose nothing of the ground. For the twin's camera (120 rows, 70 deg, 20 deg down): 28."""
    focal_px = 0.5 * img_h / math.tan(math.radians(fov_deg) / 2)
    horizon = (img_h - 1) / 2 - focal_px * math.tan(math.radians(pitch_down_deg))
    return max(0, math.floor(horizon))


@contextlib.contextmanager
def horizon_crop(rows: int, image_h: int, model_type: str) -> Iterator[None]:
    """While inside, the donkeycar models built on `core_cnn_layers` start by cutting `rows` rows off the
    top of their `image_h`-row input (0: unchanged). Too few rows left for the model's convolutions is a
    UserError naming the crop, not a Keras shape error."""
    if rows == 0:
        yield
        return
    if not 0 < rows < image_h:
        raise UserError(f"a horizon crop of {rows} rows leaves nothing of a {image_h}-row frame")
    import donkeycar.parts.keras as donkey_keras
    from tensorflow import keras

    original = donkey_keras.core_cnn_layers

    def cropped(img_in: Any, *args: Any, **kwargs: Any) -> Any:
        x = keras.layers.Cropping2D(((rows, 0), (0, 0)), name=CROP_LAYER)(img_in)
        try:
            return original(x, *args, **kwargs)
        except ValueError as exc:  # Keras: a convolution's output would be empty
            raise UserError(
                f"a horizon crop of {rows} rows leaves {image_h - rows} of {image_h} rows, too few for the "
                f"{model_type} model's convolutions ({exc}); crop fewer rows"
            ) from None

    donkey_keras.core_cnn_layers = cropped
    try:
        yield
    finally:
        donkey_keras.core_cnn_layers = original


def crop_of(model: Any) -> int:
    """The rows a Keras model cuts off the top of its input (0: no horizon crop)."""
    for layer in model.layers:
        if layer.name == CROP_LAYER:
            return int(layer.cropping[0][0])
    return 0
