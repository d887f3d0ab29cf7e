"""Built-in scenes (named after the Unity DonkeyCar simulator's scenes) and a seeded track generator.

Tracks are built like real ones: straights joined by circular arcs (a polygon whose corners are rounded
with a chosen radius), so every turn radius is known and stays above what an RC car with 16 degrees of
steering and a 0.26 m wheelbase can take (about 0.91 m).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from pitlane.twin import family
from pitlane.twin.track import Track, TrackStyle, min_clearance_m, rounded_polygon

MIN_RADIUS_M = 1.0  # [m] tightest corner any built-in or generated track has
DEFAULT_WIDTH_M = 1.0  # [m]
DEFAULT_SCENE = "generated_track"  # the scene every command drives when told none
HAIRPIN_ROAD = "hairpin_road"  # a training scene, not the Unity sim's: generated_road with U-turns


def _track(name: str, corners, radii, width_m: float, style: TrackStyle) -> Track:
    return Track(name=name, centerline=rounded_polygon(corners, radii), width_m=width_m, style=style)


# Ground and road colours per scene (RGB): what makes them look distinct through the camera.
_GRASS = TrackStyle(ground_rgb=(78, 118, 54), road_rgb=(70, 70, 74))
_CONCRETE = TrackStyle(ground_rgb=(150, 148, 140), road_rgb=(92, 92, 98), sky_rgb=(200, 200, 195), grain=7.0)
_PAVEMENT = TrackStyle(ground_rgb=(176, 160, 134), road_rgb=(58, 58, 62), sky_rgb=(150, 195, 240))
_POLISHED = TrackStyle(ground_rgb=(118, 112, 104), road_rgb=(48, 48, 52), sky_rgb=(210, 210, 215), grain=6.0)
_DIRT = TrackStyle(ground_rgb=(122, 100, 70), road_rgb=(78, 76, 74), sky_rgb=(160, 190, 225), grain=14.0)
_ROAD = TrackStyle(ground_rgb=(96, 128, 62), road_rgb=(82, 82, 86), sky_rgb=(180, 205, 235))


def _generated_track() -> Track:
    corners = [(0, 0), (9, 0), (11.5, 3.5), (8, 6.5), (4.5, 4.5), (1, 7.5), (-2.5, 4)]
    return _track("generated_track", corners, [2.0, 1.6, 1.6, 1.4, 1.4, 1.6, 1.8], DEFAULT_WIDTH_M, _GRASS)


def _mini_monaco() -> Track:
    corners = [
        (0, 0),
        (7, 0),
        (8, 2.5),
        (5.5, 3.5),
        (5.5, 6.0),
        (9.5, 6.5),
        (9.5, 9.5),
        (2, 9.5),
        (1.5, 6.5),
        (-2, 5),
        (-2, 1),
    ]
    radii = [1.2, 1.0, 1.0, 1.0, 1.1, 1.0, 1.2, 1.1, 1.0, 1.2, 1.2]
    return _track("mini_monaco", corners, radii, 0.9, _PAVEMENT)


def _warehouse() -> Track:
    corners = [(0, 0), (10, 0), (10, 6), (6.5, 6), (6.5, 3), (3.5, 3), (3.5, 6), (0, 6)]
    return _track("warehouse", corners, [1.2, 1.2, 1.2, 1.0, 1.0, 1.0, 1.0, 1.2], DEFAULT_WIDTH_M, _CONCRETE)


def _circuit_launch() -> Track:
    corners = [(0, 0), (12, 0), (14, 2.5), (12, 5), (8, 4.0), (6.5, 5.5), (3, 5.5), (0, 5), (-2, 2.5)]
    radii = [2.0, 1.8, 1.8, 1.3, 1.3, 1.3, 1.5, 1.8, 1.8]
    return _track("circuit_launch", corners, radii, 1.1, _POLISHED)


def _mountain_track() -> Track:
    corners = [
        (0, 0),
        (10, -1),
        (16, 2),
        (17, 8),
        (12, 10),
        (9, 7),
        (6, 10.5),
        (1, 11),
        (-3, 7.5),
        (-1.5, 4.5),
        (-3.5, 1.5),
    ]
    radii = [2.5, 2.5, 2.5, 2.0, 1.5, 1.5, 2.0, 1.8, 1.3, 1.3, 1.5]
    return _track("mountain_track", corners, radii, 1.2, _DIRT)


def _sparkfun_avc() -> Track:
    corners = [(0, 0), (16, 0), (16, 8), (9, 8), (7, 5), (4, 9), (0, 8)]
    radii = [2.5, 2.5, 2.0, 1.5, 1.5, 1.5, 2.0]
    style = TrackStyle(ground_rgb=(112, 112, 116), road_rgb=(58, 58, 62), sky_rgb=(165, 200, 235))
    return _track("sparkfun_avc", corners, radii, 1.2, style)


def _roboracingleague_1() -> Track:
    corners = [(0, 0), (12, 0), (12, 3.2), (9, 4.6), (12, 6), (12, 9.2), (0, 9.2), (0, 6), (3, 4.6), (0, 3.2)]
    radii = [1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.1, 1.0, 1.0, 1.1]
    style = TrackStyle(ground_rgb=(62, 82, 120), road_rgb=(74, 74, 78), sky_rgb=(190, 190, 200), grain=6.0)
    return _track("roboracingleague_1", corners, radii, 1.0, style)


def _waveshare() -> Track:
    corners = [(0, 0), (6, 0), (8, 2.5), (6, 5), (0, 5), (1.2, 2.5)]
    radii = [1.1, 1.2, 1.2, 1.1, 1.0, 1.0]
    style = TrackStyle(ground_rgb=(196, 196, 190), road_rgb=(52, 52, 56), sky_rgb=(205, 205, 210), grain=5.0)
    return _track("waveshare", corners, radii, 0.8, style)


def _warren() -> Track:
    corners = [(0, 0), (8, -1), (12, 3), (10, 8), (4, 9), (-1, 5)]
    style = TrackStyle(ground_rgb=(176, 128, 80), road_rgb=(72, 72, 76), sky_rgb=(215, 205, 185), grain=8.0)
    return _track("warren", corners, 2.0, 1.0, style)


def _thunderhill() -> Track:
    corners = [
        (0, 0),
        (14, 0),
        (18, 3),
        (16, 7),
        (12, 6.5),
        (10, 9),
        (12, 12.5),
        (6, 14),
        (0, 11),
        (2, 6.5),
        (-2, 3),
    ]
    radii = [2.5, 2.5, 2.0, 1.5, 1.5, 1.5, 1.5, 2.0, 1.5, 1.5, 2.0]
    style = TrackStyle(ground_rgb=(150, 138, 82), road_rgb=(88, 88, 92), sky_rgb=(150, 190, 235), grain=12.0)
    return _track("thunderhill", corners, radii, 1.2, style)


_BUILTIN = {
    "generated_track": _generated_track,
    "mini_monaco": _mini_monaco,
    "warehouse": _warehouse,
    "circuit_launch": _circuit_launch,
    "mountain_track": _mountain_track,
    "sparkfun_avc": _sparkfun_avc,
    "roboracingleague_1": _roboracingleague_1,
    "waveshare": _waveshare,
    "warren": _warren,
    "thunderhill": _thunderhill,
}

# every scene behind a gym-donkeycar env id (donkey-generated-track-v0 -> generated_track, ...)
SCENE_NAMES: tuple[str, ...] = (
    "generated_track",
    "generated_road",
    "mini_monaco",
    "warehouse",
    "circuit_launch",
    "mountain_track",
    "sparkfun_avc",
    "roboracingleague_1",
    "waveshare",
    "warren",
    "thunderhill",
)

_cache: dict[tuple[str, int], Track] = {}


def load_scene(name: str, rand_seed: int = 0) -> Track:
    """The track of a scene; `generated_road` is a new random loop per `rand_seed`; `family:<split>:<index>`
    a track of the family (`pitlane.twin.family`); a name ending in `.json` is a track file (`Track.load`),
    so users' own tracks go wherever a scene name does in-process.

    Raises ValueError naming the known scenes for an unknown name.
    """
    if name.endswith(".json"):
        return Track.load(name)  # not cached: the user may be editing the file between runs
    key = (name, int(rand_seed) if name in ("generated_road", HAIRPIN_ROAD) else 0)
    if key not in _cache:
        if family.is_family(name):
            track = family.family_track(*family.parse(name)).track
        elif name == "generated_road":
            track = generate_track(int(rand_seed), name="generated_road", style=_ROAD)
        elif name == HAIRPIN_ROAD:
            track = generate_track(int(rand_seed), name=HAIRPIN_ROAD, style=_ROAD, hairpins=2)
        elif name in _BUILTIN:
            track = _BUILTIN[name]()
        else:
            raise ValueError(
                f"unknown scene {name!r}; known scenes: {', '.join(SCENE_NAMES)}, {HAIRPIN_ROAD}, "
                f"{family.PREFIX}:<{'|'.join(family.SPLITS)}>:<index>"
            )
        if len(_cache) >= 64:  # generated_road makes one track per rand_seed: keep the cache bounded
            _cache.clear()
        _cache[key] = track
    return _cache[key]


def generate_track(
    seed: int,
    *,
    name: str | None = None,
    width_m: float = DEFAULT_WIDTH_M,
    length_m: tuple[float, float] = (22.0, 45.0),
    style: TrackStyle | None = None,
    max_tries: int = 200,
    hairpins: int = 0,
) -> Track:
    """A random closed track for `seed` (same seed, same track).

    A star-shaped polygon with 6-11 corners, each rounded with a random radius >= MIN_RADIUS_M; candidates
    whose arcs do not fit, whose length falls outside `length_m` or whose parts pass closer than the road
    width plus a verge are rejected and redrawn from the same generator. With `hairpins`, that many edges
    get a U-shaped notch (into the loop or out of it), so the track has U-turns both ways: a star-shaped
    loop alone turns at most about 110 degrees at once and almost only one way.
    """
    rng = np.random.default_rng(seed)
    if hairpins:
        length_m = (length_m[0], length_m[1] + 8.0 * hairpins)
    corner_range, size_range = ((4, 7), (6.0, 9.0)) if hairpins else ((6, 12), (3.5, 7.0))
    for _ in range(max_tries):
        k = int(rng.integers(*corner_range))
        ang = np.sort((np.arange(k) + rng.uniform(-0.3, 0.3, k)) * 2 * math.pi / k)
        size = rng.uniform(*size_range)
        rad = size * rng.uniform(0.55, 1.0, k)
        aspect = rng.uniform(0.6, 1.0)
        corners = np.stack([rad * np.cos(ang), aspect * rad * np.sin(ang)], axis=1)
        radii = rng.uniform(MIN_RADIUS_M, 2.2, k)
        if hairpins:
            corners, radii = _with_notches(corners, radii, hairpins, rng)
            if corners is None:
                continue
        try:
            pts = rounded_polygon(corners, radii, start_on_longest=True)
        except ValueError:
            continue
        track = Track(name=name or f"generated_{seed}", centerline=pts, width_m=width_m, style=style or _ROAD)
        if not (length_m[0] <= track.length_m <= length_m[1]):
            continue
        if track.min_radius_m < 0.95 * MIN_RADIUS_M:
            continue
        if min_clearance_m(track) < width_m + 0.8:
            continue
        return track
    raise ValueError(f"no drivable track found for seed {seed} in {max_tries} tries")


_NOTCH_WIDTH_M = (2.3, 3.0)  # [m] between the U's arms (centre to centre): a turn of radius ~1 m each way
_NOTCH_DEPTH_M = (1.8, 3.2)  # [m]
_NOTCH_RADIUS_M = (MIN_RADIUS_M, 1.25)  # [m] of the notch's four corners


def _with_notches(corners: np.ndarray, radii: np.ndarray, n: int, rng: np.random.Generator):
    """`corners`/`radii` with a U-shaped notch on `n` of the longest edges, or (None, None) when too few
    edges have room for one beside their corners' arcs. Into the loop the U turns one way, out the other."""
    k = len(corners)
    nxt = np.roll(corners, -1, axis=0)
    edge = np.linalg.norm(nxt - corners, axis=1)
    u_in = corners - np.roll(corners, 1, axis=0)
    u_out = nxt - corners
    cos = (u_in * u_out).sum(axis=1) / (np.linalg.norm(u_in, axis=1) * edge)
    tangent = radii * np.tan(np.arccos(np.clip(cos, -1.0, 1.0)) / 2)  # [m] each corner's arc on its edges
    w = rng.uniform(*_NOTCH_WIDTH_M, k)
    room = edge - w - tangent - np.roll(tangent, -1) - 2 * _NOTCH_RADIUS_M[1] - 0.2  # [m] to slide it
    chosen = [int(i) for i in np.argsort(-room)[:n] if room[i] > 0.0]
    if len(chosen) < n:
        return None, None
    ccw = float(np.sum(corners[:, 0] * nxt[:, 1] - nxt[:, 0] * corners[:, 1])) > 0
    out_c, out_r = [], []
    for i in range(k):
        out_c.append(corners[i])
        out_r.append(radii[i])
        if i not in chosen:
            continue
        u = u_out[i] / edge[i]
        inward = np.array([-u[1], u[0]]) * (1.0 if ccw else -1.0)
        side = inward if rng.random() < 0.5 else -inward
        d = rng.uniform(*_NOTCH_DEPTH_M)
        p1 = corners[i] + u * (tangent[i] + _NOTCH_RADIUS_M[1] + 0.1 + rng.uniform(0.0, room[i]))
        p4 = p1 + u * w[i]
        out_c += [p1, p1 + side * d, p4 + side * d, p4]
        out_r += list(rng.uniform(*_NOTCH_RADIUS_M, 4))
    return np.array(out_c), np.array(out_r)


