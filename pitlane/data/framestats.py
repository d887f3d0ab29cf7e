"""Frame statistics: a few numbers per camera frame that say what the camera sees (light, colour, texture).

Training computes them over a sample of its tubs' frames (`training_stats`) and the model bundle carries the
result (config key ``frame_stats``); the car computes the same numbers on its live frames and compares
(`pitlane.fleet.drift`). The per-frame cost must be far below one drive loop on a Raspberry Pi, with numpy
only (the car image has no OpenCV): the frame is read at a quarter of its resolution
(every fourth row and column), which leaves these statistics almost unchanged at a sixteenth of the work.

Features, in `FEATURES` order (8-bit scale, 0..255 unless said):
  brightness     mean luma (ITU-R BT.601 weights)
  contrast       standard deviation of luma
  red, green, blue   channel means
  colourfulness  mean |R - G| + mean |(R + G) / 2 - B| (0 for a grey image)
  edges          share of (subsampled) pixels whose luma gradient |dx| + |dy| exceeds EDGE_THRESHOLD [0..1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.errors import UserError

SCHEMA = "pitlane.frame-stats/1"
FEATURES: tuple[str, ...] = ("brightness", "contrast", "red", "green", "blue", "colourfulness", "edges")
EDGE_THRESHOLD = 24.0  # [8-bit luma levels] |dx| + |dy| above this counts as an edge pixel
STEP = 4  # [px] read every STEP-th row and column (30 x 40 of a 120 x 160 frame)
TRAINING_SAMPLE = 400  # frames sampled from the training tubs
_MIX = np.array([[0.299, 0.587, 0.114], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]], dtype=np.float32)


def frame_features(frame: np.ndarray) -> np.ndarray:
    """The FEATURES of one H x W x 3 (RGB) or H x W frame, float64, in `FEATURES` order.

    Written for speed: one gather of the subsampled pixels, then matrix products (BLAS) instead of
    per-channel reductions, which numpy does slowly across a 3-wide axis."""
    small = np.asarray(frame)[::STEP, ::STEP]
    if small.ndim == 2:
        small = small[:, :, None]
    h, w = small.shape[:2]
    x = small.reshape(-1, small.shape[2])[:, :3].astype(np.float32)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n = len(x)
    p = _MIX @ x.T  # rows: luma, R - G, (R + G) / 2 - B
    luma = p[0]
    sums = np.ones(n, dtype=np.float32) @ x
    mean = float(luma.sum()) / n
    std = math.sqrt(max(float(luma @ luma) / n - mean * mean, 0.0))
    colourful = (float(np.abs(p[1]).sum()) + float(np.abs(p[2]).sum())) / n
    img = luma.reshape(h, w)
    grad = np.abs(img[:-1, 1:] - img[:-1, :-1]) + np.abs(img[1:, :-1] - img[:-1, :-1])
    edges = np.count_nonzero(grad > EDGE_THRESHOLD) / grad.size if grad.size else 0.0
    r, g, b = (float(v) / n for v in sums)
    return np.array([mean, std, r, g, b, colourful, edges], dtype=np.float64)


def summarise(features: np.ndarray, frames_from: str) -> dict[str, Any]:
    """The JSON summary of N x len(FEATURES) per-frame features: mean and std of each feature."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(FEATURES) or len(features) == 0:
        raise UserError(f"frame statistics need N x {len(FEATURES)} features, got {features.shape}")
    return {
        "schema": SCHEMA,
        "features": list(FEATURES),
        "mean": [round(float(v), 4) for v in features.mean(axis=0)],
        "std": [round(float(v), 4) for v in features.std(axis=0)],
        "frames": int(len(features)),
        "step": STEP,
        "edge_threshold": EDGE_THRESHOLD,
        "source": frames_from,
    }


def parse_stats(doc: object) -> dict[str, Any] | None:
    """A bundle's ``frame_stats`` if this pitlane can compare with it (same schema and features), else None."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("features") != list(FEATURES):
        return None
    mean, std = doc.get("mean"), doc.get("std")
    ok = all(
        isinstance(v, list)
        and len(v) == len(FEATURES)
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        for v in (mean, std)
    )
    return doc if ok else None


def tub_images(tubs: Sequence[str | Path]) -> list[Path]:
    """The camera images of the tubs, in tub and name order."""
    out: list[Path] = []
    for tub in tubs:
        out += sorted((Path(tub) / "images").glob("*_cam_image_array_*"))
    return out


def training_stats(tubs: Sequence[str | Path], count: int = TRAINING_SAMPLE) -> dict[str, Any] | None:
    """Frame statistics of up to `count` frames spread evenly over the tubs' images (None: no images)."""
    from PIL import Image

    images = tub_images(tubs)
    if not images:
        return None
    picks = sorted(
        {images[i] for i in np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)}
    )
    rows = []
    for path in picks:
        try:
            with Image.open(path) as img:
                rows.append(frame_features(np.asarray(img.convert("RGB"))))
        except (OSError, ValueError):
            continue  # the data checker reports unreadable images; statistics skip them
    return (
        summarise(np.stack(rows), f"{len(rows)} frames of {len(images)} in {len(tubs)} tub(s)")
        if rows
        else None
    )
