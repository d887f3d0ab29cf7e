"""The cached input pipeline feeds donkeycar's training the very batches donkeycar's own generator would."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from pitlane.provenance import tub_digest
from pitlane.train import TrainParams, train_model
from pitlane.train.pipeline import CachedSequence, record_frames

SHAPE = (120, 160, 3)


def _split(tub, model_type: str, seed: int, tmp_path, **overrides):
    """donkeycar's model, config and train/validation split of `tub`, as its `train` builds them."""
    from donkeycar.pipeline.types import TubDataset
    from donkeycar.utils import get_model_by_type, train_test_split

    from pitlane.train.train import donkey_config

    params = TrainParams(model_type=model_type, batch_size=16, overrides=overrides)
    cfg = donkey_config(params, SHAPE, tmp_path)
    kl = get_model_by_type(model_type, cfg)
    random.seed(seed)
    dataset = TubDataset(cfg, [str(tub)])
    train, val = train_test_split(dataset.get_records(), shuffle=True, test_size=0.2)
    dataset.close()
    return kl, cfg, train, val


def _cached(kl, cfg, records, is_train, tub, seed=0, deterministic=True):
    digests = {str(tub): tub_digest(tub)}
    return CachedSequence(
        kl, cfg, records, is_train, lambda rs: record_frames(rs, digests, SHAPE, 2), seed, deterministic
    )


def _batches(sequence, n):
    return [
        (x["img_in"].numpy().astype(np.float32), y)  # float64 from donkeycar: Keras casts it to float32
        for x, y in sequence.create_tf_data().take(n)
    ]


@pytest.mark.parametrize("model_type", ["linear", "categorical", "inferred"])
def test_same_records_and_labels_as_donkeycars_pipeline(model_type, make_tub, tmp_path):
    import tensorflow as tf
    from donkeycar.pipeline.training import BatchSequence

    tub = make_tub(records=40)
    kl, cfg, train, val = _split(tub, model_type, 3, tmp_path)
    for is_train, records in ((True, train), (False, val)):
        theirs, ours = BatchSequence(kl, cfg, records, is_train), _cached(kl, cfg, records, is_train, tub)
        assert len(ours) == len(theirs)
        n = 2 * len(ours) + 1  # over two epochs' ends: donkeycar's repeat().batch() runs across them
        for (x_theirs, y_theirs), (x_ours, y_ours) in zip(
            _batches(theirs, n), _batches(ours, n), strict=True
        ):
            assert x_ours.dtype == np.float32 and np.array_equal(x_ours, x_theirs)
            tf.nest.map_structure(
                lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), y_ours, y_theirs
            )


def test_augmentations_change_training_frames_only_and_repeat_with_the_seed(make_tub, tmp_path):
    tub = make_tub(records=40)
    aug = {"AUGMENTATIONS": ["BRIGHTNESS"], "AUG_BRIGHTNESS_RANGE": 0.5}
    kl, cfg, train, val = _split(tub, "linear", 3, tmp_path, **aug)
    plain = _batches(_cached(kl, cfg, train, False, tub), 3)  # validation never augments
    first = _batches(_cached(kl, cfg, train, True, tub, seed=5), 3)
    again = _batches(_cached(kl, cfg, train, True, tub, seed=5), 3)
    other = _batches(_cached(kl, cfg, train, True, tub, seed=6), 3)
    changed = sum(
        not np.array_equal(a[0][i], p[0][i]) for a, p in zip(first, plain, strict=True) for i in range(16)
    )
    assert 8 <= changed < 48  # donkeycar's augmentations apply to about half the records (p=0.5)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    for (_, y_aug), (_, y_plain) in zip(first, plain, strict=True):
        np.testing.assert_array_equal(y_aug["n_outputs0"].numpy(), y_plain["n_outputs0"].numpy())


@pytest.mark.slow
def test_cached_training_follows_donkeycars_training_curve(make_tub, tmp_path):
    """Same seed, same batches, same model: the training curve of donkeycar's own pipeline."""
    tub = make_tub(records=64)
    tiny: dict[str, Any] = dict(seed=4, epochs=2, batch_size=16, threads=1, deterministic=True)
    theirs = train_model([tub], tmp_path / "a" / "m.keras", TrainParams(cached_frames=False, **tiny))
    ours = train_model([tub], tmp_path / "b" / "m.keras", TrainParams(cached_frames=True, **tiny))
    assert ours.history["loss"] == pytest.approx(theirs.history["loss"], rel=1e-5)
    assert ours.history["val_loss"] == pytest.approx(theirs.history["val_loss"], rel=1e-5)
    assert ours.tflite_path and (tmp_path / "b" / "m.tflite").is_file()
