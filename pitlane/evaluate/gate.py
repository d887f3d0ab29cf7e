"""The gate: a model passes only if it drives well enough in the twin, on every scene of a policy.

The default policy is `GatePolicy()` (its defaults below are the one home of the default gate); a policy
file is a small YAML (or JSON) mapping that overrides the keys it names; `check` compares one report against it (pure),
`run_gate` evaluates a model on each scene of the policy and collects the verdicts, `format_table` (pitlane.gate_report) prints
them for a person (and the release pipeline's log). A policy is fully checked before anything drives: every
field in range (a negative threshold could pass a model that only outputs NaN), laps and time bounded,
every scene found; a bad policy is a UserError (exit 2), so exit 1 always means "the model failed".
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pitlane import tracking
from pitlane.errors import UserError
from pitlane.evaluate.executor import Executor, Job, Serial
from pitlane.evaluate.report import MAX_LAPS, MAX_SECONDS, EvalParams, Report
from pitlane.evaluate.run import Pilot, resolve_scenes, write_outcome
from pitlane.evaluate.runs import directions_of, run_params, summarize_runs, write_runs
from pitlane.gate_report import SCHEMA
from pitlane.gate_report import format_table as format_table  # the table lives with the report's format
from pitlane.twin.scenes import DEFAULT_SCENE

GATE_FILE = "gate.json"


def _integer(name: str, v: Any, low: int, high: int | None, what: str = "", required: bool = False) -> None:
    if v is None and not required:
        return
    in_range = isinstance(v, int) and not isinstance(v, bool) and low <= v and (high is None or v <= high)
    if not in_range:
        span = f"between {low} and {high}" if high is not None else f">= {low}"
        why = f" ({what})" if what else ""
        raise UserError(f"gate policy: {name} must be an integer {span}{why}, got {v!r}")


def _number(name: str, v: Any, low: float, high: float | None, open_low: bool = False) -> None:
    if v is None:
        return
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > low if open_low else v >= low) and (high is None or v <= high)
    if not ok:
        span = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise UserError(f"gate policy: {name} must be a number {span}, got {v!r}")


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds a model's evaluation must meet on every scene. None = not checked.

    The defaults are pitlane's default gate: what a model must do in the twin before the release pipeline
    signs it. Its scenes are the default recipe's training scenes."""

    scenes: tuple[str, ...] = (DEFAULT_SCENE, "mini_monaco")
    laps: int = 3  # laps driven per scene
    seed: int = 0  # twin seed
    max_seconds: float | None = (
        None  # [s] simulated time limit per scene; None = 10 s + laps x length / 0.4 m/s
    )
    min_laps_completed: int | None = 3  # all laps driven
    max_abs_cte: float | None = 0.45  # [m] never further than this from the centerline (road edge at width/2)
    max_mean_abs_cte: float | None = None  # [m]
    max_off_track_events: int | None = 0  # never off the road
    min_mean_speed: float | None = 0.5  # [m/s] not crawling
    max_nonfinite_outputs: int | None = 0  # never a NaN or infinite steering/throttle (the watchdog stops)
    # spread (optional; the defaults are one run per scene from the start line, as listed): one run per
    # seed and direction, each checked, and the completion rate over a scene's runs
    seeds: tuple[int, ...] = ()  # () = `seed` only
    direction: str | None = None  # ccw | cw | both; None = the track's own driving order
    random_start: bool = False
    randomize: bool = False
    min_completion_rate: float | None = None  # laps completed / laps asked over a scene's runs, 0..1

    def __post_init__(self) -> None:
        for s in self.seeds:
            _integer("seeds", s, 0, 2**32 - 1, "the twin's seeds", required=True)
        if self.direction is not None and self.direction not in ("ccw", "cw", "both"):
            raise UserError(f"gate policy: direction must be ccw, cw or both, got {self.direction!r}")
        for name in ("random_start", "randomize"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"gate policy: {name} must be true or false, got {getattr(self, name)!r}")
        _number("min_completion_rate", self.min_completion_rate, 0.0, 1.0)
        if not self.scenes or not all(isinstance(s, str) and s for s in self.scenes):
            raise UserError("gate policy: scenes must be a non-empty list of scene names")
        if len(set(self.scenes)) != len(self.scenes):
            raise UserError(f"gate policy: scenes are listed twice: {list(self.scenes)}")
        _integer("laps", self.laps, 1, MAX_LAPS, "laps per scene", required=True)
        _integer("seed", self.seed, 0, 2**32 - 1, "the twin's seed", required=True)
        _integer("min_laps_completed", self.min_laps_completed, 0, self.laps, "at most the laps driven")
        _integer("max_off_track_events", self.max_off_track_events, 0, None)
        _integer("max_nonfinite_outputs", self.max_nonfinite_outputs, 0, None)
        _number("max_seconds", self.max_seconds, 0.0, MAX_SECONDS, open_low=True)
        for name in ("max_abs_cte", "max_mean_abs_cte", "min_mean_speed"):
            _number(name, getattr(self, name), 0.0, None)

    def scene_dirs(self) -> dict[str, str]:
        """A report folder name per scene: the scene's name, or a track file's stem made safe and unique,
        so a scene given as a path can never put its report outside --report."""
        out: dict[str, str] = {}
        for i, scene in enumerate(self.scenes):
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(scene).stem).lstrip(".") or f"scene{i}"
            out[scene] = stem if stem not in out.values() else f"{stem}-{i}"
        return out

    @classmethod
    def from_dict(cls, d: Any, source: str = "policy") -> GatePolicy:
        if not isinstance(d, dict):
            raise UserError(f"{source}: a gate policy is a mapping of keys to thresholds")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
        values = dict(d)
        if "scenes" in values:
            scenes = values["scenes"]
            if scenes is not None and not isinstance(scenes, str | list | tuple):
                raise UserError(f"{source}: scenes must be a list of scene names, got {scenes!r}")
            values["scenes"] = (scenes,) if isinstance(scenes, str) else tuple(scenes or ())
        if "seeds" in values:
            seeds = values["seeds"]
            if seeds is not None and not isinstance(seeds, int | list | tuple):
                raise UserError(f"{source}: seeds must be a list of seeds, got {seeds!r}")
            values["seeds"] = (seeds,) if isinstance(seeds, int) else tuple(seeds or ())
        try:
            return cls(**values)
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scenes"] = list(self.scenes)
        d["seeds"] = list(self.seeds)
        return d

    def parts(self) -> list[str]:
        """The gate's parts, each drivable alone (`pitlane gate --only PART`) and aggregated after: one per
        scene and direction (`SCENE:DIRECTION`), or per scene when it drives each track's own order."""
        if self.direction is None:
            return list(self.scenes)
        return [f"{scene}:{d}" for scene in self.scenes for d in directions_of(self.direction)]

    def part_runs(
        self, part: str | None, plots: bool = True, progress: bool = False
    ) -> list[tuple[str, EvalParams]]:
        """(scene, run) of the gate in its order: every run, or those of one part (a scene alone, or a
        scene and direction); UserError for a part this policy has not."""
        runs = self.run_params(plots, progress)
        if part is None:
            return [(scene, p) for scene in self.scenes for p in runs]
        scene, direction = part, None
        if part not in self.scenes:
            scene, _, direction = part.rpartition(":")
            if (
                scene not in self.scenes
                or self.direction is None
                or direction not in directions_of(self.direction)
            ):
                raise UserError(
                    f"--only {part!r} is not a part of this gate; its parts: {', '.join(self.parts())}"
                )
        return [(scene, p) for p in runs if direction is None or p.direction == direction]

    def run_params(self, plots: bool = True, progress: bool = False) -> list[EvalParams]:
        """The runs driven on each scene: one per seed and direction (one run by default)."""
        base = EvalParams(
            laps=self.laps,
            seed=self.seed,
            max_seconds=self.max_seconds,
            plots=plots,
            progress=progress,
            random_start=self.random_start,
            randomize=self.randomize,
        )
        return run_params(base, self.seeds, self.direction)


