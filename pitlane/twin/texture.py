"""Top-down texture of a track: the "world" the camera sees, painted once per track.

As its `TrackStyle` says: ground (grainy, or a tiled, planked, carpeted or checked floor), a road surface
(or none: tape on the floor), edge lines and a centre line (solid, dashed or none, in any colour), a start
line and, on glossy floors, glare; about 1 cm per pixel, plus two half-resolution levels (a mip pyramid) so
the camera can sample distant ground without aliasing. Built lazily and cached per track.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from pitlane.twin.track import Track, TrackStyle

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
    left, right = track.edges()
    center_runs = _dash_runs(track, st) if st.center_line == "dashed" else [cl]
    # start line across the road at s = 0
    n0 = track.normal_right[0] * (0.5 * track.width_m)
    start_line = line_mask([np.stack([cl[0] - n0, cl[0] + n0])], st.edge_width_m, False)

    noise = _noise_field(rng, (h, w), 1.0)
    img = np.clip(np.asarray(st.ground_rgb, np.float32) + (noise * np.float32(st.grain))[..., None], 0, 255)
    if st.ground_pattern != "grain":
        img = np.clip(img * _pattern(st, rng, x0, y1, px_per_m, (h, w))[..., None], 0, 255)
    img = img.astype(np.uint8)
    layers = []
    if st.road_paint:
        layers.append((line_mask([cl], track.width_m + st.edge_width_m, True), st.road_rgb, 0.7))
    if st.edge_line == "solid":
        layers.append((line_mask([left, right], st.edge_width_m, True), st.edge_rgb, 0.35))
    elif st.edge_line == "dashed":
        runs = [e[a:b] for e in (left, right) for a, b in _runs(track, st)]
        layers.append((line_mask(runs, st.edge_width_m, False), st.edge_rgb, 0.35))
    if st.center_line != "none":
        closed = st.center_line == "solid"
        layers.append((line_mask(center_runs, st.center_width_m, closed), st.center_rgb, 0.35))
    layers.append((start_line, st.edge_rgb if st.edge_line != "none" else st.center_rgb, 0.35))
    for mask, rgb, grain_k in layers:
        # blend only where the layer has paint: a few percent of the texture
        ys, xs = np.nonzero(mask)
        a = (mask[ys, xs].astype(np.float32) / 255.0)[:, None]
        # shift the noise so that layers do not share the same grain pattern
        paint = (
            np.asarray(rgb, np.float32) + (noise[(ys + 97) % h, (xs + 61) % w] * st.grain * grain_k)[:, None]
        )
        img[ys, xs] = np.clip(img[ys, xs] * (1.0 - a) + paint * a, 0, 255).astype(np.uint8)
    if st.glare > 0:
        img = _with_glare(img, st.glare, rng, px_per_m)
    levels = [cv2.cvtColor(img, cv2.COLOR_RGB2RGBA)]
    for _ in range(2):
        levels.append(cv2.pyrDown(levels[-1]))
    ground = (int(st.ground_rgb[0]), int(st.ground_rgb[1]), int(st.ground_rgb[2]))
    return TrackTexture(tuple(levels), x0, y1, px_per_m, ground)


def _runs(track: Track, st: TrackStyle) -> list[tuple[int, int]]:
    """[start, end) index runs of the centreline samples that lie on a dash (dash_m on, gap_m off)."""
    if st.gap_m > 0:
        on = track.s % (st.dash_m + st.gap_m) < st.dash_m
    else:  # a gap as long as a dash (the built-in scenes' centre line)
        on = (track.s // st.dash_m).astype(int) % 2 == 0
    runs, start = [], None
    for i, flag in enumerate(np.r_[on, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= 2:
                runs.append((start, i))
            start = None
    return runs


def _dash_runs(track: Track, st: TrackStyle) -> list[np.ndarray]:
    return [track.centerline[a:b] for a, b in _runs(track, st)]


def _pattern(
    st: TrackStyle, rng: np.random.Generator, x0: float, y1: float, ppm: float, shape: tuple[int, int]
) -> np.ndarray:
    """Brightness factor (h, w) of a patterned floor: grout between tiles, seams between planks, a weave,
    checks; each tile or plank a little lighter or darker than the next, as real floors are."""
    h, w = shape
    x = (x0 + np.arange(w, dtype=np.float32) / ppm)[None, :]  # [m] world x of each column
    y = (y1 - np.arange(h, dtype=np.float32) / ppm)[:, None]  # [m] world y of each row
    p, c = max(st.pattern_m, 0.02), np.float32(st.pattern_contrast)
    shade = rng.uniform(-0.5, 0.5, (64, 64)).astype(np.float32) * c  # per tile/plank, wrapped
    i, j = np.floor(x / p).astype(int), np.floor(y / p).astype(int)
    seam = np.float32(0.012)  # [m] grout or seam width
    if st.ground_pattern == "tiles":
        grout = (x - i * p < seam) | (y - j * p < seam)
        return np.where(grout, 1.0 - c, 1.0 + shade[j % 64, i % 64]).astype(np.float32)
    if st.ground_pattern == "planks":  # planks along x, p wide, 4p long, rows offset
        length = 4 * p
        k = np.floor((x + 0.37 * length * j) / length).astype(int)
        seam_mask = (y - j * p < seam) | (x + 0.37 * length * j - k * length < seam)
        return np.where(seam_mask, 1.0 - c, 1.0 + shade[j % 64, k % 64]).astype(np.float32)
    if st.ground_pattern == "checker":
        return np.where((i + j) % 2 == 0, 1.0, 1.0 - c).astype(np.float32)
    weave = 0.25 * (2.0 + np.sin(2 * np.pi * x / p * 8) + np.sin(2 * np.pi * y / p * 8))  # carpet
    return (1.0 - c * weave).astype(np.float32)


def _with_glare(img: np.ndarray, strength: float, rng: np.random.Generator, ppm: float) -> np.ndarray:
    """A few soft bright patches (reflections of ceiling lights), each up to `strength` of the way to white."""
    h, w = img.shape[:2]
    small = np.zeros((max(2, h // 16), max(2, w // 16)), np.float32)
    n = max(1, int(h * w / (ppm * ppm) / 12.0))  # about one light per 12 m^2
    ys, xs = rng.integers(0, small.shape[0], n), rng.integers(0, small.shape[1], n)
    small[ys, xs] = 1.0
    sigma = 0.5 * ppm / 16  # [px of the small image] patches of ~1 m
    small = cv2.GaussianBlur(small, (0, 0), sigma).astype(np.float32)
    small /= max(float(small.max()), 1e-6)
    glow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None] * np.float32(strength)
    out = img.astype(np.float32)
    return np.clip(out + (255.0 - out) * glow, 0, 255).astype(np.uint8)


@lru_cache(maxsize=6)
def texture_for(track: Track) -> TrackTexture:
    """The (cached) texture of a track; tracks hash by identity, so one texture per loaded track."""
    return paint_track(track)
