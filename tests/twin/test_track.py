"""Track geometry: CTE sign and size, progress, projection with a hint, the JSON file format."""

import json
import math

import numpy as np
import pytest

from pitlane.twin.track import Track, TrackStyle


def circle(radius=3.0, n=400, ccw=True, width=1.0):
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    if not ccw:
        a = -a
    return Track.from_points("circle", np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1), width)


def test_circle_length_and_curvature():
    t = circle(3.0)
    assert t.length_m == pytest.approx(2 * math.pi * 3.0, rel=1e-3)
    assert t.total_nodes == pytest.approx(t.length_m / 0.05, abs=2)
    assert np.median(t.curvature) == pytest.approx(1 / 3.0, rel=0.02)  # CCW = left turn = positive
    assert circle(3.0, ccw=False).curvature.mean() == pytest.approx(-1 / 3.0, rel=0.02)
    assert t.min_radius_m == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize("ccw", [True, False])
def test_cte_positive_right_of_centerline(ccw):
    t = circle(3.0, ccw=ccw)
    # driving CCW the outside of the circle is on the right; driving CW it is on the left
    outside = t.project((3.4, 0.0))
    inside = t.project((2.7, 0.0))
    sign = 1 if ccw else -1
    assert outside.cte_m == pytest.approx(sign * 0.4, abs=2e-3)
    assert inside.cte_m == pytest.approx(-sign * 0.3, abs=2e-3)


def test_rectangle_cte_and_progress():
    # clockwise rectangle driven east along y = 0 first: north of the line is LEFT
    corners = [(0, 0), (10, 0), (10, -4), (0, -4)]
    t = Track.from_points("rect", corners, 1.0, smooth=False)
    assert t.length_m == pytest.approx(28.0, abs=0.01)
    p = t.project((4.0, 0.25))
    assert p.cte_m == pytest.approx(-0.25, abs=1e-6)
    assert p.s_m == pytest.approx(4.0, abs=1e-6)
    assert p.heading == pytest.approx(0.0, abs=1e-9)
    p = t.project((10.3, -2.0))  # east side, driving south: east is on the LEFT
    assert p.cte_m == pytest.approx(-0.3, abs=1e-6)
    assert p.s_m == pytest.approx(12.0, abs=1e-6)
    p = t.project((5.0, -3.8))  # south side, driving west: north is on the RIGHT
    assert p.cte_m == pytest.approx(0.2, abs=1e-6)


def test_project_with_hint_matches_exhaustive_search():
    t = circle(4.0)
    rng = np.random.default_rng(0)
    hint = 0
    for a in np.linspace(0, 4 * math.pi, 300):
        r = 4.0 + rng.uniform(-0.5, 0.5)
        xy = (r * math.cos(a), r * math.sin(a))
        fast, full = t.project(xy, hint=hint), t.project(xy)
        assert fast.index == full.index
        assert fast.cte_m == pytest.approx(full.cte_m)
        hint = fast.index
    # a far jump from the hint still finds the right place
    assert t.project((-4.0, 0.0), hint=0).index == t.project((-4.0, 0.0)).index


def test_pose_at_wraps_and_follows_heading():
    t = circle(3.0)
    x, y, yaw = t.pose_at(0.0)
    assert (x, y) == pytest.approx((3.0, 0.0), abs=1e-3)
    assert yaw == pytest.approx(math.pi / 2, abs=0.01)
    assert t.pose_at(t.length_m + 1.0) == pytest.approx(t.pose_at(1.0))
    assert t.curvature_at(5.0) == pytest.approx(1 / 3.0, rel=0.02)


def test_json_round_trip_is_exact(tmp_path):
    t = circle(2.5)
    path = tmp_path / "t.json"
    t.save(path)
    back = Track.load(path)
    assert back.name == t.name and back.width_m == t.width_m and back.style == t.style
    np.testing.assert_allclose(back.centerline, t.centerline, atol=1e-5)


def test_hand_written_file_with_few_points_is_smoothed(tmp_path):
    doc = {
        "name": "mine",
        "width_m": 0.9,
        "centerline": [[0, 0], [6, 0], [6, 4], [0, 4]],
        "style": {"ground_rgb": [10, 20, 30]},
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc))
    t = Track.load(path)
    seg = np.hypot(*np.diff(t.centerline, axis=0).T)
    assert seg.max() < 0.06 and t.total_nodes > 300
    assert t.style.ground_rgb == (10, 20, 30)
    # the smooth curve passes through the user's points
    assert min(np.hypot(*(t.centerline - (6, 0)).T)) < 0.03


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"name": "x", "width_m": 1.0}, "centerline"),
        ({"name": "x", "width_m": "wide", "centerline": [[0, 0], [1, 0], [1, 1]]}, "width_m"),
        ({"name": "x", "width_m": 1.0, "centerline": [[0, 0], [1, 0]]}, "at least 3"),
        ({"name": "x", "width_m": 1.0, "centerline": [[0, 0], [1, "a"], [1, 1]]}, "centerline"),
        ({"name": "x", "width_m": 50.0, "centerline": [[0, 0], [5, 0], [5, 5]]}, "width_m"),
        ({"name": "x", "width_m": 1.0, "centerline": [[0, 0], [5, 0], [5, 5]], "style": {"sky": 1}}, "style"),
        ([1, 2], "object"),
    ],
)
def test_bad_track_documents_raise_clear_errors(doc, words):
    with pytest.raises(ValueError, match=words):
        Track.from_json(doc)


def test_unreadable_file_raises_value_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        Track.load(bad)
    with pytest.raises(ValueError, match="cannot read"):
        Track.load(tmp_path / "missing.json")


def test_style_defaults_round_trip():
    s = TrackStyle()
    assert TrackStyle.from_json(s.to_json()) == s


def test_reversed_track_turns_every_heading_around():
    t = circle(3.0)
    r = t.reversed()
    assert not t.clockwise and r.clockwise
    assert r.centerline[0] == pytest.approx(t.centerline[0])  # same start point
    assert r.length_m == pytest.approx(t.length_m)
    _, _, yaw = t.pose_at(0.0)
    _, _, ryaw = r.pose_at(0.0)
    assert abs(math.remainder(ryaw - yaw, 2 * math.pi)) == pytest.approx(math.pi, abs=0.05)
    assert np.median(r.curvature) == pytest.approx(-1 / 3.0, rel=0.02)  # left turns became right turns


def test_oriented_picks_the_asked_direction():
    ccw, cw = circle(3.0), circle(3.0, ccw=False)
    assert ccw.oriented("ccw") is ccw and ccw.oriented(None) is ccw
    assert ccw.oriented("cw").clockwise and not cw.oriented("ccw").clockwise
    with pytest.raises(ValueError, match="direction must be one of"):
        ccw.oriented("left")


def test_line_and_floor_styles_round_trip_and_bad_ones_are_named():
    s = TrackStyle(
        edge_line="dashed", center_line="none", road_paint=False, ground_pattern="tiles", glare=0.3
    )
    assert TrackStyle.from_json(s.to_json()) == s
    for bad, message in (
        ({"edge_line": "wavy"}, "edge_line must be one of solid, dashed, none"),
        ({"ground_pattern": 3}, "ground_pattern must be one of grain"),
        ({"road_paint": "no"}, "road_paint must be true or false"),
    ):
        with pytest.raises(ValueError, match=message):
            TrackStyle.from_json(bad)
    with pytest.raises(ValueError, match="center_line must be one of"):
        TrackStyle(center_line="dotted")
