"""`pitlane twin snapshot/scenes/export`: PNGs a person can look at, track files, clear errors."""

import json

import cv2
import numpy as np

from pitlane.cli import main


def read(path):
    img = cv2.imread(str(path))
    assert img is not None, path
    return img


def test_snapshot_writes_camera_map_and_strip(tmp_path, capsys):
    out = tmp_path / "snap"
    assert main(["twin", "snapshot", "--scene", "circuit_launch", "--out", str(out), "--frames", "4"]) == 0
    cam, mp, st = read(out / "camera.png"), read(out / "map.png"), read(out / "strip.png")
    assert cam.shape == (480, 640, 3)
    assert max(mp.shape[:2]) >= 400
    assert st.shape[1] == 4 * (320 + 4)
    # the map shows the red car
    b, g, r = (mp[..., k].astype(int) for k in range(3))
    assert ((r > 200) & (g < 60) & (b < 60)).sum() > 20
    assert "camera.png" in capsys.readouterr().out


def test_map_and_strip_have_a_title_scale_bar_and_direction(tmp_path):
    from pitlane.twin.scenes import load_scene
    from pitlane.twin.snapshot import draw_map, nice_length

    assert [nice_length(x) for x in (0.7, 1.0, 3.9, 7.5, 19.0, 260.0)] == [0.5, 1.0, 2.0, 5.0, 10.0, 200.0]
    track = load_scene("generated_track")
    bare, titled = draw_map(track), draw_map(track, title=["generated_track", "second line"])
    band = titled.shape[0] - bare.shape[0]
    assert band > 40 and titled.shape[1] == bare.shape[1]
    assert (titled[:band, -40:] == 24).all(), "a dark title band on top"
    assert titled[:band].max() == 255, "with white text"
    # the scale bar: a white and a black half, bottom-left
    h = bare.shape[0]
    bar = bare[h - 22 : h - 20, 22:300]
    assert (bar == 255).all(axis=2).any() and (bar == 0).all(axis=2).any()
    out = tmp_path / "snap"
    assert main(["twin", "snapshot", "--scene", "generated_track", "--out", str(out), "--frames", "4"]) == 0
    strip = read(out / "strip.png")
    assert strip.shape[0] > (240 + 4) + 40, "strip.png has a title band (4 frames: one row)"
    assert (strip[:4] == 24).all()


def test_snapshot_of_a_track_file(tmp_path):
    track = tmp_path / "t.json"
    track.write_text(
        json.dumps(
            {"name": "oval", "width_m": 1.0, "centerline": [[0, 0], [8, 0], [10, 3], [8, 6], [0, 6], [-2, 3]]}
        )
    )
    out = tmp_path / "o"
    assert main(["twin", "snapshot", "--track", str(track), "--out", str(out), "--frames", "0"]) == 0
    assert (out / "camera.png").exists() and not (out / "strip.png").exists()
    assert np.asarray(read(out / "camera.png")).std() > 10


def test_export_then_snapshot_round_trip(tmp_path):
    f = tmp_path / "monaco.json"
    assert main(["twin", "export", "--scene", "mini_monaco", "--out", str(f)]) == 0
    doc = json.loads(f.read_text())
    assert doc["name"] == "mini_monaco" and len(doc["centerline"]) > 500
    assert main(["twin", "snapshot", "--track", str(f), "--out", str(tmp_path / "s"), "--frames", "0"]) == 0


def test_scenes_lists_all(capsys):
    assert main(["twin", "scenes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"generated_track", "mini_monaco", "warehouse"}


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["twin", "snapshot", "--scene", "nowhere", "--out", str(tmp_path)]) == 2
    assert "unknown scene 'nowhere'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["twin", "snapshot", "--track", str(bad), "--out", str(tmp_path)]) == 2
    assert "cannot read track file" in capsys.readouterr().err
