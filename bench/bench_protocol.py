"""Benchmark: control -> telemetry round trips per second over loopback, synchronous mode, JPEG frames.

Starts the twin server as a subprocess (server and client each get a core, as with a real simulator), loads a
scene, switches to synchronous mode and drives a car along the centerline (pure pursuit from the telemetry, so
the frames show road). Measures, over several rounds:
  (1) raw: pitlane's protocol client (pitlane.twin.client, shared with the car app's TwinPart) sending a
      control and reading one telemetry message (JSON parsed, frame left encoded) -- the protocol's own
      cost; the issue's goal is >= 1,000/s;
  (2) TwinClient.step: the same plus base64 + JPEG decode of every frame to an RGB array.
Wall-clock rates swing with other load on a shared machine, so it also prints the CPU time the server and
the client spend per round trip (from /proc and time.process_time): on two idle cores a ping-pong round trip
takes at most about their sum (some of it overlaps), which gives the conservative rate printed last.
Run: python bench/bench_protocol.py [--steps N] [--rounds R] [--scene NAME]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

import cv2

from pitlane.twin import protocol as P
from pitlane.twin.client import TwinClient
from pitlane.twin.scenes import DEFAULT_SCENE, load_scene
from pitlane.twin.world import HIT_NONE

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def steer(track, msg: dict) -> str:
    """Pure pursuit along the centerline from the telemetry alone, so frames show road as in real use."""
    x, y, yaw = msg["pos_x"], msg["pos_z"], math.radians(90.0 - msg["yaw"])
    tx, ty = track.centerline[(msg["activeNode"] + 16) % track.total_nodes]
    alpha = math.atan2(ty - y, tx - x) - yaw
    delta = math.atan2(2 * 0.26 * math.sin(alpha), math.hypot(tx - x, ty - y))
    return f"{max(-1.0, min(1.0, -math.degrees(delta) / 16.0)):.3f}"


class ServerProcess:
    """`pitlane twin serve --port 0` in its own process, and its CPU time."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pitlane", "twin", "serve", "--port", "0", "--quiet"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "listening on 127.0.0.1:PORT"
        if not line.startswith("listening on"):
            self.proc.kill()
            raise SystemExit(f"server did not start: {line!r}")
        host, port = line.split()[-1].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_S  # utime + stime

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def raw_round(server: ServerProcess, scene: str, steps: int) -> dict:
    """The shared protocol client without frame decoding: `control` out, one telemetry message in."""
    track = load_scene(scene)
    with TwinClient.session(server.host, server.port, scene, synchronous=True) as sim:
        total_bytes, resets, steering = 0, 0, 0.0
        t0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu_s()
        for _ in range(steps):
            sim.control(steering, 0.4)
            msg = sim.wait_for("telemetry")
            total_bytes += len(P.encode_message(msg)) if _ == 0 else 0
            steering = float(steer(track, msg))
            if msg["hit"] != HIT_NONE:
                resets, steering = resets + 1, 0.0
                sim.send({"msg_type": "reset_car"})  # answered by one telemetry
                sim.wait_for("telemetry")
        return _figures(steps, t0, c0, s0, server) | {"bytes": total_bytes, "resets": resets}


def client_round(server: ServerProcess, scene: str, steps: int) -> dict:
    track = load_scene(scene)
    with TwinClient.session(server.host, server.port, scene, synchronous=True) as sim:
        frame = sim.step(0.0, 0.4)
        t0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu_s()
        for _ in range(steps):
            frame = sim.step(float(steer(track, frame.data)), 0.4)
            if frame.hit != HIT_NONE:
                frame = sim.reset_car() or sim.telemetry()  # synchronous mode: reset_car returns it
        return _figures(steps, t0, c0, s0, server)


def _figures(steps: int, t0: float, c0: float, s0: float, server: ServerProcess) -> dict:
    wall = time.perf_counter() - t0
    return {
        "rate": steps / wall,
        "client_us": (time.process_time() - c0) / steps * 1e6,
        "server_us": (server.cpu_s() - s0) / steps * 1e6,
    }


def report(name: str, rounds: list[dict]) -> None:
    rates = [r["rate"] for r in rounds]
    server_us = statistics.median(r["server_us"] for r in rounds)
    client_us = statistics.median(r["client_us"] for r in rounds)
    print(
        f"  {name}: best {max(rates):6.0f}, median {statistics.median(rates):6.0f} round trips/s; "
        f"CPU per round trip: server {server_us:4.0f} us, client {client_us:4.0f} us "
        f"-> >= ~{1e6 / (server_us + client_us):5.0f}/s on two idle cores"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="round trips per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scene", default=DEFAULT_SCENE)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # the client decodes on its own core, as the server renders on its own
    server = ServerProcess()
    try:
        raw_round(server, args.scene, 100)  # warm up: scene texture, JIT-free paths, socket buffers
        raw = [raw_round(server, args.scene, args.steps) for _ in range(args.rounds)]
        full = [client_round(server, args.scene, args.steps) for _ in range(args.rounds)]
    finally:
        server.stop()
    load = os.getloadavg()[0]
    print(
        f"protocol round trips: synchronous mode, 160x120 JPEG frames, loopback, server subprocess; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}; {args.rounds} rounds x {args.steps}:"
    )
    report("protocol client (JSON parsed)", raw)
    report("TwinClient.step (frame decoded)", full)
    print(
        f"  telemetry line {raw[0]['bytes']} bytes; goal >= 1,000 round trips/s (raw); "
        f"resets {sum(r['resets'] for r in raw)}"
    )


if __name__ == "__main__":
    main()
