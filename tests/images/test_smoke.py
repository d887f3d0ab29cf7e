"""Both images built here (no daemon, no pull) and run: the sim's twin passes `pitlane twin check`; the car
image, under qemu, imports LiteRT and donkeycar without TensorFlow, infers a frame with a .tflite made here
and runs the car app's pi profile with donkeycar's mock camera and drivetrain. Pushed by digest, tagged last.

Cold (a fresh CI clone) this builds the Debian bases with mmdebstrap and every layer; later runs reuse
out/images (root filesystem tarballs, buildah's layer cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pitlane.images.plan import Store
from pitlane.images.push import push_by_digest, tag
from pitlane.images.smoke import smoke_car, smoke_sim

pytestmark = [
    pytest.mark.slow,
    # Cold, these builds take 30 minutes and more on 2 cores (mmdebstrap of the arm64 base under load alone
    # took 29 min): more than CI's budget beside the rest of the suite. Opt in until they are measured on CI.
    pytest.mark.skipif(
        os.environ.get("PITLANE_IMAGE_TESTS") != "1",
        reason="image builds are opt-in: PITLANE_IMAGE_TESTS=1 (or `make images`)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "images"


@pytest.fixture(scope="module")
def store() -> Store:
    proc = subprocess.run(
        [sys.executable, "-m", "pitlane.cli", "images", "build"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Store.under(OUT)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained donkeycar linear model converted to .tflite as donkeycar's training does."""
    import donkeycar
    import tensorflow as tf
    from donkeycar.config import Config
    from donkeycar.parts.interpreter import keras_model_to_tflite
    from donkeycar.utils import get_model_by_type

    cfg = Config()
    cfg.from_pyfile(f"{donkeycar.__path__[0]}/templates/cfg_complete.py")
    tf.keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("model")
    keras = folder / "pilot.keras"
    get_model_by_type("linear", cfg).interpreter.model.save(keras)
    keras_model_to_tflite(str(keras), str(folder / "pilot.tflite"))
    return folder / "pilot.tflite"


def test_the_sim_images_twin_passes_twin_check(store):
    result = smoke_sim(store)
    assert result["check"], "twin check returned no results"


def test_the_car_image_infers_and_drives_under_qemu_without_tensorflow(store, tiny_model):
    result = smoke_car(store, tiny_model, loops=5)
    assert result["machine"] == "aarch64"
    assert result["tensorflow"] is False
    assert result["donkeycar"] == "5.4.0"
    assert result["profile"] == "pi" and result["autopilot_refusal"] is None
    assert result["mode"] == "local" and result["pilot_calls"] >= 1  # the autopilot drove in the loop
    assert all(-1.5 < v < 1.5 for v in result["frame"] + result["pilot"])


def test_both_images_push_by_digest_and_are_tagged_only_after(store, registry):
    registry_host = registry.host  # tests/conftest.py: a real docker-registry for the session
    pushed = [push_by_digest(store, name, registry_host, OUT) for name in ("sim", "car")]
    for p in pushed:
        repo_path = p.repository.split("/", 1)[1]
        assert requests.get(f"http://{registry_host}/v2/{repo_path}/manifests/{p.digest}", timeout=10).ok
        assert requests.get(f"http://{registry_host}/v2/{repo_path}/tags/list", timeout=10).status_code == 404
    for p in pushed:
        tag(p, "smoke", OUT)
    repo_path = pushed[1].repository.split("/", 1)[1]
    assert requests.get(f"http://{registry_host}/v2/{repo_path}/tags/list", timeout=10).json()["tags"] == [
        "smoke"
    ]
