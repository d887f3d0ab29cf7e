"""Collect driving data: the expert drives the twin in-process and donkeycar's own Tub records it.

One record per control period (20 Hz of simulated time by default): the camera frame at the current
pose, the expert's *correct* command for that pose as ``user/angle``/``user/throttle`` (the car executes
a perturbed one, see ``pilots.expert``), and the twin's ground truth under donkeycar's
``SIM_RECORD_LOCATION`` keys. Each scene is one donkeycar session of the tub. The simulation runs as fast
as the machine allows; a writer thread (or child process) runs donkeycar's JPEG + catalog writing while
the twin renders the next frame.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.data import tubfiles
from pitlane.data.check import check_tub, expected_shape
from pitlane.data.tub import (
    ANGLE_KEY,
    CAMERA_KEY,
    IMAGES,
    INPUTS,
    MANIFEST,
    MODE_KEY,
    NEW_SESSION,
    THROTTLE_KEY,
    TYPES,
    is_tub,
    read_raw_tub,
    tub_metadata,
    write_tub_from_queue,
)
from pitlane.errors import UserError
from pitlane.pilots.expert import NOISE_PRESETS, ExpertDriver, NoiseParams
from pitlane.twin.camera import CameraParams
from pitlane.twin.family import family_style
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE, load_scene, recoloured, restyled
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control
from pitlane.twin.world import CONTROL_HZ, HIT_NONE

log = logging.getLogger(__name__)
_MIN_PLAN_SPEED_MPS = 0.4  # [m/s] a lap slower than this on average means the car is stuck: stop the scene


@dataclass(frozen=True)
class SceneResult:
    scene: str
    records: int
    laps: int
    mean_abs_cte_m: float
    max_abs_cte_m: float
    off_track_records: int
    sim_time_s: float  # [s] simulated
    drive_wall_s: float = 0.0  # [s] wall time of the driving loop alone (no start-up, no final flush)


@dataclass(frozen=True)
class CollectSummary:
    out: Path
    scenes: tuple[SceneResult, ...]
    wall_s: float
    noise: NoiseParams = field(default_factory=NoiseParams)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.scenes)

    @property
    def laps(self) -> int:
        return sum(s.laps for s in self.scenes)

    @property
    def mean_abs_cte_m(self) -> float:
        return sum(s.mean_abs_cte_m * s.records for s in self.scenes) / max(self.records, 1)

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else 0.0

    def describe(self) -> str:
        lines = [
            f"{s.scene}: {s.records} records, {s.laps} laps, mean |CTE| {s.mean_abs_cte_m:.3f} m, "
            f"max |CTE| {s.max_abs_cte_m:.3f} m, {s.off_track_records} off-track, "
            f"{s.sim_time_s:.1f} s simulated"
            for s in self.scenes
        ]
        lines.append(
            f"wrote {self.records} records ({self.laps} laps, mean |CTE| {self.mean_abs_cte_m:.3f} m) "
            f"to {self.out} in {self.wall_s:.1f} s: {self.records_per_s:.0f} records/s"
        )
        return "\n".join(lines)


def noise_from_flags(
    preset: str | NoiseParams = "light",
    steer_std: float | None = None,
    drift_per_s: float | None = None,
    speed_var: float | None = None,
) -> NoiseParams:
    """A noise preset (none | light | heavy) with optional numeric overrides."""
    if isinstance(preset, NoiseParams):
        base = preset
    elif preset in NOISE_PRESETS:
        base = NOISE_PRESETS[preset]
    else:
        raise UserError(f"unknown noise preset {preset!r}; use one of {', '.join(NOISE_PRESETS)}")
    overrides = {"steer_std": steer_std, "drift_per_s": drift_per_s, "speed_var": speed_var}
    for name, value in overrides.items():
        if value is not None and not (value >= 0.0 and np.isfinite(value)):
            raise UserError(f"noise {name} must be a finite number >= 0, got {value}")
    return replace(base, **{k: float(v) for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


_IMAGE_INDEX_RE = re.compile(r"^(\d+)_")


def _check_out(out: Path, shape: tuple[int, int, int]) -> None:
    """Refuse an --out that donkeycar would corrupt or mix with other data.

    donkeycar appends at the manifest's ``current_index`` and names images after it, so a tub whose
    manifest is behind its catalogs or images (a writer that crashed, a copied manifest) would get old
    images overwritten and old records paired with new frames: such a tub is refused until
    ``pitlane data check --fix`` has made it consistent.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a tub folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not is_tub(out):
        raise UserError(f"--out {out} is a non-empty folder that is not a tub; choose a new folder")
    raw = read_raw_tub(out)
    if raw.unsafe:
        raise UserError(f"--out {out}: {raw.unsafe[0]}; choose a new folder")
    if raw.manifest_error or (raw.inputs, raw.types) != (list(INPUTS), list(TYPES)):
        raise UserError(
            f"--out {out} is a tub with other inputs ({raw.manifest_error or raw.inputs}); "
            "choose a new folder"
        )
    last = raw.catalogs[-1].name if raw.catalogs else None
    written = [MANIFEST, *([last, last.removesuffix(".catalog") + ".catalog_manifest"] if last else [])]
    shared = [name for name in written if tubfiles.hard_links(out, name) > 1]
    if shared:
        raise UserError(f"--out {out}: {shared[0]} is hard-linked to another file; choose a new folder")
    fix = f"run `pitlane data check --fix {out}` first, or choose a new folder"
    tub_problems = [p for p in check_tub(out).problems if p.index is None]
    if tub_problems:
        raise UserError(f"--out {out}: {tub_problems[0].reason}; appending could overwrite records; {fix}")
    images = out / IMAGES
    if images.is_dir():
        taken = [
            p.name
            for p in images.iterdir()
            if (m := _IMAGE_INDEX_RE.match(p.name)) and int(m.group(1)) >= raw.current_index
        ]
        if taken:
            raise UserError(
                f"--out {out}: images/{taken[0]} (and {len(taken) - 1} more) would be overwritten by the "
                f"next records; {fix}"
            )
    tub_shape, source = expected_shape(raw, None)
    if source == "the tub's metadata" and tub_shape != shape:
        raise UserError(
            f"--out {out} holds {tub_shape} frames but the camera gives {shape}; choose a new folder"
        )


