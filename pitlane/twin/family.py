"""The track family: generated tracks broad enough to hold a user's own, for training and for held-out checks.

A seed draws a shape and a paint, independently. Shapes: straights joined by arcs (a star-shaped polygon, or
an oblong one with long straights) with features on some edges: U-shaped notches into or out of the loop,
hairpins (a tongue whose tip is a half circle), chicanes (a sideways jog: S-bends both ways); corners down
to just above the car's minimum turn radius; widths 0.6-1.5 m. Paint: any floor (grain, tiles, planks,
carpet, checks) in any muted colour, asphalt or none (tape on the floor), edge and centre lines solid, dashed
or missing, in tape of any colour (white edges and a yellow centre, the other way round, one colour, a single
centre line, no lines but a road that stands out), glare.

Seeds come in three ranges that never overlap, one per split (`SPLITS`, the one home of them): recipes
TRAIN on train seeds, are compared on VALIDATION seeds, and TEST seeds are driven only to report a recipe
already chosen, never to choose one. The scene name `family:<split>:<index>` is the index-th track of a split.
Pure and deterministic: the same name gives the same track on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pitlane.twin.track import Track, TrackStyle, min_clearance_m, rounded_polygon
from pitlane.twin.vehicle import VehicleParams

PREFIX = "family"  # scene names family:<split>:<index>
# seed ranges per split; disjoint (checked below and in tests)
SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "validation": range(10_000_000, 10_100_000),
    "test": range(20_000_000, 20_100_000),
}
WIDTH_M = (0.6, 1.5)  # [m] road widths drawn
LENGTH_M = (18.0, 75.0)  # [m] loop lengths kept
MIN_RADIUS_M = 0.95  # [m] tightest corner: 5 % above the car's full-lock radius (0.91 m)
VERGE_M = 0.8  # [m] at least this much ground between two parts of the road
FEATURES: tuple[str, ...] = ("notch_in", "notch_out", "hairpin", "chicane")
BASES: tuple[str, ...] = ("star", "oblong")  # oblong: long straights
LAYOUTS: tuple[str, ...] = ("edges+centre", "edges", "centre", "none")  # which lines are painted
_TAG = 0x7A31  # mixed into every seed: the family's draws are its own, not another generator's
_MAX_TRIES = 400


def overlapping_splits(splits: dict[str, range]) -> list[tuple[str, str]]:
    """Pairs of splits whose seed ranges share a seed (none for SPLITS: checked at import)."""
    names = list(splits)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if splits[a].start < splits[b].stop and splits[b].start < splits[a].stop
    ]


if overlapping_splits(SPLITS):  # a seed in two splits would leak test tracks into training
    raise AssertionError(f"family splits overlap: {overlapping_splits(SPLITS)}")

LINE_RGB: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "yellow": (235, 190, 40),
    "orange": (240, 130, 30),
    "red": (200, 45, 40),
    "blue": (45, 90, 200),
    "green": (50, 170, 70),
    "black": (25, 25, 28),
}


@dataclass(frozen=True)
class FamilyTrack:
    """One member of the family: where it comes from and what was drawn (for reports and tests)."""

    split: str
    index: int
    seed: int
    base: str  # star | oblong
    features: tuple[str, ...]  # of FEATURES, in order along the loop
    layout: str  # of LAYOUTS
    track: Track

    @property
    def scene(self) -> str:
        return scene_name(self.split, self.index)


def scene_name(split: str, index: int) -> str:
    return f"{PREFIX}:{split}:{index}"


def is_family(name: str) -> bool:
    return name.startswith(PREFIX + ":")


def parse(name: str) -> tuple[str, int]:
    """(split, index) of `family:<split>:<index>`; ValueError naming what is wrong and what is allowed."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ValueError(f"family scene {name!r} must read family:<split>:<index>, e.g. family:validation:0")
    split, raw = parts[1], parts[2]
    if split not in SPLITS:
        raise ValueError(f"family scene {name!r}: split must be one of {', '.join(SPLITS)}")
    if not raw.isdigit() or int(raw) >= len(SPLITS[split]):
        raise ValueError(f"family scene {name!r}: index must be 0..{len(SPLITS[split]) - 1}")
    return split, int(raw)


