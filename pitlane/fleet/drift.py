"""Drift: does what the car's camera sees now still look like the data its model was trained on?

The model bundle carries statistics of its training frames (config key ``frame_stats``: per feature the
mean and standard deviation over a sample of frames, see `pitlane.data.framestats`). The car computes the
same features on every `every`-th live frame and keeps the last `window` of them. The drift score is

    score = mean over features f of |mean of the window's f - training mean of f| / training std of f

the mean absolute z-score of the recent frames' average: 0 is exactly like training; 1 means that, on
average over the features, the recent frames sit one training standard deviation away. Read it as: below 1
ordinary variation, above 2 the world the car sees has changed (a lamp switched off, a new floor, a dirty
lens) and the model drives outside what it learnt. The training std has a floor per feature (`STD_FLOOR`), so a feature that
never varied in training (a uniform floor) does not turn sensor noise into drift. A window mean, not each
frame, is compared, so a single odd frame moves the score little.

Cost: the features take about 40 us of CPU per 120 x 160 frame here (bench/bench_fleet_part.py); they are
computed in the fleet part's own thread, never in the vehicle loop, which only hands over a reference.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from pitlane.data.framestats import FEATURES, frame_features, parse_stats

# [feature units] smallest training std used: brightness, contrast, red, green, blue, colourfulness, edges.
# About what a camera's auto exposure and white balance move between two passes over the same spot (a few
# of 255 levels): training data from a simulator barely varies, and must not make every lamp "drift".
STD_FLOOR = np.array([6.0, 4.0, 6.0, 6.0, 6.0, 4.0, 0.02])
BUNDLE, NONE = "bundle", "none"


@dataclass(frozen=True)
class Baseline:
    """The training data's frame statistics, as the model bundle carries them."""

    mean: np.ndarray  # per feature, FEATURES order
    std: np.ndarray  # per feature, floored
    frames: int  # frames they were computed from

    @classmethod
    def from_bundle_config(cls, config: object) -> Baseline | None:
        """From a bundle config's ``frame_stats`` (None: absent, or from an incomparable pitlane)."""
        stats = parse_stats(config.get("frame_stats") if isinstance(config, dict) else None)
        if stats is None:
            return None
        std = np.maximum(np.asarray(stats["std"], dtype=np.float64), STD_FLOOR)
        return cls(np.asarray(stats["mean"], dtype=np.float64), std, int(stats.get("frames") or 0))


def drift_score(features: np.ndarray, baseline: Baseline) -> float:
    """The mean absolute z-score of the features' average (N x len(FEATURES)) against the baseline."""
    window_mean = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES)).mean(axis=0)
    return float(np.mean(np.abs(window_mean - baseline.mean) / baseline.std))


class DriftMonitor:
    """Samples frames in the vehicle loop (`offer`: a counter and a reference), computes their features in
    the fleet part's thread (`update`), and reports the score for the heartbeat (`report`)."""

    def __init__(self, window: int = 120, every: int = 5) -> None:
        self.every = max(1, int(every))
        self.features: deque[np.ndarray] = deque(maxlen=max(1, int(window)))
        self.baseline: Baseline | None = None
        self._count = 0
        self._mailbox: Any = None  # the newest sampled frame not yet measured
        self._lock = threading.Lock()

    def offer(self, frame: Any) -> None:
        """Called by the loop for every frame: keeps a reference to every `every`-th one (no copy, no math)."""
        self._count += 1
        if frame is not None and self._count % self.every == 0:
            self._mailbox = frame

    def update(self) -> bool:
        """Measure the sampled frame, if any (the part's thread). True when a frame was measured."""
        frame, self._mailbox = self._mailbox, None
        if frame is None:
            return False
        try:
            row = frame_features(frame)
        except (ValueError, TypeError, IndexError):
            return False  # not an image (a source that sends something else): no statistics from it
        with self._lock:
            self.features.append(row)
        return True

    def set_baseline(self, baseline: Baseline | None) -> None:
        self.baseline = baseline

    def report(self) -> dict[str, Any]:
        """The heartbeat's ``drift``: {"score": float or None, "frames": int, "baseline": "bundle"|"none"}."""
        with self._lock:
            rows = np.array(self.features) if self.features else None
        frames = 0 if rows is None else len(rows)
        if self.baseline is None or rows is None:
            return {"score": None, "frames": frames, "baseline": BUNDLE if self.baseline else NONE}
        return {"score": round(drift_score(rows, self.baseline), 3), "frames": frames, "baseline": BUNDLE}
