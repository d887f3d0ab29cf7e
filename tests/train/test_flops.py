"""FLOPs per record counted from donkeycar's model, checked against a count by hand."""

from __future__ import annotations

from pitlane.train.flops import TRAIN_PASSES, forward_flops, train_flops


def test_linear_model_flops_match_a_count_by_hand():
    from donkeycar.parts.keras import KerasLinear

    model = KerasLinear(input_shape=(120, 160, 3)).interpreter.model
    # (output h, w, filters, kernel k, input channels) of donkeycar's five valid-padded convolutions
    convs = [
        (58, 78, 24, 5, 3),
        (27, 37, 32, 5, 24),
        (12, 17, 64, 5, 32),
        (10, 15, 64, 3, 64),
        (8, 13, 64, 3, 64),
    ]
    dense = [(8 * 13 * 64, 100), (100, 50), (50, 1), (50, 1)]
    by_hand = sum(2 * h * w * f * k * k * c for h, w, f, k, c in convs) + sum(2 * i * o for i, o in dense)
    assert forward_flops(model) == by_hand
    assert 95e6 < by_hand < 97e6  # issue 23's "about 96 MFLOP a frame"
    assert train_flops(model) == TRAIN_PASSES * by_hand