class _Writer:
    """Feeds records to ``write_tub_from_queue`` running in a thread (default), a child process, or inline.

    A thread overlaps file creation (slow on some disks) with rendering; a process also overlaps donkeycar's
    JPEG encoding, but pays for pickling every frame, which loses on a 2-core machine with a fast disk
    (bench/bench_collect.py). Records keep their order through one FIFO queue.
    """

    records: Any
    errors: Any
    worker: Any

    def __init__(self, out: Path, metadata: list[str], mode: str):
        self.mode = mode
        if mode == "process":
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
            self.records, self.errors = ctx.Queue(maxsize=256), ctx.Queue()
            level = logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG) else logging.WARNING
            self.worker = ctx.Process(
                target=write_tub_from_queue,
                name="pitlane-tub-writer",
                daemon=True,
                args=(str(out), metadata, self.records, self.errors, level),
            )
        elif mode == "thread":
            self.records, self.errors = queue.Queue(maxsize=256), queue.Queue()
            self.worker = threading.Thread(
                target=write_tub_from_queue,
                name="pitlane-tub-writer",
                daemon=True,
                args=(str(out), metadata, self.records, self.errors),
            )
        elif mode == "inline":
            from donkeycar.parts.tub_v2 import Tub

            self.tub = Tub(str(out), inputs=list(INPUTS), types=list(TYPES), metadata=metadata)
            return
        else:
            raise ValueError(f"writer mode must be process, thread or inline, not {mode!r}")
        self.worker.start()

    def _raise_if_failed(self) -> None:
        try:
            message = self.errors.get_nowait()
        except queue.Empty:
            return
        raise RuntimeError(message)

    def write(self, record: dict) -> None:
        if self.mode == "inline":
            self.tub.write_record(record)
            return
        while True:
            try:
                self.records.put(record, timeout=1.0)
                return
            except queue.Full:
                self._raise_if_failed()
                if not self.worker.is_alive():
                    raise RuntimeError("the tub writer stopped unexpectedly") from None

    def new_session(self) -> None:
        """Close and reopen the tub: donkeycar starts a new session (one per scene)."""
        if self.mode == "inline":
            from donkeycar.parts.tub_v2 import Tub

            self.tub.close()
            self.tub = Tub(self.tub.base_path, inputs=list(INPUTS), types=list(TYPES))
        else:
            self.write(NEW_SESSION)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.mode == "inline":
            self.tub.close()
            return
        if self.worker.is_alive():
            self.records.put(None)
        self.worker.join()
        self._raise_if_failed()
        if self.mode == "process" and self.worker.exitcode != 0:
            raise RuntimeError(f"the tub writer exited with code {self.worker.exitcode}")


