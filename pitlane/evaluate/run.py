"""Closed-loop evaluation: a pilot drives laps in the twin, in-process, at the car's control rate.

Each control step renders the camera frame, asks the pilot for (angle, throttle) and advances the twin by one
control period, as donkeycar's vehicle loop does on the car. The episode ends when the requested laps are
done, when the car leaves the road, or at a simulated time limit; the report says which.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from pitlane.errors import UserError
from pitlane.evaluate.plots import render_plots
from pitlane.evaluate.report import (
    END_LAPS,
    END_OFF_TRACK,
    END_TIME_LIMIT,
    MAX_SECONDS,
    Episode,
    EvalParams,
    ModelInfo,
    Report,
    Trace,
    summarize,
    write_report,
)
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE, load_scene, recoloured
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control
from pitlane.twin.world import HIT_OFF_TRACK, WorldParams

log = logging.getLogger(__name__)

PilotFn = Callable[[np.ndarray], tuple[float, float]]


class Pilot(Protocol):
    """Who drives an evaluation: a `pitlane.pilots.model.ModelPilot` or the `ExpertPilot`. Its identity goes
    into every report as made once, with the pilot: the model file's name and digest (the expert has none)."""

    @property
    def name(self) -> str: ...  # the model file's name, or "expert"

    @property
    def digest(self) -> str: ...  # sha256:<hex> of the model's bytes; "" for the expert

    @property
    def model_type(self) -> str: ...

    def bound_to(self, sim: Sim) -> Pilot: ...  # for one run's sim: a camera check, or a fresh expert

    def run(self, frame: np.ndarray) -> tuple[float, float]: ...


def drive(pilot: PilotFn, sim, params: EvalParams) -> Episode:
    """Drive `pilot` in `sim` (a pitlane.twin.Sim) from a reset until laps, off-track or the time limit."""
    t0 = time.perf_counter()
    start_s = sim.reset(seed=params.seed).progress_m % sim.track.length_m
    dt = 1.0 / params.control_hz
    limit = params.time_limit_s(sim.track.length_m)
    trace = Trace()
    bar = None
    if params.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=params.laps,
            unit="lap",
            desc=sim.track.name,
            leave=False,
            bar_format="{desc}: {n:.1f}/{total} laps |{bar}| {elapsed}",
        )
    try:
        end_reason = _loop(pilot, sim, params, dt, limit, trace, bar)
    finally:
        if bar is not None:
            bar.close()
    tel = sim.telemetry
    return Episode(
        trace,
        int(tel.laps_completed),
        end_reason,
        float(tel.progress_m),
        time.perf_counter() - t0,
        start_s,
    )


def _loop(pilot: PilotFn, sim, params: EvalParams, dt: float, limit: float, trace: Trace, bar) -> str:

    length = sim.track.length_m
    while True:
        angle, throttle = pilot(sim.render())
        finite = math.isfinite(angle) and math.isfinite(throttle)
        if finite:
            control = Control(steering=angle, throttle=throttle).clamped()
        else:  # what the car's watchdog does: throttle 0 and brake; counted, and the gate fails on it
            control = Control(steering=0.0, throttle=0.0, brake=1.0)
        tel = sim.step(control, dt)
        if not finite:
            trace.nonfinite_s.append(float(tel.time_s))
        trace.append(
            tel.time_s, tel.x_m, tel.y_m, tel.cte_m, tel.speed_mps, control.steering, control.throttle
        )
        if tel.lap_time_s is not None:
            trace.lap_times_s.append(float(tel.lap_time_s))
            trace.lap_end_s.append(float(tel.time_s))
        if bar is not None and len(trace.time_s) % 20 == 0:
            bar.update(min(params.laps, max(0.0, tel.progress_m / length)) - bar.n)  # tqdm throttles redraws
        if tel.laps_completed >= params.laps:
            return END_LAPS
        if tel.hit == HIT_OFF_TRACK:
            trace.off_track_s.append(float(tel.time_s))
            return END_OFF_TRACK
        if tel.time_s >= limit - 1e-9:
            return END_TIME_LIMIT


