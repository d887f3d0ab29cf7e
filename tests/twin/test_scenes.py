"""Built-in scenes and the generator: distinct, drivable tracks of RC-car size."""

import math

import numpy as np
import pytest

from pitlane.twin.scenes import SCENE_NAMES, generate_track, load_scene, rounded_polygon
from pitlane.twin.track import min_clearance_m
from pitlane.twin.vehicle import VehicleParams

CAR_MIN_RADIUS_M = VehicleParams().min_turn_radius_m  # 0.91 m with 16 deg and a 0.26 m wheelbase


def test_at_least_five_scenes_named_like_the_unity_sim():
    assert len(SCENE_NAMES) >= 5
    for name in ("generated_track", "generated_road", "mini_monaco", "warehouse", "circuit_launch"):
        assert name in SCENE_NAMES


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_scene_is_drivable_rc_size(name):
    t = load_scene(name)
    assert t.name == name
    assert 0.8 <= t.width_m <= 1.2
    assert 15.0 <= t.length_m <= 60.0
    assert t.min_radius_m >= CAR_MIN_RADIUS_M
    # no two parts of the road touch: at least the road width plus a verge between them
    assert min_clearance_m(t) > t.width_m + 0.5
    # the start line sits on a straight
    assert abs(t.curvature_at(0.0)) < 0.05


def test_scenes_are_distinct():
    shapes = {name: load_scene(name) for name in SCENE_NAMES}
    lengths = sorted(round(t.length_m, 1) for t in shapes.values())
    assert len(set(lengths)) == len(lengths)
    looks = {(t.style.ground_rgb, t.style.road_rgb) for t in shapes.values()}
    assert len(looks) >= 5


def test_unknown_scene_names_the_known_ones():
    with pytest.raises(ValueError, match="known scenes: generated_track"):
        load_scene("donkey-nope")


def test_generated_road_depends_on_rand_seed_only():
    a, b, c = (
        load_scene("generated_road", 1),
        load_scene("generated_road", 1),
        load_scene("generated_road", 2),
    )
    np.testing.assert_array_equal(a.centerline, b.centerline)
    assert a.centerline.shape != c.centerline.shape or not np.allclose(a.centerline, c.centerline)


@pytest.mark.parametrize("seed", range(12))
def test_generator_makes_drivable_loops(seed):
    t = generate_track(seed)
    np.testing.assert_array_equal(t.centerline, generate_track(seed).centerline)
    assert 22.0 <= t.length_m <= 45.0
    assert t.min_radius_m >= CAR_MIN_RADIUS_M
    assert min_clearance_m(t) > t.width_m + 0.5


def test_rounded_polygon_has_the_requested_radius():
    square = [(0, 0), (6, 0), (6, 6), (0, 6)]
    pts = rounded_polygon(square, 1.5)
    from pitlane.twin.track import Track

    t = Track("sq", pts, 1.0)
    assert t.min_radius_m == pytest.approx(1.5, rel=0.05)
    assert t.length_m == pytest.approx(4 * 6 - 4 * 2 * 1.5 + 2 * math.pi * 1.5, rel=1e-3)
    with pytest.raises(ValueError, match="too large"):
        rounded_polygon(square, 4.0)


def test_a_track_file_loads_wherever_a_scene_name_does(tmp_path):
    path = tmp_path / "my_track.json"
    load_scene("warehouse").save(path)
    track = load_scene(str(path))
    assert track.name == "warehouse"
    np.testing.assert_allclose(track.centerline, load_scene("warehouse").centerline, rtol=0, atol=1e-4)  # [m]
    with pytest.raises(ValueError, match="cannot read track file"):
        load_scene(str(tmp_path / "missing.json"))


def test_random_styles_repeat_for_a_seed_and_differ_between_seeds():
    from pitlane.twin.scenes import random_style, restyled

    assert random_style(3) == random_style(3) and random_style(3) != random_style(4)
    grounds = {random_style(s).ground_rgb for s in range(20)}
    assert len(grounds) == 20
    track = load_scene("warehouse")
    painted = restyled(track, random_style(3))
    assert painted.style == random_style(3) and np.array_equal(painted.centerline, track.centerline)


def _hairpins(track, window_m: float = 4.5, min_turn_deg: float = 160.0) -> set[int]:
    """Signs (+1 left, -1 right) of the U-turns: the heading changes by min_turn_deg within window_m."""
    spacing = track.length_m / track.total_nodes
    n = int(window_m / spacing)
    turn = np.degrees(np.convolve(np.r_[track.curvature, track.curvature[:n]] * spacing, np.ones(n), "valid"))
    return {int(np.sign(t)) for t in turn if abs(t) >= min_turn_deg}


@pytest.mark.parametrize("seed", range(6))
def test_hairpin_road_is_a_drivable_loop_with_u_turns(seed):
    t = load_scene("hairpin_road", seed)
    np.testing.assert_array_equal(t.centerline, load_scene("hairpin_road", seed).centerline)
    assert t.min_radius_m >= CAR_MIN_RADIUS_M and min_clearance_m(t) >= t.width_m + 0.8
    assert 15.0 <= t.length_m <= 61.0 and abs(t.curvature_at(0.0)) < 0.05
    assert _hairpins(t), "a hairpin road without a U-turn"


def test_hairpin_roads_turn_both_ways_and_plain_ones_do_not_u_turn():
    signs = set().union(*(_hairpins(load_scene("hairpin_road", s)) for s in range(6)))
    assert signs == {-1, 1}
    assert not any(_hairpins(load_scene("generated_road", s)) for s in range(6))
    a, b = load_scene("hairpin_road", 1), load_scene("hairpin_road", 2)
    assert a.centerline.shape != b.centerline.shape or not np.allclose(a.centerline, b.centerline)


def test_recoloured_keeps_a_tracks_lines_and_floor():
    from dataclasses import replace

    from pitlane.twin.scenes import random_style, recoloured, restyled

    track = load_scene("warehouse")
    plain = recoloured(track, 3)
    assert plain.style == random_style(3)  # a named scene's lines are the defaults: the colours are all
    taped = restyled(
        track, replace(track.style, center_line="none", edge_rgb=(45, 90, 200), road_paint=False)
    )
    again = recoloured(taped, 3)
    assert (again.style.center_line, again.style.edge_rgb, again.style.road_paint) == (
        "none",
        (45, 90, 200),
        False,
    )
    assert again.style.ground_rgb == random_style(3).ground_rgb == again.style.road_rgb  # tape on the floor
