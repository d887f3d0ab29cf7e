"""The release's gate policy: what a tag's release.yaml asks for, held to the pipeline's own minimum.

A tag's author writes release.yaml, so the gate it asks for cannot be trusted to be a gate at all (all
thresholds null passed a model that outputs only NaN). The pipeline owns a floor, `gate_floor.yaml`, shipped
inside pitlane (the pinned tools image), never read from the tag's checkout. `effective_policy` (pure)
accepts release.yaml's policy only when it is at least as strict as the floor on every key (more scenes,
laps or seeds, stricter thresholds) and can fail at all; anything else is refused in one line naming the
keys. The gate Task runs the effective policy; the signing Task checks the gate report's policy again.
"""

from __future__ import annotations

import os
from pathlib import Path

from pitlane.errors import Refused
from pitlane.evaluate.gate import GatePolicy, load_policy

FLOOR_FILE = Path(__file__).with_name("gate_floor.yaml")
# Another floor for an environment whose tools it controls (the tests' throwaway models cannot finish a lap).
# Only the tools image's or the runner's own environment sets it: a tag reaches neither.
FLOOR_ENV = "PITLANE_GATE_FLOOR"
AT_LEAST = ("min_laps_completed", "min_mean_speed", "min_completion_rate")  # higher is stricter
AT_MOST = ("max_abs_cte", "max_mean_abs_cte", "max_off_track_events", "max_nonfinite_outputs")  # lower is


def floor() -> GatePolicy:
    """The pipeline's minimum gate policy (FLOOR_ENV's file where the environment sets one)."""
    return load_policy(os.environ.get(FLOOR_ENV) or FLOOR_FILE)


def _seeds(p: GatePolicy) -> set[int]:
    return set(p.seeds) or {p.seed}


def _directions(direction: str | None) -> set[str]:
    """The runs a direction setting drives: None is the track's own order ('own')."""
    return {"both": {"own", "ccw", "cw"}, None: {"own"}}.get(direction, {direction or "own"})


def _fmt(v: object) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def loosened(minimum: GatePolicy, asked: GatePolicy) -> list[str]:
    """Each key on which `asked` is looser than `minimum`, as 'KEY ASKED (minimum M)' (pure)."""
    out = []
    left_out = [s for s in minimum.scenes if s not in asked.scenes]
    if left_out:
        out.append(f"scenes leave out {', '.join(left_out)}")
    if asked.laps < minimum.laps:
        out.append(f"laps {asked.laps} (minimum {minimum.laps})")
    if not _seeds(minimum) <= _seeds(asked):
        out.append(f"seeds leave out {', '.join(map(str, sorted(_seeds(minimum) - _seeds(asked))))}")
    if asked.max_seconds != minimum.max_seconds:
        out.append(f"max_seconds {_fmt(asked.max_seconds)} (the pipeline's is {_fmt(minimum.max_seconds)})")
    if not _directions(minimum.direction) <= _directions(asked.direction):
        out.append(f"direction {_fmt(asked.direction)} (minimum {_fmt(minimum.direction)})")
    for key in ("random_start", "randomize"):
        if getattr(minimum, key) and not getattr(asked, key):
            out.append(f"{key} false (minimum true)")
    for key in AT_LEAST + AT_MOST:
        want, got = getattr(minimum, key), getattr(asked, key)
        if want is None:
            continue
        looser = got is None or (got < want if key in AT_LEAST else got > want)
        if looser:
            out.append(f"{key} {_fmt(got)} (minimum {_fmt(want)})")
    return out


def never_fails(policy: GatePolicy) -> bool:
    """True when no threshold of `policy` can fail: every upper bound null, every lower bound null or <= 0."""
    bounded = any(getattr(policy, key) is not None for key in AT_MOST)
    demanding = any((getattr(policy, key) or 0) > 0 for key in AT_LEAST)
    return not (bounded or demanding)


def effective_policy(minimum: GatePolicy, asked: GatePolicy, source: str = "release.yaml") -> GatePolicy:
    """`asked` when it tightens `minimum` (or equals it) and can fail; Refused naming the keys otherwise."""
    if never_fails(asked):
        raise Refused(
            f"{source}'s gate policy can never fail (every threshold null or vacuous): "
            "give it real thresholds, or use policy: default"
        )
    problems = loosened(minimum, asked)
    if problems:
        raise Refused(
            f"{source}'s gate policy loosens the pipeline's minimum: {'; '.join(problems)}; "
            "a release may only tighten it (pitlane/release/gate_floor.yaml)"
        )
    return asked
