"""The held-out protocol: a model drives tracks of the family it never trained on, the expert the same runs.

Tracks the recipe was tuned on measure fit, not generalisation; so recipes are compared on the family's
VALIDATION tracks, and the TEST tracks are driven only to report the recipe chosen, never to choose one
(`pitlane.twin.family.SPLITS`). Each track is driven both ways round from a random start (drawn from the
track's index, so every model meets the same runs), two laps each, and the expert drives the very same runs.

Completion is counted over RUNS, with a Wilson score interval: laps of one run are not independent trials
(the second lap is driven only when the first was, on the same road from the same pose), so counting laps
would claim a sample twice as large as it is; a run is complete when it drove every lap asked, so the run
rate is also a lower estimate of the lap rate. Speed and |CTE| are per run relative to the expert's speed and
to the road's half-width, then averaged over runs (each run counts once, however long its track).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitlane.evaluate.report import EvalParams, Report
from pitlane.evaluate.run import Pilot, evaluate, scene_track
from pitlane.pilots.expert import ExpertPilot
from pitlane.twin import family
from pitlane.twin.track import DIRECTIONS

HELDOUT_LAPS = 2  # laps per run
Z_95 = 1.959964  # two-sided 95 % normal quantile
# the goals of issue 24, over the test runs
GOAL_LAP_RATE = 0.95
GOAL_LOWER_BOUND = 0.90
GOAL_SPEED_PCT = 90.0
GOAL_CTE_REL = 0.25


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good near 0 and 1, where the normal one is not)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Run:
    """One run of the protocol: the model's result and the expert's on the same track, direction and start."""

    scene: str
    direction: str
    seed: int  # the twin's seed: the random start
    laps_requested: int
    laps_completed: int
    end_reason: str
    width_m: float  # [m]
    cte_rel: float  # mean |CTE| / half the road's width
    speed_mps: float  # [m/s] mean over the steps driven
    expert_laps: int
    expert_cte_rel: float
    expert_speed_mps: float  # [m/s]
    tags: tuple[str, ...] = ()  # what the track holds (family: base, features, layout, floor)

    @property
    def completed(self) -> bool:
        return self.laps_completed >= self.laps_requested

    @property
    def speed_pct(self) -> float:
        return 100.0 * self.speed_mps / self.expert_speed_mps if self.expert_speed_mps > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    """Completion with its interval, |CTE| and speed against the expert, over a set of runs."""

    runs: int
    runs_completed: int
    laps_requested: int
    laps_completed: int
    ci_low: float  # Wilson 95 % interval of the run completion rate
    ci_high: float
    cte_rel: float  # mean over runs of mean |CTE| / half-width
    speed_pct: float  # mean over runs of the speed as % of the expert's on the same run
    expert_runs_completed: int
    expert_cte_rel: float

    @property
    def lap_rate(self) -> float:
        return self.laps_completed / self.laps_requested if self.laps_requested else 0.0

    @property
    def run_rate(self) -> float:
        return self.runs_completed / self.runs if self.runs else 0.0

    def goals(self) -> dict[str, bool]:
        return {
            f"laps >= {GOAL_LAP_RATE:.0%}": self.lap_rate >= GOAL_LAP_RATE,
            f"95 % lower bound >= {GOAL_LOWER_BOUND:.0%}": self.ci_low >= GOAL_LOWER_BOUND,
            f"speed >= {GOAL_SPEED_PCT:.0f} % of the expert": self.speed_pct >= GOAL_SPEED_PCT,
            f"mean |CTE| < {GOAL_CTE_REL} half-width": self.cte_rel < GOAL_CTE_REL,
        }

    def describe(self) -> str:
        return (
            f"laps {self.laps_completed}/{self.laps_requested} ({100 * self.lap_rate:.1f} %); runs "
            f"{self.runs_completed}/{self.runs} ({100 * self.run_rate:.1f} %, 95 % CI "
            f"{100 * self.ci_low:.1f}-{100 * self.ci_high:.1f} %); mean |CTE| {self.cte_rel:.3f} of the "
            f"half-width (expert {self.expert_cte_rel:.3f}); speed {self.speed_pct:.0f} % of the expert's; "
            f"expert completed {self.expert_runs_completed}/{self.runs} runs"
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(lap_rate=round(self.lap_rate, 4), run_rate=round(self.run_rate, 4), goals=self.goals())
        return d


def summarize(runs: Sequence[Run]) -> Summary:
    """The summary of `runs` (pure)."""
    n = len(runs)
    done = sum(r.completed for r in runs)
    lo, hi = wilson_interval(done, n)

    def mean(values) -> float:
        values = list(values)
        return round(sum(values) / len(values), 4) if values else 0.0

    return Summary(
        runs=n,
        runs_completed=done,
        laps_requested=sum(r.laps_requested for r in runs),
        laps_completed=sum(min(r.laps_completed, r.laps_requested) for r in runs),
        ci_low=round(lo, 4),
        ci_high=round(hi, 4),
        cte_rel=mean(r.cte_rel for r in runs),
        speed_pct=round(mean(r.speed_pct for r in runs), 1),
        expert_runs_completed=sum(r.expert_laps >= r.laps_requested for r in runs),
        expert_cte_rel=mean(r.expert_cte_rel for r in runs),
    )


def family_runs(
    split: str, tracks: int, laps: int = HELDOUT_LAPS, first: int = 0
) -> list[tuple[str, EvalParams]]:
    """(scene, params) of every run: tracks first..first+tracks-1 of `split`, both ways, random starts."""
    scenes = [family.scene_name(split, i) for i in range(first, first + tracks)]
    for scene in scenes:
        family.parse(scene)  # the split and every index exist
    return [
        (scene, EvalParams(laps=laps, seed=i, direction=d, random_start=True, plots=False))
        for i, scene in zip(range(first, first + tracks), scenes, strict=True)
        for d in DIRECTIONS
    ]


def tags(scene: str) -> tuple[str, ...]:
    """What a family track holds, to see which kinds of track a model fails on; () for other scenes."""
    if not family.is_family(scene):
        return ()
    f = family.family_track(*family.parse(scene))
    st = f.track.style
    width = "narrow" if f.track.width_m < 0.9 else "wide" if f.track.width_m > 1.2 else "medium"
    return (
        f.base,
        *f.features,
        f.layout,
        st.ground_pattern,
        width,
        *(("tape",) if not st.road_paint else ()),
    )


class ExpertCache:
    """The expert's results per run, kept in a JSON file: the expert is deterministic, and driving it again
    for every recipe compared would double the protocol's time. Keyed by the track's geometry (a digest of
    its centreline and width), so a changed generator never reuses a stale result."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            self.data = json.loads(path.read_text())

    @staticmethod
    def key(scene: str, params: EvalParams) -> str:
        track = scene_track(scene, params.seed, params.direction)
        digest = hashlib.sha256(track.centerline.tobytes() + str(track.width_m).encode()).hexdigest()[:16]
        return f"{digest}|{params.direction}|{params.seed}|{params.laps}|{params.random_start}"

    def report(self, scene: str, params: EvalParams) -> dict[str, Any]:
        key = self.key(scene, params)
        if key not in self.data:
            r = evaluate(ExpertPilot(), scene, params)
            self.data[key] = {k: getattr(r, k) for k in ("laps_completed", "mean_abs_cte", "mean_speed")}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.data, indent=0, sort_keys=True) + "\n")
        return self.data[key]


