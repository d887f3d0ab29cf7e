"""The model pilot: a trained donkeycar model (.tflite or .keras/.h5) driving from camera frames.

It *is* donkeycar's `KerasPilot` (built by `donkeycar.utils.get_model_by_type`, loaded through donkeycar's
`TfLite` or `KerasInterpreter`), so a frame is normalised and decoded exactly as on a donkeycar car; we add
what a car and a gate need on top: the model type found from the file, the input shape checked against the
camera, one-thread inference and clear errors for files that are not models. A file is verified before
TFLite sees it (``pitlane.pilots.model_check``: optional sha256, magic bytes, a first load in a child process),
and the verified bytes are what gets loaded, so a corrupt file is a one-line error, never a segfault.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.errors import UserError
from pitlane.pilots import model_check
from pitlane.provenance import run_record_path

log = logging.getLogger(__name__)

TFLITE_SUFFIX = ".tflite"
KERAS_SUFFIXES = (".keras", ".h5")
# output widths per model type: linear = angle + throttle, categorical = 15 angle bins + 20 throttle bins
# donkeycar model types whose only input is the camera image (what the twin and the car feed a pilot):
# the ones pitlane trains, runs and lets a car config name. One home for the list.
MODEL_TYPES: tuple[str, ...] = ("linear", "categorical", "inferred")
_OUTPUT_SIGNATURES: dict[tuple[int, ...], str] = {(1, 1): "linear", (15, 20): "categorical", (1,): "inferred"}


def model_type_from_outputs(widths: tuple[int, ...]) -> str | None:
    """donkeycar model type from the widths of the model's outputs (sorted), None if not one we drive."""
    return _OUTPUT_SIGNATURES.get(tuple(sorted(widths)))


