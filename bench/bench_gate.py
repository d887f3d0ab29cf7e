"""Gate wall time: 3 laps of the default scene driven by the TFLite linear pilot, in-process.

Goal (issue 4): <= 5 s on 2 cores. Usage: python bench/bench_gate.py [--model PATH.tflite] [--scene S]
The model should be one that drives: by default the one `make demo` leaves in out/demo; a model that
leaves the road ends the episode early and the figure means little (the script says so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pitlane.twin.scenes import DEFAULT_SCENE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DEMO_MODEL = Path("out/demo/recipe/model/pilot.tflite")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        type=Path,
        default=DEMO_MODEL,
        help=f"a trained .tflite linear model (default: {DEMO_MODEL}, from `make demo`)",
    )
    ap.add_argument("--scene", default=DEFAULT_SCENE)
    ap.add_argument("--laps", type=int, default=3)
    args = ap.parse_args()
    if not args.model.is_file():
        print(f"bench_gate: no model at {args.model}; run `make demo` first or pass --model", file=sys.stderr)
        return 2

    from pitlane.evaluate.gate import GatePolicy, run_gate
    from pitlane.pilots.model import ModelPilot, configure_threads

    configure_threads(1)
    policy = GatePolicy(scenes=(args.scene,), laps=args.laps, min_laps_completed=args.laps)
    rows = []
    for plots in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = run_gate(ModelPilot(args.model), policy, Path(tmp), plots=plots)  # load timed too
            rows.append((plots, time.perf_counter() - t0, result))
    report = rows[0][2].reports[0]
    print(
        f"model {args.model.name} on {args.scene}: {report.laps_completed}/{report.laps_requested} laps, "
        f"{report.steps} control steps ({report.sim_seconds:.1f} s simulated), end: {report.end_reason}"
    )
    for plots, wall, result in rows:
        drive = result.reports[0].wall_seconds
        print(
            f"gate wall time {'with' if plots else 'without'} plots: {wall:6.2f} s "
            f"(driving {drive:.2f} s = {1e3 * drive / max(report.steps, 1):.2f} ms/step, "
            f"verdict {'PASS' if result.passed else 'FAIL'})"
        )
    print(f"goal <= 5 s: {'met' if rows[1][1] <= 5.0 else 'NOT met'} (with plots)")
    if report.end_reason != "laps_completed":
        print("note: the model did not complete the laps; use a model that drives for a meaningful figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
