"""Frames are decoded once per tub content: the same tub is not decoded again, a changed one is."""

from __future__ import annotations

import numpy as np
import pytest

from pitlane.errors import UserError
from pitlane.provenance import tub_digest
from pitlane.train import frames as frames_module
from pitlane.train.frames import forget_frames, tub_frames

SHAPE = (120, 160, 3)


def _names(tub):
    return sorted(p.name for p in (tub / "images").iterdir())


@pytest.fixture(autouse=True)
def _fresh():
    forget_frames()
    yield
    forget_frames()


def test_frames_are_donkeycars_pixels_decoded_once(make_tub, monkeypatch):
    from donkeycar.utils import load_image_sized

    tub = make_tub(records=6)
    names = _names(tub)
    first = tub_frames(tub, tub_digest(tub), names, SHAPE)
    for name, row in first.rows.items():
        assert np.array_equal(first.pixels[row], load_image_sized(str(tub / "images" / name), 160, 120, 3))
    decoded: list[tuple] = []

    def decode(*a, **k):
        decoded.append(a)
        return first.pixels

    monkeypatch.setattr(frames_module, "decode_frames", decode)
    assert tub_frames(tub, tub_digest(tub), names, SHAPE) is first and decoded == []


def test_a_changed_tub_is_decoded_again(make_tub):
    from PIL import Image

    tub = make_tub(records=6)
    names = _names(tub)
    before = tub_frames(tub, tub_digest(tub), names, SHAPE)
    Image.new("RGB", (160, 120), (200, 10, 10)).save(tub / "images" / names[2])  # same name, new content
    after = tub_frames(tub, tub_digest(tub), names, SHAPE)
    assert after is not before and after.key[0] != before.key[0]
    assert not np.array_equal(after.pixels[2], before.pixels[2])
    assert np.array_equal(after.pixels[[0, 1, 3]], before.pixels[[0, 1, 3]])
    assert [int(v) for v in after.pixels[2, 60, 80]] == pytest.approx([200, 10, 10], abs=3)  # JPEG


def test_kept_frames_are_bounded(make_tub, monkeypatch):
    tub = make_tub(records=4)
    monkeypatch.setattr(frames_module, "KEEP_BYTES", 1)  # keep only the latest
    a = tub_frames(tub, "sha256:a", _names(tub), SHAPE)
    tub_frames(tub, "sha256:b", _names(tub), SHAPE)
    assert tub_frames(tub, "sha256:a", _names(tub), SHAPE) is not a


def test_an_undecodable_frame_is_named(make_tub):
    tub = make_tub(records=3)
    name = _names(tub)[1]
    (tub / "images" / name).write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=f"cannot decode camera frame .*{name}"):
        tub_frames(tub, tub_digest(tub), _names(tub), SHAPE)