def _run_record(path: Path) -> dict[str, Any]:
    """The run record saved beside the model by `pitlane train`, or {} (models may come from elsewhere)."""

    rec = run_record_path(path)
    try:
        data = json.loads(rec.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_model_file(path: str | Path) -> Path:
    """The model file as a Path; UserError (one line) for a missing file, a folder, an unknown suffix or a
    file whose content is another format than its suffix says (a .keras renamed .h5, ...). No TensorFlow."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"model {path} is a folder; give the model file (.tflite, .keras or .h5) inside it")
    if not path.is_file():
        raise UserError(f"model {path} does not exist")
    suffix = path.suffix.lower()
    if suffix != TFLITE_SUFFIX and suffix not in KERAS_SUFFIXES:
        raise UserError(f"{path}: unknown model format {suffix!r}; expected .tflite, .keras or .h5")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise UserError(f"model {path} is unreadable: {exc.strerror or exc}") from None
    found = model_check.file_kind(head)
    if found is not None and found != model_check._SUFFIX_KIND[suffix]:
        model_check.check_kind(path, head)  # names what it is and the suffix it needs
    return path


def _tflite_class():
    """donkeycar's TfLite interpreter wrapper, with a thread count (donkeycar leaves it to the runtime)."""
    from donkeycar.parts.interpreter import TfLite, get_tflite_interpreter

    class ThreadedTfLite(TfLite):
        def __init__(self, num_threads: int | None) -> None:
            super().__init__()
            self.num_threads = num_threads

        def load_content(self, data: bytes) -> None:
            """donkeycar's TfLite.load, from bytes already verified (never the path again: no TOCTOU)."""
            interpreter_cls = get_tflite_interpreter()
            with warnings.catch_warnings():  # TF's interpreter warns it moves to ai-edge-litert; same engine
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                self.interpreter = interpreter_cls(model_content=data, num_threads=self.num_threads)
            self.signatures = self.interpreter.get_signature_list()
            if not self.signatures:
                return self._load_via_tensor_api()
            self.runner = self.interpreter.get_signature_runner()
            self.input_keys = list(self.signatures["serving_default"]["inputs"])
            self.output_keys = list(self.signatures["serving_default"]["outputs"])

    return ThreadedTfLite


def _inspect_tflite(
    path: Path, data: bytes, threads: int | None
) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """Load verified .tflite bytes; returns (interpreter wrapper, image input shape HWC, output widths)."""
    model_check.verify_tflite(path, data)
    interp = _tflite_class()(threads)
    try:
        interp.load_content(data)
        inputs = interp.interpreter.get_input_details()
        outputs = interp.interpreter.get_output_details()
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a TFLite model: {exc}") from None
    if len(inputs) != 1:
        names = [interp._normalise_tensor_name(d["name"]) for d in inputs]
        raise UserError(
            f"{path} takes inputs {names}; pitlane pilots drive models whose only input is the image"
        )
    shape = tuple(int(v) for v in inputs[0]["shape"][1:])
    widths = tuple(int(np.prod(d["shape"][1:])) for d in outputs)
    return interp, shape, widths


def _inspect_keras(path: Path) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    from tensorflow import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ... for a bad file
        raise UserError(f"{path} is not a Keras model: {type(exc).__name__}: {exc}") from None
    if len(model.inputs) != 1:
        names = [t.name for t in model.inputs]
        raise UserError(
            f"{path} takes inputs {names}; pitlane pilots drive models whose only input is the image"
        )
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    widths = tuple(int(np.prod(t.shape[1:])) for t in model.outputs)
    return model, shape, widths


class ModelPilot:
    """A donkeycar part: `run(image) -> (angle, throttle)` with a trained model, as donkeycar's KerasPilot.

    image: RGB uint8 (height, width, depth) exactly as the camera (or the twin) gives it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        model_type: str | None = None,
        camera_shape: tuple[int, int, int] | None = None,
        threads: int | None = 1,
        expected_sha256: str | None = None,
        content: bytes | None = None,
    ) -> None:
        """``expected_sha256``: the digest the file must have (a signed bundle's), checked before loading.
        ``content``: the model's bytes, already in hand (a verified bundle's): loaded as they are, never read
        from ``path`` again (a .tflite only; ``path`` then only names the model)."""
        path = check_model_file(path) if content is None else Path(path)
        suffix = path.suffix.lower()
        if content is not None and suffix != TFLITE_SUFFIX:
            raise UserError(f"{path}: only a .tflite model loads from bytes; got {suffix!r}")
        data = (
            model_check.read_verified(path, expected_sha256)
            if content is None
            else model_check.check_verified(path, content, expected_sha256)
        )
        self.sha256 = model_check.sha256_hex(data)
        if suffix == TFLITE_SUFFIX:
            self.format = "tflite"
            loaded, shape, widths = _inspect_tflite(path, data, threads)
        else:
            self.format = "keras"
            loaded, shape, widths = _inspect_keras(path)
        if len(shape) != 3:
            raise UserError(f"{path} takes input of shape {shape}; expected an image (height, width, depth)")
        found = model_type_from_outputs(widths)
        record = _run_record(path)
        wanted = model_type or record.get("model_type") or found
        if wanted is None or found != wanted:
            raise UserError(
                f"{path} has outputs of widths {list(widths)}, which is not a donkeycar "
                f"{wanted or 'linear/categorical/inferred'} model"
            )
        self.path = path
        self.model_type: str = wanted
        self.input_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        overrides = (record.get("params") or {}).get("overrides") or {}
        self.part = self._build_part(loaded, overrides)
        if camera_shape is not None:
            self.check_camera(camera_shape)

    def _build_part(self, loaded: Any, overrides: dict[str, Any]):
        """donkeycar's own KerasPilot subclass for this model type, holding the loaded model."""
        from donkeycar.config import Config
        from donkeycar.utils import get_model_by_type

        cfg = Config()
        cfg.MODEL_CATEGORICAL_MAX_THROTTLE_RANGE = 0.8  # donkeycar's cfg_complete default ...
        cfg.from_dict({k: v for k, v in overrides.items() if isinstance(k, str)})  # ... or what training used
        cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH = self.input_shape
        if self.format == "tflite":
            part = get_model_by_type("tflite_" + self.model_type, cfg)
            part.interpreter = loaded  # already loaded by donkeycar's TfLite.load (with our thread count)
            return part
        part = get_model_by_type(self.model_type, cfg)
        part.interpreter.model = loaded  # what KerasInterpreter.load does, without loading the file twice
        loaded.output_names = part.interpreter.output_keys
        return part

    @property
    def name(self) -> str:
        """The model's name in reports: its file name."""
        return self.path.name

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the bytes verified and loaded: taken once, when the pilot is made."""
        return "sha256:" + self.sha256

    def bound_to(self, sim: Any) -> ModelPilot:
        """This pilot, to drive `sim` (a pitlane.twin.Sim); UserError if its camera is not the model's."""
        h, w, d = sim.render().shape
        self.check_camera((int(h), int(w), int(d)))
        return self

    def check_camera(self, camera_shape: tuple[int, int, int]) -> None:
        """UserError if the camera's frames (height, width, depth) are not what the model was trained on."""
        cam = tuple(int(v) for v in camera_shape)
        if cam != self.input_shape:
            h, w, d = self.input_shape
            given = f"{cam[1]}x{cam[0]}x{cam[2]}" if len(cam) == 3 else f"frames of shape {cam}"
            raise UserError(
                f"model {self.path.name} expects {w}x{h}x{d} images (width x height x depth) but the camera "
                f"gives {given}; set the camera to the model's size or retrain"
            )

    def run(self, img_arr: np.ndarray) -> tuple[float, float]:
        """(angle, throttle) for one frame, through donkeycar's KerasPilot.run (normalise, infer, decode)."""
        if img_arr is None:
            return 0.0, 0.0
        if tuple(img_arr.shape) != self.input_shape:
            self.check_camera(tuple(img_arr.shape))  # type: ignore[arg-type]
        angle, throttle = self.part.run(img_arr)
        return float(angle), float(throttle)

    __call__ = run

    def shutdown(self) -> None:
        self.part.shutdown()

    def __repr__(self) -> str:
        return f"ModelPilot({self.path.name}, {self.model_type}, {self.format}, input={self.input_shape})"


def configure_threads(threads: int) -> None:
    """One place to pin TensorFlow's thread pools (call before TensorFlow runs anything)."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings unchanged")
