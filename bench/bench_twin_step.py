"""Benchmark: twin core steps per second on ONE core.

Prints (1) physics-only steps/s (`world.step` at the 20 Hz control rate, 10 physics sub-steps each) and
(2) steps/s with a 160x120 camera frame rendered every step -- the issue's goal is >= 5,000 -- plus
(3) the same with domain randomisation, each per wall-clock second and per CPU second (on a busy, shared
machine the CPU figure is the per-core rate). OpenCV is pinned to one thread.
Run: python bench/bench_twin_step.py [--scene NAME] [--steps N]   (pin to a core: taskset -c 1 ...)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

from pitlane.twin import Control, DomainRandomization, Sim  # noqa: E402
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.world import CONTROL_PERIOD_S, HIT_NONE


def drive(sim: Sim, steps: int, render: bool) -> tuple[float, float]:
    """Steps per wall-clock second and per CPU second of a car weaving along the track (reset whenever
    it leaves the road). On a shared machine the CPU-time figure is the one that means "per core"."""
    sim.reset(seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        # a gentle sinusoidal weave at moderate throttle keeps the car moving over changing ground
        tel = sim.step(Control(steering=0.3 * ((i // 20) % 3 - 1), throttle=0.4), CONTROL_PERIOD_S)
        if render:
            sim.render()
        if tel.hit != HIT_NONE:
            sim.reset()
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default=DEFAULT_SCENE)
    ap.add_argument("--steps", type=int, default=20000)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    sim = Sim(args.scene)
    sim.render()  # texture built outside the timing
    drive(sim, 500, True)  # warm-up
    physics = drive(sim, args.steps, render=False)
    full = drive(sim, args.steps, render=True)
    rsim = Sim(args.scene, randomize=DomainRandomization())
    drive(rsim, 500, True)
    randomized = drive(rsim, args.steps // 2, render=True)
    print(
        f"scene {args.scene}, dt {CONTROL_PERIOD_S:g} s (10 physics sub-steps of 5 ms), one thread; steps/s per"
    )
    print(f"{'':34}{'wall s':>10}{'CPU s':>10}")
    print(f"{'physics only':34}{physics[0]:10.0f}{physics[1]:10.0f}")
    print(f"{'physics + 160x120 render':34}{full[0]:10.0f}{full[1]:10.0f}   (goal >= 5000)")
    print(f"{'  ... with domain randomisation':34}{randomized[0]:10.0f}{randomized[1]:10.0f}")


if __name__ == "__main__":
    main()
