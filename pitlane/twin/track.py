"""Tracks: a closed centerline with a width, and the geometry queries the twin needs (CTE, progress).

A track is plain data: a JSON file users can write by hand (a few centerline points are enough; they are
smoothed and resampled to a dense polyline) and that `Track.save` writes back exactly.

A minimal track file (points in meters, in driving order, the loop closes by itself; sparse points are
joined by a smooth curve through them; `style` is optional, see TrackStyle):

    {"name": "garage", "width_m": 1.0,
     "centerline": [[0, 0], [6, 0], [8, 2.5], [6, 5], [0, 5], [-2, 2.5]],
     "style": {"ground_rgb": [150, 148, 140]}}

Conventions: ground plane x [m] east, y [m] north, yaw [rad] counter-clockwise from +x. The centerline is
listed in driving order. Cross-track error is POSITIVE when the car is RIGHT of the centerline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPACING_M = 0.05  # [m] centerline sample spacing after resampling
FORMAT_VERSION = 1
DIRECTIONS: tuple[str, ...] = ("ccw", "cw")  # driving directions around a loop, seen from above


LINE_KINDS: tuple[str, ...] = ("solid", "dashed", "none")  # how an edge or centre line is painted
GROUND_PATTERNS: tuple[str, ...] = ("grain", "tiles", "planks", "carpet", "checker")  # floor textures
_CHOICES = {"edge_line": LINE_KINDS, "center_line": LINE_KINDS, "ground_pattern": GROUND_PATTERNS}


@dataclass(frozen=True)
class TrackStyle:
    """Paint of a track: colours (RGB 0-255), lines and floor; scenes differ by these as much as by shape.

    The defaults are the built-in scenes' paint: white solid edge lines, a dashed yellow centre line on
    asphalt over grainy ground. Real tracks differ (tape of any colour, a missing centre line, tape on a tiled
    floor, glare), and the track family (`pitlane.twin.family`) draws all of these."""

    road_rgb: tuple[int, int, int] = (68, 68, 72)
    ground_rgb: tuple[int, int, int] = (84, 120, 60)
    edge_rgb: tuple[int, int, int] = (235, 235, 235)
    center_rgb: tuple[int, int, int] = (235, 190, 40)
    sky_rgb: tuple[int, int, int] = (170, 200, 230)
    edge_width_m: float = 0.05  # [m] edge line width
    center_width_m: float = 0.04  # [m] center line width
    dash_m: float = 0.30  # [m] length of one dash (of the centre line, or of a dashed edge line)
    grain: float = 10.0  # std of the per-pixel texture noise [0-255 levels]
    edge_line: str = "solid"  # solid | dashed | none
    center_line: str = "dashed"  # solid | dashed | none
    gap_m: float = 0.0  # [m] gap between dashes; 0 = as long as a dash
    road_paint: bool = True  # False: no road surface, the floor shows between the lines (tape on a floor)
    ground_pattern: str = "grain"  # grain | tiles | planks | carpet | checker
    pattern_m: float = 0.5  # [m] size of a tile, plank or check
    pattern_contrast: float = 0.0  # [0-1] how much darker a tile's grout, a plank's seam, every other check
    glare: float = 0.0  # [0-1] strength of bright soft patches (ceiling lights on a glossy floor)

    def __post_init__(self) -> None:
        for k, allowed in _CHOICES.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"style {k} must be one of {', '.join(allowed)}, got {getattr(self, k)!r}")

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: dict) -> TrackStyle:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown style keys {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in _CHOICES:
                if v not in _CHOICES[k]:
                    raise ValueError(f"style {k} must be one of {', '.join(_CHOICES[k])}, got {v!r}")
                kw[k] = v
                continue
            if k == "road_paint":
                if not isinstance(v, bool):
                    raise ValueError(f"style road_paint must be true or false, got {v!r}")
                kw[k] = v
                continue
            try:
                if k.endswith("_rgb"):
                    if len(v) != 3 or not all(0 <= int(c) <= 255 for c in v):
                        raise ValueError
                    kw[k] = tuple(int(c) for c in v)
                else:
                    kw[k] = float(v)
            except (TypeError, ValueError):
                what = "three integers 0-255" if k.endswith("_rgb") else "a number"
                raise ValueError(f"style {k} must be {what}, got {v!r}") from None
        return cls(**kw)


@dataclass(frozen=True)
class TrackPoint:
    """Where a position lies relative to the centerline."""

    index: int  # nearest centerline sample (the protocol's activeNode)
    s_m: float  # [m] arc length progress along the centerline, 0..length
    cte_m: float  # [m] signed cross-track error, POSITIVE = right of the centerline
    heading: float  # [rad] centerline yaw at that point


@dataclass(frozen=True, eq=False)
class Track:
    """A closed loop road; derived arrays are computed once at construction."""

    name: str
    centerline: np.ndarray  # (N, 2) [m], closed loop in driving order (last point != first point)
    width_m: float  # [m] road width, edge line to edge line
    style: TrackStyle = field(default_factory=TrackStyle)
    # derived (filled in __post_init__)
    s: np.ndarray = field(init=False, repr=False)  # (N,) [m] cumulative arc length at each sample
    seg_len: np.ndarray = field(init=False, repr=False)  # (N,) [m] length of segment i -> i+1
    tangent: np.ndarray = field(init=False, repr=False)  # (N, 2) unit tangent of segment i -> i+1
    normal_right: np.ndarray = field(init=False, repr=False)  # (N, 2) unit normal pointing right
    heading: np.ndarray = field(init=False, repr=False)  # (N,) [rad] yaw of segment i -> i+1
    curvature: np.ndarray = field(init=False, repr=False)  # (N,) [1/m] signed, + = left turn
    # plain-Python copies for the per-step projection (numpy indexing of scalars is slow)
    _pts: list[tuple[float, float]] = field(init=False, repr=False)
    _tan: list[tuple[float, float]] = field(init=False, repr=False)
    _seg: list[float] = field(init=False, repr=False)
    _s: list[float] = field(init=False, repr=False)
    _heading: list[float] = field(init=False, repr=False)
    _length: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pts = np.ascontiguousarray(np.asarray(self.centerline, dtype=np.float64))
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 8:
            raise ValueError(f"track {self.name!r}: centerline must be (N>=8, 2) points, got {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError(f"track {self.name!r}: centerline has non-finite points")
        if not (0.2 <= float(self.width_m) <= 20.0):
            raise ValueError(f"track {self.name!r}: width_m {self.width_m} outside 0.2..20 m")
        d = np.roll(pts, -1, axis=0) - pts
        seg = np.hypot(d[:, 0], d[:, 1])
        if (seg < 1e-9).any():
            raise ValueError(f"track {self.name!r}: centerline has repeated points")
        tan = d / seg[:, None]
        heading = np.arctan2(tan[:, 1], tan[:, 0])
        dh = np.angle(np.exp(1j * (heading - np.roll(heading, 1))))
        ds = 0.5 * (seg + np.roll(seg, 1))
        set_ = object.__setattr__
        set_(self, "centerline", pts)
        set_(self, "width_m", float(self.width_m))
        set_(self, "seg_len", seg)
        set_(self, "s", np.concatenate([[0.0], np.cumsum(seg)[:-1]]))
        set_(self, "tangent", tan)
        set_(self, "normal_right", np.stack([tan[:, 1], -tan[:, 0]], axis=1))
        set_(self, "heading", heading)
        set_(self, "curvature", dh / ds)
        for name in ("centerline", "seg_len", "s", "tangent", "normal_right", "heading", "curvature"):
            getattr(self, name).setflags(write=False)
        set_(self, "_pts", [tuple(p) for p in pts.tolist()])
        set_(self, "_tan", [tuple(p) for p in tan.tolist()])
        set_(self, "_seg", seg.tolist())
        set_(self, "_s", self.s.tolist())
        set_(self, "_heading", heading.tolist())
        set_(self, "_length", float(self.s[-1] + seg[-1]))

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def length_m(self) -> float:
        return self._length

    @property
    def total_nodes(self) -> int:
        return len(self.centerline)

    @property
    def min_radius_m(self) -> float:
        """Tightest turn radius of the centerline [m] (curvature smoothed over ~0.25 m)."""
        k = np.convolve(
            np.abs(np.r_[self.curvature[-2:], self.curvature, self.curvature[:2]]),
            np.ones(5) / 5,
            mode="valid",
        )
        return float(1.0 / max(k.max(), 1e-9))

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Left and right road edge polylines (N, 2) [m]."""
        # vertex normals: average of adjacent segment normals
        n = self.normal_right + np.roll(self.normal_right, 1, axis=0)
        n /= np.linalg.norm(n, axis=1)[:, None]
        half = 0.5 * self.width_m
        return self.centerline - half * n, self.centerline + half * n

    @property
    def clockwise(self) -> bool:
        """True when the driving order runs clockwise (seen from above, x east, y north)."""
        x, y = self.centerline[:, 0], self.centerline[:, 1]
        return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) < 0.0

    def reversed(self) -> Track:
        """The same road driven the other way: same start point, the centerline in reverse order, so every
        heading turns by 180 degrees and left turns become right turns."""
        pts = np.roll(self.centerline[::-1], 1, axis=0)
        return Track(name=self.name, centerline=pts, width_m=self.width_m, style=self.style)

    def oriented(self, direction: str | None) -> Track:
        """This track driven `direction` ("cw" or "ccw"); None keeps its own driving order."""
        if direction is None:
            return self
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        return self.reversed() if self.clockwise != (direction == "cw") else self

    # ---- queries -----------------------------------------------------------------------------------
    def project(self, xy: tuple[float, float], hint: int | None = None) -> TrackPoint:
        """Nearest point of the centerline to `xy`.

        With `hint` (the previous index) the search walks downhill from it, so a step costs a few
        comparisons however long the track; if the walk ends farther than the road width from the line
        (a teleport, or far off the road) it falls back to the exhaustive search.
        """
        px, py = float(xy[0]), float(xy[1])
        pts = self._pts
        n = len(pts)
        i = -1
        if hint is not None:
            i = int(hint) % n
            qx, qy = pts[i]
            best = (px - qx) ** 2 + (py - qy) ** 2
            for step in (1, -1):
                while True:
                    j = (i + step) % n
                    qx, qy = pts[j]
                    dd = (px - qx) ** 2 + (py - qy) ** 2
                    if dd >= best:
                        break
                    i, best = j, dd
            if best > self.width_m**2:
                i = -1
        if i < 0:
            c = self.centerline
            i = int(np.argmin((c[:, 0] - px) ** 2 + (c[:, 1] - py) ** 2))
        # refine on the segment after i or before i, whichever the point projects onto
        best_k: tuple[float, int, float, float] | None = None
        for k in (i, (i - 1) % n):
            ox, oy = pts[k]
            tx, ty = self._tan[k]
            t = (px - ox) * tx + (py - oy) * ty
            t = min(max(t, 0.0), self._seg[k])
            dd = (px - ox - t * tx) ** 2 + (py - oy - t * ty) ** 2
            if best_k is None or dd < best_k[0]:
                best_k = (dd, k, t, (px - ox) * ty - (py - oy) * tx)
        assert best_k is not None
        _, k, t, cte = best_k
        s = (self._s[k] + t) % self.length_m
        return TrackPoint(index=i, s_m=s, cte_m=cte, heading=self._heading[k])

    def _locate(self, s_m: float) -> tuple[int, float]:
        s = float(s_m) % self.length_m
        k = int(np.searchsorted(self.s, s, side="right") - 1)
        return k, s - float(self.s[k])

    def pose_at(self, s_m: float) -> tuple[float, float, float]:
        """Position and yaw of the centerline at arc length `s_m` (wraps around) [m, m, rad]."""
        k, t = self._locate(s_m)
        x, y = self.centerline[k] + t * self.tangent[k]
        return float(x), float(y), float(self.heading[k])

    def curvature_at(self, s_m: float) -> float:
        """Signed curvature [1/m] at arc length `s_m` (+ = left turn)."""
        k, t = self._locate(s_m)
        a = t / float(self.seg_len[k])
        return float((1 - a) * self.curvature[k] + a * self.curvature[(k + 1) % self.total_nodes])

    # ---- plain data --------------------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        name: str,
        points,
        width_m: float,
        style: TrackStyle | None = None,
        smooth: bool = True,
        spacing_m: float = SPACING_M,
    ) -> Track:
        """Build a track from any closed list of points: sparse points are smoothed, all are resampled."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError(f"track {name!r}: need at least 3 centerline points [[x, y], ...]")
        if not np.isfinite(pts).all():
            raise ValueError(f"track {name!r}: centerline has non-finite numbers")
        if np.hypot(*(pts[0] - pts[-1])) < 1e-6:
            pts = pts[:-1]  # a closing duplicate point is allowed
        seg = np.hypot(*(np.roll(pts, -1, axis=0) - pts).T)
        if (seg < 1e-6).any():
            raise ValueError(f"track {name!r}: centerline has repeated consecutive points")
        uniform = abs(seg.mean() - spacing_m) < 0.05 * spacing_m and seg.std() < 0.05 * spacing_m
        if not uniform:
            if smooth and seg.max() > 2 * spacing_m:
                pts = catmull_rom_closed(pts, samples_per_segment=int(np.ceil(seg.max() / spacing_m * 2)))
            pts = resample_closed(pts, spacing_m)
        return cls(name=name, centerline=pts, width_m=width_m, style=style or TrackStyle())

    def to_json(self) -> dict:
        return {
            "format": "pitlane-track",
            "version": FORMAT_VERSION,
            "name": self.name,
            "width_m": self.width_m,
            "style": self.style.to_json(),
            "centerline": [[round(float(x), 5), round(float(y), 5)] for x, y in self.centerline],
        }

    @classmethod
    def from_json(cls, d: dict) -> Track:
        """Parse a track document: {"name", "width_m", "centerline": [[x, y], ...], optional "style"}."""
        if not isinstance(d, dict):
            raise ValueError("a track file must hold a JSON object")
        missing = [k for k in ("name", "width_m", "centerline") if k not in d]
        if missing:
            raise ValueError(f"track file lacks {missing} (needs name, width_m, centerline)")
        try:
            width = float(d["width_m"])
            pts = np.asarray(d["centerline"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"track {d.get('name')!r}: bad width_m or centerline: {exc}") from exc
        style = TrackStyle.from_json(d.get("style") or {})
        return cls.from_points(str(d["name"]), pts, width, style=style, smooth=bool(d.get("smooth", True)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Track:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read track file {path}: {exc}") from exc
        return cls.from_json(doc)


def catmull_rom_closed(pts: np.ndarray, samples_per_segment: int = 20) -> np.ndarray:
    """Centripetal-free (uniform) Catmull-Rom spline through closed control points."""
    p0, p1 = np.roll(pts, 1, axis=0), pts
    p2, p3 = np.roll(pts, -1, axis=0), np.roll(pts, -2, axis=0)
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[None, :, None]
    a = 2 * p1[:, None]
    b = (p2 - p0)[:, None]
    c = (2 * p0 - 5 * p1 + 4 * p2 - p3)[:, None]
    dd = (-p0 + 3 * p1 - 3 * p2 + p3)[:, None]
    out = 0.5 * (a + b * t + c * t**2 + dd * t**3)
    return out.reshape(-1, 2)


def bspline_closed(pts: np.ndarray, samples_per_segment: int = 20) -> np.ndarray:
    """Uniform cubic B-spline of closed control points: smoother than Catmull-Rom, does not pass them."""
    p0, p1 = np.roll(pts, 1, axis=0), pts
    p2, p3 = np.roll(pts, -1, axis=0), np.roll(pts, -2, axis=0)
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[None, :, None]
    b0 = (1 - t) ** 3 / 6
    b1 = (3 * t**3 - 6 * t**2 + 4) / 6
    b2 = (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6
    b3 = t**3 / 6
    out = b0 * p0[:, None] + b1 * p1[:, None] + b2 * p2[:, None] + b3 * p3[:, None]
    return out.reshape(-1, 2)


def resample_closed(pts: np.ndarray, spacing_m: float = SPACING_M) -> np.ndarray:
    """Resample a closed polyline to (nearly) uniform arc-length spacing."""
    closed = np.vstack([pts, pts[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(8, int(round(s[-1] / spacing_m)))
    si = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.stack([np.interp(si, s, closed[:, 0]), np.interp(si, s, closed[:, 1])], axis=1)


def rounded_polygon(corners, radii, start_on_longest: bool = False) -> np.ndarray:
    """Closed path along a polygon's edges with each corner replaced by an arc of the given radius.

    The path starts in the middle of the straight from corner 0 to corner 1 (or of the longest straight).

    Raises ValueError if two arcs would overlap on an edge (the radius is too large for that edge).
    """
    c = np.asarray(corners, dtype=np.float64)
    n = len(c)
    r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (n,))
    u_in = c - np.roll(c, 1, axis=0)
    u_in /= np.linalg.norm(u_in, axis=1)[:, None]
    u_out = np.roll(u_in, -1, axis=0)
    turn = np.arctan2(u_in[:, 0] * u_out[:, 1] - u_in[:, 1] * u_out[:, 0], (u_in * u_out).sum(axis=1))
    tlen = r * np.tan(np.abs(turn) / 2)
    edge = np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1)
    over = tlen + np.roll(tlen, -1) > edge + 1e-9
    if over.any():
        raise ValueError(f"corner radii too large for edges {np.flatnonzero(over).tolist()}")
    out = []
    for i in range(n):
        t1 = c[i] - u_in[i] * tlen[i]
        if abs(turn[i]) < 1e-9:
            out.append(c[i][None])
            continue
        left = np.array([-u_in[i, 1], u_in[i, 0]])
        sign = 1.0 if turn[i] > 0 else -1.0
        center = t1 + sign * r[i] * left
        a0 = math.atan2(t1[1] - center[1], t1[0] - center[0])
        m = max(4, int(abs(turn[i]) * r[i] / (SPACING_M / 2)))
        a = a0 + np.linspace(0.0, turn[i], m + 1)
        out.append(center + r[i] * np.stack([np.cos(a), np.sin(a)], axis=1))
    path = np.vstack(out)
    keep = np.r_[True, np.hypot(*np.diff(path, axis=0).T) > 1e-6]
    path = resample_closed(path[keep], SPACING_M)
    # start (s = 0) in the middle of the first (or the longest) straight, so the start line lies on it
    straight = edge - tlen - np.roll(tlen, -1)
    e = int(np.argmax(straight)) if start_on_longest else 0
    mid = c[e] + u_out[e] * (tlen[e] + 0.5 * straight[e])
    return np.roll(path, -int(np.argmin(np.hypot(*(path - mid).T))), axis=0)


def min_clearance_m(track: Track, skip_m: float = 3.0) -> float:
    """Smallest distance between centerline samples more than `skip_m` apart along the loop.

    A drivable track needs this well above its width, or two parts of the road touch.
    """
    pts = track.centerline[::2]
    s = track.s[::2]
    d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    ds = np.abs(s[:, None] - s[None, :])
    ds = np.minimum(ds, track.length_m - ds)
    d[ds < skip_m] = np.inf
    return float(d.min())


__all__ = [
    "DIRECTIONS",
    "Track",
    "TrackPoint",
    "TrackStyle",
    "SPACING_M",
    "bspline_closed",
    "catmull_rom_closed",
    "resample_closed",
    "rounded_polygon",
    "min_clearance_m",
]
