"""The model pilot runs a donkeycar model exactly as donkeycar's KerasPilot does, and names bad models."""

from __future__ import annotations

from hashlib import sha256

import numpy as np
import pytest

from pitlane.errors import UserError
from pitlane.pilots.model import ModelPilot, check_model_file, model_type_from_outputs

pytestmark = pytest.mark.slow  # builds and converts real Keras models


def _donkey_cfg(shape=(120, 160, 3)):
    import donkeycar
    from donkeycar.config import Config

    cfg = Config()
    cfg.from_pyfile(f"{donkeycar.__path__[0]}/templates/cfg_complete.py")
    cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH = shape
    return cfg


def _save_untrained(model_type: str, folder, shape=(120, 160, 3)):
    """An untrained but standard donkeycar model, saved as donkeycar's training does (.keras + .tflite)."""
    import tensorflow as tf
    from donkeycar.parts.interpreter import keras_model_to_tflite
    from donkeycar.utils import get_model_by_type

    tf.keras.utils.set_random_seed(1)
    kl = get_model_by_type(model_type, _donkey_cfg(shape))
    path = folder / f"{model_type}.keras"
    kl.interpreter.model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {t: _save_untrained(t, folder) for t in ("linear", "categorical")}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]


@pytest.mark.parametrize("model_type", ["linear", "categorical"])
@pytest.mark.parametrize("suffix", [".tflite", ".keras"])
def test_outputs_match_donkeycars_own_pilot(model_type, suffix, models, frames):
    from donkeycar.utils import get_model_by_type

    path = models[model_type].with_suffix(suffix)
    pilot = ModelPilot(path, camera_shape=(120, 160, 3))
    assert pilot.model_type == model_type and pilot.input_shape == (120, 160, 3)
    reference = get_model_by_type(("tflite_" if suffix == ".tflite" else "") + model_type, _donkey_cfg())
    reference.load(str(path))
    for frame in frames:
        angle, throttle = pilot.run(frame)
        ref_angle, ref_throttle = reference.run(frame)
        assert isinstance(angle, float) and isinstance(throttle, float)
        assert angle == pytest.approx(float(ref_angle), abs=1e-6)
        assert throttle == pytest.approx(float(ref_throttle), abs=1e-6)


def test_tflite_and_keras_agree(models, frames):
    tfl = ModelPilot(models["linear"].with_suffix(".tflite"))
    ker = ModelPilot(models["linear"])
    for frame in frames:
        assert tfl.run(frame) == pytest.approx(ker.run(frame), abs=1e-4)


def test_a_model_loads_from_the_bytes_it_was_given_never_from_its_path(models, frames, tmp_path):
    """The model manager's path: bytes already verified are loaded as they are; the path only names them
    (it need not exist, and a file there is not read)."""
    data = models["linear"].with_suffix(".tflite").read_bytes()
    name = tmp_path / "sha256hex.tflite"
    name.write_bytes(b"not a model: never read")
    pilot = ModelPilot(name, content=data, expected_sha256=sha256(data).hexdigest())
    from_file = ModelPilot(models["linear"].with_suffix(".tflite"))
    assert pilot.digest == from_file.digest and pilot.run(frames[0]) == from_file.run(frames[0])
    assert ModelPilot(tmp_path / "absent.tflite", content=data).input_shape == (120, 160, 3)
    with pytest.raises(UserError, match="not the expected"):
        ModelPilot(name, content=data, expected_sha256="0" * 64)
    with pytest.raises(UserError, match="only a .tflite model loads from bytes"):
        ModelPilot(tmp_path / "m.keras", content=data)
    with pytest.raises(UserError, match="not a usable TFLite model"):  # probed in a child first, as a file's
        ModelPilot(name, content=data[:200])


def test_camera_shape_mismatch_is_named(models):
    with pytest.raises(UserError, match=r"expects 160x120x3 images .* camera gives 80x60x3"):
        ModelPilot(models["linear"].with_suffix(".tflite"), camera_shape=(60, 80, 3))
    pilot = ModelPilot(models["linear"].with_suffix(".tflite"))
    with pytest.raises(UserError, match="camera gives 80x60x3"):
        pilot.run(np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(UserError, match=r"frames of shape \(120, 160\)"):
        pilot.run(np.zeros((120, 160), np.uint8))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.tflite", b"definitely not a flatbuffer", "is not a TFLite model"),
        ("notes.keras", b"PK\x03\x04 broken zip", "is not a Keras model"),
        ("weights.h5", b"\x89HDF\r\n garbage", "is not a Keras model"),
        ("model.onnx", b"whatever", "unknown model format"),
    ],
)
def test_files_that_are_not_models_are_named(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        ModelPilot(path)
    assert name in str(err.value)


def test_missing_model_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ModelPilot(tmp_path / "gone.tflite")


def test_model_with_unexpected_outputs_is_refused(tmp_path):
    import tensorflow as tf

    inp = tf.keras.Input((120, 160, 3), name="img_in")
    out = tf.keras.layers.Dense(7)(tf.keras.layers.Flatten()(inp))
    path = tmp_path / "odd.keras"
    tf.keras.Model(inp, out).save(path)
    with pytest.raises(UserError, match=r"outputs of widths \[7\]"):
        ModelPilot(path)


def test_model_type_from_output_widths():
    assert model_type_from_outputs((1, 1)) == "linear"
    assert model_type_from_outputs((20, 15)) == "categorical"
    assert model_type_from_outputs((1,)) == "inferred"
    assert model_type_from_outputs((3,)) is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.h5", b"PK\x03\x04rest", r"is a Keras model \(\.keras zip\) named \.h5; rename it to \.keras"),
        (
            "m.keras",
            b"\x89HDF\r\n\x1a\nrest",
            r"is a Keras model \(HDF5\) named \.keras; rename it to \.h5",
        ),
        ("m.keras", b"\x1c\x00\x00\x00TFL3rest", r"is a TFLite model named \.keras; rename it to \.tflite"),
        ("m.onnx", b"whatever", "unknown model format '.onnx'"),
    ],
)
def test_check_model_file_names_a_renamed_model_without_tensorflow(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message):
        check_model_file(tmp_path / name)


def test_check_model_file_refuses_a_folder_and_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="is a folder; give the model file"):
        check_model_file(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        check_model_file(tmp_path / "none.tflite")
    (tmp_path / "ok.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3rest")
    assert check_model_file(tmp_path / "ok.tflite") == tmp_path / "ok.tflite"
