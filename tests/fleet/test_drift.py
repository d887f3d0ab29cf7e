"""The drift score on the twin's camera: about 0 for more of the training scene, high for a darker or a
differently coloured world; the monitor samples every n-th frame and measures it off the loop."""

from __future__ import annotations

import numpy as np
import pytest

from pitlane.data.framestats import frame_features, summarise
from pitlane.fleet.drift import Baseline, DriftMonitor, drift_score


def drive(scene: str, frames: int, skip: int = 0, seed: int = 0) -> np.ndarray:
    from pitlane.pilots.expert import ExpertPilot
    from pitlane.twin.sim import Sim
    from pitlane.twin.vehicle import Control

    sim = Sim(scene, seed=seed)
    expert = ExpertPilot().bound_to(sim)
    out = []
    for i in range(skip + frames * 3):
        steer, throttle = expert.run(np.zeros(0))  # the expert reads the twin, not the frame
        sim.step(Control(steering=steer, throttle=throttle))
        if i >= skip and (i - skip) % 3 == 0:
            out.append(sim.render())
    return np.stack(out[:frames])


@pytest.fixture(scope="module")
def training():
    frames = drive("generated_track", 80)
    return Baseline.from_bundle_config(
        {"frame_stats": summarise(np.stack([frame_features(f) for f in frames]), "twin")}
    )


def score(frames: np.ndarray, baseline: Baseline) -> float:
    return drift_score(np.stack([frame_features(f) for f in frames]), baseline)


def test_more_of_the_training_world_scores_near_zero(training):
    later = drive("generated_track", 40, skip=120)
    assert score(later, training) < 0.5


def test_a_darker_or_different_world_scores_high(training):
    later = drive("generated_track", 40, skip=120)
    darker = (later * 0.5).astype(np.uint8)
    assert score(darker, training) > 1.5
    other = drive("warehouse", 40)
    assert score(other, training) > 1.0
    assert score(other, training) > 3 * score(later, training)


def test_a_bundle_without_statistics_has_no_baseline():
    assert Baseline.from_bundle_config({}) is None
    assert Baseline.from_bundle_config(None) is None
    assert Baseline.from_bundle_config({"frame_stats": {"schema": "pitlane.frame-stats/9"}}) is None


def test_a_feature_that_never_varied_does_not_make_noise_into_drift():
    flat = np.full((120, 160, 3), 90, np.uint8)
    base = Baseline.from_bundle_config(
        {"frame_stats": summarise(np.stack([frame_features(flat)] * 5), "flat")}
    )
    assert base is not None
    noisy = np.clip(flat.astype(int) + np.random.default_rng(0).integers(-1, 2, flat.shape), 0, 255).astype(
        np.uint8
    )
    assert drift_score(frame_features(noisy)[None, :], base) < 0.5


def test_the_monitor_samples_every_nth_frame_and_measures_off_the_loop(training):
    frames = drive("generated_track", 20)
    monitor = DriftMonitor(window=8, every=5)
    assert monitor.report() == {"score": None, "frames": 0, "baseline": "none"}
    measured = 0
    for frame in np.concatenate([frames] * 3):
        monitor.offer(frame)
        measured += monitor.update()
    assert measured == 12 and len(monitor.features) == 8  # 60 frames / 5, the window keeps 8
    assert monitor.report()["score"] is None  # no baseline: the statistics are kept, no score
    monitor.set_baseline(training)
    report = monitor.report()
    assert report["baseline"] == "bundle" and report["frames"] == 8 and 0 <= report["score"] < 0.8
    monitor.offer("not an image")  # a source that sends something else costs nothing and breaks nothing
    for _ in range(4):
        monitor.offer(None)
    assert monitor.update() is False
