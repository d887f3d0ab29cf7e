"""The held-out protocol: runs over a family split, the Wilson interval, the expert on the same runs."""

import json

import pytest

from pitlane.evaluate import heldout
from pitlane.evaluate.report import EvalParams
from pitlane.pilots.expert import ExpertPilot


def test_wilson_interval_matches_the_textbook_and_stays_in_0_1():
    lo, hi = heldout.wilson_interval(196, 200)
    assert lo == pytest.approx(0.9497, abs=1e-4) and hi == pytest.approx(0.9922, abs=1e-4)
    lo, hi = heldout.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = heldout.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert heldout.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        heldout.wilson_interval(11, 10)


def test_family_runs_drive_each_track_both_ways_from_its_own_random_start():
    runs = heldout.family_runs("validation", 3, first=5)
    assert [(s, p.direction, p.seed) for s, p in runs] == [
        (f"family:validation:{i}", d, i) for i in (5, 6, 7) for d in ("ccw", "cw")
    ]
    assert all(p.random_start and p.laps == heldout.HELDOUT_LAPS and not p.plots for _, p in runs)
    with pytest.raises(ValueError, match="split must be one of"):
        heldout.family_runs("holdout", 1)


def _run(done: int, cte: float = 0.1, speed: float = 1.8, expert_speed: float = 2.0) -> heldout.Run:
    return heldout.Run(
        scene="family:validation:0",
        direction="ccw",
        seed=0,
        laps_requested=2,
        laps_completed=done,
        end_reason="laps_completed" if done == 2 else "off_track",
        width_m=1.0,
        cte_rel=cte,
        speed_mps=speed,
        expert_laps=2,
        expert_cte_rel=0.05,
        expert_speed_mps=expert_speed,
        tags=("star", "hairpin"),
    )


def test_summary_counts_runs_for_the_interval_and_weighs_every_run_once():
    runs = [_run(2)] * 18 + [_run(1, cte=0.3, speed=1.0), _run(0, cte=0.5, speed=2.0)]
    s = heldout.summarize(runs)
    assert (s.runs, s.runs_completed, s.laps_requested, s.laps_completed) == (20, 18, 40, 37)
    assert (s.ci_low, s.ci_high) == tuple(round(v, 4) for v in heldout.wilson_interval(18, 20))
    assert s.cte_rel == pytest.approx((18 * 0.1 + 0.3 + 0.5) / 20, abs=1e-4)
    assert s.speed_pct == pytest.approx((18 * 90 + 50 + 100) / 20, abs=0.1)
    goals = s.goals()
    assert not goals["laps >= 95%"] and not goals["95 % lower bound >= 90%"]
    assert goals["speed >= 90 % of the expert"] is False and goals["mean |CTE| < 0.25 half-width"]
    assert heldout.breakdown(runs) == {"hairpin": (18, 20), "star": (18, 20)}
    assert json.loads(json.dumps(s.to_json()))["run_rate"] == 0.9


def test_the_expert_against_itself_on_a_family_track_and_its_cached_runs(tmp_path):
    cache_file = tmp_path / "expert_cache.json"
    runs = heldout.drive(
        ExpertPilot(), heldout.family_runs("validation", 1), cache=heldout.ExpertCache(cache_file)
    )
    assert [r.direction for r in runs] == ["ccw", "cw"] and all(r.completed for r in runs)
    for r in runs:
        assert r.speed_pct == pytest.approx(100.0) and r.cte_rel == r.expert_cte_rel < 0.25
        assert r.tags and r.tags[0] in ("star", "oblong")
    # the expert's results are read back from the file, keyed by the track's geometry
    data = json.loads(cache_file.read_text())
    assert len(data) == 2
    key = next(iter(data))
    data[key]["mean_speed"] = 99.0
    cache_file.write_text(json.dumps(data))
    scene, params = heldout.family_runs("validation", 1)[0]
    cache = heldout.ExpertCache(cache_file)
    assert heldout.ExpertCache.key(scene, params) in data
    assert {cache.report(scene, p)["mean_speed"] for s, p in heldout.family_runs("validation", 1)} >= {99.0}
    other = EvalParams(laps=1, seed=0, direction="ccw", random_start=True, plots=False)
    assert heldout.ExpertCache.key(scene, other) not in data  # other laps: another run
