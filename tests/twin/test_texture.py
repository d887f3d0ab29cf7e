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


def test_line_styles_and_floors_paint_as_the_style_says():
    from dataclasses import replace

    from pitlane.twin.scenes import restyled

    track = load_scene("warehouse")
    yellow, white, floor = (235, 190, 40), (235, 235, 235), (150, 60, 60)
    style = replace(
        track.style,
        edge_rgb=yellow,
        center_rgb=white,
        center_line="none",
        edge_line="dashed",
        dash_m=0.3,
        gap_m=0.3,
        road_paint=False,
        ground_rgb=floor,
        road_rgb=floor,
        grain=2.0,
    )
    tex = paint_track(restyled(track, style))
    left, _ = track.edges()
    on = [sample(tex, *left[i]) for i in range(40, track.total_nodes - 40, 3) if (track.s[i] % 0.6) < 0.2]
    off = [
        sample(tex, *left[i])
        for i in range(40, track.total_nodes - 40, 3)
        if 0.35 < (track.s[i] % 0.6) < 0.55
    ]
    assert np.median([np.abs(p - yellow).max() for p in on]) < 40  # yellow tape on the dashes
    assert np.median([np.abs(p - floor).max() for p in off]) < 40  # the floor between them
    middle = [sample(tex, *track.centerline[i]) for i in range(40, track.total_nodes - 40, 7)]
    assert max(np.abs(p - floor).max() for p in middle) < 40  # no centre line, no asphalt: the floor
    # solid white centre line, tiles with dark grout, glare: each changes the paint, deterministically
    base = replace(track.style, center_line="solid", center_rgb=white)
    solid = paint_track(restyled(track, base))
    dashes = [sample(solid, *track.centerline[i]) for i in range(40, track.total_nodes - 40, 5)]
    assert min(p.min() for p in dashes) > 180  # every centreline sample is white: solid
    tiles = paint_track(restyled(track, replace(base, ground_pattern="tiles", pattern_contrast=0.6)))
    grey = tiles.levels[0][..., 1].astype(int)
    assert np.percentile(grey, 1) < 0.6 * np.median(grey)  # grout lines, much darker than the tiles
    glare = paint_track(restyled(track, replace(base, glare=0.6)))
    assert glare.levels[0].astype(int).mean() > solid.levels[0].astype(int).mean() + 3
    again = paint_track(restyled(track, replace(base, glare=0.6)))
    assert np.array_equal(glare.levels_rgba[0], again.levels_rgba[0])
