"""Domain randomisation of camera frames: light, colour tint, sensor noise and camera jitter.

Models trained on randomised frames lean on the road's shape rather than on the twin's exact colours,
which is what transfers to a real car. Everything is drawn from the caller's seeded generator, so a seed
reproduces the same frames. Cheap by construction: one affine colour transform per frame for light and
tint, and a precomputed bank of noise images instead of fresh Gaussian noise per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DomainRandomization:
    """Ranges of the per-frame perturbations (0 disables one)."""

    brightness: float = 0.25  # max relative change of overall light (0.25 -> x0.75..x1.25)
    contrast: float = 0.2  # max relative change of contrast around mid grey
    tint: float = 0.08  # max relative gain change per colour channel (texture/white balance)
    noise_std: float = 6.0  # [0-255 levels] std of additive sensor noise
    pitch_deg: float = 1.5  # [deg] max camera pitch jitter (suspension, mount flex)
    yaw_deg: float = 1.0  # [deg] max camera yaw jitter
    height_m: float = 0.01  # [m] max camera height jitter
    hue_deg: float = 0.0  # [deg] max rotation of every colour's hue (tape and floors of colours never seen)
    grey: float = 0.0  # probability of a frame in shades of grey (colour is no cue at all)


@dataclass(frozen=True)
class FrameJitter:
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    height_m: float = 0.0


class Randomizer:
    """Applies a DomainRandomization to frames of one size."""

    _BANK = 4

    def __init__(self, cfg: DomainRandomization, img_h: int, img_w: int, seed: int = 12345):
        self.cfg = cfg
        bank_rng = np.random.default_rng(seed)
        # noise as (positive part, negative part) uint8 pairs: two saturating adds instead of int16 maths
        self._noise = []
        for _ in range(self._BANK if cfg.noise_std > 0 else 0):
            n = np.clip(np.round(bank_rng.normal(0.0, cfg.noise_std, (img_h, img_w, 3))), -255, 255)
            self._noise.append((np.maximum(n, 0).astype(np.uint8), np.maximum(-n, 0).astype(np.uint8)))

    def jitter(self, rng: np.random.Generator) -> FrameJitter:
        c = self.cfg
        u = rng.uniform(-1.0, 1.0, 3).tolist()
        return FrameJitter(u[0] * c.pitch_deg, u[1] * c.yaw_deg, u[2] * c.height_m)

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        u = rng.uniform(-1.0, 1.0, 5).tolist()
        light = 1.0 + c.brightness * u[0]
        contrast = 1.0 + c.contrast * u[1]
        g = [light * (1.0 + c.tint * v) for v in u[2:5]]
        # per channel: ((x - 128) * contrast + 128) * gain, as one affine colour transform
        m = np.array(
            [
                [contrast * g[0], 0.0, 0.0, 128.0 * (1.0 - contrast) * g[0]],
                [0.0, contrast * g[1], 0.0, 128.0 * (1.0 - contrast) * g[1]],
                [0.0, 0.0, contrast * g[2], 128.0 * (1.0 - contrast) * g[2]],
            ],
            np.float32,
        )
        if c.hue_deg > 0 or c.grey > 0:
            m = self._hue_grey(m, rng)
        out = cv2.transform(img, m)
        if self._noise:
            pos, neg = self._noise[int(rng.integers(len(self._noise)))]
            cv2.add(out, pos, dst=out)
            cv2.subtract(out, neg, dst=out)
        return out

    def _hue_grey(self, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`m` followed by a hue rotation (about the grey axis) and, sometimes, a conversion to grey."""
        c = self.cfg
        a = np.radians(c.hue_deg * rng.uniform(-1.0, 1.0))
        k = np.full(3, 1.0 / np.sqrt(3.0))  # rotation about (1, 1, 1): greys stay grey, hues turn
        cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
        rot = np.cos(a) * np.eye(3) + np.sin(a) * cross + (1.0 - np.cos(a)) * np.outer(k, k)
        if rng.random() < c.grey:
            rot = np.tile(np.array([0.299, 0.587, 0.114]), (3, 1))
        return (rot @ m).astype(np.float32)
