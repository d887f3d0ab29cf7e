"""What the fleet costs the car: frame statistics per frame (the drift score's input), the fleet part's call
in the vehicle loop, and missed loops of a real 20 Hz donkeycar loop with and without the part.

Goals (issue 21): frame statistics well under 1 ms a frame on one core (numpy only); the part's loop call
cheap enough that a 20 Hz loop misses no iteration. The frames are the twin camera's (160x120 RGB).
Usage: python bench/bench_fleet_part.py [--frames N] [--seconds S] [--broker HOST:PORT]

Times are CPU time of this process (time.process_time) where stated, so that other work on a shared machine
does not count; the loop test reports wall-clock periods, as the car lives them.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LOOP_HZ = 20.0


def twin_frames(count: int) -> np.ndarray:
    from pitlane.pilots.expert import ExpertPilot
    from pitlane.twin.sim import Sim
    from pitlane.twin.vehicle import Control

    sim = Sim("generated_track", seed=0)
    expert = ExpertPilot().bound_to(sim)
    frames = []
    for _ in range(count):
        steer, throttle = expert.run(np.zeros(0))
        sim.step(Control(steering=steer, throttle=throttle))
        frames.append(sim.render())
    return np.stack(frames)


def per_call_us(fn, n: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per call of fn(i)."""
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6


class Frames:
    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.i = frames, 0

    def run(self):
        self.i += 1
        return self.frames[self.i % len(self.frames)]


class Periods:
    def __init__(self) -> None:
        self.t: list[float] = []

    def run(self, image):
        self.t.append(time.perf_counter())


def loop_periods(frames: np.ndarray, seconds: float, part=None) -> list[float]:
    """Wall-clock periods [s] of a donkeycar Vehicle at 20 Hz: frames -> [fleet part] -> recorder."""
    import donkeycar as dk

    v = dk.vehicle.Vehicle()
    v.add(Frames(frames), outputs=["cam/image_array"])
    if part is not None:
        v.add(part, inputs=type(part).INPUTS, threaded=True)
    rec = Periods()
    v.add(rec, inputs=["cam/image_array"])
    v.start(rate_hz=LOOP_HZ, max_loop_count=int(seconds * LOOP_HZ))
    return list(np.diff(rec.t))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames to time the statistics on")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each 20 Hz loop run [s]")
    ap.add_argument(
        "--broker", help="HOST:PORT of a Mosquitto to send to (default: none, the sender retries)"
    )
    args = ap.parse_args()
    for name in ("pitlane", "donkeycar"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from pitlane.data.framestats import frame_features
    from pitlane.fleet.drift import DriftMonitor
    from pitlane.fleet.part import FleetParams, FleetPart
    from pitlane.fleet.sender import Sender, SenderParams
    from pitlane.fleet.spool import Spool

    frames = twin_frames(200)
    for f in frames[:50]:
        frame_features(f)  # warm up
    cpu, wall = per_call_us(lambda i: frame_features(frames[i % len(frames)]), args.frames)
    print(f"frame statistics (drift input), 120x160 RGB: {cpu:.1f} us CPU / {wall:.1f} us wall per frame")
    every = 5
    print(
        f"  sampled every {every}th frame (FLEET_DRIFT_EVERY): {cpu / every:.1f} us CPU per loop, in the part's thread"
    )

    monitor = DriftMonitor(every=every)
    cpu_offer, _ = per_call_us(lambda i: monitor.offer(frames[i % len(frames)]), 100_000)
    print(f"drift monitor's loop side (offer: a counter and a reference): {cpu_offer:.2f} us CPU per frame")

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-part-"))
    params = FleetParams(
        car="bench-car", broker=args.broker or "127.0.0.1:9", state_dir=tmp, data_path=str(tmp)
    )
    spool = Spool(tmp / "spool.db", "bench-car")
    part = FleetPart(params, spool)
    model = ("sha256:" + "a" * 64, 3, "running", "")
    cpu_run, wall_run = per_call_us(
        lambda i: part.run_threaded(frames[i % 200], "local", 0.1, *model), 50_000
    )
    print(f"fleet part's loop call (run_threaded): {cpu_run:.2f} us CPU / {wall_run:.2f} us wall per loop")
    c0 = time.process_time()
    for _ in range(50):
        part._next_beat = 0.0
        part.tick()
    print(
        f"  its thread: one heartbeat built and committed (fsync) {(time.process_time() - c0) / 50 * 1e3:.2f} ms CPU"
    )
    spool.close()

    base = loop_periods(frames, args.seconds)
    spool = Spool(tmp / "loop.db", "bench-car")
    sender = Sender(spool, SenderParams.from_broker(params.broker))
    loaded = FleetPart(FleetParams(**{**params.__dict__, "heartbeat_s": 1.0}), spool, sender)
    with_part = loop_periods(frames, args.seconds, loaded)
    period = 1.0 / LOOP_HZ
    for name, periods in (("without the part", base), ("with the part", with_part)):
        missed = sum(p > 1.5 * period for p in periods)
        print(
            f"20 Hz loop {name}: {len(periods)} loops, median {statistics.median(periods) * 1e3:.2f} ms, "
            f"max {max(periods) * 1e3:.1f} ms, missed (> 75 ms) {missed}"
        )
    print(
        f"  heartbeats spooled during the run: {loaded.heartbeats}; sender connected: {sender.stats.connects > 0}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
