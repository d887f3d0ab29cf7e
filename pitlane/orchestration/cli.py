"""`pitlane demo`: the whole loop end to end on embedded defaults (pitlane.orchestration.demo does the work)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pitlane.args import check_output_dir
from pitlane.errors import UserError
from pitlane.evaluate.run import scene_track
from pitlane.orchestration.demo import DemoOptions, run_demo


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole loop end to end on embedded defaults (a few minutes on 2 cores)",
        description="Collect expert data in the twin, train a donkeycar linear model, gate it by driving it "
        "in the twin, try it on a scene it never saw, then let the donkeycar car app drive the twin with it. "
        "Leaves PNGs, tubs, the model and JSON reports under --out.",
    )
    p.add_argument("--out", type=Path, default=DemoOptions.out, help="output folder (default out/demo)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=DemoOptions.drive_seconds,
        metavar="S",
        help="how long the car app drives (the last stage), in real time [s] (default 60)",
    )
    p.add_argument("--scene", default=DemoOptions.drive_scene, help="scene the car app drives")
    p.add_argument("--seed", type=int, default=DemoOptions.seed, help="seed for data, training and twin")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    if not (args.max_seconds > 0 and math.isfinite(args.max_seconds)):
        raise UserError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
    scene_track(args.scene, args.seed)
    opts = DemoOptions(out=args.out, drive_seconds=args.max_seconds, drive_scene=args.scene, seed=args.seed)
    return run_demo(opts)
