"""`pitlane car ...`: the car app from the command line."""

from __future__ import annotations

import argparse
import json
import math
import sys

from pitlane.args import check_output_dir, check_port_free
from pitlane.car.settings import DEFAULT_CAR_DIR, DRIVE_MODES, PROFILES
from pitlane.errors import UserError
from pitlane.pilots.model import check_model_file
from pitlane.twin.protocol import DEFAULT_PORT


def _run(args: argparse.Namespace) -> int:
    # every argument is checked before donkeycar and TensorFlow load (pitlane.car.run imports them)
    if not (args.max_seconds > 0 and math.isfinite(args.max_seconds)):
        raise UserError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
    if args.model:
        check_model_file(args.model)
    if args.out:
        check_output_dir(args.out)
    if args.tub:
        check_output_dir(args.tub, "--tub")
    for flag, port in (("--port", args.port), ("--web-port", args.web_port)):
        if port is not None and not 0 <= port <= 65535:
            raise UserError(f"{flag} {port} outside 0..65535")
    if args.web_port:
        check_port_free(args.web_port, "--web-port")

    from pitlane.car.run import RunOptions, run_car  # lazy: pitlane.car loads donkeycar at import time

    report = run_car(
        RunOptions(
            model=args.model,
            profile=args.profile,
            scene=args.scene,
            duration_s=args.max_seconds,
            report_dir=args.out,
            port=args.port,
            host=args.host,
            mode=args.mode,
            web_port=args.web_port,
            tub_dir=args.tub,
            car_dir=args.car,
            myconfig=args.myconfig,
            plots=not args.no_plots,
        )
    )
    car = report.car
    assert car is not None  # run_car always fills the car block
    summary = {
        "laps_completed": report.laps_completed,
        "mean_abs_cte": report.mean_abs_cte,
        "loop_hz": car.loop_hz,
        "tub_records": car.tub_records,
        "stops": len(car.stops),
        "nonfinite_outputs": report.nonfinite_outputs,
    }
    print(json.dumps(summary))
    if car.loop_error:
        print(f"pitlane: the drive loop died: {car.loop_error}", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers) -> None:
    car = subparsers.add_parser("car", help="the DonkeyCar car app (twin and Pi profiles)")
    sub = car.add_subparsers(dest="car_command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="drive the twin headless with a model for a while and report laps, CTE, loop rate, stops",
        description="Start the twin (unless one answers at the car's SIM_HOST:SIM_PORT), run the car app's "
        "donkeycar loop headless and write DIR/report.json.",
    )
    run.add_argument("--profile", choices=PROFILES, default="twin", help="car profile (only twin runs here)")
    run.add_argument(
        "--model", metavar="FILE", help="trained model (.tflite or .keras) for the autopilot (default: none)"
    )
    run.add_argument("--scene", help="twin scene (default: the car config's SIM_SCENE)")
    run.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="wall-clock seconds to drive (default 60)",
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        help="write DIR/report.json and plots, and record the tub in DIR/tub (default: no report)",
    )
    run.add_argument("--tub", metavar="DIR", help="record the tub here instead (default: DIR/tub of --out)")
    run.add_argument(
        "--port", type=int, help=f"twin port (default: the car config's SIM_PORT, {DEFAULT_PORT})"
    )
    run.add_argument("--host", help="twin host (default: the car config's SIM_HOST)")
    run.add_argument(
        "--mode",
        choices=DRIVE_MODES,
        default="local",
        help="drive mode: local (pilot steers and drives, default), local_angle, user",
    )
    run.add_argument("--web-port", type=int, help="web controller port (default 8887; 0 = any free port)")
    run.add_argument(
        "--car",
        default=str(DEFAULT_CAR_DIR),
        metavar="DIR",
        help="car app folder with config.py and myconfig.py (default: the bundled default_car)",
    )
    run.add_argument(
        "--myconfig", default="myconfig.py", help="myconfig file name in the car folder (default myconfig.py)"
    )
    run.add_argument("--no-plots", action="store_true", help="skip trajectory.png and cte_speed.png")
    run.set_defaults(func=_run)