def split_of(seed: int) -> str | None:
    """The split a family seed belongs to (None: none)."""
    return next((name for name, r in SPLITS.items() if seed in r), None)


def family_track(split: str, index: int) -> FamilyTrack:
    """The index-th track of a split (same arguments, same track)."""
    parse(scene_name(split, index))  # range checks
    seed = SPLITS[split][index]
    shape_rng = np.random.default_rng((_TAG, seed, 0))
    width = float(shape_rng.uniform(*WIDTH_M))
    centerline, base, features = _shape(shape_rng, width, seed)
    style, layout = _style(np.random.default_rng((_TAG, seed, 1)))
    track = Track(name=scene_name(split, index), centerline=centerline, width_m=width, style=style)
    return FamilyTrack(split, index, seed, base, features, layout, track)


def family_style(seed: int) -> TrackStyle:
    """A paint drawn from the family's styles for any seed (lines and floors too, not only colours): what
    training repaints a track with, lap after lap, so no line colour or layout is a shortcut."""
    return _style(np.random.default_rng((_TAG, int(seed), 2)))[0]


# ---- shapes ------------------------------------------------------------------------------------------
def _shape(rng: np.random.Generator, width: float, seed: int) -> tuple[np.ndarray, str, tuple[str, ...]]:
    car_radius = VehicleParams().min_turn_radius_m
    for _ in range(_MAX_TRIES):
        base = BASES[int(rng.random() < 0.3)]
        wanted = [FEATURES[int(i)] for i in rng.integers(0, len(FEATURES), int(rng.choice(4, p=_N_FEAT)))]
        corners = _base_corners(rng, base, len(wanted))
        k = len(corners)
        tight = rng.random(k) < 0.35
        radii = np.where(tight, rng.uniform(MIN_RADIUS_M, 1.2, k), rng.uniform(1.2, 2.5, k))
        corners, radii, features = _with_features(corners, radii, wanted, width, rng)
        if len(features) < len(wanted):  # no room for every feature drawn: draw again
            continue
        try:
            pts = rounded_polygon(corners, radii, start_on_longest=True)
        except ValueError:
            continue
        track = Track(name="candidate", centerline=pts, width_m=width)
        if not LENGTH_M[0] <= track.length_m <= LENGTH_M[1]:
            continue
        if track.min_radius_m < max(0.97 * MIN_RADIUS_M, car_radius):
            continue
        if min_clearance_m(track) < width + VERGE_M:
            continue
        return pts, base, features
    raise ValueError(f"no drivable family track for seed {seed} in {_MAX_TRIES} tries")


_N_FEAT = (0.15, 0.35, 0.35, 0.15)  # probability of 0, 1, 2, 3 features


def _base_corners(rng: np.random.Generator, base: str, features: int) -> np.ndarray:
    """A star-shaped polygon around the origin: round-ish, or oblong (two long straights); fewer corners
    and longer edges when it must hold `features` features."""
    if base == "oblong":
        k = int(rng.integers(4, 7 - min(features, 2)))
        size, aspect = rng.uniform(6.5, 10.0), rng.uniform(0.3, 0.5)
        rad = size * rng.uniform(0.85, 1.0, k)
        jitter = 0.15
    else:
        k = int(rng.integers(5 - min(features, 1), max(6, 10 - 2 * features)))
        size, aspect = rng.uniform(4.0, 7.5) * (1.0 + 0.15 * features), rng.uniform(0.6, 1.0)
        rad = size * rng.uniform(0.55, 1.0, k)
        jitter = 0.3
    ang = np.sort(
        (np.arange(k) + rng.uniform(-jitter, jitter, k)) * 2 * math.pi / k + rng.uniform(0, math.pi)
    )
    return np.stack([rad * np.cos(ang), aspect * rad * np.sin(ang)], axis=1)