# DAgger: the expert takes the wheel from the pilot beyond this fraction of the road width off the line, and
# gives it back once the car is within the second fraction (so the states recorded stay recoverable ones)
TAKEOVER_CTE_FRAC = 0.35
HANDBACK_CTE_FRAC = 0.1


@dataclass(frozen=True)
class Options:
    """How a collection drives beyond the expert's noise (each default is a plain expert collection)."""

    direction: str | None = None  # "cw" | "ccw" around the loop; None = the track's own driving order
    flip: bool = False  # also write each record mirrored left-right with its steering negated
    randomize: bool = False  # domain randomisation: the track's colours (from the seed) and per frame light,
    # tint, noise and camera jitter
    pilot: Callable[[np.ndarray], tuple[float, float]] | None = None  # DAgger: this pilot drives, the
    # expert labels every frame and takes over only far off the line
    style_seed: int | None = None  # with randomize: seed of the first scene's colours (None = the seed)
    line_styles: bool = False  # with randomize: the whole paint drawn (lines, floor), not only the colours
    frames: DomainRandomization = field(default_factory=DomainRandomization)  # with randomize: per frame
    record_every: int = 1  # write every k-th control period's record: 20 Hz frames are near copies, so
    # k = 2 gives the same training time twice the tracks

    def __post_init__(self) -> None:
        if not (isinstance(self.record_every, int) and self.record_every >= 1):
            raise UserError(f"record_every must be an integer >= 1, got {self.record_every!r}")


def _make_sim(scene: str, seed: int, camera, options: Options = Options(), index: int = 0):
    """The twin for the `index`-th scene of a collection (each scene its own colours when randomised)."""
    try:
        track = load_scene(scene, rand_seed=seed).oriented(options.direction)
        randomize = options.frames if options.randomize else None
        if options.randomize:  # the texture too: colours of ground, road and sky drawn from the seed
            style_seed = (seed if options.style_seed is None else options.style_seed) + 7919 * index
            if options.line_styles:  # and the lines' colours and layout, the floor's pattern
                track = restyled(track, family_style(style_seed))
            else:
                track = recoloured(track, style_seed)
        return Sim(track, seed=seed, camera=camera, randomize=randomize)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def flipped(record: dict) -> dict:
    """The record seen in a mirror: the frame flipped left-right, the steering and the CTE negated."""
    return {
        **record,
        CAMERA_KEY: np.ascontiguousarray(record[CAMERA_KEY][:, ::-1]),
        ANGLE_KEY: -record[ANGLE_KEY],
        "pos/cte": -record["pos/cte"],
    }