def drive(
    pilot: Pilot, runs: Sequence[tuple[str, EvalParams]], *, cache: ExpertCache | None = None
) -> list[Run]:
    """Drive every run with `pilot` (a loaded ModelPilot, or the ExpertPilot) and take the expert's from
    `cache`."""
    cache = cache or ExpertCache(None)
    out = []
    for scene, params in runs:
        r: Report = evaluate(pilot, scene, params)
        e = cache.report(scene, params)
        half = 0.5 * r.track_width_m
        out.append(
            Run(
                scene=scene,
                direction=params.direction or "",
                seed=params.seed,
                laps_requested=r.laps_requested,
                laps_completed=r.laps_completed,
                end_reason=r.end_reason,
                width_m=r.track_width_m,
                cte_rel=round(r.mean_abs_cte / half, 4),
                speed_mps=r.mean_speed,
                expert_laps=int(e["laps_completed"]),
                expert_cte_rel=round(float(e["mean_abs_cte"]) / half, 4),
                expert_speed_mps=float(e["mean_speed"]),
                tags=tags(scene),
            )
        )
    return out


def breakdown(runs: Sequence[Run]) -> dict[str, tuple[int, int]]:
    """(runs completed, runs) per tag: which kinds of track fail."""
    out: dict[str, list[int]] = {}
    for r in runs:
        for t in r.tags:
            c = out.setdefault(t, [0, 0])
            c[0] += r.completed
            c[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}
