#!/usr/bin/env python3
"""
Scripts to drive a donkey car: the pitlane default car (twin and Raspberry Pi profiles).

Usage:
    manage.py (drive) [--model=<model>] [--type=(linear|categorical|inferred)] [--profile=(twin|pi)] [--meta=<key:value> ...] [--myconfig=<filename>]
    manage.py (train) [--tubs=tubs] (--model=<model>) [--type=(linear|categorical|inferred)]

Options:
    -h --help               Show this screen.
    --model=<model>         Trained model for the autopilot (.tflite or .keras). Without one, or when it fails
                            to load, the car drives by hand only (web controller, "user" mode).
    --type=<type>           Model type (default: found from the model, else DEFAULT_MODEL_TYPE).
    --profile=<profile>     twin: frames and telemetry from the twin (SIM_HOST:SIM_PORT);
                            pi: PiCamera and PWM steering/throttle. Default: PITLANE_PROFILE (myconfig.py).
    --meta=<key:value>      Key/Value strings describing a piece of meta data about this drive. Option may be
                            used more than once.
    --myconfig=filename     Specify myconfig file to use.
                            [default: myconfig.py]

Then open http://<car>:8887/drive (WEB_CONTROL_PORT) to drive by hand, record, and switch to the autopilot
("local_angle": the pilot steers; "local": the pilot steers and drives). The safety watchdog stops the car
(throttle 0) on non-finite pilot outputs, stale camera frames, repeated loop overruns, and the web page's
w1 button (w2 resumes).
"""

import contextlib
import logging
import os

from docopt import docopt

from pitlane.car.app import build_car
from pitlane.car.settings import load_car_config
from pitlane.errors import UserError

# import cv2 before tensorflow (loaded later, with a Keras model) where both are installed
# (https://github.com/opencv/opencv/issues/14884); the car image has neither: LiteRT infers, no OpenCV
with contextlib.suppress(ImportError):
    import cv2  # noqa: F401

logger = logging.getLogger(__name__)
logging.basicConfig(level=logging.INFO)

CAR_DIR = os.path.dirname(os.path.abspath(__file__))  # the folder run from (apps/... links here)


def drive(cfg, model_path=None, model_type=None, meta=()):
    """
    Construct a working robotic vehicle from many parts (pitlane.car.app.build_car: camera or twin, web
    controller, pilot, DriveMode, safety watchdog, drivetrain, TubWriter) and run it at cfg.DRIVE_LOOP_HZ.
    Add your own parts to car.vehicle before car.start(), as in any donkeycar manage.py.
    """
    logger.info(f"PID: {os.getpid()}")
    car = build_car(cfg, model_path, model_type=model_type, meta=list(meta))
    #
    # add your own parts here, e.g.
    # car.vehicle.add(MyPart(), inputs=["cam/image_array"], outputs=["my/value"])
    #
    print(f"You can now go to http://localhost:{cfg.WEB_CONTROL_PORT}/drive to drive your car.")
    car.start()


def main(argv=None):
    args = docopt(__doc__, argv=argv)
    if args["train"]:
        print(
            "Train with `pitlane train` (donkeycar's pipeline with pitlane's data checks), "
            "or `donkey train --tub <tub> --model <model>`."
        )
        return 0
    cfg = load_car_config(CAR_DIR, myconfig=args["--myconfig"], profile=args["--profile"])
    drive(cfg, model_path=args["--model"], model_type=args["--type"], meta=args["--meta"])
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