def _drive_scene(
    sim,
    scene: str,
    laps: int,
    seed: int,
    noise: NoiseParams,
    dt_s: float,
    writer: _Writer,
    bar,
    options: Options = Options(),
) -> SceneResult:
    driver = ExpertDriver(sim.track, noise=noise, seed=seed, dt_s=dt_s)
    t = sim.reset()
    start = time.perf_counter()
    max_steps = int(laps * sim.track.length_m / _MIN_PLAN_SPEED_MPS / dt_s) + 100
    cte = np.empty(max_steps)
    off, n, shown = 0, 0, 0.0
    expert_drives = False
    while t.laps_completed < laps and n < max_steps:
        frame = sim.render()
        label, executed = driver.act(t)
        record = {
            CAMERA_KEY: frame,
            ANGLE_KEY: label.steering,
            THROTTLE_KEY: label.throttle,
            MODE_KEY: "user",
            "pos/pos_x": t.x_m,
            "pos/pos_y": 0.0,
            "pos/pos_z": t.y_m,
            "pos/speed": abs(t.speed_mps),
            "pos/cte": t.cte_m,
        }
        if n % options.record_every == 0:  # every control period drives; every k-th is written
            writer.write(record)
            if options.flip:
                writer.write(flipped(record))
        if options.pilot is not None:
            far = abs(t.cte_m) > TAKEOVER_CTE_FRAC * sim.track.width_m
            near = abs(t.cte_m) < HANDBACK_CTE_FRAC * sim.track.width_m
            expert_drives = far or (expert_drives and not near)
            if not expert_drives:
                angle, throttle = options.pilot(frame)
                executed = Control(steering=float(angle), throttle=float(throttle)).clamped()
        cte[n], n = abs(t.cte_m), n + 1
        off += t.hit != HIT_NONE
        t = sim.step(executed, dt_s)
        if bar is not None and n % 20 == 0:
            done = min(
                laps, t.laps_completed + max(t.progress_m, 0.0) % sim.track.length_m / sim.track.length_m
            )
            bar.update(done - shown)
            shown = done
    if bar is not None:
        bar.update(t.laps_completed - shown)
    if t.laps_completed < laps:
        log.warning(
            "%s: the expert completed only %d of %d laps in %d records", scene, t.laps_completed, laps, n
        )
    return SceneResult(
        scene,
        -(-n // options.record_every) * (2 if options.flip else 1),  # written: a mirror beside each with flip
        t.laps_completed,
        float(cte[:n].mean()) if n else 0.0,
        float(cte[:n].max()) if n else 0.0,
        off,
        t.time_s,
        time.perf_counter() - start,
    )


def collect(
    scenes: str | Sequence[str] = DEFAULT_SCENE,
    laps: int = 2,
    out: Path | str = "data/tub",
    seed: int = 0,
    noise: str | NoiseParams = "light",
    record_hz: float = CONTROL_HZ,
    camera=None,
    progress: bool = True,
    writer: str = "thread",
    options: Options = Options(),
) -> CollectSummary:
    """Drive ``laps`` laps of each scene with the expert and record them into the tub at ``out``.

    An existing tub with pitlane's inputs is appended to (a new donkeycar session per scene).
    ``camera`` is an optional ``pitlane.twin.camera.CameraParams``; ``writer`` is where donkeycar's Tub runs:
    ``thread`` (default), ``process`` or ``inline``; ``options`` sets the direction, flipped records,
    randomised frames and a pilot that drives while the expert labels (DAgger).
    """
    names = (scenes,) if isinstance(scenes, str) else tuple(scenes)
    if not names:
        raise UserError("give at least one scene")

    for name in names:  # every scene (name or track file) must load before anything is written
        try:
            load_scene(name, rand_seed=seed)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if laps < 1:
        raise UserError(f"--laps must be at least 1, got {laps}")
    if not (record_hz > 0 and np.isfinite(record_hz)):
        raise UserError(f"record rate must be a positive number of Hz, got {record_hz}")
    noise_params = noise_from_flags(noise)
    out = Path(out)
    camera = camera or CameraParams()
    _check_out(out, (camera.img_h, camera.img_w, 3))
    label = noise if isinstance(noise, str) else "custom"
    metadata = tub_metadata(
        source="pitlane-twin",
        pilot="expert",
        scenes="+".join(names),
        seed=seed,
        noise=label,
        record_hz=record_hz,
        image_h=camera.img_h,  # the checker's expected frame shape (donkeycar's IMAGE_H/W/DEPTH)
        image_w=camera.img_w,
        image_depth=3,
        direction=options.direction or "",
        flip=options.flip,
        randomize=options.randomize,
        line_styles=options.line_styles,
        driver="pilot+expert" if options.pilot is not None else "expert",
    )
    from tqdm import tqdm

    start = time.perf_counter()
    results = []
    bar = tqdm(
        total=laps * len(names),
        unit="lap",
        disable=not progress,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.2f}/{total} laps [{elapsed}<{remaining}]",
    )
    tub_writer: _Writer | None = None
    try:
        for i, scene in enumerate(names):
            bar.set_description(scene)
            sim = _make_sim(scene, seed, camera, options, i)  # before the writer: a failing twin: no tub
            if tub_writer is None:
                tub_writer = _Writer(out, metadata, writer)
            else:
                tub_writer.new_session()
            results.append(
                _drive_scene(sim, scene, laps, seed, noise_params, 1.0 / record_hz, tub_writer, bar, options)
            )
    finally:
        bar.close()
        if tub_writer is not None:
            tub_writer.close()
    return CollectSummary(out, tuple(results), time.perf_counter() - start, noise_params)
