"""An evaluation episode as data: its parameters, the per-step trace, and the report computed from it.

One report schema for `pitlane evaluate` (and the gate) and `pitlane car run`: a car run is an evaluation on
a wall clock, so it writes the same `Report`, plus a `car` block (loop rate, watchdog stops, tub) that an
evaluation leaves empty. Pure numpy: `summarize` turns an episode into a `Report`; `write_report` /
`load_report` move it to and from `report.json` (plus `trace.npz`, so plots can be redrawn without driving).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.errors import UserError
from pitlane.twin.track import DIRECTIONS, Track
from pitlane.twin.world import CONTROL_HZ

END_LAPS = "laps_completed"
END_OFF_TRACK = "off_track"
END_TIME_LIMIT = "time_limit"
END_REASONS: tuple[str, ...] = (END_LAPS, END_OFF_TRACK, END_TIME_LIMIT)
REPORT_FILE = "report.json"
TRACE_FILE = "trace.npz"
SCHEMA = "pitlane.eval-report/1"


@dataclass
class Trace:
    """Per control step, after the step: where the car was and what the pilot asked for."""

    time_s: list[float] = field(default_factory=list)  # [s] simulated time
    x_m: list[float] = field(default_factory=list)  # [m]
    y_m: list[float] = field(default_factory=list)  # [m]
    cte_m: list[float] = field(default_factory=list)  # [m] signed, + = right of the centerline
    speed_mps: list[float] = field(default_factory=list)  # [m/s]
    steering: list[float] = field(default_factory=list)  # [-1, 1] pilot output after clamping
    throttle: list[float] = field(default_factory=list)  # [-1, 1]
    lap_end_s: list[float] = field(default_factory=list)  # [s] simulated time at which each lap ended
    lap_times_s: list[float] = field(default_factory=list)  # [s] duration of each completed lap
    off_track_s: list[float] = field(default_factory=list)  # [s] times the car left the road
    nonfinite_s: list[float] = field(default_factory=list)  # [s] times the pilot returned NaN or infinity

    def append(
        self, t: float, x: float, y: float, cte: float, speed: float, steer: float, thr: float
    ) -> None:
        self.time_s.append(t)
        self.x_m.append(x)
        self.y_m.append(y)
        self.cte_m.append(cte)
        self.speed_mps.append(speed)
        self.steering.append(steer)
        self.throttle.append(thr)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name), dtype=np.float64) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        with np.load(path) as z:  # a trace saved before a field existed leaves that field empty
            return cls(**{f.name: z[f.name].tolist() for f in dataclasses.fields(cls) if f.name in z})


MAX_LAPS = 100  # laps per scene: a gate or an evaluation must end in bounded time
MAX_SECONDS = 3600.0  # [s] simulated time limit of an evaluation or a gate scene, same reason


@dataclass(frozen=True)
class EvalParams:
    laps: int = 3
    seed: int = 0  # twin seed (start pose noise, randomisation); the track is the scene's
    control_hz: float = CONTROL_HZ  # [Hz] pilot rate, donkeycar's DRIVE_LOOP_HZ
    max_seconds: float | None = None  # [s] simulated time limit; None = derived from the track length
    min_avg_speed_mps: float = 0.4  # [m/s] the derived limit allows the laps at this average speed
    plots: bool = True
    progress: bool = False  # tqdm bar over laps on stderr
    direction: str | None = None  # "cw" | "ccw": around the loop seen from above; None = the track's order
    random_start: bool = False  # start at a point of the loop drawn from the seed (laps count from the line)
    randomize: bool = False  # domain randomisation of the frames (light, tint, noise, camera jitter), seeded

    def __post_init__(self) -> None:
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise UserError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if not 1 <= self.laps <= MAX_LAPS:
            raise UserError(f"laps must be between 1 and {MAX_LAPS}, got {self.laps}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        if not self.control_hz > 0:
            raise UserError(f"control rate must be > 0 Hz, got {self.control_hz}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise UserError(f"max seconds must be > 0, got {self.max_seconds}")

    def time_limit_s(self, track_length_m: float) -> float:
        if self.max_seconds is not None:
            return float(self.max_seconds)
        laps = self.laps + (1 if self.random_start else 0)  # a random start drives to the line first
        return 10.0 + laps * track_length_m / self.min_avg_speed_mps

    @property
    def run_name(self) -> str:
        """A short name of this run's conditions, unique among the runs of one evaluation."""
        parts = [self.direction or "fwd", f"seed{self.seed}"]
        parts += ["rs"] if self.random_start else []
        parts += ["dr"] if self.randomize else []
        return "-".join(parts)


@dataclass(frozen=True)
class Episode:
    """One drive, as it happened: the trace and how it ended."""

    trace: Trace
    laps_completed: int
    end_reason: str  # one of END_REASONS
    progress_m: float | None  # [m] along the centerline; None when not measured (a car run)
    wall_seconds: float  # [s]
    start_s_m: float = 0.0  # [m] where the car started along the centerline


@dataclass(frozen=True)
class ModelInfo:
    """Which model drove: its file name, content digest and donkeycar model type ("" when unknown)."""

    name: str
    digest: str = ""  # "sha256:<hex>"
    type: str = ""


