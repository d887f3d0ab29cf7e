"""Synthetic tubs written with donkeycar's own Tub: a white stripe whose position encodes the steering angle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

INPUTS = ["cam/image_array", "user/angle", "user/throttle", "user/mode"]
TYPES = ["image_array", "float", "float", "str"]


def write_synthetic_tub(path: Path, records: int, seed: int = 0, shape=(120, 160, 3)) -> Path:
    from donkeycar.parts.tub_v2 import Tub

    rng = np.random.default_rng(seed)
    tub = Tub(str(path), inputs=INPUTS, types=TYPES)
    h, w, _ = shape
    for _ in range(records):
        angle = float(rng.uniform(-1.0, 1.0))
        img = np.full(shape, 40, np.uint8)
        col = int(round((angle + 1.0) / 2.0 * (w - 1)))
        img[h // 3 :, max(0, col - 6) : col + 6] = 255
        tub.write_record(
            {"cam/image_array": img, "user/angle": angle, "user/throttle": 0.3, "user/mode": "user"}
        )
    tub.close()
    return path


@pytest.fixture
def make_tub(tmp_path):
    def make(name: str = "tub", records: int = 40, seed: int = 0, shape=(120, 160, 3)) -> Path:
        return write_synthetic_tub(tmp_path / name, records, seed, shape)

    return make