def resolve_scenes(scenes: tuple[str, ...] | list[str], seed: int) -> None:
    """UserError naming every scene that does not load, before any of them drives."""
    bad = []
    for scene in scenes:
        try:
            scene_track(scene, seed)
        except UserError as exc:
            bad.append(str(exc))
    if bad:
        raise UserError("; ".join(bad))


def scene_track(scene: str, seed: int = 0, direction: str | None = None):
    """The track of a scene name or track JSON path, driven `direction` (cw | ccw; None: as listed);
    UserError (one line) for an unknown one."""
    try:
        return load_scene(scene, rand_seed=seed).oriented(direction)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def make_sim(scene: str, params: EvalParams) -> Sim:
    """The twin for one run: the scene's track in the run's direction, random start and randomisation."""
    track = scene_track(scene, params.seed, params.direction)
    world = WorldParams(random_start=params.random_start)
    randomize = DomainRandomization() if params.randomize else None
    if params.randomize:  # the texture too: the scene's colours of ground, road and sky drawn from the seed
        track = recoloured(track, params.seed)
    return Sim(track, seed=params.seed, params=world, randomize=randomize)


@dataclass(frozen=True)
class Outcome:
    """What one run gives back, before anything is written: the report, the trace and the plots' bytes.

    Plain data (no file, no TensorFlow object), so a run can be driven in another process or on another
    machine and its outcome written where the reports are collected, byte for byte as here."""

    report: Report
    trace: Trace
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes; {} without plots


def run_one(pilot: Pilot, scene: str, params: EvalParams) -> Outcome:
    """One evaluation as a pure function of (pilot, scene, params): drive, summarise, draw the plots
    (`params.plots`). The same seed gives the same outcome in any process (wall_seconds aside)."""
    if (
        params.max_seconds is not None and params.max_seconds > MAX_SECONDS
    ):  # an evaluation ends in bounded time
        raise UserError(f"max seconds must be <= {MAX_SECONDS:.0f}, got {params.max_seconds}")
    sim = make_sim(scene, params)
    track = sim.track
    driver = pilot.bound_to(sim)
    model = ModelInfo(pilot.name, pilot.digest, pilot.model_type)
    log.info("evaluating %s on %s for %d laps", pilot.name, scene, params.laps)
    ep = drive(driver.run, sim, params)
    report = summarize(ep, track, model, params, scene=scene)
    plots = render_plots(track, ep.trace, report) if params.plots else {}
    return Outcome(replace(report, plots=list(plots)), ep.trace, plots)


def write_outcome(outcome: Outcome, report_dir: str | Path) -> Path:
    """report.json, trace.npz and the plots of one run into `report_dir`; the report's path."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in outcome.plots.items():
        (out / name).write_bytes(data)
    return write_report(outcome.report, out, outcome.trace)


def evaluate(
    pilot: Pilot,
    scene: str = DEFAULT_SCENE,
    params: EvalParams | None = None,
    report_dir: str | Path | None = None,
) -> Report:
    """Drive `pilot` in `scene` as `params` say; write report.json (+ plots) to `report_dir`.

    `params` defaults to `EvalParams()`. `pilot` is a loaded `ModelPilot` (the gate loads a model once for
    all its scenes and runs) or `ExpertPilot()` (pure pursuit on the twin's ground truth, no perturbation:
    the baseline a model is compared with); the report names it by `pilot.name` and `pilot.digest`.
    """
    params = params or EvalParams()
    if report_dir is None:  # plots are drawn only to be written
        params = replace(params, plots=False)
    outcome = run_one(pilot, scene, params)
    if report_dir is not None:
        write_outcome(outcome, report_dir)
    return outcome.report
