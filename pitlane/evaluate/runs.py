"""Several runs of one evaluation (seeds x directions, random starts, randomised frames) and their spread.

One run says a model can repeat a lap; many runs under varied conditions say how robust it is. `run_params`
expands the asked conditions into one `EvalParams` per run, `evaluate_runs` drives them all (and, when
asked, the expert on the very same runs), and `summarize_runs` (pure) gives the completion rate over runs
and the means over every control step, with speed and |CTE| relative to the expert's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pitlane.errors import UserError
from pitlane.evaluate.executor import Executor, Job, Serial
from pitlane.evaluate.report import EvalParams, Report
from pitlane.evaluate.run import Outcome, Pilot, write_outcome
from pitlane.pilots.expert import ExpertPilot
from pitlane.twin.track import DIRECTIONS

RUNS_FILE = "runs.json"
MAX_RUNS = 200  # runs of one evaluation: it must end in bounded time
BOTH = "both"


@dataclass(frozen=True)
class RunsSummary:
    """The spread of one model's runs on one scene."""

    scene: str
    model: str
    runs: int
    laps_requested: int  # over all runs
    laps_completed: int  # over all runs
    completion_rate: float  # laps completed / laps requested, over all runs
    runs_completed: int  # runs that drove every lap asked
    mean_abs_cte: float  # [m] over every control step of every run
    mean_speed: float  # [m/s] over every control step of every run
    vs_expert: dict[str, float] | None = None  # speed_pct, mean_abs_cte_ratio: the expert on the same runs
    expert: RunsSummary | None = None  # the expert's own summary on the same runs
    reports: tuple[Report, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "reports"}
        d["expert"] = None if self.expert is None else self.expert.to_json()
        d["reports"] = [
            {
                k: getattr(r, k)
                for k in (
                    "run",
                    "direction",
                    "seed",
                    "start_s_m",
                    "random_start",
                    "randomize",
                    "laps_requested",
                    "laps_completed",
                    "mean_abs_cte",
                    "max_abs_cte",
                    "mean_speed",
                    "end_reason",
                )
            }
            for r in self.reports
        ]
        return d

    def describe(self) -> str:
        line = (
            f"{self.scene}: {self.laps_completed}/{self.laps_requested} laps over {self.runs} run(s) "
            f"(completion {100 * self.completion_rate:.0f}%), mean |CTE| {self.mean_abs_cte:.3f} m, "
            f"mean speed {self.mean_speed:.2f} m/s"
        )
        if self.vs_expert is not None:
            line += (
                f"; vs expert: speed {self.vs_expert['speed_pct']:.0f}%, "
                f"|CTE| x{self.vs_expert['mean_abs_cte_ratio']:.2f}"
            )
        return line


def parse_seeds(text: str | int | None, first: int = 0) -> tuple[int, ...]:
    """`--seeds`: a count N (seeds first .. first+N-1) or a comma list of seeds ("3,7,11")."""
    if text is None:
        return (first,)
    raw = str(text).strip()
    try:
        if "," in raw:
            seeds = tuple(int(v) for v in raw.split(",") if v.strip())
        else:
            n = int(raw)
            if n < 1:
                raise UserError(f"--seeds must be a count >= 1 or a list of seeds, got {text!r}")
            seeds = tuple(range(first, first + n))
    except ValueError:
        raise UserError(
            f"--seeds must be a count (3) or a comma list of seeds (3,7,11), got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must list distinct seeds, got {text!r}")
    return seeds


def directions_of(direction: str | None) -> tuple[str | None, ...]:
    """`--direction`: cw, ccw, both (ccw then cw), or None for the track's own driving order."""
    if direction is None:
        return (None,)
    if direction == BOTH:
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be one of {', '.join((*DIRECTIONS, BOTH))}, got {direction!r}")
    return (direction,)


