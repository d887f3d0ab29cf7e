"""Frame statistics: right numbers on frames whose answer is known, and a tub's sample for training."""

from __future__ import annotations

import numpy as np
import pytest

from pitlane.data import framestats as fs
from pitlane.errors import UserError


def feature(frame: np.ndarray, name: str) -> float:
    return float(fs.frame_features(frame)[fs.FEATURES.index(name)])


def test_a_black_frame_is_dark_grey_and_flat():
    f = fs.frame_features(np.zeros((120, 160, 3), np.uint8))
    assert f.shape == (len(fs.FEATURES),) and np.all(f == 0)


def test_colour_and_brightness_of_plain_frames():
    red = np.zeros((120, 160, 3), np.uint8)
    red[..., 0] = 255
    assert feature(red, "red") == 255 and feature(red, "green") == 0 and feature(red, "blue") == 0
    assert feature(red, "brightness") == pytest.approx(0.299 * 255, abs=0.01)
    assert feature(red, "colourfulness") == pytest.approx(255 + 127.5, abs=0.01)
    grey = np.full((120, 160, 3), 100, np.uint8)
    assert feature(grey, "colourfulness") == 0 and feature(grey, "contrast") == 0
    assert feature(grey, "brightness") == pytest.approx(100, abs=0.01)


def test_edges_count_texture_not_light():
    stripes = np.zeros((120, 160, 3), np.uint8)
    stripes[:, ::8] = 255  # every second sampled column (step 4) is white
    assert feature(stripes, "edges") > 0.4
    assert feature(np.full((120, 160, 3), 200, np.uint8), "edges") == 0
    half = np.zeros((120, 160, 3), np.uint8)
    half[:, 80:] = 255
    assert 0 < feature(half, "edges") < 0.05  # one edge in the frame


def test_a_grey_frame_with_one_channel_works():
    frame = np.full((120, 160), 80, np.uint8)
    assert feature(frame, "brightness") == pytest.approx(80, abs=0.01) and feature(frame, "red") == 80


def test_summarise_and_parse_round_trip():
    rows = np.array([fs.frame_features(np.full((120, 160, 3), v, np.uint8)) for v in (50, 150)])
    stats = fs.summarise(rows, "test")
    assert stats["mean"][0] == pytest.approx(100, abs=0.01) and stats["std"][0] == pytest.approx(50, abs=0.01)
    assert fs.parse_stats(stats) == stats
    assert fs.parse_stats({**stats, "schema": "other/2"}) is None
    assert fs.parse_stats({**stats, "features": ["brightness"]}) is None
    assert fs.parse_stats({**stats, "mean": [float("nan")] * len(fs.FEATURES)}) is None
    assert fs.parse_stats(None) is None
    with pytest.raises(UserError, match="N x 7 features"):
        fs.summarise(np.zeros((0, 7)), "nothing")


def test_training_stats_sample_the_tubs_frames(make_tub):
    tubs = [make_tub("a", n=30), make_tub("b", n=30, seed=1)]
    stats = fs.training_stats(tubs, count=12)
    assert stats is not None and stats["frames"] == 12
    assert stats["source"] == "12 frames of 60 in 2 tub(s)"
    assert 100 < stats["mean"][0] < 155  # the test tubs' images are grey gradients 0..255
    assert stats["mean"][fs.FEATURES.index("colourfulness")] == pytest.approx(0, abs=0.5)
    assert fs.training_stats([make_tub("empty", n=0)]) is None
