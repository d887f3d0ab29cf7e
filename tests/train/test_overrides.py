"""`pitlane train --set KEY=VALUE`, pure: values parsed as Python literals, only the keys donkeycar 5.4's
training reads, each with its type; pitlane's own keys name the option to use. (tests/train/test_train.py
checks the same errors through the CLI, before TensorFlow.)"""

from __future__ import annotations

import pytest

from pitlane.errors import UserError
from pitlane.train.overrides import PITLANE_KEYS, TRAIN_KEYS, check_override, parse_override, parse_overrides


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("MIN_DELTA=0.001", ("MIN_DELTA", 0.001)),
        (" AUGMENTATIONS = ['BLUR', 'BRIGHTNESS'] ", ("AUGMENTATIONS", ["BLUR", "BRIGHTNESS"])),
        ("AUG_BLUR_RANGE=(0.5, 1.5)", ("AUG_BLUR_RANGE", (0.5, 1.5))),
        ("NAME=hello world", ("NAME", "hello world")),  # not a literal: the bare string
        ("FLAG=True", ("FLAG", True)),
    ],
)
def test_values_are_python_literals_or_bare_strings(text, parsed):
    assert parse_override(text) == parsed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MIN_DELTA", 0),
        ("MODEL_CATEGORICAL_MAX_THROTTLE_RANGE", 1.0),
        ("AUGMENTATIONS", []),
        ("AUG_BRIGHTNESS_RANGE", 0.2),
        ("AUG_BLUR_RANGE", [0.0, 2.0]),
        ("AUG_BLUR_RANGE", 1),
    ],
)
def test_good_values_of_the_keys_training_reads(key, value):
    check_override(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MIN_DELTA", -1, "MIN_DELTA takes a number >= 0"),
        ("MIN_DELTA", float("nan"), "MIN_DELTA takes a number >= 0"),
        ("MODEL_CATEGORICAL_MAX_THROTTLE_RANGE", 0, r"a number in \(0, 1\]"),
        ("AUGMENTATIONS", ["FLIP"], "a list of 'BRIGHTNESS', 'BLUR'"),
        ("AUG_BLUR_RANGE", (2.0, 1.0), r"a number or a \(low, high\) pair >= 0"),
        ("AUG_BLUR_RANGE", (1.0, 2.0, 3.0), r"a number or a \(low, high\) pair >= 0"),
        ("BATCH_SIZE", 8, "use --batch-size"),
        ("OPTIMIZER", "adam", "ignores it"),
        ("SOMETHING", 1, "not a key donkeycar 5.4's training reads"),
    ],
)
def test_bad_keys_and_values_are_one_line_each(key, value, message):
    with pytest.raises(UserError, match=message) as err:
        check_override(key, value)
    assert str(err.value).startswith(f"--set {key}") and "\n" not in str(err.value)


def test_the_first_bad_setting_is_the_error_and_good_ones_collect():
    assert parse_overrides(["MIN_DELTA=0.01", "AUGMENTATIONS=['BLUR']"]) == {
        "MIN_DELTA": 0.01,
        "AUGMENTATIONS": ["BLUR"],
    }
    with pytest.raises(UserError, match="--set expects KEY=VALUE, got '=3'"):
        parse_overrides(["MIN_DELTA=0.01", "=3", "NOPE=1"])
    assert not set(TRAIN_KEYS) & set(PITLANE_KEYS)  # a key is either the user's or pitlane's, never both
