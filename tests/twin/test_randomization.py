"""Per-frame randomisation: hue turns and grey frames take colour away as a cue; the defaults leave it."""

import numpy as np

from pitlane.twin.randomization import DomainRandomization, Randomizer


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

