"""Pictures of the twin a person can look at: the camera view, a top-down map, a strip of frames on a lap.

Used by `pitlane twin snapshot` to check a scene (or a user's track file) by eye, and by docs and notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pitlane.twin.sim import Sim
from pitlane.twin.texture import texture_for
from pitlane.twin.track import Track
from pitlane.twin.vehicle import VehicleState

CAR_LENGTH_M = 0.36  # [m] drawn car size (a 1/10 donkeycar)
CAR_WIDTH_M = 0.20


def upscale(frame: np.ndarray, scale: int = 4) -> np.ndarray:
    """Enlarge a small camera frame with square pixels (what the model sees, just bigger)."""
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def draw_map(
    track: Track,
    cars: list[VehicleState] | tuple[VehicleState, ...] = (),
    trail: np.ndarray | None = None,
    marks: list[VehicleState] | None = None,
    max_px: int = 1200,
) -> np.ndarray:
    """Top-down RGB map of the track with cars (red, with a heading tick), an optional driven trail (cyan)
    and optional marks (small blue cars: e.g. where the frames of a strip were taken)."""
    tex = texture_for(track)
    level = 0
    while level + 1 < len(tex.levels_rgba) and max(tex.levels_rgba[level].shape[:2]) > max_px:
        level += 1
    img = tex.levels[level].copy()
    m = tex.world_to_px(level)

    def px(x: float, y: float) -> tuple[int, int]:
        u, v, _ = m @ (x, y, 1.0)
        return int(round(u)), int(round(v))

    if trail is not None and len(trail) > 1:
        pts = np.array([px(x, y) for x, y in trail], np.int32)
        cv2.polylines(img, [pts], False, (0, 220, 255), 2, cv2.LINE_AA)
    for mark in marks or []:
        _draw_car(img, px, mark, (40, 90, 255), 0.6)
    for car in cars:
        _draw_car(img, px, car, (230, 30, 30), 1.0)
    return img


def _draw_car(img: np.ndarray, px, car: VehicleState, rgb: tuple[int, int, int], size: float) -> None:
    c, s = math.cos(car.yaw_rad), math.sin(car.yaw_rad)
    half_l, half_w = 0.5 * CAR_LENGTH_M * size, 0.5 * CAR_WIDTH_M * size
    # rear axle is the reference point: the body extends mostly forward
    cx, cy = car.x_m + 0.13 * c * size, car.y_m + 0.13 * s * size
    corners = [
        (cx + dx * c - dy * s, cy + dx * s + dy * c)
        for dx, dy in ((half_l, half_w), (half_l, -half_w), (-half_l, -half_w), (-half_l, half_w))
    ]
    poly = np.array([px(x, y) for x, y in corners], np.int32)
    cv2.fillPoly(img, [poly], rgb, cv2.LINE_AA)
    nose = px(cx + 1.6 * half_l * c, cy + 1.6 * half_l * s)
    cv2.line(img, px(cx, cy), nose, (255, 255, 255), 2, cv2.LINE_AA)


def lap_frames(sim: Sim, n_frames: int = 8) -> tuple[list[np.ndarray], list[VehicleState]]:
    """Camera frames at `n_frames` evenly spaced points of a lap on the centerline (the sim is moved)."""
    frames, poses = [], []
    for k in range(n_frames):
        x, y, yaw = sim.track.pose_at(k * sim.track.length_m / n_frames)
        sim.set_pose(x, y, yaw)
        frames.append(sim.render())
        poses.append(sim.state.vehicle)
    return frames, poses


def strip(frames: list[np.ndarray], per_row: int = 4, scale: int = 2) -> np.ndarray:
    """Frames tiled in rows of `per_row`, each enlarged `scale` times, with a thin separator."""
    h, w = frames[0].shape[:2]
    pad = [np.zeros_like(frames[0])] * (-len(frames) % per_row)
    cells = [
        cv2.copyMakeBorder(upscale(f, scale), 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        for f in list(frames) + pad
    ]
    rows = [np.hstack(cells[i : i + per_row]) for i in range(0, len(cells), per_row)]
    return np.vstack(rows)


@dataclass(frozen=True)
class SnapshotFiles:
    camera: Path  # camera view at the start pose, enlarged
    map: Path  # top-down map with the car and the strip's poses
    strip: Path | None  # frames along one lap


def write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_snapshot(sim: Sim, out_dir: str | Path, *, scale: int = 4, n_strip: int = 8) -> SnapshotFiles:
    """Write camera.png (the current view), map.png and, if n_strip > 0, strip.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    car = sim.state.vehicle
    camera = out / "camera.png"
    write_png(camera, upscale(sim.render(), scale))
    strip_path: Path | None = None
    marks: list[VehicleState] = []
    if n_strip > 0:
        saved = sim.state
        frames, marks = lap_frames(sim, n_strip)
        sim.state = saved
        strip_path = out / "strip.png"
        write_png(strip_path, strip(frames))
    map_path = out / "map.png"
    write_png(map_path, draw_map(sim.track, [car], marks=marks))
    return SnapshotFiles(camera, map_path, strip_path)