def _feature(kind: str, width: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A feature's corners in edge coordinates (x along the edge, y to its side) and their radii."""
    if kind == "chicane":  # a bump to one side: S-bends one way, then the other
        a, d = rng.uniform(1.2, 2.5), rng.uniform(0.7, 1.6)
        if rng.random() < 0.5:
            pts = [(0, 0), (a, d), (2 * a, 0)]
        else:
            b = rng.uniform(1.0, 2.0)
            pts = [(0, 0), (a, d), (a + b, d), (2 * a + b, 0)]
        return np.array(pts, float), rng.uniform(MIN_RADIUS_M, 1.5, len(pts))
    if kind == "hairpin":  # a deep tongue, its tip a half circle of radius r
        r = rng.uniform(MIN_RADIUS_M, 1.2)
        w, d = max(2 * r, width + VERGE_M + 0.1), rng.uniform(3.0, 5.5)
        return np.array([(0, 0), (0, d), (w, d), (w, 0)], float), np.array(
            [rng.uniform(MIN_RADIUS_M, 1.3), r, r, rng.uniform(MIN_RADIUS_M, 1.3)]
        )
    # notch: a U with a flat bottom, the road doubling back on itself within a few metres
    w = rng.uniform(max(2.2, width + VERGE_M + 0.1), 3.2)
    d = rng.uniform(2.0, 3.4)
    radii = rng.uniform(MIN_RADIUS_M, min(1.25, d / 2, w / 2), 4)
    return np.array([(0, 0), (0, d), (w, d), (w, 0)], float), radii


def _with_features(corners: np.ndarray, radii: np.ndarray, wanted: list[str], width: float, rng):
    """`corners`/`radii` with each wanted feature on its own edge, where there is room beside the edge's
    corner arcs; a feature with no edge left is dropped. Returns (corners, radii, features placed)."""
    k = len(corners)
    nxt = np.roll(corners, -1, axis=0)
    edge = np.linalg.norm(nxt - corners, axis=1)
    u_in = corners - np.roll(corners, 1, axis=0)
    cos = (u_in * (nxt - corners)).sum(axis=1) / (np.linalg.norm(u_in, axis=1) * edge)
    tangent = radii * np.tan(np.arccos(np.clip(cos, -1.0, 1.0)) / 2)  # [m] each corner's arc on its edges
    free = edge - tangent - np.roll(tangent, -1)  # [m] straight left on each edge
    ccw = float(np.sum(corners[:, 0] * nxt[:, 1] - nxt[:, 0] * corners[:, 1])) > 0
    placed: dict[int, tuple[str, np.ndarray, np.ndarray]] = {}
    for kind in wanted:
        pts, r = _feature(kind, width, rng)
        span = pts[-1, 0] - pts[0, 0] + _arc_len(pts, r) + 0.3  # [m] of the edge the feature takes
        room = [i for i in np.argsort(-free) if int(i) not in placed and free[i] > span]
        if not room:
            continue
        i = int(room[0])
        u = (nxt[i] - corners[i]) / edge[i]
        inward = np.array([-u[1], u[0]]) * (1.0 if ccw else -1.0)
        side = (
            inward if kind == "notch_in" else -inward if kind == "notch_out" else inward * rng.choice((-1, 1))
        )
        start = tangent[i] + r[0] * math.tan(_turn(pts, 0) / 2) + 0.15 + rng.uniform(0.0, free[i] - span)
        world = corners[i] + u * (start + pts[:, :1]) + side * pts[:, 1:]
        placed[i] = (kind, world, r)
    out_c, out_r, feats = [], [], []
    for i in range(k):
        out_c.append(corners[i])
        out_r.append(radii[i])
        if i in placed:
            kind, world, r = placed[i]
            out_c += list(world)
            out_r += list(r)
            feats.append(kind)
    return np.array(out_c), np.array(out_r), tuple(feats)


def _turn(pts: np.ndarray, j: int) -> float:
    """[rad] how far the road turns at a feature's corner j (the edge runs along +x before and after)."""
    prev = pts[j] - pts[j - 1] if j > 0 else np.array([1.0, 0.0])
    nxt = pts[j + 1] - pts[j] if j + 1 < len(pts) else np.array([1.0, 0.0])
    c = float(np.dot(prev, nxt) / (np.linalg.norm(prev) * np.linalg.norm(nxt)))
    return math.acos(max(-1.0, min(1.0, c)))


def _arc_len(pts: np.ndarray, r: np.ndarray) -> float:
    """[m] of the edge beyond the feature's end points that its first and last corner arcs take."""
    return float(r[0] * math.tan(_turn(pts, 0) / 2) + r[-1] * math.tan(_turn(pts, len(pts) - 1) / 2))


# ---- paint -------------------------------------------------------------------------------------------
def _rgb(v) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(float(c)), 0, 255)) for c in v)  # type: ignore[return-value]


