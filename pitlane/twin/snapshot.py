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


def nice_length(target_m: float) -> float:
    """The largest of 1, 2, 5 x 10^k metres not over `target_m` (a scale bar's length)."""
    exp = math.floor(math.log10(max(target_m, 1e-6)))
    for step in (5.0, 2.0, 1.0):
        if step * 10**exp <= target_m:
            return step * 10**exp
    return 10 ** (exp - 1) * 5.0


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, rgb=(255, 255, 255)) -> None:
    """Text with a dark outline, readable on any background."""
    thick = max(1, int(round(2 * scale)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, rgb, thick, cv2.LINE_AA)


def titled(img: np.ndarray, lines: list[str], arrow: bool = False) -> np.ndarray:
    """`img` under a dark band holding `lines` (the first in bold white, the rest grey) and, with `arrow`,
    a right-pointing arrow at the band's right end (the order to read what is below)."""
    scale = max(0.45, min(0.8, img.shape[1] / 1500))
    line_h = int(32 * scale) + 8
    band = np.full((line_h * len(lines) + 10, img.shape[1], 3), 24, np.uint8)
    for i, line in enumerate(lines):
        rgb = (255, 255, 255) if i == 0 else (200, 200, 200)
        cv2.putText(
            band,
            line,
            (12, line_h * (i + 1)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * (1.0 if i == 0 else 0.85),
            rgb,
            2 if i == 0 else 1,
            cv2.LINE_AA,
        )
    if arrow:
        mid, right = band.shape[0] // 2, band.shape[1] - 20
        cv2.arrowedLine(band, (right - 90, mid), (right, mid), (255, 255, 255), 4, cv2.LINE_AA, tipLength=0.3)
    return np.vstack([band, img])


def _scale_bar(img: np.ndarray, px_per_m: float) -> None:
    """A black-and-white bar of a round length in the bottom-left corner, labelled in metres."""
    length_m = nice_length(0.2 * img.shape[1] / px_per_m)
    length_px = int(round(length_m * px_per_m))
    h, _w = img.shape[:2]
    x0, y0 = 20, h - 24
    cv2.rectangle(img, (x0 - 10, y0 - 34), (x0 + length_px + 10, y0 + 12), (20, 20, 20), -1)
    half = length_px // 2
    cv2.rectangle(img, (x0, y0), (x0 + half, y0 + 6), (255, 255, 255), -1)
    cv2.rectangle(img, (x0 + half, y0), (x0 + length_px, y0 + 6), (0, 0, 0), -1)
    cv2.rectangle(img, (x0, y0), (x0 + length_px, y0 + 6), (255, 255, 255), 1)
    label = f"{length_m:g} m"
    cv2.putText(img, label, (x0, y0 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)


def _direction_arrows(img: np.ndarray, px, track: Track, n: int = 6) -> None:
    """Arrows on the centerline pointing the way the car drives (the centerline's order)."""
    length = max(0.7, 1.2 * track.width_m)  # [m]
    for k in range(n):
        x, y, yaw = track.pose_at((k + 0.5) * track.length_m / n)
        dx, dy = 0.5 * length * math.cos(yaw), 0.5 * length * math.sin(yaw)
        tail, head = px(x - dx, y - dy), px(x + dx, y + dy)
        cv2.arrowedLine(img, tail, head, (0, 0, 0), 6, cv2.LINE_AA, tipLength=0.45)
        cv2.arrowedLine(img, tail, head, (255, 255, 255), 3, cv2.LINE_AA, tipLength=0.45)


def draw_map(
    track: Track,
    cars: list[VehicleState] | tuple[VehicleState, ...] = (),
    trail: np.ndarray | None = None,
    marks: list[VehicleState] | None = None,
    max_px: int = 1200,
    title: list[str] | None = None,
) -> np.ndarray:
    """Top-down RGB map of the track with cars (red, with a heading tick), an optional driven trail (cyan),
    optional numbered marks (small blue cars: e.g. where the frames of a strip were taken), white arrows for
    the driving direction, a scale bar and, given `title`, a title band on top."""
    tex = texture_for(track)
    level = 0
    while level + 1 < len(tex.levels_rgba) and max(tex.levels_rgba[level].shape[:2]) > max_px:
        level += 1
    img = tex.levels[level].copy()
    m = tex.world_to_px(level)
    px_per_m = math.hypot(m[0][0], m[1][0])

    def px(x: float, y: float) -> tuple[int, int]:
        u, v, _ = m @ (x, y, 1.0)
        return int(round(u)), int(round(v))

    _direction_arrows(img, px, track)
    if trail is not None and len(trail) > 1:
        pts = np.array([px(x, y) for x, y in trail], np.int32)
        cv2.polylines(img, [pts], False, (0, 220, 255), 2, cv2.LINE_AA)
    for i, mark in enumerate(marks or []):
        _draw_car(img, px, mark, (40, 90, 255), 0.6)
        off = 0.5 * track.width_m + 0.3  # [m] beside the road, to the right of the car
        right = (mark.x_m + off * math.sin(mark.yaw_rad), mark.y_m - off * math.cos(mark.yaw_rad))
        u, v = px(*right)
        _text(img, str(i + 1), (u - 8, v + 9), 0.8, (130, 175, 255))
    for car in cars:
        _draw_car(img, px, car, (230, 30, 30), 1.0)
    _scale_bar(img, px_per_m)
    return titled(img, title) if title else img


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


def strip(
    frames: list[np.ndarray], per_row: int = 4, scale: int = 2, labels: list[str] | None = None
) -> np.ndarray:
    """Frames tiled in rows of `per_row`, each enlarged `scale` times, with a thin separator and, given
    `labels`, each frame's label in its top-left corner."""
    pad = [np.zeros_like(frames[0])] * (-len(frames) % per_row)
    cells = []
    for i, f in enumerate(list(frames) + pad):
        cell = upscale(f, scale)
        if labels and i < len(labels):
            _text(cell, labels[i], (6, 20), 0.55)
        cells.append(cv2.copyMakeBorder(cell, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
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
    track = sim.track
    if n_strip > 0:
        saved = sim.state
        frames, marks = lap_frames(sim, n_strip)
        sim.state = saved
        strip_path = out / "strip.png"
        step_m = track.length_m / n_strip
        labels = [f"{k + 1}: {k * step_m:.1f} m" for k in range(n_strip)]
        title = [
            f"{track.name}: the camera every {step_m:.1f} m of a {track.length_m:.1f} m lap",
            "in driving order: left to right, then the next row (numbers match map.png)",
        ]
        write_png(strip_path, titled(strip(frames, labels=labels), title, arrow=True))
    map_path = out / "map.png"
    title = [
        f"{track.name}: {track.length_m:.1f} m lap, road {track.width_m:.2f} m wide",
        "white arrows: driving direction; red: the car"
        + (f"; blue 1-{len(marks)}: strip.png's frames" if marks else ""),
    ]
    write_png(map_path, draw_map(track, [car], marks=marks, title=title))
    return SnapshotFiles(camera, map_path, strip_path)
