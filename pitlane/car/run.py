"""`pitlane car run`: the car app headless for a bounded time, against the twin, with a report.

It reads the car app's config (the default car app shipped in pitlane/car/default_car by default), starts the twin server in this
process when none answers at SIM_HOST:SIM_PORT, builds the car (`pitlane.car.app.build_car`), drives for
`duration_s` and writes DIR/report.json: the same `Report` as `pitlane evaluate` (a car run is an evaluation
on a wall clock: laps, |CTE|, the same plots), with its `car` block holding the loop rate achieved, every
watchdog stop, the tub recorded, the records kept out of it for a NaN, and ``loop_error`` when a part raised
and ended the drive loop early (donkeycar's Vehicle prints it and returns; `car run` then exits 1).
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from pitlane.car.app import Car, build_car
from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config
from pitlane.errors import UserError
from pitlane.evaluate.plots import write_plots
from pitlane.evaluate.report import (
    END_TIME_LIMIT,
    REPORT_FILE,
    CarRun,
    Episode,
    EvalParams,
    ModelInfo,
    Report,
    Trace,
    summarize,
    write_report,
)
from pitlane.pilots.model import ModelPilot
from pitlane.provenance import file_digest
from pitlane.twin.scenes import load_scene
from pitlane.twin.server import TwinServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    model: str | None
    profile: str = "twin"
    scene: str | None = None  # None: the config's SIM_SCENE
    duration_s: float = 60.0  # [s] wall-clock time to drive
    report_dir: str | None = None  # report.json (and the tub, unless tub_dir) go here
    port: int | None = None  # twin port; None: the config's SIM_PORT
    host: str | None = None  # twin host; None: the config's SIM_HOST
    mode: str = "local"  # drive mode at start: user | local_angle | local
    web_port: int | None = None  # web controller port; None: the config's WEB_CONTROL_PORT, 0: any free
    tub_dir: str | None = None  # where to record; None: DIR/tub when report_dir is set, else no recording
    car_dir: str = str(DEFAULT_CAR_DIR)
    myconfig: str = "myconfig.py"
    overrides: dict = field(default_factory=dict)  # any other config keys
    plots: bool = True  # trajectory.png and cte_speed.png next to report.json
    pilot: object | None = None  # an already built pilot part (`run(image) -> (angle, throttle)`), not model


class RunStats:
    """Last part of the loop: counts loops, keeps a trace of where the car was (pitlane.evaluate's Trace, for
    the same plots as an evaluation) and ends the drive after `duration_s` on its clock."""

    def __init__(self, vehicle, duration_s: float, twin=None, clock=time.monotonic) -> None:

        self.vehicle = vehicle
        self.duration_s = duration_s
        self.twin = twin
        self.clock = clock
        self.start_s: float | None = None
        self.last_s: float | None = None
        self.loops = 0
        self.trace = Trace()
        self._laps = self._off_track = 0

    def run(self, x, y, cte, speed, steering, throttle) -> None:
        now = self.clock()
        if self.start_s is None:
            self.start_s = now
        self.last_s = now
        self.loops += 1
        t = now - self.start_s
        if cte is not None and math.isfinite(cte):
            self.trace.append(
                t,
                float(x or 0.0),
                float(y or 0.0),
                float(cte),
                float(speed or 0.0),
                float(steering or 0.0),
                float(throttle or 0.0),
            )
        if self.twin is not None:
            if self.twin.laps_completed > self._laps:
                self._laps = self.twin.laps_completed
                self.trace.lap_end_s.append(t)
                self.trace.lap_times_s[:] = self.twin.lap_times_s
            if self.twin.off_track_events > self._off_track:
                self._off_track = self.twin.off_track_events
                self.trace.off_track_s.append(t)
        if t >= self.duration_s:
            self.vehicle.on = False

    @property
    def abs_cte(self) -> list[float]:
        """|CTE| [m] of every loop with a finite CTE (the trace keeps the signed values)."""
        return [abs(c) for c in self.trace.cte_m]

    @property
    def loop_hz(self) -> float:
        if self.start_s is None or self.last_s is None or self.loops < 2 or self.last_s <= self.start_s:
            return 0.0
        return (self.loops - 1) / (self.last_s - self.start_s)


def twin_reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _start_twin(host: str, port: int):
    """A twin server in this process (background threads) when nobody answers at host:port (0: any port)."""
    if port and twin_reachable(host, port):
        logger.info("twin found at %s:%d", host, port)
        return None
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"no twin answers at {host}:{port}; start one there with `pitlane twin serve`")

    server = TwinServer(host, port=port)
    try:
        server.start()
    except OSError as exc:
        raise UserError(f"cannot start the twin on {host}:{port}: {exc}") from None
    logger.info("started the twin in-process on %s:%d", host, server.port)
    return server


def _catch_loop_error(vehicle) -> list[str]:
    """Wrap the vehicle's loop body so an exception that ends donkeycar's loop is kept for the report
    (donkeycar's Vehicle.start prints it and returns as if the drive had finished)."""
    caught: list[str] = []
    update_parts = vehicle.update_parts

    def guarded() -> None:
        try:
            update_parts()
        except Exception as exc:
            caught.append(f"{type(exc).__name__}: {exc}")
            logger.error("the drive loop died: %s: %s", type(exc).__name__, exc)
            raise

    vehicle.update_parts = guarded
    return caught


def _car_config(opts: RunOptions):
    """The car app's config for a headless run: the options' overrides on the car folder's config, checked."""
    if not (opts.duration_s > 0 and math.isfinite(opts.duration_s)):
        raise UserError(f"--max-seconds must be a positive number of seconds, got {opts.duration_s}")
    if opts.profile != "twin":
        raise UserError(
            "`pitlane car run` drives the twin (--profile twin); on a Pi run the car app's "
            "`python manage.py drive --model PATH`"
        )
    overrides = {
        "WEB_INIT_MODE": opts.mode,
        "SIM_RECORD_LOCATION": True,
        "RECORD_DURING_AI": True,
        "DONKEY_GYM": False,
        **opts.overrides,
    }
    for key, value in (
        ("SIM_SCENE", opts.scene),
        ("SIM_PORT", opts.port or None),
        ("SIM_HOST", opts.host),
        ("WEB_CONTROL_PORT", opts.web_port),
    ):
        if value is not None:
            overrides[key] = value
    cfg = load_car_config(opts.car_dir, opts.myconfig, profile=opts.profile, overrides=overrides)
    if opts.model and opts.pilot is None and not Path(opts.model).is_file():
        raise UserError(f"model {opts.model} does not exist")
    return cfg


def _car_block(cfg, opts: RunOptions, car: Car, stats: RunStats, started: float, loop_error: list[str]):
    """The report's `car` block: loop rate, the watchdog's stops, reconnects, the tub."""
    twin, events = car.twin, car.watchdog.events
    return CarRun(
        profile=cfg.PITLANE_PROFILE,
        mode=opts.mode,
        loops=stats.loops,
        loop_hz=round(stats.loop_hz, 2),
        stops=[e.to_json(t0_s=started) for e in events],  # the watchdog's clock is monotonic too
        stop_counts=dict(Counter(e.reason for e in events)),
        twin_reconnects=twin.reconnects if twin else 0,
        tub=car.tub_path if car.tub_writer else None,
        tub_records=car.tub_writer.tub.manifest.current_index if car.tub_writer else 0,
        web_port=car.web.bound_port,
        loop_error=loop_error[0] if loop_error else None,
        records_skipped_nonfinite=getattr(car.tub_writer, "skipped_nonfinite", 0),
    )


def _model_info(opts: RunOptions, car: Car) -> ModelInfo:
    """The model as the report names it: a loaded ModelPilot's own digest (taken when it loaded)."""
    if not opts.model:
        return ModelInfo("")
    pilot = car.pilot
    digest = pilot.digest if isinstance(pilot, ModelPilot) else file_digest(opts.model)
    return ModelInfo(Path(opts.model).name, digest, getattr(pilot, "model_type", "") or "")


def run_car(opts: RunOptions) -> Report:
    """Drive for opts.duration_s and return (and write, with report_dir) the report."""
    cfg = _car_config(opts)
    report_dir = Path(opts.report_dir) if opts.report_dir else None
    tub_dir = opts.tub_dir or (str(report_dir / "tub") if report_dir else None)

    # --port 0: a fresh in-process twin on any free port
    server = _start_twin(cfg.SIM_HOST, 0 if opts.port == 0 else cfg.SIM_PORT)
    if server is not None:
        cfg.SIM_PORT = server.port
    try:
        car = build_car(cfg, opts.model, pilot=opts.pilot, tub_path=tub_dir, record=tub_dir is not None)
        if car.autopilot_refusal and opts.mode != "user":
            car.vehicle.stop()
            raise UserError(f"{car.autopilot_refusal}; refusing to drive in {opts.mode} mode")
        stats = RunStats(car.vehicle, opts.duration_s, twin=car.twin)
        car.vehicle.add(
            stats, inputs=["pos/pos_x", "pos/pos_z", "pos/cte", "pos/speed", "steering", "throttle"]
        )
        car.web.recording = tub_dir is not None  # the record switch of the web page, on from the start
        loop_error = _catch_loop_error(car.vehicle)
        started = time.monotonic()
        car.start()
        wall_s = time.monotonic() - started
    finally:
        if server is not None:
            server.stop()

    run = _car_block(cfg, opts, car, stats, started, loop_error)
    # the track is the scene at the twin's seed: ours when we started it, else the default 0
    seed = server.seed if server is not None else 0
    track = load_scene(cfg.SIM_SCENE, rand_seed=seed)
    episode = Episode(
        stats.trace,
        laps_completed=car.twin.laps_completed if car.twin else 0,
        end_reason=END_TIME_LIMIT,  # a car run drives on a clock
        progress_m=None,  # the car sees telemetry, not the twin's centerline progress
        wall_seconds=wall_s,
    )
    params = EvalParams(laps=1, seed=seed, control_hz=float(cfg.DRIVE_LOOP_HZ), max_seconds=opts.duration_s)
    report = summarize(episode, track, _model_info(opts, car), params, scene=cfg.SIM_SCENE, car=run)
    report = replace(report, nonfinite_outputs=car.watchdog.nonfinite_loops)  # loops stopped for NaN/inf
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        if opts.plots and stats.trace.time_s:
            report = replace(report, plots=write_plots(track, stats.trace, report, report_dir))
        write_report(report, report_dir, stats.trace)
        logger.info("wrote %s", report_dir / REPORT_FILE)
    return report
