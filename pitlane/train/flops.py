"""Floating-point operations a Keras model costs per record, counted from its layers.

What the training benchmark divides by to say how much of the machine a training uses. A multiply-add is
two operations. Convolutions and dense layers are counted (everything else, activations, dropout, the
loss, is a few operations per value, under 1 % here); a training step is counted as three forward passes
(the forward pass, the gradient with respect to the inputs, the gradient with respect to the weights), the
usual convention, which overcounts the first layer's unneeded input gradient a little.
"""

from __future__ import annotations

import math
from typing import Any

TRAIN_PASSES = 3  # forward + input gradient + weight gradient, each about one forward pass


def layer_flops(layer: Any) -> int:
    """Forward operations of one Keras layer per record (0 for layers without multiply-adds)."""
    kind = type(layer).__name__
    if kind in ("Conv2D", "Conv1D", "Conv3D"):
        out = layer.output.shape[1:]  # (spatial..., filters)
        kernel = layer.kernel.shape  # (spatial kernel..., in channels, filters)
        per_output = math.prod(kernel[:-1])
        return 2 * math.prod(out) * per_output
    if kind == "Dense":
        units_in, units_out = layer.kernel.shape
        return 2 * int(units_in) * int(units_out)
    return 0


def forward_flops(model: Any) -> int:
    """Forward operations of `model` per record, over its convolution and dense layers."""
    return sum(layer_flops(layer) for layer in model.layers)


def train_flops(model: Any) -> int:
    """Operations of one training step per record (TRAIN_PASSES forward passes)."""
    return TRAIN_PASSES * forward_flops(model)