def run_params(base: EvalParams, seeds: Sequence[int] = (), direction: str | None = None) -> list[EvalParams]:
    """One EvalParams per (direction, seed); no seeds = the base's seed."""
    seeds = tuple(seeds) or (base.seed,)
    runs = [replace(base, seed=s, direction=d) for d in directions_of(direction) for s in seeds]
    if len(runs) > MAX_RUNS:
        raise UserError(f"{len(runs)} runs asked; at most {MAX_RUNS} per evaluation")
    return runs


def _weighted(reports: Sequence[Report], metric: str) -> float:
    steps = sum(r.steps for r in reports)
    if steps == 0:
        return 0.0
    return round(sum(getattr(r, metric) * r.steps for r in reports) / steps, 4)


def summarize_runs(reports: Sequence[Report], expert: RunsSummary | None = None) -> RunsSummary:
    """Completion rate and step-weighted means over runs (pure); `expert` adds the comparison."""
    if not reports:
        raise ValueError("no runs to summarize")
    asked = sum(r.laps_requested for r in reports)
    done = sum(min(r.laps_completed, r.laps_requested) for r in reports)
    cte, speed = _weighted(reports, "mean_abs_cte"), _weighted(reports, "mean_speed")
    vs = None
    if expert is not None:
        vs = {
            "speed_pct": round(100.0 * speed / expert.mean_speed, 1) if expert.mean_speed > 0 else 0.0,
            "mean_abs_cte_ratio": round(cte / expert.mean_abs_cte, 2) if expert.mean_abs_cte > 0 else 0.0,
        }
    return RunsSummary(
        scene=reports[0].scene,
        model=reports[0].model,
        runs=len(reports),
        laps_requested=asked,
        laps_completed=done,
        completion_rate=round(done / asked, 4) if asked else 0.0,
        runs_completed=sum(r.laps_completed >= r.laps_requested for r in reports),
        mean_abs_cte=cte,
        mean_speed=speed,
        vs_expert=vs,
        expert=expert,
        reports=tuple(reports),
    )


def evaluate_runs(
    pilot: Pilot,
    scene: str,
    runs: Sequence[EvalParams],
    report_dir: str | Path | None = None,
    *,
    vs_expert: bool = False,
    executor: Executor | None = None,
) -> RunsSummary:
    """Drive every run with the one `pilot` (a loaded ModelPilot or the ExpertPilot); reports in report_dir
    (one run: report.json there, as `evaluate` writes it; several: report_dir/<run>/report.json), the
    summary in report_dir/runs.json. `vs_expert` also drives the expert on the same runs (its reports under
    report_dir/expert/) and compares. `executor` drives the runs (default: one after another, here); a bar
    over runs shows when the runs ask for progress."""
    if not runs:
        raise UserError("no runs to evaluate")
    out = Path(report_dir) if report_dir is not None else None
    with_expert = vs_expert and not isinstance(pilot, ExpertPilot)
    jobs = [Job(scene, params if out is not None else replace(params, plots=False)) for params in runs]
    if with_expert:
        jobs += [Job(scene, replace(p, plots=False, progress=False), expert=True) for p in runs]
    outcomes = (executor or Serial()).map(pilot, jobs, progress=runs[0].progress)
    reports = gather(outcomes[: len(runs)], runs, out)
    expert = None
    if with_expert:
        expert_out = out / "expert" if out is not None else None
        expert = summarize_runs(gather(outcomes[len(runs) :], runs, expert_out))
        if expert_out is not None and len(runs) > 1:
            write_runs(expert, expert_out)
    summary = summarize_runs(reports, expert)
    if out is not None and (len(runs) > 1 or vs_expert):
        write_runs(summary, out)
    return summary


def gather(outcomes: Sequence[Outcome], runs: Sequence[EvalParams], out: Path | None) -> list[Report]:
    """The runs' reports, each named by its run when there are several; written under `out` (one run:
    out/report.json; several: out/<run>/report.json)."""
    several = len(runs) > 1
    reports = []
    for params, outcome in zip(runs, outcomes, strict=True):
        if out is not None:
            write_outcome(outcome, out / params.run_name if several else out)
        reports.append(replace(outcome.report, run=params.run_name if several else ""))
    return reports


def write_runs(summary: RunsSummary, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUNS_FILE
    path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return path