@dataclass(frozen=True)
class CarRun:
    """What only a car run has: the donkeycar loop on a wall clock, its watchdog and its tub."""

    profile: str  # twin | pi
    mode: str  # drive mode at start: user | local_angle | local
    loops: int
    loop_hz: float  # [Hz] the loop rate achieved (the report's control_hz is the target)
    stops: list[dict]  # every watchdog stop: reason, time [s] since the start, ...
    stop_counts: dict[str, int]  # stops per reason
    twin_reconnects: int
    tub: str | None  # the tub recorded, None when not recording
    tub_records: int
    web_port: int | None  # the web controller's port
    loop_error: str | None = None  # the exception that ended the drive loop early; None when it ran out
    records_skipped_nonfinite: int = 0  # records kept out of the tub for a NaN/inf value


@dataclass(frozen=True)
class Report:
    """What the gate and a person look at after a model drove in the twin."""

    scene: str
    model: str  # model file name
    model_digest: str  # "sha256:<hex>" of the model file
    laps_requested: int
    laps_completed: int
    lap_times: list[float]  # [s] simulated time per completed lap
    mean_abs_cte: float  # [m]
    max_abs_cte: float  # [m]
    off_track_events: int  # times the car left the road (the episode ends at the first)
    mean_speed: float  # [m/s]
    steps: int  # control steps driven
    sim_seconds: float  # [s] simulated time driven
    wall_seconds: float  # [s] real time the episode took, rendering and inference included
    end_reason: str  # one of END_REASONS
    seed: int
    control_hz: float  # [Hz] pilot rate (a car run: DRIVE_LOOP_HZ, the target)
    track_length_m: float  # [m]
    track_width_m: float  # [m]
    progress_m: float | None  # [m] distance driven along the centerline; None when not measured
    model_type: str = ""
    nonfinite_outputs: int = 0  # control steps whose pilot output was NaN or infinite (driven as a stop)
    plots: list[str] = field(default_factory=list)  # file names of the plots next to report.json
    car: CarRun | None = None  # a car run's loop, watchdog and tub; None for an evaluation
    direction: str = ""  # "cw" | "ccw" when asked for; "" = the track's own driving order
    start_s_m: float = 0.0  # [m] where the car started along the track's centerline
    random_start: bool = False
    randomize: bool = False  # frames were domain-randomised
    run: str = ""  # the run's name among several (EvalParams.run_name); "" for a single run
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("car"), dict):
            values["car"] = CarRun(**values["car"])
        return cls(**values)


def summarize(
    episode: Episode,
    track: Track,
    model: ModelInfo,
    params: EvalParams,
    *,
    scene: str | None = None,
    car: CarRun | None = None,
) -> Report:
    """Metrics of one episode (pure). `scene` is the name asked for (default: the track's; a track file's
    path stays a path). A car run (`car` given) asks for no laps: laps_requested is 0."""
    if episode.end_reason not in END_REASONS:
        raise ValueError(f"unknown end reason {episode.end_reason!r}")
    trace = episode.trace
    a = trace.arrays()
    cte = np.abs(a["cte_m"])
    speed = a["speed_mps"]
    return Report(
        scene=scene or track.name,
        model=model.name,
        model_digest=model.digest,
        model_type=model.type,
        laps_requested=0 if car is not None else int(params.laps),
        laps_completed=int(episode.laps_completed),
        lap_times=[round(float(t), 3) for t in trace.lap_times_s],
        mean_abs_cte=round(float(cte.mean()), 4) if cte.size else 0.0,
        max_abs_cte=round(float(cte.max()), 4) if cte.size else 0.0,
        off_track_events=len(trace.off_track_s),
        nonfinite_outputs=len(trace.nonfinite_s),
        mean_speed=round(float(speed.mean()), 4) if speed.size else 0.0,
        steps=len(trace.time_s),
        sim_seconds=round(float(trace.time_s[-1]), 3) if trace.time_s else 0.0,
        wall_seconds=round(float(episode.wall_seconds), 3),
        end_reason=episode.end_reason,
        seed=int(params.seed),
        control_hz=float(params.control_hz),
        track_length_m=round(float(track.length_m), 3),
        track_width_m=float(track.width_m),
        progress_m=None if episode.progress_m is None else round(float(episode.progress_m), 3),
        car=car,
        direction=params.direction or "",
        start_s_m=round(float(episode.start_s_m), 3),
        random_start=params.random_start,
        randomize=params.randomize,
    )


def write_report(report: Report, report_dir: str | Path, trace: Trace | None = None) -> Path:
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    if trace is not None:
        trace.save(out / TRACE_FILE)
    path = out / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def load_report(report_dir_or_file: str | Path) -> Report:
    p = Path(report_dir_or_file)
    if p.is_dir():
        p = p / REPORT_FILE
    try:
        return Report.from_json(json.loads(p.read_text()))
    except FileNotFoundError:
        raise UserError(f"no evaluation report at {p}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{p} is not a pitlane evaluation report: {exc}") from None
