"""Stress benchmark: one shared twin, 10 hostile clients, a well-behaved client and pitlane's car app.

Starts the twin server as a subprocess on a free loopback port, then 10 hostile clients in a second
subprocess (all on 127.0.0.1, each stopping by itself):
  3 x 1080p (or the largest the server allows) PNG camera, streaming, reading   1 x the same, never reading
  1 x 1080p PNG camera, synchronous, flooding controls                          2 x regen_road spam
  1 x slow-loris (a message that never ends, one byte every 50 ms)              1 x connection churn
  1 x bad-message spam (malformed JSON, unknown types, truncated messages)
Meanwhile, in this process, a well-behaved client (160x120 JPEG, streaming, a control every 50 ms) counts
its telemetry, and the car app (`pitlane car run`'s `run_car`, twin profile, user mode: the TwinPart
thread feeding donkeycar's loop with the watchdog) counts its watchdog stops for --duration seconds.
Prints telemetry rate, longest gap, stale-frame stops, all watchdog stops, server CPU and memory.
The goal (issue 15): >= 19 Hz telemetry and 0 stale-frame stops in 60 s.

--baseline DIR runs the server from another checkout's `pitlane` (e.g. `git worktree add /tmp/old <commit>`)
without limit flags, to compare before/after. CPU heavy (a few cores for --duration s): run it rarely.
Run: python bench/bench_twin_stress.py [--duration 60] [--camera 1920x1080] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
STOP = threading.Event()  # hostile process: SIGTERM ends every client
CONTROL = b'{"msg_type": "control", "steering": "0.0", "throttle": "0.2", "brake": "0.0"}'


def _msg(**kw) -> bytes:
    return json.dumps(kw).encode() + b"\n"


# ------------------------------------------------------------------------------------ hostile clients


# the hostile clients come from two other hosts (all of 127/8 is this machine): one host may hold at most
# --max-clients-per-address (8) of the twin's places, and the car and the steady client are a third host
HOSTILE_HOSTS = ("127.0.0.2", "127.0.0.3")
_HOSTILE_SEQ = itertools.count()


class Hostile(threading.Thread):
    """One hostile client; reconnects when the server closes it, until `stop_at`."""

    def __init__(self, name: str, port: int, stop_at: float, camera: tuple[int, int]):
        super().__init__(name=name, daemon=True)
        self.port, self.stop_at, self.camera = port, stop_at, camera
        self.source = (HOSTILE_HOSTS[next(_HOSTILE_SEQ) % len(HOSTILE_HOSTS)], 0)
        self.connects = 0
        self.received = 0

    def live(self) -> bool:
        return not STOP.is_set() and time.monotonic() < self.stop_at

    def connect(self, scene: str = "generated_track", synchronous: bool = False) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=self.source)
        self.connects += 1
        s.sendall(_msg(msg_type="load_scene", scene_name=scene))
        if synchronous:
            s.sendall(_msg(msg_type="step_mode", step_mode="synchronous", time_step="0.05"))
        return s

    def big_camera(self, s: socket.socket) -> None:
        w, h = self.camera
        s.sendall(_msg(msg_type="cam_config", img_w=str(w), img_h=str(h), img_enc="PNG"))

    def read_some(self, s: socket.socket, timeout_s: float = 0.5) -> bool:
        s.settimeout(timeout_s)
        try:
            data = s.recv(1 << 20)
        except TimeoutError:
            return True
        self.received += len(data)
        return bool(data)

    def run(self) -> None:
        while self.live():
            try:
                self.session()
            except OSError:
                time.sleep(0.2)

    def session(self) -> None:
        raise NotImplementedError


class BigCamera(Hostile):
    def session(self) -> None:
        with self.connect() as s:
            self.big_camera(s)
            while self.live() and self.read_some(s):
                pass


class NonReader(Hostile):
    def session(self) -> None:
        with self.connect() as s:
            self.big_camera(s)
            while self.live():
                time.sleep(0.5)
                s.sendall(CONTROL)  # keeps talking (not idle) but never reads


class SyncFlood(Hostile):
    def session(self) -> None:
        with self.connect(synchronous=True) as s:
            self.big_camera(s)
            while self.live():
                s.sendall(CONTROL * 20)
                if not self.read_some(s, 2.0):
                    return


class RegenSpam(Hostile):
    def session(self) -> None:
        with self.connect(scene="generated_road") as s:
            seed = random.randrange(1 << 30)
            while self.live():
                seed += 1
                s.sendall(_msg(msg_type="regen_road", rand_seed=str(seed)))
                if not self.read_some(s, 0.05):
                    return


class SlowLoris(Hostile):
    def session(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=self.source) as s:
            self.connects += 1
            s.sendall(b'{"msg_type": "control", "steering": "0.')
            while self.live():
                time.sleep(0.05)
                s.sendall(b"1")


class Churn(Hostile):
    def session(self) -> None:
        with self.connect() as s:
            self.read_some(s, 0.05)


class BadMessages(Hostile):
    def session(self) -> None:
        rng = random.Random(3)
        with self.connect() as s:
            while self.live():
                for _ in range(50):
                    s.sendall(
                        rng.choice(
                            [
                                b'{"msg_type": "control", "steering": }\n',
                                b'{"msg_type": "warp_drive"}',
                                b'{"msg_type": "control", "ste',
                                rng.randbytes(40),
                                b'{"msg_type": "control", "steering": "nan", "throttle": "1e999"}',
                            ]
                        )
                    )
                if not self.read_some(s, 0.02):
                    return


HOSTILES = [BigCamera] * 3 + [NonReader, SyncFlood, RegenSpam, RegenSpam, SlowLoris, Churn, BadMessages]


def hostile_main(port: int, seconds: float, camera: tuple[int, int], count: int) -> None:
    stop_at = time.monotonic() + seconds
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    threads = [cls(f"{cls.__name__}-{i}", port, stop_at, camera) for i, cls in enumerate(HOSTILES[:count])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    print(json.dumps({t.name: {"connects": t.connects, "received_bytes": t.received} for t in threads}))


# ------------------------------------------------------------------------------------ measuring side


def good_main(port: int, seconds: float) -> None:
    """The well-behaved client (its own process, so nothing else here takes its CPU or GIL): 160x120 JPEG,
    streaming, a control every 50 ms. Prints the arrival times [s] of its telemetry after the first one."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(_msg(msg_type="load_scene", scene_name="generated_track"))
    s.settimeout(0.05)
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    arrivals: list[float] = []
    next_control, end = 0.0, time.monotonic() + seconds
    while not STOP.is_set() and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_control:
            s.sendall(CONTROL)
            next_control = now + 0.05
        try:
            data = s.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        # count lines, not parsed objects: cheap, and each telemetry is one line
        arrivals += [time.monotonic()] * data.count(b'"msg_type": "telemetry"')
    s.close()
    print(json.dumps({"arrivals": [round(t - arrivals[0], 4) for t in arrivals] if arrivals else []}))