def load_policy(path: str | Path | None = None) -> GatePolicy:
    """Read a policy file (YAML or JSON) over the defaults of `GatePolicy`; None = the default policy."""
    if path is None:
        return GatePolicy()
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"gate policy {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"gate policy {path} is unreadable: {exc}") from None
    source = f"gate policy {path}"
    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise UserError(f"{source} is not valid YAML/JSON: {exc}".replace("\n", " ")) from None
    if data is None:
        raise UserError(f"{source} is empty; write the thresholds, or leave out --policy for the default")
    return GatePolicy.from_dict(data, source)


@dataclass(frozen=True)
class Check:
    scene: str
    metric: str  # the report field
    op: str  # ">=" or "<="
    threshold: float
    value: float
    passed: bool


def report_label(report: Report) -> str:
    """The scene, and the run's name when it is one of several."""
    return f"{report.scene} {report.run}" if report.run else report.scene


def check(report: Report, policy: GatePolicy) -> list[Check]:
    """Compare one report with the policy's thresholds (pure)."""
    rules = [
        ("laps_completed", ">=", policy.min_laps_completed),
        ("max_abs_cte", "<=", policy.max_abs_cte),
        ("mean_abs_cte", "<=", policy.max_mean_abs_cte),
        ("off_track_events", "<=", policy.max_off_track_events),
        ("mean_speed", ">=", policy.min_mean_speed),
        ("nonfinite_outputs", "<=", policy.max_nonfinite_outputs),
    ]
    out = []
    for metric, op, threshold in rules:
        if threshold is None:
            continue
        value = float(getattr(report, metric))
        passed = value >= threshold if op == ">=" else value <= threshold
        passed = passed and math.isfinite(value)
        out.append(Check(report_label(report), metric, op, float(threshold), value, bool(passed)))
    return out


