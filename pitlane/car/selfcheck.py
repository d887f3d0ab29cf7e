"""A self-check of the car app where it is installed: `python3 -m pitlane.car.selfcheck MODEL [LOOPS [KEY]]`.

MODEL is a .tflite file, or a signed model bundle `REGISTRY/REPO@sha256:...` that the car's model manager
pulls, verifies against the public KEY (cosign format; default: the key the image ships) and health-checks
on its canary frames, as the car does at start. Imports LiteRT and donkeycar (no TensorFlow needed), infers a frame with the model through
pitlane's ModelPilot, then runs the car app in its pi profile for a few loops with donkeycar's mock camera and
mock drivetrain, the autopilot driving. Prints one JSON line of what it saw. `pitlane images smoke` runs it
inside the car image (under qemu on an amd64 machine); on a Pi it checks an install without moving the car.
"""

import importlib.metadata
import importlib.util
import json
import sys
from typing import Any

import numpy as np


def pull_verified(ref: str, public_key: str | None = None) -> tuple[dict, Any]:
    """The model manager's own path (`fetch_verified`, then the car's checks): pull REF, verify its
    signature, signed serial and gate attestation, load the verified bytes and health-check them on its
    canary frames (latency is not judged here: under qemu a frame takes a second). (what it saw, the pilot)

    public_key: PEM file; None: the key the image ships (pitlane/car/trust/model.pub), as the car uses."""
    import tempfile
    from pathlib import Path

    from pitlane.artifacts import oci
    from pitlane.car.model_manager import ManagerParams, ModelManager, parse_desired
    from pitlane.car.model_params import SHIPPED_KEY

    cache = Path(tempfile.mkdtemp(prefix="pitlane-selfcheck-"))
    key = Path(public_key) if public_key else SHIPPED_KEY
    params = ManagerParams(public_key=key, cache_dir=cache, latency_budget_ms=1e9)
    manager = ModelManager(params)
    wanted = parse_desired(ref)
    loaded = manager.prepare(wanted, oci.Client(wanted.registry, timeout_s=params.registry_timeout_s))
    seen = {
        "path": str(loaded.path),
        "verified": str(loaded.ref),
        "serial": loaded.serial,
        "gate": loaded.gate.verdict if loaded.gate else None,
        "canary_error": loaded.canary_error,
    }
    return seen, loaded.pilot


def _is_reference(text: str) -> bool:
    """A bundle reference (REGISTRY/REPO@sha256:...) rather than a model file's path."""
    from pitlane.artifacts import oci
    from pitlane.errors import BadInput

    try:
        return oci.Reference.parse(text).digest is not None
    except BadInput:
        return False


def main(model: str, loops: int, public_key: str | None = None) -> dict:
    import ai_edge_litert.interpreter  # noqa: F401  (the runtime the car infers with)
    import donkeycar  # noqa: F401

    from pitlane.car.app import build_car
    from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config
    from pitlane.pilots.model import ModelPilot

    bundle = None
    if _is_reference(model):  # a signed bundle in a registry: the pilot the model manager loaded
        bundle, pilot = pull_verified(model, public_key)
        model = bundle["path"]
    else:
        pilot = ModelPilot(model)
    frame = np.random.default_rng(0).integers(0, 256, size=pilot.input_shape, dtype=np.uint8)
    angle, throttle = pilot.run(frame)
    h, w, d = pilot.input_shape
    overrides = dict(
        CAMERA_TYPE="MOCK",
        DRIVE_TRAIN_TYPE="MOCK",
        WEB_CONTROL_PORT=0,
        WEB_INIT_MODE="local",
        IMAGE_H=h,
        IMAGE_W=w,
        IMAGE_DEPTH=d,
        DRIVE_LOOP_HZ=20,
    )
    cfg = load_car_config(DEFAULT_CAR_DIR, profile="pi", overrides=overrides)
    calls: list[float] = []

    class CountingPilot:  # the loaded pilot, counting the frames the drive loop gives it
        def run(self, image):
            out = pilot.run(image)
            calls.append(out[0])
            return out

        def shutdown(self) -> None:
            pilot.shutdown()

    car = build_car(cfg, model, pilot=CountingPilot(), record=False)
    car.start(max_loop_count=loops)
    mem = car.vehicle.mem
    return {
        "tensorflow": importlib.util.find_spec("tensorflow") is not None,
        "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
        "donkeycar": importlib.metadata.version("donkeycar"),
        "machine": __import__("platform").machine(),
        "frame": [float(angle), float(throttle)],
        "profile": cfg.PITLANE_PROFILE,
        "loops": loops,
        "pilot": [mem["pilot/angle"], mem["pilot/throttle"]],
        "pilot_calls": len(calls),
        "mode": mem["user/mode"],
        "autopilot_refusal": car.autopilot_refusal,
        "bundle": bundle,  # None for a plain file; else what the model manager verified
    }


if __name__ == "__main__":
    loops = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(json.dumps(main(sys.argv[1], loops, sys.argv[3] if len(sys.argv) > 3 else None)))