def rate_of(arrivals: list[float], skip_s: float = 1.0) -> tuple[float, float, int]:
    """(Hz, longest gap [s], gaps over 0.25 s) of the arrivals from `skip_s` after the first one."""
    inside = [t for t in arrivals if t >= skip_s]
    if len(inside) < 2:
        return 0.0, float("inf"), 0
    gaps = [b - a for a, b in zip(inside, inside[1:], strict=False)]
    return (len(inside) - 1) / (inside[-1] - inside[0]), max(gaps), sum(g > 0.25 for g in gaps)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(Path(args.baseline).resolve() if args.baseline else ROOT))
    cmd = [sys.executable, "-m", "pitlane", "twin", "serve", "--port", "0", "--quiet"]
    if args.baseline and "def main(" in (Path(args.baseline) / "pitlane/twin/server.py").read_text():
        cmd = [
            sys.executable,
            "-m",
            "pitlane.twin.server",
            "--port",
            "0",
            "--quiet",
        ]  # a checkout from before
    if not args.baseline:
        w, h = args.camera
        cmd += ["--max-camera-pixels", str(w * h)]
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the server's warnings, counted at the end
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    args.server_log = log
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on"):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds the car drives (default 60)")
    ap.add_argument("--camera", default="1920x1080", help="hostile cameras WxH (default 1920x1080)")
    ap.add_argument(
        "--clients",
        type=int,
        default=10,
        help="hostile clients, 0..10 (default 10; 0: the machine's own figures)",
    )
    ap.add_argument("--baseline", metavar="DIR", help="run the server from DIR's pitlane (before/after)")
    ap.add_argument("--hostile", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--good", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.camera = tuple(int(v) for v in args.camera.lower().split("x"))
    if args.hostile:
        hostile_main(args.hostile, args.seconds, args.camera, args.clients)
        return
    if args.good:
        good_main(args.good, args.seconds)
        return
    if not 5 <= args.duration <= 600:
        raise SystemExit("--duration must be 5..600 s")
    if not 0 <= args.clients <= len(HOSTILES):
        raise SystemExit(f"--clients must be 0..{len(HOSTILES)}")
    logging.basicConfig(level=logging.ERROR)
    from pitlane.car.run import RunOptions, run_car

    server, port = start_server(args)
    warmup_s = 3.0
    hostile = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--hostile",
            str(port),
            "--seconds",
            str(args.duration + warmup_s + 15),
            "--camera",
            "x".join(map(str, args.camera)),
            "--clients",
            str(args.clients),
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    good = None
    try:
        time.sleep(warmup_s)  # the attack is under way before the car and the good client connect
        good = subprocess.Popen(
            [sys.executable, __file__, "--good", str(port), "--seconds", str(args.duration + 30)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            text=True,
        )
        cpu0, t0 = cpu_s(server.pid), time.monotonic()
        report = run_car(
            RunOptions(
                model=None,
                mode="user",
                duration_s=args.duration,
                port=port,
                host="127.0.0.1",
                web_port=0,
                plots=False,
            )
        )
        cpu1, t1 = cpu_s(server.pid), time.monotonic()
        good.terminate()
        arrivals = json.loads(good.communicate(timeout=30)[0])["arrivals"]
        hz, gap, late = rate_of(arrivals)
        alive = server.poll() is None
        memory = rss_mb(server.pid) if alive else float("nan")
    finally:
        for proc in (good, hostile, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        hostile_out, _ = hostile.communicate(timeout=30)
        server.wait(timeout=30)
    args.server_log.seek(0)
    log_lines = sum(1 for _ in args.server_log)
    run = report.car
    assert run is not None  # a car run's report carries its loop and watchdog figures
    stops = run.stop_counts
    print(
        f"server: {'baseline ' + args.baseline if args.baseline else 'this checkout'}; {args.clients} hostile clients, cameras "
        f"{args.camera[0]}x{args.camera[1]} PNG; {args.duration:.0f} s"
    )
    print(
        f"well-behaved client telemetry: {hz:.1f} Hz (goal >= 19) over {arrivals[-1] - 1.0 if arrivals else 0:.0f} s "
        f"from 1 s after its first frame; longest gap {gap * 1000:.0f} ms; {late} gaps over 250 ms"
    )
    print(
        f"car: {stops.get('stale_frame', 0)} stale-frame stops (goal 0); all watchdog stops: {stops or 'none'}; "
        f"loop {run.loop_hz} Hz; twin reconnects {run.twin_reconnects}"
    )
    print(
        f"server: {'running' if alive else 'DIED'}; CPU {(cpu1 - cpu0) / (t1 - t0):.2f} cores; "
        f"peak RSS {memory:.0f} MB; {log_lines} log lines"
    )
    print(f"stale-frame stops at [s]: {[e['time'] for e in run.stops if e['reason'] == 'stale_frame']}")
    print(f"hostile clients: {hostile_out.strip()}")


if __name__ == "__main__":
    main()
