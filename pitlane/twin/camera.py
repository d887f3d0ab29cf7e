"""The car's camera: a pinhole over a flat world, rendered from the track's top-down texture.

Every pixel below the horizon looks at the ground plane, and image -> ground is a homography, so a frame is
one `cv2.warpPerspective` per texture level (near rows sample the sharp level, far rows blurrier levels,
which is what a real lens does and avoids aliasing), plus a precomputed sky above the horizon and a haze
band towards it. About 0.1 ms for 160x120 on one core.

Camera frame (OpenCV): x right, y down, z forward. The mount follows the Unity simulator's `cam_config`:
offset_x right, offset_y up, offset_z forward of the car's reference point (the rear axle), rot_x pitch down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from pitlane.twin.randomization import DomainRandomization, FrameJitter, Randomizer
from pitlane.twin.texture import TrackTexture, texture_for
from pitlane.twin.track import Track
from pitlane.twin.vehicle import VehicleState

__all__ = ["CameraParams", "Camera", "DomainRandomization"]

MAX_VIEW_M = 20.0  # [m] ground farther than this is drawn as haze
_LEVEL_DIST_M = (1.6, 3.5)  # [m] distances where sampling switches to the next coarser texture level
_FOG_START_M = 5.0  # [m] ground farther than this fades towards the haze colour...
_FOG_SCALE_M = 6.0  # [m] ...with this e-folding distance
_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


@dataclass(frozen=True)
class CameraParams:
    """Camera intrinsics and mount; the field names follow the protocol's `cam_config` message."""

    img_w: int = 160  # [px]
    img_h: int = 120  # [px]
    fov_deg: float = 70.0  # [deg] VERTICAL field of view, like Unity's Camera.fieldOfView
    offset_x: float = 0.0  # [m] right of the car's center line
    offset_y: float = 0.20  # [m] height above the ground
    offset_z: float = 0.20  # [m] forward of the rear axle
    rot_x_deg: float = 20.0  # [deg] pitch down from horizontal

    def __post_init__(self) -> None:
        if not (8 <= self.img_w <= 1920 and 8 <= self.img_h <= 1080):
            raise ValueError(f"camera size {self.img_w}x{self.img_h} outside 8x8..1920x1080")
        if not (5.0 <= self.fov_deg <= 150.0):
            raise ValueError(f"camera fov {self.fov_deg} deg outside 5..150")
        if not (0.02 <= self.offset_y <= 5.0):
            raise ValueError(f"camera height offset_y {self.offset_y} m outside 0.02..5")
        if not (-10.0 <= self.rot_x_deg <= 89.0):
            raise ValueError(f"camera pitch rot_x {self.rot_x_deg} deg outside -10..89")

    @classmethod
    def from_cam_config(cls, msg: dict, base: CameraParams | None = None) -> CameraParams:
        """Apply a protocol `cam_config` message: values may be strings; 0 or absent keeps `base`'s value
        (the Unity simulator treats 0 as "unchanged", and gym-donkeycar sends zeros for unset keys).
        Raises ValueError for values that are not numbers or are out of range."""
        base = base or cls()
        keys = {
            "img_w": "img_w",
            "img_h": "img_h",
            "fov": "fov_deg",
            "offset_x": "offset_x",
            "offset_y": "offset_y",
            "offset_z": "offset_z",
            "rot_x": "rot_x_deg",
        }
        kw: dict[str, Any] = {}
        for key, name in keys.items():
            if key not in msg:
                continue
            raw = msg[key]
            try:
                v = float(str(raw).replace(",", ".")) if isinstance(raw, str) else float(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"cam_config {key}={raw!r} is not a number") from exc
            if not math.isfinite(v):
                raise ValueError(f"cam_config {key}={raw!r} is not finite")
            if v == 0.0:
                continue
            kw[name] = int(round(v)) if name in ("img_w", "img_h") else v
        return replace(base, **kw)

    @property
    def focal_px(self) -> float:
        return 0.5 * self.img_h / math.tan(math.radians(self.fov_deg) / 2)


@dataclass(frozen=True)
class _RowPlan:
    """Which image rows show sky, haze and which texture level, and how much fog (fixed per geometry)."""

    haze: tuple[int, int]  # rows [a, b) drawn as flat haze (ground too far to draw)
    bands: tuple[tuple[int, int, int], ...]  # (level, r0, r1): rows sampled from texture `level`
    fog_rows: tuple[int, int]  # rows [a, b) blended towards the haze colour
    fog_keep: np.ndarray  # (b - a, img_w) float32 weight of the ground colour in the fog rows
    fog_haze: np.ndarray  # (b - a, img_w) float32 weight of the haze colour (1 - fog_keep)


