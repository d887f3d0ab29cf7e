"""Tubs for the data tests, written by donkeycar's own Tub (the same writer `pitlane data collect` uses)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pitlane.data.tub import INPUTS, TYPES

IMAGE_SHAPE = (120, 160, 3)


def write_tub(
    path: Path,
    n: int = 20,
    inputs: tuple[str, ...] = INPUTS,
    types: tuple[str, ...] = TYPES,
    seed: int = 0,
    metadata: list[str] | None = None,
) -> Path:
    """A tub of ``n`` plausible records: gradient images, angles in [-1, 1], a pos/* trail."""
    from donkeycar.parts.tub_v2 import Tub

    rng = np.random.default_rng(seed)
    tub = Tub(str(path), inputs=list(inputs), types=list(types), metadata=metadata or ["source:test"])
    base = np.tile(np.linspace(0, 255, IMAGE_SHAPE[1], dtype=np.uint8)[None, :, None], (IMAGE_SHAPE[0], 1, 3))
    for i in range(n):
        values = {
            "cam/image_array": np.roll(base, i, axis=1),
            "user/angle": float(np.sin(i / 5.0)),
            "user/throttle": 0.3 + 0.1 * float(rng.random()),
            "user/mode": "user",
            "pos/pos_x": float(i),
            "pos/pos_y": 0.0,
            "pos/pos_z": float(-i),
            "pos/speed": 1.5,
            "pos/cte": float(rng.normal(0, 0.05)),
        }
        tub.write_record({k: v for k, v in values.items() if k in inputs})
    tub.close()
    return path


@pytest.fixture
def make_tub(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "tub", **kwargs) -> Path:
        return write_tub(tmp_path / name, **kwargs)

    return make


def donkey_config():
    """A donkeycar Config as TubDataset needs it (image size of our tubs)."""
    from donkeycar.config import Config

    cfg = Config()
    cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH = IMAGE_SHAPE
    return cfg


def read_with_donkeycar(path: Path) -> list[dict]:
    """Every record donkeycar's training pipeline would see, with its image loaded (raises if unreadable)."""
    from donkeycar.pipeline.types import TubDataset

    dataset = TubDataset(donkey_config(), [str(path)])
    try:
        records = dataset.get_records()
        for record in records:
            assert record.image().shape == IMAGE_SHAPE
        return [r.underlying for r in records]
    finally:
        dataset.close()


@pytest.fixture
def donkey_read() -> Callable[[Path], list[dict]]:
    return read_with_donkeycar
