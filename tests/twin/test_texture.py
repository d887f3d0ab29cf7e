"""Top-down texture: paint lands where the track geometry says (edge lines, center dashes, ground)."""

import numpy as np

from pitlane.twin.scenes import load_scene
from pitlane.twin.texture import paint_track, texture_for


def sample(tex, x, y, level=0):
    u, v, _ = tex.world_to_px(level) @ (x, y, 1.0)
    return tex.levels[level][int(round(v)), int(round(u))].astype(int)


def test_paint_follows_the_geometry():
    track = load_scene("warehouse")
    tex = texture_for(track)
    st = track.style
    left, right = track.edges()
    for i in range(37, track.total_nodes - 10, 37):  # (index 0 is the white start line)
        for edge in (left, right):
            assert (sample(tex, *edge[i]) > 200).all()  # white edge line
        x, y = track.centerline[i]
        n = track.normal_right[i]
        mid_lane = sample(tex, x + 0.25 * n[0], y + 0.25 * n[1])
        assert np.abs(mid_lane - st.road_rgb).max() < 50  # asphalt between the lines
        off = sample(tex, x + 1.2 * n[0], y + 1.2 * n[1])
        assert np.abs(off - st.ground_rgb).max() < 60  # ground beyond the road
    # the center line is dashed: yellow at the middle of a dash, asphalt at the middle of a gap
    k_dash = int(round(0.5 * st.dash_m / 0.05))
    k_gap = int(round(1.5 * st.dash_m / 0.05))
    dash, gap = sample(tex, *track.centerline[k_dash]), sample(tex, *track.centerline[k_gap])
    assert dash[0] > 180 and dash[2] < 120
    assert np.abs(gap - st.road_rgb).max() < 50


def test_deterministic_and_mip_levels_halve():
    track = load_scene("waveshare")
    a, b = paint_track(track), paint_track(track)
    assert all(np.array_equal(x, y) for x, y in zip(a.levels_rgba, b.levels_rgba, strict=True))
    h0, w0 = a.levels_rgba[0].shape[:2]
    assert a.levels_rgba[2].shape[:2] == ((((h0 + 1) // 2) + 1) // 2, (((w0 + 1) // 2) + 1) // 2)
    assert a.levels[0].shape == (h0, w0, 3)
