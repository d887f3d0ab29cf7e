"""Training that starts from a previous model's weights (donkeycar's transfer), e.g. a DAgger retrain.

The start model is copied first: it may be the very file the training replaces. Its type and image size
are checked before donkeycar loads it, so a mismatch is one line, not a Keras shape error mid-training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pitlane.errors import UserError
from pitlane.pilots.model import KERAS_SUFFIXES, check_model_file, model_type_from_outputs
from pitlane.provenance import file_digest
from pitlane.train.crop import crop_of


@dataclass(frozen=True)
class StartModel:
    source: str  # the model as given
    digest: str  # its content digest, for the run record
    path: Path  # a copy training reads (the source may be the model this training replaces)


def copy_start(start_from: str | Path, work_dir: Path) -> StartModel:
    """The start model checked to be a readable Keras file (no TensorFlow yet) and copied into `work_dir`."""
    source = check_model_file(Path(start_from).expanduser())
    if source.suffix.lower() not in KERAS_SUFFIXES:
        raise UserError(
            f"start model {source} must be a Keras model ({' or '.join(KERAS_SUFFIXES)}), not TFLite"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    copy = work_dir / f"start{source.suffix.lower()}"
    shutil.copyfile(source, copy)
    return StartModel(str(source), file_digest(copy), copy)


def check_start(
    start: StartModel, model_type: str, image_shape: tuple[int, int, int], crop_top: int = 0
) -> None:
    """One line if the start model is not a `model_type` model of the tubs' image size cropping `crop_top`
    rows (donkeycar's transfer loads the start model whole: its crop would silently win)."""
    import numpy as np
    from tensorflow import keras

    try:
        model = keras.models.load_model(str(start.path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ... for a bad file
        raise UserError(
            f"start model {start.source} is not a Keras model: {type(exc).__name__}: {exc}"
        ) from None
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    kind = model_type_from_outputs(tuple(int(np.prod(t.shape[1:])) for t in model.outputs))
    if len(model.inputs) != 1 or kind != model_type or shape != image_shape:
        raise UserError(
            f"start model {start.source} is a {kind or 'foreign'} model for {shape} images; training makes a "
            f"{model_type} model for {image_shape} images: start from one of those"
        )
    if crop_of(model) != crop_top:
        raise UserError(
            f"start model {start.source} crops {crop_of(model)} rows off the top of its frames; training "
            f"crops {crop_top}: start from a model with the same horizon crop"
        )