def _far(a, b, at_least: float = 90.0) -> bool:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float))) >= at_least


def _line_colours(rng: np.random.Generator, under: tuple[int, int, int]):
    """(edge, centre) tape colours that stand out from what they are stuck on: classic (white edges, a
    yellow centre), swapped, or any two of LINE_RGB."""
    names = list(LINE_RGB)
    for _ in range(50):
        pick = rng.random()
        if pick < 0.25:
            edge, centre = "white", "yellow"
        elif pick < 0.45:
            edge, centre = "yellow", "white"
        else:
            edge, centre = (names[int(i)] for i in rng.integers(0, len(names), 2))
        if _far(LINE_RGB[edge], under) and _far(LINE_RGB[centre], under):
            return LINE_RGB[edge], LINE_RGB[centre]
    return LINE_RGB["white"], LINE_RGB["white"] if sum(under) < 380 else LINE_RGB["black"]


def _style(rng: np.random.Generator) -> tuple[TrackStyle, str]:
    grey = rng.uniform(30.0, 210.0)
    ground = 0.5 * rng.uniform(25.0, 225.0, 3) + 0.5 * grey  # mostly muted colours, as floors are
    pattern = str(
        rng.choice(["grain", "tiles", "planks", "carpet", "checker"], p=[0.4, 0.2, 0.15, 0.15, 0.1])
    )
    pattern_m = {"tiles": (0.3, 0.6), "planks": (0.12, 0.25), "checker": (0.3, 1.0)}.get(pattern, (0.3, 0.6))
    road_paint = bool(rng.random() >= 0.25)  # else tape on the floor
    if rng.random() < 0.15:  # a coloured mat
        road = 0.5 * rng.uniform(30.0, 200.0, 3) + 0.5 * rng.uniform(40.0, 120.0)
    else:
        road = rng.uniform(30.0, 140.0) + rng.uniform(-6.0, 6.0, 3)
    under = _rgb(road if road_paint else ground)
    layout = str(rng.choice(LAYOUTS, p=[0.45, 0.25, 0.25, 0.05]))
    if layout == "none" and not (road_paint and _far(road, ground, 70.0)):
        layout = "edges+centre"  # no lines needs a road that stands out from the ground
    edge_rgb, center_rgb = _line_colours(rng, under)
    edge_line = str(rng.choice(["solid", "dashed"], p=[0.75, 0.25])) if "edges" in layout else "none"
    center_line = str(rng.choice(["dashed", "solid"], p=[0.6, 0.4])) if "centre" in layout else "none"
    style = TrackStyle(
        road_rgb=_rgb(road if road_paint else ground),
        ground_rgb=_rgb(ground),
        edge_rgb=edge_rgb,
        center_rgb=center_rgb,
        sky_rgb=_rgb(rng.uniform(120.0, 245.0, 3)),
        edge_width_m=float(rng.uniform(0.03, 0.08)),
        center_width_m=float(rng.uniform(0.03, 0.06)),
        dash_m=float(rng.uniform(0.15, 0.5)),
        gap_m=float(rng.uniform(0.1, 0.5)) if rng.random() < 0.5 else 0.0,
        grain=float(rng.uniform(3.0, 15.0)),
        edge_line=edge_line,
        center_line=center_line,
        road_paint=road_paint,
        ground_pattern=pattern,
        pattern_m=float(rng.uniform(*pattern_m)),
        pattern_contrast=float(rng.uniform(0.1, 0.4)),
        glare=float(rng.uniform(0.15, 0.6)) if rng.random() < 0.4 else 0.0,
    )
    return style, layout
