"""Top-down texture of a track: the "world" the camera sees, painted once per track.

Asphalt with grain, white edge lines, a dashed yellow center line, a start line and ground outside, at
about 1 cm per pixel, plus two half-resolution levels (a mip pyramid) so the camera can sample distant
ground without aliasing. Built lazily and cached per track.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from pitlane.twin.track import Track

PX_PER_M = 100.0  # [px/m] texture resolution of level 0
MARGIN_M = 3.0  # [m] ground painted around the track's bounding box
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_TILE = 509  # [px] side of the repeating grain patch (prime, so the repetition is hard to see)


@dataclass(frozen=True, eq=False)
class TrackTexture:
    """RGB images of the ground plane; pixel (u, v) of level k covers world (x0 + u*2^k/ppm, y1 - v*2^k/ppm)."""

    # RGBA with an opaque alpha (OpenCV's bilinear warp has SIMD code for 4 channels, not 3: the camera
    # runs 3x faster); level 0 at full resolution, each next level half the size
    levels_rgba: tuple[np.ndarray, ...]
    x0_m: float  # [m] world x of the left edge
    y1_m: float  # [m] world y of the top edge (north up)
    px_per_m: float  # [px/m] of level 0
    ground_rgb: tuple[int, int, int]

    @cached_property
    def levels(self) -> tuple[np.ndarray, ...]:
        """The levels as RGB images (for maps and plots; made on first use)."""
        return tuple(cv2.cvtColor(lv, cv2.COLOR_RGBA2RGB) for lv in self.levels_rgba)

    def world_to_px(self, level: int = 0) -> np.ndarray:
        """3x3 matrix taking homogeneous world (x, y, 1) [m] to texture pixels of `level`."""
        k = self.px_per_m / (2**level)
        return np.array([[k, 0.0, -k * self.x0_m], [0.0, -k, k * self.y1_m], [0.0, 0.0, 1.0]])


def _to_px(pts: np.ndarray, x0: float, y1: float, ppm: float) -> np.ndarray:
    px = np.stack([(pts[:, 0] - x0) * ppm, (y1 - pts[:, 1]) * ppm], axis=1)
    return np.round(px * (1 << _SHIFT)).astype(np.int32)


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], grain: float) -> np.ndarray:
    """Per-pixel grain (a tiled random patch) plus large soft blotches (wear, stains), float32 in levels."""
    h, w = shape
    tile = rng.normal(0.0, 1.0, (_TILE, _TILE)).astype(np.float32)
    fine = np.tile(tile, (h // _TILE + 1, w // _TILE + 1))[:h, :w]
    blotches = rng.normal(0.0, 0.8, (max(2, h // 60), max(2, w // 60))).astype(np.float32)
    coarse = cv2.resize(blotches, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.asarray((fine + coarse) * np.float32(grain), np.float32)


def paint_track(track: Track, px_per_m: float = PX_PER_M, seed: int = 0) -> TrackTexture:
    """Paint the track into a top-down RGB image (deterministic for a track and seed)."""
    st = track.style
    lo = track.centerline.min(axis=0) - MARGIN_M - track.width_m
    hi = track.centerline.max(axis=0) + MARGIN_M + track.width_m
    w = int(np.ceil((hi[0] - lo[0]) * px_per_m))
    h = int(np.ceil((hi[1] - lo[1]) * px_per_m))
    x0, y1 = float(lo[0]), float(hi[1])
    rng = np.random.default_rng(seed)

    def line_mask(polylines: list[np.ndarray], width_m: float, closed: bool) -> np.ndarray:
        m = np.zeros((h, w), np.uint8)
        cv2.polylines(
            m,
            [_to_px(p, x0, y1, px_per_m) for p in polylines],
            closed,
            255,
            thickness=max(1, int(round(width_m * px_per_m))),
            lineType=cv2.LINE_AA,
            shift=_SHIFT,
        )
        return m

    cl = track.centerline
    road = line_mask([cl], track.width_m + st.edge_width_m, True)
    left, right = track.edges()
    edges = line_mask([left, right], st.edge_width_m, True)
    # dashes: runs of centerline samples where (s // dash) is even
    on = (track.s // st.dash_m).astype(int) % 2 == 0
    dashes, start = [], None
    for i, flag in enumerate(np.r_[on, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= 2:
                dashes.append(cl[start:i])
            start = None
    center = line_mask(dashes, st.center_width_m, False)
    # start line across the road at s = 0
    n0 = track.normal_right[0] * (0.5 * track.width_m)
    start_line = line_mask([np.stack([cl[0] - n0, cl[0] + n0])], st.edge_width_m, False)

    noise = _noise_field(rng, (h, w), 1.0)
    img = np.clip(np.asarray(st.ground_rgb, np.float32) + (noise * np.float32(st.grain))[..., None], 0, 255)
    img = img.astype(np.uint8)
    layers = [
        (road, st.road_rgb, 0.7),
        (edges, st.edge_rgb, 0.35),
        (center, st.center_rgb, 0.35),
        (start_line, st.edge_rgb, 0.35),
    ]
    for mask, rgb, grain_k in layers:
        # blend only where the layer has paint: a few percent of the texture
        ys, xs = np.nonzero(mask)
        a = (mask[ys, xs].astype(np.float32) / 255.0)[:, None]
        # shift the noise so that layers do not share the same grain pattern
        paint = (
            np.asarray(rgb, np.float32) + (noise[(ys + 97) % h, (xs + 61) % w] * st.grain * grain_k)[:, None]
        )
        img[ys, xs] = np.clip(img[ys, xs] * (1.0 - a) + paint * a, 0, 255).astype(np.uint8)
    levels = [cv2.cvtColor(img, cv2.COLOR_RGB2RGBA)]
    for _ in range(2):
        levels.append(cv2.pyrDown(levels[-1]))
    ground = (int(st.ground_rgb[0]), int(st.ground_rgb[1]), int(st.ground_rgb[2]))
    return TrackTexture(tuple(levels), x0, y1, px_per_m, ground)


@lru_cache(maxsize=6)
def texture_for(track: Track) -> TrackTexture:
    """The (cached) texture of a track; tracks hash by identity, so one texture per loaded track."""
    return paint_track(track)
