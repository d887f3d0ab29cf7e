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
from dataclasses import replace
from pathlib import Path

import numpy as np

from pitlane.errors import UserError
from pitlane.evaluate.plots import write_plots
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
from pitlane.pilots.expert import ExpertPilot
from pitlane.pilots.model import ModelPilot
from pitlane.provenance import file_digest
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE, load_scene, recoloured
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control
from pitlane.twin.world import HIT_OFF_TRACK, WorldParams

log = logging.getLogger(__name__)

PilotFn = Callable[[np.ndarray], tuple[float, float]]
EXPERT = "expert"  # the model name that drives the expert instead of a model


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


def evaluate(
    model_path: str | Path,
    scene: str = DEFAULT_SCENE,
    params: EvalParams | None = None,
    report_dir: str | Path | None = None,
    *,
    pilot=None,
    threads: int | None = 1,
) -> Report:
    """Drive the model at `model_path` in `scene` as `params` say; write report.json (+ plots) to `report_dir`.

    `params` defaults to `EvalParams()`; `pilot` may be an already loaded ModelPilot (the gate loads a model
    once for several scenes). `model_path` EXPERT drives the expert (pure pursuit on the twin's ground
    truth, no perturbation): the baseline a model is compared with.
    """
    params = params or EvalParams()
    if (
        params.max_seconds is not None and params.max_seconds > MAX_SECONDS
    ):  # an evaluation ends in bounded time
        raise UserError(f"max seconds must be <= {MAX_SECONDS:.0f}, got {params.max_seconds}")
    sim = make_sim(scene, params)
    track = sim.track
    if str(model_path) == EXPERT:
        pilot = ExpertPilot(sim)
        model = ModelInfo(EXPERT, "", EXPERT)
    else:
        h, w, d = sim.render().shape
        frame_shape = (int(h), int(w), int(d))
        if pilot is None:
            pilot = ModelPilot(model_path, camera_shape=frame_shape, threads=threads)
        else:
            pilot.check_camera(frame_shape)
        model = ModelInfo(Path(model_path).name, file_digest(model_path), getattr(pilot, "model_type", ""))
    log.info("evaluating %s on %s for %d laps", Path(model_path).name, scene, params.laps)
    ep = drive(pilot.run, sim, params)
    report = summarize(ep, track, model, params, scene=scene)
    if report_dir is not None:
        if params.plots:
            report = replace(report, plots=write_plots(track, ep.trace, report, report_dir))
        write_report(report, report_dir, ep.trace)
    return report
