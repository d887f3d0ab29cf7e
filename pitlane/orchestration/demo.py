"""`pitlane demo`: the whole loop on embedded defaults, end to end, leaving pictures a person can open.

twin snapshot -> expert data (donkeycar tub) -> donkeycar linear model -> the gate drives it in the twin ->
the donkeycar car app drives the twin with the gated model. Every step is the same code the CLI, the
notebooks and the release pipeline call; this module only strings them together and says where things are.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pitlane.evaluate.gate import format_table
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.run import evaluate
from pitlane.orchestration.recipe import UNSEEN_SCENE, Recipe, default_recipe
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.sim import Sim
from pitlane.twin.snapshot import write_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("out/demo")
    drive_seconds: float = 60.0  # [s] wall-clock time the car app drives the twin (real time, 20 Hz loop)
    drive_scene: str = DEFAULT_SCENE
    seed: int = 0
    threads: int | None = None  # TensorFlow threads while training; None: all cores


def run_demo(opts: DemoOptions) -> int:
    """Run every stage; returns the process exit code (1 when the gate refuses the model)."""
    from pitlane.car.run import RunOptions, run_car  # lazy: pitlane.car loads donkeycar at import time

    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    _stage(1, "the twin: snapshots of the default scene")
    snap = write_snapshot(Sim(opts.drive_scene, seed=opts.seed), out / "twin")
    print(f"  camera view, map and a lap of frames in {out / 'twin'}/")

    _stage(2, "expert data -> donkeycar linear model -> the gate (laps in the twin)")
    result = default_recipe(
        out / "recipe", recipe=Recipe(seed=opts.seed), threads=opts.threads, progress=True, overwrite=True
    )
    assert result.gate is not None  # default_recipe gates unless told not to
    print(format_table(result.gate.checks, result.gate.passed))
    if not result.gate.passed:
        print(f"\nThe gate refused the model; its reports and plots are in {out / 'recipe' / 'gate'}/.")
        return 1

    _stage(3, f"unseen scene: {UNSEEN_SCENE} (never in the training data)")

    unseen = evaluate(
        result.tflite, UNSEEN_SCENE, EvalParams(laps=2, seed=opts.seed), report_dir=out / "unseen"
    )
    print(
        f"  {unseen.laps_completed}/{unseen.laps_requested} laps, mean |CTE| {unseen.mean_abs_cte:.3f} m, "
        f"ended by {unseen.end_reason}"
    )

    _stage(
        4,
        f"the donkeycar car app drives {opts.drive_scene} with the gated model "
        f"({opts.drive_seconds:.0f} s, real time)",
    )
    car = run_car(
        RunOptions(
            model=str(result.tflite),
            scene=opts.drive_scene,
            duration_s=opts.drive_seconds,
            report_dir=str(out / "car"),
            port=0,
            web_port=0,
        )
    )
    assert car.car is not None  # run_car always fills the car block
    print(
        f"  {car.laps_completed} laps, mean |CTE| {car.mean_abs_cte} m, loop {car.car.loop_hz} Hz, "
        f"{len(car.car.stops)} watchdog stops"
    )

    summary = {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "timings_s": result.timings_s,
        "model": str(result.tflite),
        "gate": "pass",
        "unseen_scene": {
            "scene": UNSEEN_SCENE,
            "laps_completed": unseen.laps_completed,
            "mean_abs_cte": unseen.mean_abs_cte,
        },
        "car": {
            "laps_completed": car.laps_completed,
            "mean_abs_cte": car.mean_abs_cte,
            "loop_hz": car.car.loop_hz,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nDone in {summary['wall_seconds']} s. Open these:")
    for path in (
        snap.camera,
        snap.map,
        out / "recipe" / "gate",
        out / "unseen",
        out / "car",
        out / "summary.json",
    ):
        print(f"  {path}")
    return 0


def _stage(n: int, what: str) -> None:
    print(f"\n== {n}. {what}", flush=True)


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
        "--drive-seconds",
        type=float,
        default=DemoOptions.drive_seconds,
        help="how long the car app drives, in real time [s] (default 60)",
    )
    p.add_argument("--scene", default=DemoOptions.drive_scene, help="scene the car app drives")
    p.add_argument("--seed", type=int, default=DemoOptions.seed, help="seed for data, training and twin")
    p.set_defaults(
        func=lambda a: run_demo(
            DemoOptions(out=a.out, drive_seconds=a.drive_seconds, drive_scene=a.scene, seed=a.seed)
        )
    )
