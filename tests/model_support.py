"""Test support for model artifacts: tiny real TFLite models built in seconds (no training), gate reports
as the gate writes them, where the registry keeps a blob (to tamper with it at rest), and release keys and
bundles released as the pipeline releases them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pitlane.artifacts import bundle, oci, signing, trust
from pitlane.provenance import file_digest


def make_tflite(path: Path, seed: int, kind: str = "linear") -> Path:
    """A tiny Keras model converted to TFLite: `linear` (angle, throttle), `nan` (outputs NaN), `wide`
    (one output of width 3: loads, but is no donkeycar model), `far` (linear, scaled far from `linear`)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((120, 160, 3), name="img_in")
    x = keras.layers.Conv2D(4, 5, strides=8, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    if kind == "wide":
        outs = [keras.layers.Dense(3, name="n_outputs0")(x)]
    else:
        outs = [keras.layers.Dense(1, activation="tanh", name=f"n_outputs{i}")(x) for i in range(2)]
        if kind == "nan":
            outs = [
                keras.layers.Lambda(lambda t: t * np.float32("nan"), name=f"nan{i}")(o)
                for i, o in enumerate(outs)
            ]
        if kind == "far":
            outs = [
                keras.layers.Lambda(lambda t: t * 0.0 + 5.0, name=f"far{i}")(o) for i, o in enumerate(outs)
            ]
    model = keras.Model(inp, outs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def write_gate_report(model: Path, path: Path, verdict: str = "pass", digest: str | None = None) -> Path:
    """A gate report as `pitlane evaluate gate` writes it (verdict, model digest, checks), for `model`."""
    checks = [
        {
            "scene": "generated_track",
            "metric": "laps_completed",
            "op": ">=",
            "threshold": 3,
            "value": 3,
            "passed": verdict == "pass",
        }
    ]
    doc: dict[str, object] = {
        "verdict": verdict,
        "model": model.name,
        "model_digest": digest or file_digest(model),
        "checks": checks,
        "reports": {"generated_track": {}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def blob_file(registry, digest: str):
    """Where distribution keeps a blob's bytes (to tamper with them at rest, as a compromised store would)."""
    hexd = digest.split(":", 1)[1]
    return registry.config.storage / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def with_tflite(b, data: bytes):
    """The bundle `b` with its .tflite replaced by `data` (canary outputs kept): a bundle whose model loads
    but behaves differently from what was recorded when it was packed."""
    from pitlane.artifacts import bundle

    return b.replaced(bundle.TFLITE_NAME, data)


def with_serial(b, serial: int):
    return b.replaced(serial=serial)


TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4  # stands in for a model: fetching never loads it
CANARY = b"canary frames" * 20


def hand_bundle(serial: int = 1, tflite: bytes = TFLITE) -> Any:
    """A bundle built by hand: a few bytes stand in for the model (fetching and verifying never load it)."""
    from pitlane.artifacts import bundle, oci

    layers = (
        (bundle.TFLITE_NAME, bundle.TFLITE_TYPE, tflite),
        (bundle.CANARY_NAME, bundle.CANARY_TYPE, CANARY),
    )
    config = {
        "schema": bundle.SCHEMA,
        "serial": serial,
        "files": {title: oci.sha256_digest(data) for title, _, data in layers},
        "model_digest": oci.sha256_digest(tflite),
        "canary": {"frames": 0, "outputs": []},
    }
    return bundle.Bundle(oci.canonical_json(config), layers)


def gate_doc(model_digest: str, verdict: str = "pass") -> dict:
    """A gate report (schema 1) for the model `model_digest`, as a gate run writes it."""
    from pitlane.gate_report import SCHEMA as GATE_SCHEMA

    check = {"scene": "generated_track", "metric": "laps_completed", "op": ">=", "threshold": 1.0}
    check |= {"value": 2.0 if verdict == "pass" else 0.0, "passed": verdict == "pass"}
    return {
        "schema": GATE_SCHEMA,
        "verdict": verdict,
        "model": "pilot.tflite",
        "model_digest": model_digest,
        "checks": [check],
        "reports": {"generated_track": {}},
    }


def release_key(folder: Path, name: str = "release") -> tuple[Any, Path]:
    """A signing key pair generated in `folder` as `name`.key/.pub: (the loaded private key, the public key's
    path). The password is in the environment only while generating and loading."""
    os.environ[signing.PASSWORD_ENV] = "pw"
    try:
        key_path, pub = signing.generate_keys(folder / name)
        return signing.load_private_key(key_path), pub
    finally:
        del os.environ[signing.PASSWORD_ENV]


def release_bundle(
    client: oci.Client, packed: Any, repo: oci.Reference, key: Any, serial: int | None = None
) -> oci.Reference:
    """Push `packed` to `repo` and release it as the pipeline does: its serial signed (the config's unless
    told) and a passing gate report for its model attested."""
    ref = bundle.push(client, packed, repo, ())
    config = json.loads(packed.config)
    serial = config["serial"] if serial is None else serial
    trust.sign_release(client, ref, key, serial=serial, report=gate_doc(config["model_digest"]))
    return ref
