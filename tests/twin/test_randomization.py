"""Domain randomisation of frames: reproducible per seed, bounded by its ranges, off when a range is 0."""

from __future__ import annotations

import numpy as np

from pitlane.twin.randomization import DomainRandomization, FrameJitter, Randomizer

GREY = np.full((12, 16, 3), 128, np.uint8)


def test_the_same_seed_gives_the_same_frames_and_jitter():
    cfg = DomainRandomization()
    a, b = Randomizer(cfg, 12, 16), Randomizer(cfg, 12, 16)
    ra, rb = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        assert np.array_equal(a.apply(GREY, ra), b.apply(GREY, rb))
        assert a.jitter(ra) == b.jitter(rb)
    other = a.apply(GREY, np.random.default_rng(8))
    assert not np.array_equal(other, a.apply(GREY, np.random.default_rng(7)))


def test_frames_stay_frames_and_light_stays_within_its_range():
    cfg = DomainRandomization(brightness=0.25, contrast=0.0, tint=0.0, noise_std=0.0)
    r = Randomizer(cfg, 12, 16)
    rng = np.random.default_rng(0)
    means = []
    for _ in range(50):
        out = r.apply(GREY, rng)
        assert out.shape == GREY.shape and out.dtype == np.uint8
        assert np.all(out == out[0, 0])  # light alone changes every pixel alike
        means.append(float(out.mean()))
    assert 128 * 0.75 - 1 <= min(means) < 120 and 136 < max(means) <= 128 * 1.25 + 1


def test_zero_ranges_change_nothing():
    off = DomainRandomization(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    r = Randomizer(off, 12, 16)
    rng = np.random.default_rng(3)
    frame = np.asarray(np.random.default_rng(1).integers(0, 256, size=GREY.shape), dtype=np.uint8)
    assert np.array_equal(r.apply(frame, rng), frame)
    assert r.jitter(rng) == FrameJitter(0.0, 0.0, 0.0)


def test_noise_and_jitter_are_bounded():
    cfg = DomainRandomization(brightness=0.0, contrast=0.0, tint=0.0, noise_std=6.0)
    r = Randomizer(cfg, 120, 160)
    rng = np.random.default_rng(0)
    out = r.apply(np.full((120, 160, 3), 128, np.uint8), rng).astype(float)
    assert 4.0 < out.std() < 8.0 and abs(out.mean() - 128) < 1.0
    for _ in range(20):
        j = r.jitter(rng)
        assert (
            abs(j.pitch_deg) <= cfg.pitch_deg
            and abs(j.yaw_deg) <= cfg.yaw_deg
            and abs(j.height_m) <= cfg.height_m
        )


def _frames(cfg: DomainRandomization, n: int = 40) -> list[np.ndarray]:
    red = np.zeros((12, 16, 3), np.uint8)
    red[..., 0], red[..., 1:] = 200, 40
    r, rng = Randomizer(cfg, 12, 16), np.random.default_rng(3)
    return [r.apply(red, rng)[0, 0].astype(int) for _ in range(n)]


def test_hue_turns_and_grey_frames_change_what_colour_a_line_is():
    plain = _frames(DomainRandomization(noise_std=0))
    assert all(p[0] > p[1] + 80 and p[0] > p[2] + 80 for p in plain)  # stays red: light and tint only
    turned = _frames(DomainRandomization(noise_std=0, hue_deg=180.0, grey=0.25))
    dominant = {int(np.argmax(p)) for p in turned if p.max() - p.min() > 30}
    assert dominant == {0, 1, 2}  # red turned green and blue too
    greys = [p for p in turned if p.max() - p.min() <= 1]
    assert 2 <= len(greys) <= 20  # about a quarter of the frames lost their colour