@dataclass(frozen=True)
class GateResult:
    model: str
    model_digest: str
    policy: GatePolicy
    reports: tuple[Report, ...]
    checks: tuple[Check, ...]
    wall_seconds: float = 0.0  # [s]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": "pass" if self.passed else "fail",
            "model": self.model,
            "model_digest": self.model_digest,
            "policy": self.policy.to_json(),
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "reports": {report_label(r): r.to_json() for r in self.reports},
            "wall_seconds": round(self.wall_seconds, 3),
            **self.extra,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tracking.log_gate(self, path)  # MLflow, when MLFLOW_TRACKING_URI is set
        return path


def run_gate(
    pilot: Pilot,
    policy: GatePolicy,
    report_dir: str | Path | None = None,
    *,
    plots: bool = True,
    progress: bool = False,
    executor: Executor | None = None,
    only: str | None = None,
) -> GateResult:
    """Drive `pilot` (a loaded ModelPilot: `ModelPilot(path)`) on every scene of the policy (reports in
    report_dir/<scene>/), then check them. The verdict names the model as the pilot does: its file name
    and the digest of the bytes it loaded. `executor` drives the runs (default: one after another, here).

    `only` drives one part of the gate (`SCENE` or `SCENE:DIRECTION`, see `GatePolicy.parts`): its reports
    land where the whole gate's would and its checks are returned, but no gate.json is written: the verdict
    is `pitlane.evaluate.parts.aggregate`'s over every part."""
    t0 = time.perf_counter()
    resolve_scenes(policy.scenes, policy.seed)  # every scene found before the first one drives
    runs = policy.run_params(plots, progress)
    several = len(runs) > 1
    picked = policy.part_runs(only, plots, progress)
    out = Path(report_dir) if report_dir is not None else None
    dirs = policy.scene_dirs()
    jobs = [Job(scene, p if out is not None else replace(p, plots=False)) for scene, p in picked]
    outcomes = (executor or Serial()).map(pilot, jobs, progress)
    reports = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        if out is not None:
            sub = out / dirs[job.scene]
            write_outcome(outcome, sub / job.params.run_name if several else sub)
        reports.append(replace(outcome.report, run=job.params.run_name if several else ""))
    result = gate_result(pilot.name, pilot.digest, policy, reports, time.perf_counter() - t0)
    if out is not None and only is None:
        write_gate(result, out)
    return result


def gate_result(
    model: str, digest: str, policy: GatePolicy, reports: Sequence[Report], wall_seconds: float
) -> GateResult:
    """The checks of every report in the gate's order, and each scene's completion rate over its runs
    (when the policy asks and every run of the scene is there): one serial run's verdict, or the
    aggregate of its parts'."""
    runs = len(policy.run_params())
    checks = []
    for scene in policy.scenes:
        mine = [r for r in reports if r.scene == scene]
        for report in mine:
            checks.extend(check(report, policy))
        if policy.min_completion_rate is not None and mine and len(mine) == runs:
            rate = summarize_runs(mine).completion_rate
            ok = rate >= policy.min_completion_rate
            checks.append(Check(scene, "completion_rate", ">=", policy.min_completion_rate, rate, ok))
    return GateResult(model, digest, policy, tuple(reports), tuple(checks), wall_seconds)


def write_gate(result: GateResult, out: Path) -> Path:
    """gate.json, and each scene's runs.json where it has several runs, into `out`."""
    dirs = result.policy.scene_dirs()
    for scene in result.policy.scenes:
        mine = [r for r in result.reports if r.scene == scene]
        if len(mine) > 1:
            write_runs(summarize_runs(mine), out / dirs[scene])
    return result.save(out / GATE_FILE)
