"""`pitlane train --set KEY=VALUE`: only donkeycar config keys that donkeycar 5.4's training really reads.

donkeycar's config template holds hundreds of keys; its training (donkeycar/pipeline/training.py,
augmentations.py, utils.get_model_by_type) reads a few. A key it never reads (LEARNING_RATE, OPTIMIZER:
donkeycar 5.4 never calls `set_optimizer`) would be recorded as applied while changing nothing, so it is
refused, as are keys pitlane sets itself and values of the wrong type. Pure: checked before TensorFlow loads.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pitlane.errors import UserError

AUGMENTATIONS = ("BRIGHTNESS", "BLUR")  # what donkeycar 5.4's ImageAugmentation.create builds


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        return (value > low if low_open else value >= low) and value <= high

    return check


def _augmentations(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(v in AUGMENTATIONS for v in value)


def _range(value: Any) -> bool:
    """A number or a (low, high) pair of numbers >= 0, as albumentations takes them."""
    if isinstance(value, list | tuple):
        return len(value) == 2 and all(_number(0)(v) for v in value) and value[0] <= value[1]
    return _number(0)(value)


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], bool]
    expects: str  # what a valid value is, in words
    why: str  # what donkeycar's training does with it


TRAIN_KEYS: dict[str, Key] = {
    "MIN_DELTA": Key(_number(0), "a number >= 0", "smallest val_loss improvement early stopping counts"),
    "MODEL_CATEGORICAL_MAX_THROTTLE_RANGE": Key(
        _number(0, 1, low_open=True), "a number in (0, 1]", "throttle range of the categorical model's bins"
    ),
    "AUGMENTATIONS": Key(
        _augmentations,
        f"a list of {', '.join(repr(a) for a in AUGMENTATIONS)}",
        "training-only augmentations",
    ),
    "AUG_BRIGHTNESS_RANGE": Key(_number(0, 1), "a number in [0, 1]", "BRIGHTNESS augmentation strength"),
    "AUG_BLUR_RANGE": Key(_range, "a number or a (low, high) pair >= 0", "BLUR augmentation sigma"),
}

# keys donkeycar reads but pitlane sets: the option to use instead (or why they are fixed)
PITLANE_KEYS: dict[str, str] = {
    "MAX_EPOCHS": "use --epochs",
    "BATCH_SIZE": "use --batch-size",
    "DEFAULT_MODEL_TYPE": "use --type",
    "LEARNING_RATE": "donkeycar 5.4's training ignores it; use --learning-rate",
    "OPTIMIZER": "donkeycar 5.4's training ignores it (each model type compiles its own optimizer)",
    "LEARNING_RATE_DECAY": "donkeycar 5.4's training ignores it",
    "IMAGE_H": "pitlane reads the image size from the tubs",
    "IMAGE_W": "pitlane reads the image size from the tubs",
    "IMAGE_DEPTH": "pitlane reads the image size from the tubs",
    "TRAIN_TEST_SPLIT": "pitlane fixes it (0.8) so runs compare",
    "EARLY_STOP_PATIENCE": "pitlane fixes it (5 epochs) so runs compare",
    "TRANSFORMATIONS": "pitlane's pilots do not apply transformations when driving, so the model would not drive",
    "POST_TRANSFORMATIONS": "pitlane's pilots do not apply transformations when driving",
}


def check_override(key: str, value: Any) -> None:
    """UserError (one line) unless donkeycar's training reads `key` and `value` has its type."""
    if key in PITLANE_KEYS:
        raise UserError(f"--set {key}: {PITLANE_KEYS[key]}")
    spec = TRAIN_KEYS.get(key)
    if spec is None:
        raise UserError(
            f"--set {key}: not a key donkeycar 5.4's training reads; one of {', '.join(sorted(TRAIN_KEYS))}"
        )
    if not spec.check(value):
        raise UserError(f"--set {key}={value!r}: {key} takes {spec.expects}")


def parse_override(text: str) -> tuple[str, Any]:
    """KEY=VALUE -> (KEY, value): VALUE as a Python literal (0.5, True, ['BLUR']), else a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value: Any = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def parse_overrides(texts: Iterable[str]) -> dict[str, Any]:
    """Every --set checked; the first bad one is the error."""
    out: dict[str, Any] = {}
    for text in texts:
        key, value = parse_override(text)
        check_override(key, value)
        out[key] = value
    return out
