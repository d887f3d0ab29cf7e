"""The car image leaves out OpenCV and pandas (pitlane.images.plan): the car's code must run without them.

A child Python with those modules (and TensorFlow, which no image has) made unimportable imports what the
car image runs (the car app, its model manager, the console, the bundle reader, the pilot) and assembles the
pi profile's vehicle with donkeycar's mock camera and drivetrain. The image's own smoke test
(tests/images/test_smoke.py) then runs it under qemu.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

from pitlane.images.plan import CAR_LEAVE_OUT

REPO = Path(__file__).resolve().parents[2]
ABSENT = ("cv2", "pandas", "dateutil", "tensorflow", "tf_keras", "matplotlib")

CHILD = textwrap.dedent(
    """
    import importlib.abc, sys

    class NotInTheCarImage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {absent!r}:
                raise ImportError(f"{{name}} is not installed in the car image")

    sys.meta_path.insert(0, NotInTheCarImage())
    import pitlane.artifacts.bundle, pitlane.car.console, pitlane.car.model_manager, pitlane.pilots.model
    from pitlane.car.app import build_car
    from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config

    cfg = load_car_config(DEFAULT_CAR_DIR, profile="pi", overrides=dict(
        CAMERA_TYPE="MOCK", DRIVE_TRAIN_TYPE="MOCK", WEB_CONTROL_PORT=0))
    car = build_car(cfg, model_path=None, tub_path=sys.argv[1])
    print("parts:", len(car.vehicle.parts))
    """
)


def test_the_car_app_runs_without_opencv_or_pandas(tmp_path):
    assert {"pandas", "python-dateutil"} <= set(CAR_LEAVE_OUT)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(absent=ABSENT), str(tmp_path / "tub")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split("parts:")[1]) > 3