class Camera:
    """Renders RGB uint8 (img_h, img_w, 3) frames of a track for a vehicle pose."""

    def __init__(
        self,
        track: Track,
        params: CameraParams | None = None,
        randomization: DomainRandomization | None = None,
        texture: TrackTexture | None = None,
    ):
        self.track = track
        self.params = params or CameraParams()
        self.texture = texture or texture_for(track)
        self.randomizer = (
            Randomizer(randomization, self.params.img_h, self.params.img_w) if randomization else None
        )
        p = self.params
        self._sky = self._paint_sky(np.array(track.style.sky_rgb, np.float32))
        self._haze = np.r_[
            np.array(track.style.sky_rgb, np.float32) * 0.55
            + np.array(track.style.ground_rgb, np.float32) * 0.45,
            255.0,
        ].astype(np.float32)
        self._haze_u8 = np.round(self._haze).astype(np.uint8)
        self._f, self._u0, self._v0 = p.focal_px, (p.img_w - 1) / 2, (p.img_h - 1) / 2
        self._level_px_per_m = [self.texture.px_per_m / 2**k for k in range(len(self.texture.levels_rgba))]
        self._plans: dict[tuple[int, int], _RowPlan] = {}
        self._haze_img = np.ascontiguousarray(np.broadcast_to(self._haze_u8, (p.img_h, p.img_w, 4)))
        self._ground_border = (*(float(c) for c in self.texture.ground_rgb), 255.0)
        self._plan = self._plan_rows(p.rot_x_deg, p.offset_y)

    def _paint_sky(self, sky: np.ndarray) -> np.ndarray:
        """Sky colour, darker at the top and lighter towards the horizon (RGBA, the whole frame)."""
        p = self.params
        h, w = p.img_h, p.img_w
        horizon = (h - 1) / 2 - p.focal_px * math.tan(math.radians(p.rot_x_deg))
        t = np.clip(np.arange(h, dtype=np.float32) / max(horizon, 1.0), 0.0, 1.0)[:, None, None]
        top = sky * 0.85
        bottom = np.minimum(sky * 1.1 + 20.0, 255.0)
        grad = top * (1 - t) + bottom * t
        rgba = np.concatenate([grad, np.full((h, 1, 1), 255.0, np.float32)], axis=2)
        return np.ascontiguousarray(np.broadcast_to(rgba, (h, w, 4))).astype(np.uint8)

    # ---- geometry ----------------------------------------------------------------------------------
    def image_to_ground(self, vehicle: VehicleState, jitter: FrameJitter | None = None) -> np.ndarray:
        """3x3 homography taking image pixels (u, v, 1) to homogeneous ground points (x, y, w) [m].

        Each pixel's ray C + t*d (d = R^T K^-1 (u, v, 1)) meets the ground at t = -C_z / d_z, which is linear
        in (u, v, 1) up to the factor d_z: hence (C_x d_z - C_z d_x, C_y d_z - C_z d_y, d_z).
        """
        return np.array(self._image_to_ground_rows(vehicle, jitter))

    def _image_to_ground_rows(self, vehicle: VehicleState, jitter: FrameJitter | None):
        """The rows of `image_to_ground` as plain floats (numpy's per-call cost dominates 3x3 maths)."""
        p = self.params
        pitch = math.radians(p.rot_x_deg + (jitter.pitch_deg if jitter else 0.0))
        yaw = vehicle.yaw_rad + (math.radians(jitter.yaw_deg) if jitter else 0.0)
        height = p.offset_y + (jitter.height_m if jitter else 0.0)
        c, s = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(pitch), math.sin(pitch)
        cam_x = (s, -c, 0.0)  # image right, in world coordinates
        cam_y = (-sp * c, -sp * s, -cp)  # image down
        cam_z = (cp * c, cp * s, -sp)  # optical axis
        vc, vs = math.cos(vehicle.yaw_rad), math.sin(vehicle.yaw_rad)
        ccx = vehicle.x_m + p.offset_z * vc + p.offset_x * vs
        ccy = vehicle.y_m + p.offset_z * vs - p.offset_x * vc
        f, u0, v0 = self._f, self._u0, self._v0
        m = [(cam_x[r] / f, cam_y[r] / f, cam_z[r] - (u0 * cam_x[r] + v0 * cam_y[r]) / f) for r in range(3)]
        mz = m[2]
        return (
            [ccx * mz[k] - height * m[0][k] for k in range(3)],
            [ccy * mz[k] - height * m[1][k] for k in range(3)],
            list(mz),
        )

    def row_distance_m(self, pitch_deg: float | None = None, height_m: float | None = None) -> np.ndarray:
        """Ground distance [m] seen by each image row (inf at or above the horizon)."""
        p = self.params
        pitch = math.radians(p.rot_x_deg if pitch_deg is None else pitch_deg)
        h = p.offset_y if height_m is None else height_m
        depress = pitch + np.arctan((np.arange(p.img_h) - self._v0) / self._f)
        with np.errstate(divide="ignore"):
            return np.where(depress > 1e-6, h / np.tan(np.maximum(depress, 1e-6)), np.inf)

    def _plan_rows(self, pitch_deg: float, height_m: float) -> _RowPlan:
        p = self.params
        dist = self.row_distance_m(pitch_deg, height_m)
        visible = np.flatnonzero(dist <= MAX_VIEW_M)
        horizon = (p.img_h - 1) / 2 - self._f * math.tan(math.radians(pitch_deg))
        r_first = int(visible[0]) if len(visible) else p.img_h
        hz = min(max(0, int(math.ceil(horizon))), r_first)
        bounds = [r_first]
        for d_switch in reversed(_LEVEL_DIST_M):
            bounds.append(max(bounds[-1], int(np.searchsorted(-dist, -d_switch))))
        bounds.append(p.img_h)
        bands = tuple(
            (lv, r0, r1) for lv, r0, r1 in zip((2, 1, 0), bounds[:-1], bounds[1:], strict=True) if r1 > r0
        )
        fog_end = max(r_first, int(np.searchsorted(-dist, -_FOG_START_M)))
        keep = np.exp(-(dist[r_first:fog_end] - _FOG_START_M) / _FOG_SCALE_M).astype(np.float32)
        keep = np.ascontiguousarray(np.broadcast_to(keep[:, None], (len(keep), p.img_w)))
        return _RowPlan((hz, r_first), bands, (r_first, fog_end), keep, 1.0 - keep)

    def _jitter_plan(self, jitter: FrameJitter) -> _RowPlan:
        """Row plan for a jittered camera, cached on a fine grid (0.05 deg, 1 mm) of pitch and height."""
        key = (round(jitter.pitch_deg * 20), round(jitter.height_m * 1000))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = self._plans[key] = self._plan_rows(
                self.params.rot_x_deg + key[0] / 20, self.params.offset_y + key[1] / 1000
            )
        return plan

    # ---- rendering ---------------------------------------------------------------------------------
    def render(self, vehicle: VehicleState, rng: np.random.Generator | None = None) -> np.ndarray:
        """One RGB frame; `rng` drives domain randomisation (ignored without randomisation)."""
        jitter = self.randomizer.jitter(rng) if (self.randomizer and rng is not None) else None
        g0, g1, g2 = self._image_to_ground_rows(vehicle, jitter)
        plan = self._plan if jitter is None else self._jitter_plan(jitter)
        out = self._sky.copy()  # RGBA while drawing (fast warp path), RGB at the end
        a, b = plan.haze
        if b > a:
            out[a:b] = self._haze_u8
        w = self.params.img_w
        levels = self.texture.levels_rgba
        x0, y1 = self.texture.x0_m, self.texture.y1_m
        for level, r0, r1 in plan.bands:
            # destination pixel -> image pixel (row offset r0) -> ground -> texture pixel, in plain floats
            k = self._level_px_per_m[level]
            rows = [
                [k * (g0[j] - x0 * g2[j]) for j in range(3)],
                [k * (y1 * g2[j] - g1[j]) for j in range(3)],
                list(g2),
            ]
            for row in rows:
                row[2] += r0 * row[1]
            cv2.warpPerspective(
                levels[level],
                np.array(rows),
                (w, r1 - r0),
                dst=out[r0:r1],
                flags=_WARP_FLAGS,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=self._ground_border,
            )
        a, b = plan.fog_rows
        if b > a:
            band = out[a:b]
            cv2.blendLinear(band, self._haze_img[: b - a], plan.fog_keep, plan.fog_haze, dst=band)
        out = cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
        if jitter is not None and self.randomizer is not None and rng is not None:
            out = self.randomizer.apply(out, rng)
        return out