def random_style(seed: int) -> TrackStyle:
    """Colours of a track drawn from `seed`: any ground (grass, concrete, carpet, dirt ...), a grey road
    darker or lighter, a light sky, some grain. Training on many of them teaches the road's shape, not the
    colours of the few scenes trained on (domain randomisation of the texture)."""
    rng = np.random.default_rng(seed)
    ground = rng.uniform(30.0, 220.0, 3)
    grey = rng.uniform(30.0, 200.0)
    ground = 0.5 * ground + 0.5 * grey  # mostly muted colours, as floors and grounds are
    road = rng.uniform(40.0, 115.0) + rng.uniform(-6.0, 6.0, 3)
    sky = rng.uniform(140.0, 240.0, 3)

    def rgb(v) -> tuple[int, int, int]:
        return tuple(int(np.clip(round(float(c)), 0, 255)) for c in v)  # type: ignore[return-value]

    return TrackStyle(
        road_rgb=rgb(road), ground_rgb=rgb(ground), sky_rgb=rgb(sky), grain=float(rng.uniform(4, 15))
    )


def restyled(track: Track, style: TrackStyle) -> Track:
    """The same road painted in other colours."""
    return Track(name=track.name, centerline=track.centerline, width_m=track.width_m, style=style)


def recoloured(track: Track, seed: int) -> Track:
    """The same road and lines in colours drawn from `seed` (`random_style`'s ground, road, sky and grain):
    a track's line layout and floor pattern stay its own."""
    colours = random_style(seed)
    return restyled(
        track,
        replace(
            track.style,
            road_rgb=colours.road_rgb if track.style.road_paint else colours.ground_rgb,
            ground_rgb=colours.ground_rgb,
            sky_rgb=colours.sky_rgb,
            grain=colours.grain,
        ),
    )
