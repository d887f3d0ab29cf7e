"""An evaluation episode as data: the per-step trace, and the report (metrics) computed from it.

Pure numpy: `summarize` turns a trace into a `Report`; `write_report` / `load_report` move it to and from
`report.json` (plus `trace.npz`, so plots can be redrawn without driving again).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.errors import UserError

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
        with np.load(path) as z:
            return cls(**{f.name: z[f.name].tolist() for f in dataclasses.fields(cls)})


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
    control_hz: float  # [Hz] pilot rate
    track_length_m: float  # [m]
    track_width_m: float  # [m]
    progress_m: float  # [m] distance driven along the centerline
    model_type: str = ""
    plots: list[str] = field(default_factory=list)  # file names of the plots next to report.json
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(
    trace: Trace,
    *,
    scene: str,
    model: str,
    model_digest: str,
    model_type: str,
    laps_requested: int,
    laps_completed: int,
    end_reason: str,
    wall_seconds: float,
    seed: int,
    control_hz: float,
    track_length_m: float,
    track_width_m: float,
    progress_m: float,
) -> Report:
    """Metrics of one episode from its trace (pure)."""
    if end_reason not in END_REASONS:
        raise ValueError(f"unknown end reason {end_reason!r}")
    a = trace.arrays()
    cte = np.abs(a["cte_m"])
    speed = a["speed_mps"]
    return Report(
        scene=scene,
        model=model,
        model_digest=model_digest,
        model_type=model_type,
        laps_requested=int(laps_requested),
        laps_completed=int(laps_completed),
        lap_times=[round(float(t), 3) for t in trace.lap_times_s],
        mean_abs_cte=round(float(cte.mean()), 4) if cte.size else 0.0,
        max_abs_cte=round(float(cte.max()), 4) if cte.size else 0.0,
        off_track_events=len(trace.off_track_s),
        mean_speed=round(float(speed.mean()), 4) if speed.size else 0.0,
        steps=len(trace.time_s),
        sim_seconds=round(float(trace.time_s[-1]), 3) if trace.time_s else 0.0,
        wall_seconds=round(float(wall_seconds), 3),
        end_reason=end_reason,
        seed=int(seed),
        control_hz=float(control_hz),
        track_length_m=round(float(track_length_m), 3),
        track_width_m=float(track_width_m),
        progress_m=round(float(progress_m), 3),
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
        data = json.loads(p.read_text())
        known = {f.name for f in dataclasses.fields(Report)}
        return Report(**{k: v for k, v in data.items() if k in known})
    except FileNotFoundError:
        raise UserError(f"no evaluation report at {p}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{p} is not a pitlane evaluation report: {exc}") from None
