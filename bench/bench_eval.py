"""Evaluation fanned out: the gate over 20 scene-directions x 10 laps, serial vs the process pool vs Ray.

Goal (issue 23): parallel efficiency >= 90 % per core on 2 cores with the process pool, serial time /
(parallel time x workers); the same on a local Ray, its start-up (ray.init, then the actors loading the
model) stated apart; reports byte-identical to the serial run's (gate.json and report.json but for the
measured wall_seconds, runs.json byte for byte, plots but for PNG metadata, traces array for array).

Usage: python bench/bench_eval.py [--model PATH.tflite] [--workers 2] [--laps 10] [--quick] [--no-ray]
  --quick: 2 scenes x 2 directions x 1 lap (a minute or two), to try the script.
The model should drive (by default the one `make demo` leaves in out/demo): a model that leaves the road
ends runs early and unevenly. The load average is printed before each phase: on a shared machine the
figures mean little; rerun it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

from pitlane.twin.scenes import SCENE_NAMES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DEMO_MODEL = Path("out/demo/recipe/model/pilot.tflite")
# the built-in scenes but generated_road (a new road per seed, so a lap count means less)
SCENES = tuple(name for name in SCENE_NAMES if name != "generated_road")
WALL = re.compile(rb'"wall_seconds": [0-9.eE+-]+')


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {len(os.sched_getaffinity(0))} cores"


def png_pixels(data: bytes) -> list[bytes]:
    """The PNG's chunks but its metadata (tEXt, zTXt, iTXt, tIME)."""
    out, at = [], 8
    while at < len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
            out.append(data[at + 4 : at + 8 + size])
        at += 12 + size
    return out


def differences(a: Path, b: Path) -> list[str]:
    """Files that are not the same reports in `a` and `b` (see the module's docstring); [] = identical."""
    import numpy as np

    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    other = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    bad = sorted(set(names) ^ set(other))
    for name in sorted(set(names) & set(other)):
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if name.endswith("runs.json"):
            same = x == y
        elif name.endswith(".json"):
            same = WALL.sub(b"", x) == WALL.sub(b"", y)
        elif name.endswith(".png"):
            same = png_pixels(x) == png_pixels(y)
        elif name.endswith(".npz"):
            with np.load(a / name) as za, np.load(b / name) as zb:
                same = za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)
        else:
            same = x == y
        if not same:
            bad.append(name)
    return bad


def gate(pilot, policy, out: Path, executor):
    from pitlane.evaluate.gate import run_gate

    t0 = time.perf_counter()
    result = run_gate(pilot, policy, out, executor=executor, progress=False)
    return result, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEMO_MODEL, help="a trained .tflite model that drives")
    ap.add_argument("--workers", type=int, default=2, help="runs at once (default 2: the issue's 2 cores)")
    ap.add_argument("--laps", type=int, default=None, help="laps per run (default 10; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="2 scenes x 2 directions x 1 lap")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray measurement")
    ap.add_argument("--no-plots", action="store_true", help="runs without their plots")
    args = ap.parse_args()
    if not args.model.is_file():
        print(f"bench_eval: no model at {args.model}; run `make demo` first or pass --model", file=sys.stderr)
        return 2
    from pitlane import quiet
    from pitlane.evaluate.executor import ProcessPool, Serial

    quiet.install()  # no donkeycar banner, no TensorFlow start-up lines
    from pitlane.evaluate.gate import GatePolicy
    from pitlane.pilots.model import ModelPilot, configure_threads

    scenes = SCENES[:2] if args.quick else SCENES
    laps = args.laps or (1 if args.quick else 10)
    policy = GatePolicy(scenes=scenes, laps=laps, direction="both", min_laps_completed=0)
    print(f"{len(scenes) * 2} scene-directions x {laps} laps, {args.workers} workers; {load()}")
    configure_threads(1)
    t0 = time.perf_counter()
    pilot = ModelPilot(args.model)
    print(
        f"model {args.model.name} loaded in {time.perf_counter() - t0:.1f} s (once, here, for every executor)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        root = Path(tmp)
        print(f"serial: {load()}", flush=True)
        serial, t_serial = gate(pilot, policy, root / "serial", Serial())
        steps = sum(r.steps for r in serial.reports)
        done = sum(r.laps_completed for r in serial.reports)
        print(
            f"serial: {t_serial:.1f} s, {steps} control steps ({1e3 * t_serial / steps:.2f} ms a step), "
            f"{done}/{laps * len(serial.reports)} laps driven"
        )
        print(f"process pool: {load()}", flush=True)
        _, t_pool = gate(pilot, policy, root / "process", ProcessPool(args.workers))
        rows.append(("process pool", t_pool, None, differences(root / "serial", root / "process")))
        if not args.no_ray and (row := _ray(pilot, policy, root, args.workers)) is not None:
            rows.append(row)
        print(f"after: {load()}")
    _print(rows, t_serial, args.workers)
    if done < laps * len(serial.reports):
        print("note: the model did not drive every lap; use a model that drives for a meaningful figure")
    return 0 if all(not r[3] for r in rows) else 1


def _ray(pilot, policy, root: Path, workers: int):
    from pitlane.errors import UserError
    from pitlane.evaluate.ray_pool import RayPool

    print(f"ray (local): {load()}", flush=True)
    ray = RayPool(workers)
    try:
        _, t_ray = gate(pilot, policy, root / "ray", ray)
    except UserError as exc:  # Ray gives a local start 30 s; a loaded machine may need more
        print(f"ray (local): not measured: {exc}")
        return None
    return ("ray (local)", t_ray, ray.timings, differences(root / "serial", root / "ray"))


def _print(rows, t_serial: float, workers: int) -> None:
    for name, wall, timings, diff in rows:
        eff = t_serial / (wall * workers)
        line = f"{name}: {wall:.1f} s, parallel efficiency {100 * eff:.0f} % per core ({workers} workers)"
        if timings:
            start = timings["start"] + timings["workers_ready"]
            runs = t_serial / (timings["runs"] * workers)
            line += (
                f"; start-up {start:.1f} s (ray.init {timings['start']:.1f} s, actors loading the model "
                f"{timings['workers_ready']:.1f} s), runs alone {timings['runs']:.1f} s = {100 * runs:.0f} % "
                "per core"
            )
        print(line)
        verdict = "byte-identical to serial" if not diff else f"DIFFERENT from serial: {', '.join(diff[:5])}"
        print(f"  reports {verdict}")
        print(f"  goal >= 90 % per core: {'met' if eff >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
